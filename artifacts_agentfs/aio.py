"""``AsyncAgentFS``: the agent API for asyncio frameworks.

The core is synchronous and thread-safe (DESIGN.md §5: Redis calls on a pool, S3 on the volume's
own loop thread), so each coroutine runs the ``AgentFS`` method in a worker thread of a small
executor of its own: an event loop is never blocked by a Redis round trip or an S3 upload, and
the default executor is left to the application. ``MAX_WORKERS`` bounds the calls in flight;
more wait their turn.

Every method has the signature and result of its ``AgentFS`` twin.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools

from artifacts_agentfs.api import AgentFS
from artifacts_agentfs.limits import DEFAULT_LIMITS, Limits
from artifacts_core.volume import Volume

#: Operations in flight per AsyncAgentFS: a few times what one Redis connection sustains, below
#: the metadata client's pool of 64 connections so FUSE or other users of the volume keep some.
MAX_WORKERS = 16


class AsyncAgentFS:
    def __init__(self, vol: Volume, *, limits: Limits = DEFAULT_LIMITS, max_workers: int = MAX_WORKERS) -> None:
        self.sync = AgentFS(vol, limits=limits)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers, thread_name_prefix="agentfs")

    async def _run(self, method: str, *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(getattr(self.sync, method),
                                                                        *args, **kwargs))

    async def read_file(self, path, **kw) -> dict:
        return await self._run("read_file", path, **kw)

    async def write_file(self, path, content, **kw) -> dict:
        return await self._run("write_file", path, content, **kw)

    async def append_file(self, path, content, **kw) -> dict:
        return await self._run("append_file", path, content, **kw)

    async def delete_file(self, path, **kw) -> dict:
        return await self._run("delete_file", path, **kw)

    async def copy_file(self, src, dest, **kw) -> dict:
        return await self._run("copy_file", src, dest, **kw)

    async def move_file(self, src, dest, **kw) -> dict:
        return await self._run("move_file", src, dest, **kw)

    async def mkdir(self, path) -> dict:
        return await self._run("mkdir", path)

    async def changes(self, **kw) -> dict:
        return await self._run("changes", **kw)

    async def rmdir(self, path) -> dict:
        return await self._run("rmdir", path)

    async def readdir(self, path="", **kw) -> dict:
        return await self._run("readdir", path, **kw)

    async def exists(self, path) -> bool:
        return await self._run("exists", path)

    async def stat(self, path) -> dict:
        return await self._run("stat", path)

    async def edit_file(self, path, old_text: str, new_text: str, **kw) -> dict:
        return await self._run("edit_file", path, old_text, new_text, **kw)

    async def glob(self, pattern: str, **kw) -> dict:
        return await self._run("glob", pattern, **kw)

    async def grep(self, pattern: str, **kw) -> dict:
        return await self._run("grep", pattern, **kw)

    async def call(self, name: str, arguments=None) -> dict:
        """The dispatcher (``tools.call``), off the event loop."""
        return await self._run("call", name, arguments)

    def close(self) -> None:
        """Stop the worker threads (the volume stays open: its owner closes it)."""
        self._pool.shutdown(wait=True)

    async def __aenter__(self) -> AsyncAgentFS:
        return self

    async def __aexit__(self, *exc) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close)
