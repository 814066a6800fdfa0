"""Placeholder: the sessions concern of the metadata engine (see engine.py)."""


class SessionOps:
    pass
