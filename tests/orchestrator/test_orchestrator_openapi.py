"""The OpenAPI description and the naming rule, on the real orchestrator (real HTTP, Redis, SeaweedFS).

- Every route the aiohttp app serves is described, and every described operation is served (the
  app and the description come from the same declarations, routing.py; this holds it).
- sdk/js/openapi.json, which the Node SDK's types are generated from, is what the server serves.
- Real answers, success and error, validate against the schemas they are described with (so the
  "every field of a response is present" promise of openapi.py is checked, not assumed).
- casing.py's rule: requests in snake_case or camelCase, free-form values verbatim, both spellings
  refused, responses in snake_case.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import msgspec
import pytest
from orchestrator_stack import (  # the orchestrator's own fixtures: one real stack per module
    _reset_clock,  # noqa: F401 - autouse fixture
    create_and_format,
)

from artifacts_orchestrator import casing, openapi
from artifacts_orchestrator.app import served_routes
from artifacts_orchestrator.errors import InvalidRequest
from artifacts_orchestrator.routing import ROUTE_TABLE

pytestmark = [pytest.mark.redis, pytest.mark.s3]

COMMITTED = Path(__file__).resolve().parents[2] / "sdk" / "js" / "openapi.json"


def http(stack, method: str, path: str, body: Any = None, key: str = "") -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    req = urllib.request.Request(stack["server"].url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


@pytest.fixture(scope="module")
def spec(stack) -> dict:
    status, doc = http(stack, "GET", "/openapi.json")
    assert status == 200
    return doc


# -- a small validator for the JSON Schema subset msgspec emits --------------------------------------


def validate(value: Any, schema: dict, doc: dict, where: str = "$") -> None:
    if "$ref" in schema:
        return validate(value, doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]], doc, where)
    if "anyOf" in schema:
        errors = []
        for option in schema["anyOf"]:
            try:
                return validate(value, option, doc, where)
            except AssertionError as e:
                errors.append(str(e))
        raise AssertionError(f"{where}: {value!r} matches none of {errors}")
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
        return None
    kind = schema.get("type")
    checks = {"string": str, "boolean": bool, "null": type(None), "array": list, "object": dict}
    if kind in ("integer", "number"):
        assert isinstance(value, int if kind == "integer" else (int, float)) and not isinstance(value, bool), \
            f"{where}: {value!r} is not {kind}"
    elif kind is not None:
        assert isinstance(value, checks[kind]), f"{where}: {value!r} is not {kind}"
    if kind == "array":
        for i, item in enumerate(value):
            validate(item, schema.get("items", {}), doc, f"{where}[{i}]")
    if kind == "object":
        props = schema.get("properties", {})
        missing = set(schema.get("required", ())) - set(value)
        assert not missing, f"{where}: missing {sorted(missing)}"
        extra = schema.get("additionalProperties", True)
        for k, v in value.items():
            if k in props:
                validate(v, props[k], doc, f"{where}.{k}")
            elif extra is False:
                raise AssertionError(f"{where}: unexpected {k!r}")
            elif isinstance(extra, dict):
                validate(v, extra, doc, f"{where}.{k}")
    return None


def checked(spec: dict, stack, method: str, path: str, template: str, body: Any = None, key: str = "") -> Any:
    """Calls the real server and validates its answer against the operation's description."""
    status, answer = http(stack, method, path, body, key)
    op = spec["paths"][template][method.lower()]
    response = op["responses"].get(str(status)) or op["responses"]["default"]
    if status >= 400:
        assert "default" in op["responses"] and response is op["responses"]["default"]
    validate(answer, response["content"]["application/json"]["schema"], spec, f"{method} {template} -> {status}")
    return status, answer


# -- the description and the app -------------------------------------------------------------------


def test_every_served_route_is_described_and_every_description_is_served(stack, spec):
    app = stack["server"].app
    served = {(r.method, r.resource.canonical) for r in app.router.routes()}
    described = {(m.upper(), path) for path, ops in spec["paths"].items() for m in ops}
    assert served == described
    assert len(served) == len(app[ROUTE_TABLE]) >= 28
    for r in app.router.routes():  # the router runs exactly the declared handler
        assert app[ROUTE_TABLE][(r.method, r.resource.canonical)].handler is r.handler
    ids = [op["operationId"] for ops in spec["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    assert spec == msgspec.json.decode(msgspec.json.encode(openapi.document(served_routes(platform=True))))


def test_sdk_js_openapi_json_is_what_the_server_serves(spec):
    committed = json.loads(COMMITTED.read_text())
    assert committed == spec, ("sdk/js/openapi.json is out of date: run `python -m artifacts_orchestrator openapi "
                               "--out sdk/js/openapi.json` and `npm run generate` in sdk/js, and commit both")


def test_the_description_says_who_may_call_and_what_is_safe_to_repeat(spec):
    ops = {op["operationId"]: op for ops in spec["paths"].values() for op in ops.values()}
    assert ops["exchangeMountTicket"]["security"] == [] and ops["listTicketKeys"]["security"] == []
    assert ops["createAccount"]["security"] == [{"adminToken": []}]
    assert ops["createMountTicket"]["security"] == [{"apiKey": []}]
    assert not ops["createMountTicket"]["x-idempotent"] and not ops["exchangeMountTicket"]["x-idempotent"]
    assert ops["revokeAccessGrants"]["x-idempotent"] and ops["deleteWorkspace"]["x-idempotent"]
    assert ops["createMountTicket"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CreateTicketRequest"}
    statuses = spec["components"]["schemas"]["Error"]["x-error-statuses"]
    assert statuses["ticket_used"] == 409 and statuses["workspace_not_found"] == 404
    assert "orchestrator_unavailable" not in statuses  # the client's own code, never sent


def test_real_answers_validate_against_their_descriptions(stack, spec, api, monkeypatch):
    key = api._api_key
    create_and_format(api, "described", monkeypatch)
    ws = f"{api.handle}/described"
    checked(spec, stack, "GET", "/whoami", "/whoami", key=key)
    checked(spec, stack, "GET", "/workspaces", "/workspaces", key=key)
    checked(spec, stack, "GET", f"/workspaces/{ws}", "/workspaces/{handle}/{name}", key=key)
    checked(spec, stack, "GET", f"/workspaces/{ws}/inspect", "/workspaces/{handle}/{name}/inspect", key=key)
    checked(spec, stack, "POST", "/tenants", "/tenants", {"slug": "acme", "metadata": {"a": [1]}}, key=key)
    checked(spec, stack, "GET", "/tenants", "/tenants", key=key)
    status, grant = checked(spec, stack, "POST", "/grants", "/grants",
                            {"workspace": ws, "tenant_slug": "acme", "mode": "ro"}, key=key)
    assert status == 201 and grant["runtime_id"] is None and grant["expires_at"] is None
    checked(spec, stack, "GET", "/grants?tenant=acme", "/grants", key=key)
    _, issued = checked(spec, stack, "POST", "/mount-tickets", "/mount-tickets",
                        {"tenant_slug": "acme", "runtime_id": "r1", "workspace": ws, "mode": "ro",
                         "ttl_seconds": 60}, key=key)
    status, _ = checked(spec, stack, "POST", "/mount-tickets/exchange", "/mount-tickets/exchange",
                        {"mount_ticket": issued["mount_ticket"], "host": "h"})
    assert status == 201
    checked(spec, stack, "GET", f"/workspaces/{ws}/sessions", "/workspaces/{handle}/{name}/sessions", key=key)
    checked(spec, stack, "GET", "/mount-tickets/keys", "/mount-tickets/keys")
    checked(spec, stack, "POST", "/grants/revoke", "/grants/revoke", {"tenant_slug": "acme"}, key=key)
    checked(spec, stack, "GET", "/keys", "/keys", key=key)
    # Errors too: the one Error schema, with the documented status for its code.
    statuses = spec["components"]["schemas"]["Error"]["x-error-statuses"]
    for method, path, template, body, k in (
            ("GET", "/workspaces/~/nope", "/workspaces/{handle}/{name}", None, key),
            ("POST", "/mount-tickets/exchange", "/mount-tickets/exchange",
             {"mount_ticket": issued["mount_ticket"]}, ""),
            ("POST", "/tenants", "/tenants", {"slug": "acme"}, key),
            ("GET", "/tenants", "/tenants", None, "")):
        status, err = checked(spec, stack, method, path, template, body, k)
        assert statuses[err["code"]] == status, err
    status, err = checked(spec, stack, "POST", "/workspaces", "/workspaces", {"name": "described"}, key=key)
    assert err["code"] == "workspace_exists" and err["existing"]["name"] == "described"


# -- the naming rule ---------------------------------------------------------------------------------


def _keys(value: Any, skip: tuple[str, ...] = ("metadata",)) -> set[str]:
    out: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            out.add(k)
            if k not in skip:
                out |= _keys(v, skip)
    elif isinstance(value, list):
        for v in value:
            out |= _keys(v, skip)
    return out


def test_requests_take_camel_case_names_and_responses_stay_snake_case(stack, api, monkeypatch):
    key = api._api_key
    create_and_format(api, "camel", monkeypatch)
    ws = f"{api.handle}/camel"
    status, tenant = http(stack, "POST", "/tenants", {"slug": "acme", "externalId": "cus_1",
                                                       "metadata": {"planTier": "pro", "plan_tier": 1}}, key)
    assert status == 201, tenant
    assert tenant["external_id"] == "cus_1" and tenant["metadata"] == {"planTier": "pro", "plan_tier": 1}
    status, grant = http(stack, "POST", "/grants", {"workspace": ws, "tenantSlug": "acme", "runtimeId": "r1",
                                                    "ttlSeconds": 3600, "mode": "ro"}, key)
    assert status == 201 and grant["runtime_id"] == "r1" and grant["mode"] == "ro" and grant["expires_at"]
    # Seed 003's own call, as its JavaScript writes it.
    status, issued = http(stack, "POST", "/mount-tickets", {"tenantSlug": "acme", "runtimeId": "r1",
                                                            "workspace": ws, "mode": "ro", "ttlSeconds": 3600}, key)
    assert status == 201, issued
    assert {"mount_ticket", "ticket_id", "expires_at"} <= set(issued)
    # A free-form value crosses verbatim: the signed ticket still verifies under a camelCase key.
    status, session = http(stack, "POST", "/mount-tickets/exchange",
                           {"mountTicket": issued["mount_ticket"], "mountpoint": "/mnt/w"})
    assert status == 201, session
    assert session["runtime_id"] == "r1" and session["mount"]["session"]["mountpoint"] == "/mnt/w"
    status, sess = http(stack, "POST", f"/workspaces/{ws}/sessions", {"ttlSeconds": 120, "mode": "ro"}, key)
    assert status == 201 and sess["session"]["expires_at"] - sess["session"]["created_at"] == pytest.approx(120, abs=2)
    status, listed = http(stack, "GET", "/grants?runtimeId=r1&includeRevoked=true", key=key)
    assert status == 200 and [g["id"] for g in listed["grants"]] == [grant["id"]]
    status, revoked = http(stack, "POST", "/grants/revoke", {"tenantSlug": "acme", "runtimeId": "r1"}, key)
    assert status == 200 and revoked["sessions_revoked"] == 1
    for answer in (tenant, grant, issued, session, sess, listed, revoked):
        assert not [k for k in _keys(answer) if k != k.lower()], answer  # responses: snake_case only


def test_one_field_in_both_spellings_is_refused_and_changes_nothing(stack, api):
    key = api._api_key
    status, err = http(stack, "POST", "/tenants", {"slug": "dup", "external_id": "a", "externalId": "b"}, key)
    assert status == 422 and err["code"] == "invalid_request"
    assert "'external_id' and 'externalId'" in err["message"] and "send one of them" in err["message"]
    assert http(stack, "GET", "/tenants/dup", key=key)[0] == 404
    status, err = http(stack, "POST", "/tenants", {"slug": "dup", "externalIdd": "b"}, key)
    assert status == 422 and "unknown field `externalIdd`" in err["message"]
    status, err = http(stack, "GET", "/grants?runtime_id=a&runtimeId=b", key=key)
    assert status == 422 and "'runtime_id' and 'runtimeId'" in err["message"]
    status, err = http(stack, "POST", "/tenants", {"slug": 5}, key)
    assert status == 422 and "$.slug" in err["message"]  # msgspec's path, as before


class Inner(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    max_bytes: int
    extra_data: dict[str, Any] = {}


class Outer(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    tenant_slug: str
    inner: Inner | None = None
    items: list[Inner] = []


def test_to_snake_walks_the_declared_types_only():
    assert casing.camel("ttl_seconds") == "ttlSeconds" and casing.camel("slug") == "slug"
    assert casing.camel("a_b_c") == "aBC"
    raw = {"tenantSlug": "t", "inner": {"maxBytes": 1, "extraData": {"keepMe": {"deep_key": 1}}},
           "items": [{"maxBytes": 2}, {"max_bytes": 3}]}
    out = casing.decode(json.dumps(raw).encode(), Outer)
    assert out == Outer(tenant_slug="t", inner=Inner(max_bytes=1, extra_data={"keepMe": {"deep_key": 1}}),
                        items=[Inner(max_bytes=2), Inner(max_bytes=3)])
    assert casing.decode(b'{"tenant_slug": "t", "inner": null}', Outer).inner is None
    with pytest.raises(InvalidRequest, match=r"'max_bytes' and 'maxBytes' .* at `\$.items\[0\]`"):
        casing.to_snake({"tenant_slug": "t", "items": [{"max_bytes": 1, "maxBytes": 2}]}, Outer)
