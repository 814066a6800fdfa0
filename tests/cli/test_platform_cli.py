# ruff: noqa: F811 - the imported fixtures are used as parameters
"""``artifacts platform tenant|grant|ticket`` against the real orchestrator stack (in-process CLI
runs, ``TONBO_API_KEY`` in the environment as on a platform's backend): output, JSON, exit codes,
the 0600 ticket file, and that the file it writes is what a runtime exchanges.
"""

from __future__ import annotations

import datetime
import json
import stat

import pytest
from orchestrator_stack import _reset_clock, api, create_and_format, stack  # noqa: F401

from artifacts_cli.main import run
from artifacts_orchestrator.client import Artifacts

pytestmark = [pytest.mark.redis, pytest.mark.s3]


@pytest.fixture
def cli(api, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TONBO_API_KEY", api._api_key)
    monkeypatch.setenv("ARTIFACTS_ORCHESTRATOR_URL", api.base_url)
    for d in ("CONFIG", "CACHE", "STATE"):
        monkeypatch.setenv(f"XDG_{d}_HOME", str(tmp_path / d.lower()))

    def call(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = run(list(argv))
        got = capsys.readouterr()
        return rc, got.out, got.err

    return call


def test_tenant_commands(cli):
    rc, out, _ = cli("platform", "tenant", "create", "acme", "--external-id", "cus_1", "--metadata", '{"plan": "pro"}')
    assert rc == 0 and "Created tenant acme" in out
    rc, _, err = cli("platform", "tenant", "create", "acme")
    assert rc == 5 and "tenant_exists" in err
    rc, out, _ = cli("--format", "json", "platform", "tenant", "list")
    assert rc == 0 and [t["slug"] for t in json.loads(out)["tenants"]] == ["acme"]
    rc, out, _ = cli("platform", "tenant", "show", "acme")
    assert rc == 0 and "cus_1" in out and '"plan": "pro"' in out
    assert cli("platform", "tenant", "show", "nope")[0] == 4
    assert cli("platform", "tenant", "create", "Bad_Slug")[0] == 2
    assert cli("platform", "tenant", "create", "x", "--metadata", "[1]")[0] == 2


def test_grant_commands(cli, api, monkeypatch):
    create_and_format(api, "pool", monkeypatch)
    rc, out, _ = cli("--format", "json", "platform", "grant", "create", "pool", "--tenant", "acme", "--mode", "ro",
                     "--ttl", "30d")
    wide = json.loads(out)
    assert rc == 0 and wide["runtime_id"] is None and wide["mode"] == "ro"
    # Times are ISO 8601 strings in JSON, as in the text output.
    created, expires = (datetime.datetime.fromisoformat(wide[k]) for k in ("created_at", "expires_at"))
    assert (expires - created).total_seconds() == pytest.approx(30 * 86400, abs=1)
    rc, out, _ = cli("platform", "grant", "create", "pool", "--tenant", "acme", "--runtime", "task-1")
    assert rc == 0 and "to runtime task-1 of tenant acme" in out
    rc, out, _ = cli("platform", "grant", "list", "--tenant", "acme")
    assert rc == 0 and out.splitlines()[0].split() == ["ID", "WORKSPACE", "TENANT", "RUNTIME", "MODE", "EXPIRES",
                                                       "STATUS"]
    assert len(out.splitlines()) == 3
    assert cli("platform", "grant", "create", "pool", "--tenant", "acme", "--ttl", "soon")[0] == 2
    assert cli("platform", "grant", "revoke")[0] == 2
    assert cli("platform", "grant", "revoke", "gr_0000000000000000")[0] == 4
    rc, out, _ = cli("platform", "grant", "revoke", "--tenant", "acme", "--runtime", "task-1")
    assert rc == 0 and out.startswith("Revoked 1 grant(s)")
    rc, out, _ = cli("platform", "grant", "revoke", wide["id"])
    assert rc == 0 and out.startswith("Revoked 1 grant(s)")
    rc, out, _ = cli("--format", "json", "platform", "grant", "list", "--all")
    assert {g["status"] for g in json.loads(out)["grants"]} == {"revoked"}


def test_ticket_create_writes_a_private_file_a_runtime_can_exchange(cli, api, monkeypatch, tmp_path):
    create_and_format(api, "task-7", monkeypatch)
    dest = tmp_path / "out" / "mount-ticket.json"
    rc, out, _ = cli("platform", "ticket", "create", "--tenant", "acme", "--runtime", "task-7", "--workspace",
                     "task-7", "--ttl", "1h", "--out", str(dest))
    assert rc == 0 and "(0600)" in out and str(dest) in out
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    ticket = json.loads(dest.read_text())
    assert set(ticket) == {"format", "kid", "claims", "signature"}
    assert api._api_key not in dest.read_text()
    got = Artifacts("", base_url=api.base_url).platform.exchange_mount_ticket(ticket)
    assert got.runtime_id == "task-7" and got.mount.session.mode == "rw"

    rc, out, err = cli("platform", "ticket", "create", "--tenant", "acme", "--runtime", "task-8", "--workspace",
                       "task-7", "--mode", "ro", "--ttl", "90s")
    assert rc == 0 and json.loads(out)["format"] == "artifacts-mount-ticket/1" and "--out FILE" in err
    assert cli("platform", "ticket", "create", "--tenant", "acme", "--runtime", "r", "--workspace", "task-7",
               "--ttl", "2d")[0] == 2  # past the 24 h bound
