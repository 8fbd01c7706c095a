"""Images and audio in prompts and messages.

``ImagePath`` / ``AudioPath`` mark a prompt-function argument as a file to attach;
``Image.load_image_from_path`` / ``Audio.load_audio_from_path`` read a file into a data string
that can be placed in a template or in the Byzer-LLM JSON message form
(``json.dumps([{"image": image, "text": "..."}])``). Both become OpenAI content parts
(``image_url`` with a ``data:`` URL, ``input_audio`` with base64 data).
"""

from __future__ import annotations

import base64
import json
import mimetypes
from pathlib import Path
from typing import Any

import pydantic

from .errors import InvalidRequestError


class ImagePath(pydantic.BaseModel):
    """An image file to attach to a prompt: ``ImagePath(value="/path/cat.png")``."""

    value: str


class AudioPath(pydantic.BaseModel):
    """An audio file to attach to a prompt: ``AudioPath(value="/path/talk.mp3")``."""

    value: str


class ImageData(str):
    """A ``data:image/...;base64,...`` URL (a str, so it JSON-serialises)."""


class AudioData(str):
    """Base64 audio with its format in ``.format`` (a str, so it JSON-serialises)."""

    format: str = "mp3"


def _read(path: str, param: str) -> bytes:
    p = Path(path).expanduser()
    if not p.is_file():
        raise InvalidRequestError(f"file does not exist: {p}", param=param, path=str(p))
    return p.read_bytes()


class Image:
    @staticmethod
    def load_image_from_path(path: str) -> ImageData:
        """Read an image file into a ``data:`` URL. Raises ``InvalidRequestError`` naming a
        missing file."""
        mime = mimetypes.guess_type(path)[0] or "image/png"
        return ImageData(f"data:{mime};base64,{base64.b64encode(_read(path, 'image_path')).decode()}")


class Audio:
    @staticmethod
    def load_audio_from_path(path: str, only_content: bool = False) -> AudioData | dict[str, str]:
        """Read an audio file as base64; ``only_content=False`` returns ``{"data", "format"}``."""
        data = AudioData(base64.b64encode(_read(path, "audio_path")).decode())
        data.format = Path(path).suffix.lstrip(".").lower() or "mp3"
        return data if only_content else {"data": str(data), "format": data.format}


def image_part(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def audio_part(data: str, fmt: str = "mp3") -> dict[str, Any]:
    return {"type": "input_audio", "input_audio": {"data": data, "format": fmt}}


ATTACHMENT_TYPES = (ImagePath, AudioPath, ImageData, AudioData)


def attachment_part(value: Any) -> dict[str, Any] | None:
    """The content part for an attachment value, or None for ordinary values."""
    if isinstance(value, ImagePath):
        return image_part(Image.load_image_from_path(value.value))
    if isinstance(value, AudioPath):
        audio = Audio.load_audio_from_path(value.value, only_content=True)
        return audio_part(str(audio), audio.format)
    if isinstance(value, ImageData):
        return image_part(str(value))
    if isinstance(value, AudioData):
        return audio_part(str(value), value.format)
    return None


_LEGACY_KEYS = {"image", "text", "audio", "type", "image_url", "input_audio"}


def legacy_parts(content: str) -> list[dict[str, Any]] | None:
    """Parts for the Byzer-LLM JSON message form ``[{"image": ..., "text": ...}, ...]``; None when
    ``content`` is ordinary text (including JSON that carries no image or audio)."""
    if not content.startswith("["):
        return None
    try:
        items = json.loads(content)
    except json.JSONDecodeError:
        return None
    if not isinstance(items, list) or not items:
        return None
    if not all(isinstance(i, dict) and set(i) <= _LEGACY_KEYS for i in items):
        return None
    if not any(k in i for i in items for k in ("image", "audio", "image_url", "input_audio")):
        return None
    parts: list[dict[str, Any]] = []
    for item in items:
        if "image" in item:
            parts.append(image_part(item["image"]))
        if "audio" in item:
            audio = item["audio"]
            parts.append(audio_part(audio["data"], audio.get("format", "mp3")) if isinstance(audio, dict)
                         else audio_part(audio))
        if item.get("type") in ("image_url", "input_audio"):
            parts.append({k: v for k, v in item.items() if k in ("type", "image_url", "input_audio")})
        if "text" in item:
            parts.append({"type": "text", "text": item["text"]})
    return parts
