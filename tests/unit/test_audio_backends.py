"""The speech backends in-process on the built-in models: Piper (en_US-joe-medium) speaks, Whisper
(tiny.en on faster-whisper) transcribes what it said."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from byzerllm.audio import decode, word_error_rate
from byzerllm.backends import create_backend
from byzerllm.backends.models import resolve_model_path
from byzerllm.backends.whisper import temperatures
from byzerllm.errors import InvalidRequestError, ModelPathError, UnsupportedParameterError
from byzerllm.types import ChatRequest, SpeechRequest, TranscriptionRequest

SENTENCE = "Please call Stella and ask her to bring these things with her from the store."


@pytest.fixture(scope="module")
def piper():
    return create_backend("piper", "builtin:piper-joe", {"n_threads": 1})


@pytest.fixture(scope="module")
def whisper():
    return create_backend("faster_whisper", "builtin:whisper-tiny.en", {"cpu_threads": 1})


@pytest.fixture(scope="module")
def spoken(piper):
    return piper.speech(SpeechRequest(SENTENCE, response_format="wav"))


@pytest.fixture(scope="module")
def heard(whisper, spoken):
    return whisper.transcribe(TranscriptionRequest(spoken.audio))


def test_piper_speaks_a_sentence_as_a_wav_of_plausible_length(spoken):
    assert spoken.format == "wav" and spoken.sample_rate == 22050
    samples = decode(spoken.audio, spoken.sample_rate)
    assert len(samples) / 22050 == pytest.approx(spoken.duration, abs=0.01)
    assert 2.5 < spoken.duration < 8.0  # 15 words at a speaking pace of 2-5 words a second
    assert 0.5 < abs(samples).max() <= 1.0  # piper normalises each sentence to full scale
    assert spoken.time_cost > 0


def test_piper_encodes_mp3_and_raw_pcm(piper):
    mp3 = piper.speech(SpeechRequest("Good morning.", response_format="mp3"))
    assert mp3.audio[:3] == b"ID3" or mp3.audio[0] == 0xFF
    assert len(decode(mp3.audio, 16000)) / 16000 == pytest.approx(mp3.duration, abs=0.1)
    pcm = piper.speech(SpeechRequest("Good morning.", response_format="pcm"))
    assert len(pcm.audio) == 2 * round(pcm.duration * pcm.sample_rate)
    opus = piper.speech(SpeechRequest("Good morning.", response_format="opus"))
    assert opus.audio[:4] == b"OggS" and opus.sample_rate == 24000


def test_piper_lists_its_voices_and_openai_names_speak_with_the_default(piper):
    meta = piper.get_meta()
    assert meta["tasks"] == ["speech"] and meta["sample_rate"] == 22050
    assert {"en_US-joe-medium", "joe", "alloy", "nova", "shimmer", "coral"} <= set(meta["voices"])
    assert meta["default_voice"] == "en_US-joe-medium" and meta["voice_aliases"]["alloy"] == "en_US-joe-medium"
    for voice in (None, "joe", "Alloy", "en_US-joe-medium"):
        assert piper.speech(SpeechRequest("Yes.", voice=voice)).duration > 0.2


def test_speed_scales_the_length(piper):
    slow, normal, fast = (piper.speech(SpeechRequest(SENTENCE, speed=s)).duration for s in (0.5, 1.0, 2.0))
    # 4 times in phoneme length; measured 2.6-3.3, as each phoneme and pause lasts at least a frame
    assert slow > normal > fast and 2.0 < slow / fast < 4.5


@pytest.mark.parametrize(
    ("request_fields", "param", "message"),
    [
        ({"voice": "darth"}, "voice", "voice 'darth' is not known.*en_US-joe-medium, alloy"),
        ({"speed": 0.1}, "speed", "out of range 0.25-4.0"),
        ({"speed": 4.5}, "speed", "out of range"),
        ({"speed": math.nan}, "speed", "out of range"),
        ({"input": ""}, "input", "input is empty"),
        ({"input": "   \n"}, "input", "input is empty"),
        ({"input": "..."}, "input", "nothing to speak"),
        ({"input": "word " * 1000}, "input", "over the 4096"),
        ({"response_format": "ogg"}, "response_format", "accepted: mp3, opus"),
    ],
)
def test_piper_names_the_field_of_a_bad_request(piper, request_fields, param, message):
    fields = {"input": "Hello.", **request_fields}
    with pytest.raises(InvalidRequestError, match=message) as info:
        piper.speech(SpeechRequest(**fields))
    assert info.value.param == param


def test_a_folder_of_voices_serves_each_with_its_speaker_name(tmp_path):
    voice = Path(resolve_model_path("builtin:piper-joe"))
    for name in ("en_US-joe-medium", "en_GB-alan-low"):  # the same model under two names
        (tmp_path / f"{name}.onnx").symlink_to(voice)
        (tmp_path / f"{name}.onnx.json").symlink_to(f"{voice}.json")
    (tmp_path / "stray.onnx").write_bytes(b"")  # no config beside it: not a voice
    backend = create_backend("piper", str(tmp_path), {"default_voice": "en_US-joe-medium", "n_threads": 1})
    meta = backend.meta()
    assert meta["voices"][:2] == ["en_GB-alan-low", "en_US-joe-medium"]
    assert meta["voice_aliases"]["alan"] == "en_GB-alan-low" and meta["voice_aliases"]["nova"] == "en_US-joe-medium"
    assert backend.speech(SpeechRequest("Hi.", voice="alan")).duration > 0.1
    with pytest.raises(InvalidRequestError, match="default_voice") as info:
        create_backend("piper", str(tmp_path), {"default_voice": "bob"})
    assert info.value.param == "default_voice"


def test_piper_refuses_a_path_without_voices_an_unknown_option_and_chat(tmp_path, piper):
    with pytest.raises(ModelPathError, match="no Piper voice"):
        create_backend("piper", str(tmp_path), {})
    with pytest.raises(UnsupportedParameterError):
        create_backend("piper", "builtin:piper-joe", {"length_scale": 2})
    with pytest.raises(InvalidRequestError, match="serves speech, not chat") as info:
        next(iter(piper.stream(ChatRequest(messages=[{"role": "user", "content": "hi"}]))))
    assert info.value.param == "model"


def test_whisper_transcribes_what_piper_said(heard, spoken):
    assert word_error_rate(SENTENCE, heard.text) <= 0.2, heard.text
    assert heard.task == "transcribe" and heard.language == "english"
    assert heard.duration == pytest.approx(spoken.duration, abs=0.05)
    assert heard.time_cost > 0 and "time_cost" not in heard.to_dict()


def test_whisper_verbose_json_has_every_segment_and_word_field(heard):
    assert heard.segments and heard.text == "".join(s["text"] for s in heard.segments).strip()
    keys = {"id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob", "compression_ratio"}
    for index, seg in enumerate(heard.segments):
        assert keys | {"no_speech_prob"} == set(seg) and seg["id"] == index
        assert 0 <= seg["start"] <= seg["end"] <= heard.duration + 0.1
        assert seg["tokens"] and all(isinstance(t, int) for t in seg["tokens"])
    assert len(heard.words) >= 10
    starts = [w["start"] for w in heard.words]
    assert starts == sorted(starts) and 0 <= starts[0] and heard.words[-1]["end"] <= heard.duration + 0.1
    for word in heard.words:
        assert set(word) == {"word", "start", "end"} and word["word"] == word["word"].strip() and word["word"]
        assert word["start"] <= word["end"]


def test_whisper_reads_mp3_and_leaves_words_out_when_not_asked(whisper, piper):
    mp3 = piper.speech(SpeechRequest("Good morning, everyone.", response_format="mp3"))
    out = whisper.transcribe(TranscriptionRequest(mp3.audio, language="English", word_timestamps=False))
    assert word_error_rate("Good morning, everyone.", out.text) <= 0.34 and out.words == []


@pytest.mark.parametrize(
    ("request_fields", "param", "message"),
    [
        ({"audio": b"this is not a recording"}, "file", "the file is not an audio file"),
        ({"audio": b""}, "file", "is empty"),
        ({"language": "fr"}, "language", "English-only"),
        ({"task": "summarise"}, "task", "accepted: transcribe, translate"),
        ({"temperature": 1.5}, "temperature", "out of range 0-1"),
    ],
)
def test_whisper_names_the_field_of_a_bad_request(whisper, spoken, request_fields, param, message):
    fields = {"audio": spoken.audio, **request_fields}
    with pytest.raises(InvalidRequestError, match=message) as info:
        whisper.transcribe(TranscriptionRequest(**fields))
    assert info.value.param == param


def test_whisper_meta_and_temperature_schedule(whisper):
    meta = whisper.get_meta()
    assert meta["tasks"] == ["transcription"] and meta["languages"] == ["en"] and meta["multilingual"] is False
    assert meta["sample_rate"] == 16000 and meta["compute_type"].startswith("int8")
    assert meta["options"]["beam_size"] == 5
    assert temperatures(0.0) == (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    assert temperatures(0.5) == (0.5, 0.7, 0.9) and temperatures(1.0) == (1.0,)
