"""Byzer-LLM's chat-shaped calls of the speech, transcription and image tasks, translated once.

Byzer-LLM reaches these models through ``chat_oai`` with JSON in the message content (the quick
guide's 语音合成, 语音识别 and 文生图 sections, and the README's StableDiffusion section). Here that
form becomes a typed request (``SpeechRequest``, ``TranscriptionRequest``, ``ImageRequest``) and the
typed result becomes the text Byzer-LLM returned:

- speech: ``{"input", "voice", "response_format", "speed"}`` (or plain text) -> base64 audio;
  the format defaults to mp3, as in Byzer-LLM's OpenAI client.
- transcription: an audio part (``AudioPath`` in a prompt function, ``Audio.load_audio_from_path``
  in ``[{"audio": ...}, {"text": ...}]``, ``{"audio": base64, "type": "wav"}``) -> the whisper
  verbose JSON as a string (``json.loads`` gives text, task, language, duration, segments, words).
  Text beside the audio is not sent to a transcription model (it is an instruction for a chat
  model); ``llm_config`` may carry ``language``, ``prompt``, ``temperature``.
- image: ``{"input", "size", "quality", "n", "style"}`` -> the base64 PNG (a JSON list of
  ``{"img64"}`` when n > 1); plain text (the StableDiffusion form) with ``generation.*`` keys in
  ``llm_config`` -> a JSON list of ``{"img64": base64}``, ``batch_size * batch_count`` of them.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any

from ..backends.base import TASK_METHODS
from ..errors import InvalidRequestError, UnsupportedParameterError
from ..multimodal import read_file, split_data_url
from ..params import validate_messages
from ..types import (
    ImageRequest,
    ImageResponse,
    LLMResponse,
    SpeechRequest,
    SpeechResponse,
    Transcription,
    TranscriptionRequest,
)

TASK_KINDS = tuple(TASK_METHODS)
# images one request may ask for (OpenAI's /v1/images/generations takes n up to 10)
MAX_IMAGES = 10

# StableDiffusion's generation.* keys (README 001) -> ImageRequest fields
_IMAGE_KEYS = {
    "negative_prompt": "negative_prompt",
    "sampling_steps": "steps",
    "steps": "steps",
    "cfg_scale": "guidance_scale",
    "guidance_scale": "guidance_scale",
    "seed": "seed",
    "width": "width",
    "height": "height",
    "batch_size": "batch_size",
    "batch_count": "batch_count",
    "size": "size",
    "n": "n",
    "quality": "quality",
    "style": "style",
}
# keys of that table with no equivalent here: refused by name rather than silently dropped
_IMAGE_UNSUPPORTED = {
    "sampler_name": "the sampler is a deploy option: infer_params sampler=...",
    "enable_hires": "high-resolution fixing is not implemented",
    "upscaler_mode": "high-resolution fixing is not implemented",
    "scale_slider": "high-resolution fixing is not implemented",
    "enable_multidiff": "tiled (multi-diffusion) generation is not implemented",
    "views_batch_size": "tiled (multi-diffusion) generation is not implemented",
    "window_size": "tiled (multi-diffusion) generation is not implemented",
    "stride": "tiled (multi-diffusion) generation is not implemented",
    "init_image": "image-to-image is not implemented",
    "strength": "image-to-image is not implemented",
}
_PREFIXES = ("gen.", "generation.")


def serving_task(meta: dict[str, Any]) -> str | None:
    """The task a deployment's chat-shaped calls go to: "speech", "transcription" or "image" when it
    serves one of them and no chat (``get_meta()["tasks"]``), else None."""
    tasks = meta.get("tasks") or ["chat"]
    if "chat" in tasks:
        return None
    return next((t for t in tasks if t in TASK_KINDS), None)


def _config(*configs: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for config in configs:
        for key, value in (config or {}).items():
            for prefix in _PREFIXES:
                if key.startswith(prefix):
                    key = key[len(prefix) :]
                    break
            out[key] = value
    return out


def _last_user(conversations: Any) -> tuple[int, Any]:
    messages = validate_messages(conversations)
    for index in range(len(messages) - 1, -1, -1):
        if messages[index]["role"] == "user":
            return index, messages[index]["content"]
    raise InvalidRequestError("conversations has no user message", param="conversations")


def _json_object(content: Any) -> dict[str, Any] | None:
    if isinstance(content, str) and content.lstrip().startswith("{"):
        try:
            value = json.loads(content)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None
    return None


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict))


def _number(value: Any, param: str, kind: type, low: float | None = None, high: float | None = None) -> Any:
    """``value`` as ``kind`` (int or float) within ``[low, high]``; ``InvalidRequestError`` naming
    ``param`` otherwise (a string of digits is taken, as JSON in a message may carry one)."""
    try:
        if isinstance(value, bool) or value is None:
            raise ValueError
        number = kind(value)
    except (TypeError, ValueError):
        raise InvalidRequestError(f"{param} must be a number, got {value!r}", param=param) from None
    if (low is not None and number < low) or (high is not None and number > high):
        raise InvalidRequestError(f"{param} is {value!r}; accepted: {low} to {high}", param=param)
    return number


def _pick(config: dict[str, Any], known: set[str], task: str) -> dict[str, Any]:
    unknown = sorted(set(config) - known)
    if unknown:
        raise UnsupportedParameterError(
            f"llm_config key {unknown[0]!r} is not a {task} parameter; accepted: {', '.join(sorted(known))}",
            param=unknown[0],
            accepted=sorted(known),
        )
    return config


def speech_request(conversations: Any, *configs: dict[str, Any] | None) -> SpeechRequest:
    """The ``SpeechRequest`` of a chat-shaped TTS call (see the module docstring). Raises
    ``InvalidRequestError`` naming the bad field, ``UnsupportedParameterError`` for an
    ``llm_config`` key that is not a speech parameter."""
    index, content = _last_user(conversations)
    fields = _json_object(content) or {"input": _text(content)}
    fields = {**_pick(_config(*configs), {"voice", "response_format", "speed"}, "speech"), **fields}
    fields.pop("chunk_size", None)  # Byzer-LLM's streaming chunk size: whole files here
    allowed = {"input", "voice", "response_format", "speed"}
    for key in fields:
        if key not in allowed:
            raise InvalidRequestError(
                f"conversations[{index}].content has {key!r}; a speech request takes {', '.join(sorted(allowed))}",
                param=f"conversations[{index}].content.{key}",
            )
    if not isinstance(fields.get("input"), str) or not fields["input"].strip():
        raise InvalidRequestError("the text to speak is empty", param=f"conversations[{index}].content.input")
    return SpeechRequest(
        input=fields["input"],
        voice=fields.get("voice"),
        response_format=str(fields.get("response_format") or "mp3"),
        speed=_number(fields.get("speed", 1.0), "speed", float, 0.25, 4.0),
    )


def transcription_request(conversations: Any, *configs: dict[str, Any] | None) -> TranscriptionRequest:
    """The ``TranscriptionRequest`` of a chat-shaped whisper call: the last user message's audio.
    Raises ``InvalidRequestError`` when it has none or its base64 is broken,
    ``UnsupportedParameterError`` for an ``llm_config`` key that is not a transcription parameter."""
    index, content = _last_user(conversations)
    config = _pick(_config(*configs), {"language", "prompt", "temperature", "task"}, "transcription")
    url = None
    obj = _json_object(content)
    if obj is not None and isinstance(obj.get("audio"), str):
        audio = obj["audio"]
        url = audio if audio.startswith("data:") else f"data:audio/{obj.get('type', 'wav')};base64,{audio}"
    elif isinstance(content, list):
        parts = [p for p in content if isinstance(p, dict) and p.get("type") == "input_audio"]
        if parts:
            audio = parts[0].get("input_audio")
            data = audio.get("data") if isinstance(audio, dict) else None
            if not isinstance(data, str):
                raise InvalidRequestError(
                    "an input_audio part needs {'data': base64, 'format': ...}", param=f"conversations[{index}].content"
                )
            url = f"data:audio/{audio.get('format', 'wav')};base64,{data}"
    if url is None:
        raise InvalidRequestError(
            f"conversations[{index}] has no audio; a transcription model takes an audio part "
            "(AudioPath, Audio.load_audio_from_path, or {'audio': base64})",
            param=f"conversations[{index}].content",
        )
    try:
        audio_bytes = base64.b64decode(split_data_url(url, "audio")[1], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequestError(
            f"the audio is not base64 audio data ({exc})", param=f"conversations[{index}].content"
        ) from None
    return TranscriptionRequest(
        audio=audio_bytes,
        language=config.get("language"),
        prompt=config.get("prompt"),
        temperature=_number(config.get("temperature", 0.0), "temperature", float, 0.0, 1.0),
        task=str(config.get("task", "transcribe")),
    )


def image_request(conversations: Any, *configs: dict[str, Any] | None) -> tuple[ImageRequest, bool]:
    """The ``ImageRequest`` of a chat-shaped image call and whether the answer is the
    StableDiffusion list form (plain-text content). Raises ``InvalidRequestError`` naming the field,
    ``UnsupportedParameterError`` for a StableDiffusion key with no equivalent here."""
    index, content = _last_user(conversations)
    config = _config(*configs)
    for key in config:
        if key in _IMAGE_UNSUPPORTED:
            raise UnsupportedParameterError(f"generation.{key}: {_IMAGE_UNSUPPORTED[key]}", param=key)
    fields = {**_pick(config, set(_IMAGE_KEYS), "image generation")}
    obj = _json_object(content)
    if obj is not None:
        unknown = sorted(set(obj) - {"input", *_IMAGE_KEYS})
        if unknown:
            raise InvalidRequestError(
                f"conversations[{index}].content has {unknown[0]!r}; an image request takes input, "
                + ", ".join(sorted(_IMAGE_KEYS)),
                param=f"conversations[{index}].content.{unknown[0]}",
            )
        fields.update(obj)
        prompt = obj.get("input")
    else:
        prompt = _text(content)
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidRequestError("the image prompt is empty", param=f"conversations[{index}].content")
    values = {_IMAGE_KEYS[k]: v for k, v in fields.items() if k in _IMAGE_KEYS}
    size = values.pop("size", None)
    width, height = values.pop("width", None), values.pop("height", None)
    if width is not None or height is not None:
        if width is None or height is None:
            raise InvalidRequestError("generation.width and generation.height go together", param="width")
        size = f"{_number(width, 'width', int, 8)}x{_number(height, 'height', int, 8)}"
    n = 1
    for key in ("n", "batch_size", "batch_count"):
        n *= _number(values.pop(key, 1), key, int, 1, MAX_IMAGES)
    if n > MAX_IMAGES:
        raise InvalidRequestError(f"{n} images asked; at most {MAX_IMAGES} per request", param="n")
    seed = values.pop("seed", None)
    seed = None if seed is None else _number(seed, "seed", int)
    if values.get("steps") is not None:
        values["steps"] = _number(values["steps"], "sampling_steps", int, 1, 500)
    if values.get("guidance_scale") is not None:
        values["guidance_scale"] = _number(values["guidance_scale"], "cfg_scale", float, 0.0)
    request = ImageRequest(
        prompt=prompt,
        n=n,
        size=size,
        seed=None if seed is None or seed < 0 else seed,
        **{k: v for k, v in values.items() if v is not None},
    )
    return request, obj is None


def encode_images(images: list[bytes], listed: bool) -> str:
    """Byzer-LLM's answer text for generated PNGs: one base64 string, or a JSON list of
    ``{"img64": base64}`` (the StableDiffusion form, or more than one image)."""
    b64 = [base64.b64encode(img).decode() for img in images]
    if listed or len(b64) != 1:
        return json.dumps([{"img64": b} for b in b64])
    return b64[0]


def _response_metadata(cost: float) -> dict[str, Any]:
    return {
        "request_id": "",
        "input_tokens_count": 0,
        "generated_tokens_count": 0,
        "time_cost": cost,
        "first_token_time": cost,
        "speed": 0,
    }


class TasksMixin:
    """The speech, transcription and image-generation calls of ``ByzerLLM``, and ``chat_oai``'s
    path to them. Needs ``runtime``, ``_aruntime``, ``_model`` and ``get_meta`` from the client."""

    def speech(
        self,
        input: str,
        voice: str | None = None,
        response_format: str = "mp3",
        speed: float = 1.0,
        model: str | None = None,
    ) -> SpeechResponse:
        """Speak ``input`` with deployment ``model`` (a speech model: piper, OpenAI tts-1).
        ``voice``: one of ``get_meta()["voices"]`` (None: the model's default); ``response_format``:
        mp3 (the default), opus, aac, flac, wav or pcm (16-bit mono); ``speed`` 0.25-4.0. Returns a
        ``SpeechResponse`` (encoded ``audio`` bytes, ``format``, ``sample_rate`` Hz, ``duration`` s).
        Raises ``InvalidRequestError`` naming a bad field, ``ModelNotFoundError``."""
        request = SpeechRequest(input=input, voice=voice, response_format=response_format, speed=speed)
        return self.runtime.run(self._model(model), "speech", request)

    def transcribe(
        self,
        audio: bytes | str,
        language: str | None = None,
        prompt: str | None = None,
        temperature: float = 0.0,
        task: str = "transcribe",
        model: str | None = None,
    ) -> Transcription:
        """Transcribe ``audio`` (encoded bytes, or a file path) with deployment ``model`` (whisper).
        ``language``: ISO 639-1 code (None: detected); ``prompt``: text to continue; ``task``
        "transcribe" or "translate" (to English). Returns a ``Transcription`` (``to_dict()`` is
        whisper's verbose JSON: text, language, duration, segments, words; times in seconds).
        Raises ``InvalidRequestError`` (``param="file"``) for data that is not audio."""
        if isinstance(audio, str):
            audio = read_file(audio, "file")
        request = TranscriptionRequest(
            audio=audio, language=language, prompt=prompt, temperature=temperature, task=task
        )
        return self.runtime.run(self._model(model), "transcription", request)

    def generate_images(
        self,
        prompt: str,
        n: int = 1,
        size: str | None = None,
        negative_prompt: str | None = None,
        steps: int | None = None,
        guidance_scale: float | None = None,
        seed: int | None = None,
        model: str | None = None,
    ) -> ImageResponse:
        """Draw ``n`` images of ``prompt`` with deployment ``model`` (Stable Diffusion, DALL-E).
        ``size`` "WIDTHxHEIGHT" pixels (None: the model's default); ``steps`` denoising steps;
        ``guidance_scale`` CFG scale; ``seed`` makes the result repeatable. Returns an
        ``ImageResponse`` whose ``images`` are PNG bytes. Raises ``InvalidRequestError`` naming
        ``size``, ``n`` or ``prompt``."""
        request = ImageRequest(
            prompt=prompt,
            n=n,
            size=size,
            negative_prompt=negative_prompt,
            steps=steps,
            guidance_scale=guidance_scale,
            seed=seed,
        )
        return self.runtime.run(self._model(model), "image", request)

    async def async_run_task(self, task: str, request: Any, model: str | None = None) -> Any:
        """One typed request of ``task`` ("speech", "transcription", "image") for asyncio code."""
        runtime = await self._aruntime()
        return await runtime.arun(self._model(model), task, request)

    def _task_of(self, name: str) -> str | None:
        return serving_task(self.get_meta(model=name))

    def _task_chat(self, name: str, task: str, conversations: Any, *configs: dict[str, Any] | None) -> LLMResponse:
        """``chat_oai`` on a speech, transcription or image deployment (the module docstring)."""
        start = time.perf_counter()
        if task == "speech":
            request = speech_request(conversations, *configs)
            out = base64.b64encode(self.runtime.run(name, task, request).audio).decode()
            instruction: Any = request.input
        elif task == "transcription":
            request = transcription_request(conversations, *configs)
            out = json.dumps(self.runtime.run(name, task, request).to_dict(), ensure_ascii=True)
            instruction = "<audio>"
        else:
            request, listed = image_request(conversations, *configs)
            out = encode_images(self.runtime.run(name, task, request).images, listed)
            instruction = request.prompt
        meta = _response_metadata(time.perf_counter() - start)
        return LLMResponse(out, {"instruction": instruction, "model": name}, meta)
