"""Translation of the Byzer-LLM legacy parameters into the internal schema.

This is the one edge where ``llm_config`` / ``gen.*`` / ``generation.*`` keys, ``infer_params``
with ``backend.*`` / ``saas.*`` prefixes and string values from the command line are read;
nothing deeper sees them.
"""

from __future__ import annotations

import difflib
import logging
from typing import Any

from .errors import InvalidRequestError, UnsupportedParameterError
from .multimodal import legacy_parts, tagged_parts
from .types import ChatRequest

ROLES = ("system", "user", "assistant", "tool")

# legacy llm_config key (prefix stripped) -> ChatRequest field
_FIELD_ALIASES = {
    "max_length": "max_tokens",
    "max_tokens": "max_tokens",
    "max_new_tokens": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "stop": "stop",
    "stop_words": "stop",
    "seed": "seed",
}
# keys that only steer the client (streaming style) or that real callers pass for their own event
# callbacks (auto-coder's ``human_as_model``): the real package ignores them, so do we
IGNORED_KEYS = frozenset({"incremental_output", "stream", "human_as_model"})
# generation keys the real package's engines read (its vLLM, transformers and SaaS backends): a
# backend of ours applies those it has (``Backend.request_options``) and ignores the rest, as the
# real engines ignore the keys they do not read
ENGINE_KEYS = frozenset(
    {
        "top_k",
        "min_p",
        "repetition_penalty",
        "presence_penalty",
        "frequency_penalty",
        "stop_token_ids",
        "n",
        "best_of",
        "length_penalty",
        "early_stopping",
        "skip_special_tokens",
        "spaces_between_special_tokens",
        "include_stop_str_in_output",
        "prompt_logprobs",
        "logits_processors",
        "ignore_eos",
        "lora_name",
        "lora_int_id",
        "adapter_name_or_path",
    }
)
# the typed keys of ``build_chat_request`` (prefixes stripped)
TYPED_KEYS = frozenset(
    {
        *_FIELD_ALIASES,
        "response_format",
        "tools",
        "tool_choice",
        "continue_final_message",
        "response_prefix",
        "request_id",
    }
)
_PREFIXES = ("gen.", "generation.")
_TRUE = (True, "true", "True", "1", 1)
log = logging.getLogger("byzerllm.params")


def closest(key: str, known: Any) -> str | None:
    """The known name ``key`` is most likely a typo of (difflib ratio >= 0.75), or None."""
    match = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
    return match[0] if match else None


def unknown_key_error(message: str, key: str, known: Any) -> UnsupportedParameterError:
    """The error for an unknown ``key`` (``message`` names it): the closest accepted name, then all."""
    near = closest(key, known)
    hint = f"; did you mean {near!r}?" if near else ""
    return UnsupportedParameterError(
        f"{message}{hint}; accepted: {', '.join(sorted(known))}", param=key, accepted=sorted(known)
    )


def _strip(key: str, prefixes: tuple[str, ...]) -> str:
    for prefix in prefixes:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def _number(name: str, value: Any, kind: type, low: float | None = None, high: float | None = None):
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidRequestError(f"{name} must be a {kind.__name__}, got {value!r}", param=name)
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise InvalidRequestError(f"{name} must be a {kind.__name__}, got {value!r}", param=name) from None
    if kind is int and float(value) != number:
        raise InvalidRequestError(f"{name} must be an integer, got {value!r}", param=name)
    if (low is not None and number < low) or (high is not None and number > high):
        raise InvalidRequestError(f"{name} must be between {low} and {high}, got {value!r}", param=name)
    return number


def check_text(text: str, param: str) -> None:
    """Raise ``InvalidRequestError`` naming ``param`` when ``text`` is not valid Unicode (a lone
    surrogate such as ``"\\ud800"``, which JSON can carry but UTF-8 cannot); the message holds the
    position, not the text."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequestError(
            f"{param} is not valid Unicode: a lone surrogate U+{ord(text[exc.start]):04X} at character {exc.start}",
            param=param,
        ) from None


def validate_messages(conversations: Any) -> list[dict[str, Any]]:
    """Check OpenAI-shaped messages: a non-empty list of ``{"role", "content"}`` dicts.

    Raises ``InvalidRequestError`` naming the first bad message (``conversations[i].field``).
    """
    if not isinstance(conversations, list) or not conversations:
        raise InvalidRequestError("conversations must be a non-empty list of messages", param="conversations")
    out = []
    for i, msg in enumerate(conversations):
        if not isinstance(msg, dict):
            raise InvalidRequestError(
                f"conversations[{i}] must be a dict with role and content", param=f"conversations[{i}]"
            )
        role = msg.get("role")
        if role not in ROLES:
            raise InvalidRequestError(
                f"conversations[{i}].role is {role!r}; accepted roles: {', '.join(ROLES)}",
                param=f"conversations[{i}].role",
            )
        content = msg.get("content")
        if content is None and not msg.get("tool_calls"):
            raise InvalidRequestError(f"conversations[{i}].content is missing", param=f"conversations[{i}].content")
        if isinstance(content, str):
            check_text(content, f"conversations[{i}].content")
            parts = legacy_parts(content)
            if parts is None and role == "user" and ("<_image_>" in content or "<_audio_>" in content):
                try:  # Byzer-LLM's tagged attachments (``Image.load_image_from_path``) become parts
                    parts = tagged_parts(content)
                except ValueError as exc:
                    raise InvalidRequestError(
                        f"conversations[{i}].content: {exc}", param=f"conversations[{i}].content"
                    ) from None
            if parts is not None:
                msg = {**msg, "content": parts}
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    check_text(part["text"], f"conversations[{i}].content[{j}].text")
        elif content is not None:
            raise InvalidRequestError(
                f"conversations[{i}].content must be a string or a list of parts", param=f"conversations[{i}].content"
            )
        out.append(dict(msg))
    return out


def build_chat_request(conversations: Any, *configs: dict[str, Any] | None) -> ChatRequest:
    """Build a ``ChatRequest`` from messages and legacy configs, later configs winning.

    Known keys (with or without ``gen.`` / ``generation.``): max_length / max_tokens,
    temperature (0-2), top_p (0-1), stop (str or list), seed, ``response_format`` (OpenAI's
    shape), ``continue_final_message`` and its Byzer-LLM name ``response_prefix`` (the last
    message is an assistant message the model continues), ``request_id`` (the id ``abort`` takes).
    ``IGNORED_KEYS`` are dropped (debug log). Other keys go to ``ChatRequest.extra``, where the
    backend applies the ones it has, ignores the real engines' other keys (``ENGINE_KEYS``) and
    refuses the rest by name (see docs/client.md, "Parameter policy").
    """
    request = ChatRequest(messages=validate_messages(conversations))
    for config in configs:
        if not config:
            continue
        if not isinstance(config, dict):
            raise InvalidRequestError(f"llm_config must be a dict, got {type(config).__name__}", param="llm_config")
        for raw_key, value in config.items():
            key = _strip(raw_key, _PREFIXES)
            if key in IGNORED_KEYS:
                log.debug("llm_config key %r is ignored", raw_key)
                continue
            target = _FIELD_ALIASES.get(key)
            if target == "max_tokens":
                request.max_tokens = _number(raw_key, value, int, 1)
            elif target == "temperature":
                request.temperature = _number(raw_key, value, float, 0.0, 2.0)
            elif target == "top_p":
                request.top_p = _number(raw_key, value, float, 0.0, 1.0)
            elif target == "seed":
                request.seed = _number(raw_key, value, int)
            elif key == "response_format":
                if not isinstance(value, dict) or "type" not in value:
                    raise InvalidRequestError(
                        'response_format must be a dict like {"type": "json_object"}', param="response_format"
                    )
                request.response_format = value
            elif key in ("tools", "tool_choice"):
                if key == "tools" and (not isinstance(value, list) or not all(isinstance(t, dict) for t in value)):
                    raise InvalidRequestError("tools must be a list of OpenAI tool schemas", param="tools")
                setattr(request, key, value)
            elif key in ("continue_final_message", "response_prefix"):
                request.continue_final_message = value in _TRUE
            elif key == "request_id":
                if not isinstance(value, str) or not value:
                    raise InvalidRequestError(f"{raw_key} must be a non-empty string", param=raw_key)
                request.request_id = value
            elif target == "stop":
                stops = [value] if isinstance(value, str) else value
                if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
                    raise InvalidRequestError(
                        f"{raw_key} must be a string or a list of non-empty strings", param=raw_key
                    )
                request.stop = list(stops)
            else:
                request.extra[key] = value
    return request


def normalize_infer_params(infer_params: dict[str, Any] | None) -> dict[str, Any]:
    """Strip the ``backend.`` / ``saas.`` prefixes of deploy ``infer_params``.

    Raises ``InvalidRequestError`` when two spellings name the same option.
    """
    out: dict[str, Any] = {}
    for raw_key, value in (infer_params or {}).items():
        if not isinstance(raw_key, str) or not raw_key:
            raise InvalidRequestError(
                f"infer_params keys must be non-empty strings, got {raw_key!r}", param="infer_params"
            )
        key = _strip(raw_key, ("backend.", "saas."))
        if key in out:
            raise InvalidRequestError(f"infer_params sets {key!r} twice", param=raw_key)
        out[key] = value
    return out


def parse_key_values(items: list[str] | tuple[str, ...], param: str = "--infer_params") -> dict[str, Any]:
    """Parse ``key=value`` strings into a dict of texts; the backend's ``Options`` type each value
    (``backends.options.validate_options``). Raises ``InvalidRequestError`` for an item without ``=``
    or with an empty key."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise InvalidRequestError(f"{param} expects key=value pairs, got {item!r}", param=param)
        key, _, value = item.partition("=")
        key = key.strip()
        if not key:
            raise InvalidRequestError(f"{param} has an empty key in {item!r}", param=param)
        out[key] = value
    return out
