"""Placeholder: the reclaim concern of the metadata engine (see engine.py)."""


class ReclaimOps:
    pass
