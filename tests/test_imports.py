"""No two modules of the project import each other (STYLE.md: "two modules importing each other"
is what to avoid; the shared piece goes into its own module).

The import graph is built with ``ast`` over every ``artifacts_*`` package, counting imports at any
depth — inside functions and ``if TYPE_CHECKING:`` blocks too, since a deferred import that only
dodges a cycle at load time is still a cycle. ``from package import name`` counts as an import of
the module ``package.name`` when that is a module, else of ``package``. A package and its own
submodules are one unit here (its ``__init__`` exposes them; they read its constants, such as
``artifacts_core.__version__``): importing a submodule always runs its package's ``__init__``
first, so such a pair has no load order to get wrong.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.glob("artifacts_*/**/*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest project module that ``name`` names or lies in, or None (not ours)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets.update(_resolve(alias.name, modules) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1])
                    source = f"{base}.{node.module}" if node.module else base
                else:
                    source = node.module or ""
                targets.update(_resolve(f"{source}.{alias.name}", modules) for alias in node.names)
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


def _same_unit(a: str, b: str) -> bool:
    return a.startswith(b + ".") or b.startswith(a + ".")


def two_module_cycles(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((a, b) for a, targets in graph.items() for b in targets
                  if a < b and a in graph.get(b, ()) and not _same_unit(a, b))


def test_the_graph_sees_the_project_and_deferred_imports():
    graph = import_graph()
    assert "artifacts_core.chunk.writer" in graph["artifacts_core.chunk.store"]
    # A function-level import counts (artifacts_fuse.daemon.serve imports the VFS adapter lazily):
    assert "artifacts_fuse.adapter" in graph["artifacts_fuse.daemon"]
    assert two_module_cycles({"a.x": {"a.y"}, "a.y": {"a.x"}, "a": {"a.x"}, "a.x.z": {"a.x"}}) == [("a.x", "a.y")]


def test_no_two_modules_import_each_other():
    cycles = two_module_cycles(import_graph())
    assert not cycles, ("modules importing each other (move the shared piece into its own module): "
                        + ", ".join(f"{a} <-> {b}" for a, b in cycles))
