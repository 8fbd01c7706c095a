"""Worker choice: the strategies, and what a client does before asking the pool."""

from __future__ import annotations

import itertools
import time

import pytest

from byzerllm.runtime.ray.routing import EMIT, VIA_POOL_AFTER_BUSY, Route, take_plan
from byzerllm.runtime.slots import pick_worker


def test_strategies_pick_among_workers_with_a_free_slot():
    rr = itertools.cycle(range(3))
    assert pick_worker("lru", [0, 0, 0], [3.0, 1.0, 2.0], 1, rr) == 1
    assert pick_worker("lru", [0, 1, 0], [3.0, 1.0, 2.0], 1, rr) == 2  # worker 1 is full
    assert [pick_worker("round_robin", [0, 0, 0], [0.0] * 3, 1, rr) for _ in range(4)] == [0, 1, 2, 0]
    assert pick_worker("round_robin", [0, 1, 1], [0.0] * 3, 1, rr) == 0
    assert pick_worker("least_busy", [2, 1, 3], [0.0] * 3, 4, rr) == 1
    assert pick_worker("random", [1, 0, 1], [0.0] * 3, 1, rr) == 1
    assert pick_worker("lru", [2, 2], [0.0, 0.0], 2, rr) is None


def route(state: str = "running", workers: int = 2, capacity: int = 1) -> Route:
    return Route(
        None, {"workers": list(range(workers)), "state": state, "capacity": capacity, "load_balance": "round_robin"}
    )


def test_a_client_fills_workers_up_to_their_capacity_then_asks_the_pool():
    r = route(capacity=2)
    taken = [r.take() for _ in range(4)]
    assert sorted(taken) == [0, 0, 1, 1]
    assert r.take() is None
    r.done(1)
    assert r.take() == 1
    assert len({r.lease_id() for _ in range(100)}) == 100


def test_no_direct_requests_while_starting_queued_or_just_refused():
    assert route(state="starting").take() is None
    r = route()
    with r.waiting():
        assert r.take() is None  # a new request must not overtake this client's queued ones
    assert r.queued == 0 and r.take() == 0
    r.busy()
    assert r.take() is None
    time.sleep(VIA_POOL_AFTER_BUSY + 0.05)
    assert r.take() == 1


def test_a_failed_wait_in_the_queue_is_uncounted():
    r = route()
    with pytest.raises(RuntimeError), r.waiting():
        raise RuntimeError("queue full")
    assert r.queued == 0


class GonePool:
    """A pool actor handle whose every call finds the actor dead."""

    class acquire:  # the shape of a Ray actor method: pool.acquire.remote()
        @staticmethod
        def remote():
            from ray.exceptions import RayActorError

            async def dead():
                raise RayActorError()

            return dead()


def full_route() -> Route:
    return Route(GonePool(), {"workers": [0], "state": "running", "capacity": 1, "load_balance": "lru"})


async def test_a_pool_lost_twice_is_an_undeployed_deployment_in_async_code_too(monkeypatch):
    # the sync path gave DeploymentUndeployedError; the async one let the second RayActorError out raw
    from byzerllm.errors import DeploymentUndeployedError
    from byzerllm.runtime.ray import RayRuntime

    runtime = RayRuntime()
    lookups = []
    monkeypatch.setattr(runtime, "_lookup", lambda name, refresh=False: lookups.append(refresh) or full_route())

    def plan():
        slot = yield from take_plan("m", via_pool=True)
        yield EMIT, slot

    with pytest.raises(DeploymentUndeployedError, match="'m' is gone"):
        await anext(runtime._adrive(plan()))
    assert lookups == [False, True]  # found once, looked up again after the first loss, then given up


def test_stat_free_slots_are_never_negative():
    # a pool lease can meet a slot another client's direct request took a moment earlier: the worker
    # then has more requests assigned than slots, and none free
    from byzerllm.runtime.slots import SlotCounts
    from byzerllm.runtime.spec import DeploymentSpec

    counts = SlotCounts(DeploymentSpec(name="m", backend="echo", model_path="", num_workers=2, worker_concurrency=2))
    for idx in (0, 0, 0, 1, 1):
        counts.take(idx)
    counts.give_back(1)
    counts.add_usage(3, 4)
    counts.add_usage(failed=True)
    counts.waiting = 1
    s = counts.stat()
    assert s["state"] == [0, 1] and s["busy_workers"] == 2 and s["idle_workers"] == 0
    assert s["total_requests"] == [3, 2]
    assert s["total_tokens"] == 7 and s["failed_requests"] == 1 and s["queued_requests"] == 1


def test_a_full_queue_is_refused_with_its_size():
    from byzerllm.errors import QueueFullError
    from byzerllm.runtime.slots import SlotCounts
    from byzerllm.runtime.spec import DeploymentSpec

    counts = SlotCounts(DeploymentSpec(name="m", backend="echo", model_path="", max_queue=1))
    assert counts.pick() == 0
    counts.take(0)
    assert counts.pick() is None  # the request waits
    counts.waiting = 1
    with pytest.raises(QueueFullError, match="max_queue 1"):
        counts.pick()


@pytest.mark.parametrize(
    "module,cls", [("byzerllm.runtime.ray", "RayRuntime"), ("byzerllm.runtime.inprocess", "InProcessRuntime")]
)
def test_both_runtimes_implement_the_runtime_protocol_with_its_signatures(module, cls):
    import importlib
    import inspect

    from byzerllm.runtime.base import Runtime

    impl = getattr(importlib.import_module(module), cls)
    members = [m for m in dir(Runtime) if not m.startswith("_") and callable(getattr(Runtime, m))]
    assert len(members) == 18
    for name in members:
        want, got = inspect.signature(getattr(Runtime, name)), inspect.signature(getattr(impl, name))
        assert list(want.parameters) == list(got.parameters), f"{cls}.{name}{got} differs from Runtime.{name}{want}"
        assert inspect.iscoroutinefunction(getattr(Runtime, name)) == inspect.iscoroutinefunction(getattr(impl, name))


def test_a_stream_sends_the_chunks_ready_together_in_one_message():
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from byzerllm.runtime.ray.actors import coalesce

    burst_sent, first_taken, closed = threading.Event(), threading.Event(), threading.Event()

    def chunks():
        try:
            yield "a"
            first_taken.wait(5)  # the caller is sending the first list while three chunks arrive
            yield from ("b", "c", "d")
            burst_sent.set()
            yield "e"
            raise ValueError("the upstream broke")
        finally:
            closed.set()

    with ThreadPoolExecutor(2) as readers:
        out = coalesce(chunks(), readers)
        assert next(out) == ["a"]  # a lone chunk goes at once
        first_taken.set()
        burst_sent.wait(5)
        time.sleep(0.05)  # "e" may be ready by now as well
        batches = [next(out)]
        if batches[0] == ["b", "c", "d"]:
            batches.append(next(out))
        assert [c for b in batches for c in b] == ["b", "c", "d", "e"] and batches[0][:3] == ["b", "c", "d"]
        with pytest.raises(ValueError, match="upstream broke"):  # raised after the chunks before it
            next(out)
        assert closed.wait(5)


def test_closing_a_coalesced_stream_stops_its_reader():
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from byzerllm.runtime.ray.actors import coalesce

    closed, produced = threading.Event(), []

    def chunks():
        try:
            for i in range(1000):
                produced.append(i)
                yield i
                time.sleep(0.001)
        finally:
            closed.set()

    with ThreadPoolExecutor(1) as readers:
        out = coalesce(chunks(), readers)
        next(out)
        out.close()
        assert closed.wait(5) and len(produced) < 1000
