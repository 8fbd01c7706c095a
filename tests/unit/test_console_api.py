"""The web console's API (/v1/deployments..., /v1/backends) and page route, on the in-process client
with the echo backend (no Ray, no model): deploys answer at once and run in a thread of the server,
their progress and failures are shown, the history sampler keeps counters at its interval."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import threading
import time
import typing
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

import byzerllm
from byzerllm.backends import available_backends, get_backend_class
from byzerllm.backends.llama_cpp import LlamaCppOptions
from byzerllm.backends.openai_compat import OpenAICompatBackend
from byzerllm.backends.options import literal_values
from byzerllm.cli.main import cli
from byzerllm.server import create_app
from byzerllm.server.deploys import DeployClient

from .test_server_errors import protocol_mismatches

INTERVAL = 0.05  # the history sampler's, in these tests
KEY = {"Authorization": "Bearer k"}


class SlowDeployLLM(byzerllm.SimpleByzerLLM):
    """The in-process client whose deploys take a moment per worker, as a real one loading a model:
    after each worker is ready it reports the progress, then waits ``delay`` seconds and for
    ``gate`` (open unless a test closes it). ``deploys`` names the deploys that started."""

    def __init__(self, delay: float = 0.02) -> None:
        super().__init__(None)
        self.delay = delay
        self.gate = threading.Event()
        self.gate.set()
        self.deploys: list[str] = []

    def deploy(
        self,
        model_path: str | None = "",
        pretrained_model_type: str = "custom/auto",
        udf_name: str = "",
        infer_params: dict[str, Any] | None = None,
        timeout: float = 600.0,
        on_progress: Callable[[int, int], None] | None = None,
        **settings: Any,
    ) -> dict[str, Any]:
        self.deploys.append(udf_name)

        def slowly(ready: int, total: int) -> None:
            if on_progress:
                on_progress(ready, total)
            time.sleep(self.delay)
            assert self.gate.wait(10)

        return super().deploy(model_path, pretrained_model_type, udf_name, infer_params, timeout, slowly, **settings)


@pytest.fixture
def console() -> Iterator[tuple[TestClient, SlowDeployLLM]]:
    llm = SlowDeployLLM()
    with TestClient(create_app(llm, api_keys=["k"], history_interval=INTERVAL), headers=KEY) as http:
        yield http, llm
        llm.gate.set()
    llm.close()


def echo(name: str, **body: Any) -> dict[str, Any]:
    return {"name": name, "model_path": "", "backend": "echo", **body}


def wait_for(http: TestClient, name: str, ok: Callable[[dict[str, Any] | None], bool], timeout: float = 10) -> Any:
    """The deployment ``name`` of ``GET /v1/deployments`` (None when not listed) once ``ok`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        listed = {d["name"]: d for d in http.get("/v1/deployments").json()["data"]}
        if ok(listed.get(name)) or time.monotonic() > deadline:
            assert ok(listed.get(name)), listed.get(name)
            return listed.get(name)
        time.sleep(0.01)


def running(d: dict[str, Any] | None) -> bool:
    return d is not None and d["state"] == "running"


def test_a_deploy_answers_202_at_once_then_shows_its_progress_until_it_runs(console):
    http, llm = console
    llm.gate.clear()  # every worker waits after loading
    r = http.post("/v1/deployments", json=echo("e", num_workers=2, worker_concurrency=3))
    assert r.status_code == 202
    started = r.json()
    assert started["state"] == "starting" and started["progress"] == {"ready": 0, "total": 2}
    assert started["backend"] == "echo" and started["num_workers"] == 2 and started["worker_concurrency"] == 3
    assert started["workers"] == [{"index": 0, "pid": None, "node": None}, {"index": 1, "pid": None, "node": None}]
    halfway = wait_for(http, "e", lambda d: d is not None and d["progress"]["ready"] == 1)
    assert halfway["state"] == "starting" and halfway["progress"] == {"ready": 1, "total": 2}
    llm.gate.set()
    done = wait_for(http, "e", running)
    assert done["progress"] is None and done["error"] is None
    assert done["tasks"] == ["chat", "embed", "rerank"] and done["input_modalities"] == ["text"]
    here = {"pid": os.getpid(), "node": socket.gethostname()}
    assert done["workers"] == [{"index": 0, **here}, {"index": 1, **here}]


def test_the_list_is_sorted_and_a_deployment_shows_its_stat_meta_and_options(console):
    http, _ = console
    for name in ("b", "a"):
        assert http.post("/v1/deployments", json=echo(name, options={"max_model_len": 64})).status_code == 202
    wait_for(http, "a", running)
    wait_for(http, "b", running)
    listed = http.get("/v1/deployments").json()["data"]
    assert [d["name"] for d in listed] == ["a", "b"]
    assert all(time.time() - 60 < d["created_at"] <= time.time() for d in listed)
    detail = http.get("/v1/deployments/a").json()
    assert {k: detail[k] for k in listed[0]} == listed[0]
    assert detail["options"] == {"token_delay": 0.0, "max_model_len": 64}  # the defaults filled in
    assert detail["meta"]["max_model_len"] == 64 and detail["meta"]["backend"] == "inprocess/echo"
    assert detail["stat"]["total_workers"] == 1 and detail["stat"]["total_requests"] == [0]


def test_a_bad_option_is_refused_naming_it_and_nothing_starts(console):
    http, llm = console
    r = http.post("/v1/deployments", json=echo("e", options={"token_dela": 1}))
    assert r.status_code == 400 and r.json()["error"]["param"] == "options.token_dela"
    assert "did you mean 'token_delay'" in r.json()["error"]["message"]
    r = http.post("/v1/deployments", json=echo("e", options={"token_delay": -1}))
    assert r.status_code == 400 and r.json()["error"]["param"] == "options.token_delay"
    r = http.post("/v1/deployments", json=echo("bad/name"))
    assert r.status_code == 400 and r.json()["error"]["param"] == "name"
    r = http.post("/v1/deployments", json=echo("e", num_workers=0))
    assert r.status_code == 400 and r.json()["error"]["param"] == "num_workers"
    assert llm.deploys == [] and http.get("/v1/deployments").json() == {"data": []}


def test_an_unknown_backend_is_refused_listing_the_installed_ones(console):
    http, llm = console
    r = http.post("/v1/deployments", json=echo("e", backend="nope"))
    error = r.json()["error"]
    assert r.status_code == 400 and error["param"] == "backend"
    assert all(name in error["message"] for name in available_backends())
    assert llm.deploys == []


def test_a_name_deployed_or_being_deployed_is_refused_with_409(console):
    http, llm = console
    llm.gate.clear()
    assert http.post("/v1/deployments", json=echo("e")).status_code == 202
    again = http.post("/v1/deployments", json=echo("e"))
    assert again.status_code == 409 and again.json()["error"]["param"] == "name"
    assert "starting" in again.json()["error"]["message"]
    llm.gate.set()
    wait_for(http, "e", running)
    again = http.post("/v1/deployments", json=echo("e"))
    assert again.status_code == 409 and "already exists" in again.json()["error"]["message"]
    assert llm.deploys == ["e"]


def test_a_failed_deploy_shows_its_error_until_deleted_or_deployed_again(console, tmp_path):
    http, _ = console
    missing = str(tmp_path / "missing.gguf")
    r = http.post("/v1/deployments", json={"name": "g", "model_path": missing})  # the default backend: llama_cpp
    assert r.status_code == 202 and r.json()["backend"] == "llama_cpp"
    failed = wait_for(http, "g", lambda d: d is not None and d["state"] == "failed")
    assert missing in failed["error"] and failed["progress"] is None
    detail = http.get("/v1/deployments/g").json()
    assert detail["error"] == failed["error"] and detail["stat"] is None and detail["options"]["n_ctx"] == 4096
    stat = http.get("/v1/deployments/g/stat")
    assert stat.status_code == 404 and "failed to start" in stat.json()["error"]["message"]
    assert http.post("/v1/deployments", json=echo("g")).status_code == 202  # a new deploy replaces it
    assert wait_for(http, "g", running)["error"] is None
    assert http.post("/v1/deployments", json={"name": "h", "model_path": missing}).status_code == 202
    wait_for(http, "h", lambda d: d is not None and d["state"] == "failed")
    assert http.delete("/v1/deployments/h").json() == {"name": "h", "deleted": True}
    assert [d["name"] for d in http.get("/v1/deployments").json()["data"]] == ["g"]


def test_delete_removes_a_deployment_and_unknown_names_are_404(console):
    http, llm = console
    assert http.post("/v1/deployments", json=echo("e")).status_code == 202
    wait_for(http, "e", running)
    assert http.delete("/v1/deployments/e").json() == {"name": "e", "deleted": True}
    assert llm.list_deployments() == [] and http.get("/v1/deployments").json() == {"data": []}
    for method, path in [
        ("delete", "/v1/deployments/e"),
        ("get", "/v1/deployments/e"),
        ("get", "/v1/deployments/e/stat"),
        ("get", "/v1/deployments/e/history"),
    ]:
        r = http.request(method, path)
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error", path


def test_a_deploy_deleted_while_starting_is_stopping_then_gone(console):
    http, llm = console
    llm.gate.clear()
    assert http.post("/v1/deployments", json=echo("e")).status_code == 202
    wait_for(http, "e", lambda d: d is not None and d["progress"]["ready"] == 1)
    assert http.delete("/v1/deployments/e").json() == {"name": "e", "deleted": True}
    assert wait_for(http, "e", lambda d: d is not None)["state"] == "stopping"
    llm.gate.set()
    wait_for(http, "e", lambda d: d is None)
    assert llm.list_deployments() == []


def chat(http: TestClient, model: str, text: str) -> None:
    r = http.post("/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": text}]})
    assert r.status_code == 200


def test_stat_has_the_counters_and_the_time(console):
    http, _ = console
    assert http.post("/v1/deployments", json=echo("e")).status_code == 202
    wait_for(http, "e", running)
    chat(http, "e", "one two three")
    before = time.time()
    stat = http.get("/v1/deployments/e/stat").json()
    assert before <= stat["time"] <= time.time()
    assert stat["total_requests"] == [1] and stat["completion_tokens"] == 3 and stat["failed_requests"] == 0
    assert stat["busy_workers"] == 0 and stat["idle_workers"] == stat["total_workers"] == 1
    assert stat["total_tokens"] == stat["prompt_tokens"] + 3 and stat["load_balance_strategy"] == "lru"


def test_the_history_grows_at_the_samplers_interval(console):
    http, _ = console
    assert http.post("/v1/deployments", json=echo("e")).status_code == 202
    wait_for(http, "e", running)
    chat(http, "e", "one two")
    time.sleep(20 * INTERVAL)
    first = http.get("/v1/deployments/e/history").json()
    chat(http, "e", "three")
    time.sleep(10 * INTERVAL)
    later = http.get("/v1/deployments/e/history").json()
    assert first["interval"] == INTERVAL
    points = later["points"]
    assert 5 <= len(first["points"]) < len(points) <= 40  # one per interval, with the machine's slack
    gaps = [b["time"] - a["time"] for a, b in itertools.pairwise(points)]
    # each stamped when its stat was read, a few milliseconds after its tick
    assert min(gaps) >= 0.5 * INTERVAL and 0.8 * INTERVAL <= sum(gaps) / len(gaps) <= 3 * INTERVAL
    for key in ("requests", "prompt_tokens", "completion_tokens", "tokens", "failed"):
        assert [p[key] for p in points] == sorted(p[key] for p in points), key  # cumulative
    assert first["points"][-1]["requests"] == 1 and first["points"][-1]["completion_tokens"] == 2
    assert points[-1]["requests"] == 2 and points[-1]["completion_tokens"] == 3
    assert points[-1]["busy_workers"] == points[-1]["queued"] == points[-1]["failed"] == 0


class OneBrokenStatLLM(SlowDeployLLM):
    """``stat`` of deployment ``broken`` fails with an error of no byzerllm kind."""

    def stat(self, model: str | None = None) -> dict[str, Any]:
        if model == "broken":
            raise RuntimeError("its pool does not answer")
        return super().stat(model)


def test_a_deployment_whose_stat_fails_does_not_stop_the_sampling_of_the_others():
    llm = OneBrokenStatLLM()
    with TestClient(create_app(llm, history_interval=INTERVAL)) as http:
        for name in ("a", "broken"):
            assert http.post("/v1/deployments", json=echo(name)).status_code == 202
            wait_for(http, name, running)
        time.sleep(6 * INTERVAL)
        assert len(http.get("/v1/deployments/a/history").json()["points"]) >= 3
        assert http.get("/v1/deployments/broken/history").json() == {"interval": INTERVAL, "points": []}
    llm.close()


def test_the_history_is_sampled_only_while_the_app_runs():
    llm = byzerllm.SimpleByzerLLM(None).setup_infer_backend("echo")
    llm.deploy(model_path="", udf_name="e")
    app = create_app(llm, history_interval=INTERVAL)
    with TestClient(app) as http:
        time.sleep(4 * INTERVAL)
        assert http.get("/v1/deployments/e/history").json()["points"]
    count = len(app.state.server.history.points("e"))
    time.sleep(4 * INTERVAL)
    assert len(app.state.server.history.points("e")) == count
    llm.close()


def test_backend_options_are_the_pydantic_declaration(console):
    http, _ = console
    backends = {b["name"]: b for b in http.get("/v1/backends").json()["data"]}
    assert set(backends) <= set(available_backends()) and "llama_cpp" in backends and "echo" in backends
    llama = backends["llama_cpp"]
    assert llama["tasks"] == ["chat"] and llama["description"]
    options = {o["name"]: o for o in llama["options"]}
    assert list(options) == list(LlamaCppOptions.model_fields)
    for name, field in LlamaCppOptions.model_fields.items():
        option = options[name]
        assert option["default"] == field.get_default(), name
        assert option["description"] == field.description, name
        bounds = {k: getattr(m, k) for m in field.metadata for k in ("ge", "le", "gt", "lt") if getattr(m, k, None)}
        for bound, key in [
            ("ge", "minimum"),
            ("le", "maximum"),
            ("gt", "exclusive_minimum"),
            ("lt", "exclusive_maximum"),
        ]:
            assert option[key] == bounds.get(bound), (name, key)
        assert option["nullable"] == (type(None) in typing.get_args(field.annotation)), name
        assert option["secret"] is False
    assert options["n_ctx"] == {**options["n_ctx"], "type": "integer", "minimum": 1, "default": 4096}
    assert options["n_gpu_layers"]["minimum"] == -1 and options["use_mmap"]["type"] == "boolean"
    assert options["max_model_len"]["type"] == "integer" and options["max_model_len"]["nullable"] is True
    openai = {o["name"]: o for o in backends["openai"]["options"]}
    fields = OpenAICompatBackend.Options.model_fields
    assert openai["json_schema_mode"]["enum"] == literal_values(fields["json_schema_mode"].annotation)
    assert openai["api_key"]["secret"] is True and openai["max_output_tokens"]["secret"] is False
    assert openai["timeout"]["exclusive_minimum"] == 0 and openai["timeout"]["type"] == "number"
    assert backends["echo"]["tasks"] == list(get_backend_class("echo").tasks)


NEW_ROUTES = [
    ("get", "/v1/deployments"),
    ("post", "/v1/deployments"),
    ("get", "/v1/deployments/e"),
    ("delete", "/v1/deployments/e"),
    ("get", "/v1/deployments/e/stat"),
    ("get", "/v1/deployments/e/history"),
    ("get", "/v1/backends"),
]


def test_every_new_route_needs_the_api_key_and_the_console_does_not(console):
    http, llm = console
    for method, path in NEW_ROUTES:
        r = http.request(method, path, headers={"Authorization": ""}, json=echo("e") if method == "post" else None)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error", path
        assert http.request(method, path, headers={"Authorization": "Bearer x"}).status_code == 401, path
    assert llm.deploys == []
    others = [
        ("get", "/v1/jobs"),
        ("get", "/v1/jobs/j"),
        ("get", "/v1/jobs/j/log"),
        ("post", "/v1/jobs/j/cancel"),
        ("post", "/v1/jobs/j/resume"),
        ("get", "/v1/storage/tables"),
        ("post", "/v1/storage/search"),
        ("get", "/v1/rag/indexes"),
        ("post", "/v1/rag/indexes"),
        ("post", "/v1/rag/ask"),
    ]
    for method, path in others:
        assert http.request(method, path, headers={"Authorization": ""}).status_code == 401, path
    for path in ("/console", "/console/", "/console/assets/console.js", "/console/assets/vendor/uplot/LICENSE"):
        r = http.get(path, headers={"Authorization": ""})
        assert r.status_code == 200 and "authentication_error" not in r.text, path
    page = http.get("/console", headers={"Authorization": ""})
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert http.get("/console/assets/app.js", headers={"Authorization": ""}).status_code == 404
    # dot segments (encoded, so the client sends them as they are) lead nowhere out of the console
    for path in ("/console/assets/%2e%2e/%2e%2e/app.py", "/console/%2e%2e/v1/deployments"):
        r = http.get(path, headers={"Authorization": ""})
        assert r.status_code == 404 and "data" not in r.json(), path
    assert http.get("/consoles", headers={"Authorization": ""}).status_code == 401  # a prefix, not a path


def test_the_openapi_schema_lists_every_new_path():
    schema = create_app(SlowDeployLLM()).openapi()
    for method, path in NEW_ROUTES:
        path = path.replace("/e", "/{name}")
        responses = schema["paths"][path][method]["responses"]
        ok = responses["202" if method == "post" else "200"]
        assert ok["content"]["application/json"]["schema"]["$ref"].startswith("#/components/schemas/"), path
        assert "401" in responses and "default" in responses and "422" not in responses, path
    assert "409" in schema["paths"]["/v1/deployments"]["post"]["responses"]
    assert "text/html" in schema["paths"]["/console"]["get"]["responses"]["200"]["content"]
    assert "/console/assets/{path}" in schema["paths"]
    for name in ("Deployment", "DeploymentDetail", "DeployRequest", "DeploymentHistory", "BackendOption"):
        assert name in schema["components"]["schemas"]


def test_the_in_process_runtime_tells_where_each_worker_runs():
    with byzerllm.SimpleByzerLLM(None).setup_infer_backend("echo").setup_num_workers(2) as llm:
        llm.deploy(model_path="", udf_name="e")
        workers = llm.deployment_info("e")["workers"]
    here = {"pid": os.getpid(), "node": socket.gethostname()}
    assert workers == [{"index": 0, **here}, {"index": 1, **here}]


def test_the_deploy_settings_of_a_call_leave_the_clients_own_alone():
    llm = byzerllm.SimpleByzerLLM(None).setup_num_workers(3)
    spec = llm.deploy_spec("", udf_name="e", infer_backend="echo", num_workers=2, worker_concurrency=4)
    assert (spec.backend, spec.num_workers, spec.worker_concurrency) == ("echo", 2, 4)
    assert llm.num_workers == 3 and llm.infer_backend is None and llm.list_deployments() == []


@pytest.mark.parametrize("cls", [byzerllm.ByzerLLM, byzerllm.SimpleByzerLLM, SlowDeployLLM], ids=lambda c: c.__name__)
def test_the_clients_are_deploy_clients(cls):
    assert issubclass(cls, DeployClient)
    assert protocol_mismatches(cls, DeployClient) == []


class Health:
    """The answer of a server's /health."""

    status = 200

    def __enter__(self) -> Health:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def read(self) -> bytes:
        return b'{"status": "ok"}'


def test_console_prints_the_url_of_a_running_server_and_opens_it(monkeypatch):
    asked, opened = [], []
    opener = type("Opener", (), {"open": lambda self, url, timeout: asked.append(url) or Health()})
    monkeypatch.setattr("urllib.request.build_opener", lambda *handlers: opener())
    monkeypatch.setattr("webbrowser.open", opened.append)
    result = CliRunner().invoke(cli, ["console", "--port", "8123", "--open"])
    assert result.exit_code == 0 and result.output == "http://127.0.0.1:8123/console\n"
    assert asked == ["http://127.0.0.1:8123/health"] and opened == ["http://127.0.0.1:8123/console"]


def test_console_without_a_server_says_so():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = CliRunner().invoke(cli, ["console", "--port", str(port)])
    assert result.exit_code == 1
    assert f"no byzerllm server answers on http://127.0.0.1:{port}/health" in result.output


class FakeWorkerHandle:
    """A worker actor's handle as the pool calls it: ``ready.remote()`` is awaited."""

    def __init__(self, pid: int, node: str) -> None:
        async def ready() -> dict[str, Any]:
            return {"pid": pid, "node": node, "meta": {}}

        self.ready = type("Method", (), {"remote": staticmethod(ready)})()


async def test_the_ray_pool_keeps_where_its_workers_run_and_asks_again_after_a_restart():
    pytest.importorskip("ray")
    from byzerllm.runtime.ray.actors import DeploymentPool
    from byzerllm.runtime.slots import SlotCounts
    from byzerllm.runtime.spec import DeploymentSpec

    spec = DeploymentSpec("e", "echo", "", num_workers=2)
    pool = DeploymentPool.__new__(DeploymentPool)  # the actor's state without Ray (no worker actors)
    pool.spec, pool.state, pool.meta_cache, pool.counts = spec, "starting", None, SlotCounts(spec)
    pool.placement, pool._placing, pool.leases, pool._unused = [None, None], set(), {}, {}
    pool.restarts, pool.events = [0, 0], deque()
    pool._cond = asyncio.Condition()
    pool.workers = [FakeWorkerHandle(11, "10.0.0.1"), FakeWorkerHandle(12, "10.0.0.2")]

    def where(index, pid, node, restarts=0):
        return {"index": index, "pid": pid, "node": node, "node_id": None, "restarts": restarts}

    assert pool.info()["workers"] == [where(0, None, None), where(1, None, None)]
    await pool.wait_ready()
    assert pool.info()["workers"] == [where(0, 11, "10.0.0.1"), where(1, 12, "10.0.0.2")]
    await pool.worker_started(1, 12)  # its first start, told after its ready(): no restart
    assert pool.info()["workers"][1] == where(1, 12, "10.0.0.2") and not pool.events
    pool.workers[1] = FakeWorkerHandle(13, "10.0.0.3")  # worker 1's process restarted elsewhere
    await pool.worker_started(1, 13)
    assert pool.info()["workers"][1] == where(1, None, None, restarts=1)
    await asyncio.gather(*pool._placing)
    assert pool.info()["workers"][1] == where(1, 13, "10.0.0.3", restarts=1)
    (event,) = pool.info()["events"]
    assert (event["event"], event["worker"], event["previous"]["pid"], event["now"]["pid"]) == ("restarted", 1, 12, 13)


def test_secrets_are_masked_in_headers_urls_and_nested_options():
    from byzerllm.runtime.spec import mask_secrets

    masked = mask_secrets(
        {
            "api_key": "sk-123456789",
            "extra_headers": {"Authorization": "Bearer sk-abcdefgh", "X-Team": "research"},
            "proxies": "http://user:hunter2@proxy:8080",
            "fallback_models": [{"model": "m", "api_key": "sk-zzzz9999"}],
            "n_threads": 2,
        }
    )
    assert masked == {
        "api_key": "***6789",
        "extra_headers": {"Authorization": "***efgh", "X-Team": "***arch"},
        "proxies": "http://user:***@proxy:8080",
        "fallback_models": [{"model": "m", "api_key": "***9999"}],
        "n_threads": 2,
    }
