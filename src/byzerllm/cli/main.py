"""The ``byzerllm`` command: deploy, undeploy, query, stat, list, serve, console, backends, sql,
cluster start/stop.

Flags follow the Byzer-LLM documents (``--num_workers``, ``--infer_params k=v k2=v2``); the
dashed spellings (``--num-workers``) work too. Errors print one line and exit with status 1.
"""

from __future__ import annotations

import json
import sys
import time

import click
from rich.console import Console

from ..backends.models import DEFAULT_CHAT_MODEL
from ..errors import ByzerLLMError
from ..params import parse_key_values
from ..runtime.spec import PLACEMENTS
from .common import MultiValueCommand, _connect, _fail, _opt, err, handle_errors
from .rag import rag
from .sql import sql
from .storage import storage
from .train import export, jobs, merge, pretrain, sft


@click.group()
@click.version_option(package_name="byzerllm")
def cli() -> None:
    """Deploy language models as worker pools on Ray and use them."""


@cli.command(cls=MultiValueCommand)
@_opt("model", required=True, help="Deployment name (udf_name), e.g. smollm2_chat.")
@_opt(
    "model_path",
    default=DEFAULT_CHAT_MODEL,
    show_default=True,
    help="GGUF file, Hugging Face model folder, or builtin:smollm2.",
)
@_opt("pretrained_model_type", default="custom/auto", show_default=True)
@_opt(
    "infer_backend",
    default=None,
    help="Inference backend (default: the model's; a GGUF runs on llama_server when worker_concurrency > 1, "
    "else llama_cpp; a Hugging Face causal-LM folder on transformers).",
)
@_opt("num_workers", default=1, type=int, show_default=True)
@_opt("worker_concurrency", default=1, type=int, show_default=True, help="Requests one worker serves at once.")
@_opt("cpus_per_worker", default=0.001, type=float, show_default=True)
@_opt("gpus_per_worker", default=0.0, type=float, show_default=True)
@_opt("load_balance", default="lru", show_default=True, help="lru, round_robin, least_busy or random.")
@_opt("max_queue", default=1024, type=int, show_default=True, help="Requests that may wait for a free slot.")
@_opt(
    "placement",
    default=None,
    type=click.Choice(PLACEMENTS),
    help="Place the workers on as few nodes as possible (pack) or one per node (spread); default: Ray's choice.",
)
@_opt("resources", default=None, help="Custom Ray resources per worker as JSON, e.g. '{\"big_node\": 1}'.")
@_opt(
    "infer_params",
    multiple=True,
    help="Backend options key=value, typed by the backend (byzerllm backends NAME lists them).",
)
@_opt("ray_address", default="auto", show_default=True)
@_opt("timeout", default=600.0, type=float, show_default=True, help="Seconds to wait for the workers.")
@handle_errors
def deploy(
    model,
    model_path,
    pretrained_model_type,
    infer_backend,
    num_workers,
    worker_concurrency,
    cpus_per_worker,
    gpus_per_worker,
    load_balance,
    max_queue,
    placement,
    resources,
    infer_params,
    ray_address,
    timeout,
):
    """Deploy a model as a named pool of workers."""
    from ..client import ByzerLLM

    params = parse_key_values(infer_params)
    resources = _resources_option(resources)
    _connect(ray_address, start_local=True)
    llm = (
        ByzerLLM()
        .setup_num_workers(num_workers)
        .setup_worker_concurrency(worker_concurrency)
        .setup_cpus_per_worker(cpus_per_worker)
        .setup_gpus_per_worker(gpus_per_worker)
        .setup_load_balance_way(load_balance)
        .setup_max_queue(max_queue)
        .setup_placement(placement)
        .setup_resources_per_worker(resources)
    )
    if infer_backend:
        llm.setup_infer_backend(infer_backend)
    start = time.monotonic()
    _say_if_shipped(model_path)
    with err.status(f"Deploying {model}: starting {num_workers} worker(s)...") as status:

        def progress(ready: int, total: int) -> None:
            status.update(f"Deploying {model}: {ready}/{total} workers ready ({time.monotonic() - start:.1f}s)")

        meta = llm.deploy(
            model_path=model_path,
            pretrained_model_type=pretrained_model_type,
            udf_name=model,
            infer_params=params,
            timeout=timeout,
            on_progress=progress,
        )
    click.echo(
        f"Deployed {model}: {num_workers} worker(s), backend {meta.get('backend')}, "
        f"max_model_len {meta.get('max_model_len')} ({time.monotonic() - start:.1f}s)"
    )


@cli.command()
@_opt("model", required=True)
@_opt("ray_address", default="auto", show_default=True)
@handle_errors
def undeploy(model, ray_address):
    """Remove a deployment; requests still running on it end with an error."""
    from ..client import ByzerLLM

    _connect(ray_address)
    ByzerLLM().undeploy(model)
    click.echo(f"Undeployed {model}")


@cli.command()
@_opt("model", required=True)
@_opt("query", required=True, help="The user message.")
@_opt("system", default=None, help="A system message.")
@_opt("template", default="auto", show_default=True, help="auto (the model's own) or chatml/default/llama.")
@_opt("max_length", default=None, type=int, help="Max tokens to generate.")
@_opt("temperature", default=None, type=float)
@_opt("seed", default=None, type=int)
@click.option("--stream/--no-stream", default=True, show_default=True)
@_opt("ray_address", default="auto", show_default=True)
@handle_errors
def query(model, query, system, template, max_length, temperature, seed, stream, ray_address):
    """Ask a deployment one question; the answer streams to stdout, counts go to stderr."""
    from ..client import ByzerLLM, Templates

    _connect(ray_address)
    llm = ByzerLLM()
    if template != "auto":
        known = {
            "chatml": Templates.chatml,
            "qwen": Templates.qwen,
            "default": Templates.default,
            "llama": Templates.llama,
        }
        if template not in known:
            _fail(f"--template {template!r} is unknown; accepted: auto, {', '.join(known)}")
        llm.setup_template(model, known[template]())
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": query}]
    config = {
        k: v for k, v in (("max_length", max_length), ("temperature", temperature), ("seed", seed)) if v is not None
    }
    if stream:
        meta = None
        for piece, meta in llm.stream_chat_oai(messages, model=model, llm_config=config, delta_mode=True):
            click.echo(piece, nl=False)
            sys.stdout.flush()
        click.echo()
        if meta:
            err.print(
                f"[{meta.input_tokens_count} input tokens, {meta.generated_tokens_count} generated, "
                f"first token {meta.first_token_time or 0:.3f}s, total {meta.time_cost:.3f}s, "
                f"finish_reason {meta.finish_reason}]",
                style="dim",
                soft_wrap=True,
            )
    else:
        resp = llm.chat_oai(messages, model=model, llm_config=config)[0]
        click.echo(resp.output)
        m = resp.metadata
        err.print(
            f"[{m['input_tokens_count']} input tokens, {m['generated_tokens_count']} generated, "
            f"first token {m['first_token_time']:.3f}s, total {m['time_cost']:.3f}s, "
            f"{m['speed']:.1f} tokens/s, finish_reason {m['finish_reason']}]",
            style="dim",
            soft_wrap=True,
        )


@cli.command()
@_opt("model", required=True)
@_opt("interval", default=0.0, type=float, help="Repeat every N seconds (Ctrl-C stops).")
@_opt("count", default=0, type=int, help="With --interval: stop after N prints.")
@_opt("ray_address", default="auto", show_default=True)
@handle_errors
def stat(model, interval, count, ray_address):
    """Worker counts of a deployment as JSON (total/busy/idle workers, requests per worker...)."""
    from ..client import ByzerLLM

    _connect(ray_address)
    llm = ByzerLLM()
    printed = 0
    while True:
        click.echo(json.dumps(llm.stat(model), indent=4, ensure_ascii=False))
        printed += 1
        if interval <= 0 or (count and printed >= count):
            return
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            return


def _node_label(worker: dict) -> str:
    """A worker's node as ``ip/node-id-prefix`` (nodes of one machine share the IP)."""
    if not worker.get("node"):
        return "-"
    return worker["node"] + (f"/{worker['node_id'][:8]}" if worker.get("node_id") else "")


@cli.command(name="list")
@_opt("ray_address", default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@handle_errors
def list_cmd(ray_address, as_json):
    """List the deployments on the cluster."""
    from rich.table import Table

    from ..client import ByzerLLM

    _connect(ray_address)
    llm = ByzerLLM()
    rows = []
    for name in llm.list_deployments():
        try:
            info = llm.deployment_info(name)
        except ByzerLLMError:
            continue  # undeployed between the listing and this call
        spec = info["spec"]
        rows.append(
            {
                "model": name,
                "state": info["state"],
                "backend": spec["backend"],
                "workers": spec["num_workers"],
                "worker_concurrency": spec["worker_concurrency"],
                "model_path": spec["model_path"],
                "pretrained_model_type": spec["pretrained_model_type"],
                "nodes": [_node_label(w) for w in info.get("workers", [])],
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("No deployments.")
        return
    table = Table("model", "state", "backend", "workers", "concurrency", "nodes", "model_path")
    for r in rows:
        table.add_row(
            r["model"],
            r["state"],
            r["backend"],
            str(r["workers"]),
            str(r["worker_concurrency"]),
            ", ".join(r["nodes"]),
            r["model_path"],
        )
    Console().print(table)


@cli.command()
@_opt("host", default="127.0.0.1", show_default=True, help="Address to bind; 0.0.0.0 exposes it to the network.")
@_opt("port", default=8000, type=int, show_default=True)
@_opt("api_key", multiple=True, help="Accepted bearer key (repeatable); also BYZERLLM_API_KEYS (comma-separated).")
@_opt("api_key_file", default=None, type=click.Path(exists=True, dir_okay=False), help="File with one key per line.")
@_opt("served_model_name", multiple=True, help="alias=deployment: also serve a deployment under another name.")
@_opt("request_timeout", default=600.0, type=float, show_default=True, help="Seconds before a 504.")
@_opt("max_body_mb", default=8.0, type=float, show_default=True, help="Largest request body, MB (audio: 25 at least).")
@_opt("storage_dir", default=None, help="The store the console's documents pages read (default: ByzerStorage's).")
@_opt("documents_root", default=None, help="The folder the console may build document indexes from (default: cwd).")
@_opt("ray_address", default="auto", show_default=True)
@handle_errors
def serve(
    host,
    port,
    api_key,
    api_key_file,
    served_model_name,
    request_timeout,
    max_body_mb,
    storage_dir,
    documents_root,
    ray_address,
):
    """Serve every deployment through an OpenAI-compatible HTTP API (/v1/chat/completions...)."""
    import os

    import uvicorn

    from ..server import create_app

    keys = [*api_key, *filter(None, os.environ.get("BYZERLLM_API_KEYS", "").split(","))]
    if api_key_file:
        with open(api_key_file) as f:
            keys += [line.strip() for line in f if line.strip() and not line.startswith("#")]
    aliases = {}
    for item in served_model_name:
        alias, sep, target = item.partition("=")
        if not sep or not alias or not target:
            _fail(f"--served_model_name expects alias=deployment, got {item!r}")
        aliases[alias] = target
    _connect(ray_address)
    app = create_app(
        api_keys=keys,
        aliases=aliases,
        request_timeout=request_timeout,
        max_body_bytes=int(max_body_mb * 2**20),
        storage_dir=storage_dir,
        documents_root=documents_root,
    )
    err.print(
        f"Serving the deployments on http://{host}:{port}/v1 "
        f"({'API keys required' if keys else 'no API key required'}); the console: http://{host}:{port}/console",
        soft_wrap=True,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


@cli.command()
@_opt("host", default="127.0.0.1", show_default=True, help="Address of the running server (byzerllm serve).")
@_opt("port", default=8000, type=int, show_default=True)
@click.option("--open", "open_browser", is_flag=True, help="Open the console in the default web browser.")
@handle_errors
def console(host, port, open_browser):
    """Print the web console's URL of a running server (checked on its /health), or open it."""
    import urllib.request
    import webbrowser

    if host in ("0.0.0.0", "::"):  # the server listens everywhere: reach it on this machine
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    base = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through an HTTP proxy
    try:
        with direct.open(f"{base}/health", timeout=5) as resp:
            healthy = resp.status == 200 and json.loads(resp.read()).get("status") == "ok"
    except (OSError, ValueError):  # refused, timed out, not HTTP, not JSON
        healthy = False
    if not healthy:
        _fail(f"no byzerllm server answers on {base}/health (start one: byzerllm serve --host {host} --port {port})")
    url = f"{base}/console"
    click.echo(url)
    if open_browser:
        webbrowser.open(url)


@cli.command()
@click.argument("name", required=False)
@handle_errors
def backends(name):
    """List the installed backends, or print one backend's deploy options as a Markdown table."""
    from ..backends import available_backends, get_backend_class
    from ..backends.options import options_table

    if name is None:
        for backend in available_backends():
            cls = get_backend_class(backend)
            click.echo(f"{backend}\t{', '.join(cls.tasks)}")
        return
    click.echo(options_table(get_backend_class(name).Options))


def _say_if_shipped(model_path: str) -> None:
    """Tell the user when the model files will travel to the workers' nodes (it can take a while)."""
    import ray

    from ..runtime.ray.model_files import size_of, to_ship

    local = to_ship(model_path, sum(n["Alive"] for n in ray.nodes()))
    if local is None:
        return
    size = size_of(local)
    err.print(
        f"Model files {local.name} ({size / 1e6:.1f} MB) go to the workers' nodes through Ray's object store "
        "(cached there by SHA-256).",
        soft_wrap=True,
    )


def _resources_option(text: str | None) -> dict[str, float]:
    """``--resources`` as a dict; a usage error naming the option when it is not a JSON object."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise click.BadParameter(
            f"expected a JSON object such as '{{\"big_node\": 1}}', got {text!r}", param_hint="--resources"
        )
    return value


@cli.group()
def cluster() -> None:
    """Start, join, inspect or stop a Ray cluster (one head, any number of worker nodes)."""


@cluster.command(name="start")
@_opt("port", default=6379, type=int, show_default=True, help="The head's port, which other nodes join.")
@_opt("num_cpus", default=None, type=float, help="CPUs this node offers (default: all).")
@_opt("num_gpus", default=None, type=float, help="GPUs this node offers (default: Ray counts them).")
@_opt("resources", default=None, help="Custom resources of this node as JSON, e.g. '{\"big_node\": 1}'.")
@_opt(
    "node_ip_address",
    default="127.0.0.1",
    show_default=True,
    help="The address other nodes join, when this machine has several.",
)
@handle_errors
def cluster_start(port, num_cpus, num_gpus, resources, node_ip_address):
    """Start a Ray head on this machine (no dashboard) unless one is running; print how to join it."""
    import ray

    from ..errors import ClusterNotFoundError
    from ..runtime.cluster import connect_cluster, start_local_head

    resources = _resources_option(resources)
    try:
        connect_cluster("auto")
        click.echo("A Ray cluster is already running on this machine (its settings stay as they are).")
    except ClusterNotFoundError:
        start_local_head(num_cpus, num_gpus, resources, port=port, node_ip_address=node_ip_address)
        err.print("Started a local Ray head (stop it with `byzerllm cluster stop`).", soft_wrap=True)
        connect_cluster("auto")
    address = ray.get_runtime_context().gcs_address
    click.echo(f"Ray cluster is running at {address}. Add a node: byzerllm cluster join --address {address}")


@cluster.command(name="join")
@_opt("address", required=True, help="HOST:PORT of the head (what `byzerllm cluster start` printed).")
@_opt("num_cpus", default=None, type=float, help="CPUs this node offers (default: all).")
@_opt("num_gpus", default=None, type=float, help="GPUs this node offers (default: Ray counts them).")
@_opt("resources", default=None, help="Custom resources of this node as JSON, e.g. '{\"big_node\": 1}'.")
@_opt("temp_dir", default=None, help="This node's Ray folder (two nodes on one machine need two).")
@_opt("model_cache", default=None, help="Where this node caches model files (default ~/.cache/byzerllm/models).")
@_opt("node_ip_address", default=None, help="Address of this node (default: Ray's choice).")
@handle_errors
def cluster_join(address, num_cpus, num_gpus, resources, temp_dir, model_cache, node_ip_address):
    """Start a Ray worker node on this machine and join the head at ADDRESS."""
    from ..runtime.cluster import join_cluster

    join_cluster(
        address,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        resources=_resources_option(resources),
        temp_dir=temp_dir,
        model_cache=model_cache,
        node_ip_address=node_ip_address,
    )
    click.echo(f"Joined the Ray cluster at {address}.")


@cluster.command(name="status")
@_opt("ray_address", default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@handle_errors
def cluster_status_cmd(ray_address, as_json):
    """The cluster's nodes: resources, and the deployment workers running on each."""
    import ray
    from rich.table import Table

    from ..runtime.cluster import cluster_status

    _connect(ray_address)
    nodes = cluster_status()
    if as_json:
        click.echo(json.dumps({"address": ray.get_runtime_context().gcs_address, "nodes": nodes}, indent=2))
        return
    table = Table("node", "ip", "state", "resources", "workers")
    for n in nodes:
        state = ("alive" if n["alive"] else "dead") + (" (head)" if n["head"] else "")
        res = ", ".join(f"{k} {v:g}" for k, v in n["resources"].items() if k not in ("memory", "object_store_memory"))
        table.add_row(n["node_id"][:12], n["ip"], state, res, ", ".join(n["workers"]) or "-")
    Console().print(table)


@cluster.command(name="stop")
@_opt("temp_dir", default=None, help="Stop only the node joined with this --temp_dir.")
@handle_errors
def cluster_stop(temp_dir):
    """Stop every Ray node of this machine (head or worker) and the deployments on them, or only the
    node whose Ray folder is --temp_dir."""
    from ..runtime.cluster import stop_local_cluster, stop_node

    if temp_dir:
        stop_node(temp_dir)
        click.echo(f"Ray node of {temp_dir} stopped.")
        return
    stop_local_cluster()
    click.echo("Ray cluster stopped.")


cli.add_command(rag)
for command in (sft, pretrain, jobs, merge, export):
    cli.add_command(command)
cli.add_command(storage)
cli.add_command(sql)


def main() -> None:
    cli(prog_name="byzerllm")


if __name__ == "__main__":
    main()
