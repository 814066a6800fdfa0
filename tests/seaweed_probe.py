"""Probing SeaweedFS's ports and sockets as another local user (uid 65534, ``setpriv``): what the
tests of DESIGN.md §10's "nothing of the local stack answers another local user" share (the
test fixtures' SeaweedFS in tests/core/test_servers.py, the ``artifacts up`` stack in
tests/cli/test_cli_e2e.py). Needs root and ``curl`` (scripts/bootstrap installs it)."""

from __future__ import annotations

import os
import subprocess

from artifacts_core.servers import LOOPBACK

NOBODY = 65534
#: Go's TLS server answers a plain HTTP request with this 400 and nothing else: no data.
_PLAIN_TO_TLS = "Client sent an HTTP request to an HTTPS server."


def curl_as_nobody(*args: str) -> tuple[str, str]:
    """``curl`` run as uid/gid 65534 (nobody): (HTTP status, or "000" for no answer; body)."""
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
            code, body = curl_as_nobody(*args, f"{scheme}://{LOOPBACK}:{ports[component]}{path}")
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
                code, body = curl_as_nobody(*extra, "-H", "content-type: application/grpc", "--data-binary",
                                             f"@{f.name}", f"{scheme}://{LOOPBACK}:{grpc}/filer_pb.SeaweedFiler/ListEntries")
                if code != "000":
                    answered.append(f"gRPC {scheme}://{component}:{grpc} -> {code} {body[:80]!r}")
    finally:
        os.unlink(f.name)
    for path in sockets:
        code, body = curl_as_nobody("--unix-socket", path, f"http://localhost/buckets/{bucket}/{key}")
        if code != "000":
            answered.append(f"unix socket {path} -> {code} {body[:80]!r}")
    return answered


def weed_sockets(workdir, ports: dict[str, int]) -> list[str]:
    """The Unix sockets a ``weed server`` of ours listens on (filer and gateway, and gRPC in /tmp)."""
    grpc = [f"/tmp/seaweedfs-{name}-grpc-{port + 10000}.sock" for name, port in ports.items()]
    return [str(p) for p in workdir.glob("*.sock")] + [p for p in grpc if os.path.exists(p)]
