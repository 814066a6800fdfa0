"""Single-flight: concurrent requests for one key share one execution (one download per block).

Lives on the event loop only (no locks needed): the first caller of :meth:`SingleFlight.do` for a
key starts a task; later callers await the same task until it ends, then the key is forgotten so a
failed fetch is retried by the next reader. Each waiter awaits through ``asyncio.shield``: one
caller giving up (a timeout cancels it) must not cancel the download the others are waiting for.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._tasks: dict[Hashable, asyncio.Task[T]] = {}

    def __contains__(self, key: Hashable) -> bool:
        return key in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)

    def start(self, key: Hashable, fn: Callable[[], Awaitable[T]]) -> asyncio.Task[T]:
        """The running task for ``key``, starting ``fn()`` if there is none."""
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.ensure_future(fn())
            self._tasks[key] = task
            task.add_done_callback(functools.partial(self._done, key))
        return task

    def adopt(self, key: Hashable, task: asyncio.Task[T]) -> None:
        """Register a running task under one more key (a ranged GET serving several segments)."""
        self._tasks[key] = task
        task.add_done_callback(functools.partial(self._done, key))

    def get(self, key: Hashable) -> asyncio.Task[T] | None:
        return self._tasks.get(key)

    def cancel_all(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()

    async def do(self, key: Hashable, fn: Callable[[], Awaitable[T]]) -> T:
        return await asyncio.shield(self.start(key, fn))

    def _done(self, key: Hashable, task: asyncio.Task[T]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled():
            task.exception()  # retrieved: a fetch nobody awaited any more must not warn
