"""Images and audio in prompts and messages.

``ImagePath`` / ``AudioPath`` mark a prompt-function argument as a file to attach.
``Image.load_image_from_path`` / ``Audio.load_audio_from_path`` read a file into Byzer-LLM's tagged
form, ``<_image_>data:image/png;base64,...</_image_>`` (``only_content=True``: the bare ``data:``
URL). The result can be placed in a prompt-function template, in a message's text, or in the
Byzer-LLM JSON message form (``json.dumps([{"image": image, "text": "..."}])``); each place turns
it into an OpenAI content part (``image_url`` with a ``data:`` URL, ``input_audio`` with base64
data and its format): templates through ``attachment_part``, the JSON form through
``legacy_parts``, tagged text through ``tagged_parts``.

Tags are ``<_name_>...</_name_>`` pairs, read by ``TagExtractor`` as Byzer-LLM does
(``utils/nontext.py``).
"""

from __future__ import annotations

import base64
import json
import mimetypes
import re
from dataclasses import dataclass, field
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


# ---------------------------------------------------------------------------------------------
# tags


@dataclass(eq=False)
class Tag:
    """One ``<_name_>...</_name_>`` pair. ``content`` is its text (leading blanks dropped) or, when
    it holds tags, a list of tags and text pieces; ``end_tag`` is ``""`` while unclosed; ``span``
    is its ``(start, end)`` character range in the source text."""

    start_tag: str
    end_tag: str = ""
    content: str | list[Tag | str] = ""
    parent: Tag | None = field(default=None, repr=False)
    span: tuple[int, int] = (0, 0)

    @property
    def text(self) -> str:
        """The content as one string (text pieces of nested content joined, tags left out)."""
        if isinstance(self.content, str):
            return self.content
        return "".join(c for c in self.content if isinstance(c, str))

    def is_pair(self, name: str) -> bool:
        """True for a closed ``<_name_>...</_name_>`` pair."""
        return self.start_tag == f"<_{name}_>" and self.end_tag == f"</_{name}_>"


_TAG = re.compile(r"<(/?)_[^>]*>")
_BLANKS = " \t\r\n"


class TagExtractor:
    """Reads the ``<_name_>...</_name_>`` tags of ``text`` into a tree (Byzer-LLM's
    ``TagExtractor``): ``extract()`` returns a root ``Tag`` whose ``content`` lists the top-level
    tags in order. Text outside tags is not kept; an end tag closes the innermost open tag,
    whatever its name."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.root_tag = Tag(start_tag="<_ROOT_>", end_tag="</_ROOT_>", content=[], span=(0, len(text)))
        self.is_extracted = False

    def extract(self) -> Tag:
        if self.is_extracted:
            return self.root_tag
        current, pos = self.root_tag, 0
        for m in _TAG.finditer(self.text):
            _add_text(current, self.text[pos : m.start()], self.root_tag)
            if m.group(1):
                if current is not self.root_tag:
                    current.end_tag = m.group(0)
                    current.span = (current.span[0], m.end())
                    current = current.parent or self.root_tag
            else:
                tag = Tag(start_tag=m.group(0), parent=current, span=(m.start(), m.end()))
                if not isinstance(current.content, list):
                    current.content = [current.content] if current.content else []
                current.content.append(tag)
                current = tag
            pos = m.end()
        _add_text(current, self.text[pos:], self.root_tag)
        self.is_extracted = True
        return self.root_tag

    def top_tags(self, *names: str) -> list[Tag]:
        """The closed top-level pairs named one of ``names``, in order."""
        return [t for t in self.extract().content if isinstance(t, Tag) and any(t.is_pair(n) for n in names)]


def _add_text(tag: Tag, piece: str, root: Tag) -> None:
    if tag is root:
        return
    piece = piece.lstrip(_BLANKS)
    if not piece:
        return
    if isinstance(tag.content, list):
        tag.content.append(piece)
    else:
        tag.content += piece


def _untag(value: str, name: str) -> str:
    start, end = f"<_{name}_>", f"</_{name}_>"
    if value.startswith(start) and value.endswith(end):
        return value[len(start) : -len(end)].strip()
    return value


def _without(text: str, tags: list[Tag]) -> str:
    for tag in reversed(tags):
        text = text[: tag.span[0]] + text[tag.span[1] :]
    return text.strip()


def read_file(path: str, param: str) -> bytes:
    """The bytes of the file at ``path``. Raises ``InvalidRequestError`` naming ``param`` when there
    is no such file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InvalidRequestError(f"file does not exist: {p}", param=param, path=str(p))
    return p.read_bytes()


def split_data_url(url: str, kind: str) -> tuple[str, str]:
    """``("png", base64)`` from ``data:image/png;base64,...``. Raises ``ValueError`` otherwise."""
    prefix = f"data:{kind}/"
    head, sep, data = url.partition(";base64,")
    if not url.startswith(prefix) or not sep:
        raise ValueError(f"Invalid {kind} data format: expected 'data:{kind}/<type>;base64,...'")
    return head[len(prefix) :], data


def _save(url: str, kind: str, output_path: str, auto_fix_suffix: bool) -> str:
    subtype, data = split_data_url(url, kind)
    path = Path(output_path)
    if auto_fix_suffix and path.suffix.lower() != f".{subtype}".lower():
        path = path.with_suffix(f".{subtype}")
    path.write_bytes(base64.b64decode(data))
    return str(path)


# ---------------------------------------------------------------------------------------------
# images and audio


class ImageData(str):
    """A loaded image: the tagged ``<_image_>data:...</_image_>`` form, or the bare ``data:`` URL
    when loaded with ``only_content=True`` (a str, so it JSON-serialises). ``url`` is the URL."""

    @property
    def url(self) -> str:
        return _untag(str(self), "image")


class AudioData(str):
    """A loaded audio file: ``<_audio_>data:audio/mp3;base64,...</_audio_>``, or the bare ``data:``
    URL (``only_content=True``). ``url``, ``format`` (``"mp3"``) and ``data`` (the base64) are its
    parts."""

    @property
    def url(self) -> str:
        return _untag(str(self), "audio")

    @property
    def format(self) -> str:
        return split_data_url(self.url, "audio")[0]

    @property
    def data(self) -> str:
        return split_data_url(self.url, "audio")[1]


class Image(TagExtractor):
    """``Image(text)`` reads the ``<_image_>`` tags of a message; the static methods load, find
    and save images."""

    def has_image(self) -> bool:
        """True when the text has a closed top-level ``<_image_>...</_image_>`` pair."""
        return bool(self.top_tags("image"))

    def to_content(self) -> list[dict[str, str]]:
        """``[{"image": data_url}, ..., {"text": rest}]``: one item per top-level ``<_image_>``
        tag in order (a path in a tag is read into a ``data:`` URL), then the text without those
        tags, stripped (always present, possibly ``""``). Raises ``InvalidRequestError`` for a
        missing file."""
        tags = [t for t in self.extract().content if isinstance(t, Tag) and t.start_tag == "<_image_>"]
        items: list[dict[str, str]] = [{"image": _image_url(t.text.strip())} for t in tags]
        items.append({"text": _without(self.text, tags)})
        return items

    @staticmethod
    def load_image_from_path(path: str, only_content: bool = False) -> ImageData:
        """Read an image file into ``<_image_>data:<mime>;base64,...</_image_>`` (``only_content``:
        the bare ``data:`` URL). The MIME type comes from the file name (``image/png`` when
        unknown). Raises ``InvalidRequestError`` naming a missing file."""
        mime = mimetypes.guess_type(path)[0] or "image/png"
        url = f"data:{mime};base64,{base64.b64encode(read_file(path, 'image_path')).decode()}"
        return ImageData(url if only_content else f"<_image_>{url}</_image_>")

    @staticmethod
    def convert_image_paths_from(text: str, start_tag: str = "<img>", end_tag: str = "</img>") -> str:
        """``text`` with each ``<img> path </img>`` (or the given tags) rewritten as
        ``<_image_>path</_image_>`` (the content stripped; it may span lines)."""
        pattern = re.escape(start_tag) + r"(.*?)" + re.escape(end_tag)
        return re.sub(pattern, lambda m: f"<_image_>{m.group(1).strip()}</_image_>", text, flags=re.DOTALL)

    @staticmethod
    def extract_image_paths(text: str, to_base64: bool = False) -> list[str]:
        """The paths in the top-level ``<_image_>`` (or ``<_img_>``) tags of ``text`` that do not
        hold a ``data:image/`` URL, stripped; with ``to_base64`` each is loaded with
        ``load_image_from_path`` (tagged form)."""
        tags = [
            t
            for t in Image(text).extract().content
            if isinstance(t, Tag)
            and t.start_tag in ("<_image_>", "<_img_>")
            and t.end_tag in ("</_image_>", "</_img_>")
            and isinstance(t.content, str)
            and not t.content.startswith("data:image/")
        ]
        paths = [t.content.strip() for t in tags]
        return [Image.load_image_from_path(p) for p in paths] if to_base64 else paths

    @staticmethod
    def save_image_to_path(image_data: str, output_path: str, auto_fix_suffix: bool = False) -> str:
        """Write a ``data:image/<type>;base64,...`` URL (or its tagged form) to ``output_path``
        and return the path written; ``auto_fix_suffix`` replaces a suffix that is not
        ``.<type>``. Raises ``ValueError`` for anything else."""
        return _save(_untag(image_data, "image"), "image", output_path, auto_fix_suffix)


class Audio(TagExtractor):
    """``Audio(text)`` reads the ``<_audio_>`` tags of a message; the static methods load, find
    and save audio."""

    def has_audio(self) -> bool:
        """True when the text has a closed top-level ``<_audio_>...</_audio_>`` pair."""
        return bool(self.top_tags("audio"))

    def to_content(self) -> list[dict[str, str]]:
        """``[{"audio": data_url}, ..., {"text": rest}]`` like ``Image.to_content``, except that
        the text item is left out when the rest is empty."""
        tags = [t for t in self.extract().content if isinstance(t, Tag) and t.start_tag == "<_audio_>"]
        items: list[dict[str, str]] = [{"audio": _audio_url(t.text.strip())} for t in tags]
        rest = _without(self.text, tags)
        return [*items, {"text": rest}] if rest else items

    @staticmethod
    def load_audio_from_path(path: str, only_content: bool = False) -> AudioData:
        """Read an audio file into ``<_audio_>data:audio/<ext>;base64,...</_audio_>``
        (``only_content``: the bare ``data:`` URL); the format is the file's suffix (``mp3`` when
        it has none). Raises ``InvalidRequestError`` naming a missing file."""
        fmt = Path(path).suffix.lstrip(".").lower() or "mp3"
        url = f"data:audio/{fmt};base64,{base64.b64encode(read_file(path, 'audio_path')).decode()}"
        return AudioData(url if only_content else f"<_audio_>{url}</_audio_>")

    @staticmethod
    def extract_audio_paths(text: str, to_base64: bool = False) -> list[str]:
        """The paths in the top-level ``<_audio_>`` tags of ``text`` that do not hold a
        ``data:audio/`` URL, stripped; with ``to_base64`` each is loaded (tagged form)."""
        tags = Audio(text).top_tags("audio")
        paths = [t.text.strip() for t in tags if not t.text.startswith("data:audio/")]
        return [Audio.load_audio_from_path(p) for p in paths] if to_base64 else paths

    @staticmethod
    def save_audio_to_path(audio_data: str, output_path: str, auto_fix_suffix: bool = False) -> str:
        """``Image.save_image_to_path`` for ``data:audio/<type>;base64,...``."""
        return _save(_untag(audio_data, "audio"), "audio", output_path, auto_fix_suffix)


def _image_url(value: str) -> str:
    if value.startswith(("data:", "http://", "https://")):
        return value
    return Image.load_image_from_path(value, only_content=True)


def _audio_url(value: str) -> str:
    if value.startswith("data:audio/"):
        return value
    return Audio.load_audio_from_path(value, only_content=True)


# ---------------------------------------------------------------------------------------------
# OpenAI content parts


def image_part(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": _untag(str(url), "image")}}


def audio_part(data: str, fmt: str = "mp3") -> dict[str, Any]:
    """An ``input_audio`` part from base64 ``data``, or from a (tagged) ``data:audio/`` URL whose
    type then gives the format."""
    data = _untag(str(data), "audio")
    if data.startswith("data:audio/"):
        fmt, data = split_data_url(data, "audio")
    return {"type": "input_audio", "input_audio": {"data": data, "format": fmt}}


ATTACHMENT_TYPES = (ImagePath, AudioPath, ImageData, AudioData)


def attachment_part(value: Any) -> dict[str, Any] | None:
    """The content part for an attachment value, or None for ordinary values."""
    if isinstance(value, ImagePath):
        return image_part(Image.load_image_from_path(value.value, only_content=True))
    if isinstance(value, AudioPath):
        return audio_part(Audio.load_audio_from_path(value.value, only_content=True))
    if isinstance(value, ImageData):
        return image_part(value.url)
    if isinstance(value, AudioData):
        return audio_part(value.url)
    return None


def tagged_parts(text: str) -> list[dict[str, Any]] | None:
    """OpenAI parts for a message text that carries top-level ``<_image_>...</_image_>`` or
    ``<_audio_>...</_audio_>`` pairs (what Byzer-LLM's clients do to user messages before calling
    the model): one ``image_url`` / ``input_audio`` part per tag in text order, then the text
    without the tags as a ``text`` part (left out when empty). A tag may hold a ``data:`` URL, an
    http(s) image URL or a file path, which is read. None when the text has no such tag.

    Raises ``InvalidRequestError`` naming a file that does not exist, ``ValueError`` for a tag
    holding a ``data:`` URL that is not base64 audio.
    """
    tags = TagExtractor(text).top_tags("image", "audio")
    if not tags:
        return None
    parts = [
        image_part(_image_url(t.text.strip())) if t.is_pair("image") else audio_part(_audio_url(t.text.strip()))
        for t in tags
    ]
    rest = _without(text, tags)
    return [*parts, {"type": "text", "text": rest}] if rest else parts


_LEGACY_KEYS = {"image", "text", "audio", "type", "image_url", "input_audio"}


def legacy_parts(content: str) -> list[dict[str, Any]] | None:
    """Parts for the Byzer-LLM JSON message form ``[{"image": ..., "text": ...}, ...]``; None when
    ``content`` is ordinary text (including JSON that carries no image or audio). Image and audio
    values may be tagged (``<_image_>...</_image_>``), as ``load_image_from_path`` returns them;
    audio may also be ``{"data": base64, "format": "mp3"}``."""
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
            if isinstance(audio, dict):
                parts.append(audio_part(audio["data"], audio.get("format", "mp3")))
            else:
                parts.append(audio_part(audio))
        if item.get("type") == "image_url":
            url = item["image_url"] if isinstance(item["image_url"], dict) else {"url": item["image_url"]}
            parts.append({"type": "image_url", "image_url": {**url, "url": _untag(str(url["url"]), "image")}})
        elif item.get("type") == "input_audio":
            parts.append({"type": "input_audio", "input_audio": item["input_audio"]})
        if "text" in item:
            parts.append({"type": "text", "text": item["text"]})
    return parts
