"""Names the session's servers are started with, importable by any test folder (``conftest``
modules are not: every folder may have its own)."""

#: The bucket the session's SeaweedFS is created with; tests isolate themselves by prefix.
TEST_BUCKET = "artifacts-test"
