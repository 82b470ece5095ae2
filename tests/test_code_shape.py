"""The shape of the package source, read as text and AST (nothing is imported, so this is fast).

* no function or method longer than ``MAX_LINES`` lines or taking more than ``MAX_PARAMS``
  parameters, the typer commands of ``mtlsi_edge/cli/`` excepted (their options are their
  parameters);
* the runtime targets' names are compared only where targets are dispatched: ``targets/``, the
  runtime backends (``mtlsi_edge/backends/``) and the CLI (``mtlsi_edge/cli/``);
* ``mtlsi_edge/bundle.py`` stays under ``BUNDLE_MAX_LINES`` lines.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The folders installed as the package (pyproject.toml [tool.setuptools] package-dir).
SOURCES = ("mtlsi_edge", "targets", "quantize", "calibration")
CLI = "mtlsi_edge/cli/"
MAX_LINES = 80  # def line to last line, decorators excluded
MAX_PARAMS = 8  # positional-only + ordinary + keyword-only + *args + **kwargs, less self/cls
BUNDLE_MAX_LINES = 300

TARGET_NAMES = frozenset({"torch", "onnxruntime", "openvino", "tensorrt", "torch-tensorrt"})
#: Where a target name may be compared: the targets, the runtime backends and the CLI.
TARGET_NAME_HOMES = ("targets/", "mtlsi_edge/backends/", CLI)
_COMPARISONS = (ast.Eq, ast.NotEq, ast.In, ast.NotIn)


@functools.cache
def _sources() -> dict[str, tuple[str, ast.Module]]:
    """``{repo-relative posix path: (text, AST)}`` of every ``.py`` file in ``SOURCES``."""
    out = {}
    for folder in SOURCES:
        for p in sorted((ROOT / folder).rglob("*.py")):
            text = p.read_text(encoding="utf-8")
            out[p.relative_to(ROOT).as_posix()] = (text, ast.parse(text, filename=str(p)))
    return out


def _is_typer_option(node: ast.expr) -> bool:
    """``typer.Option(...)`` or ``typer.Argument(...)``."""
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "typer"
            and node.func.attr in ("Option", "Argument"))


def _typer_option_names(tree: ast.Module) -> set[str]:
    """Module-level names bound to a typer option (``_TARGET = typer.Option(...)``), which
    commands use as defaults like the calls themselves."""
    return {t.id for st in tree.body if isinstance(st, ast.Assign) and _is_typer_option(st.value)
            for t in st.targets if isinstance(t, ast.Name)}


def _is_typer_command(fn: ast.FunctionDef | ast.AsyncFunctionDef, option_names: set[str]) -> bool:
    defaults = [*fn.args.defaults, *(d for d in fn.args.kw_defaults if d is not None)]
    return any(_is_typer_option(d) or (isinstance(d, ast.Name) and d.id in option_names)
               for d in defaults)


def _n_params(args: ast.arguments) -> int:
    positional = [*args.posonlyargs, *args.args]
    n = (len(positional) + len(args.kwonlyargs) + (args.vararg is not None)
         + (args.kwarg is not None))
    return n - bool(positional and positional[0].arg in ("self", "cls"))


def _function_offenders(path: str, tree: ast.Module) -> list[tuple[str, int, str]]:
    option_names = _typer_option_names(tree) if path.startswith(CLI) else set()
    bad = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        lines, params = fn.end_lineno - fn.lineno + 1, _n_params(fn.args)
        if lines <= MAX_LINES and params <= MAX_PARAMS:
            continue
        if path.startswith(CLI) and _is_typer_command(fn, option_names):
            continue
        bad.append((path, fn.lineno, f"{fn.name} ({lines} lines, {params} params)"))
    return bad


def function_shape_offenders() -> list[str]:
    """``path:line name (N lines, M params)`` for each function or method (nested ones too)
    over ``MAX_LINES`` lines or ``MAX_PARAMS`` parameters, typer commands in the CLI excepted."""
    bad = [o for path, (_, tree) in _sources().items() for o in _function_offenders(path, tree)]
    return [f"{path}:{line} {what}" for path, line, what in sorted(bad)]


def _names_a_target(node: ast.expr) -> bool:
    """A string constant that is a target name, or a tuple/list/set literal holding one."""
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_names_a_target(e) for e in node.elts)
    return (isinstance(node, ast.Constant) and isinstance(node.value, str)
            and node.value in TARGET_NAMES)


def _comparison_offenders(path: str, text: str,
                          tree: ast.Module) -> list[tuple[str, int, int, str]]:
    bad = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        if any(isinstance(op, _COMPARISONS)
               and (_names_a_target(operands[i]) or _names_a_target(operands[i + 1]))
               for i, op in enumerate(node.ops)):
            snippet = " ".join((ast.get_source_segment(text, node) or "").split())
            bad.append((path, node.lineno, node.col_offset, snippet))
    return bad


def target_comparison_offenders() -> list[str]:
    """``path:line source`` for each ``==``/``!=``/``in``/``not in`` with a target name on
    either side, outside ``TARGET_NAME_HOMES`` (format names such as OpenVINO's IR count too)."""
    bad = [o for path, (text, tree) in _sources().items()
           if not path.startswith(TARGET_NAME_HOMES)
           for o in _comparison_offenders(path, text, tree)]
    return [f"{path}:{line} {snippet}" for path, line, _, snippet in sorted(bad)]


def test_functions_are_short_with_few_parameters():
    bad = function_shape_offenders()
    if bad:
        pytest.fail(f"{len(bad)} functions over {MAX_LINES} lines or {MAX_PARAMS} parameters "
                    "(split them, or group parameters into an options object):\n"
                    + "\n".join(bad), pytrace=False)


def test_target_names_are_compared_only_where_targets_are_dispatched():
    bad = target_comparison_offenders()
    if bad:
        pytest.fail(f"{len(bad)} comparisons with a target name outside "
                    f"{', '.join(TARGET_NAME_HOMES)} (ask the target instead):\n"
                    + "\n".join(bad), pytrace=False)


def test_bundle_module_is_small():
    text, _ = _sources()["mtlsi_edge/bundle.py"]
    n = len(text.splitlines())
    if n >= BUNDLE_MAX_LINES:
        pytest.fail(f"mtlsi_edge/bundle.py has {n} lines (must be under {BUNDLE_MAX_LINES})",
                    pytrace=False)


def test_the_checks_see_the_package():
    """Guard against a check that passes because it read nothing."""
    paths = _sources()
    assert "mtlsi_edge/bundle.py" in paths and "mtlsi_edge/cli/run.py" in paths
    for folder in SOURCES:
        assert any(p.startswith(f"{folder}/") for p in paths), folder


_SAMPLE = """\
import typer

_OUT = typer.Option(None)


class C:
    def method(self, a, b, c, d, e, f, g, h):
        return a


def nine(a, /, b, *c, d, e, f, g, h, **i):
    if a == "torch" or "onnx" != b or c in ("onnx", "openvino") or d not in ["x"]:
        return "tensorrt" < e or f is "torch"


def command(a, b, c, d, e, f, g, h, i=typer.Option(None)):
    return a


def shared(a, b, c, d, e, f, g, h, i=_OUT):
    return a


@typer.Option
def fits():
""" + "    x = 1\n" * (MAX_LINES - 1) + "\n\ndef too_long():\n" + "    x = 1\n" * MAX_LINES


def test_the_checks_on_a_sample():
    """Eight parameters besides ``self`` pass, nine do not; ``MAX_LINES`` lines (decorators
    excluded) pass, one more does not; typer commands are exempt in the CLI only; ``<`` and
    ``is`` are not the comparisons sought, and a tuple holding a target name is one."""
    tree = ast.parse(_SAMPLE)
    too_long = f"too_long ({MAX_LINES + 1} lines, 0 params)"
    elsewhere = {name for _, _, name in _function_offenders("mtlsi_edge/x.py", tree)}
    assert elsewhere == {"nine (3 lines, 9 params)", "command (2 lines, 9 params)",
                         "shared (2 lines, 9 params)", too_long}
    in_cli = {name for _, _, name in _function_offenders(f"{CLI}x.py", tree)}
    assert in_cli == {"nine (3 lines, 9 params)", too_long}
    compared = [(line, snippet) for _, line, _, snippet
                in _comparison_offenders("quantize/x.py", _SAMPLE, tree)]
    assert compared == [(12, 'a == "torch"'), (12, 'c in ("onnx", "openvino")')]
