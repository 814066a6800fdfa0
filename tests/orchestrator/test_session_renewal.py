"""Long-lived mounts: a session renews itself with its renewal token for as long as what issued it
allows (its API key, its grant), and a refused renewal ends the mount with EACCES at the session's
expiry, exactly as a revocation does. Lifetimes of seconds and the orchestrator's movable clock
stand in for weeks (docs/orchestrator.md, "Renewal")."""

from __future__ import annotations

import contextlib
import time

import pytest
from orchestrator_stack import (  # noqa: F401 - fixtures
    _config,
    _reset_clock,
    create_and_format,
    s3_env,
)

from artifacts_core.errors import PermissionDenied
from artifacts_core.volume import open_volume
from artifacts_orchestrator import errors as E
from artifacts_orchestrator.client import Artifacts
from artifacts_orchestrator.renewal import RenewalSettings, SessionRenewer

pytestmark = [pytest.mark.redis, pytest.mark.s3]


@pytest.fixture
def short(stack):
    """Sessions may live seconds, as tests need."""
    svc = stack["service"]
    svc.min_session_ttl = 1
    yield svc
    svc.min_session_ttl = 60
    stack["platform"].session_ttl = 7 * 24 * 3600


@contextlib.contextmanager
def volume(grant, cache):
    """A volume of the session; closing one whose session ended fails (EACCES), which is expected."""
    vol = open_volume(grant.meta.url, grant.storage.url, key_prefix=grant.meta.key_prefix, config=_config(cache))
    try:
        yield vol
    finally:
        with contextlib.suppress(PermissionDenied):
            vol.close()


def _touch(vol, n: int) -> None:
    with vol.open(f"f{n % 3}.txt", "w") as f:
        f.write(str(n))
    with vol.open(f"f{n % 3}.txt") as f:
        assert f.read() == str(n)


def test_a_session_lives_on_in_steps_of_its_ttl_until_its_key_is_revoked(stack, api, short, monkeypatch, tmp_path):
    create_and_format(api, "long", monkeypatch)
    key = api.keys.create("mounts")
    grant = Artifacts(key.key, base_url=api.base_url).sessions.create("long", ttl_seconds=2)
    assert grant.renewal is not None and grant.renewal.token.startswith("tbr_") and grant.renewal.ttl_seconds == 2
    anon = Artifacts("", base_url=api.base_url)  # what a mount process holds: no API key
    with pytest.raises(E.Unauthorized):
        anon.sessions.renew_with_token("tbr_" + "x" * 32)
    s3_env(monkeypatch, grant.storage.credentials)
    clock, svc = stack["clock"], stack["service"]
    with volume(grant, tmp_path / "c") as vol:
        for n in range(40):  # 40 renewals at 1.5 s of the orchestrator's clock: 30 times the TTL
            clock.offset += 1.5
            renewed = anon.sessions.renew_with_token(grant.renewal.token)
            assert 1.9 <= renewed.expires_in <= 2.0
            assert svc.reap()["sessions"] == 0  # never expired
            _touch(vol, n)
        assert renewed.session.expires_at > grant.session.expires_at + 59
        api.keys.revoke(key.id)  # the key that opened it: no more renewals ...
        with pytest.raises(E.RenewalRefused, match="API key"):
            anon.sessions.renew_with_token(grant.renewal.token)
        _touch(vol, 99)  # ... but the session runs until its expiry (sessions outlive their key)
        clock.offset += 2.1
        assert svc.reap()["sessions"] == 1
        with pytest.raises(PermissionDenied):  # EACCES, as after a revocation
            vol.stat("f0.txt")
    session = api.sessions.list("long", include_revoked=True).sessions[0]
    assert session.revoke_reason == "expired"
    with pytest.raises(E.RenewalRefused, match="revoked"):
        anon.sessions.renew_with_token(grant.renewal.token)


def test_a_ticket_session_renews_while_its_grant_lives_and_never_past_it(stack, api, short, monkeypatch, tmp_path):
    create_and_format(api, "task", monkeypatch)
    stack["platform"].session_ttl = 2
    grant = api.platform.create_access_grant("task", tenant_slug="acme", runtime_id="r1", ttl_seconds=60)
    issued = api.platform.create_mount_ticket("acme", "r1", workspace="task", ttl_seconds=60)
    anon = Artifacts("", base_url=api.base_url)
    mount = anon.platform.exchange_mount_ticket(issued.mount_ticket).mount
    clock, svc = stack["clock"], stack["service"]
    s3_env(monkeypatch, mount.storage.credentials)
    end = grant.expires_at
    with volume(mount, tmp_path / "c") as vol:
        # Steps of at most 1.5 s on the moved clock, measured from the grant's end at each step (real
        # time passes too, a lot on a loaded machine), until less than the session's 2 s is left.
        while end - clock() > 1.8:
            clock.offset += min(1.5, end - clock() - 1.7)
            left = end - clock()
            renewed = anon.sessions.renew_with_token(mount.renewal.token)
            assert svc.reap()["sessions"] == 0
        _touch(vol, 1)
        assert renewed.expires_in <= left + 0.5 and renewed.expires_in < 2  # capped at the grant's expiry
        clock.offset += end - clock() + 0.5  # the grant expired
        with pytest.raises(E.RenewalRefused, match="expired"):
            anon.sessions.renew_with_token(mount.renewal.token)
        done = svc.reap()
        assert done["grants_expired"] == 1
        with pytest.raises(PermissionDenied):
            vol.stat("f1.txt")


@pytest.mark.slow
def test_the_renewer_keeps_a_volume_alive_in_real_time_and_stops_when_refused(stack, api, short, monkeypatch,
                                                                               tmp_path):
    """The renewer thread a mount or MCP process runs, with a 1-second session, the reaper every
    0.1 s and I/O all along: three seconds (three lifetimes) without a failure; then the key is
    revoked, the next renewal is refused, and the session ends at its expiry with EACCES."""
    create_and_format(api, "live", monkeypatch)
    key = api.keys.create("mcp")
    grant = Artifacts(key.key, base_url=api.base_url).sessions.create("live", ttl_seconds=1)
    s3_env(monkeypatch, grant.storage.credentials)
    svc = stack["service"]
    refused = []
    renewer = SessionRenewer(RenewalSettings(url=api.base_url, token=grant.renewal.token, ttl=1.0),
                             on_refused=refused.append).start()
    try:
        with volume(grant, tmp_path / "c") as vol:
            started, n = time.monotonic(), 0
            while time.monotonic() - started < 3.0:
                svc.reap()
                _touch(vol, n)
                n += 1
                time.sleep(0.1)
            assert renewer.renewals >= 4 and not refused
            api.keys.revoke(key.id)
            deadline = time.monotonic() + 10
            failed = None
            while time.monotonic() < deadline:
                svc.reap()
                try:
                    vol.stat("f0.txt")
                except PermissionDenied as e:
                    failed = e
                    break
                time.sleep(0.05)
            assert failed is not None and refused and refused[0].code == "renewal_refused"
    finally:
        renewer.stop()


def test_the_renewer_retries_while_the_orchestrator_is_unreachable():
    """Timing without servers: renew at half the life left; retry at a quarter of what is left
    while unreachable; a refusal ends it."""
    now = [0.0]
    answers: list = [E.OrchestratorUnavailable("down"), 100.0, E.RenewalRefused("revoked")]

    def renew():
        a = answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a
    r = SessionRenewer(RenewalSettings(url="http://x", token="tbr_x", ttl=100.0), renew=renew,
                       monotonic=lambda: now[0])
    assert r.next_delay(failed=False) == 50.0
    now[0] = 50.0
    assert not r.renew_once() and r.refused is None
    assert r.next_delay(failed=True) == 12.5  # a quarter of the 50 s left
    now[0] = 62.5
    assert r.renew_once() and r.expires == 162.5 and r.renewals == 1
    assert r.next_delay(failed=False) == 50.0
    now[0] = 200.0  # past the expiry: retries slow down, the orchestrator decides
    assert r.next_delay(failed=True) == 60.0
    assert not r.renew_once() and r.refused is not None and r.refused.code == "renewal_refused"
