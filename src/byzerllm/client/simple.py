"""``SimpleByzerLLM``: the ``ByzerLLM`` client API with deployments in this process, no Ray."""

from __future__ import annotations

from typing import Any

from .byzerllm import ByzerLLM


class SimpleByzerLLM(ByzerLLM):
    """``ByzerLLM`` on the in-process runtime, for notebooks, scripts, tests and SaaS-only use.

    The same calls (``deploy``, ``undeploy``, ``chat_oai``, ``stream_chat_oai``, the async
    variants, ``emb``, ``get_meta``, ``stat``, tools and typed outputs, prompt functions) with
    backends built in this process: SaaS deployments (``pretrained_model_type="saas/..."``) and
    local ones (llama.cpp). Deployments belong to this client object and end with it (or with
    ``undeploy``); ``num_workers`` and ``worker_concurrency`` bound the requests in flight as on Ray.

    ``default_model_name`` is the deployment calls go to when they name none (Byzer-LLM's
    constructor and default); ``emb`` / ``emb_query`` fall back to it when no embedding model is
    set, as Byzer-LLM's ``SimpleByzerLLM`` does.
    """

    _emb_falls_back_to_default_model = True

    def __init__(
        self,
        default_model_name: str | None = "deepseek_chat",
        *,
        verbose: bool = False,
        default_max_output_length: int | None = None,
    ) -> None:
        super().__init__(
            verbose=verbose, default_model=default_model_name, default_max_output_length=default_max_output_length
        )
        from ..runtime.inprocess import InProcessRuntime

        self._runtime = InProcessRuntime()

    @classmethod
    def from_default_model(cls, model: str, auto_connect_cluster: bool = False) -> SimpleByzerLLM:
        """A client whose calls go to deployment ``model`` (deploy it on this client first)."""
        return cls(default_model_name=model)

    @property
    def runtime(self):
        return self._runtime

    def close(self) -> None:
        """Undeploy every deployment of this client."""
        for name in self._runtime.list_deployments():
            self.undeploy(name)

    def __enter__(self) -> SimpleByzerLLM:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
