"""The fixtures start real servers: these tests fail if a fixture hands out a fake."""

import socket

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
