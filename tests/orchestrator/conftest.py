"""The orchestrator tests' fixtures: ``stack`` (a real Redis, SeaweedFS with IAM and the
orchestrator over HTTP, one per test module) and ``api`` (a fresh account on it), from
``orchestrator_stack``, which the CLI's platform tests import too."""

from orchestrator_stack import api, stack  # noqa: F401 - fixtures
