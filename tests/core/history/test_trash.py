"""The trash as a feature on the real servers: who deleted what and when, restore to the original
path or another, purge (docs/history.md "Trash")."""

from __future__ import annotations

import pytest

from artifacts_core.errors import Exists, NotFound


@pytest.fixture
def tvol(volume_factory):
    return volume_factory(format_options={"trash_days": 1})


def test_list_restore_and_purge(tvol):
    vol = tvol
    vol.makedirs("docs")
    vol.write_bytes("docs/plan.md", b"the plan")
    vol.write_bytes("other", b"o")
    vol.remove("docs/plan.md")
    vol.remove("other")
    items = {it.path: it for it in vol.trash.list()}
    assert set(items) == {"/docs/plan.md", "/other"}
    plan = items["/docs/plan.md"]
    assert plan.size == 8 and plan.session == vol.meta.sid and plan.by and plan.deleted > 0
    assert vol.trash.restore(plan.id) == "/docs/plan.md"
    assert vol.read_bytes("docs/plan.md") == b"the plan"
    vol.write_bytes("other", b"new one")
    with pytest.raises(Exists):
        vol.trash.restore(items["/other"].id)
    assert vol.trash.restore(items["/other"].id, to="docs/other-old") == "/docs/other-old"
    assert vol.read_bytes("docs/other-old") == b"o"
    assert vol.read_bytes("other") == b"new one"
    vol.remove("other")
    assert vol.trash.purge(older_than="1h") == 0
    assert vol.trash.purge() == 1
    assert vol.trash.list() == []
    with pytest.raises(NotFound):
        vol.trash.restore("2000-01-01-00/1-2-x")
