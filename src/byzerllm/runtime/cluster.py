"""Connecting to a Ray cluster, and starting a local one for the CLI.

Deployments live in the Ray namespace ``byzerllm`` whatever namespace the caller's own
``ray.init`` used, so they are found by name from any process connected to the cluster.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import ClusterNotFoundError, InvalidRequestError
from .spec import check_resources

NAMESPACE = "byzerllm"


def _ray():
    try:
        import ray
    except ImportError:
        raise ClusterNotFoundError("the Ray runtime needs ray: pip install 'byzerllm[ray]'") from None
    return ray


def _ray_cli() -> str:
    local = Path(sys.executable).with_name("ray")
    return str(local) if local.exists() else (shutil.which("ray") or "ray")


#: Ray's default port for the head's GCS, the address other nodes join.
DEFAULT_PORT = 6379


def _resources_arg(resources: dict[str, float] | None) -> list[str]:
    if not resources:
        return []
    check_resources(resources)
    return [f"--resources={json.dumps(resources)}"]


def _capacity_args(num_cpus: float | None, num_gpus: float | None) -> list[str]:
    out = []
    for flag, value in (("--num-cpus", num_cpus), ("--num-gpus", num_gpus)):
        if value is not None:
            if value < 0:
                raise InvalidRequestError(f"{flag[2:].replace('-', '_')} must be >= 0, got {value:g}", param=flag[2:])
            out.append(f"{flag}={value:g}")
    return out


def _run_ray(cmd: list[str], what: str, env: dict[str, str] | None = None) -> str:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise ClusterNotFoundError(f"could not {what}: {(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc.stdout + proc.stderr


def start_local_head(
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    resources: dict[str, float] | None = None,
    port: int = DEFAULT_PORT,
    node_ip_address: str = "127.0.0.1",
) -> str:
    """Start a Ray head on this machine (no dashboard) that outlives this process; returns the
    ``host:port`` other nodes join (``join_cluster``). ``node_ip_address``: the address to give
    other nodes when the machine has several (Ray 2.60 was seen to announce the machine's own
    address for 127.0.0.1, the default). Ray listens on every address of the machine, so the head
    always starts with Ray's token authentication.

    Raises ``ClusterNotFoundError`` with Ray's own output when it cannot start,
    ``InvalidRequestError`` naming ``resources`` for a bad resource.
    """
    cmd = [
        _ray_cli(),
        "start",
        "--head",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--node-ip-address={node_ip_address}",
        f"--port={port}",
        *_resources_arg(resources),
    ]
    cmd += _capacity_args(num_cpus, num_gpus)
    # Ray turns token authentication on when a token exists: make sure one does, so a head on a
    # routable address never runs open (anyone reaching its port could run code on the cluster)
    _run_ray([_ray_cli(), "get-auth-token", "--generate"], "create Ray's authentication token")
    out = _run_ray(cmd, "start a local Ray head")
    found = re.search(r"ray start --address='([^']+)'", out)
    return found.group(1) if found else f"{node_ip_address}:{port}"


def join_cluster(
    address: str,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    resources: dict[str, float] | None = None,
    temp_dir: str | None = None,
    model_cache: str | None = None,
    node_ip_address: str | None = None,
) -> None:
    """Start a Ray worker node on this machine that joins the head at ``address`` (``host:port``),
    declaring its CPUs, GPUs (Ray counts them when None) and custom ``resources``. ``temp_dir``:
    the node's own Ray folder (two nodes on one machine need two); ``model_cache``: where its
    workers cache model files (``BYZERLLM_MODEL_CACHE``). The head's token must be on this machine
    (``~/.ray/auth_token`` or ``RAY_AUTH_TOKEN``): ``start_local_head`` turns token authentication on.

    Raises ``InvalidRequestError`` naming ``address`` when it is not ``host:port``,
    ``ClusterNotFoundError`` with Ray's output when the node cannot join.
    """
    if not re.fullmatch(r"[^\s:]+:\d+", address or ""):
        raise InvalidRequestError(f"address must be HOST:PORT of the head, got {address!r}", param="address")
    cmd = [_ray_cli(), "start", f"--address={address}", "--disable-usage-stats", *_resources_arg(resources)]
    cmd += _capacity_args(num_cpus, num_gpus)
    if temp_dir:
        cmd.append(f"--temp-dir={temp_dir}")
    if node_ip_address:
        cmd.append(f"--node-ip-address={node_ip_address}")
    env = {}
    if model_cache:
        env["BYZERLLM_MODEL_CACHE"] = str(Path(model_cache).expanduser().resolve())
    if "RAY_AUTH_MODE" not in os.environ and (
        os.environ.get("RAY_AUTH_TOKEN") or Path.home().joinpath(".ray", "auth_token").exists()
    ):
        env["RAY_AUTH_MODE"] = "token"  # Ray turns it on by itself for a head, not for a joining node
    _run_ray(cmd, f"join the Ray cluster at {address}", env)


def node_processes(temp_dir: str) -> list[int]:
    """The pids of the Ray node of this machine whose Ray folder is ``temp_dir``: this user's
    processes with ``--temp-dir=<folder>`` (the raylet) or a path inside the folder's session
    (the processes it started) as an argument; never this process or its parents. Linux only."""
    folder = str(Path(temp_dir).expanduser().resolve())
    flags = {f"--temp-dir={folder}", f"--temp_dir={folder}"}
    inside = re.compile(r"(^|=)" + re.escape(folder) + r"/session_")
    spared = {os.getpid(), *_ancestors()}
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in spared:
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            args = [a.decode(errors="ignore") for a in (entry / "cmdline").read_bytes().split(b"\0")]
        except OSError:  # ended meanwhile
            continue
        if any(a in flags or inside.search(a) for a in args):
            pids.append(int(entry.name))
    return pids


def _ancestors() -> list[int]:
    pids, pid = [], os.getppid()
    while pid > 1:
        pids.append(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return pids


def stop_node(temp_dir: str, grace: float = 10.0) -> int:
    """Stop only the Ray node of this machine whose Ray folder is ``temp_dir`` (``join_cluster``'s):
    SIGTERM, so the head hears it leave at once, then SIGKILL what is left after ``grace`` seconds.
    Returns the number of processes stopped. Raises ``ClusterNotFoundError`` when no node uses it."""
    pids = node_processes(temp_dir)
    if not pids:
        raise ClusterNotFoundError(f"no Ray node of this machine uses the folder {temp_dir}")
    stopped = len(pids)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):  # ended, or no longer this user's
                pass
        deadline = time.monotonic() + grace
        while (pids := [p for p in pids if Path(f"/proc/{p}").exists()]) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not pids:
            break
    return stopped


def on_head() -> Any:
    """A Ray scheduling strategy that puts an actor on the head node, which lives as long as the
    cluster does: the actors that hold a deployment or a job together go there, so losing any other
    node loses only workers, which are started again (None when no head is found)."""
    ray = _ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    for node in ray.nodes():
        if node["Alive"] and "node:__internal_head__" in node["Resources"]:
            # hard: a soft affinity was seen to land the actor on another node with room
            return NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
    return None


def cluster_status() -> list[dict[str, Any]]:
    """The nodes of the connected cluster: ``[{"node_id", "ip", "alive", "head", "resources",
    "workers"}]``, ``resources`` the node's totals (custom ones included) and ``workers`` what runs
    there: ``"deployment/index"`` for each deployment worker."""
    ray = _ray()
    from .ray.actors import actor_name, list_deployments

    placed: dict[str, list[str]] = {}
    for name in list_deployments():
        try:
            info = ray.get(ray.get_actor(actor_name(name), namespace=NAMESPACE).info.remote(), timeout=10)
        except Exception:  # undeployed meanwhile, or its pool is busy starting
            continue
        for w in info["workers"]:
            if w.get("node_id"):
                placed.setdefault(w["node_id"], []).append(f"{name}/{w['index']}")
    out = []
    for node in ray.nodes():
        res = node["Resources"]
        out.append(
            {
                "node_id": node["NodeID"],
                "ip": node["NodeManagerAddress"],
                "alive": node["Alive"],
                "head": "node:__internal_head__" in res,
                "resources": {k: v for k, v in sorted(res.items()) if not k.startswith("node:")},
                "workers": placed.get(node["NodeID"], []),
            }
        )
    return sorted(out, key=lambda n: (not n["alive"], not n["head"], n["node_id"]))


def stop_local_cluster() -> None:
    """Stop every Ray process of this machine (``ray stop``), removing Ray's state files."""
    ray = _ray()
    if ray.is_initialized():
        ray.shutdown()
    subprocess.run([_ray_cli(), "stop", "--force"], capture_output=True, text=True)


def connect_cluster(
    address: str = "auto",
    java_home: str | None = None,
    code_search_path: list[str] | None = None,
    init_options: dict[str, Any] | None = None,
    start_local: bool = False,
) -> bool:
    """Connect this process to a Ray cluster (idempotent).

    ``address`` is ``"auto"`` (the cluster of this machine) or ``host:port``. ``init_options`` are
    passed to ``ray.init`` (e.g. ``{"runtime_env": ...}``) over ours. ``java_home`` and
    ``code_search_path`` set up Ray's Java workers in Byzer-LLM; nothing here runs Java, so they
    are accepted and not used. With ``start_local=True`` a local head is started when none is
    running. Returns True when a new head was started. Raises ``ClusterNotFoundError`` when no
    cluster can be reached, ``InvalidRequestError`` when ``init_options`` is not a dict.
    """
    if init_options is not None and not isinstance(init_options, dict):
        raise InvalidRequestError("init_options must be a dict of ray.init arguments", param="init_options")
    ray = _ray()
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs = dict(
        namespace=NAMESPACE,
        log_to_driver=False,
        logging_level=logging.WARNING,
        ignore_reinit_error=True,
        configure_logging=True,
    )
    kwargs.update({k: v for k, v in (init_options or {}).items() if k != "address"})
    started = False
    try:
        ray.init(address=address, **kwargs)
    except ConnectionError as exc:
        if not start_local or address not in ("auto", None):
            raise ClusterNotFoundError(
                f"no Ray cluster at address {address!r} ({exc}); start one with `ray start --head` "
                "or let the byzerllm CLI start a local one"
            ) from None
        start_local_head()
        started = True
        ray.init(address="auto", **kwargs)
    return started


def is_connected() -> bool:
    try:
        import ray
    except ImportError:
        return False
    return ray.is_initialized()
