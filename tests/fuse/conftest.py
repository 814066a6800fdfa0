"""Fixtures shared by the FUSE tests: one formatted workspace per module (mounting costs seconds,
so a module's tests share it) and a fresh directory per test on the module's mount."""

from __future__ import annotations

import os
import uuid

import pytest
from fuse_helpers import new_workspace


@pytest.fixture(scope="module")
def ws(redis_url, s3_server, tmp_path_factory):
    """A workspace formatted on the session's Redis and SeaweedFS, shared by the module's tests."""
    return new_workspace(redis_url, s3_server, str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def d(mnt):
    """A new directory on the module's mount (``mnt``, which each module defines)."""
    path = os.path.join(mnt.mountpoint, uuid.uuid4().hex[:8])
    os.mkdir(path)
    return path
