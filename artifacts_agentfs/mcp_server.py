"""The MCP server: a workspace's files as MCP tools over stdio (official ``mcp`` Python SDK).

Run it as ``python -m artifacts_agentfs.mcp_server`` (``artifacts mcp serve <workspace>`` calls
``serve()`` once the CLI exists). The tools are ``tools.TOOLS``: the same names, descriptions and
input schemas as the OpenAI and Anthropic definitions, plus an output schema per tool
(``structuredContent`` conforms to it) and annotations: ``readOnlyHint`` for the read-only
tools, ``destructiveHint`` for those that may overwrite or delete, ``idempotentHint``, and
``openWorldHint: false`` (the tools touch only the workspace). A failed call is a result with
``isError: true`` and ``{"error": {code, message, path, hint}}`` -- the model sees it and can
correct itself -- never a protocol error; ``path`` is the call's own when the error names none.
With ``read_only`` only the read-only tools are listed, and a call of a write tool is refused with
``EROFS`` ("not available on a read-only workspace"), not an error that invites a retry.
``--bash`` (settings ``bash: true``) adds the ``bash`` tool: commands in a sandbox on the workspace
(``artifacts_fuse.exec``, docs/exec.md). It is off by default: code execution is the host's choice.

Settings (where the workspace is) never travel in argv, where any local user can read them with
``ps``: they come from a JSON file named by ``--settings FILE`` or ``ARTIFACTS_AGENTFS_SETTINGS``
(it must not be readable by group or others: 0600), or from the environment --
``ARTIFACTS_META_URL``, ``ARTIFACTS_KEY_PREFIX``, optionally ``ARTIFACTS_STORAGE_URL`` and
``ARTIFACTS_PROFILE``; S3 keys come from the host environment as for every volume. File keys:
``meta_url``, ``key_prefix``, ``storage_url``, ``profile``, ``read_only``, ``require_aof``, ``bash``.

Each call runs the synchronous ``AgentFS`` method in a worker thread (``anyio.to_thread``), so a
slow call never stalls the protocol loop; the volume is opened before serving and closed after.
A call whose request ``_meta`` names the framework's tool-call id (``CALL_ID_KEYS``) tags its
journal events with it (per call: concurrent calls keep their own).
"""

from __future__ import annotations

import argparse
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass

import anyio
import anyio.to_thread
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from artifacts_agentfs import tools
from artifacts_agentfs.api import AgentFS
from artifacts_agentfs.errors import invalid
from artifacts_core.errors import ReadOnly

SERVER_NAME = "artifacts-agentfs"
#: Concurrent tool calls served at once (anyio's thread limiter): enough for a client that fans
#: out, bounded so a flood of calls queues instead of opening threads without end.
MAX_CONCURRENT_CALLS = 16


@dataclass(frozen=True)
class Settings:
    meta_url: str
    key_prefix: str
    storage_url: str | None = None
    profile: str = "interactive"
    read_only: bool = False
    require_aof: bool = True
    bash: bool = False


def load_settings(path: str | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from a 0600 JSON file (``path`` or ``$ARTIFACTS_AGENTFS_SETTINGS``) or the env."""
    if env is None:
        env = os.environ
    path = path or env.get("ARTIFACTS_AGENTFS_SETTINGS")
    if path:
        mode = os.stat(path).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise PermissionError(f"settings file {path} is readable by others; chmod 600 it")
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        known = set(Settings.__dataclass_fields__)
        return Settings(**{k: v for k, v in data.items() if k in known})
    try:
        return Settings(meta_url=env["ARTIFACTS_META_URL"], key_prefix=env["ARTIFACTS_KEY_PREFIX"],
                        storage_url=env.get("ARTIFACTS_STORAGE_URL") or None,
                        profile=env.get("ARTIFACTS_PROFILE", "interactive"),
                        read_only=env.get("ARTIFACTS_READ_ONLY", "") in ("1", "true"),
                        require_aof=env.get("ARTIFACTS_REQUIRE_AOF", "1") not in ("0", "false"))
    except KeyError as e:
        raise SystemExit(f"missing setting {e.args[0]}: pass --settings FILE (mode 0600) or set "
                         "ARTIFACTS_META_URL and ARTIFACTS_KEY_PREFIX") from None


def mcp_tools(*, read_only: bool = False, exec: bool = False) -> list[types.Tool]:
    out = []
    for t in tools.tool_set(exec=exec and not read_only):
        if read_only and not t.read_only:
            continue
        out.append(types.Tool(
            name=t.name, description=t.description, input_schema=tools.input_schema(t),
            output_schema=tools.output_schema(t),
            annotations=types.ToolAnnotations(read_only_hint=t.read_only,
                                              destructive_hint=t.destructive if not t.read_only else False,
                                              idempotent_hint=t.idempotent, open_world_hint=t.open_world)))
    return out


#: Keys of a ``tools/call`` request's ``_meta`` that name the agent framework's tool-call id (MCP
#: defines none; these are the spellings frameworks use). The JSON-RPC request id is not one: it
#: numbers the client's requests, not the model's calls.
CALL_ID_KEYS = ("toolCallId", "tool_call_id", "toolUseId", "tool_use_id")


def call_id_of(meta: Mapping[str, object] | None) -> str | None:
    """The tool-call id a request's ``_meta`` carries, if any (a string of at most 256 bytes)."""
    for key in CALL_ID_KEYS:
        value = (meta or {}).get(key)
        if isinstance(value, str) and value and len(value.encode()) <= 256 and "\0" not in value:
            return value
    return None


def _invoke(fs: AgentFS, name: str, arguments: dict, call_id: str | None) -> dict:
    """One tool call; with ``call_id``, its journal events carry it as their tag (per call)."""
    if call_id is None:
        return tools.invoke(fs, name, arguments)
    with fs.tagged(call_id):
        return tools.invoke(fs, name, arguments)


def build_server(fs: AgentFS, *, read_only: bool = False) -> Server:
    listed = mcp_tools(read_only=read_only, exec=fs.executor is not None)
    names = {t.name for t in listed}
    limiter = anyio.CapacityLimiter(MAX_CONCURRENT_CALLS)

    async def list_tools(ctx, params) -> types.ListToolsResult:
        return types.ListToolsResult(tools=listed)

    async def call_tool(ctx, params) -> types.CallToolResult:
        name, arguments = params.name, params.arguments or {}
        try:
            if name not in names and read_only and name in tools.BY_NAME:  # a write tool: not listed
                raise ReadOnly(f"{name} is not available on a read-only workspace",
                               hint="Only the read tools work here: " + ", ".join(sorted(names)) + ".")
            if name not in names and name in tools.ALL_BY_NAME:  # bash, when the host did not enable it
                raise invalid(f"{name} is not enabled on this server",
                              hint="Use the listed tools; code execution is off unless the host enables it.")
            result = await anyio.to_thread.run_sync(_invoke, fs, name, arguments, call_id_of(params.meta),
                                                    limiter=limiter)
        except Exception as e:  # a failed call is a result the model reads, not a protocol error
            error = tools.error_of(e, arguments)
            return types.CallToolResult(content=[types.TextContent(text=json.dumps({"error": error}))],
                                        structured_content={"error": error}, is_error=True)
        return types.CallToolResult(content=[types.TextContent(text=json.dumps(result))],
                                    structured_content=result)

    return Server(SERVER_NAME, version=_version(),
                  instructions="Files of one Artifacts workspace. Paths are relative to the workspace root.",
                  on_list_tools=list_tools, on_call_tool=call_tool)


def _version() -> str:
    from artifacts_core import __version__

    return __version__


async def _serve(fs: AgentFS, read_only: bool) -> None:
    server = build_server(fs, read_only=read_only)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def serve(settings: Settings) -> None:
    """Open the workspace, serve MCP on stdin/stdout until the client closes, close the volume.
    The entry point ``artifacts mcp serve <workspace>`` wires to."""
    from artifacts_core.volume import open_volume

    vol = open_volume(settings.meta_url, settings.storage_url, key_prefix=settings.key_prefix,
                      profile=settings.profile, read_only=settings.read_only,
                      require_aof=settings.require_aof, frontend="mcp")
    executor = None
    try:
        if settings.bash and not settings.read_only:
            from artifacts_core.volume import load_executor  # the host chose code execution

            executor = load_executor()(vol)
        anyio.run(_serve, AgentFS(vol, executor=executor), settings.read_only)
    finally:
        if executor is not None:
            executor.close()
        vol.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m artifacts_agentfs.mcp_server",
                                     description="Serve a workspace's files as MCP tools over stdio.")
    parser.add_argument("--settings", help="JSON settings file, mode 0600 (or $ARTIFACTS_AGENTFS_SETTINGS)")
    parser.add_argument("--read-only", action="store_true", help="list only the read-only tools")
    parser.add_argument("--bash", action="store_true",
                        help="add the bash tool: commands in a sandbox on the workspace (off by default)")
    args = parser.parse_args(argv)
    settings = load_settings(args.settings)
    if args.read_only and not settings.read_only:
        settings = Settings(**{**settings.__dict__, "read_only": True})
    if args.bash and not settings.bash:
        settings = Settings(**{**settings.__dict__, "bash": True})
    serve(settings)


if __name__ == "__main__":
    main()
