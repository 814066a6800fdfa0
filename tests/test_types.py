"""The packages type-check clean under the project's mypy configuration (``[tool.mypy]`` in
pyproject.toml), as tests/test_lint.py keeps them clean under ruff: a seam passed the wrong object,
a None that reaches an attribute access, or a concern using state nobody declared fails the suite.

mypy keeps its incremental cache in ``.mypy_cache`` at the root (gitignored): a first run checks
everything (~10 s of CPU), a rerun only what changed (~1 s)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_mypy_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")],
                            cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout, result.stdout
