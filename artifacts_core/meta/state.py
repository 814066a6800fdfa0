"""``EngineState``: what every concern of the metadata engine shares, declared where it is owned.

``RedisMetaEngine`` (``engine.py``) is composed by concern; each concern class derives from this
one, or from the concern it builds on (locks on sessions; the namespace, reclaim and replace on
the data map), so what it uses is declared by a class it names, not expected of a host:

- ``keys``: the workspace's key names (``keys.py``);
- ``client``: the one choke point every call goes through (``client.py``);
- ``setting``: the volume's ``Setting``, None until ``load()`` or ``format()`` reads it;
- ``sid``: this client's session id, 0 until ``new_session`` registers one.
"""

from __future__ import annotations

from artifacts_core.meta.client import MetaClient
from artifacts_core.meta.format import Setting
from artifacts_core.meta.keys import Keys


class EngineState:
    """The state the engine's concerns share (see the module note)."""

    def __init__(self, keys: Keys, client: MetaClient) -> None:
        self.keys = keys
        self.client = client
        self.setting: Setting | None = None
        self.sid = 0
