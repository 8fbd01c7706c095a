"""Connecting to a Ray cluster, and starting a local one for the CLI.

Deployments live in the Ray namespace ``byzerllm`` whatever namespace the caller's own
``ray.init`` used, so they are found by name from any process connected to the cluster.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..errors import ClusterNotFoundError, InvalidRequestError

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


def start_local_head(num_cpus: int | None = None) -> None:
    """Start a Ray head on this machine (loopback, no dashboard) that outlives this process.

    Raises ``ClusterNotFoundError`` with Ray's own output when it cannot start.
    """
    cmd = [
        _ray_cli(),
        "start",
        "--head",
        "--include-dashboard=false",
        "--disable-usage-stats",
        "--node-ip-address=127.0.0.1",
    ]
    if num_cpus is not None:
        cmd.append(f"--num-cpus={num_cpus}")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise ClusterNotFoundError(f"could not start a local Ray head: {proc.stderr.strip()[-2000:]}")


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
