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


class Worker:
    """A worker actor handle that records its calls: ``w.method.remote(*args)`` returns
    ``(method, args)`` (``.options(...)`` is ignored)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple]] = []

    def __getattr__(self, method: str):
        calls = self.calls

        class Method:
            @staticmethod
            def remote(*args):
                calls.append((method, args))
                return (method, args)

            @staticmethod
            def options(**_):
                return Method

        return Method


class Opened:
    """A LocalStream's stand-in: the chunks the plan emitted and whether it was closed."""

    def __init__(self) -> None:
        self.last = None
        self.closed = False

    def close(self) -> None:
        self.closed = True


def run_stream(route_: Route, answer) -> tuple[list, list[Opened]]:
    """Drive ``stream_plan`` by hand: ``answer(op, arg)`` gives each effect's result (or raises)."""
    from byzerllm.runtime.ray.routing import FAILURE, LOCAL, ROUTE, SLEEP, stream_plan
    from byzerllm.types import ChatRequest

    plan = stream_plan("m", ChatRequest(messages=[{"role": "user", "content": "hi"}], request_id="r1"))
    out, opened, reply, error = [], [], None, None
    try:
        while True:
            op, arg = plan.throw(error) if error else plan.send(reply)
            reply, error = None, None
            if op == EMIT:
                out.append(arg)
            elif op == ROUTE:
                reply = route_
            elif op == FAILURE:
                reply = arg[1]
            elif op == SLEEP:
                pass
            elif op == LOCAL:
                opened.append(Opened())
                reply = opened[-1]
            else:
                try:
                    reply = answer(op, arg, opened[-1] if opened else None)
                except Exception as exc:
                    error = exc
    except StopIteration:
        pass
    return out, opened


def local_route() -> tuple[Route, Worker]:
    worker = Worker()
    r = Route(None, {"workers": [worker], "state": "running", "capacity": 2, "load_balance": "lru"})
    r.local, r.node_id = [True], "node-1"
    return r, worker


def engine(chunks_after_open, engine_died=False):
    """The answers of a worker whose engine is on this node: ``open_local`` gives options, each
    ``NEXT`` the next item of ``chunks_after_open`` (an exception is raised)."""
    from byzerllm.runtime.ray.routing import END, GET

    items = iter(chunks_after_open)

    def answer(op, arg, opened):
        if op == GET and arg[0] == "open_local":
            return {"base_url": "http://127.0.0.1:1/v1", "timeout": 600}
        if op == GET and arg[0] == "engine_cut":
            return engine_died
        item = next(items, END)
        if isinstance(item, Exception):
            raise item
        if item is not END:
            opened.last = item[-1]
        return item

    return answer


def test_a_local_stream_gives_its_slot_back_with_its_token_counts():
    from byzerllm.types import ChatChunk

    r, worker = local_route()
    out, [opened] = run_stream(r, engine([[ChatChunk("a")], [ChatChunk("b"), ChatChunk("", "stop", 5, 2)]]))
    assert [c.delta for c in out] == ["a", "b", ""] and opened.closed
    [close] = [args for method, args in worker.calls if method == "close_local"]
    assert close[1:] == (5, 2, False)
    assert not [m for m, _ in worker.calls if m in ("stream_leased", "cancel")]


def test_a_cut_connection_before_any_chunk_is_tried_once_more_when_the_engine_lives():
    from byzerllm.errors import UpstreamError
    from byzerllm.types import ChatChunk

    cut = UpstreamError("connection to the engine failed", status=502)
    r, worker = local_route()
    out, opened = run_stream(r, engine([cut, [ChatChunk("", "stop", 5, 0)]]))
    assert len(opened) == 2 and [c.finish_reason for c in out] == ["stop"]
    assert [a[-1] for m, a in worker.calls if m == "close_local"] == [True, False]  # failed, then done
    r, _ = local_route()
    with pytest.raises(UpstreamError):  # a second cut reaches the caller
        run_stream(r, engine([cut, cut]))


def test_a_stream_cut_by_the_engines_death_is_a_dead_worker():
    from byzerllm.errors import UpstreamError, WorkerDiedError
    from byzerllm.types import ChatChunk

    cut = UpstreamError("connection to the engine failed", status=502)
    r, _ = local_route()
    with pytest.raises(WorkerDiedError, match="engine process"):  # output was delivered: not sent again
        run_stream(r, engine([[ChatChunk("a")], cut], engine_died=True))
    r, _ = local_route()
    out, opened = run_stream(r, engine([cut, [ChatChunk("", "stop", 5, 0)]], engine_died=True))
    assert len(opened) == 2 and out[-1].finish_reason == "stop"  # nothing delivered: sent again


def test_a_worker_on_another_node_relays_the_stream():
    from byzerllm.runtime.ray.actors import REMOTE
    from byzerllm.runtime.ray.routing import GET, NEXT
    from byzerllm.types import ChatChunk

    r, _ = local_route()
    batches = iter([[ChatChunk("", "stop", 5, 0)]])

    def answer(op, arg, opened):
        if op == GET and arg[0] == "open_local":
            return REMOTE
        assert op == NEXT and arg[0] == "stream_leased"
        return next(batches)

    out, opened = run_stream(r, answer)
    assert out[-1].finish_reason == "stop" and not opened and r.local == [False]


def test_a_busy_worker_sends_the_stream_to_the_pool_and_holds_nothing():
    from byzerllm.runtime.ray.routing import GET, stream_plan
    from byzerllm.types import ChatRequest

    r, worker = local_route()
    plan = stream_plan("m", ChatRequest(messages=[{"role": "user", "content": "hi"}], request_id="r1"))
    assert plan.send(None)[0] == "route"
    op, (method, _) = plan.send(r)
    assert (op, method) == (GET, "open_local")
    assert plan.send(None)[0] == "route"  # busy: the next attempt asks the pool for a lease
    assert plan.send(r)[0] == "acquire"
    plan.close()
    assert [m for m, _ in worker.calls] == ["open_local"]  # no close_local, no cancel


def test_a_request_refused_by_the_worker_reaches_the_caller():
    from ray.exceptions import RayTaskError

    from byzerllm.errors import InvalidRequestError

    r, worker = local_route()
    refused = RayTaskError("open_local", "", InvalidRequestError("bad", param="messages"))

    def answer(op, arg, opened):
        raise refused

    with pytest.raises(RayTaskError):  # the runtime's FAILURE effect unwraps it; here the raw error
        run_stream(r, answer)
    assert [a[-1] for m, a in worker.calls if m == "close_local"] == [True]  # harmless: it held nothing


def test_a_caller_that_stops_reading_gives_the_slot_back_with_the_tokens_so_far():
    from byzerllm.runtime.ray.routing import GET, LOCAL, stream_plan
    from byzerllm.types import ChatChunk, ChatRequest

    r, worker = local_route()
    plan = stream_plan("m", ChatRequest(messages=[{"role": "user", "content": "hi"}], request_id="r1"))
    plan.send(None)
    op, _ = plan.send(r)
    assert op == GET
    op, _ = plan.send({"base_url": "http://127.0.0.1:1/v1", "timeout": 600})
    assert op == LOCAL
    stream = Opened()
    assert plan.send(stream)[0] == "next"
    stream.last = ChatChunk("a", None, 7, 1)
    assert plan.send([stream.last]) == (EMIT, stream.last)
    plan.close()  # the caller stopped reading
    assert stream.closed
    [close] = [a for m, a in worker.calls if m == "close_local"]
    assert close[1:] == (7, 1, False)


def test_a_caller_that_gives_up_before_the_worker_answered_tells_it():
    from byzerllm.runtime.ray.routing import GET, stream_plan
    from byzerllm.types import ChatRequest

    r, worker = local_route()
    plan = stream_plan("m", ChatRequest(messages=[{"role": "user", "content": "hi"}], request_id="r1"))
    plan.send(None)
    assert plan.send(r)[0] == GET  # open_local on its way
    plan.close()
    [close] = [a for m, a in worker.calls if m == "close_local"]
    assert close[1:] == (0, 0, True)
