"""Placeholder: the locks concern of the metadata engine (see engine.py)."""


class LockOps:
    pass
