"""SeaweedFS's internal ports closed to everyone but SeaweedFS itself (DESIGN.md §10).

``weed server`` listens on eight loopback TCP ports: the master, volume server, filer and S3
gateway, each with an HTTP port and a gRPC port (HTTP port + 10000). Loopback is no barrier
between local users: without this module, any local account could read every object through
the filer's HTTP port (``GET /buckets/<bucket>/<key>``), write into any prefix, list
``/etc/iam/identities/`` (every live session's S3 secret), and use the master's and volume
server's HTTP APIs; the gRPC ports answer the same questions in another protocol. Only the S3
gateway's HTTP port checks who is asking (IAM signatures).

So every port but that one requires **mutual TLS** with a certificate only this server holds:

- ``make(directory)`` creates, in a 0700 directory, a throw-away CA, signs ONE certificate (server
  and client use, CN ``artifacts-weed``, SAN 127.0.0.1 and localhost) with it, and forgets the CA's
  private key: no other certificate can ever chain to that CA. The key is written 0600.
- ``security_toml(...)`` is the ``security.toml`` that makes ``weed`` use it: ``[grpc.*]`` for the
  four gRPC servers and their clients (gRPC TLS in SeaweedFS is always mutual), ``[https.master]``,
  ``[https.volume]``, ``[https.filer]`` with ``ca`` set (SeaweedFS then requires and verifies a
  client certificate on those HTTP ports), and ``[https.client]`` so the components, and the S3
  gateway reading blocks from the volume server, present the certificate to each other.

JWT signing (``[jwt.signing]``, ``[jwt.filer_signing]``) was the other route. It protects reads
and writes of volume and filer data, but not the master's HTTP API (``/dir/lookup`` hands out read
tokens, ``/dir/assign`` write tokens), the volume server's ``/status``, nor any gRPC port (the filer's
``ListEntries`` and ``LookupDirectoryEntry`` return small files, the IAM identities among them, inline),
so it would still need mTLS for those; mTLS alone covers all of them with one mechanism.

Cost: ``benchmarks.bench_chunk --endpoint`` run against a plain ``weed server`` and this one,
both up at once (256 MiB, 4 MiB objects, 20 requests in flight): bare aiobotocore GET 405 (mTLS)
vs 406 MiB/s, PUT 95 vs 99 MiB/s — within run-to-run noise (the same mTLS server gave 340 MiB/s
GET one round earlier).

The certificate is remade at every start of the server (its files are replaced), so nothing here
has to be renewed: the validity only has to outlast one run of the server.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

#: One run of a local stack may last long; the certificate is remade at every start.
VALIDITY = datetime.timedelta(days=3650)
#: Clock skew allowance for the notBefore date.
BACKDATE = datetime.timedelta(minutes=5)
#: gRPC servers SeaweedFS starts in ``weed server -filer -s3`` (and their clients).
GRPC_COMPONENTS = ("master", "volume", "filer", "s3", "client")
#: HTTP servers that are internal: only SeaweedFS's own components talk to them.
HTTPS_COMPONENTS = ("master", "volume", "filer")


@dataclass(frozen=True)
class Material:
    ca: Path
    cert: Path
    key: Path


def make(directory: Path) -> Material:
    """A fresh CA certificate and one certificate signed by it, in ``directory`` (0700)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())  # never written: nothing else can be signed
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "artifacts-weed-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - BACKDATE).not_valid_after(now + VALIDITY)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, encipher_only=False,
                                       decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "artifacts-weed")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(now + VALIDITY)
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    out = Material(ca=directory / "ca.pem", cert=directory / "weed.pem", key=directory / "weed.key")
    _write(out.ca, ca.public_bytes(serialization.Encoding.PEM))
    _write(out.cert, cert.public_bytes(serialization.Encoding.PEM))
    _write(out.key, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return out


def security_toml(m: Material) -> str:
    """The ``security.toml`` that requires ``m``'s certificate on every internal port."""
    lines = ["# Written by artifacts_core.seaweed_security: mutual TLS on every internal port.",
             "[grpc]", f'ca = "{m.ca}"']
    for comp in GRPC_COMPONENTS:
        lines += [f"[grpc.{comp}]", f'cert = "{m.cert}"', f'key = "{m.key}"']
    lines += ["[https.client]", "enabled = true", f'cert = "{m.cert}"', f'key = "{m.key}"', f'ca = "{m.ca}"']
    for comp in HTTPS_COMPONENTS:
        lines += [f"[https.{comp}]", f'cert = "{m.cert}"', f'key = "{m.key}"', f'ca = "{m.ca}"']
    # The filer's web UI and directory listings in GET answers: off (nobody else may reach the
    # port anyway; this is the second lock on the same door).
    lines += ["[filer.expose_directory_metadata]", "enabled = false"]
    return "\n".join(lines) + "\n"


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
