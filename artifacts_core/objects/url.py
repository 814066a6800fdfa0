"""Storage URLs: ``s3://bucket[/prefix]?endpoint=…&region=…``, ``file:///path``, ``memory://name``.

Owns the translation of a storage URL (DESIGN.md §9) into an :class:`ObjectStore`
(:func:`store_from_url`) and the redaction of URLs for logs (:func:`redact_url`).

Moving parts: one parser per scheme; credentials resolved in one place (explicit arguments, then
``ARTIFACTS_S3_ACCESS_KEY_ID`` / ``ARTIFACTS_S3_SECRET_ACCESS_KEY`` / ``ARTIFACTS_S3_SESSION_TOKEN``;
with neither, botocore's own chain); region from the URL, then ``ARTIFACTS_S3_REGION``,
``AWS_REGION``, ``AWS_DEFAULT_REGION``, then ``us-east-1``. ``memory://name`` stores are shared by
name within the process while someone holds them, so a volume opened twice sees one store.

Invariant: secrets never travel in a URL. A URL carrying userinfo or a secret-looking query
parameter is refused, and no error message repeats the URL's query values or userinfo.
"""

from __future__ import annotations

import os
import re
import weakref
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from artifacts_core.errors import ConfigError, InvalidArgument
from artifacts_core.objects.base import ObjectStore
from artifacts_core.objects.local import LocalObjectStore
from artifacts_core.objects.memory import MemoryObjectStore
from artifacts_core.objects.prefix import PrefixedObjectStore, normalize_prefix
from artifacts_core.objects.s3 import S3ObjectStore

DEFAULT_REGION = "us-east-1"
REGION_ENV = ("ARTIFACTS_S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION")
ACCESS_KEY_ENV = "ARTIFACTS_S3_ACCESS_KEY_ID"
SECRET_KEY_ENV = "ARTIFACTS_S3_SECRET_ACCESS_KEY"
SESSION_TOKEN_ENV = "ARTIFACTS_S3_SESSION_TOKEN"

#: The query parameters an ``s3://`` URL may carry.
S3_PARAMS = frozenset({"endpoint", "region"})

#: Query parameter names whose values are secrets (or may be): never kept, never echoed.
_SECRET_PARAM = re.compile(r"secret|token|passw|key|signature|credential|auth|sig$", re.IGNORECASE)

#: S3's bucket naming rules (3-63 characters of lowercase letters, digits, dots and hyphens),
#: relaxed to allow underscores and capitals, which SeaweedFS and MinIO accept.
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]$")

_memory_stores: weakref.WeakValueDictionary[str, MemoryObjectStore] = weakref.WeakValueDictionary()


def redact_url(url: str) -> str:
    """``url`` fit for a log line: userinfo dropped, secret-looking query values replaced."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        query = [(k, "REDACTED" if _SECRET_PARAM.search(k) else redact_url(v) if "@" in v else v)
                 for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        return urlunsplit((parts.scheme, host, parts.path, urlencode(query, safe="/:"), ""))
    except ValueError:
        return "<unparsable URL>"


def store_from_url(url: str, *, access_key: str | None = None, secret_key: str | None = None,
                   session_token: str | None = None) -> ObjectStore:
    """The object store a storage URL names (wrapped in the prefix view when it has a prefix)."""
    if not isinstance(url, str) or not url:
        raise InvalidArgument("the storage URL is empty",
                              hint="use s3://bucket[/prefix]?endpoint=…, file:///path or memory://name")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is what validates it
    except ValueError:
        raise InvalidArgument(f"malformed storage URL {redact_url(url)}") from None
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"storage URL {redact_url(url)} carries credentials",
                          hint=f"credentials are never put in URLs; set {ACCESS_KEY_ENV} and {SECRET_KEY_ENV}")
    scheme = parts.scheme.lower()
    if scheme == "s3":
        store: ObjectStore = _s3_store(url, parts, access_key, secret_key, session_token)
    elif scheme == "file":
        store = _file_store(url, parts)
    elif scheme == "memory":
        store = _memory_store(url, parts)
    else:
        raise InvalidArgument(f"unsupported storage URL scheme {parts.scheme!r}",
                              hint="use s3://bucket[/prefix]?endpoint=…, file:///path or memory://name")
    return store


def _query(url: str, query: str, allowed: frozenset[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if _SECRET_PARAM.search(name):
            raise ConfigError(f"storage URL {redact_url(url)} carries a secret in parameter {name!r}",
                              hint=f"credentials are never put in URLs; set {ACCESS_KEY_ENV} and "
                                   f"{SECRET_KEY_ENV}")
        if name not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise InvalidArgument(f"unknown parameter {name!r} in storage URL {redact_url(url)}",
                                  hint=f"known parameters: {known}")
        if name in params:
            raise InvalidArgument(f"parameter {name!r} appears twice in storage URL {redact_url(url)}")
        params[name] = value
    return params


def _prefixed(store: ObjectStore, path: str) -> ObjectStore:
    prefix = unquote(path.lstrip("/"))
    return PrefixedObjectStore(store, normalize_prefix(prefix)) if prefix else store


def _s3_store(url: str, parts, access_key: str | None, secret_key: str | None,
              session_token: str | None) -> ObjectStore:
    bucket = parts.netloc  # not .hostname, which lowercases
    if not _BUCKET.match(bucket):
        raise InvalidArgument(f"invalid bucket in storage URL {redact_url(url)}",
                              hint="a bucket name is 3-63 letters, digits, dots, hyphens or underscores")
    params = _query(url, parts.query, S3_PARAMS)
    endpoint = params.get("endpoint") or None
    if endpoint is not None:
        ep = urlsplit(endpoint)
        if ep.scheme not in ("http", "https") or not ep.hostname or ep.username or ep.password:
            raise InvalidArgument(f"invalid endpoint in storage URL {redact_url(url)}",
                                  hint="the endpoint is http(s)://host[:port] without credentials")
    region = params.get("region") or next((os.environ[v] for v in REGION_ENV if os.environ.get(v)),
                                          DEFAULT_REGION)
    if access_key is None and secret_key is None:
        access_key = os.environ.get(ACCESS_KEY_ENV) or None
        secret_key = os.environ.get(SECRET_KEY_ENV) or None
        session_token = session_token or os.environ.get(SESSION_TOKEN_ENV) or None
    if (access_key is None) != (secret_key is None):
        raise ConfigError("S3 credentials are incomplete: an access key id needs its secret key",
                          hint=f"set both {ACCESS_KEY_ENV} and {SECRET_KEY_ENV}")
    store = S3ObjectStore(bucket, endpoint=endpoint, region=region, access_key=access_key,
                          secret_key=secret_key, session_token=session_token)
    return _prefixed(store, parts.path)


def _file_store(url: str, parts) -> ObjectStore:
    if parts.netloc not in ("", "localhost"):
        raise InvalidArgument(f"file URLs name a local path: file:///absolute/path, not {redact_url(url)}")
    _query(url, parts.query, frozenset())
    path = unquote(parts.path)
    if not path.startswith("/") or "\0" in path:
        raise InvalidArgument(f"file URL {redact_url(url)} needs an absolute path")
    return LocalObjectStore(path)


def _memory_store(url: str, parts) -> ObjectStore:
    name = parts.netloc
    if not name:
        raise InvalidArgument(f"memory URL {redact_url(url)} needs a name: memory://name")
    _query(url, parts.query, frozenset())
    store = _memory_stores.get(name)
    if store is None:
        store = _memory_stores[name] = MemoryObjectStore(name)
    return _prefixed(store, parts.path)
