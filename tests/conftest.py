"""Shared fixtures and helpers for the tests.

One tiny random-weight model (``edge-effvit-b0`` at 64×96), one checkpoint of it, one static
ONNX export and one bundle per (target, precision) are built once per session and reused.

Plain helpers, imported as ``from conftest import ...`` (``tests/`` has no ``__init__.py``, so
pytest puts this folder on ``sys.path`` and this module is ``conftest``): ``STARTER`` and
``needs_starter`` (the embedded trained checkpoint), ``one_error_line`` (a CLI run that failed
cleanly).  The ``corrupt_outputs`` fixture injects faults into loaded runners.

Torch runs single-threaded inside these modules: on a shared 2-core machine, two OpenMP threads
spin-waiting against other processes made a 64×96 forward pass ~100× slower (3 s vs 0.02 s).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

VARIANT = "edge-effvit-b0"
SIZE = (64, 96)  # (H, W): 1/8 = 8×12 is not a multiple of the window (10): padding is exercised
BUNDLE_KINDS = [("torch", "fp32"), ("onnxruntime", "fp32"), ("openvino", "fp32"),
                ("openvino", "fp16")]

#: The embedded starter checkpoint (a trained model: the gates' thresholds are for those).
STARTER = Path(__file__).resolve().parents[1] / "mtlsi_edge" / "weights" / "starter.json"
needs_starter = pytest.mark.skipif(not STARTER.is_file(), reason="no embedded starter checkpoint")


def one_error_line(res, *words: str, code: int | None = None) -> str:
    """``res`` (a ``CliRunner`` result or a ``subprocess.CompletedProcess``) failed cleanly:
    a non-zero exit status (``code`` when given), no traceback on stdout or stderr, a
    ``SystemExit`` (not an escaped exception) under ``CliRunner``, and exactly one non-blank
    stderr line, starting with ``error: `` and containing each of ``words``.  Returns the line."""
    if hasattr(res, "returncode"):  # a real process
        status, out = res.returncode, (res.stdout or "") + (res.stderr or "")
    else:
        status, out = res.exit_code, res.output + (res.stderr or "")
        assert isinstance(res.exception, SystemExit), (repr(res.exception), out)
    assert "Traceback" not in out, out
    assert (status != 0) if code is None else (status == code), (status, out)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.fixture
def corrupt_outputs(monkeypatch):
    """``corrupt_outputs(owner, task, how=flip channels, when=always)``: the runners that
    ``owner.load`` returns (``owner``: a target or backend class) now pass their ``task`` output
    through ``how``; ``when`` gets ``load``'s arguments (after ``self``) and picks the loads
    affected.  Undone when the test ends."""

    def install(owner: type, task: str, how: Callable = lambda a: a[:, ::-1].copy(),
                when: Callable[..., bool] = lambda *a, **k: True) -> None:
        real = owner.load

        def load(self, *a, **k):
            runner = real(self, *a, **k)
            if not when(*a, **k):
                return runner
            call = type(runner).__call__

            class Faulty(type(runner)):
                def __call__(self, batch):
                    out = call(self, batch)
                    out[task] = how(out[task])
                    return out

            runner.__class__ = Faulty
            return runner

        monkeypatch.setattr(owner, "load", load)

    return install


@contextlib.contextmanager
def _one_thread():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


@pytest.fixture(scope="module")
def torch_one_thread():
    """Use in these modules (``pytestmark``); restored when the module ends."""
    with _one_thread():
        yield


@pytest.fixture(scope="session")
def tiny_model():
    from mtlsi_edge.model import create_model

    torch.manual_seed(0)
    return create_model(VARIANT, input_size=SIZE).eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_model, tmp_path_factory) -> Path:
    from mtlsi_edge.train.checkpoint import save_checkpoint

    stem = tmp_path_factory.mktemp("ckpt") / "tiny"
    return save_checkpoint(stem, tiny_model, {"model_config": tiny_model.cfg.to_dict(),
                                              "task_set": tiny_model.task_set.to_dict(),
                                              "variant": VARIANT})


@pytest.fixture(scope="session")
def tiny_onnx(tiny_model, tmp_path_factory) -> Path:
    """Static (64×96, stride 4) export of ``tiny_model``."""
    from mtlsi_edge.export import export_onnx

    with _one_thread():
        return export_onnx(tiny_model, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


def _threads(target: str) -> int | None:
    """One inference thread (spinning thread pools crawl on a loaded machine); not for torch,
    whose runner would set the process-wide torch thread count."""
    return None if target == "torch" else 1


#: How each bundle is compiled: from the checkpoint (parity against PyTorch) or, to skip a
#: second export, from the static ONNX (parity against ONNX Runtime FP32).
FROM_ONNX = {"openvino"}


@pytest.fixture(scope="session")
def bundle(tiny_checkpoint, tiny_onnx, tmp_path_factory):
    """``bundle(target, precision)`` → bundle folder (compiled once per session)."""
    from mtlsi_edge.compiler import CompileRequest, compile_bundle
    from mtlsi_edge.targets import CompileOptions, get_target

    root = tmp_path_factory.mktemp("bundles")
    cache: dict[tuple[str, str], Path] = {}

    def get(target: str, precision: str = "fp32") -> Path:
        key = (target, precision)
        if key not in cache:
            ok, why = get_target(target).available()
            if not ok:
                pytest.skip(f"{target}: {why}")
            src = ({"model_file": tiny_onnx} if target in FROM_ONNX
                   else {"checkpoint": tiny_checkpoint})
            with _one_thread():
                # force for FP16: the gate's thresholds are for trained models; this random
                # model's near-zero depth makes relative differences meaningless (the gate
                # itself is tested in test_trust.py on the trained starter).
                cache[key] = compile_bundle(root / f"{target}-{precision}", CompileRequest(
                    target, precision, options=CompileOptions(threads=_threads(target)),
                    force=precision == "fp16", **src))
        return cache[key]

    return get


@pytest.fixture(scope="session")
def predictor(bundle):
    """``predictor(target, precision)`` → a Predictor on that bundle (cached; do not mutate)."""
    from mtlsi_edge.runtime.predictor import Predictor

    cache: dict[tuple[str, str], object] = {}

    def get(target: str, precision: str = "fp32"):
        key = (target, precision)
        if key not in cache:
            cache[key] = Predictor.from_bundle(bundle(target, precision),
                                               threads=_threads(target))
        return cache[key]

    return get


@pytest.fixture(scope="session")
def scene_bgr() -> np.ndarray:
    """A rendered indoor view, BGR uint8 120×160 (resize it to any frame size)."""
    from mtlsi_edge.data.synthindoor import render_sample

    return np.ascontiguousarray(render_sample(7, size=(120, 160)).image_rgb[:, :, ::-1])


@pytest.fixture(scope="session")
def frame(scene_bgr):
    """``frame(h, w)`` → the rendered view resized to h×w (BGR uint8, contiguous)."""

    def make(h: int, w: int) -> np.ndarray:
        return cv2.resize(scene_bgr, (w, h), interpolation=cv2.INTER_LINEAR)

    return make
