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


# -- the two halves (docs/design.md, "Code layout") ------------------------------------------
#: Layers from the bottom up: (name, half, module prefixes).  A module may import modules of
#: its own layer or a lower one only; ``runtime`` layers never import a ``build`` one.  The
#: first matching prefix wins (longest prefixes are listed first where they overlap).
LAYERS = [
    ("base", "runtime", ["mtlsi_edge._version", "mtlsi_edge.errors", "mtlsi_edge.inputs",
                         "mtlsi_edge.machine", "mtlsi_edge.fileio", "mtlsi_edge.stats",
                         "mtlsi_edge.timing", "mtlsi_edge.native", "mtlsi_edge.precisions"]),
    ("tasks", "runtime", ["mtlsi_edge.kinds", "mtlsi_edge.tasks", "mtlsi_edge.weights",
                          "mtlsi_edge.signing"]),
    ("backends", "runtime", ["mtlsi_edge.backends"]),
    ("bundle", "runtime", ["mtlsi_edge.qdq", "mtlsi_edge.bundle", "mtlsi_edge.verify"]),
    ("runtime", "runtime", ["mtlsi_edge.runtime"]),
    ("profiler", "runtime", ["mtlsi_edge.profiler.bench", "mtlsi_edge.profiler.report",
                             "mtlsi_edge.profiler.run", "mtlsi_edge.profiler"]),
    ("model", "build", ["mtlsi_edge.model", "mtlsi_edge.losses", "mtlsi_edge.metrics",
                        "mtlsi_edge.objectives"]),
    ("data", "build", ["mtlsi_edge.data"]),
    ("train", "build", ["mtlsi_edge.export", "mtlsi_edge.train"]),
    ("targets", "build", ["mtlsi_edge.targets"]),
    ("deploy", "build", ["mtlsi_edge.compiler", "mtlsi_edge.calibration", "mtlsi_edge.quantize",
                         "mtlsi_edge.deploy", "mtlsi_edge.prune", "mtlsi_edge.tune",
                         "mtlsi_edge.evaluation", "mtlsi_edge.profiler.plots"]),
    ("app", "app", ["mtlsi_edge.cli", "mtlsi_edge.__main__"]),
]
#: The root package (its lazy public API names both halves) sits above everything.
ROOT = "mtlsi_edge"
#: Packages the runtime half never imports, wherever the statement sits.
HEAVY = ("torch", "torchvision", "timm", "nncf", "torch_pruning", "onnxscript", "scipy",
         "skimage", "matplotlib", "onnx", "onnxconverter_common", "torch_tensorrt")


def layer_of(module: str) -> tuple[int, str, str]:
    """(index, name, half) of the layer ``module`` belongs to (longest matching prefix)."""
    if module == ROOT:
        return len(LAYERS) - 1, "app", "app"
    best = None
    for i, (name, half, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if module == p or module.startswith(p + "."):
                if best is None or len(p) > best[0]:
                    best = (len(p), (i, name, half))
    assert best is not None, f"{module} is in no layer of LAYERS"
    return best[1]


def external_imports(source: str) -> set[str]:
    """Top-level names of the non-repo packages a source imports (every statement)."""
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_every_module_has_a_layer():
    for name in module_files():
        layer_of(name)


def test_imports_only_go_down_and_runtime_never_reaches_build():
    bad = []
    for name, deps in import_graph().items():
        i, layer, half = layer_of(name)
        for d in sorted(deps):
            j, dlayer, dhalf = layer_of(d)
            if half == "runtime" and dhalf != "runtime":
                bad.append(f"{name} ({layer}, runtime) imports {d} ({dlayer}, {dhalf})")
            elif j > i:
                bad.append(f"{name} ({layer}) imports {d} from the higher layer {dlayer}")
    assert not bad, "\n".join(bad)


def test_runtime_modules_import_nothing_heavy():
    files = module_files()
    bad = []
    for name, f in files.items():
        if layer_of(name)[2] != "runtime":
            continue
        heavy = external_imports(f.read_text(encoding="utf-8")) & set(HEAVY)
        if heavy:
            bad.append(f"{name}: {', '.join(sorted(heavy))}")
    assert not bad, "runtime modules importing build-half packages:\n" + "\n".join(bad)


def package_of(module: str) -> str:
    """The component a module belongs to: its top-level sub-package or root-level module."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_no_cycle_between_packages():
    pg: dict[str, set[str]] = {}
    for name, deps in import_graph().items():
        p = package_of(name)
        pg.setdefault(p, set()).update(package_of(d) for d in deps if package_of(d) != p)
    pg.pop("mtlsi_edge", None)  # the root's lazy API (the facade above everything)
    for deps in pg.values():
        deps.discard("mtlsi_edge")
    cycle = find_cycle(pg)
    assert cycle is None, "package cycle: " + " -> ".join(cycle)


def test_layer_rules_catch_violations(tmp_path):
    """The checks above can fail: a runtime module importing torch in a function, or a build
    module, is reported."""
    assert external_imports("def f():\n    import torch.nn\n") == {"torch"}
    assert layer_of("mtlsi_edge.runtime.loop")[2] == "runtime"
    assert layer_of("mtlsi_edge.profiler.plots")[2] == "build"
    assert layer_of("mtlsi_edge.model.eager")[2] == "build"
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("mtlsi_edge.somewhere_new")
    assert find_cycle({"runtime": {"bundle"}, "bundle": {"runtime"}}) is not None
