"""Retention on the real servers: a checkpoint taken with ``keep`` is deleted by the elected
expiry job once due (and not before), its pinned blocks released through the normal reclaim;
checkpoints without ``keep`` stay; a deletion a stopped client left half done is finished."""

from __future__ import annotations

import os

from artifacts_core.vfs.maintenance import CHECKPOINT_INTERVAL


def test_expired_checkpoints_are_deleted_when_due_and_not_before(vol):
    vol.write_bytes("f", b"one")
    vol.checkpoints.create("short", keep="1h")
    vol.checkpoints.create("forever")
    vol.checkpoints.create("long", keep="7d")
    m = vol.maintenance
    assert m.expire_checkpoints(interval=None) == []
    assert m.expire_checkpoints(now_offset=1800, interval=None) == []
    assert m.expire_checkpoints(now_offset=3700, interval=None) == ["short"]
    assert [c.name for c in vol.checkpoints.list()] == ["forever", "long"]
    assert not vol.exists(".checkpoints/short")
    assert m.expire_checkpoints(now_offset=8 * 86400, interval=None) == ["long"]
    assert [c.name for c in vol.checkpoints.list()] == ["forever"]


def test_the_expiry_job_is_elected_and_releases_what_only_it_pinned(volume_factory):
    vol = volume_factory()
    data = os.urandom(300_000)
    vol.write_bytes("big", data)
    vol.checkpoints.create("old", keep=60)
    vol.write_bytes("big", b"replaced")  # the old blocks are now pinned by the checkpoint alone
    assert vol.checkpoints.show("old")["pinned_bytes"] >= len(data)
    queued_before = vol.meta.pending_deletes()["slices"]
    # one client of the workspace runs it per interval
    first = vol.maintenance.expire_checkpoints(now_offset=120)
    again = vol.maintenance.expire_checkpoints(now_offset=120)
    assert first == ["old"] and again is None
    assert vol.checkpoints.list() == []
    # the preserved list's slices went through DATA.release: queued for the reclaim job
    assert vol.meta.pending_deletes()["slices"] > queued_before
    assert vol.read_bytes("big") == b"replaced"
    assert CHECKPOINT_INTERVAL <= 300  # retention is honoured within minutes


def test_a_half_deleted_checkpoint_is_finished_by_the_job(vol):
    import json

    for i in range(10):
        vol.write_bytes(f"f{i}", b"x")
    vol.checkpoints.create("big-history")
    for i in range(10):
        vol.write_bytes(f"f{i}", b"y")
    # a client that stopped between two bounded batches of af_ck_delete left the record so
    hckpts = vol.meta.keys.prefix + "hckpts"
    rec = json.loads(vol.meta.client.command("HGET", hckpts, "big-history"))
    vol.meta.client.command("HSET", hckpts, "big-history", json.dumps({**rec, "state": "deleting"}))
    assert [c.name for c in vol.checkpoints.list()] == []  # hidden while being deleted
    assert vol.maintenance.expire_checkpoints(interval=None) == ["big-history"]
    assert vol.meta.checkpoint_list(include_deleting=True) == []
    assert vol.meta.client.command("EXISTS", vol.meta.keys.prefix + f"hx{rec['epoch']}") == 0
