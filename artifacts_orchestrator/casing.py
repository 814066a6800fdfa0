"""The one naming rule of the HTTP API: requests in snake_case or camelCase, responses in snake_case.

The rule (docs/orchestrator.md, "Conventions"):

- a request body's field names, and query parameter names, may be written in snake_case (the
  canonical spelling: the OpenAPI description, the Python SDK, the CLI) or in camelCase (what
  JavaScript code and seed 003 write: ``tenantSlug``, ``runtimeId``, ``ttlSeconds``); the camelCase
  of ``a_b_c`` is ``aBC`` with each part after the first capitalised (``ttl_seconds`` ->
  ``ttlSeconds``);
- only names the API defines are translated: the values of free-form fields (a tenant's
  ``metadata``, the ``mount_ticket`` being exchanged, whose bytes are signed) reach the service
  verbatim;
- one field given in both spellings is refused (422 ``invalid_request``): there is no silent
  precedence;
- responses are always snake_case, whatever the request used (a client maps them if it wants to:
  the Node SDK keeps them as they are, as seed 003's ``const { mount_ticket } = ...`` reads them).

``to_snake(value, type_)`` applies the rule to a decoded JSON value by walking the msgspec type it
will be converted to (struct fields, optional and list members), so it never guesses at a key.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec
from msgspec import inspect as mi

from artifacts_orchestrator.errors import InvalidRequest


def camel(name: str) -> str:
    """``ttl_seconds`` -> ``ttlSeconds`` (a name without ``_`` is unchanged)."""
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


@functools.lru_cache(maxsize=256)
def _info(type_: Any) -> mi.Type:
    return mi.type_info(type_)


def to_snake(value: Any, type_: Any) -> Any:
    """``value`` (decoded JSON) with the camelCase names of ``type_``'s struct fields renamed to
    their snake_case ones, recursively; raises ``InvalidRequest`` when a field is given twice."""
    return _walk(value, _info(type_), "$")


def _walk(value: Any, t: mi.Type, where: str) -> Any:
    if isinstance(t, mi.StructType) and isinstance(value, dict):
        fields = {f.encode_name: f for f in t.fields}
        aliases = {camel(n): n for n in fields if camel(n) != n}
        out: dict[str, Any] = {}
        key: str  # a JSON object's keys are strings
        for key, item in value.items():
            name = aliases.get(key, key)
            if name in out:
                raise InvalidRequest(f"invalid request body: {name!r} and {camel(name)!r} are the same field "
                                     f"- at `{where}`; send one of them")
            f = fields.get(name)
            out[name] = _walk(item, f.type, f"{where}.{name}") if f is not None else item
        return out
    if isinstance(t, mi.UnionType):
        for member in t.types:  # Optional[Struct], Struct | list[...]: the member that fits the value
            if (isinstance(member, mi.StructType) and isinstance(value, dict)) or (
                    isinstance(member, (mi.ListType, mi.VarTupleType)) and isinstance(value, list)):
                return _walk(value, member, where)
        return value
    if isinstance(t, (mi.ListType, mi.VarTupleType)) and isinstance(value, list):
        return [_walk(v, t.item_type, f"{where}[{i}]") for i, v in enumerate(value)]
    return value  # scalars, and free-form dicts (their keys are the caller's, not the API's)


def decode(raw: bytes, type_: Any) -> Any:
    """A request body (JSON bytes) as ``type_`` under the naming rule."""
    value = msgspec.json.decode(raw)
    return msgspec.convert(to_snake(value, type_), type_)
