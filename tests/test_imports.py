"""The package's import graph has no cycles — function-local imports included.

Rules of the graph (module granularity; docs/design.md, "Code layout"):

- nodes are the repo's modules: ``mtlsi_edge/**.py`` plus ``quantize/``, ``targets/`` and
  ``calibration/``, which install as ``mtlsi_edge.quantize`` / ``.targets`` / ``.calibration``;
  a package node is its ``__init__.py``;
- every ``import`` / ``from … import`` statement counts, wherever it sits (module level,
  function body, ``if TYPE_CHECKING``), relative forms resolved against the importing module;
- ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``;
- importing ``pkg.sub`` from outside ``pkg`` is also an edge to ``pkg``: Python runs
  ``pkg/__init__.py`` first (from inside ``pkg`` the package is already being initialised,
  so a package ``__init__`` importing its own submodules is not a cycle by itself);
- the root ``mtlsi_edge/__init__.py`` exports its API lazily (``_API`` + ``__getattr__``):
  each ``_API`` entry counts as an edge from ``mtlsi_edge`` to the module it names, so any
  module importing a name from the root package would close a cycle through it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: folder → dotted package it installs as (pyproject.toml ``package-dir``)
PACKAGE_DIRS = {
    "mtlsi_edge": "mtlsi_edge",
    "quantize": "mtlsi_edge.quantize",
    "targets": "mtlsi_edge.targets",
    "calibration": "mtlsi_edge.calibration",
}


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name → file, for every ``.py`` of the package folders."""
    out = {}
    for folder, pkg in PACKAGE_DIRS.items():
        for f in sorted((root / folder).rglob("*.py")):
            parts = list(f.relative_to(root / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([pkg, *parts])] = f
    return out


def _is_package(name: str, files: dict[str, Path]) -> bool:
    return name in files and files[name].name == "__init__.py"


def _lazy_exports(tree: ast.Module) -> list[str]:
    """Module names of a lazy ``_API = {"name": "module", …}`` table."""
    for node in tree.body:
        targets = [node.target] if isinstance(node, ast.AnnAssign) else getattr(node, "targets", [])
        if any(isinstance(t, ast.Name) and t.id == "_API" for t in targets):
            if isinstance(node.value, ast.Dict):
                return [v.value for v in node.value.values
                        if isinstance(v, ast.Constant) and isinstance(v.value, str)]
    return []


def imports_of(name: str, source: str, files: dict[str, Path]) -> set[str]:
    """The repo modules ``name`` imports (every statement, see the module docstring)."""
    tree = ast.parse(source)
    package = name if _is_package(name, files) else name.rpartition(".")[0]
    found: set[str] = set()

    def add(target: str) -> None:
        # the longest repo-module prefix of the dotted name (``a.b.C`` → ``a.b``)
        while target and target not in files:
            target = target.rpartition(".")[0]
        if target:
            found.add(target)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                add(sub if sub in files else mod)
    found.update(m for m in _lazy_exports(tree) if m in files)
    # importing pkg.sub from outside pkg runs pkg/__init__ first
    for target in list(found):
        parent = target.rpartition(".")[0]
        while parent and parent in files:
            if not (name == parent or name.startswith(parent + ".")):
                found.add(parent)
            parent = parent.rpartition(".")[0]
    found.discard(name)
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    files = module_files(root)
    return {n: imports_of(n, f.read_text(encoding="utf-8"), files) for n, f in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, …, a]``, or ``None`` (iterative DFS, sorted order)."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for start in sorted(graph):
        if state.get(start):
            continue
        stack = [(start, iter(sorted(graph.get(start, ()))))]
        path = [start]
        state[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                path.pop()
                state[node] = 2
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, iter(sorted(graph.get(nxt, ())))))
    return None


def test_find_cycle_on_synthetic_graphs():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]
    assert find_cycle({"x": {"y"}, "y": set(), "p": {"q"}, "q": {"r"}, "r": {"q"}}) == [
        "q", "r", "q"]


def test_imports_resolution(tmp_path):
    """Relative, function-local, package-``__init__`` and lazy-export edges are all seen."""
    pkg = tmp_path / "mtlsi_edge"
    (pkg / "sub").mkdir(parents=True)
    for folder in ("quantize", "targets", "calibration"):
        (tmp_path / folder).mkdir()
    (pkg / "__init__.py").write_text('_API = {"thing": "mtlsi_edge.a"}\n')
    (pkg / "a.py").write_text("def f():\n    from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("from . import b\n")
    (pkg / "sub" / "b.py").write_text("from mtlsi_edge.sub import x\nimport numpy\n")
    (tmp_path / "targets" / "t.py").write_text("from mtlsi_edge import __version__\n")
    g = import_graph(tmp_path)
    assert g["mtlsi_edge"] == {"mtlsi_edge.a"}
    assert g["mtlsi_edge.a"] == {"mtlsi_edge.sub", "mtlsi_edge.sub.b"}
    assert g["mtlsi_edge.sub"] == {"mtlsi_edge.sub.b"}
    assert g["mtlsi_edge.sub.b"] == {"mtlsi_edge.sub"}  # the package is initialising: a cycle
    assert g["mtlsi_edge.targets.t"] == {"mtlsi_edge"}
    assert find_cycle(g) == ["mtlsi_edge.sub", "mtlsi_edge.sub.b", "mtlsi_edge.sub"]


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    if cycle:
        pytest.fail("import cycle: " + " -> ".join(cycle))
