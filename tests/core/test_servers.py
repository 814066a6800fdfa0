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

NOBODY = 65534
#: Go's TLS server answers a plain HTTP request with this 400 and nothing else: no data.
_PLAIN_TO_TLS = "Client sent an HTTP request to an HTTPS server."


def _curl_as_nobody(*args: str) -> tuple[str, str]:
    """``curl`` run as uid/gid 65534 (nobody): (HTTP status, or "000" for no answer; body)."""
    import subprocess

    res = subprocess.run(["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups",
                          "curl", "-sS", "-m", "5", "-o", "-", "-w", "\n%{http_code}", *args],
                         capture_output=True, timeout=30)
    body, _, code = res.stdout.decode(errors="replace").rpartition("\n")
    return code.strip() or "000", body


def probe_internal_ports(ports: dict[str, int], sockets: list[str], bucket: str, key: str) -> list[str]:
    """Every way another local user could reach SeaweedFS besides the S3 port: the master's,
    volume server's and filer's HTTP ports (plain and TLS without a client certificate), every
    gRPC port (h2c and TLS), and the Unix sockets. Returns what answered (empty: nothing did)."""
    import struct
    import tempfile

    answered = []
    http = [("filer", "GET", f"/buckets/{bucket}/{key}"),          # read another account's object
            ("filer", "GET", "/etc/iam/identities/"),              # list every session's S3 secret
            ("filer", "PUT", f"/buckets/{bucket}/{key}.planted"),  # write into its prefix
            ("master", "GET", "/dir/assign"), ("master", "GET", "/dir/status"),
            ("volume", "GET", "/status")]
    for component, method, path in http:
        for scheme, extra in (("http", []), ("https", ["-k"])):
            args = [*extra, "-X", method, "-H", "Accept: application/json"]
            if method == "PUT":
                args += ["--data-binary", "planted"]
            code, body = _curl_as_nobody(*args, f"{scheme}://{LOOPBACK}:{ports[component]}{path}")
            if code != "000" and not (code == "400" and body.strip() == _PLAIN_TO_TLS):
                answered.append(f"{method} {scheme}://{component}{path} -> {code} {body[:80]!r}")
    # gRPC: ListEntries("/etc/iam") framed by hand (1 flag byte, 4 length bytes, protobuf field 1).
    msg = b"\x0a\x08/etc/iam"
    with tempfile.NamedTemporaryFile(suffix=".grpc", delete=False) as f:
        f.write(b"\x00" + struct.pack(">I", len(msg)) + msg)
    os.chmod(f.name, 0o644)
    try:
        for component in ("master", "volume", "filer", "s3"):
            grpc = ports[component] + 10000
            for scheme, extra in (("http", ["--http2-prior-knowledge"]), ("https", ["-k", "--http2"])):
                code, body = _curl_as_nobody(*extra, "-H", "content-type: application/grpc", "--data-binary",
                                             f"@{f.name}", f"{scheme}://{LOOPBACK}:{grpc}/filer_pb.SeaweedFiler/ListEntries")
                if code != "000":
                    answered.append(f"gRPC {scheme}://{component}:{grpc} -> {code} {body[:80]!r}")
    finally:
        os.unlink(f.name)
    for path in sockets:
        code, body = _curl_as_nobody("--unix-socket", path, f"http://localhost/buckets/{bucket}/{key}")
        if code != "000":
            answered.append(f"unix socket {path} -> {code} {body[:80]!r}")
    return answered


def weed_sockets(workdir, ports: dict[str, int]) -> list[str]:
    """The Unix sockets a ``weed server`` of ours listens on (filer and gateway, and gRPC in /tmp)."""
    grpc = [f"/tmp/seaweedfs-{name}-grpc-{port + 10000}.sock" for name, port in ports.items()]
    return [str(p) for p in workdir.glob("*.sock")] + [p for p in grpc if os.path.exists(p)]


@pytest.mark.s3
def test_seaweedfs_internal_ports_refuse_other_local_users(s3_server):
    """DESIGN.md §10: only the S3 gateway (IAM) answers another local user. As uid nobody, the
    filer's HTTP port used to hand out any object, accept writes into any prefix and list the IAM
    identities; the master's and volume server's HTTP APIs and every gRPC port answered too."""
    if os.geteuid() != 0:
        pytest.skip("probing as another user needs root (setpriv)")
    from tests.conftest import TEST_BUCKET

    key = f"t-{secrets.token_hex(6)}/block-0"
    assert s3_server._signed_request("PUT", f"/{TEST_BUCKET}/{key}", b"another account's bytes")[0] == 200
    sockets = weed_sockets(s3_server.workdir, s3_server.ports)
    assert sockets  # the gRPC sockets at least
    assert probe_internal_ports(s3_server.ports, sockets, TEST_BUCKET, key) == []
    # The S3 port itself still answers, and only with credentials.
    assert s3_server._signed_request("GET", f"/{TEST_BUCKET}/{key}") == (200, b"another account's bytes")
    assert _curl_as_nobody(f"{s3_server.endpoint}/{TEST_BUCKET}/{key}")[0] == "403"
    status, _ = s3_server._signed_request("HEAD", f"/{TEST_BUCKET}/{key}.planted")
    assert status == 404  # nothing was planted through another port
