"""The fixtures start real servers: these tests fail if a fixture hands out a fake."""

import os
import secrets
import socket

import pytest

from artifacts_core.servers import LOOPBACK


def test_redis_is_a_real_server_on_loopback(redis_server):
    with socket.create_connection((LOOPBACK, redis_server.port), timeout=2) as s:
        s.sendall(b"INFO server\r\n")
        reply = s.recv(65536)
    assert b"redis_version" in reply
    assert redis_server.proc.poll() is None


def test_seaweed_refuses_anonymous_and_accepts_the_configured_key(s3_server):
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(s3_server.endpoint + "/", timeout=5)
        anonymous_status = 200
    except urllib.error.HTTPError as e:
        anonymous_status = e.code
    assert anonymous_status == 403
    assert s3_server._signed_request("GET", "/")[0] == 200


# -- SeaweedFS's internal ports, probed as another local user -------------------------------------

@pytest.mark.s3
def test_seaweedfs_internal_ports_refuse_other_local_users(s3_server):
    """DESIGN.md §10: only the S3 gateway (IAM) answers another local user. As uid nobody, the
    filer's HTTP port used to hand out any object, accept writes into any prefix and list the IAM
    identities; the master's and volume server's HTTP APIs and every gRPC port answered too."""
    if os.geteuid() != 0:
        pytest.skip("probing as another user needs root (setpriv)")
    from seaweed_probe import curl_as_nobody, probe_internal_ports, weed_sockets
    from testbed import TEST_BUCKET

    key = f"t-{secrets.token_hex(6)}/block-0"
    assert s3_server._signed_request("PUT", f"/{TEST_BUCKET}/{key}", b"another account's bytes")[0] == 200
    sockets = weed_sockets(s3_server.workdir, s3_server.ports)
    assert sockets  # the gRPC sockets at least
    assert probe_internal_ports(s3_server.ports, sockets, TEST_BUCKET, key) == []
    # The S3 port itself still answers, and only with credentials.
    assert s3_server._signed_request("GET", f"/{TEST_BUCKET}/{key}") == (200, b"another account's bytes")
    assert curl_as_nobody(f"{s3_server.endpoint}/{TEST_BUCKET}/{key}")[0] == "403"
    status, _ = s3_server._signed_request("HEAD", f"/{TEST_BUCKET}/{key}.planted")
    assert status == 404  # nothing was planted through another port
