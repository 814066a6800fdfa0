"""The event-loop bridge (artifacts_core.aio, DESIGN.md §5): sync callers over one loop thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import os
import threading

import pytest

from artifacts_core.aio import LoopThread
from artifacts_core.errors import TimedOut


@pytest.fixture
def lt():
    loop_thread = LoopThread("test-io")
    yield loop_thread
    loop_thread.close()


async def _value(x):
    await asyncio.sleep(0)
    return x


def test_run_returns_results_and_raises_errors(lt):
    assert lt.run(_value(42)) == 42

    async def boom():
        raise KeyError("nope")

    with pytest.raises(KeyError):
        lt.run(boom())


def test_coroutines_run_on_the_loop_thread_and_cpu_work_off_it(lt):
    async def where():
        cpu_thread = await lt.cpu(threading.get_ident)
        return threading.get_ident(), cpu_thread

    loop_ident, cpu_ident = lt.run(where())
    assert loop_ident == lt._thread.ident != threading.get_ident()
    assert cpu_ident not in (loop_ident, threading.get_ident())
    assert lt.run(lt.cpu(sum, [1, 2, 3])) == 6


def test_run_from_the_loop_thread_is_refused_not_deadlocked(lt):
    async def nested():
        return lt.run(_value(1))

    with pytest.raises(RuntimeError, match="deadlock"):
        lt.run(nested(), timeout=10)


def test_timeout_cancels_the_coroutine_and_raises_timed_out(lt):
    cancelled = threading.Event()
    never = threading.Event()

    async def forever():
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        never.set()

    with pytest.raises(TimedOut) as info:
        lt.run(forever(), timeout=0.05)
    assert info.value.errno == errno.ETIMEDOUT
    assert cancelled.wait(5), "the coroutine was not cancelled"
    assert not never.is_set()


def test_submit_returns_a_concurrent_future(lt):
    future = lt.submit(_value("x"))
    assert isinstance(future, concurrent.futures.Future)
    assert future.result(5) == "x"


def test_close_runs_cleanups_cancels_pending_work_joins_and_is_idempotent():
    lt = LoopThread("test-close")
    cleaned = []

    async def cleanup():
        cleaned.append(threading.get_ident())

    lt.add_cleanup(cleanup)
    pending = lt.submit(asyncio.Event().wait())
    thread = lt._thread
    lt.close()
    assert not thread.is_alive()
    assert cleaned == [thread.ident]
    assert pending.cancelled()
    lt.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        lt.run(_value(1))


def test_close_cancels_pending_work_before_cleanups_close_its_clients():
    lt = LoopThread("test-close-order")
    pending = lt.submit(asyncio.Event().wait())
    seen = []

    async def close_client():
        seen.append(pending.cancelled())

    lt.add_cleanup(close_client)
    lt.close()
    assert seen == [True]


def test_use_after_fork_is_detected_in_the_child(lt):
    assert lt.run(_value(1)) == 1
    pid = os.fork()
    if pid == 0:  # child: the loop thread does not exist here; every call must fail clearly
        code = 1
        try:
            try:
                lt.run(_value(2), timeout=5)
            except RuntimeError as e:
                code = 0 if "fork" in str(e) else 2
            except BaseException:
                code = 3
            lt.close()  # must not hang joining a thread that is not there
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert lt.run(_value(3)) == 3  # the parent is unaffected
