"""Fixtures shared by the chunk-layer tests."""

from __future__ import annotations

import pytest

from artifacts_core.aio import LoopThread


@pytest.fixture
def lt():
    """The event-loop thread a chunk store runs on, closed after the test."""
    loop_thread = LoopThread("test-chunks")
    yield loop_thread
    loop_thread.close()
