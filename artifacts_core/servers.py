"""Real servers on loopback: ``redis-server``, a 3-master Redis Cluster, and the SeaweedFS S3 gateway.

Used by the test fixtures, the benchmarks and the embedded local stack. Each server is started on
free loopback ports picked here, waited for until it answers, and stopped by its own process id
(SIGTERM, then SIGKILL after a bound: ``weed server`` can take over 10 s to exit on SIGTERM).

Nothing here is specific to pytest::

    with RedisServer.start(tmpdir) as redis, SeaweedS3.start(tmpdir) as s3:
        print(redis.url, s3.endpoint, s3.access_key)
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"

# weed takes port + 10000 for gRPC, so every port we hand it must stay below 55536.
_PORT_CEILING = 55536


def port_is_free(port: int) -> bool:
    """Whether a server could bind ``port`` on loopback now. SO_REUSEADDR, as our servers set it:
    connections of a stopped one linger in TIME-WAIT for a minute and must not count as taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_port(*, grpc_offset: bool = False) -> int:
    """A free loopback port (and, with ``grpc_offset``, its +10000 twin free too)."""
    for _ in range(500):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((LOOPBACK, 0))
            port = s.getsockname()[1]
        if grpc_offset and (port >= _PORT_CEILING or not port_is_free(port + 10000)):
            continue
        return port
    raise RuntimeError("no free loopback port found")


def find_binary(name: str) -> str:
    """The path of ``name``: the project's virtual environment first, then ``PATH``."""
    venv_bin = Path(sys.executable).parent / name
    if venv_bin.exists():
        return str(venv_bin)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(
            f"{name!r} is not installed; run scripts/bootstrap (it installs redis-server, fuse3 and weed)")
    return found


def _wait_for(check, *, timeout: float, what: str, proc: subprocess.Popen | None = None,
              log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting:\n{tail}")
        try:
            if check():
                return
        except Exception:
            pass
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise TimeoutError(f"{what} did not become ready within {timeout:.0f} s\n{tail}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


def stop_process(proc: subprocess.Popen, *, grace: float, signum: int = signal.SIGTERM,
                 group: bool = True) -> None:
    """Send ``signum`` (to the process group, or with ``group=False`` to the process alone), wait
    up to ``grace`` seconds, then SIGKILL the group."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(proc.pid, signum)
        else:
            os.kill(proc.pid, signum)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _redis_ping(port: int) -> bool:
    with socket.create_connection((LOOPBACK, port), timeout=0.5) as s:
        s.sendall(b"PING\r\n")
        # -NOAUTH: up, with the default user off (an ACL file the orchestrator wrote).
        return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))


def _spawn_redis(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, start_new_session=True)


def _redis_cli(port: int, *args: str, timeout: float = 30) -> str:
    cmd = [find_binary("redis-cli"), "-h", LOOPBACK, "-p", str(port), *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout).stdout


@dataclass
class RedisServer:
    """One ``redis-server`` process on loopback."""

    port: int
    workdir: Path
    proc: subprocess.Popen
    log: Path
    args: list[str] = field(default_factory=list)  # the command line, for restart()

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    @property
    def aof_dir(self) -> Path:
        """Where AOF files live (Redis 7's multi-part AOF: a manifest, a base and increments)."""
        return self.workdir / "appendonlydir"

    @classmethod
    def start(cls, workdir: str | os.PathLike | None = None, *, port: int | None = None,
              appendonly: bool = False, maxmemory: str | None = None,
              extra: list[str] | None = None) -> RedisServer:
        """Start redis-server. Without ``appendonly`` it keeps nothing on disk (tests); the local
        stack passes ``appendonly=True`` (AOF everysec, DESIGN.md §10)."""
        workdir = Path(workdir or tempfile.mkdtemp(prefix="artifacts-redis-"))
        workdir.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        log = workdir / f"redis-{port}.log"
        args = [
            find_binary("redis-server"), "--port", str(port), "--bind", LOOPBACK,
            "--dir", str(workdir), "--save", "", "--daemonize", "no",
            "--maxmemory-policy", "noeviction", "--protected-mode", "yes",
            "--logfile", str(log),
        ]
        if appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            args += ["--appendonly", "no"]
        if maxmemory:
            args += ["--maxmemory", maxmemory]
        args += extra or []
        server = cls(port=port, workdir=workdir, proc=_spawn_redis(args), log=log, args=args)
        server._wait_ready()
        return server

    def _wait_ready(self) -> None:
        try:
            _wait_for(lambda: _redis_ping(self.port), timeout=20, what="redis-server", proc=self.proc,
                      log=self.log)
        except BaseException:
            self.stop()
            raise

    def kill(self) -> None:
        """SIGKILL: a crash. With AOF everysec, what was not yet fsynced is lost (tests copy the
        AOF directory to replay an older state, as a crash or a lagging replica would)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def restart(self) -> None:
        """Start redis-server again on the same port and directory, with the same arguments."""
        if self.proc.poll() is None:
            self.stop()
        self.proc = _spawn_redis(self.args)
        self._wait_ready()

    def stop(self) -> None:
        stop_process(self.proc, grace=10)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class RedisCluster:
    """A 3-master Redis Cluster (no replicas) on loopback, created with ``redis-cli --cluster``."""

    nodes: list[RedisServer]

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    @property
    def url(self) -> str:
        """The seed URL form of DESIGN.md §9: ``redis+cluster://host:port,host:port,...``."""
        return "redis+cluster://" + ",".join(f"{LOOPBACK}:{p}" for p in self.ports)

    @classmethod
    def start(cls, workdir: str | os.PathLike | None = None, *, masters: int = 3,
              appendonly: bool = False) -> RedisCluster:
        """``appendonly``: AOF everysec on every node (the benchmarks compare it with a standalone
        Redis run the same way)."""
        workdir = Path(workdir or tempfile.mkdtemp(prefix="artifacts-cluster-"))
        nodes: list[RedisServer] = []
        try:
            for i in range(masters):
                # The cluster bus takes port + 10000: pick ports whose twin is free too.
                port = free_port(grpc_offset=True)
                nodedir = workdir / f"node{i}"
                nodes.append(RedisServer.start(nodedir, port=port, appendonly=appendonly, extra=[
                    "--cluster-enabled", "yes", "--cluster-config-file", str(nodedir / "nodes.conf"),
                    "--cluster-node-timeout", "5000"]))
            _redis_cli(nodes[0].port, "--cluster", "create",
                       *[f"{LOOPBACK}:{n.port}" for n in nodes], "--cluster-yes")
            cluster = cls(nodes)
            _wait_for(cluster._ready, timeout=30, what="redis cluster")
        except BaseException:
            for n in nodes:
                n.stop()
            raise
        return cluster

    def _ready(self) -> bool:
        for n in self.nodes:
            info = _redis_cli(n.port, "cluster", "info")
            if "cluster_state:ok" not in info or "cluster_slots_assigned:16384" not in info:
                return False
        return True

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()

    def __enter__(self) -> RedisCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def grpc_socket(component: str, port: int) -> str:
    """The Unix socket ``weed server`` opens beside ``component``'s gRPC port (port + 10000)."""
    return f"/tmp/seaweedfs-{component}-grpc-{port + 10000}.sock"


#: sun_path holds 108 bytes; a longer socket path cannot be bound.
_SUN_PATH_MAX = 107


def _socket_path(workdir: Path, name: str) -> Path:
    """A Unix socket path inside ``workdir`` (0700), or in a private temporary directory when that
    path would be too long to bind."""
    path = workdir / name
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        return path
    return Path(tempfile.mkdtemp(prefix="artifacts-weed-")) / name  # mkdtemp makes it 0700


@dataclass
class SeaweedS3:
    """``weed server -s3`` on loopback with one admin identity (SeaweedFS is open without identities).

    ``iam_writable`` enables the IAM API on the S3 port for creating users, keys and policies
    (the managed backend needs it). Only the S3 port answers without credentials of SeaweedFS's
    own: the master, volume server and filer HTTP ports and every gRPC port require mutual TLS
    with a certificate made for this run (``seaweed_security``), the process runs with umask 077
    (its Unix sockets, logs and data are private to this user), and the filer's and the gateway's
    local Unix sockets live in ``workdir`` (0700) instead of ``/tmp``.
    """

    s3_port: int
    workdir: Path
    proc: subprocess.Popen
    log: Path
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.s3_port}"

    @classmethod
    def start(cls, workdir: str | os.PathLike | None = None, *, iam_writable: bool = False,
              access_key: str | None = None, secret_key: str | None = None,
              buckets: tuple[str, ...] = (), ports: dict[str, int] | None = None) -> SeaweedS3:
        """``ports`` (master, volume, filer, s3) restarts on the same ports (the local stack's
        workspaces keep their endpoint); default: free ones."""
        from artifacts_core import seaweed_security

        workdir = Path(workdir or tempfile.mkdtemp(prefix="artifacts-weed-"))
        datadir = workdir / "data"
        datadir.mkdir(parents=True, exist_ok=True)
        workdir.chmod(0o700)
        # weed reads ./security.toml (its cwd is workdir): mTLS on every port but S3's.
        material = seaweed_security.make(workdir / "tls")
        (workdir / "security.toml").write_text(seaweed_security.security_toml(material))
        access_key = access_key or "AK" + secrets.token_hex(9).upper()
        secret_key = secret_key or secrets.token_urlsafe(30)
        config = workdir / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "artifacts-admin",
            "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}))
        config.chmod(0o600)
        ports = dict(ports) if ports else {name: free_port(grpc_offset=True)
                                           for name in ("master", "volume", "filer", "s3")}
        log = workdir / "weed.log"
        args = [
            find_binary("weed"), "server", f"-dir={datadir}", f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}",
            f"-master.port={ports['master']}", f"-volume.port={ports['volume']}",
            f"-filer.port={ports['filer']}", "-filer", "-s3", f"-s3.port={ports['s3']}",
            f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=512", "-volume.max=0", "-volume.preStopSeconds=0",
            f"-s3.iam.readOnly={'false' if iam_writable else 'true'}",
            f"-filer.localSocket={_socket_path(workdir, 'filer.sock')}",
            f"-s3.localSocket={_socket_path(workdir, 's3.sock')}",
        ]
        logf = os.fdopen(os.open(log, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600), "wb")  # the child owns it
        # Its glog files land in TMPDIR; its gRPC Unix sockets go to /tmp whatever TMPDIR says
        # (/tmp/seaweedfs-<component>-grpc-<port>.sock), private to this user through the umask.
        env = dict(os.environ, TMPDIR=str(workdir))
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                cwd=workdir, env=env, start_new_session=True, umask=0o077)
        logf.close()
        server = cls(s3_port=ports["s3"], workdir=workdir, proc=proc, log=log, access_key=access_key,
                     secret_key=secret_key, ports=ports)
        try:
            _wait_for(server._ready, timeout=90, what="SeaweedFS S3 gateway", proc=proc, log=log)
            for bucket in buckets:
                server.create_bucket(bucket)
        except BaseException:
            server.stop()
            raise
        return server


    def _ready(self) -> bool:
        # Ready when an authenticated ListBuckets succeeds (filer and volume server are up).
        return self._signed_request("GET", "/")[0] == 200

    def _signed_request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        import urllib.error
        import urllib.request

        import botocore.auth
        import botocore.awsrequest
        import botocore.credentials

        url = self.endpoint + path
        req = botocore.awsrequest.AWSRequest(method=method, url=url, data=body,
                                             headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
        creds = botocore.credentials.Credentials(self.access_key, self.secret_key)
        botocore.auth.S3SigV4Auth(creds, "s3", self.region).add_auth(req)
        prepared = urllib.request.Request(url, data=body or None, method=method,
                                          headers=dict(req.headers.items()))
        try:
            with urllib.request.urlopen(prepared, timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def create_bucket(self, bucket: str) -> None:
        status, body = self._signed_request("PUT", f"/{bucket}")
        if status not in (200, 409):
            raise RuntimeError(f"creating bucket {bucket!r} failed: HTTP {status} {body[:200]!r}")

    def stop(self) -> None:
        # weed can take over 10 s on SIGTERM; give it a short grace, then SIGKILL.
        stop_process(self.proc, grace=3)
        for name, port in self.ports.items():  # weed leaves its gRPC sockets behind in /tmp
            with contextlib.suppress(OSError):
                os.unlink(grpc_socket(name, port))

    def __enter__(self) -> SeaweedS3:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
