"""The agent file API over HTTP refuses every attack string the Python agent API refuses, with the
same structured error: the lists are the agent API's own (tests/agentfs/test_agentfs_paths.py,
imported, not copied), sent as JSON through the real orchestrator to a real workspace, and each
answer is compared with ``AgentFS.call`` on that same workspace in-process."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from agentfs.test_agentfs_paths import (
    BACKSLASH,
    CONTROL,
    DRIVES,
    ENCODED,
    ESCAPES,
    GLOBS,
    LOOKALIKES,
    PORTABILITY,
    SPOOFING,
)

from artifacts_orchestrator.agent_routes import FILES, STATUS

pytestmark = [pytest.mark.redis, pytest.mark.s3]

SANDBOX = ESCAPES + BACKSLASH + DRIVES + ENCODED + LOOKALIKES + SPOOFING
LONG = ["a" * 256, "é" * 255, "a/" * 512 + "b", "x" * 4097, "a/" * 10_000, "p" * (1 << 20)]


def post(url: str, body: dict, key: str) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def agent(stack):
    """An agent with its workspace on, an agent token, and the AgentFS its file API serves."""
    url = stack["server"].url
    acct = post(url + "/admin/accounts", {"handle": "pathattacks"}, "admin-token-for-tests-only-0123456789")[1]
    key = acct["key"]["key"]
    ag = post(url + "/agents", {"name": "attacked"}, key)[1]
    req = urllib.request.Request(f"{url}/agents/{ag['id']}/workspace", method="PUT",
                                 data=json.dumps({"enabled": True}).encode(),
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    urllib.request.urlopen(req, timeout=60).read()
    token = post(f"{url}/agents/{ag['id']}/tokens", {}, key)[1]["token"]
    base = f"{url}/agents/{ag['id']}/files"
    assert post(f"{base}/writeFile", {"path": "a.txt", "content": "a"}, token)[0] == 200
    fs = stack["server"].app[FILES]._slots[ag["id"]].opened.fs  # the very AgentFS the routes use
    return {"base": base, "token": token, "fs": fs, "id": ag["id"], "key": key}


def same_refusal(agent, tool: str, args: dict, code: str) -> None:
    status, over_http = post(f"{agent['base']}/{tool}", args, agent["token"])
    in_python = agent["fs"].call(tool, args)
    assert in_python["ok"] is False and in_python["error"]["code"] == code, (tool, args, in_python)
    assert over_http == in_python["error"], (tool, args)
    assert status == STATUS[code]


@pytest.mark.parametrize("path", SANDBOX)
def test_sandbox_forms_are_refused_like_the_python_api(agent, path):
    same_refusal(agent, "readFile", {"path": path}, "EACCES")
    same_refusal(agent, "writeFile", {"path": path, "content": "x"}, "EACCES")
    same_refusal(agent, "mkdir", {"path": path}, "EACCES")
    same_refusal(agent, "moveFile", {"src": "a.txt", "dest": path}, "EACCES")
    same_refusal(agent, "copyFile", {"src": "a.txt", "dest": path}, "EACCES")


@pytest.mark.parametrize("path", CONTROL)
def test_control_characters_are_invalid(agent, path):
    same_refusal(agent, "writeFile", {"path": path, "content": "x"}, "EINVAL")
    same_refusal(agent, "stat", {"path": path}, "EINVAL")


@pytest.mark.parametrize("path", LONG, ids=lambda p: f"{len(p)}B")
def test_length_and_depth_bounds(agent, path):
    same_refusal(agent, "readFile", {"path": path}, "ENAMETOOLONG")


@pytest.mark.parametrize("pattern", GLOBS)
def test_glob_patterns_cannot_climb(agent, pattern):
    status, over_http = post(f"{agent['base']}/glob", {"pattern": pattern}, agent["token"])
    in_python = agent["fs"].call("glob", {"pattern": pattern})
    assert over_http == (in_python["result"] if in_python["ok"] else in_python["error"])
    if not in_python["ok"]:
        assert status == STATUS[in_python["error"]["code"]]
    else:
        assert all(not m.startswith("..") for m in over_http["matches"])


def test_portability_reserved_names_and_the_root(agent):
    for name in PORTABILITY:
        same_refusal(agent, "writeFile", {"path": name, "content": "x"}, "EINVAL")
        same_refusal(agent, "readFile", {"path": name}, "ENOENT")
    for reserved in (".trash", ".trash/x", ".stats", ".config", "/.accesslog"):
        same_refusal(agent, "readFile", {"path": reserved}, "EACCES")
    same_refusal(agent, "deleteFile", {"path": "/"}, "EPERM")
    same_refusal(agent, "rmdir", {"path": "."}, "EPERM")
    # a root-relative path stays in the workspace: /etc/passwd is the agent's own file
    assert post(f"{agent['base']}/writeFile", {"path": "/etc/passwd", "content": "mine"}, agent["token"])[0] == 200
    assert post(f"{agent['base']}/readFile", {"path": "etc/passwd"}, agent["token"])[1]["content"] == "mine"


def test_the_seed_example_resolves_inside_the_sandbox(agent, stack):
    """Seed 004: "paths like ../../other-agent/ resolve within the sandbox" — refused here rather
    than clamped (docs/agentfs.md: never clamped silently), and never another agent's files."""
    url = stack["server"].url
    other = post(url + "/agents", {"name": "other"}, agent["key"])[1]
    same_refusal(agent, "readdir", {"path": f"../../{other['id']}/"}, "EACCES")
    same_refusal(agent, "readFile", {"path": f"../../agents/{other['id']}/x"}, "EACCES")


@pytest.mark.parametrize("agent_id", ["..%2F..%2Fadmin", "ag_..", "ag_0000000000000000", "%2e%2e"])
def test_agent_ids_in_the_url_are_not_paths(agent, stack, agent_id):
    status, err = post(f"{stack['server'].url}/agents/{agent_id}/files/readFile", {"path": "a.txt"}, agent["token"])
    assert status in (403, 404) and err["code"] in ("forbidden", "agent_not_found", "not_found")


def test_arguments_are_checked_like_the_dispatcher(agent):
    status, err = post(f"{agent['base']}/readFile", {"path": "a.txt", "bogus": 1}, agent["token"])
    assert status == 422 and err["code"] == "EINVAL" and "bogus" in err["message"]
    status, err = post(f"{agent['base']}/readFile", {"path": "a.txt", "start_line": 1, "startLine": 1}, agent["token"])
    assert status == 422 and "same argument" in err["message"]
    status, err = post(f"{agent['base']}/readFile", {"path": 7}, agent["token"])
    assert status == 422 and err["code"] == "EINVAL"
