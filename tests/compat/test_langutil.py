"""``byzerllm.utils.langutil`` behaves like Byzer-LLM's (utils/langutil.py)."""

import asyncio
import socket
import threading
import time

import pytest

from byzerllm.utils.langutil import asyncfy, asyncfy_with_semaphore, find_available_port, is_valid_url, to_bool


def test_asyncfy_wraps_a_plain_function_in_a_coroutine_function():
    # real: langutil.py::asyncfy, `async def async_func(*args, **kwargs): return func(*args, **kwargs)`
    def add(a, b):
        return a + b

    wrapped = asyncfy(add)
    assert asyncio.iscoroutinefunction(wrapped) and wrapped.__name__ == "add"
    assert asyncio.run(wrapped(1, b=2)) == 3


def test_asyncfy_returns_a_coroutine_function_unchanged():
    # real: langutil.py::asyncfy, `if inspect.iscoroutinefunction(func): return func`
    async def already():
        return 1

    assert asyncfy(already) is already


def test_asyncfy_with_semaphore_runs_a_plain_function_in_another_thread():
    # real: langutil.py::asyncfy_with_semaphore, anyio.to_thread.run_sync(partial(func, *args, **kwargs))
    wrapped = asyncfy_with_semaphore(lambda x: (x, threading.get_ident()))
    value, ident = asyncio.run(wrapped(5))
    assert value == 5 and ident != threading.get_ident()


def test_the_semaphore_bounds_concurrent_calls():
    # real: langutil.py::asyncfy_with_semaphore, `async with semaphore_ctx` around each call
    running, peak, lock = [0], [0], threading.Lock()

    def work():
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1

    async def main():
        wrapped = asyncfy_with_semaphore(work, semaphore=asyncio.Semaphore(2))
        await asyncio.gather(*(wrapped() for _ in range(6)))

    asyncio.run(main())
    assert peak[0] == 2


def test_a_timeout_raises_timeout_error():
    # real: langutil.py::asyncfy_with_semaphore, anyio.fail_after(timeout) raises TimeoutError
    wrapped = asyncfy_with_semaphore(lambda: time.sleep(0.5), timeout=0.05)
    with pytest.raises(TimeoutError):
        asyncio.run(wrapped())


def test_a_coroutine_function_gets_the_semaphore_and_timeout_too():
    # real: langutil.py::asyncfy_with_semaphore, the iscoroutinefunction branch awaits func under both
    async def slow():
        await asyncio.sleep(0.5)

    with pytest.raises(TimeoutError):
        asyncio.run(asyncfy_with_semaphore(slow, semaphore=asyncio.Semaphore(1), timeout=0.05)())


@pytest.mark.parametrize("word", ["yes", "TRUE", "t", "1", "y", "On", "aye", "yea"])
def test_to_bool_reads_true_words(word):
    # real: langutil.py::to_bool, true_values compared after lower()
    assert to_bool(word) is True


@pytest.mark.parametrize("word", ["no", "False", "f", "0", "n", "off", "nay", ""])
def test_to_bool_reads_false_words_and_the_empty_string(word):
    # real: langutil.py::to_bool, false_values include ""
    assert to_bool(word) is False


def test_to_bool_rejects_other_words_and_non_strings():
    # real: langutil.py::to_bool raises ValueError for other words and TypeError for a non-str
    with pytest.raises(ValueError):
        to_bool("maybe")
    with pytest.raises(TypeError):
        to_bool(1)


@pytest.mark.parametrize(
    ("candidate", "valid"),
    [("http://example.com", True), ("ftp://h/x", True), ("example.com", False), ("/a/b", False), (None, False)],
)
def test_a_valid_url_has_a_scheme_and_a_host(candidate, valid):
    # real: langutil.py::is_valid_url, `parsed.scheme != "" and parsed.netloc != ""`
    assert is_valid_url(candidate) is valid


def test_find_available_port_without_a_port_gives_a_free_one():
    # real: langutil.py::find_available_port binds port 0 and returns the port the OS chose
    port = find_available_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_find_available_port_skips_a_port_in_use():
    # real: langutil.py::find_available_port increments while connect_ex(("localhost", port)) == 0
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert find_available_port(port) > port
