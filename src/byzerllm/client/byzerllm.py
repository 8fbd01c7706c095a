"""``ByzerLLM``: deploy models on a Ray cluster and talk to them by deployment name."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

from ..backends.models import DEFAULT_CHAT_MODEL, default_backend_for
from ..errors import ByzerLLMError, InvalidRequestError
from ..params import build_chat_request, normalize_infer_params
from ..runtime.base import Runtime
from ..runtime.cluster import connect_cluster, is_connected
from ..types import (
    ChatChunk,
    ChatRequest,
    EventCallback,
    EventName,
    InferBackend,
    LLMClassResponse,
    LLMRequest,
    LLMResponse,
    SingleOutputMeta,
    response_metadata,
)
from .structured import StructuredMixin
from .tasks import TasksMixin
from .templates import Template

if TYPE_CHECKING:
    from ..prompt.function import PromptDecorator
    from ..runtime.spec import DeploymentSpec

# texts per embedding call: bounds one call's time on a worker and its message size
EMB_BATCH_SIZE = 64
log = logging.getLogger("byzerllm.client")


def _default_backend(
    model_path: str | None, pretrained_model_type: str, worker_concurrency: int = 1, options: dict | None = None
) -> str:
    """The backend of a deploy without ``infer_backend``: the SaaS preset's, else the one the model
    implies (``default_backend_for``). A GGUF whose workers serve several requests at once
    (``worker_concurrency`` > 1) goes on ``llama_server``, which decodes them together, when it is
    installed and takes every option given; otherwise on ``llama_cpp``, which serves a worker's
    requests one at a time (the measurement: docs/deployment.md, Choosing the GGUF backend)."""
    if pretrained_model_type.startswith("saas/"):
        from ..backends.saas_presets import resolve

        return resolve(pretrained_model_type)[0]
    backend = default_backend_for(model_path)
    if backend != "llama_cpp" or worker_concurrency <= 1:
        return backend
    from ..backends.llama_server import LlamaServerBackend, llama_server_binary

    try:
        llama_server_binary()
        LlamaServerBackend.check_options(options or {})
    except ByzerLLMError as exc:
        log.info("deploying %s on llama_cpp, not llama_server: %s", model_path, exc)
        return "llama_cpp"
    return "llama_server"


class ByzerLLM(StructuredMixin, TasksMixin):
    """Client of the Ray runtime: deployment settings, deploy/undeploy, chat and stream.

    Settings are chained: ``ByzerLLM().setup_num_workers(2).setup_worker_concurrency(1)``.
    The process connects to the Ray cluster of this machine on first use (``ray.init
    (address="auto")``); call ``byzerllm.connect_cluster(address)`` first for another one.
    """

    # Byzer-LLM's SimpleByzerLLM embeds with the default chat model when no embedding model is set
    _emb_falls_back_to_default_model = False

    def __init__(
        self,
        url: str | None = None,
        *,
        verbose: bool = False,
        default_model: str | None = None,
        force_skip_context_length_check: bool = False,
        default_max_output_length: int | None = None,
        byzer_engine_url: str | None = None,
    ) -> None:
        """``url`` and ``byzer_engine_url`` (a Byzer-SQL engine, for Byzer-LLM's SQL mode) are kept
        for compatibility and not used; ``verbose`` logs each chat request's messages (INFO, logger
        ``byzerllm.client``) before it is sent; ``default_max_output_length`` caps every request's
        max_length (tokens) unless ``setup_max_output_length`` sets one for the model."""
        self.url = url or byzer_engine_url
        self.verbose = verbose
        self.force_skip_context_length_check = force_skip_context_length_check
        self.default_max_output_length = default_max_output_length
        self.default_model_name = default_model
        self.num_workers = 1
        self.cpus_per_worker = 0.001
        self.gpus_per_worker = 0.0
        self.worker_concurrency = 1
        self.infer_backend: str | None = None
        self.load_balance = "lru"
        self.max_queue = 1024
        self.placement: str | None = None
        self.resources_per_worker: dict[str, float] = {}
        self.templates: dict[str, Template | str] = {}
        self.extra_generation_params: dict[str, dict[str, Any]] = {}
        self.max_model_lengths: dict[str, int] = {}
        self.max_output_lengths: dict[str, int] = {}
        self.max_input_lengths: dict[str, int] = {}
        self.sub_clients: dict[str, Any] = {}
        self.event_callbacks: dict[EventName, list[EventCallback]] = {}
        self._meta_cache: dict[str, dict[str, Any]] = {}
        self._runtime: Runtime | None = None
        self._init_structured()
        self.default_emb_model_name: str | None = None

    # --- settings --------------------------------------------------------------------
    @classmethod
    def from_default_model(cls, model: str, auto_connect_cluster: bool = True) -> ByzerLLM:
        """A client whose calls go to deployment ``model`` unless told otherwise."""
        llm = cls(default_model=model)
        if auto_connect_cluster:
            llm.runtime  # noqa: B018 - connects now so errors show at construction
        return llm

    def setup_default_model_name(self, model: str | None) -> ByzerLLM:
        self.default_model_name = model
        return self

    def setup_default_emb_model_name(self, model: str | None) -> ByzerLLM:
        self.default_emb_model_name = model
        return self

    def setup_num_workers(self, n: int) -> ByzerLLM:
        self.num_workers = n
        return self

    def setup_cpus_per_worker(self, n: float) -> ByzerLLM:
        self.cpus_per_worker = n
        return self

    def setup_gpus_per_worker(self, n: float) -> ByzerLLM:
        self.gpus_per_worker = n
        return self

    def setup_worker_concurrency(self, n: int) -> ByzerLLM:
        self.worker_concurrency = n
        return self

    def setup_infer_backend(self, backend: str | InferBackend | None) -> ByzerLLM:
        self.infer_backend = backend.value if isinstance(backend, InferBackend) else backend
        return self

    def setup_load_balance_way(self, strategy: str) -> ByzerLLM:
        """``lru`` (default: least recently used worker), ``round_robin``, ``least_busy``, ``random``."""
        self.load_balance = strategy
        return self

    def setup_max_queue(self, n: int) -> ByzerLLM:
        """Requests that may wait for a free worker slot before ``QueueFullError`` (HTTP 429)."""
        self.max_queue = n
        return self

    def setup_placement(self, placement: str | None) -> ByzerLLM:
        """How the next deployments' workers are placed across the cluster's nodes: ``"pack"`` (as
        few nodes as possible) or ``"spread"`` (one per node while nodes have room), as a Ray
        placement group; None (the default) lets Ray place each worker."""
        self.placement = placement
        return self

    def setup_resources_per_worker(self, resources: dict[str, float] | None) -> ByzerLLM:
        """Custom Ray resources each worker of the next deployments needs, e.g. ``{"big_node": 1}``:
        the workers run only on nodes that declare them (``byzerllm cluster join --resources``)."""
        self.resources_per_worker = dict(resources or {})
        return self

    def setup_template(self, model: str, template: str | Template) -> ByzerLLM:
        """``"auto"``: the model's own chat template; a ``Template``: rendered on the client."""
        if template != "auto" and not isinstance(template, Template):
            raise InvalidRequestError('template must be "auto" or a byzerllm.Template', param="template")
        self.templates[model] = template
        return self

    def setup_extra_generation_params(self, model: str, params: dict[str, Any]) -> ByzerLLM:
        """Defaults merged under every request's ``llm_config`` for ``model``."""
        self.extra_generation_params[model] = dict(params)
        return self

    def setup_max_model_length(self, model: str, length: int) -> ByzerLLM:
        """The context length (tokens) ``get_max_model_length`` reports for ``model``, over the
        deployment's own ``max_model_len``."""
        self.max_model_lengths[model] = _positive("max_model_length", length)
        return self

    def setup_max_output_length(self, model: str, length: int) -> ByzerLLM:
        """Cap the tokens generated per request to ``model``: a request's max_length is lowered to
        ``length`` (and set to it when the request gives none)."""
        self.max_output_lengths[model] = _positive("max_output_length", length)
        return self

    def setup_max_input_length(self, model: str, length: int) -> ByzerLLM:
        """Refuse requests to ``model`` whose prompt is over ``length`` tokens, before generation, with
        ``InvalidRequestError`` (``param="messages"``). Counted by the model's tokenizer where the
        backend has one (llama.cpp); estimated (4 bytes a token) for SaaS providers."""
        self.max_input_lengths[model] = _positive("max_input_length", length)
        return self

    def get_max_model_length(self, model: str) -> int | None:
        """``setup_max_model_length``'s value, else the deployment's ``max_model_len`` (None if unknown)."""
        if model in self.max_model_lengths:
            return self.max_model_lengths[model]
        return self.get_meta(model=model).get("max_model_len")

    def get_max_output_length(self, model: str) -> int | None:
        return self.max_output_lengths.get(model, self.default_max_output_length)

    def get_max_input_length(self, model: str) -> int | None:
        return self.max_input_lengths.get(model)

    # --- sub clients and events (Byzer-LLM's) --------------------------------------------
    def setup_sub_client(self, client_name: str, client: Any = None) -> ByzerLLM:
        """Keep another client (or a list of clients) under ``client_name``, e.g. auto-coder's
        ``code_model``; ``get_sub_client`` returns it."""
        self.sub_clients[client_name] = client
        return self

    def get_sub_client(self, client_name: str) -> Any:
        """The client kept under ``client_name``, or None."""
        return self.sub_clients.get(client_name)

    def remove_sub_client(self, client_name: str) -> ByzerLLM:
        self.sub_clients.pop(client_name, None)
        return self

    def add_event_callback(self, event_name: EventName, callback: EventCallback) -> None:
        """Call ``callback`` around every model call, as Byzer-LLM does.

        ``BEFORE_CALL_MODEL``: ``callback(llm, model, input_value)`` with ``input_value`` a list of
        one dict per request: ``{"instruction": the last message's content, "history": the messages
        before it, **llm_config}`` (``{"instruction": text, "embedding": True}`` per text for
        ``emb``). ``AFTER_CALL_MODEL``: ``callback(llm, model, result)`` with ``result`` a list of
        ``{"predict": output, "metadata": {...}, "input": instruction}``. A callback returns
        ``(continue, value)``: ``(True, None)`` goes on; ``(False, value)`` answers instead of the
        model (BEFORE) or replaces the result (AFTER) with ``value``, a list of ``{"predict",
        "metadata", "input"}`` dicts. For streams the AFTER callbacks see the whole text once it
        ended; what they return cannot change what was streamed.
        """
        if not isinstance(event_name, EventName):
            raise InvalidRequestError(
                f"event_name must be an EventName; accepted: {', '.join(e.name for e in EventName)}", param="event_name"
            )
        self.event_callbacks.setdefault(event_name, []).append(callback)

    def _trigger_event(self, event_name: EventName, *args: Any) -> Any:
        for callback in self.event_callbacks.get(event_name, ()):
            go_on, value = callback(*args)
            if not go_on:
                return value
        return None

    def _before_call(self, name: str, request: ChatRequest, llm_config: dict | None) -> list[LLMResponse] | None:
        if self.verbose:  # Byzer-LLM's verbose client prints what it sends
            log.info("Send to model[%s]: %s", name, request.prompt or request.messages)
        if not self.event_callbacks.get(EventName.BEFORE_CALL_MODEL):
            return None
        answer = self._trigger_event(EventName.BEFORE_CALL_MODEL, self, name, [_event_input(request, llm_config)])
        return None if answer is None else _event_responses(answer)

    def _after_call(self, name: str, responses: list[LLMResponse]) -> list[LLMResponse]:
        if not self.event_callbacks.get(EventName.AFTER_CALL_MODEL):
            return responses
        items = [{"predict": r.output, "metadata": r.metadata, "input": r.input} for r in responses]
        answer = self._trigger_event(EventName.AFTER_CALL_MODEL, self, name, items)
        return responses if answer is None else _event_responses(answer)

    # --- deployments -----------------------------------------------------------------
    @property
    def runtime(self) -> Runtime:
        """The runtime the deployments of this client live on (Ray, connected on first use)."""
        if self._runtime is None:
            if not is_connected():
                connect_cluster()
            from ..runtime.ray import RayRuntime

            self._runtime = RayRuntime()
        return self._runtime

    def deploy(
        self,
        model_path: str | None = DEFAULT_CHAT_MODEL,
        pretrained_model_type: str = "custom/auto",
        udf_name: str = "",
        infer_params: dict[str, Any] | None = None,
        timeout: float = 600.0,
        on_progress=None,
        **settings: Any,
    ) -> dict[str, Any]:
        """Deploy ``model_path`` as a pool of ``num_workers`` workers named ``udf_name``.

        ``model_path`` is a GGUF file or ``builtin:smollm2``. ``infer_params`` are backend
        options (``backend.`` / ``saas.`` prefixes allowed); ``settings`` (``infer_backend``,
        ``num_workers``, ``worker_concurrency``, ``cpus_per_worker``, ``gpus_per_worker``, ``placement``,
        ``resources_per_worker``) override this client's settings for this deploy only (see
        ``deploy_spec``); ``on_progress(ready, total)`` is called as workers load. A ``model_path`` on
        this machine reaches every worker's node through Ray's object store (cached there by SHA-256).
        Returns the model meta (see ``get_meta``). Raises
        ``DeploymentExistsError``, ``ModelPathError`` (naming the path),
        ``UnsupportedParameterError`` (naming the option), ``BackendNotFoundError``,
        ``DeploymentError`` (resources, timeout).
        """
        spec = self.deploy_spec(model_path, pretrained_model_type, udf_name, infer_params, **settings)
        return self.runtime.deploy(spec, timeout=timeout, on_progress=on_progress)

    def deploy_spec(
        self,
        model_path: str | None = DEFAULT_CHAT_MODEL,
        pretrained_model_type: str = "custom/auto",
        udf_name: str = "",
        infer_params: dict[str, Any] | None = None,
        *,
        infer_backend: str | None = None,
        num_workers: int | None = None,
        worker_concurrency: int | None = None,
        cpus_per_worker: float | None = None,
        gpus_per_worker: float | None = None,
        placement: str | None = None,
        resources_per_worker: dict[str, float] | None = None,
    ) -> DeploymentSpec:
        """The ``DeploymentSpec`` ``deploy`` runs, checked, without touching the cluster: the backend
        picked (``infer_backend``, else this client's, else the model's default), the options checked
        by the backend, the spec validated. A keyword given (not None) replaces this client's setting
        of the same name (``setup_num_workers``...) for this spec only, so concurrent deploys with
        different settings can share one client. Raises as ``deploy`` does before it starts workers
        (``BackendNotFoundError``, ``UnsupportedParameterError``, ``InvalidRequestError``)."""
        from ..runtime.spec import DeploymentSpec

        worker_concurrency = self.worker_concurrency if worker_concurrency is None else worker_concurrency
        options = _deploy_options(pretrained_model_type, infer_params)
        backend = (
            infer_backend
            or self.infer_backend
            or _default_backend(model_path, pretrained_model_type, worker_concurrency, options)
        )
        if backend == "transformers" and default_backend_for(model_path) == "sentence_transformers":
            # the Byzer-LLM documents deploy embedding and rerank folders with InferBackend.Transformers
            backend = "sentence_transformers"
        spec = DeploymentSpec(
            name=udf_name,
            backend=backend,
            model_path=model_path or "",
            pretrained_model_type=pretrained_model_type,
            num_workers=self.num_workers if num_workers is None else num_workers,
            cpus_per_worker=self.cpus_per_worker if cpus_per_worker is None else cpus_per_worker,
            gpus_per_worker=self.gpus_per_worker if gpus_per_worker is None else gpus_per_worker,
            worker_concurrency=worker_concurrency,
            load_balance=self.load_balance,
            max_queue=self.max_queue,
            options=options,
            placement=self.placement if placement is None else placement,
            resources=dict(self.resources_per_worker if resources_per_worker is None else resources_per_worker),
        )
        from ..backends import get_backend_class

        backend_cls = get_backend_class(backend)
        spec.options = backend_cls.deploy_options(spec.options, spec.worker_concurrency)
        backend_cls.check_options(spec.options)  # fail before touching the cluster
        spec.validate()
        return spec

    def undeploy(self, udf_name: str, force: bool = False) -> None:
        """Remove deployment ``udf_name``; raises ``ModelNotFoundError`` when it is not there, unless
        ``force`` (then a missing deployment is no error, as in Byzer-LLM, which ignores it)."""
        from ..errors import ModelNotFoundError

        self._meta_cache.pop(udf_name, None)
        try:
            self.runtime.undeploy(udf_name)
        except ModelNotFoundError:
            if not force:
                raise

    def abort(self, request_id: str, model: str | None = None) -> None:
        """Stop the running request whose ``llm_config`` gave ``request_id`` (``gen.request_id``) on
        deployment ``model`` (the default model when None), at its next token. Its ``chat_oai``
        returns the text so far with finish_reason ``cancelled``; its stream ends there, its last
        chunk's finish_reason ``cancelled``. A request that already ended, or that no worker has started, is
        not affected. Byzer-LLM aborts on vLLM only; here it works on every backend."""
        if not isinstance(request_id, str) or not request_id:
            raise InvalidRequestError("request_id must be a non-empty string", param="request_id")
        self.runtime.abort(self._model(model), request_id)

    def forget_response_format(self, model: str, kind: str) -> None:
        """Stop asking deployment ``model`` for ``response_format`` type ``kind`` from this client
        (its provider refused it); typed outputs are then asked for in the prompt."""
        meta = self.get_meta(model=model)
        meta["support_response_format"] = [k for k in meta.get("support_response_format", ()) if k != kind]
        self._meta_cache[model] = meta

    def prompt(
        self,
        model: str | None = None,
        render: str = "jinja2",
        check_result: bool = False,
        options: dict[str, Any] | None = None,
    ) -> PromptDecorator:
        """``@llm.prompt()``: ``@byzerllm.prompt`` bound to this client (and to ``model``, else the
        default model)."""
        from ..prompt import prompt

        opts = {**(options or {}), **({"model": model} if model else {})}
        return prompt(llm=self, options=opts or None, render=render, check_result=check_result)

    # --- training ----------------------------------------------------------------------
    def _train(self, kind: str, name: str, data: str, model: str, stage: str, num_cpus, num_gpus, detached,
               json_config, model_params, kwargs: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
        from ..training import jobs

        if not is_connected():
            connect_cluster()
        known = {"num_workers", "gguf", "gguf_type", "placement", "max_failures"}
        for key in set(kwargs) - known:  # the real package ignores extra keyword arguments too
            log.warning("%s: argument %r is ignored", kind, key)
        status = jobs.start_job(
            name, kind, data, model, stage, num_cpus=num_cpus, num_gpus=int(num_gpus or 0),
            model_params=model_params, json_config=json_config, **{k: v for k, v in kwargs.items() if k in known},
        )  # fmt: skip
        if detached:
            return status
        status = jobs.wait_job(name, timeout=float("inf"))
        if status["state"] != "succeeded":
            raise ByzerLLMError(f"training job {name!r} {status['state']}: {status.get('error')}", job=name)
        return status

    def sft(
        self,
        sft_name: str,
        local_data_dir_path: str,
        local_model_path: str = DEFAULT_CHAT_MODEL,
        local_stage_path: str = "/tmp/byzerllm",
        pretrained_model_type: str = "custom/auto",
        num_cpus: float | None = None,
        num_gpus: int = 0,
        detached: bool = True,
        json_config: str = "{}",
        model_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Fine-tune ``local_model_path`` (a Hugging Face folder, a GGUF, ``builtin:smollm2``) on
        the chat rows of ``local_data_dir_path`` (``data.jsonl``; see ``byzerllm.training.data`` for
        the formats) as the job ``sft_name`` on Ray Train, in ``<local_stage_path>/<sft_name>/``.

        ``model_params`` keys are Byzer-LLM's ``sft.<type>.<name>`` (``sft.int.max_seq_length``,
        ``sft.str.method`` lora|full|qlora, ...; ``byzerllm.training.config.TrainingConfig`` lists
        them); ``json_config`` a JSON object of the same names. ``num_cpus`` is the job's CPUs
        (default: all free ones), split among ``num_workers`` (keyword, default 1) Ray Train
        workers; ``num_gpus`` > 0 gives each worker a GPU. ``gguf=False`` skips the GGUF export.
        ``pretrained_model_type`` is accepted and not needed (the model's own config says what it
        is).

        Returns the job's status (``byzerllm.training.jobs.job_status``): with ``detached`` (the
        default) at once, the job going on without this process; otherwise when it ends (raises
        ``ByzerLLMError`` if it failed). The real package returns ``[]`` (detached) or a generator
        of the output's bytes. Raises what ``jobs.start_job`` raises, before anything starts.
        """
        return self._train("sft", sft_name, local_data_dir_path, local_model_path, local_stage_path, num_cpus,
                           num_gpus, detached, json_config, model_params, kwargs)  # fmt: skip

    def pretrain(
        self,
        name: str,
        local_data_dir_path: str,
        local_model_path: str = DEFAULT_CHAT_MODEL,
        local_stage_path: str = "/tmp/byzerllm",
        pretrained_model_type: str = "custom/auto",
        num_cpus: float | None = None,
        num_gpus: int = 0,
        detached: bool = True,
        json_config: str = "{}",
        model_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Continue pre-training ``local_model_path`` on raw text (``{"text"}`` rows or ``.txt``
        files, one document per line), packed into ``max_seq_length``-token sequences; otherwise as
        ``sft``. Byzer-LLM's ``sfft.int.max_length`` / ``sfft.int.epoches`` keys are read as
        ``max_seq_length`` / ``num_train_epochs``; its DeepSpeed ``json_config`` is not (it is a
        ``TrainingConfig`` JSON here)."""
        return self._train("pretrain", name, local_data_dir_path, local_model_path, local_stage_path, num_cpus,
                           num_gpus, detached, json_config, model_params, kwargs)  # fmt: skip

    def merge_lora(
        self, name: str, local_model_path: str, local_adpator_model_path: str, local_target_path: str
    ) -> str:
        """Merge the LoRA adapter ``local_adpator_model_path`` (the real package's spelling) into
        the base model ``local_model_path`` and save a Hugging Face folder at ``local_target_path``,
        which ``deploy`` serves on the ``transformers`` backend; returns ``local_target_path``.
        ``name`` is accepted and not needed (the merge runs in this process). Raises
        ``ModelPathError`` for a missing base or adapter."""
        from ..training.export import merge_lora

        return merge_lora(local_model_path, local_adpator_model_path, local_target_path)

    def is_model_exist(self, udf_name: str) -> bool:
        return self.runtime.exists(udf_name)

    def list_deployments(self) -> list[str]:
        return self.runtime.list_deployments()

    def deployment_info(self, udf_name: str) -> dict[str, Any]:
        """The spec, state and meta of a deployment."""
        return self.runtime.info(udf_name)

    def stat(self, model: str | None = None) -> dict[str, Any]:
        """Worker counts of a deployment, in the shape ``byzerllm stat`` prints."""
        return self.runtime.stat(self._model(model))

    def get_meta(self, model: str | None = None, llm_config: dict | None = None) -> dict[str, Any]:
        """``model_deploy_type``, ``backend``, ``max_model_len``, ``support_stream``,
        ``support_chat_template``, ``architectures`` of a deployment (one RPC, then cached)."""
        name = self._model(model)
        if name not in self._meta_cache:
            self._meta_cache[name] = self.runtime.meta(name)
        return dict(self._meta_cache[name])

    # --- requests --------------------------------------------------------------------
    async def _aruntime(self) -> Runtime:
        """The runtime, connected off the event loop on first use."""
        return self._runtime or await asyncio.to_thread(lambda: self.runtime)

    def _model(self, model: str | None) -> str:
        name = model or self.default_model_name
        if not name:
            raise InvalidRequestError(
                "no model given: pass model=... or call setup_default_model_name(...)", param="model"
            )
        return name

    def _request(self, conversations, model: str | None, llm_config, role_mapping, extra_request_params):
        name = self._model(model)
        template = self.templates.get(name, "auto")
        if role_mapping and not isinstance(template, Template):
            from .templates import Templates

            template = Templates.default()
        configs = [self.extra_generation_params.get(name)]
        if isinstance(template, Template):
            configs.insert(0, template.generation_config)
        request = build_chat_request(conversations, *configs, llm_config, extra_request_params)
        if isinstance(template, Template):
            request.prompt = template.with_roles(role_mapping).render(request.messages)
        self._limits(name, request)
        return name, request

    def _limits(self, name: str, request: ChatRequest) -> None:
        cap = self.get_max_output_length(name)
        if cap:
            request.max_tokens = min(request.max_tokens or cap, cap)
        request.max_input_tokens = self.get_max_input_length(name)

    def chat_oai(
        self,
        conversations: list[dict[str, Any]],
        tools: list[Any] | None = None,
        tool_choice: Any = None,
        execute_tool: bool = False,
        impl_func: Any = None,
        execute_impl_func: bool = False,
        impl_func_params: dict[str, Any] | None = None,
        func_params: dict[str, Any] | None = None,
        response_class: Any = None,
        response_after_chat: bool = False,
        model: str | None = None,
        llm_config: dict[str, Any] | None = None,
        role_mapping: dict[str, str] | None = None,
        extra_request_params: dict[str, Any] | None = None,
        impl_instruction: str | None = None,
        enable_default_sys_message: bool = True,
        only_return_prompt: bool = False,
    ) -> list[Any]:
        """One chat completion, or a structured call on top of chat.

        ``conversations``: OpenAI messages. ``llm_config``: max_length, temperature, top_p,
        stop, seed and backend keys (``gen.`` prefix allowed). Returns ``[LLMResponse]`` whose
        metadata has input_tokens_count, generated_tokens_count, time_cost (s, end to end),
        first_token_time (s), speed (tokens/s) and finish_reason.

        With ``tools`` (callables or OpenAI tool schemas; ``tool_choice`` "auto", "required" or a
        tool name) it returns ``[LLMFunctionCallResponse]``; ``execute_tool=True`` runs the chosen
        tool with the model's validated arguments plus ``func_params``. With ``response_class``
        (a pydantic model or a JSON-schema string) it returns ``[LLMClassResponse]``;
        ``response_after_chat=True`` lets the model answer in prose first. With ``impl_func`` the
        model writes that function (``impl_instruction`` guides it) and, with
        ``execute_impl_func=True``, it runs in the sandbox on ``impl_func_params``. A structured
        call that fails says why in ``metadata["reason"]`` rather than raising.

        ``only_return_prompt=True`` calls no model: it returns ``[LLMResponse("", instruction,
        request)]`` where ``instruction`` is the last message's content (or the prompt a client
        template rendered) and ``request`` the dict Byzer-LLM would send (``instruction``,
        ``history``, ``extra_request_params`` and the llm_config keys); with ``response_class``,
        ``[LLMClassResponse(that response, that response, {"reason": "Only return prompt"})]``.
        Event callbacks (``add_event_callback``) run around the model call.

        Raises ``InvalidRequestError`` (naming the field), ``ModelNotFoundError`` (listing the
        deployed names), ``WorkerDiedError``, ``DeploymentUndeployedError``.
        """
        if only_return_prompt:
            name, request = self._request(conversations, model, llm_config, role_mapping, extra_request_params)
            item = {**_event_input(request, llm_config), "extra_request_params": dict(extra_request_params or {})}
            resp = LLMResponse("", item["instruction"], item)
            if response_class is not None or response_after_chat:
                return [LLMClassResponse(resp, resp, {"reason": "Only return prompt"})]
            return [resp]
        task = self._task_of(self._model(model))
        if task is not None:
            layered = {"tools": tools, "response_class": response_class, "impl_func": impl_func}
            for key, value in layered.items():
                if value is not None:
                    raise InvalidRequestError(
                        f"{key} needs a chat model; {self._model(model)!r} serves {task}", param=key
                    )
            return [self._task_chat(self._model(model), task, conversations, llm_config, extra_request_params)]
        if tools is not None or response_class is not None or impl_func is not None:
            name = self._model(model)  # the layer's own requests validate the messages
            config = {**(llm_config or {}), **(extra_request_params or {})}
            return [
                self._structured_chat(
                    name,
                    conversations,
                    config,
                    tools,
                    tool_choice,
                    execute_tool,
                    func_params,
                    response_class,
                    response_after_chat,
                    impl_func,
                    execute_impl_func,
                    impl_func_params,
                    impl_instruction,
                )
            ]
        name, request = self._request(conversations, model, llm_config, role_mapping, extra_request_params)
        answered = self._before_call(name, request, llm_config)
        if answered is not None:
            return answered
        start = time.perf_counter()
        resp = self.runtime.chat(name, request)
        return self._after_call(name, [_llm_response(name, request, resp, time.perf_counter() - start)])

    def _emb_model(self, model: str | None) -> str:
        name = model or self.default_emb_model_name
        if not name and self._emb_falls_back_to_default_model:
            name = self.default_model_name
        if not name:
            raise InvalidRequestError(
                "no embedding model given: pass model=... or call setup_default_emb_model_name(...)", param="model"
            )
        return name

    def _emb_inputs(self, model: str | None, request: Any) -> tuple[str, list[str]]:
        name = self._emb_model(model)
        texts = request.instruction if isinstance(request, LLMRequest) else request
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise InvalidRequestError(
                "the input to embed must be a string or a non-empty list of strings", param="instruction"
            )
        return name, texts

    def emb(
        self,
        model: str | None,
        request: LLMRequest | str | list[str],
        extract_params: dict[str, Any] | None = None,
        query: bool = False,
    ) -> list[LLMResponse]:
        """Embed ``request.instruction`` (a string or a list of strings) with deployment ``model``
        (the default embedding model when None): one ``LLMResponse`` per input whose ``output`` is
        the vector (floats; the dimension is ``get_meta()["embedding_dim"]``). ``query=True`` embeds
        search queries (E5 models' ``query:`` prefix; the same as passages for other models).

        Long lists are sent in batches of ``EMB_BATCH_SIZE`` texts, so one call never holds a worker
        for long. ``extract_params`` (Byzer-LLM's per-request engine options) has no meaning for the
        embedding backends here and is ignored. Event callbacks see ``{"instruction": text,
        "embedding": True}`` per text. Raises ``InvalidRequestError`` for an empty input or a
        deployment that does not serve embeddings."""
        name, texts = self._emb_inputs(model, request)
        if self.event_callbacks.get(EventName.BEFORE_CALL_MODEL):
            answer = self._trigger_event(
                EventName.BEFORE_CALL_MODEL, self, name, [{"instruction": t, "embedding": True} for t in texts]
            )
            if answer is not None:
                return _event_responses(answer)
        start = time.perf_counter()
        vectors: list[list[float]] = []
        tokens = 0
        for i in range(0, len(texts), EMB_BATCH_SIZE):
            part, n = self.runtime.embed(name, texts[i : i + EMB_BATCH_SIZE], query)
            vectors.extend(part)
            tokens += n
        return self._after_call(name, _emb_responses(name, texts, vectors, tokens, time.perf_counter() - start))

    async def async_emb(
        self, model: str | None, request: LLMRequest | str | list[str], query: bool = False
    ) -> list[LLMResponse]:
        """``emb`` for asyncio code; the batches run concurrently (on several workers if any)."""
        name, texts = self._emb_inputs(model, request)
        runtime = await self._aruntime()
        start = time.perf_counter()
        parts = await asyncio.gather(
            *(runtime.aembed(name, texts[i : i + EMB_BATCH_SIZE], query) for i in range(0, len(texts), EMB_BATCH_SIZE))
        )
        vectors = [v for part, _ in parts for v in part]
        return _emb_responses(name, texts, vectors, sum(n for _, n in parts), time.perf_counter() - start)

    def emb_rerank(
        self,
        model: str | None = None,
        sentence_pairs: list[list[str]] | list[str] | None = None,
        extract_params: dict[str, Any] | None = None,
    ) -> list[LLMResponse]:
        """Score ``(query, passage)`` pairs with deployment ``model`` (the default embedding model
        when None) and sort them by score, highest first.

        ``sentence_pairs`` is one pair ``[query, passage]`` or a list of pairs. Returns one
        ``LLMResponse`` whose ``output`` is ``[pair, score]`` for one pair, or ``[[pair, score], ...]``
        sorted by score for a list (the Byzer-LLM documents' shape). Scores are the backend's: a
        cross-encoder's logit, an LLM judge's mean log-probability of the query, or a cosine similarity for an
        embedding model (see docs/embeddings.md). ``extract_params`` (Byzer-LLM's per-request engine
        options) has no meaning for the rerank backends here and is ignored. Raises
        ``InvalidRequestError`` for a malformed pair."""
        name, pairs, single = self._rerank_inputs(model, sentence_pairs)
        start = time.perf_counter()
        scores, tokens = self.runtime.rerank(name, pairs)
        return [_rerank_response(name, pairs, scores, single, tokens, time.perf_counter() - start)]

    async def async_emb_rerank(
        self,
        model: str | None = None,
        sentence_pairs: list[list[str]] | list[str] | None = None,
        extract_params: dict[str, Any] | None = None,
    ) -> list[LLMResponse]:
        """``emb_rerank`` for asyncio code."""
        name, pairs, single = self._rerank_inputs(model, sentence_pairs)
        runtime = await self._aruntime()
        start = time.perf_counter()
        scores, tokens = await runtime.arerank(name, pairs)
        return [_rerank_response(name, pairs, scores, single, tokens, time.perf_counter() - start)]

    def _rerank_inputs(self, model: str | None, sentence_pairs: Any) -> tuple[str, list[tuple[str, str]], bool]:
        name = self._emb_model(model)

        def is_pair(x: Any) -> bool:
            return isinstance(x, list | tuple) and len(x) == 2 and all(isinstance(t, str) for t in x)

        single = is_pair(sentence_pairs)
        pairs = [sentence_pairs] if single else sentence_pairs
        if not isinstance(pairs, list | tuple) or not pairs or not all(is_pair(p) for p in pairs):
            raise InvalidRequestError(
                "sentence_pairs must be a [query, passage] pair of strings or a non-empty list of such pairs",
                param="sentence_pairs",
            )
        return name, [(q, p) for q, p in pairs], single

    def _completion_request(
        self,
        prompt: str,
        model: str | None,
        llm_config: dict[str, Any] | None,
        extra_request_params: dict[str, Any] | None,
    ) -> tuple[str, ChatRequest]:
        if not isinstance(prompt, str):
            raise InvalidRequestError("prompt must be a string", param="prompt")
        name = self._model(model)
        request = build_chat_request(
            [{"role": "user", "content": prompt}],
            self.extra_generation_params.get(name),
            llm_config,
            extra_request_params,
        )
        request.prompt = prompt
        return name, request

    async def async_completion(
        self,
        prompt: str,
        model: str | None = None,
        llm_config: dict[str, Any] | None = None,
        extra_request_params: dict[str, Any] | None = None,
    ) -> LLMResponse:
        """Complete raw text (no chat template): the ``/v1/completions`` path. Metadata as
        ``chat_oai``."""
        name, request = self._completion_request(prompt, model, llm_config, extra_request_params)
        runtime = await self._aruntime()
        start = time.perf_counter()
        resp = await runtime.achat(name, request)
        return _llm_response(name, request, resp, time.perf_counter() - start)

    async def async_stream_completion(
        self,
        prompt: str,
        model: str | None = None,
        llm_config: dict[str, Any] | None = None,
        extra_request_params: dict[str, Any] | None = None,
    ) -> AsyncIterator[tuple[str, SingleOutputMeta]]:
        """``async_completion`` streamed as ``(delta, meta)``."""
        name, request = self._completion_request(prompt, model, llm_config, extra_request_params)
        runtime = await self._aruntime()
        async for item in _atuples(runtime.astream(name, request), delta_mode=True):
            yield item

    def chat(
        self, model: str | None, request: LLMRequest | str, extract_params: dict[str, Any] | None = None
    ) -> list[LLMResponse]:
        """Byzer-LLM's single-turn call: one ``LLMResponse`` per instruction of ``request`` (a string,
        or an ``LLMRequest`` whose ``instruction`` is a string or a list of them), each sent as one
        user message with the request's ``max_length``, ``top_p`` and ``temperature`` and the
        ``extract_params`` keys (llm_config keys). Byzer-LLM renders the instruction with a role
        mapping as raw text; here the model's own chat template applies (``setup_template`` to
        change it). Errors as ``chat_oai``."""
        request = LLMRequest(instruction=request) if isinstance(request, str) else request
        instructions = [request.instruction] if isinstance(request.instruction, str) else request.instruction
        config = {
            "max_length": request.max_length,
            "top_p": request.top_p,
            "temperature": request.temperature,
            **(extract_params or {}),
        }
        return [
            self.chat_oai([{"role": "user", "content": text}], model=model, llm_config=config)[0]
            for text in instructions
        ]

    raw_chat = chat

    def emb_query(self, v: str, model: str | None = None) -> list[LLMResponse]:
        """Embed one search query (``emb(..., query=True)``) with the default embedding model."""
        return self.emb(model, LLMRequest(instruction=v), query=True)

    def stream_chat_oai(
        self,
        conversations: list[dict[str, Any]],
        model: str | None = None,
        llm_config: dict[str, Any] | None = None,
        role_mapping: dict[str, str] | None = None,
        delta_mode: bool = False,
        extra_request_params: dict[str, Any] | None = None,
        tools: list[Any] | None = None,
        tool_choice: Any = None,
    ) -> Iterator[tuple[str, SingleOutputMeta]]:
        """Stream a chat completion as ``(text, SingleOutputMeta)`` tuples as tokens are made.

        ``delta_mode=True`` yields each new piece; ``False`` yields the whole text so far. The
        last tuple has ``meta.finish_reason`` set (its text is empty in delta mode). Stopping
        the iteration early cancels the generation on the worker. Errors as ``chat_oai``.

        With ``tools``, the items carry ``meta.tool_calls`` deltas in OpenAI's order (the tool name
        once, then the arguments' JSON text in pieces) and the last has finish_reason
        "tool_calls"; the text is empty.
        """
        if tools is not None:
            config = {**(llm_config or {}), **(extra_request_params or {})}
            return self._stream_tool_calls(self._model(model), conversations, config, tools, tool_choice)
        task = self._task_of(self._model(model))
        if task is not None:  # one piece: the whole audio, transcription or image
            resp = self._task_chat(self._model(model), task, conversations, llm_config, extra_request_params)
            return iter([(resp.output, SingleOutputMeta(finish_reason="stop"))])
        name, request = self._request(conversations, model, llm_config, role_mapping, extra_request_params)
        answered = self._before_call(name, request, llm_config)
        if answered is not None:
            return iter(_answered_tuples(answered, delta_mode))
        return self._observed(name, request, _tuples(self.runtime.stream(name, request), delta_mode), delta_mode)

    def _observed(
        self, name: str, request: ChatRequest, items: Iterator[tuple[str, SingleOutputMeta]], delta_mode: bool
    ) -> Iterator[tuple[str, SingleOutputMeta]]:
        """``items``, then the AFTER_CALL_MODEL callbacks on the whole text."""
        if not self.event_callbacks.get(EventName.AFTER_CALL_MODEL):
            yield from items
            return
        text, meta = "", None
        for piece, meta in items:
            text = text + piece if delta_mode else piece
            yield piece, meta
        if meta is not None:
            self._after_call(name, [LLMResponse(text, _event_input(request, None)["instruction"], meta.to_dict())])

    async def async_chat_oai(
        self,
        conversations: list[dict[str, Any]],
        model: str | None = None,
        llm_config: dict[str, Any] | None = None,
        role_mapping: dict[str, str] | None = None,
        extra_request_params: dict[str, Any] | None = None,
        **structured: Any,
    ) -> list[Any]:
        """``chat_oai`` for asyncio code; awaits the worker without blocking the event loop.
        Structured calls (``tools=``, ``response_class=``, ``impl_func=``...) and the chat-shaped
        calls of speech, transcription and image deployments run in a thread."""
        if structured or await asyncio.to_thread(self._task_of, self._model(model)) is not None:
            return await asyncio.to_thread(
                functools.partial(
                    self.chat_oai,
                    conversations,
                    model=model,
                    llm_config=llm_config,
                    role_mapping=role_mapping,
                    extra_request_params=extra_request_params,
                    **structured,
                )
            )
        name, request = self._request(conversations, model, llm_config, role_mapping, extra_request_params)
        answered = self._before_call(name, request, llm_config)
        if answered is not None:
            return answered
        runtime = await self._aruntime()
        start = time.perf_counter()
        resp = await runtime.achat(name, request)
        return self._after_call(name, [_llm_response(name, request, resp, time.perf_counter() - start)])

    async def async_stream_chat_oai(
        self,
        conversations: list[dict[str, Any]],
        model: str | None = None,
        llm_config: dict[str, Any] | None = None,
        role_mapping: dict[str, str] | None = None,
        delta_mode: bool = False,
        extra_request_params: dict[str, Any] | None = None,
    ) -> AsyncIterator[tuple[str, SingleOutputMeta]]:
        """``stream_chat_oai`` for asyncio code: an async iterator of ``(text, meta)``."""
        task = await asyncio.to_thread(self._task_of, self._model(model))
        if task is not None:
            resp = await asyncio.to_thread(
                self._task_chat, self._model(model), task, conversations, llm_config, extra_request_params
            )
            yield resp.output, SingleOutputMeta(finish_reason="stop")
            return
        name, request = self._request(conversations, model, llm_config, role_mapping, extra_request_params)
        answered = self._before_call(name, request, llm_config)
        if answered is not None:
            for item in _answered_tuples(answered, delta_mode):
                yield item
            return
        runtime = await self._aruntime()
        text, meta = "", None
        async for piece, meta in _atuples(runtime.astream(name, request), delta_mode):
            text = text + piece if delta_mode else piece
            yield piece, meta
        if meta is not None and self.event_callbacks.get(EventName.AFTER_CALL_MODEL):
            self._after_call(name, [LLMResponse(text, _event_input(request, None)["instruction"], meta.to_dict())])


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequestError(f"{name} must be an integer >= 1, got {value!r}", param=name)
    return value


def _event_input(request: ChatRequest, llm_config: dict[str, Any] | None) -> dict[str, Any]:
    """The request as Byzer-LLM hands it to event callbacks: the last message's content as
    ``instruction`` (the rendered prompt when a client template made one), the others as
    ``history``, and the llm_config keys."""
    instruction = request.prompt if request.prompt is not None else request.messages[-1].get("content")
    history = [] if request.prompt is not None else [dict(m) for m in request.messages[:-1]]
    return {"instruction": instruction, "history": history, **(llm_config or {})}


def _event_responses(items: Any) -> list[LLMResponse]:
    """A callback's answer (``[{"predict", "metadata", "input"}]``) as ``LLMResponse``s."""
    if not isinstance(items, list) or not all(isinstance(i, dict) and "predict" in i for i in items):
        raise InvalidRequestError(
            "an event callback that answers returns (False, [{'predict': ..., 'metadata': {...}, 'input': ...}])",
            param="callback",
        )
    return [LLMResponse(i["predict"], i.get("input", ""), dict(i.get("metadata") or {})) for i in items]


def _answered_tuples(responses: list[LLMResponse], delta_mode: bool) -> list[tuple[str, SingleOutputMeta]]:
    """A callback's answer as a stream: its text, then the end (empty in delta mode)."""
    text = responses[0].output if responses else ""
    meta = responses[0].metadata if responses else {}
    end = SingleOutputMeta(
        input_tokens_count=meta.get("input_tokens_count", 0),
        generated_tokens_count=meta.get("generated_tokens_count", 0),
        finish_reason="stop",
    )
    return [(text, replace(end, finish_reason=None)), ("" if delta_mode else text, end)]


def _deploy_options(pretrained_model_type: str, infer_params: dict[str, Any] | None) -> dict[str, Any]:
    """Backend options from ``infer_params``; a ``saas/<name>`` type adds its preset."""
    options = normalize_infer_params(infer_params)
    if pretrained_model_type.startswith("saas/"):
        from ..backends.saas_presets import resolve

        options.setdefault("preset", resolve(pretrained_model_type)[1])
    return options


def _input(name: str, request: ChatRequest) -> dict[str, Any]:
    # shallow: a deep copy (dataclasses.asdict) costs more than the rest of the client per request
    data = {f.name: getattr(request, f.name) for f in fields(request)}
    data["model"] = name
    return data


def _advance(meta: SingleOutputMeta, chunk: ChatChunk, start: float, delta_mode: bool = True) -> str:
    now = time.perf_counter() - start
    # a reasoning model's thinking: this chunk's piece in delta mode, all so far otherwise
    meta.reasoning_content = chunk.reasoning if delta_mode else meta.reasoning_content + chunk.reasoning
    if (chunk.delta or chunk.reasoning) and meta.first_token_time is None:
        meta.first_token_time = now
    meta.input_tokens_count = chunk.input_tokens
    meta.generated_tokens_count = chunk.generated_tokens
    meta.time_cost = now
    meta.finish_reason = chunk.finish_reason
    return chunk.delta


def _llm_response(name: str, request: ChatRequest, resp: Any, cost: float) -> LLMResponse:
    """The ``LLMResponse`` of a finished call that took ``cost`` seconds end to end; the call's
    overhead is attributed to the time before the first token."""
    first = resp.first_token_time + max(cost - resp.time_cost, 0.0)
    return LLMResponse(resp.text, _input(name, request), response_metadata(resp, cost, first))


def _emb_responses(
    name: str, texts: list[str], vectors: list[list[float]], tokens: int, cost: float
) -> list[LLMResponse]:
    meta = {"input_tokens_count": tokens, "time_cost": cost}
    return [LLMResponse(v, {"instruction": t, "model": name}, meta) for v, t in zip(vectors, texts, strict=True)]


def _rerank_response(
    name: str, pairs: list[tuple[str, str]], scores: list[float], single: bool, tokens: int, cost: float
) -> LLMResponse:
    ranked = sorted(([list(p), float(s)] for p, s in zip(pairs, scores, strict=True)), key=lambda x: -x[1])
    meta = {"input_tokens_count": tokens, "time_cost": cost}
    return LLMResponse(
        ranked[0] if single else ranked, {"sentence_pairs": [list(p) for p in pairs], "model": name}, meta
    )


async def _atuples(chunks: AsyncIterator[ChatChunk], delta_mode: bool) -> AsyncIterator[tuple[str, SingleOutputMeta]]:
    """``_tuples`` for an async stream of chunks."""
    meta = SingleOutputMeta()
    start = time.perf_counter()
    text = ""
    async for chunk in chunks:
        piece = _advance(meta, chunk, start, delta_mode)
        text += piece
        yield (piece if delta_mode else text), replace(meta)


def _tuples(chunks: Iterator[ChatChunk], delta_mode: bool) -> Iterator[tuple[str, SingleOutputMeta]]:
    meta = SingleOutputMeta()
    start = time.perf_counter()
    text = ""
    for chunk in chunks:
        piece = _advance(meta, chunk, start, delta_mode)
        text += piece
        yield (piece if delta_mode else text), replace(meta)
