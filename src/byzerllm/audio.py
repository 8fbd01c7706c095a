"""Audio files in and out: encode samples for ``/v1/audio/speech``, decode uploads for transcription.

Decoding and the compressed formats run on PyAV (FFmpeg's libraries in the ``av`` wheel, so no
``ffmpeg`` binary is needed); WAV and raw PCM are written with the standard library. Samples are
mono: float32 in [-1, 1] or int16. ``word_error_rate`` scores a transcript against a reference for
tests and benchmarks.
"""

from __future__ import annotations

import io
import re
import unicodedata
import wave

import numpy as np

from .errors import InvalidRequestError
from .types import AUDIO_FORMATS

# fmt -> (FFmpeg muxer, encoder, sample format the encoder takes)
_ENCODERS = {
    "mp3": ("mp3", "libmp3lame", "s16p"),
    "opus": ("ogg", "libopus", "s16"),
    "aac": ("adts", "aac", "fltp"),
    "flac": ("flac", "flac", "s16"),
}
# The demuxers ``decode`` may use. FFmpeg probes the data for its format, and some of the formats it
# would pick read other files (a concat script names local files, a playlist names URLs): an upload
# must not make the server read its own files, so only self-contained audio and video containers open.
_DEMUXERS = (
    "wav,w64,mp3,ogg,flac,aac,mov,matroska,webm,aiff,caf,au,amr,asf,mpeg,mpegts,avi,flv,ac3,eac3,"
    "dts,truehd,wv,ape,tta,mpc,mpc8,voc,rm,dsf,iff,xwma,oma,shn,gsm,loas,latm,spdif"
)
_DECODE_HINT = "send wav, mp3, flac, ogg/opus, m4a/mp4, webm or aac"


def check_format(fmt: str) -> None:
    """Raise ``InvalidRequestError`` (``param="response_format"``, listing ``AUDIO_FORMATS``) unless
    ``fmt`` is one of them."""
    if fmt not in AUDIO_FORMATS:
        raise InvalidRequestError(
            f"response_format {fmt!r} is not an audio format; accepted: {', '.join(AUDIO_FORMATS)}",
            param="response_format",
            accepted=list(AUDIO_FORMATS),
        )


def _int16(samples: np.ndarray) -> np.ndarray:
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise ValueError(f"mono samples are a 1-D array, not shape {samples.shape}")
    if samples.dtype == np.int16:
        return samples
    # 32767, not 32768: a full-scale 1.0 must not wrap round to -32768
    return (np.clip(samples.astype(np.float32), -1.0, 1.0) * 32767).astype(np.int16)


def output_rate(fmt: str, sample_rate: int) -> int:
    """The sample rate (Hz) ``encode`` writes ``fmt`` at for input at ``sample_rate``: the same,
    unless the encoder does not take it (Opus takes 8, 12, 16, 24 or 48 kHz, MP3 and AAC the MPEG
    rates); then the next higher rate it takes (22050 Hz becomes 24 kHz in Opus), or its highest."""
    check_format(fmt)
    if fmt not in _ENCODERS:
        return sample_rate
    import av

    rates = av.Codec(_ENCODERS[fmt][1], "w").audio_rates  # None: any rate (FLAC)
    if not rates or sample_rate in rates:
        return sample_rate
    higher = [r for r in rates if r >= sample_rate]
    return min(higher) if higher else max(rates)


def encode(samples: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """``samples`` (mono, float32 in [-1, 1] or int16) at ``sample_rate`` Hz as a file in ``fmt``,
    one of ``AUDIO_FORMATS``: ``wav`` 16-bit PCM, ``pcm`` the same samples without a header
    (little-endian), ``flac`` lossless 16-bit, ``mp3`` (LAME, VBR default quality), ``opus`` (Ogg
    Opus), ``aac`` (AAC-LC in ADTS frames, as OpenAI returns it). The compressed formats are
    resampled where the encoder needs it (``output_rate``). Raises ``InvalidRequestError``
    (``param="response_format"``) for another ``fmt``, ``ValueError`` for samples that are not 1-D.
    """
    check_format(fmt)
    pcm = _int16(samples)
    if fmt == "pcm":
        return pcm.astype("<i2").tobytes()
    if fmt == "wav":
        out = io.BytesIO()
        with wave.open(out, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(sample_rate)
            wav.writeframes(pcm.astype("<i2").tobytes())
        return out.getvalue()

    import av

    muxer, codec, _ = _ENCODERS[fmt]
    out = io.BytesIO()
    with av.open(out, mode="w", format=muxer) as container:
        stream = container.add_stream(codec, rate=output_rate(fmt, sample_rate), layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
        frame.sample_rate = sample_rate
        # the encoder's context resamples and cuts the samples into the frame size it needs
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def _not_audio(param: str, reason: str) -> InvalidRequestError:
    return InvalidRequestError(f"the {param} is not an audio file ({reason}); {_DECODE_HINT}", param=param)


def _open(data: bytes, param: str):
    import av

    if not data:
        raise _not_audio(param, "it is empty")
    try:
        container = av.open(
            io.BytesIO(data), mode="r", metadata_errors="ignore", options={"format_whitelist": _DEMUXERS}
        )
    except av.FFmpegError:
        # FFmpeg's own words ("Invalid data found when processing input") add nothing for the user
        raise _not_audio(param, f"FFmpeg recognised no audio container in its {len(data)} bytes") from None
    if not container.streams.audio:
        name = container.format.name
        container.close()
        raise _not_audio(param, f"its {name} container holds no audio stream")
    return container


def decode(data: bytes, sample_rate: int = 16000, param: str = "file") -> np.ndarray:
    """The first audio stream of the file ``data`` (any container and codec FFmpeg reads: wav, mp3,
    flac, ogg/opus, m4a/mp4, webm, aac...) as float32 mono samples in [-1, 1] at ``sample_rate``
    Hz (channels averaged). A file cut short is decoded as far as it goes. Raises
    ``InvalidRequestError`` (``param`` names the request field, e.g. "file") when ``data`` is empty,
    not audio (text, an image), a format that refers to other files (a playlist), or yields no
    samples."""
    import av

    container = _open(data, param)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    chunks: list[np.ndarray] = []
    try:
        stream = container.streams.audio[0]
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.InvalidDataError:
                    continue  # a damaged packet: skip it, as players do
                for frame in frames:
                    chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
        except av.FFmpegError as exc:
            if not chunks:  # damaged from the start; a file cut short keeps what came before
                raise _not_audio(param, f"decoding failed: {exc.strerror}") from None
        chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    finally:
        container.close()
    if not chunks:
        raise _not_audio(param, "no audio samples could be decoded")
    return np.concatenate(chunks).astype(np.float32, copy=False)


def probe(data: bytes, param: str = "file") -> tuple[float, int]:
    """``(seconds, sample_rate)`` of the audio file ``data``: the container's or stream's declared
    duration when it has one (WAV, MP3, FLAC, Ogg, MP4 headers), else the decoded samples counted
    (an ADTS or raw stream); the rate (Hz) of its first audio stream. Raises ``InvalidRequestError``
    (``param``) as ``decode`` does."""
    import av

    container = _open(data, param)
    try:
        stream = container.streams.audio[0]
        rate = int(stream.rate or 0)
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base), rate
        # an ADTS or raw stream has no header with a length; FFmpeg's estimate from the bit rate is
        # rough, so count the samples
        if container.format.name not in ("aac", "mp3") and container.duration is not None:
            return container.duration / av.time_base, rate
    finally:
        container.close()
    return len(decode(data, 16000, param)) / 16000, rate


def duration(data: bytes, param: str = "file") -> float:
    """Seconds of audio in the file ``data`` (``probe``)."""
    return probe(data, param)[0]


def sniff_format(data: bytes) -> str | None:
    """The file extension of the audio in ``data`` from its first bytes: "wav", "mp3", "flac",
    "ogg", "m4a", "mp4", "webm", "aac", "aiff", "amr"; None when not recognised. Cheap (no decoding):
    for naming an upload."""
    head = data[:16]
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: Matroska, of which WebM is the audio/video profile
        return "webm"
    if head[4:8] == b"ftyp":
        return "m4a" if head[8:12] in (b"M4A ", b"M4B ") else "mp4"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[:5] == b"#!AMR":
        return "amr"
    if head[:3] == b"ID3":
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF:
        if head[1] & 0xF6 == 0xF0:  # ADTS sync word, layer 0
            return "aac"
        if head[1] & 0xE0 == 0xE0 and head[1] & 0x06:  # MPEG audio frame sync, layer I-III
            return "mp3"
    return None


def _words(text: str) -> list[str]:
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"['’]", "", text)  # "don't" and "dont" are one word
    return "".join(" " if unicodedata.category(c).startswith(("P", "S")) else c for c in text).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word error rate of ``hypothesis`` against ``reference``: word substitutions, deletions and
    insertions (Levenshtein distance over words) divided by the reference's word count, after
    lower-casing and dropping punctuation (apostrophes join: "don't" is "dont"). 0.0 is a perfect
    match; it can exceed 1.0. An empty reference counts each hypothesis word as one error. Words are
    split at spaces, so text in a script without them (Chinese) is one word per run."""
    ref, hyp = _words(reference), _words(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1] / max(len(ref), 1)
