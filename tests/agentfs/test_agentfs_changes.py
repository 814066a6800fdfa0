"""The ``changes`` tool on real servers: one agent waits for another agent's output through the
workspace's journal; cursors page without loss; tool-call ids become the events' tags; the
Python API's ``vol.events`` (sync and async) over the same journal."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from artifacts_agentfs.aio import AsyncAgentFS
from artifacts_agentfs.api import AgentFS


def test_an_agent_waits_for_another_agents_output(volume_factory):
    writer, watcher = AgentFS(volume_factory()), AgentFS(volume_factory())
    writer.mkdir("out")
    start = watcher.changes()["cursor"]
    got: dict = {}

    def wait():
        t0 = time.monotonic()
        got["result"] = watcher.changes(cursor=start, path="out", wait=20)
        got["waited"] = time.monotonic() - t0

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.3)
    writer.write_file("elsewhere.txt", "not this")  # outside the path: does not end the wait
    time.sleep(0.2)
    assert writer.call("writeFile", {"path": "out/report.md", "content": "# done"}, call_id="call_7")["ok"]
    t.join(25)
    events = got["result"]["events"]
    assert [(e["op"], e["path"]) for e in events][-1] == ("replace_content", "out/report.md")
    assert events[-1]["tag"] == "call_7" and events[-1]["size"] == 6
    assert events[-1]["actor"]["frontend"] == "python" and 0.3 < got["waited"] < 10
    # the cursor goes on from there: nothing new yet, then the next change
    later = watcher.changes(cursor=got["result"]["cursor"])
    assert later["events"] == [] and later["cursor"] == got["result"]["cursor"]
    writer.delete_file("out/report.md")
    (gone,) = watcher.changes(cursor=later["cursor"])["events"]
    assert gone["op"] == "unlink" and gone["path"] is None and gone["name_path"] == "out/report.md"
    assert "tag" not in gone  # the tag ended with its call


def test_cursor_pages_are_bounded_and_lose_nothing(vol):
    fs = AgentFS(vol)
    for i in range(25):
        fs.write_file(f"f{i:02}", "x")
    seen, cursor = [], None
    while True:
        r = fs.changes(cursor=cursor, limit=10)
        seen += [e["path"] for e in r["events"]]
        cursor = r["cursor"]
        if not r["truncated"]:
            break
    assert seen == [f"f{i:02}" for i in range(25)]
    assert fs.call("changes", {"cursor": "soon"})["error"]["code"] == "EINVAL"
    assert fs.call("changes", {"wait": 600})["error"]["code"] == "EINVAL"


def test_vol_events_sync_and_async(volume_factory):
    a, b = volume_factory(), volume_factory()
    a.write_bytes("/one", b"1")
    assert [(e.op, e.path) for e in b.events(0)] == [("create", "/one"), ("commit", "/one")]

    async def follow() -> list:
        out = []
        async for ev in b.events(None, follow=True, timeout=10):
            out.append(ev.path)
            if len(out) == 2:
                return out
        return out

    async def main() -> list:
        task = asyncio.ensure_future(follow())
        await asyncio.sleep(0.5)
        await AsyncAgentFS(a).write_file("two", "2")
        await AsyncAgentFS(a).mkdir("three")
        return await asyncio.wait_for(task, 15)

    assert asyncio.run(main()) == ["/two", "/three"]


@pytest.mark.parametrize("since", ["1h", 0])
def test_vol_events_filters(vol, since):
    vol.makedirs("/a/b")
    vol.write_bytes("/a/b/c", b"data")
    vol.write_bytes("/z", b"z")
    assert {e.path for e in vol.events(since, path="/a/b")} == {"/a/b", "/a/b/c"}
    sid = vol.meta.sid
    assert len(list(vol.events(since, actor=str(sid)))) == len(list(vol.events(since)))
    assert list(vol.events(since, actor="host=nowhere")) == []


def test_concurrent_calls_keep_their_own_tags(vol):
    """Two tool calls running at once on one volume: every event carries its own call's id (a
    session-wide tag let one call's events carry the other's)."""
    fs = AgentFS(vol)
    start = fs.changes()["cursor"]
    errors: list = []

    def calls(who: str) -> None:
        for i in range(40):
            r = fs.call("writeFile", {"path": f"{who}/f{i}", "content": who}, call_id=f"{who}-{i}")
            if not r["ok"]:
                errors.append(r)

    fs.write_file("a/.keep", "")
    fs.write_file("b/.keep", "")
    start = fs.changes()["cursor"]
    threads = [threading.Thread(target=calls, args=(w,)) for w in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    events, cursor = [], start
    while True:
        r = fs.changes(cursor=cursor, limit=200)
        events += r["events"]
        cursor = r["cursor"]
        if not r["truncated"]:
            break
    tagged = [(e["path"], e.get("tag")) for e in events if e.get("path")]
    assert len(tagged) >= 80
    wrong = [(p, t) for p, t in tagged if t != p.replace("/f", "-")]
    assert wrong == []
