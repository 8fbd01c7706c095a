"""``POST /v1/audio/speech`` and ``POST /v1/audio/transcriptions`` / ``/v1/audio/translations``:
OpenAI's audio endpoints, served by speech (piper, tts-1) and transcription (whisper) deployments.

Transcriptions take OpenAI's multipart form and answer in its ``response_format``s: ``json``
(``{"text"}``), ``text``, ``srt``, ``vtt`` and ``verbose_json`` (language, duration, and
``segments`` and/or ``words`` as ``timestamp_granularities[]`` asks; segments when it is not given).
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import PlainTextResponse, Response

from ...errors import InvalidRequestError
from ...types import AUDIO_MEDIA_TYPES, SpeechRequest, TranscriptionRequest
from ..responses import TranscriptionResponse, VerboseTranscriptionResponse
from ..schemas import SpeechBody
from ..state import ServerDep
from .common import MODEL_ERRORS, error_responses

SPEECH = "/v1/audio/speech"
TRANSCRIPTIONS = "/v1/audio/transcriptions"
TRANSLATIONS = "/v1/audio/translations"
TRANSCRIPTION_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")

router = APIRouter()


def _audio_body() -> dict[int, Any]:
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        200: {
            "description": "The encoded audio.",
            "content": {t: binary for t in sorted(set(AUDIO_MEDIA_TYPES.values()))},
        }
    }


@router.post(
    SPEECH,
    response_class=Response,
    responses={**_audio_body(), **error_responses(*MODEL_ERRORS, json_route=False)},
)
async def speech(body: SpeechBody, srv: ServerDep) -> Response:
    start = time.perf_counter()
    request = SpeechRequest(
        input=body.input,
        voice=body.voice,
        response_format=body.response_format,
        speed=body.speed,
        instructions=body.instructions,
    )
    out = await srv.timed(srv.llm.async_run_task("speech", request, model=srv.deployment(body.model)))
    srv.metrics.done(SPEECH, body.model, time.perf_counter() - start, None, {})
    return Response(out.audio, media_type=AUDIO_MEDIA_TYPES[out.format])


async def _transcribe(
    srv: Any,
    endpoint: str,
    task: str,
    file: UploadFile,
    model: str,
    language: str | None,
    prompt: str | None,
    response_format: str,
    temperature: float,
    granularities: list[str],
) -> Any:
    if response_format not in TRANSCRIPTION_FORMATS:
        raise InvalidRequestError(
            f"response_format {response_format!r}; accepted: {', '.join(TRANSCRIPTION_FORMATS)}",
            param="response_format",
        )
    bad = sorted(set(granularities) - {"word", "segment"})
    if bad:
        raise InvalidRequestError(
            f"timestamp_granularities has {bad[0]!r}; accepted: word, segment", param="timestamp_granularities"
        )
    data = await file.read()
    if not data:
        raise InvalidRequestError("the audio file is empty", param="file")
    start = time.perf_counter()
    kinds = set(granularities) or {"segment"}
    request = TranscriptionRequest(
        audio=data,
        language=language or None,
        prompt=prompt or None,
        temperature=temperature,
        task=task,
        # word times cost a second alignment pass: only when they are sent back
        word_timestamps=response_format == "verbose_json" and "word" in kinds,
    )
    out = await srv.timed(srv.llm.async_run_task("transcription", request, model=srv.deployment(model)))
    srv.metrics.done(endpoint, model, time.perf_counter() - start, None, {})
    if response_format == "text":
        return PlainTextResponse(out.text.strip() + "\n")
    if response_format in ("srt", "vtt"):
        return PlainTextResponse(subtitles(out.segments, response_format))
    if response_format == "json":
        return TranscriptionResponse(text=out.text.strip())
    return VerboseTranscriptionResponse(
        task=out.task,
        language=out.language,
        duration=out.duration,
        text=out.text.strip(),
        segments=out.segments if "segment" in kinds else None,
        words=out.words if "word" in kinds else None,
    )


_FORM_RESPONSES = {
    200: {
        "description": "json and verbose_json as JSON; text, srt and vtt as text/plain.",
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        {"$ref": "#/components/schemas/TranscriptionResponse"},
                        {"$ref": "#/components/schemas/VerboseTranscriptionResponse"},
                    ]
                }
            },
            "text/plain": {"schema": {"type": "string"}},
        },
    },
    **error_responses(*MODEL_ERRORS),
}


@router.post(TRANSCRIPTIONS, response_model=None, responses=_FORM_RESPONSES)
async def transcriptions(
    srv: ServerDep,
    file: Annotated[UploadFile, File(description="the audio file (wav, mp3, flac, ogg, m4a, webm)")],
    model: Annotated[str, Form(min_length=1)],
    language: Annotated[str | None, Form(description="ISO 639-1 code")] = None,
    prompt: Annotated[str | None, Form()] = None,
    response_format: Annotated[str, Form()] = "json",
    temperature: Annotated[float, Form(ge=0, le=1)] = 0.0,
    granularities: Annotated[list[str], Form(alias="timestamp_granularities[]")] = [],  # noqa: B006
    granularities_plain: Annotated[list[str], Form(alias="timestamp_granularities")] = [],  # noqa: B006
) -> Any:
    return await _transcribe(
        srv,
        TRANSCRIPTIONS,
        "transcribe",
        file,
        model,
        language,
        prompt,
        response_format,
        temperature,
        [*granularities, *granularities_plain],
    )


@router.post(TRANSLATIONS, response_model=None, responses=_FORM_RESPONSES)
async def translations(
    srv: ServerDep,
    file: Annotated[UploadFile, File(description="the audio file")],
    model: Annotated[str, Form(min_length=1)],
    prompt: Annotated[str | None, Form()] = None,
    response_format: Annotated[str, Form()] = "json",
    temperature: Annotated[float, Form(ge=0, le=1)] = 0.0,
) -> Any:
    return await _transcribe(
        srv, TRANSLATIONS, "translate", file, model, None, prompt, response_format, temperature, ["segment"]
    )


def subtitles(segments: list[dict[str, Any]], kind: Literal["srt", "vtt"] | str) -> str:
    """Segments as SubRip (``srt``: numbered cues, ``HH:MM:SS,mmm``) or WebVTT (``vtt``: a
    ``WEBVTT`` header, ``HH:MM:SS.mmm``)."""
    sep = "," if kind == "srt" else "."

    def stamp(seconds: float) -> str:
        ms = round(max(seconds, 0.0) * 1000)
        return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"

    cues = [
        (f"{i}\n" if kind == "srt" else "") + f"{stamp(s['start'])} --> {stamp(s['end'])}\n{s['text'].strip()}\n"
        for i, s in enumerate(segments, 1)
    ]
    return ("WEBVTT\n\n" if kind == "vtt" else "") + "\n".join(cues)
