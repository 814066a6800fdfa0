"""The event-loop bridge: synchronous callers (FUSE threads, the path API) run coroutines on one
asyncio loop owned by one daemon thread per open volume (DESIGN.md §5; the fsspec/s3fs pattern).

Moving parts:
- ``LoopThread`` starts a thread running ``loop.run_forever()``; the loop owns the aiobotocore
  client and runs uploads, downloads, readahead and background work.
- ``run(coro, timeout)`` hands a coroutine over with ``run_coroutine_threadsafe`` and waits on the
  ``concurrent.futures.Future``; on timeout it cancels the coroutine and raises ``TimedOut``.
  ``submit(coro)`` returns that future without waiting.
- ``cpu(fn, *args)`` (awaited on the loop) runs GIL-releasing CPU work — lz4, xxhash on MiB-sized
  buffers — in a small thread pool, so the loop keeps serving network I/O meanwhile.
- ``close()`` cancels what is still pending, then runs the registered async cleanups (e.g.
  closing the S3 client), stops the loop and joins the thread. It is idempotent.

Invariants: a caller on the loop thread never blocks on the loop (``run`` refuses: it would
deadlock); a forked child never touches the parent's loop (its thread does not exist there; every
call raises a clear error instead of hanging).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from artifacts_core.errors import TimedOut

log = logging.getLogger(__name__)

T = TypeVar("T")

#: CPU threads: lz4 and xxhash release the GIL, so a few threads give real parallelism; more than
#: the core count only adds contention (and the loop thread needs a core too).
DEFAULT_CPU_WORKERS = max(1, min(4, os.cpu_count() or 1))
#: How long close() waits for cleanups and cancelled tasks before stopping the loop anyway.
CLOSE_GRACE = 10.0


class LoopThread:
    """One asyncio loop on one daemon thread, plus a small CPU pool."""

    def __init__(self, name: str = "artifacts-io", *, cpu_workers: int = DEFAULT_CPU_WORKERS) -> None:
        self.name = name
        self._pid = os.getpid()
        self._loop = asyncio.new_event_loop()
        self._cpu_pool = concurrent.futures.ThreadPoolExecutor(cpu_workers, thread_name_prefix=f"{name}-cpu")
        self._cleanups: list[Callable[[], Awaitable[Any]]] = []
        self._close_lock = threading.Lock()
        self._closed = False
        started = threading.Event()
        self._thread = threading.Thread(target=self._main, args=(started,), name=name, daemon=True)
        self._thread.start()
        started.wait()

    def _main(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(started.set)
        try:
            self._loop.run_forever()
        finally:
            asyncio.set_event_loop(None)

    # -- properties ---------------------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def closed(self) -> bool:
        return self._closed

    def in_loop_thread(self) -> bool:
        return threading.get_ident() == self._thread.ident

    # -- handing work over ----------------------------------------------------------------------

    def _check_usable(self, what: str) -> None:
        if os.getpid() != self._pid:
            raise RuntimeError(
                f"{self.name}: {what} after fork: the event-loop thread belongs to the parent process "
                f"(pid {self._pid}); open the volume again in the child")
        if self._closed:
            raise RuntimeError(f"{self.name}: {what} on a closed loop thread")

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop; returns at once with a ``concurrent.futures.Future``."""
        try:
            self._check_usable("submit()")
        except BaseException:
            coro.close()  # never started: avoid the "was never awaited" warning
            raise
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result (for synchronous callers only).

        On timeout the coroutine is cancelled and :class:`TimedOut` is raised.
        """
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError(
                f"{self.name}: run() called from the event-loop thread itself; it would deadlock "
                "(await the coroutine instead)")
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimedOut(f"operation did not finish within {timeout} s") from None
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt in the waiting thread: do not leave it running
            raise

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Fire-and-forget a plain callback on the loop (thread-safe)."""
        self._check_usable("call_soon()")
        self._loop.call_soon_threadsafe(fn, *args)

    async def cpu(self, fn: Callable[..., T], *args: Any) -> T:
        """Await ``fn(*args)`` run in the CPU pool (for work that releases the GIL)."""
        return await asyncio.get_running_loop().run_in_executor(self._cpu_pool, functools.partial(fn, *args))

    def add_cleanup(self, fn: Callable[[], Awaitable[Any]]) -> None:
        """Register an async cleanup run on the loop by :meth:`close`, newest first."""
        self._cleanups.append(fn)

    # -- shutdown -------------------------------------------------------------------------------

    def close(self) -> None:
        """Cancel pending tasks, run cleanups, stop the loop and join the thread. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            if os.getpid() != self._pid:
                self._closed = True  # the parent's thread does not exist here; nothing to join
                return
            if self.in_loop_thread():
                raise RuntimeError(f"{self.name}: close() called from the event-loop thread itself")
            self._closed = True
        try:
            future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
            with contextlib.suppress(Exception):
                future.result(CLOSE_GRACE)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()
            self._cpu_pool.shutdown(wait=True, cancel_futures=True)

    async def _shutdown(self) -> None:
        # Pending work first: a cleanup closes clients (the S3 session) that tasks may still use.
        me = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not me]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=CLOSE_GRACE)
        for fn in reversed(self._cleanups):
            try:
                await fn()
            except Exception:
                log.exception("%s: cleanup %r failed", self.name, fn)
        self._cleanups.clear()
        await self._loop.shutdown_asyncgens()
        await self._loop.shutdown_default_executor()

    def __enter__(self) -> LoopThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
