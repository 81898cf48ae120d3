"""The import graph of dynamo/ and baselines/ has no circle.

A circle (module A needs B, B needs A, possibly through others) means neither can be understood,
tested or replaced alone, and it is often held together by imports moved into functions. So the
graph counts every import a module can execute, read from the source (AST), not only those that
run at import time:

- imports at any depth: module level, inside functions and methods, in try/except;
- relative imports, resolved against the importing module's package;
- a function named as "module:function" in a string constant, the form the engine registry
  (dynamo/engines/registry.py) uses: a lazy import by name is still a dependency. A module started
  as a new process (`python -m dynamo.engines.openrlhf.entry`) is not an import and not counted;
- importing `a.b.c` runs `a/__init__.py` and `a/b/__init__.py` too, so it also counts as
  importing the packages `a` and `a.b` -- except the importer's own enclosing packages, which
  Python has already initialised before the importer runs (a package whose `__init__` imports
  its submodules is how a package publishes names, not a circle). A module that imports its own
  enclosing package by name (`from baselines import BASELINES` inside baselines/) does count.

Not counted: imports under `if TYPE_CHECKING:`, which never execute (annotations only).
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("dynamo", "baselines")

# (importer, imported) -> where: "path:line"
Edges = dict[tuple[str, str], str]


def module_files(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name -> file, packages named by their directory (`a.b` for a/b/__init__.py)."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            skip.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    return skip


def _targets(node: ast.AST, package: str, modules: dict[str, Path]) -> list[str]:
    """Modules of ours that an import statement or string constant names."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            base = ".".join(parts + ([base] if base else []))
        submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules]
        # `from pkg import submodule` needs the submodule; `from pkg import NAME` needs pkg's own code
        return submodules + ([base] if len(submodules) < len(node.names) else [])
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.count(":") == 1:
        name, _, attr = node.value.partition(":")
        return [name] if name in modules and attr.isidentifier() else []
    return []


def import_edges(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> tuple[dict[str, Path], Edges]:
    modules = module_files(root, packages)
    edges: Edges = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        own_packages = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        skip = _type_checking_nodes(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            for target in _targets(node, package, modules):
                parts = target.split(".")
                enclosing = {".".join(parts[:i]) for i in range(1, len(parts))} - own_packages
                for name in {target, *enclosing}:
                    if name in modules and name != module:
                        edges.setdefault((module, name), f"{path.relative_to(root)}:{node.lineno}")
    return modules, edges


def find_circle(modules: dict[str, Path], edges: Edges) -> list[str] | None:
    """One circle as a list of 'A -> B (file:line)' steps, or None when the graph has none."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for importer, imported in edges:
        graph[importer].add(imported)
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as err:
        cycle = err.args[1]  # [n0, n1, ..., n0], each needing the one before it
        return [f"{b} -> {a} ({edges[b, a]})" for a, b in zip(cycle, cycle[1:])]
    return None


def test_no_import_circle():
    modules, edges = import_edges()
    assert len(modules) > 50 and ("dynamo.config", "dynamo.validation") in edges  # the walk saw the code
    circle = find_circle(modules, edges)
    assert circle is None, "import circle (function-level imports count):\n  " + "\n  ".join(circle)


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


CLEAN = {
    "pkg/__init__.py": "from pkg.leaf import VALUE\n",  # a package publishing its submodule: no circle
    "pkg/leaf.py": "VALUE = 1\n",
    # needs leaf; pkg.lazy for annotations only (that import never runs, so it closes no circle)
    "pkg/user.py": "from typing import TYPE_CHECKING\nfrom pkg import leaf\n"
    "if TYPE_CHECKING:\n    from pkg.lazy import X\n",
    "pkg/lazy.py": "def f():\n    from .user import g\n",
}


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"pkg/leaf.py": "def f():\n    from pkg.lazy import f\n"}, "pkg.leaf -> pkg.lazy (pkg/leaf.py:2)"),
        ({"pkg/leaf.py": "from . import lazy\n"}, "pkg.leaf -> pkg.lazy (pkg/leaf.py:1)"),
        ({"pkg/leaf.py": "TARGET = 'pkg.lazy:f'\n"}, "pkg.leaf -> pkg.lazy (pkg/leaf.py:1)"),
        ({"pkg/leaf.py": "from pkg import VALUE\n"}, "pkg.leaf -> pkg (pkg/leaf.py:1)"),
    ],
    ids=["function-level", "relative", "by-name-in-a-string", "own-package-by-name"],
)
def test_circle_detector_finds_planted_circles(tmp_path, change, expected):
    """Positive control: the walk above can fail. A clean tree passes; each planted circle is found."""
    _write(tmp_path, CLEAN)
    assert find_circle(*import_edges(tmp_path, ("pkg",))) is None
    _write(tmp_path, change)
    circle = find_circle(*import_edges(tmp_path, ("pkg",)))
    assert circle is not None and expected in "\n".join(circle), circle
