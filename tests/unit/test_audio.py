"""Audio files in and out (byzerllm.audio): every speech format decodes back to the same sound, and
anything that is not audio is refused with the request field named."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest

from byzerllm import audio
from byzerllm.errors import InvalidRequestError
from byzerllm.types import AUDIO_MEDIA_TYPES

RATE = 22050  # Piper's rate, which Opus does not take


def tone(seconds: float = 1.0, hz: float = 440.0, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav"])
def test_each_format_decodes_back_to_the_same_tone_and_length(fmt):
    data = audio.encode(tone(1.0), RATE, fmt)
    back = audio.decode(data, 16000)
    assert back.dtype == np.float32 and back.ndim == 1
    # AAC in ADTS keeps its encoder's priming samples (~0.05-0.1 s); the others trim them
    assert len(back) / 16000 == pytest.approx(1.0, abs=0.1)
    assert peak_hz(back, 16000) == pytest.approx(440, abs=5)
    assert 0.2 < np.abs(back).max() < 0.4
    assert audio.duration(data) == pytest.approx(1.0, abs=0.1)


def test_pcm_is_the_headerless_16_bit_samples_and_wav_takes_int16_too():
    x = tone(0.5)
    pcm = audio.encode(x, RATE, "pcm")
    ints = np.frombuffer(pcm, dtype="<i2")
    assert len(pcm) == 2 * len(x) and np.array_equal(ints, (x * 32767).astype(np.int16))
    wav = audio.encode(ints, RATE, "wav")
    assert wav == audio.encode(x, RATE, "wav")
    with wave.open(io.BytesIO(wav)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (RATE, 1, 2, len(x))


def test_full_scale_does_not_wrap_and_stereo_or_other_rates_become_16k_mono():
    assert (
        audio.encode(np.array([1.5, -1.5], dtype=np.float32), RATE, "pcm")
        == np.array([32767, -32767], dtype="<i2").tobytes()
    )
    stereo = np.repeat((tone(0.5, rate=44100) * 32767).astype(np.int16), 2)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(stereo.tobytes())
    mono = audio.decode(out.getvalue())
    assert len(mono) == pytest.approx(8000, abs=5) and peak_hz(mono, 16000) == pytest.approx(440, abs=5)


def test_output_rate_is_what_the_encoder_takes():
    assert audio.output_rate("opus", 22050) == 24000
    assert audio.output_rate("opus", 48000) == 48000
    assert audio.output_rate("mp3", 22050) == 22050
    assert audio.output_rate("flac", 22050) == audio.output_rate("wav", 22050) == 22050


def test_unknown_format_names_response_format_and_the_accepted_ones():
    with pytest.raises(InvalidRequestError, match="accepted: mp3, opus, aac, flac, wav, pcm") as info:
        audio.encode(tone(0.1), RATE, "ogg")
    assert info.value.param == "response_format" and info.value.accepted == list(audio.AUDIO_FORMATS)
    with pytest.raises(ValueError, match="1-D"):
        audio.encode(np.zeros((2, 10), dtype=np.float32), RATE, "wav")


NOT_AUDIO = {
    "empty": b"",
    "text": b"this is a text file, not a recording\n" * 20,
    "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200),
    "random": np.random.default_rng(0).bytes(5000),
    "header only": audio.encode(tone(0.1), RATE, "wav")[:30],
}


@pytest.mark.parametrize("name", NOT_AUDIO)
def test_data_that_is_not_audio_is_refused_with_the_field_named(name):
    with pytest.raises(InvalidRequestError, match="is not an audio file") as info:
        audio.decode(NOT_AUDIO[name])
    assert info.value.param == "file"
    with pytest.raises(InvalidRequestError, match="the input_audio is not an audio file") as info:
        audio.duration(NOT_AUDIO[name], param="input_audio")
    assert info.value.param == "input_audio"


def test_an_upload_cannot_make_ffmpeg_read_local_files(tmp_path, monkeypatch):
    # FFmpeg's concat demuxer, picked by probing, would read secret.wav from the working directory
    (tmp_path / "secret.wav").write_bytes(audio.encode(tone(0.5), RATE, "wav"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidRequestError, match="not an audio file") as info:
        audio.decode(b"ffconcat version 1.0\nfile secret.wav\n")
    assert info.value.param == "file"


def test_a_file_cut_short_decodes_as_far_as_it_goes():
    mp3 = audio.encode(tone(1.0), RATE, "mp3")
    part = audio.decode(mp3[: len(mp3) // 2])
    assert 0.2 < len(part) / 16000 < 0.8


def test_sniff_format_names_each_encoded_format():
    got = {fmt: audio.sniff_format(audio.encode(tone(0.2), RATE, fmt)) for fmt in ("mp3", "opus", "aac", "flac", "wav")}
    assert got == {"mp3": "mp3", "opus": "ogg", "aac": "aac", "flac": "flac", "wav": "wav"}
    assert audio.sniff_format(NOT_AUDIO["text"]) is None and audio.sniff_format(b"") is None
    assert set(AUDIO_MEDIA_TYPES) == set(audio.AUDIO_FORMATS)


def test_word_error_rate_ignores_case_and_punctuation_and_counts_edits():
    wer = audio.word_error_rate
    assert wer("The quick brown fox, don't you think?", "the quick brown fox dont you think") == 0.0
    assert wer("the quick brown fox", "the quick fox") == 0.25  # a deletion
    assert wer("the quick brown fox", "a quick brown box jumps") == 0.75  # 2 substitutions, 1 insertion
    assert wer("", "") == 0.0 and wer("", "noise") == 1.0 and wer("two words", "") == 1.0
