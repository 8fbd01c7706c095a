"""The Ray runtime: a deployment is a named pool of worker actors on a Ray cluster.

Modules by where their code runs: ``actors`` on the cluster (the pool and its workers), ``routing``
in the caller's process (routes, slots and the plans of a request's attempts), ``runtime`` the
``Runtime`` the client calls (deployments by name, and the sync and async drivers of the plans).

Layout on the cluster (namespace ``byzerllm``)::

    DeploymentPool  "deployment:<name>"   detached async actor: spec, leases, counts, queue
      Worker x N                           one backend each; restarted by Ray when its process dies

Each worker has ``worker_concurrency`` slots. A client keeps a view of its own requests per
worker and sends a request straight to the worker the load-balancing strategy picks among those
it has not filled itself (one actor call, streamed tokens one hop). The worker takes a free slot
and tells the pool, without waiting for it, that the request runs; when the worker is full (other
clients use it) it answers at once that it is busy and the client asks the pool for a lease
instead: the pool sees every worker's slots, picks one with the same strategy, and queues the
request, up to ``max_queue`` waiting requests, while every slot is busy. A worker serves a leased
request in the slot the pool reserved for it (waiting a moment if a direct request took it first).
The pool is only on the request path when the workers are full, which keeps a request to one
actor round trip (bench/saas_overhead.py).

The worker returns the slot when the request ends (the caller does too, for a worker that died;
returning is idempotent). When the worker of a request dies before the request produced any
output (a non-streamed request, or a stream before its first chunk), the request is sent again (a
few times, with short pauses); a stream that already delivered text ends with
``WorkerDiedError``. Ray restarts the dead worker's process and reloads its backend. Counts (total
requests, busy slots, last work time, token totals) live in the pool and survive a worker restart.

Ray Serve was not used: its router picks replicas by power-of-two choices and exposes neither
per-replica counts nor the lru / round_robin strategies of the Byzer-LLM documents.
"""

from .actors import LEASE_USE_TIMEOUT, DeploymentPool, RayWorker, list_deployments
from .routing import RETRY_PAUSES, VIA_POOL_AFTER_BUSY
from .runtime import RayRuntime

__all__ = [
    "LEASE_USE_TIMEOUT",
    "RETRY_PAUSES",
    "VIA_POOL_AFTER_BUSY",
    "DeploymentPool",
    "RayRuntime",
    "RayWorker",
    "list_deployments",
]
