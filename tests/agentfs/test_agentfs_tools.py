"""Tool definitions against the schema rules OpenAI function calling and Anthropic tool use
document, and the ``call(name, arguments)`` dispatcher (real servers for the calls)."""

import json
import re

import jsonschema
import pytest

from artifacts_agentfs import tools
from artifacts_agentfs.api import AgentFS

NAME_RULE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")  # OpenAI function names and Anthropic tool names
#: Keywords OpenAI's strict mode does not accept (we enforce these bounds ourselves).
STRICT_FORBIDDEN = {"default", "minLength", "maxLength", "pattern", "format", "minimum", "maximum",
                    "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems", "maxItems",
                    "uniqueItems", "patternProperties", "minProperties", "maxProperties", "oneOf"}
SEED_NAMES = {"readFile", "writeFile", "appendFile", "deleteFile", "copyFile", "moveFile", "mkdir",
              "rmdir", "readdir", "exists", "stat"}


def _walk(schema):
    yield schema
    for value in schema.get("properties", {}).values():
        yield from _walk(value)
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"])


def test_names_are_the_seed_operations_plus_edit_glob_grep_history_changes_and_valid_everywhere():
    names = [t.name for t in tools.TOOLS]
    assert len(names) == len(set(names))
    assert set(names) == SEED_NAMES | {"editFile", "glob", "grep", "checkpoint", "restore", "diff", "changes"}
    for t in tools.TOOLS:
        assert NAME_RULE.match(t.name)
        assert 0 < len(t.description) <= tools.MAX_DESCRIPTION
        assert callable(getattr(AgentFS, t.method))


@pytest.mark.parametrize("strict", [True, False])
def test_openai_function_definitions_follow_the_documented_rules(strict):
    defs = tools.openai_tools(strict=strict, exec=True)
    assert len(defs) == len(tools.TOOLS) + len(tools.EXEC_TOOLS)
    for d in defs:
        assert d["type"] == "function" and set(d["function"]) == {"name", "description", "parameters", "strict"}
        params = d["function"]["parameters"]
        jsonschema.Draft202012Validator.check_schema(params)
        assert params["type"] == "object" and params["additionalProperties"] is False
        assert set(params["required"]) <= set(params["properties"])
        if strict:
            assert set(params["required"]) == set(params["properties"])  # strict: all listed
            for node in _walk(params):
                assert not STRICT_FORBIDDEN & set(node), (d["function"]["name"], node)
                if node.get("type") == "object":
                    assert node.get("additionalProperties") is False
        spec = tools.ALL_BY_NAME[d["function"]["name"]]
        for p in spec.params:  # optional parameters are nullable in strict mode, and only there
            t = params["properties"][p.name]["type"]
            assert (isinstance(t, list) and "null" in t) == (strict and not p.required)
    flat = tools.openai_responses_tools()
    assert all(f["type"] == "function" and NAME_RULE.match(f["name"]) and f["strict"] for f in flat)


def test_anthropic_tool_definitions_follow_the_documented_rules():
    for d in tools.anthropic_tools(exec=True):
        assert set(d) == {"name", "description", "input_schema"}
        assert NAME_RULE.match(d["name"]) and d["description"]
        schema = d["input_schema"]
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["type"] == "object"
        assert set(schema["required"]) <= set(schema["properties"])
        required = {p.name for p in tools.ALL_BY_NAME[d["name"]].params if p.required}
        assert set(schema["required"]) == required


def test_output_schemas_are_objects_and_valid():
    for t in tools.tool_set(exec=True):
        schema = tools.output_schema(t)
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["type"] == "object" and schema["properties"]


def test_bash_is_listed_only_when_the_host_enables_it_and_refused_otherwise(vol):
    from artifacts_agentfs import mcp_server

    assert "bash" not in {d["name"] for d in tools.anthropic_tools()}
    assert "bash" not in {d["function"]["name"] for d in tools.openai_tools()}
    assert "bash" in {d["name"] for d in tools.anthropic_tools(exec=True)}
    listed = {t.name: t for t in mcp_server.mcp_tools(exec=True)}
    assert listed["bash"].annotations.destructive_hint and not listed["bash"].annotations.read_only_hint
    assert "bash" not in {t.name for t in mcp_server.mcp_tools()}
    assert "bash" not in {t.name for t in mcp_server.mcp_tools(read_only=True, exec=True)}
    res = AgentFS(vol).call("bash", {"command": "echo hi"})  # no executor: code execution is off
    assert res["ok"] is False and res["error"]["code"] == "EPERM" and res["error"]["hint"]


def test_dispatcher_round_trip_and_structured_errors(vol):
    fs = AgentFS(vol)
    ok = fs.call("writeFile", {"path": "a.txt", "content": "x"})
    assert ok == {"ok": True, "result": {"path": "a.txt", "size": 1, "created": True,
                                         "version": ok["result"]["version"]}}
    # OpenAI strict mode sends every parameter, null for the optional ones, as a JSON string
    args = {p.name: None for p in tools.BY_NAME["readFile"].params}
    args["path"] = "a.txt"
    res = fs.call("readFile", json.dumps(args))
    assert res["ok"] and res["result"]["content"] == "x"
    assert fs.call("exists", {"path": "a.txt"}) == {"ok": True, "result": {"path": "a.txt", "exists": True}}
    cases = [
        ("nope", {}, "EINVAL"),
        ("readFile", {"path": "a.txt", "bogus": 1}, "EINVAL"),
        ("readFile", {}, "EINVAL"),
        ("readFile", {"path": 5}, "EINVAL"),
        ("readFile", {"path": "a.txt", "offset": True}, "EINVAL"),
        ("readFile", {"path": "a.txt", "encoding": "latin-1"}, "EINVAL"),
        ("readFile", "{not json", "EINVAL"),
        ("readFile", '{"path": ' + "[" * 30_000 + "]" * 30_000 + "}", "EINVAL"),  # was a RecursionError
        ("readFile", "[]", "EINVAL"),
        ("readFile", 7, "EINVAL"),
        ("readFile", {"path": "missing.txt"}, "ENOENT"),
        ("readFile", {"path": "a" * (1 << 20)}, "ENAMETOOLONG"),
        ("deleteFile", {"path": "/"}, "EPERM"),
        ("writeFile", {"path": "a.txt", "content": "y", "if_version": "1-1"}, "ECONFLICT"),
    ]
    for name, arguments, code in cases:
        res = fs.call(name, arguments)
        assert res["ok"] is False, (name, arguments)
        err = res["error"]
        assert err["code"] == code, (name, arguments, err)
        assert set(err) == {"code", "message", "path", "hint"} and err["hint"] and err["message"]
