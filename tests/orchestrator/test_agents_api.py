"""Agents over HTTP on the real stack (Redis with ACLs, SeaweedFS with IAM, the orchestrator):
seed 004's toggle (managed storage at agents/<id>/, no credentials), custom S3 with the
four-permission check, sealed keys, agent tokens, the file API, and its isolation between agents.
"""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from orchestrator_stack import BUCKET, CUSTOM_BUCKET, admin_s3, objects_under, s3_identity, wait_deleted

from artifacts_orchestrator.agent_files import AgentFiles
from artifacts_orchestrator.agent_routes import FILES

pytestmark = [pytest.mark.redis, pytest.mark.s3]

FOUR = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"]


def http(stack, method: str, path: str, body: Any = None, key: str = "", raw: bytes | None = None) -> tuple[int, Any]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    req = urllib.request.Request(stack["server"].url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


@pytest.fixture
def key(api) -> str:
    """The fresh account's API key (what the ``api`` client sends)."""
    return api._api_key


def new_agent(stack, key: str, name: str = "support bot") -> dict:
    status, agent = http(stack, "POST", "/agents", {"name": name}, key)
    assert status == 201, agent
    return agent


def enable_managed(stack, key: str, agent_id: str) -> dict:
    status, view = http(stack, "PUT", f"/agents/{agent_id}/workspace", {"enabled": True, "storage": "managed"}, key)
    assert status == 200, view
    return view


def op(stack, key: str, agent_id: str, tool: str, **args) -> tuple[int, Any]:
    return http(stack, "POST", f"/agents/{agent_id}/files/{tool}", args, key)


@pytest.fixture(scope="module")
def custom_bucket(stack):
    stack["s3"].create_bucket(CUSTOM_BUCKET)
    return CUSTOM_BUCKET


def custom(stack, ak: str, sk: str, *, bucket: str = CUSTOM_BUCKET, endpoint: str | None = None) -> dict:
    return {"endpoint": stack["s3"].endpoint if endpoint is None else endpoint, "region": "us-east-1",
            "bucket": bucket, "access_key_id": ak, "secret_access_key": sk}


# -- seed 004: toggle on, managed ---------------------------------------------------------------------


def test_toggle_on_gives_a_managed_prefix_and_the_file_operations(stack, key):
    agent = new_agent(stack, key)
    assert agent["id"].startswith("ag_") and agent["workspace_enabled"] is False and agent["workspace"] is None
    view = enable_managed(stack, key, agent["id"])
    ws = view["workspace"]
    assert view["workspace_enabled"] is True
    assert (ws["storage"], ws["bucket"], ws["prefix"]) == ("managed", BUCKET, f"agents/{agent['id']}")
    assert ws["access_key_id"] == "" and ws["status"] == "active"

    status, token = http(stack, "POST", f"/agents/{agent['id']}/tokens", {"name": "runtime"}, key)
    assert status == 201 and token["token"].startswith("tba_")
    t = token["token"]
    # the seed's eleven operations, by an agent token (no API key involved)
    assert op(stack, t, agent["id"], "writeFile", path="outputs/gen.py", content="print(1)\n")[0] == 200
    assert op(stack, t, agent["id"], "appendFile", path="summaries/s.md", content="one\n")[0] == 200
    assert op(stack, t, agent["id"], "appendFile", path="summaries/s.md", content="two\n")[0] == 200
    assert op(stack, t, agent["id"], "readFile", path="summaries/s.md")[1]["content"] == "one\ntwo\n"
    assert op(stack, t, agent["id"], "copyFile", src="outputs/gen.py", dest="outputs/copy.py")[0] == 200
    assert op(stack, t, agent["id"], "moveFile", src="outputs/copy.py", dest="outputs/moved.py")[0] == 200
    assert op(stack, t, agent["id"], "mkdir", path="data/2026/12")[1]["created"] is True
    assert op(stack, t, agent["id"], "exists", path="outputs/moved.py")[1] == {"path": "outputs/moved.py", "exists": True}
    st = op(stack, t, agent["id"], "stat", path="outputs/gen.py")[1]
    assert st["type"] == "file" and st["size"] == 9 and st["createdAt"] and st["modifiedAt"]
    names = [e["name"] for e in op(stack, t, agent["id"], "readdir", path="outputs")[1]["entries"]]
    assert names == ["gen.py", "moved.py"]
    assert op(stack, t, agent["id"], "deleteFile", path="outputs/moved.py")[0] == 200
    assert op(stack, t, agent["id"], "rmdir", path="data")[0] == 200
    # and the extras: editFile with a version precondition, ranges, glob, grep, camelCase names
    page = op(stack, t, agent["id"], "readFile", path="outputs/gen.py")[1]
    status, stale = op(stack, t, agent["id"], "editFile", path="outputs/gen.py", old_text="1", new_text="2",
                       if_version="1-1")
    assert status == 412 and stale["code"] == "ECONFLICT" and stale["hint"]
    status, _ = http(stack, "POST", f"/agents/{agent['id']}/files/editFile",
                     {"path": "outputs/gen.py", "oldText": "1", "newText": "2", "ifVersion": page["version"]}, t)
    assert status == 200
    assert op(stack, t, agent["id"], "readFile", path="outputs/gen.py", offset=6, length=1)[1]["content"] == "2"
    assert op(stack, t, agent["id"], "readFile", path="summaries/s.md", start_line=2)[1]["content"] == "two\n"
    assert op(stack, t, agent["id"], "glob", pattern="**/*.py")[1]["matches"] == ["outputs/gen.py"]
    assert op(stack, t, agent["id"], "grep", pattern="two")[1]["matches"][0]["path"] == "summaries/s.md"
    status, err = op(stack, t, agent["id"], "readFile", path="nope.txt")
    assert status == 404 and err == {"code": "ENOENT", "message": err["message"], "path": "nope.txt",
                                     "hint": err["hint"]}
    # the call endpoint answers as AgentFS.call does
    status, out = http(stack, "POST", f"/agents/{agent['id']}/files/call",
                       {"tool": "readFile", "arguments": {"path": "nope.txt"}}, t)
    assert status == 200 and out["ok"] is False and out["error"]["code"] == "ENOENT"
    status, out = http(stack, "POST", f"/agents/{agent['id']}/files/call", {"tool": "bash", "arguments": {}}, t)
    assert out["ok"] is False and out["error"]["code"] == "EINVAL"  # never the host-only tool

    # the objects are at the agent's own prefix of the managed bucket
    assert objects_under(stack, f"agents/{agent['id']}")
    status, usage = http(stack, "GET", f"/agents/{agent['id']}/usage", key=key)
    assert usage["used_bytes"] > 0 and usage["inodes"] >= 4
    # recent activity: the workspace journal's latest changes, newest first, paths resolved
    recent = usage["recent_activity"]
    assert 0 < len(recent) <= 20 and recent[0]["time"] >= recent[-1]["time"]
    assert {"rmdir", "/outputs/gen.py"} <= {x for e in recent for x in (e["op"], e.get("path"))}
    # it is an ordinary workspace of the account: listed, mountable
    status, listing = http(stack, "GET", "/workspaces", key=key)
    assert f"agent-{agent['id']}" in [w["name"] for w in listing["workspaces"]]


def test_toggle_off_keeps_the_data_and_the_file_api_says_so(stack, key):
    agent = new_agent(stack, key)
    enable_managed(stack, key, agent["id"])
    op(stack, key, agent["id"], "writeFile", path="prefs.json", content='{"tone": "dry"}')
    status, view = http(stack, "PUT", f"/agents/{agent['id']}/workspace", {"enabled": False}, key)
    assert status == 200 and view["workspace_enabled"] is False and view["workspace"]["status"] == "active"
    status, err = op(stack, key, agent["id"], "readFile", path="prefs.json")
    assert status == 409 and err["code"] == "workspace_off" and "kept" in err["message"]
    assert stack["server"].app[FILES].open_agents().count(agent["id"]) == 0  # its volume was closed
    enable_managed(stack, key, agent["id"])  # the same workspace comes back, with its files
    assert op(stack, key, agent["id"], "readFile", path="prefs.json")[1]["content"] == '{"tone": "dry"}'


def test_agent_tokens_reach_one_agent_only_and_die_when_revoked(stack, api, key):
    a, b = new_agent(stack, key, "a"), new_agent(stack, key, "b")
    for x in (a, b):
        enable_managed(stack, key, x["id"])
    ta = http(stack, "POST", f"/agents/{a['id']}/tokens", {}, key)[1]
    assert op(stack, ta["token"], a["id"], "writeFile", path="mine.txt", content="a")[0] == 200
    status, err = op(stack, ta["token"], b["id"], "readFile", path="mine.txt")
    assert status == 403 and err["code"] == "forbidden"
    assert http(stack, "GET", "/agents", key=ta["token"])[0] == 401  # not an API key
    assert op(stack, "tba_" + "x" * 32, a["id"], "exists", path="x")[0] == 401
    status, tokens = http(stack, "GET", f"/agents/{a['id']}/tokens", key=key)
    assert [t["hint"] for t in tokens["tokens"]] == [ta["token"][:8] + "…"] and "token" not in tokens["tokens"][0]
    assert http(stack, "DELETE", f"/agents/{a['id']}/tokens/{ta['id']}", key=key)[0] == 200
    status, err = op(stack, ta["token"], a["id"], "exists", path="mine.txt")
    assert status == 401 and err["message"] == "agent token has been revoked"
    # another account sees no such agent, even with a valid key of its own
    other = http(stack, "POST", "/admin/accounts", {"handle": f"other{int(time.time() * 1000) % 10**9}"},
                 "admin-token-for-tests-only-0123456789")[1]["key"]["key"]
    assert op(stack, other, a["id"], "exists", path="mine.txt")[0] == 404
    assert http(stack, "GET", f"/agents/{a['id']}", key=other)[1]["code"] == "agent_not_found"
    # the tokens are stored hashed
    db = sqlite3.connect(stack["db"])
    assert ta["token"] not in repr(db.execute("SELECT * FROM agent_tokens").fetchall())


def test_one_agents_load_does_not_block_another(stack, key):
    slow, quick = new_agent(stack, key, "slow"), new_agent(stack, key, "quick")
    for x in (slow, quick):
        enable_managed(stack, key, x["id"])
        op(stack, key, x["id"], "writeFile", path="f.txt", content="x")
    files: AgentFiles = stack["server"].app[FILES]
    gate = threading.Event()
    real = files._run

    def held(slot, account, agent, tool, arguments):  # every call of "slow" waits on the gate
        if agent.id == slow["id"]:
            gate.wait(30)
        return real(slot, account, agent, tool, arguments)

    files._run = held
    try:
        stuck = [threading.Thread(target=op, args=(stack, key, slow["id"], "readFile"), kwargs={"path": "f.txt"})
                 for _ in range(files.workers + 4)]  # more than its pool: its queue fills, not the others'
        for th in stuck:
            th.start()
        time.sleep(0.2)
        t0 = time.monotonic()
        for _ in range(5):
            assert op(stack, key, quick["id"], "readFile", path="f.txt")[1]["content"] == "x"
        assert time.monotonic() - t0 < 5  # not waiting behind the stuck agent
        assert http(stack, "GET", "/agents", key=key)[0] == 200  # nor is the control plane
    finally:
        gate.set()
        files._run = real
        for th in stuck:
            th.join(30)


def test_busy_agent_gets_429_past_its_bound(stack, key):
    agent = new_agent(stack, key)
    enable_managed(stack, key, agent["id"])
    files: AgentFiles = stack["server"].app[FILES]
    saved = files.max_waiting
    files.max_waiting = 0
    try:
        status, err = op(stack, key, agent["id"], "exists", path="x")
        assert status == 429 and err["code"] == "agent_busy"
    finally:
        files.max_waiting = saved


def test_idle_volumes_are_closed_and_their_sessions_revoked(stack, key):
    agent = new_agent(stack, key)
    enable_managed(stack, key, agent["id"])
    op(stack, key, agent["id"], "writeFile", path="a", content="1")
    files: AgentFiles = stack["server"].app[FILES]
    assert agent["id"] in files.open_agents()
    _status, sessions = http(stack, "GET", f"/workspaces/~/agent-{agent['id']}/sessions", key=key)
    assert [s["mountpoint"] for s in sessions["sessions"]] == [f"agent:{agent['id']}"]
    assert files.close_idle(now=time.monotonic() + files.idle_seconds + 1) >= 1
    assert agent["id"] not in files.open_agents()
    assert http(stack, "GET", f"/workspaces/~/agent-{agent['id']}/sessions", key=key)[1]["sessions"] == []
    assert op(stack, key, agent["id"], "readFile", path="a")[1]["content"] == "1"  # reopened on demand


# -- custom S3 ------------------------------------------------------------------------------------------


def test_check_names_each_missing_permission_and_the_leftover(stack, key, custom_bucket):
    agent = new_agent(stack, key)
    ak, sk = s3_identity(stack, f"nodelete-{agent['id']}", ["s3:GetObject", "s3:PutObject", "s3:ListBucket"])
    status, check = http(stack, "POST", f"/agents/{agent['id']}/storage-check", custom(stack, ak, sk), key)
    assert status == 200 and check["ok"] is False and check["problem"] == "permissions"
    assert check["missing_permissions"] == ["s3:DeleteObject"]
    leftover = check["leftover_key"]
    assert leftover.startswith(f"agents/{agent['id']}/.artifacts-check-") and leftover in check["message"]
    assert "s3:DeleteObject" in check["message"]
    # saving refuses with the same finding, and nothing changes
    status, err = http(stack, "PUT", f"/agents/{agent['id']}/workspace",
                       {"enabled": True, "storage": "custom", "custom": custom(stack, ak, sk)}, key)
    assert status == 422 and err["code"] == "storage_check_failed"
    assert err["check"]["missing_permissions"] == ["s3:DeleteObject"]
    assert http(stack, "GET", f"/agents/{agent['id']}", key=key)[1]["workspace"] is None
    admin_s3(stack).delete_object(Bucket=CUSTOM_BUCKET, Key=err["check"]["leftover_key"])
    admin_s3(stack).delete_object(Bucket=CUSTOM_BUCKET, Key=leftover)

    for missing in FOUR:
        ak, sk = s3_identity(stack, f"no{missing[3:].lower()}-{agent['id']}", [a for a in FOUR if a != missing])
        check = http(stack, "POST", f"/agents/{agent['id']}/storage-check", custom(stack, ak, sk), key)[1]
        want = [missing]
        assert check["missing_permissions"] == want, (missing, check)
        if missing == "s3:PutObject":
            assert check["unchecked_permissions"] == ["s3:GetObject", "s3:DeleteObject"]
        if check["leftover_key"]:
            admin_s3(stack).delete_object(Bucket=CUSTOM_BUCKET, Key=check["leftover_key"])
    assert [k for k in objects_under_bucket(stack, CUSTOM_BUCKET) if ".artifacts-check-" in k] == []


def objects_under_bucket(stack, bucket: str) -> list[str]:
    page = admin_s3(stack).list_objects_v2(Bucket=bucket)
    return [o["Key"] for o in page.get("Contents", [])]


def test_unreachable_missing_bucket_and_bad_keys_each_have_their_message(stack, key, custom_bucket):
    from artifacts_core.servers import free_port

    agent = new_agent(stack, key)
    s3 = stack["s3"]
    closed = f"http://127.0.0.1:{free_port()}"
    cases = {
        "unreachable": custom(stack, s3.access_key, s3.secret_key, endpoint=closed),
        "bucket": custom(stack, s3.access_key, s3.secret_key, bucket="no-such-bucket-here"),
        "credentials": custom(stack, s3.access_key, "not-the-secret"),
    }
    for problem, fields in cases.items():
        status, check = http(stack, "POST", f"/agents/{agent['id']}/storage-check", fields, key)
        assert status == 200 and (check["ok"], check["problem"]) == (False, problem), check
    assert "cannot reach" in http(stack, "POST", f"/agents/{agent['id']}/storage-check", cases["unreachable"],
                                  key)[1]["message"]
    assert "does not exist" in http(stack, "POST", f"/agents/{agent['id']}/storage-check", cases["bucket"],
                                    key)[1]["message"]
    status, err = http(stack, "POST", f"/agents/{agent['id']}/storage-check",
                       {"region": "", "bucket": "b", "access_key_id": "a", "secret_access_key": "s"}, key)
    assert status == 422 and "region is required" in err["message"]


def test_custom_storage_keys_are_sealed_masked_and_never_logged(stack, key, custom_bucket, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="artifacts")  # whatever an earlier test (the CLI's) set
    agent = new_agent(stack, key)
    op(stack, key, agent["id"], "exists", path="x")  # (off: refused; nothing opened)
    enable_managed(stack, key, agent["id"])
    op(stack, key, agent["id"], "writeFile", path="managed.txt", content="on managed storage")
    ak, sk = s3_identity(stack, f"full-{agent['id']}", FOUR)
    status, view = http(stack, "PUT", f"/agents/{agent['id']}/workspace",
                        {"enabled": True, "storage": "custom", "custom": custom(stack, ak, sk)}, key)
    assert status == 200, view
    ws = view["workspace"]
    assert (ws["storage"], ws["bucket"], ws["prefix"]) == ("custom", CUSTOM_BUCKET, f"agents/{agent['id']}")
    assert ws["access_key_id"] == f"{ak[:4]}***{ak[-4:]}" and ws["secret_access_key"] == f"{sk[:4]}***{sk[-4:]}"
    assert [d["storage"] for d in view["detached_workspaces"]] == ["managed"]  # kept, with its data
    # the file API now writes into the customer's bucket, at the agent's prefix
    assert op(stack, key, agent["id"], "exists", path="managed.txt")[1]["exists"] is False
    assert op(stack, key, agent["id"], "writeFile", path="big.bin", encoding="base64",
              content=base64.b64encode(b"\x01" * (100 << 10)).decode())[0] == 200
    assert [k for k in objects_under_bucket(stack, CUSTOM_BUCKET) if k.startswith(f"agents/{agent['id']}/")]
    # never in clear: database, answers, logs
    db = sqlite3.connect(stack["db"])
    dump = "\n".join(db.iterdump())
    assert sk not in dump and ak not in dump
    for path in (f"/agents/{agent['id']}", "/agents"):
        assert sk not in json.dumps(http(stack, "GET", path, key=key)[1])
    # every line the orchestrator logs (botocore's own DEBUG output is kept at INFO by the
    # orchestrator's entry point, quiet_third_party_loggers; the test's IAM calls log the keys)
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(("artifacts", "aiohttp")))
    assert ours and sk not in ours and ak not in ours
    # back to managed: the kept workspace and its files return; the custom one is kept in turn
    view = enable_managed(stack, key, agent["id"])
    assert view["workspace"]["storage"] == "managed"
    assert [d["storage"] for d in view["detached_workspaces"]] == ["custom"]
    assert op(stack, key, agent["id"], "readFile", path="managed.txt")[1]["content"] == "on managed storage"


def test_deleting_an_agent_keeps_or_deletes_its_workspaces_as_asked(stack, api, key):
    kept, gone = new_agent(stack, key, "kept"), new_agent(stack, key, "gone")
    for x in (kept, gone):
        enable_managed(stack, key, x["id"])
        op(stack, key, x["id"], "writeFile", path="f", content="x")
    t = http(stack, "POST", f"/agents/{kept['id']}/tokens", {}, key)[1]["token"]
    status, view = http(stack, "DELETE", f"/agents/{kept['id']}", key=key)
    assert status == 200 and view["deleted_at"]
    assert op(stack, t, kept["id"], "exists", path="f")[0] == 401
    assert http(stack, "GET", f"/workspaces/~/agent-{kept['id']}", key=key)[1]["status"] == "active"
    assert http(stack, "DELETE", f"/agents/{gone['id']}?delete_workspaces=true", key=key)[0] == 200
    assert wait_deleted(api, f"agent-{gone['id']}").status == "deleted"
    assert objects_under(stack, f"agents/{gone['id']}") == []
    assert http(stack, "GET", f"/agents/{gone['id']}", key=key)[0] == 404


def test_deleting_the_workspace_detaches_it_from_its_agent(stack, api, key):
    agent = new_agent(stack, key)
    enable_managed(stack, key, agent["id"])
    api.workspaces.delete(f"agent-{agent['id']}")
    wait_deleted(api, f"agent-{agent['id']}")
    view = http(stack, "GET", f"/agents/{agent['id']}", key=key)[1]
    assert view["workspace_enabled"] is False
    assert op(stack, key, agent["id"], "exists", path="x")[1]["code"] == "workspace_off"
    view = enable_managed(stack, key, agent["id"])  # a fresh workspace under the same name
    assert view["workspace"]["status"] == "active"
    assert op(stack, key, agent["id"], "exists", path="x")[1]["exists"] is False


def test_bodies_are_bounded_per_route(stack, key):
    agent = new_agent(stack, key)
    status, _err = http(stack, "POST", "/agents", raw=b'{"name": "' + b"x" * (70 << 10) + b'"}', key=key)
    assert status == 413
    enable_managed(stack, key, agent["id"])
    content = base64.b64encode(b"\0" * (1 << 20)).decode()  # 1 MiB of binary is fine on a file route
    assert op(stack, key, agent["id"], "writeFile", path="zeros", content=content, encoding="base64")[0] == 200
