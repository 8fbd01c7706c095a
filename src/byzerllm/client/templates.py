"""Client-side chat templates (``setup_template``) for models whose own template is unusable.

``"auto"`` (the default) sends OpenAI messages and lets the backend apply the model's own chat
template (the GGUF ``tokenizer.chat_template``). A ``Template`` renders the conversation to one
prompt string on the client instead; ``role_mapping`` keys: ``system_msg`` (default system
text), ``system_role``, ``user_role``, ``assistant_role`` (prefixes), ``end`` (after each turn).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidRequestError

ROLE_KEYS = ("system_msg", "system_role", "user_role", "assistant_role", "end")


@dataclass
class Template:
    role_mapping: dict[str, str]
    generation_config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in self.role_mapping:
            if key not in ROLE_KEYS:
                raise InvalidRequestError(
                    f"role_mapping key {key!r} is unknown; accepted: {', '.join(ROLE_KEYS)}", param="role_mapping"
                )

    def with_roles(self, role_mapping: dict[str, str] | None) -> Template:
        return Template({**self.role_mapping, **(role_mapping or {})}, dict(self.generation_config))

    def render(self, messages: list[dict[str, Any]]) -> str:
        """The prompt for ``messages`` ending with the assistant prefix (generation prompt)."""
        rm = self.role_mapping
        end = rm.get("end", "")
        parts: list[str] = []
        if not any(m["role"] == "system" for m in messages) and rm.get("system_msg"):
            parts.append(rm.get("system_role", "") + rm["system_msg"] + end)
        for m in messages:
            content = (
                m["content"]
                if isinstance(m["content"], str)
                else "".join(p.get("text", "") for p in m["content"] if isinstance(p, dict))
            )
            role = "user" if m["role"] == "tool" else m["role"]
            parts.append(rm.get(f"{role}_role", "") + content + end)
        parts.append(rm.get("assistant_role", ""))
        return "".join(parts)


class Templates:
    """Ready-made templates (the Byzer-LLM ``Templates`` helpers)."""

    @staticmethod
    def chatml(system_msg: str = "You are a helpful assistant.") -> Template:
        return Template(
            {
                "system_msg": system_msg,
                "system_role": "<|im_start|>system\n",
                "user_role": "<|im_start|>user\n",
                "assistant_role": "<|im_start|>assistant\n",
                "end": "<|im_end|>\n",
            },
            {"stop": ["<|im_end|>"]},
        )

    qwen = chatml

    @staticmethod
    def default() -> Template:
        return Template(
            {"system_msg": "", "user_role": "User: ", "assistant_role": "Assistant: ", "end": "\n"},
            {"stop": ["\nUser:"]},
        )

    @staticmethod
    def llama() -> Template:
        return Template(
            {
                "system_msg": "",
                "system_role": "<<SYS>>\n",
                "user_role": "[INST] ",
                "assistant_role": " [/INST] ",
                "end": "\n",
            },
            {"stop": ["[INST]"]},
        )
