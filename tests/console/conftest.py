"""The console's browser tests run on the orchestrator's real stack (orchestrator_stack.py)."""

from orchestrator_stack import _reset_clock, stack  # noqa: F401 - fixtures
