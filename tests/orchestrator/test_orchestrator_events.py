# ruff: noqa: F811 - the imported fixtures are used as parameters
"""The journal through the orchestrator, on the real stack: a mount session's changes read back
over HTTP with the orchestrator's view of the actor (mount session, account, grant); the
server-sent events stream live; authorization like every workspace call; the periodic retention;
and ``artifacts events`` (table, JSON lines)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from orchestrator_stack import _config, _reset_clock, api, create_and_format, s3_env, stack  # noqa: F401

from artifacts_cli.main import run
from artifacts_core.volume import format_volume, open_volume
from artifacts_orchestrator import errors as E
from artifacts_orchestrator.client import Artifacts

pytestmark = [pytest.mark.redis, pytest.mark.s3]


def _mount(api, name, monkeypatch, tmp_path, mode="rw"):
    grant = api.sessions.create(name, mode=mode)
    s3_env(monkeypatch, grant.storage.credentials)
    return grant, open_volume(grant.meta.url, grant.storage.url, key_prefix=grant.meta.key_prefix,
                              config=_config(tmp_path / f"c-{grant.session.id}"), mountpoint="/mnt/j",
                              read_only=mode == "ro")


def test_events_over_http_with_the_actor_and_authorization(stack, api, monkeypatch, tmp_path):
    create_and_format(api, "jr", monkeypatch)
    grant, vol = _mount(api, "jr", monkeypatch, tmp_path)
    try:
        vol.makedirs("/out")
        vol.write_bytes("/out/a.txt", b"hello")
        vol.rename("/out/a.txt", "/out/b.txt")
    finally:
        vol.close()
    page = api.workspaces.events("jr")
    ops = [(e["op"], e.get("path")) for e in page["events"]]
    assert ops == [("mkdir", "/out"), ("create", "/out/b.txt"), ("commit", "/out/b.txt"), ("rename", "/out/b.txt")]
    actor = page["events"][0]["actor"]
    assert actor["mount_session"] == grant.session.id and actor["mountpoint"] == "/mnt/j"
    assert actor["account"] and actor["mode"] == "rw"
    assert page["events"][2]["length"] == 5 and page["events"][3]["where"] == "/out/a.txt"
    nxt = api.workspaces.events("jr", since=page["cursor"])
    assert nxt["events"] == [] and nxt["cursor"] == page["cursor"]
    # the original name matches the records that named it; the data record names only the inode
    assert [e["op"] for e in api.workspaces.events("jr", path="/out/a.txt")["events"]] == ["create", "rename"]
    with pytest.raises(E.InvalidRequest):
        api.workspaces.events("jr", since="someday")


def test_other_accounts_cannot_read_the_journal(stack, api, monkeypatch):
    from orchestrator_stack import ADMIN_TOKEN

    create_and_format(api, "mine", monkeypatch)
    anon = Artifacts("", base_url=stack["server"].url)
    new = anon.create_account(f"other{int(time.time() * 1000) % 10**8}", admin_token=ADMIN_TOKEN)
    intruder = Artifacts(new.key.key, base_url=stack["server"].url)
    with pytest.raises(E.Forbidden):
        intruder.workspaces.events(f"{api.handle}/mine")
    with pytest.raises(E.Forbidden):
        next(iter(intruder.stream_events(f"{api.handle}/mine")))
    with pytest.raises(E.Unauthorized):
        Artifacts("bad-key", base_url=stack["server"].url).workspaces.events("mine")


def test_the_stream_delivers_new_events_live(stack, api, monkeypatch, tmp_path):
    create_and_format(api, "live", monkeypatch)
    _, vol = _mount(api, "live", monkeypatch, tmp_path)
    got: list = []

    def follow():
        for e in api.stream_events("live", since="now"):
            got.append((e, time.monotonic()))
            if len(got) == 2:
                return

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    try:
        time.sleep(1.0)
        sent = time.monotonic()
        vol.mkdir("/first")
        vol.mkdir("/second")
        t.join(15)
    finally:
        vol.close()
    assert [e["path"] for e, _ in got] == ["/first", "/second"]
    assert got[0][1] - sent < 5  # live (loose: the benchmark measures the delay)


def test_retention_runs_in_the_orchestrator(stack, api, monkeypatch, tmp_path):
    r = api.workspaces.create("kept")
    s3_env(monkeypatch, r.storage.credentials)
    format_volume(r.format.url, r.storage.url, r.workspace.volume_name, key_prefix=r.format.key_prefix,
                  trash_days=0, journal_max_events=3)
    api.workspaces.format_completed("kept")
    _, vol = _mount(api, "kept", monkeypatch, tmp_path)
    try:
        for i in range(6):
            vol.mkdir(f"/d{i}")
    finally:
        vol.close()
    assert stack["service"].journal_retention()["journal_events_dropped"] >= 4  # 7 events: session + 6
    page = api.workspaces.events("kept")
    assert [e["path"] for e in page["events"]] == ["/d3", "/d4", "/d5"] and page["missed"] == 4


def test_cli_events(stack, api, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TONBO_API_KEY", api._api_key)
    monkeypatch.setenv("ARTIFACTS_ORCHESTRATOR_URL", api.base_url)
    for d in ("CONFIG", "CACHE", "STATE"):
        monkeypatch.setenv(f"XDG_{d}_HOME", str(tmp_path / d.lower()))
    create_and_format(api, "cli", monkeypatch)
    _, vol = _mount(api, "cli", monkeypatch, tmp_path)
    try:
        vol.write_bytes("/report.md", b"# hi")
    finally:
        vol.close()
    capsys.readouterr()
    assert run(["events", "cli"]) == 0
    out = capsys.readouterr().out
    assert "/report.md" in out and "commit" in out and "4 (+4)" in out and "/mnt/j" in out
    assert run(["--format", "json", "events", "cli", "--path", "/report.md"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [e["op"] for e in lines] == ["create", "commit"]
    assert run(["events", "cli", "--since", "bogus"]) != 0


def test_the_read_audit_over_http_stream_and_cli(stack, api, monkeypatch, tmp_path, capsys):
    """A workspace that keeps the read audit: a read-only mount's opens for reading appear, with
    the orchestrator's view of the actor, when asked for (``reads=1``, ``--reads``), in the page,
    the stream (``event: read``) and the CLI; not otherwise."""
    r = api.workspaces.create("audited")
    if r.storage.credentials is not None:
        s3_env(monkeypatch, r.storage.credentials)
    format_volume(r.format.url, r.storage.url, r.workspace.volume_name, key_prefix=r.format.key_prefix,
                  trash_days=0, journal_reads=True)
    api.workspaces.format_completed("audited")
    _, vol = _mount(api, "audited", monkeypatch, tmp_path)
    try:
        vol.write_bytes("/secret.txt", b"s3cret")
    finally:
        vol.close()
    got: list = []

    def follow():
        for e in api.stream_events("audited", since="0", reads=True):
            got.append(e)
            if e["kind"] == "read":
                return

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    grant, ro = _mount(api, "audited", monkeypatch, tmp_path, mode="ro")
    try:
        assert ro.read_bytes("/secret.txt") == b"s3cret"
    finally:
        ro.close()
    t.join(15)
    assert [e["op"] for e in got] == ["create", "commit", "open"]
    assert [e["op"] for e in api.workspaces.events("audited")["events"]] == ["create", "commit"]
    page = api.workspaces.events("audited", reads=True)
    (ev,) = [e for e in page["events"] if e["kind"] == "read"]
    assert ev["path"] == "/secret.txt" and ev["actor"]["mount_session"] == grant.session.id
    assert ev["actor"]["mode"] == "ro" and page["reads_cursor"] == ev["id"] + 1
    monkeypatch.setenv("TONBO_API_KEY", api._api_key)
    monkeypatch.setenv("ARTIFACTS_ORCHESTRATOR_URL", api.base_url)
    for d in ("CONFIG", "CACHE", "STATE"):
        monkeypatch.setenv(f"XDG_{d}_HOME", str(tmp_path / d.lower()))
    capsys.readouterr()
    assert run(["--format", "json", "events", "audited", "--reads"]) == 0
    assert [json.loads(x)["op"] for x in capsys.readouterr().out.splitlines()] == ["create", "commit", "open"]
