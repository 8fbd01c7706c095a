"""The state of one server (its client, API keys, aliases, timeout, metrics, the deploys it started
and its history of deployment counters) and the dependency that hands it to the routes."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Iterable
from typing import Annotated, TypeVar

from fastapi import Depends, Request

from ..errors import InvalidRequestError, RequestTimeoutError
from .chat_client import ChatClient
from .deploys import Deploys
from .history import INTERVAL, History
from .metrics import Metrics
from .schemas import ChatCompletionRequest, CompletionRequest

T = TypeVar("T")


class Server:
    """State of one server: the client, keys, aliases, metrics, the deploys started through its API
    (``deploys``) and the sampled counters of every deployment (``history``, one sample every
    ``history_interval`` seconds while the app runs)."""

    def __init__(
        self,
        llm: ChatClient,
        api_keys: Iterable[str] = (),
        aliases: dict[str, str] | None = None,
        request_timeout: float = 600.0,
        storage_dir: str | None = None,
        history_interval: float = INTERVAL,
        documents_root: str | None = None,
    ) -> None:
        self.llm = llm
        self.api_keys = [k.encode() for k in api_keys if k]
        self.aliases = dict(aliases or {})
        self.request_timeout = request_timeout
        self.storage_dir = storage_dir  # the store of /v1/storage and /v1/rag (None: ByzerStorage's default)
        # the folder /v1/rag builds may read from, subfolders included (None: the server's working directory)
        self.documents_root = documents_root
        self.metrics = Metrics()
        self.deploys = Deploys()
        self.history = History(llm, history_interval)

    def authorized(self, header: str | None) -> bool:
        if not self.api_keys:
            return True
        scheme, _, token = (header or "").partition(" ")
        given = token.strip().encode() if scheme.lower() == "bearer" else b""
        # compare against every key so the time does not depend on which one matched
        return sum(hmac.compare_digest(given, key) for key in self.api_keys) > 0

    def deployment(self, model: str) -> str:
        """The deployment a request's model names (an unknown one is reported by the client with
        the list of deployed names)."""
        return self.aliases.get(model, model)

    async def check_max_tokens(self, name: str, body: ChatCompletionRequest | CompletionRequest) -> None:
        """Refuse ``max_tokens`` above the deployment's context length (OpenAI answers 400 too)."""
        asked = getattr(body, "max_completion_tokens", None) or body.max_tokens
        if not asked:
            return
        context = (await asyncio.to_thread(self.llm.get_meta, name)).get("max_model_len")
        if context and asked > context:
            field = "max_completion_tokens" if getattr(body, "max_completion_tokens", None) else "max_tokens"
            raise InvalidRequestError(
                f"{field} is too large: {asked}. The model {body.model!r} has a context of {context} tokens",
                param=field,
            )

    async def timed(self, awaitable: Awaitable[T]) -> T:
        """``awaitable``'s result; ``RequestTimeoutError`` (504) after ``request_timeout`` seconds."""
        try:
            return await asyncio.wait_for(awaitable, self.request_timeout)
        except TimeoutError:
            raise RequestTimeoutError(f"the model did not answer within {self.request_timeout:g}s") from None


async def server_of(request: Request) -> Server:
    # async: FastAPI would run a plain function in a thread on every request
    return request.app.state.server


# a route's parameter of this type receives its app's Server
ServerDep = Annotated[Server, Depends(server_of)]
