"""Placeholder: the namespace concern of the metadata engine (see engine.py)."""


class NamespaceOps:
    pass
