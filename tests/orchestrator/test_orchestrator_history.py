"""A workspace's history through the orchestrator on its real stack (loopback HTTP, Redis with an
ACL file, SeaweedFS with IAM): the checkpoint routes and the Python SDK's ``api.checkpoints``
(list, create, get, diff, restore, delete; the orchestrator on the metadata only), their errors,
and a read-only session that may list and read checkpoints but not take, restore or delete them
(EROFS from the client; Redis refuses a client that skips the check)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from orchestrator_stack import (  # noqa: F401 - fixtures
    _config,
    _reset_clock,
    api,
    create_and_format,
    s3_env,
    stack,
)

from artifacts_core.errors import ArtifactsError, PermissionDenied, ReadOnly
from artifacts_core.volume import open_volume
from artifacts_orchestrator.errors import (
    CheckpointExists,
    CheckpointNotFound,
    InvalidRequest,
    WorkspaceNotFound,
)

pytestmark = [pytest.mark.redis, pytest.mark.s3]


def _volume(grant, tmp_path, monkeypatch, *, read_only: bool = False):
    s3_env(monkeypatch, grant.storage.credentials)
    return open_volume(grant.meta.url, grant.storage.url, key_prefix=grant.meta.key_prefix, read_only=read_only,
                       config=_config(tmp_path / ("ro-cache" if read_only else "cache")))


def test_checkpoint_routes_and_sdk(api, monkeypatch, tmp_path):  # noqa: F811 - fixtures
    create_and_format(api, "hist", monkeypatch)
    rw = api.sessions.create("hist")
    with _volume(rw, tmp_path, monkeypatch) as vol:
        vol.makedirs("src")
        vol.write_bytes("src/a.py", b"one\n")
        vol.write_bytes("notes.md", b"n\n")
        made = api.checkpoints.create("hist", "before", keep="7d")
        assert made.name == "before" and made.keep == 7 * 86400 and made.kind == "user"
        assert made.origin == {"via": "orchestrator", "account": api.handle}
        vol.write_bytes("src/a.py", b"two\n")
        vol.remove("notes.md")
        vol.write_bytes("new.txt", b"x")
        # the orchestrator's checkpoint is the client's too
        assert [c.name for c in vol.checkpoints.list()] == ["before"]
        assert vol.read_bytes(".checkpoints/before/src/a.py") == b"one\n"

        listed = api.checkpoints.list("hist").checkpoints
        assert [c.name for c in listed] == ["before"] and listed[0].changed_keys > 0
        detail = api.checkpoints.get("hist", "before")
        assert detail.checkpoint.name == "before" and detail.changes_since == 3 and detail.pinned_bytes >= 0
        changes = {(c.kind, c.path) for c in api.checkpoints.diff("hist", "before").changes}
        assert changes == {("modified", "/src/a.py"), ("removed", "/notes.md"), ("added", "/new.txt")}
        api.checkpoints.create("hist", "later")
        assert api.checkpoints.diff("hist", "before", to="later").changes != []
        assert api.checkpoints.diff("hist", "later").changes == []

        r = api.checkpoints.restore("hist", "before", safety="undo-point")
        assert r.restored == "before" and r.safety == "undo-point" and r.removed_inodes == 1
        assert vol.read_bytes("src/a.py") == b"one\n"  # the client's caches were told to go
        assert vol.read_bytes("notes.md") == b"n\n" and not vol.exists("new.txt")
        assert [c.name for c in api.checkpoints.list("hist").checkpoints] == ["before", "later", "undo-point"]
        assert api.checkpoints.delete("hist", "later").deleted == "later"
        assert [c.name for c in vol.checkpoints.list()] == ["before", "undo-point"]

        # errors name what went wrong
        with pytest.raises(CheckpointNotFound) as e:
            api.checkpoints.get("hist", "nope")
        assert e.value.status == 404 and "nope" in e.value.message
        with pytest.raises(CheckpointNotFound):
            api.checkpoints.restore("hist", "nope")
        with pytest.raises(CheckpointNotFound):
            api.checkpoints.delete("hist", "nope")
        with pytest.raises(CheckpointExists) as e:
            api.checkpoints.create("hist", "before")
        assert e.value.status == 409
        with pytest.raises(InvalidRequest) as e:
            api.checkpoints.create("hist", "bad name!")
        assert "letters" in e.value.message
        with pytest.raises(InvalidRequest) as e:
            api.checkpoints.create("hist", "x", keep="forever")
        assert "duration" in e.value.message
        with pytest.raises(WorkspaceNotFound):
            api.checkpoints.list("no-such-ws")
        assert vol.read_bytes("src/a.py") == b"one\n"  # nothing lost
    api.sessions.revoke("hist", rw.session.id)


def test_checkpoint_routes_answer_json_over_http(stack, api, monkeypatch):  # noqa: F811 - fixtures
    create_and_format(api, "raw", monkeypatch)
    url = f"{stack['server'].url}/workspaces/{api.handle}/raw/checkpoints"
    headers = {"Authorization": f"Bearer {api._api_key}", "Content-Type": "application/json"}
    req = urllib.request.Request(url, data=json.dumps({"name": "c1"}).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 201 and json.loads(resp.read())["name"] == "c1"
    req = urllib.request.Request(url + "/c2", headers=headers)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 404 and json.loads(e.value.read())["code"] == "checkpoint_not_found"
    req = urllib.request.Request(url, headers={})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 401


def test_a_read_only_session_lists_and_reads_but_cannot_change_history(api, monkeypatch, tmp_path):  # noqa: F811
    create_and_format(api, "rosess", monkeypatch)
    rw = api.sessions.create("rosess")
    with _volume(rw, tmp_path, monkeypatch) as vol:
        vol.write_bytes("doc.txt", b"v1")
        vol.checkpoints.create("c1")
        vol.write_bytes("doc.txt", b"v2")
    ro = api.sessions.create("rosess", mode="ro")
    with _volume(ro, tmp_path, monkeypatch, read_only=True) as rov:
        assert [c.name for c in rov.checkpoints.list()] == ["c1"]
        assert rov.checkpoints.show("c1")["changes_since"] == 1
        assert [c.path for c in rov.checkpoints.diff("c1", text=True)] == ["/doc.txt"]
        assert rov.checkpoints.view("c1").read_bytes("doc.txt") == b"v1"
        assert rov.read_bytes(".checkpoints/c1/doc.txt") == b"v1"
        for attempt in (lambda: rov.checkpoints.create("c2"), lambda: rov.checkpoints.restore("c1"),
                        lambda: rov.checkpoints.delete("c1")):
            with pytest.raises(ReadOnly) as e:
                attempt()
            assert e.value.errno == 30 and "read-only" in str(e.value) and "list and read" in str(e.value)
        # a client that skips the check is refused by Redis itself (the session's ACL user)
        for attempt in (lambda: rov.meta.checkpoint_create("c2"),
                        lambda: rov.meta.checkpoint_restore("c1", "safe"),
                        lambda: rov.meta.checkpoint_delete("c1")):
            with pytest.raises((PermissionDenied, ArtifactsError)) as e:
                attempt()
            assert e.value.errno in (13, 1, 30), e.value
        assert [c.name for c in rov.checkpoints.list()] == ["c1"]
        assert rov.read_bytes("doc.txt") == b"v2"  # nothing was restored
    api.sessions.revoke("rosess", ro.session.id)
    api.sessions.revoke("rosess", rw.session.id)
