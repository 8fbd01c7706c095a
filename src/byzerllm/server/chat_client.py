"""``ChatClient``: the part of the client API the server calls, and nothing else.

``ByzerLLM`` and ``SimpleByzerLLM`` satisfy it, and so does any object with these methods (the
test fakes do). The server passes every argument after the first by keyword, so an implementation
may add parameters (with defaults) and take the keyword ones through ``**kwargs``. Errors are
``byzerllm.errors`` classes; the server maps each to its HTTP status. The console's deployment
routes and the history sampler also call ``server.deploys.DeployClient``'s methods (``stat``,
``deploy_spec``, ``deploy``, ``undeploy``); a client without them serves the OpenAI routes only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol, runtime_checkable

from ..types import LLMResponse, SingleOutputMeta

__all__ = ["ChatClient"]


@runtime_checkable
class ChatClient(Protocol):
    """What ``create_app`` needs from its client. ``model`` is always a deployment's name;
    ``llm_config`` the client's sampling options (``max_length``, ``temperature``, ``stop``...)."""

    def list_deployments(self) -> list[str]:
        """The names of the deployments, for ``/v1/models``."""
        ...

    def deployment_info(self, udf_name: str) -> dict[str, Any]:
        """``{"spec": {"created_at": <Unix seconds>, ...}, "state": str, "meta": {"model_type": ...}}``;
        raises ``ByzerLLMError`` for a deployment removed meanwhile."""
        ...

    def get_meta(self, model: str) -> dict[str, Any]:
        """The deployment's meta; the server reads ``max_model_len`` (tokens) from it."""
        ...

    async def async_chat_oai(
        self,
        conversations: list[dict[str, Any]],
        *,
        model: str,
        llm_config: dict[str, Any],
        extra_request_params: dict[str, Any] | None = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: Any = None,
    ) -> list[Any]:
        """One chat completion: ``[LLMResponse]``, or with ``tools`` ``[LLMFunctionCallResponse]``
        whose ``metadata["tool_calls"]`` is ``[{"id", "name", "arguments"}]``."""
        ...

    def async_stream_chat_oai(
        self,
        conversations: list[dict[str, Any]],
        *,
        model: str,
        llm_config: dict[str, Any],
        delta_mode: bool,
        extra_request_params: dict[str, Any] | None,
    ) -> AsyncIterator[tuple[str, SingleOutputMeta]]:
        """A chat completion streamed as ``(new text, meta)``; the last item has
        ``meta.finish_reason``. Closing the iterator cancels the generation."""
        ...

    def stream_chat_oai(
        self,
        conversations: list[dict[str, Any]],
        *,
        model: str,
        llm_config: dict[str, Any],
        delta_mode: bool,
        tools: list[dict[str, Any]],
        tool_choice: Any,
    ) -> Iterator[tuple[str, SingleOutputMeta]]:
        """Tool calls streamed as ``("", meta)`` with OpenAI's deltas in ``meta.tool_calls``
        (``[{"index", "id", "type", "function": {"name", "arguments"}}]``); run in a thread."""
        ...

    async def async_completion(
        self,
        prompt: str,
        *,
        model: str,
        llm_config: dict[str, Any],
        extra_request_params: dict[str, Any] | None,
    ) -> LLMResponse:
        """Raw text completion (no chat template); ``metadata`` has the token counts and
        ``finish_reason``."""
        ...

    def async_stream_completion(
        self,
        prompt: str,
        *,
        model: str,
        llm_config: dict[str, Any],
        extra_request_params: dict[str, Any] | None,
    ) -> AsyncIterator[tuple[str, SingleOutputMeta]]:
        """``async_completion`` streamed as ``(new text, meta)``."""
        ...

    async def async_emb(self, model: str, request: list[str]) -> list[LLMResponse]:
        """One ``LLMResponse`` per text, in order: ``output`` the vector (floats), and the first's
        ``metadata["input_tokens_count"]`` the tokens of all texts."""
        ...

    async def async_emb_rerank(self, model: str, sentence_pairs: list[list[str]]) -> list[LLMResponse]:
        """``[LLMResponse]`` whose ``output`` is ``[((query, document), score), ...]`` (higher is
        more relevant) and ``metadata["input_tokens_count"]`` the tokens read."""
        ...

    async def async_run_task(self, task: str, request: Any, model: str | None = None) -> Any:
        """One typed request of ``task``: ``SpeechRequest`` -> ``SpeechResponse``,
        ``TranscriptionRequest`` -> ``Transcription``, ``ImageRequest`` -> ``ImageResponse``."""
        ...
