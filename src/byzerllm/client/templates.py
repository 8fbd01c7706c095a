"""Client-side chat templates (``setup_template``) for models whose own template is unusable.

``"auto"`` (the default) sends OpenAI messages and lets the backend apply the model's own chat
template (the GGUF ``tokenizer.chat_template``). A ``Template`` renders the conversation to one
prompt string on the client instead; ``role_mapping`` keys: ``system_msg`` (default system
text), ``system_role``, ``user_role``, ``assistant_role`` (prefixes), ``end`` (after each turn),
``system_end`` (after the system message; ``end`` when absent). A role whose prefix is None is
left out of the prompt (the code-completion templates keep only the system message).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidRequestError

ROLE_KEYS = ("system_msg", "system_role", "user_role", "assistant_role", "end", "system_end")


@dataclass
class Template:
    role_mapping: dict[str, str | None]
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
        system_end = rm.get("system_end", end)
        if not any(m["role"] == "system" for m in messages) and rm.get("system_msg"):
            parts.append((rm.get("system_role") or "") + rm["system_msg"] + system_end)
        for m in messages:
            content = (
                m["content"]
                if isinstance(m["content"], str)
                else "".join(p.get("text", "") for p in m["content"] if isinstance(p, dict))
            )
            role = "user" if m["role"] == "tool" else m["role"]
            prefix = rm.get(f"{role}_role", "")
            if prefix is not None:
                parts.append(prefix + content + (system_end if role == "system" else end))
        parts.append(rm.get("assistant_role") or "")
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
    def empty() -> Template:
        """The messages' texts one after another, nothing around them."""
        return Template({"system_msg": "", "user_role": "", "assistant_role": ""})

    @staticmethod
    def yi() -> Template:
        """Yi's chat format (ChatML)."""
        return Template(Templates.chatml().role_mapping, {"stop": ["<|im_end|>"]})

    @staticmethod
    def deepseek_code_chat() -> Template:
        """DeepSeek-Coder instruct: ``### Instruction:`` / ``### Response:`` turns ending with <|EOT|>."""
        return Template(
            {"system_msg": "", "user_role": "### Instruction:\n", "assistant_role": "### Response:\n", "end": "\n"},
            {"stop": ["<|EOT|>"]},
        )

    @staticmethod
    def deepseek_code_insertion() -> Template:
        """DeepSeek-Coder fill-in-the-middle: the system message is the code around
        ``<｜fim▁hole｜>``; the other messages are left out."""
        return Template(
            {
                "system_msg": "",
                "system_role": "<｜fim▁begin｜>",
                "system_end": "<｜fim▁end｜>",
                "user_role": None,
                "assistant_role": None,
            }
        )

    @staticmethod
    def deepseek_code_completion() -> Template:
        """DeepSeek-Coder completion: the system message is the code to continue, as is."""
        return Template(
            {"system_msg": "", "system_role": "", "system_end": "", "user_role": None, "assistant_role": None}
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
