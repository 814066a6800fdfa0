"""The packages type-check clean under the project's mypy configuration (``[tool.mypy]`` in
pyproject.toml), as tests/test_lint.py keeps them clean under ruff: a seam passed the wrong object,
a None that reaches an attribute access, or a concern using state nobody declared fails the suite.

mypy's incremental cache lives under ``.mypy_cache`` at the root (gitignored), one per set of
installed distributions: mypy does not notice a library installed after it cached that library's
import as missing (python/mypy#5101), so a changed environment starts a fresh cache. A first run
checks everything (~10 s of CPU), a rerun only what changed (~1 s)."""

import hashlib
import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _cache_dir() -> Path:
    """``.mypy_cache/env-<hash of the installed distributions>``; caches of other environments go."""
    dists = sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions())
    name = "env-" + hashlib.sha256("\n".join(dists).encode()).hexdigest()[:16]
    base = ROOT / ".mypy_cache"
    for old in base.glob("env-*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return base / name


@pytest.mark.slow
def test_mypy_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
                             "--cache-dir", str(_cache_dir())],
                            cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout, result.stdout
