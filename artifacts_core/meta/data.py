"""Placeholder: the data concern of the metadata engine (see engine.py)."""


class DataOps:
    pass
