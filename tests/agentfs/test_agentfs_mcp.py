"""The MCP server end to end: the official SDK's client talks to ``python -m
artifacts_agentfs.mcp_server`` over a real stdio pipe, on the real Redis and SeaweedFS."""

import asyncio
import json
import os
import sys

import jsonschema
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from artifacts_agentfs import tools
from artifacts_agentfs.mcp_server import load_settings
from artifacts_core.volume import format_volume


@pytest.fixture
def settings_file(redis_url, storage_url, key_prefix, tmp_path):
    format_volume(redis_url, storage_url, "mcpvol", key_prefix=key_prefix, require_aof=False, trash_days=0)
    path = tmp_path / "agentfs.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"meta_url": redis_url, "storage_url": storage_url, "key_prefix": key_prefix,
                   "require_aof": False}, f)
    return path


def _params(settings_file, *extra) -> StdioServerParameters:
    env = {k: os.environ[k] for k in ("ARTIFACTS_S3_ACCESS_KEY_ID", "ARTIFACTS_S3_SECRET_ACCESS_KEY")}
    env["ARTIFACTS_AGENTFS_SETTINGS"] = str(settings_file)  # the secret-bearing file: named, not in argv
    return StdioServerParameters(command=sys.executable, args=["-m", "artifacts_agentfs.mcp_server", *extra],
                                 env=env, cwd=os.getcwd())


async def _session(params, body):
    with open(os.devnull, "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await body(session)


def test_mcp_tools_listed_with_schemas_and_annotations_and_called_over_stdio(settings_file):
    async def body(session):
        listed = (await session.list_tools()).tools
        by_name = {t.name: t for t in listed}
        assert set(by_name) == {t.name for t in tools.TOOLS}
        for spec in tools.TOOLS:
            t = by_name[spec.name]
            assert t.input_schema == tools.input_schema(spec)
            assert t.output_schema["type"] == "object"
            jsonschema.Draft202012Validator.check_schema(t.output_schema)
            assert t.annotations.read_only_hint is spec.read_only
            assert t.annotations.open_world_hint is False
            if spec.read_only:
                assert t.annotations.destructive_hint is False
        assert by_name["deleteFile"].annotations.destructive_hint is True
        assert by_name["rmdir"].annotations.destructive_hint is True

        w = await session.call_tool("writeFile", {"path": "notes/a.md", "content": "hello\n"})
        assert not w.is_error and w.structured_content["created"] is True
        a = await session.call_tool("appendFile", {"path": "notes/a.md", "content": "world\n"})
        assert a.structured_content["offset"] == 6
        r = await session.call_tool("readFile", {"path": "notes/a.md"})
        assert r.structured_content["content"] == "hello\nworld\n"
        assert json.loads(r.content[0].text)["content"] == "hello\nworld\n"
        for name, args in [("stat", {"path": "notes/a.md"}), ("readdir", {"path": "notes"}),
                           ("exists", {"path": "nope"}), ("glob", {"pattern": "**/*.md"}),
                           ("grep", {"pattern": "wor"})]:
            res = await session.call_tool(name, args)
            assert not res.is_error, res
            jsonschema.validate(res.structured_content, by_name[name].output_schema)
        bad = await session.call_tool("readFile", {"path": "../../etc/passwd"})
        assert bad.is_error and bad.structured_content["error"]["code"] == "EACCES"
        assert bad.structured_content["error"]["hint"]
        missing = await session.call_tool("readFile", {"path": "nope.txt"})
        assert missing.is_error and missing.structured_content["error"]["code"] == "ENOENT"
        assert missing.structured_content["error"]["path"] == "nope.txt"  # which path, for the model
        unknown = await session.call_tool("chmod", {"path": "x"})
        assert unknown.is_error and unknown.structured_content["error"]["code"] == "EINVAL"
        return True

    assert asyncio.run(_session(_params(settings_file), body))


def test_mcp_read_only_server_lists_only_read_tools_and_refuses_writes(settings_file):
    async def body(session):
        names = {t.name for t in (await session.list_tools()).tools}
        assert names == {t.name for t in tools.TOOLS if t.read_only}
        for name, args in (("writeFile", {"path": "x", "content": "y"}), ("rmdir", {"path": "d"})):
            res = await session.call_tool(name, args)
            error = res.structured_content["error"]
            assert res.is_error and error["code"] == "EROFS", error
            assert error["message"] == f"{name} is not available on a read-only workspace"
            assert "retry" not in error["hint"].lower() and "readFile" in error["hint"]
        missing = await session.call_tool("stat", {"path": "nope/deeper.txt"})
        assert missing.structured_content["error"]["path"] == "nope/deeper.txt"
        return True

    assert asyncio.run(_session(_params(settings_file, "--read-only"), body))


def test_settings_file_readable_by_others_is_refused(settings_file):
    os.chmod(settings_file, 0o644)
    with pytest.raises(PermissionError):
        load_settings(str(settings_file), env={})
    os.chmod(settings_file, 0o600)
    assert load_settings(str(settings_file), env={}).key_prefix.startswith("{u_")


def test_mcp_calls_tag_their_events_with_the_tool_call_id(settings_file):
    """A ``tools/call`` whose ``_meta`` names the framework's tool-call id: the journal events of
    that call carry it; a call without one carries none."""
    async def body(session):
        w = await session.call_tool("writeFile", {"path": "t.md", "content": "x"}, meta={"toolCallId": "toolu_42"})
        assert not w.is_error
        await session.call_tool("writeFile", {"path": "u.md", "content": "y"})
        r = await session.call_tool("changes", {})
        return r.structured_content["events"]

    events = asyncio.run(_session(_params(settings_file), body))
    assert {e["path"]: e.get("tag") for e in events} == {"t.md": "toolu_42", "u.md": None}
