"""What checkpoints keep, counted (docs/history.md "Capacity"): the bytes only checkpoints still
name are measured exactly from the slice reference counts, charged to the workspace's capacity
(ENOSPC names them) and to statfs, freed by deleting the checkpoint; ``.stats`` (``artifacts
stats``) shows the checkpoints, their preserved keys and those bytes."""

from __future__ import annotations

import os

import pytest

from artifacts_core.errors import NoSpace

MIB = 1 << 20


def _freed(vol) -> None:
    """This client's closes are deregistered in batches (a tick): flush them, so a removed file is
    not kept as open, then let reclaim release its chunk lists now."""
    vol.vfs.flush_closes()
    vol.meta.reclaim(vol.chunks.remove, interval=None, now_offset=3600)


def test_bytes_only_checkpoints_keep_are_measured_exactly(vol):
    a, b = os.urandom(2 * MIB), os.urandom(MIB)
    vol.write_bytes("a", a)
    vol.write_bytes("b", b)
    vol.clone("b", "b-copy")  # b's slices have two live references
    assert vol.meta.history_pinned_bytes() == 0
    vol.checkpoints.create("c1")
    assert vol.meta.history_pinned_bytes() == 0  # nothing changed since: everything is live
    vol.write_bytes("a", b"small")  # a's 2 MiB now live in c1 only
    vol.remove("b")  # b's data is still live through b-copy
    _freed(vol)
    assert vol.meta.history_pinned_bytes() == 2 * MIB
    vol.checkpoints.create("c2")
    vol.remove("b-copy")  # once reclaimed, b's slices are named by c1 and c2 only
    _freed(vol)
    assert vol.meta.history_pinned_bytes() == 3 * MIB
    vol.checkpoints.delete("c1")
    assert vol.meta.history_pinned_bytes() == MIB  # c2 still has b's
    vol.checkpoints.delete("c2")
    assert vol.meta.history_pinned_bytes() == 0


def test_checkpoints_count_in_capacity_statfs_and_stats(volume_factory):
    vol = volume_factory(format_options={"capacity": 6 * MIB})
    vol.write_bytes("big", os.urandom(3 * MIB))
    vol.checkpoints.create("keep-me")
    vol.remove("big")
    _freed(vol)
    used_live = vol.statvfs()
    assert vol.maintenance.account_history(interval=None) == 3 * MIB
    st = vol.statvfs()
    assert (st.f_blocks - st.f_bfree) * st.f_bsize >= (used_live.f_blocks - used_live.f_bfree) * st.f_bsize + 3 * MIB
    with pytest.raises(NoSpace) as e:
        vol.write_bytes("next", os.urandom(4 * MIB))
    assert "checkpoints keep" in str(e.value)
    stats = vol.read_bytes(".stats").decode()
    assert "artifacts_checkpoints_count 1" in stats
    assert f"artifacts_checkpoints_pinned_bytes {3 * MIB}" in stats
    assert "artifacts_checkpoints_preserved_keys" in stats
    vol.checkpoints.delete("keep-me")
    assert vol.maintenance.account_history(interval=None) == 0
    vol.write_bytes("next", os.urandom(4 * MIB))  # the space is back
    assert "artifacts_checkpoints_count 0" in vol.read_bytes(".stats").decode()
