"""One description of the tools, and what is generated from it: OpenAI function definitions,
Anthropic tool definitions, MCP tools (mcp_server.py) and the ``call(name, arguments)`` dispatcher.
``EXEC_TOOLS`` (the ``bash`` tool) joins them only when the host enables code execution
(``exec=True``; shell.py).

``TOOLS`` lists every operation once: its agent-facing name (readFile, ...), the ``AgentFS``
method, a description written for a model, its parameters (JSON Schema per parameter, required
or not), its output schema, and whether it only reads / may destroy data / is idempotent.

Generated dialects, and the rules ``tests/agentfs/test_agentfs_tools.py`` checks:

- every name matches ``^[a-zA-Z0-9_-]{1,64}$`` (OpenAI functions and Anthropic tools);
  descriptions are non-empty and at most ``MAX_DESCRIPTION`` characters;
- every input schema is a valid JSON Schema (Draft 2020-12 meta-schema) of ``type: object``
  with ``properties``, ``required`` naming only declared properties, ``additionalProperties: false``;
- OpenAI strict mode (``openai_tools(strict=True)``, the default): every property is listed in
  ``required``; an optional one is made nullable (``"type": [T, "null"]``, and the dispatcher
  treats null as "not given"); no ``default`` and none of the keywords strict mode rejects
  (``minLength``, ``maxLength``, ``pattern``, ``format``, ``minimum``, ``maximum``, ...) -- our
  own checks enforce those bounds anyway;
- Anthropic: ``{name, description, input_schema}`` with ``input_schema.type == "object"``.

The dispatcher validates arguments against the same description (unknown names, missing
required ones, wrong JSON types: EINVAL), calls the method, and returns
``{"ok": true, "result": {...}}`` or ``{"ok": false, "error": {code, message, path, hint}}``;
it never raises for anything an agent sends.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from artifacts_agentfs.errors import invalid, to_error

#: Longest tool description we emit: short enough for any dialect and a model's attention.
MAX_DESCRIPTION = 1024
#: Bytes of a JSON ``arguments`` string the dispatcher parses at most: above the largest write
#: (32 MiB of content, x 4/3 when base64) plus room for the other fields.
MAX_ARGUMENTS_BYTES = 48 << 20

_STR, _INT, _BOOL = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
_PATH = {"type": "string", "description": "Path relative to the workspace root, e.g. 'notes/todo.md'."}
_ENC = {"type": "string", "enum": ["utf-8", "base64"],
        "description": "utf-8 (default) for text, base64 for binary content."}
_VER = {"type": "string", "description": "Version token from readFile/stat: fail with ECONFLICT if the "
        "file changed since. writeFile also takes 'absent': fail if the file exists."}


@dataclass(frozen=True)
class Param:
    name: str
    schema: dict
    required: bool = False


@dataclass(frozen=True)
class Tool:
    name: str
    method: str
    description: str
    params: tuple[Param, ...]
    output: dict = field(default_factory=dict)  # properties of the result object
    read_only: bool = False
    destructive: bool = False
    idempotent: bool = False
    open_world: bool = False


def _out(**props) -> dict:
    return {name: ({"type": t} if isinstance(t, (str, list)) else t) for name, t in props.items()}


_ENTRY = {"type": "object", "properties": _out(name="string", type="string", size="integer",
                                               modifiedAt="string")}
TOOLS: tuple[Tool, ...] = (
    Tool("readFile", "read_file",
         "Read a file. Text comes back as UTF-8; binary needs encoding='base64'. Read part of a file "
         "with offset/length (bytes) or start_line/end_line (1-based, inclusive). At most 1 MiB per "
         "call: 'truncated' says more remains. Returns a version token for later preconditions.",
         (Param("path", _PATH, True), Param("offset", _INT), Param("length", _INT),
          Param("start_line", _INT), Param("end_line", _INT), Param("encoding", _ENC)),
         _out(path="string", content="string", encoding="string", size="integer", offset="integer",
              length="integer", start_line="integer", end_line="integer",
              total_lines=["integer", "null"], truncated="boolean", version="string"),
         read_only=True, idempotent=True),
    Tool("writeFile", "write_file",
         "Create or overwrite a file with the given content; missing parent directories are created. "
         "Atomic: readers see the old or the new content, never a mix. At most 32 MiB.",
         (Param("path", _PATH, True), Param("content", {**_STR, "description": "The new content."}, True),
          Param("encoding", _ENC), Param("if_version", _VER)),
         _out(path="string", size="integer", created="boolean", version="string"),
         destructive=True, idempotent=True),
    Tool("appendFile", "append_file",
         "Append content to the end of a file (created if missing). Concurrent appends from other "
         "agents never interleave or get lost. At most 32 MiB per call.",
         (Param("path", _PATH, True), Param("content", _STR, True), Param("encoding", _ENC),
          Param("if_version", _VER)),
         _out(path="string", offset="integer", size="integer", version="string")),
    Tool("deleteFile", "delete_file",
         "Delete a file (a symlink itself, never its target). Directories are refused: use rmdir.",
         (Param("path", _PATH, True), Param("if_version", _VER)),
         _out(path="string", deleted="boolean", trash="boolean"), destructive=True),
    Tool("copyFile", "copy_file",
         "Copy a file. The destination must not exist unless overwrite=true; its parents are created.",
         (Param("src", _PATH, True), Param("dest", _PATH, True), Param("overwrite", _BOOL)),
         _out(src="string", dest="string", size="integer", version="string"), destructive=True),
    Tool("moveFile", "move_file",
         "Move or rename a file or directory atomically. The destination must not exist unless "
         "overwrite=true (a directory is never replaced); its parents are created.",
         (Param("src", _PATH, True), Param("dest", _PATH, True), Param("overwrite", _BOOL),
          Param("if_version", _VER)),
         _out(src="string", dest="string"), destructive=True),
    Tool("mkdir", "mkdir", "Create a directory and any missing parents. An existing directory is fine.",
         (Param("path", _PATH, True),), _out(path="string", created="boolean"), idempotent=True),
    Tool("rmdir", "rmdir",
         "Delete a directory and everything in it, recursively. The workspace root cannot be deleted.",
         (Param("path", _PATH, True),), _out(path="string", removed="integer"), destructive=True),
    Tool("readdir", "readdir",
         "List a directory: entries with name, type (file, directory, symlink), size and modifiedAt, "
         "sorted by name, at most 1000 per call; pass next_cursor back as cursor for the next page.",
         (Param("path", {**_PATH, "description": "Directory; '' or '/' is the workspace root."}),
          Param("cursor", _STR), Param("limit", _INT)),
         _out(path="string", entries={"type": "array", "items": _ENTRY},
              next_cursor=["string", "null"], truncated="boolean"),
         read_only=True, idempotent=True),
    Tool("exists", "exists", "Check whether a path exists. Never fails for a missing path.",
         (Param("path", _PATH, True),), _out(path="string", exists="boolean"),
         read_only=True, idempotent=True),
    Tool("stat", "stat",
         "File metadata: type (file or directory), size in bytes, createdAt, modifiedAt (ISO 8601 UTC) "
         "and a version token.",
         (Param("path", _PATH, True),),
         _out(path="string", type="string", size="integer", createdAt="string", modifiedAt="string",
              version="string"),
         read_only=True, idempotent=True),
    Tool("editFile", "edit_file",
         "Replace old_text with new_text in a file. old_text must match exactly once (copy it from "
         "readFile, whitespace included) unless replace_all=true. dry_run=true only returns the diff.",
         (Param("path", _PATH, True), Param("old_text", _STR, True), Param("new_text", _STR, True),
          Param("replace_all", _BOOL), Param("dry_run", _BOOL), Param("if_version", _VER)),
         _out(path="string", replacements="integer", diff="string", diff_truncated="boolean",
              applied="boolean", version="string"),
         destructive=True),
    Tool("glob", "glob",
         "Find paths by name pattern: * ? [abc] within a name, ** across directories (e.g. '**/*.py'). "
         "Relative to path (default: the root). At most 1000 results.",
         (Param("pattern", _STR, True), Param("path", _PATH), Param("limit", _INT)),
         _out(pattern="string", path="string", matches={"type": "array", "items": {"type": "string"}},
              truncated="boolean"),
         read_only=True, idempotent=True),
    Tool("grep", "grep",
         "Search file contents for a regular expression (RE2 syntax: no backreferences or lookaround) "
         "or a literal (fixed=true) under path "
         "(a directory or one file); glob filters file names. At most 200 matching lines; binary and "
         "files over 4 MiB are skipped.",
         (Param("pattern", _STR, True), Param("path", _PATH), Param("glob", _STR), Param("fixed", _BOOL),
          Param("ignore_case", _BOOL), Param("limit", _INT)),
         _out(pattern="string", path="string", files_scanned="integer", files_skipped="integer",
              truncated="boolean",
              matches={"type": "array", "items": {"type": "object", "properties": _out(
                  path="string", line="integer", text="string", cut="boolean")}}),
         read_only=True, idempotent=True),
    Tool("checkpoint", "checkpoint",
         "Save the whole workspace as a named checkpoint, instantly whatever its size (nothing is "
         "copied). Take one before a risky step; restore it to roll back everything done since.",
         (Param("name", {**_STR, "description": "Letters, digits, _ . - (default: a timestamp)."}),
          Param("keep", {**_STR, "description": "Retention such as 12h or 7d (default: until deleted)."})),
         _out(name="string", createdAt="number", epoch="integer")),
    Tool("restore", "restore",
         "Roll the whole workspace back to a checkpoint, atomically. A safety checkpoint of the current "
         "state is taken first (its name is returned), so the restore can be undone.",
         (Param("name", {**_STR, "description": "The checkpoint to restore."}, True),),
         _out(restored="string", safety_checkpoint="string"), destructive=True),
    Tool("diff", "diff",
         "What changed since a checkpoint (or between two): paths added, removed, modified, renamed; "
         "text=true adds unified diffs of modified text files.",
         (Param("name", {**_STR, "description": "The older checkpoint."}, True),
          Param("to", {**_STR, "description": "A later checkpoint (default: now)."}), Param("text", _BOOL)),
         _out(changes={"type": "array", "items": {"type": "object", "properties": _out(
             kind="string", path="string", old_path="string", type="string", diff="string")}},
             truncated="boolean"),
         read_only=True, idempotent=True),
    Tool("changes", "changes",
         "What changed in the workspace, and who changed it: events (created, written, renamed, "
         "deleted, ...) from a cursor, oldest first, with the path, size and acting agent or mount. "
         "Pass the returned cursor to the next call to get only newer events; wait (seconds, at most 60) "
         "blocks until something changes, e.g. to wait for another agent's output. path limits to one "
         "file or directory.",
         (Param("cursor", {**_STR, "description": "The cursor a previous call returned (omit: from the oldest "
                                                  "event kept)."}),
          Param("path", _PATH), Param("wait", {**_INT, "description": "Seconds to wait for a change when none "
                                                                    "is there yet (0..60, default 0)."}),
          Param("limit", {**_INT, "description": "Most events returned (1..200, default 200)."})),
         _out(events={"type": "array", "items": {"type": "object", "properties": _out(
             id="integer", time="number", op="string", kind="string", path=["string", "null"],
             name_path="string", new_path="string", size="integer", size_change="integer", tag="string",
             actor="object")}},
             cursor="string", truncated="boolean", missed="integer"),
         read_only=True),
)
BY_NAME = {t.name: t for t in TOOLS}

#: Code execution, listed only when the agent host enables it (``exec=True``; shell.py).
BASH = Tool(
    "bash", "bash",
    "Run a shell command (bash -c) in a sandbox whose working directory is the workspace "
    "(/workspace, read-write). No network; nothing outside the workspace persists (/tmp is private "
    "per call). Returns exit_code, stdout, stderr (each cut at max_output bytes: *_truncated), "
    "duration_ms, timed_out, and the files created, changed and deleted. mode='transaction' runs on "
    "a private copy that is committed only if the command exits 0 and nobody else changed those files "
    "meanwhile (committed, conflicts).",
    (Param("command", {**_STR, "description": "The command line, run as bash -c."}, True),
     Param("stdin", {**_STR, "description": "Text given to the command's standard input."}),
     Param("timeout", {**_INT, "description": "Seconds before the command and all its processes are "
                                              "killed (default 60, at most 1800)."}),
     Param("max_output", {**_INT, "description": "Bytes kept per stream (default 65536)."}),
     Param("mode", {"type": "string", "enum": ["shared", "transaction"],
                    "description": "shared (default): writes land at once. transaction: all or nothing."})),
    _out(exit_code="integer", stdout="string", stderr="string", stdout_truncated="boolean",
         stderr_truncated="boolean", timed_out="boolean", duration_ms="number", mode="string",
         created={"type": "array", "items": {"type": "string"}},
         changed={"type": "array", "items": {"type": "string"}},
         deleted={"type": "array", "items": {"type": "string"}},
         changes_complete="boolean", changes_truncated="boolean",
         committed=["boolean", "string", "null"], conflicts={"type": "array", "items": {"type": "object"}},
         commit_error=["string", "null"]),
    destructive=True)
EXEC_TOOLS: tuple[Tool, ...] = (BASH,)
ALL_BY_NAME = {t.name: t for t in TOOLS + EXEC_TOOLS}


def tool_set(*, exec: bool = False) -> tuple[Tool, ...]:
    """The file tools, plus ``bash`` when the host enables code execution."""
    return TOOLS + EXEC_TOOLS if exec else TOOLS


def input_schema(tool: Tool, *, strict: bool = False) -> dict:
    props, required = {}, []
    for p in tool.params:
        schema = dict(p.schema)
        if strict and not p.required:
            schema["type"] = [schema["type"], "null"]
            if "enum" in schema:
                schema["enum"] = [*schema["enum"], None]
        props[p.name] = schema
        if p.required or strict:
            required.append(p.name)
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


def output_schema(tool: Tool) -> dict:
    return {"type": "object", "properties": tool.output}


def openai_tools(*, strict: bool = True, exec: bool = False) -> list[dict]:
    """Chat Completions ``tools`` entries (``{"type": "function", "function": {...}}``)."""
    return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                              "parameters": input_schema(t, strict=strict),
                                              "strict": strict}} for t in tool_set(exec=exec)]


def openai_responses_tools(*, strict: bool = True, exec: bool = False) -> list[dict]:
    """Responses API ``tools`` entries (the same function, flattened)."""
    return [{"type": "function", **f["function"]} for f in openai_tools(strict=strict, exec=exec)]


def anthropic_tools(*, exec: bool = False) -> list[dict]:
    """Messages API ``tools`` entries."""
    return [{"name": t.name, "description": t.description, "input_schema": input_schema(t)}
            for t in tool_set(exec=exec)]


_JSON_TYPES = {"string": str, "integer": int, "boolean": bool}


def _arguments(tool: Tool, arguments) -> dict:
    if arguments is None:
        arguments = {}
    if isinstance(arguments, (str, bytes)):
        if len(arguments) > MAX_ARGUMENTS_BYTES:
            raise invalid("arguments too large")
        try:
            arguments = json.loads(arguments or "{}")
        except (ValueError, RecursionError):
            raise invalid("arguments are not valid JSON", hint="send the arguments as a JSON object") from None
    if not isinstance(arguments, dict):
        raise invalid("arguments must be a JSON object")
    declared = {p.name: p for p in tool.params}
    unknown = sorted(set(arguments) - set(declared))
    if unknown:
        raise invalid(f"unknown argument(s) {', '.join(unknown)} for {tool.name}",
                      hint=f"{tool.name} takes: {', '.join(declared)}")
    kwargs = {}
    for name, p in declared.items():
        value = arguments.get(name)
        if value is None:
            if p.required:
                raise invalid(f"missing required argument {name!r} for {tool.name}")
            continue
        want = _JSON_TYPES[p.schema["type"]]
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise invalid(f"argument {name!r} must be a {p.schema['type']}")
        if "enum" in p.schema and value not in p.schema["enum"]:
            raise invalid(f"argument {name!r} must be one of {p.schema['enum']}")
        kwargs[name] = value
    return kwargs


def invoke(fs, name: str, arguments=None) -> dict:
    """Run one tool call on ``fs`` (an ``AgentFS``); raises the operation's exception."""
    tool = ALL_BY_NAME.get(name)
    if tool is None:
        raise invalid(f"unknown tool {name!r}", hint=f"tools: {', '.join(BY_NAME)}")
    kwargs = _arguments(tool, arguments)
    positional = [kwargs.pop(p.name) for p in tool.params if p.required]
    result = getattr(fs, tool.method)(*positional, **kwargs)
    if name == "exists":
        return {"path": positional[0], "exists": bool(result)}
    return result


def error_of(exc: BaseException, arguments=None) -> dict:
    """``{code, message, path, hint}`` for a failed call; ``path`` is the call's own ``path``
    argument when the error names none (a model should see which path failed)."""
    error = to_error(exc)
    given = arguments.get("path") if isinstance(arguments, dict) else None
    if error["path"] is None and isinstance(given, str) and len(given) <= 256:
        error["path"] = given
    return error


def call(fs, name: str, arguments=None, *, call_id: str | None = None) -> dict:
    """The dispatcher: ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": {...}}``.
    ``call_id``: the framework's tool-call id, carried by the journal events of this call."""
    try:
        if call_id is not None:
            with fs.tagged(call_id):
                return {"ok": True, "result": invoke(fs, name, arguments)}
        return {"ok": True, "result": invoke(fs, name, arguments)}
    except Exception as e:  # every failure becomes a structured result for the model
        return {"ok": False, "error": error_of(e, arguments)}
