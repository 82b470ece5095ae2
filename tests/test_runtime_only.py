"""The runtime half works with the build half absent (docs/design.md, "Code layout").

The device entry points — ``mtlsi-edge check``, ``Predictor.from_bundle(path)(frame)``,
``demo --headless --record``, ``profile --bundle`` and every ``--help`` — run in subprocesses
in which the build half's packages (:data:`test_imports.HEAVY`: torch, timm, NNCF, ONNX, SciPy,
…) look uninstalled: a ``sitecustomize`` wraps every ``sys.meta_path`` finder so that these
names are not found (``import torch`` raises ``ModuleNotFoundError``, ``find_spec`` answers
``None``, ``importlib.metadata`` does not list them), as in a ``pip install
mtlsi-edge[openvino]``.  The bundles are the session's (``conftest.bundle``); outputs are
compared with the in-process full install's Predictor.  ``.ci/runtime_check.sh`` does the same
in a real runtime-only venv built from the wheel.

The runtime half (and the CLI that runs it) must stay valid Python 3.10
(``requires-python``): vermin and the 3.10 grammar check every such module.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_imports import HEAVY, layer_of, module_files

#: sitecustomize of the subprocesses.  MTLSI_HIDE: comma-separated top-level packages to hide
#: (empty: hide nothing, only report).  MTLSI_REPORT: a JSON file written at exit by the first
#: process only (children do not inherit it): the modules loaded and the hidden names asked for.
SITECUSTOMIZE = '''
import atexit, json, os, sys

_HIDE = frozenset(n for n in os.environ.get("MTLSI_HIDE", "").split(",") if n)
_DISTS = frozenset(n.replace("_", "-") for n in _HIDE) | {"scikit-image"} if _HIDE else set()
_ASKED = []


class _Hidden:
    """A meta-path finder that does not find the hidden packages (so importlib.util.find_spec
    answers None and ``import`` raises ModuleNotFoundError: No module named ...)."""

    def __init__(self, finder):
        self._finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in _HIDE:
            _ASKED.append(name)
            return None
        find = getattr(self._finder, "find_spec", None)
        return None if find is None else find(name, path, target)

    def find_distributions(self, *args, **kwargs):
        find = getattr(self._finder, "find_distributions", None)
        for d in (() if find is None else find(*args, **kwargs)):
            name = (d.metadata["Name"] or "").lower().replace("_", "-")
            if name not in _DISTS:
                yield d

    def __getattr__(self, attr):
        return getattr(self._finder, attr)


if _HIDE:
    for _n in _HIDE:
        sys.modules.pop(_n, None)
    sys.meta_path[:] = [_Hidden(f) for f in sys.meta_path]

_REPORT = os.environ.pop("MTLSI_REPORT", "")
if _REPORT:
    def _write_report():
        loaded = sorted(k for k, v in list(sys.modules.items()) if v is not None)
        with open(_REPORT, "w") as f:
            json.dump({"loaded": loaded, "asked": _ASKED}, f)

    atexit.register(_write_report)
'''


def heavy_in(modules) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


@pytest.fixture(scope="session")
def hide_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("runtime-only")
    (d / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return d


@pytest.fixture
def run_runtime(hide_dir, tmp_path):
    """``run_runtime(args, hide=True, report=False, timeout=120)``: run ``python ARGS`` in
    ``tmp_path`` with the build half hidden; returns (CompletedProcess, report dict or None)."""

    def run(args: list[str], hide: bool = True, report: bool = False, timeout: float = 120):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(hide_dir), *filter(None, [
            env.get("PYTHONPATH")])])
        env["MTLSI_HIDE"] = ",".join(HEAVY) if hide else ""
        env.pop("DISPLAY", None)
        env.pop("WAYLAND_DISPLAY", None)
        env["COLUMNS"] = "200"  # no wrapping of one-line messages in captured output
        rep_path = tmp_path / f"report-{len(list(tmp_path.glob('report-*.json')))}.json"
        if report:
            env["MTLSI_REPORT"] = str(rep_path)
        else:
            env.pop("MTLSI_REPORT", None)
        proc = subprocess.run([sys.executable, *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=timeout)
        rep = None
        if report:
            assert rep_path.exists(), f"no module report\n{proc.stdout}\n{proc.stderr}"
            rep = json.loads(rep_path.read_text())
        return proc, rep

    return run


def cli(*args: str) -> list[str]:
    return ["-m", "mtlsi_edge.cli", *map(str, args)]


def _out(proc) -> str:
    return f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


# -- the blocker really blocks -------------------------------------------------------------
def test_hidden_packages_look_uninstalled(run_runtime):
    code = textwrap.dedent("""
        import importlib.metadata, importlib.util, json, sys
        from mtlsi_edge.backends import build_half_installed
        out = {"find_spec": {}, "import": {}}
        for m in sys.argv[1].split(","):
            out["find_spec"][m] = importlib.util.find_spec(m) is not None
            try:
                __import__(m)
                out["import"][m] = "imported"
            except ModuleNotFoundError as e:
                out["import"][m] = str(e)
        try:
            importlib.metadata.version("torch")
            out["torch_dist"] = True
        except importlib.metadata.PackageNotFoundError:
            out["torch_dist"] = False
        out["build_half"] = build_half_installed()
        try:  # a runtime path that reached the build half would fail like this
            import mtlsi_edge.model  # noqa: F401
            out["model"] = "imported"
        except ModuleNotFoundError as e:
            out["model"] = e.name
        import numpy, cv2  # the runtime's own dependencies still import
        print(json.dumps(out))
    """)
    proc, _ = run_runtime(["-c", code, ",".join(HEAVY)])
    assert proc.returncode == 0, _out(proc)
    out = json.loads(proc.stdout)
    assert not any(out["find_spec"].values()), out["find_spec"]
    for m, msg in out["import"].items():
        assert msg == f"No module named '{m}'", (m, msg)
    assert out["torch_dist"] is False
    assert out["build_half"] is False
    assert out["model"] in HEAVY, out["model"]
    # control: the same process without hiding finds torch (this suite runs the full install)
    proc, _ = run_runtime(["-c", "import importlib.util as u; print(u.find_spec('torch').name)"],
                          hide=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "torch", _out(proc)


# -- check -----------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["onnxruntime", "openvino"])
def test_check_passes_without_the_build_half(run_runtime, bundle, target):
    b = bundle(target)
    proc, rep = run_runtime(cli("check", b), report=True)
    assert proc.returncode == 0, _out(proc)
    assert proc.stdout.rstrip().endswith("pass"), _out(proc)
    loaded = set(rep["loaded"])
    assert {"mtlsi_edge.verify", "mtlsi_edge.backends", target} <= loaded  # the dump works
    assert heavy_in(loaded) == []


def test_check_imports_nothing_heavy_in_the_full_install(run_runtime, bundle):
    """With torch & co. installed and findable, ``check`` still does not import them."""
    proc, rep = run_runtime(cli("check", bundle("openvino")), hide=False, report=True)
    assert proc.returncode == 0, _out(proc)
    assert "mtlsi_edge.verify" in rep["loaded"]
    assert heavy_in(rep["loaded"]) == []


# -- Predictor -------------------------------------------------------------------------------
PREDICT = textwrap.dedent("""
    import sys
    import numpy as np
    from mtlsi_edge import Predictor

    bundle, frames, out = sys.argv[1:4]
    pred = Predictor.from_bundle(bundle, threads=1)
    res = {}
    with np.load(frames) as f:
        for name in f.files:
            for task, a in pred(f[name]).items():
                res[f"{name}/{task}"] = a
    np.savez(out, **res)
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[4].split(","))
    assert not heavy, heavy
""")


@pytest.mark.parametrize("target", ["onnxruntime", "openvino"])
def test_predictor_matches_the_full_install(run_runtime, bundle, predictor, frame, target,
                                            tmp_path):
    frames = {"f120x160": frame(120, 160), "f64x96": frame(64, 96), "f97x131": frame(97, 131)}
    np.savez(tmp_path / "frames.npz", **frames)
    proc, _ = run_runtime(["-c", PREDICT, str(bundle(target)), str(tmp_path / "frames.npz"),
                           str(tmp_path / "out.npz"), ",".join(HEAVY)])
    assert proc.returncode == 0, _out(proc)
    full = predictor(target)
    with np.load(tmp_path / "out.npz") as got:
        expected = {f"{n}/{t}": a for n, f in frames.items() for t, a in full(f).items()}
        assert sorted(got.files) == sorted(expected)
        for key, want in expected.items():
            have = got[key]
            assert have.dtype == want.dtype and have.shape == want.shape, key
            if want.dtype.kind in "iu":  # class labels
                np.testing.assert_array_equal(have, want, err_msg=key)
            else:
                diff = float(np.max(np.abs(have.astype(np.float64) - want)))
                assert diff <= 1e-5, f"{key}: max abs diff {diff:.3g}"


# -- demo and profile ------------------------------------------------------------------------
def test_demo_headless_records(run_runtime, bundle, frame, tmp_path):
    video = tmp_path / "in.mp4"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (128, 96))
    assert w.isOpened()
    for i in range(8):
        w.write(np.ascontiguousarray(np.roll(frame(96, 128), 4 * i, axis=1)))
    w.release()
    rec = tmp_path / "out.mp4"
    proc, rep = run_runtime(cli("demo", "--bundle", bundle("openvino"), "--source", video,
                                "--headless", "--max-frames", 5, "--record", rec),
                            report=True)
    assert proc.returncode == 0, _out(proc)
    assert "5 frames" in proc.stdout, _out(proc)
    cap = cv2.VideoCapture(str(rec))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == 5, f"{rec}: {n} frames"
    assert heavy_in(rep["loaded"]) == []


def test_profile_runs(run_runtime, bundle, tmp_path):
    proc, rep = run_runtime(cli("profile", "--bundle", bundle("onnxruntime"), "--runs", 3,
                                "--name", "rt"), report=True)
    assert proc.returncode == 0, _out(proc)
    doc = json.loads((tmp_path / "runs/profile/rt/profile.json").read_text())
    assert doc, "empty profile.json"
    assert heavy_in(rep["loaded"]) == []


# -- the CLI's build commands and --help -----------------------------------------------------
#: Every build-half command line (with arguments, so that only the missing half can stop it).
BUILD_CALLS = [
    ["compile", "--target", "openvino", "--out", "x"], ["calibrate"], ["quantize"], ["deploy"],
    ["prune", "--data", "d"], ["info"], ["export"], ["train"], ["eval"], ["tune"],
    ["data", "synth"],
]
#: Device commands that compile the embedded model when given no bundle: exit 2 with an error
#: line naming the extra.
COMPILING_CALLS = [["demo", "--headless"], ["profile"]]

#: In one process: every command's --help (found from the app, groups recursively), and the
#: build commands; stdout and stderr together, as a user sees them.
CLI_SWEEP = textwrap.dedent("""
    import contextlib, io, json, sys
    import typer
    from mtlsi_edge.cli import app

    def call(args):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            try:
                app(args, prog_name="mtlsi-edge")
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        return [code, buf.getvalue()]

    def helps(cmd, path):
        yield path + ["--help"]
        if hasattr(cmd, "list_commands"):  # a group (typer vendors its own click)
            ctx = cmd.context_class(cmd)
            for name in cmd.list_commands(ctx):
                yield from helps(cmd.get_command(ctx, name), path + [name])

    out = {"help": {}}
    for args in helps(typer.main.get_command(app), []):
        out["help"][" ".join(args)] = call(args)
    for kind, calls in json.loads(sys.argv[1]).items():
        out[kind] = {" ".join(args): call(args) for args in calls}
    print(json.dumps(out))
""")


def test_cli_without_the_build_half(run_runtime):
    calls = {"build": BUILD_CALLS, "compiling": COMPILING_CALLS}
    proc, rep = run_runtime(["-c", CLI_SWEEP, json.dumps(calls)], report=True)
    assert proc.returncode == 0, _out(proc)
    out = json.loads(proc.stdout)
    helps = out["help"]
    assert len(helps) >= 15 and "data synth --help" in helps, sorted(helps)
    for args, (code, text) in helps.items():
        assert code == 0 and "Usage" in text, f"{args}: exit {code}\n{text}"
    for args, (code, text) in out["build"].items():
        lines = [ln for ln in text.splitlines() if ln.strip()]
        assert code == 2, f"{args}: exit {code}\n{text}"
        assert len(lines) == 1 and "[build]" in lines[0], f"{args}:\n{text}"
    for args, (code, text) in out["compiling"].items():
        errors = [ln for ln in text.splitlines() if ln.startswith("error:")]
        assert code == 2, f"{args}: exit {code}\n{text}"
        assert len(errors) == 1 and "[build]" in errors[0], f"{args}:\n{text}"
    assert heavy_in(rep["loaded"]) == []


def test_build_command_console_exit(run_runtime):
    """The real entry point: one line on stderr naming the extra, exit 2, nothing on stdout."""
    proc, _ = run_runtime(cli("compile", "--out", "x"))
    assert proc.returncode == 2, _out(proc)
    assert proc.stdout.strip() == ""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "mtlsi-edge[build]" in lines[0], _out(proc)
    proc, _ = run_runtime(cli("compile", "--help"))
    assert proc.returncode == 0 and "--target" in proc.stdout, _out(proc)


# -- Python 3.10 -----------------------------------------------------------------------------
#: The halves a device runs: the runtime layers and the CLI / root package above them.
DEVICE_HALVES = ("runtime", "app")


def _half(module: str) -> str | None:
    try:
        return layer_of(module)[2]
    except AssertionError:  # in no layer yet: test_imports.test_every_module_has_a_layer
        return None


def device_files() -> list[Path]:
    return [f for name, f in module_files().items() if _half(name) in DEVICE_HALVES]


def py310_violations(files: list[Path]) -> tuple[int, str]:
    """vermin's verdict on ``files`` for Python 3.10 (exit code, violations) plus the 3.10
    grammar (``ast.parse(feature_version=(3, 10))``: ``except*`` and other newer syntax)."""
    pytest.importorskip("vermin", reason="vermin is in the [test] extra")
    proc = subprocess.run([sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())",
                           "--target=3.10-", "--violations", "--no-tips", "--eval-annotations",
                           "-q", *map(str, files)], capture_output=True, text=True, timeout=300)
    report = proc.stdout + proc.stderr
    code = proc.returncode
    for f in files:
        try:
            ast.parse(f.read_text(encoding="utf-8"), str(f), feature_version=(3, 10))
        except SyntaxError as e:
            code = code or 1
            report += f"\n{f}:{e.lineno}: not Python 3.10 syntax: {e.msg}"
    return code, report.strip()


def test_device_half_is_python_310():
    files = device_files()
    assert len(files) > 20 and any(f.name == "predictor.py" for f in files)
    code, report = py310_violations(files)
    assert code == 0, "modules the runtime install runs need a newer Python than 3.10:\n" + report


@pytest.mark.parametrize("source, ok", [
    ("def f(x):\n    match x:\n        case 1:\n            return 2\n", True),  # 3.10
    ("x: int | None = None\n", True),
    ("try:\n    pass\nexcept* ValueError:\n    pass\n", False),  # 3.11
    ("import tomllib\n", False),
    ("from typing import Self\n", False),
    ("import datetime\nnow = datetime.datetime.now(datetime.UTC)\n", False),
    ("from enum import StrEnum\n", False),
])
def test_python_310_check_can_fail(tmp_path, source, ok):
    f = tmp_path / "m.py"
    f.write_text(source)
    code, report = py310_violations([f])
    assert (code == 0) == ok, report
