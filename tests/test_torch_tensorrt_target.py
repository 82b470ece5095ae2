"""torch-tensorrt target without a GPU: availability / version reasons, refusals, and the
bundle flow (checkpoint → compile → ``torch_tensorrt.save`` → bundle → ``load`` → Predictor)
with a stand-in ``torch_tensorrt`` whose save / load are ``torch.export``'s, the format
torch-tensorrt writes by default.  The real compile needs TensorRT and a GPU (skipped here)."""

from __future__ import annotations

import importlib.util
import inspect
import sys
import types

import numpy as np
import pytest
import torch

from mtlsi_edge.targets import TARGETS
from mtlsi_edge.targets.base import CompileOptions, TargetUnavailable
from mtlsi_edge.targets.torch_tensorrt import (
    PROGRAM_FILE,
    TorchTensorRTOptions,
    TorchTensorRTTarget,
    fp16_kwargs,
    version_problem,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_registered():
    t = TARGETS["torch-tensorrt"]
    assert isinstance(t, TorchTensorRTTarget) and t.precisions == ("fp32", "fp16")


@pytest.mark.skipif(importlib.util.find_spec("torch_tensorrt") is not None,
                    reason="torch-tensorrt is installed here")
def test_available_here_says_what_to_install():
    ok, why = TorchTensorRTTarget().available()
    assert not ok and "torch-tensorrt not installed" in why
    assert 'pip install "mtlsi-edge[tensorrt]"' in why and "Jetson" in why
    assert TorchTensorRTTarget().runtime_version() == "not installed"


def test_version_problem():
    assert version_problem("2.14.0", "2.14.1+cu130") is None
    msg = version_problem("2.8.0", "2.14.1")
    assert "torch-tensorrt 2.8.0 needs torch 2.8.x" in msg and "2.14.1" in msg


def test_fp16_kwargs_follow_the_compile_signature():
    def new(exported_program, *, enable_autocast=False, autocast_low_precision_type=None): ...

    def old(exported_program, *, enabled_precisions=None): ...

    assert fp16_kwargs(new) == {"enable_autocast": True,
                                "autocast_low_precision_type": torch.float16}
    assert fp16_kwargs(old) == {"enabled_precisions": {torch.float16, torch.float32}}


def test_refusals(tiny_onnx, tmp_path):
    t = TorchTensorRTTarget()
    with pytest.raises(ValueError, match="--target tensorrt"):
        t.compile(tiny_onnx, tmp_path, CompileOptions(precision="int8"), [])
    with pytest.raises(TargetUnavailable, match="needs a checkpoint"):
        t.compile(tiny_onnx, tmp_path, CompileOptions(precision="fp16"), [])


@pytest.fixture
def fake_torch_tensorrt(monkeypatch):
    """``torch_tensorrt`` 2.14's API surface; ``compile`` returns the module unchanged and
    records its arguments, ``save`` / ``load`` go through ``torch.export``."""
    import mtlsi_edge.targets.torch_tensorrt as mod

    calls = []
    fake = types.ModuleType("torch_tensorrt")
    fake.__version__ = ".".join(torch.__version__.split("+")[0].split(".")[:2]) + ".0"

    def dynamo_compile(exported_program, inputs=None, *, arg_inputs=None, workspace_size=0,
                       enable_autocast=False, autocast_low_precision_type=None): ...

    def compile_(module, ir="default", arg_inputs=None, **kw):
        assert set(kw) <= set(inspect.signature(dynamo_compile).parameters)
        calls.append(("compile", ir, [tuple(x.shape) for x in arg_inputs], kw))
        return module

    def save(module, file_path, *, output_format="exported_program", arg_inputs=None):
        calls.append(("save", output_format))
        torch.export.save(torch.export.export(module, tuple(arg_inputs)), file_path)

    def load(file_path):
        calls.append(("load",))
        return torch.export.load(file_path)

    fake.dynamo = types.SimpleNamespace(compile=dynamo_compile)
    fake.compile, fake.save, fake.load = compile_, save, load
    monkeypatch.setitem(sys.modules, "torch_tensorrt", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(mod, "_cuda_device", lambda d: "cpu")
    return calls


@pytest.mark.slow  # ~20 s: ONNX export, torch.export and parity of the tiny model
def test_bundle_flow_with_stand_in(fake_torch_tensorrt, tiny_checkpoint, tmp_path):
    from mtlsi_edge.bundle import load_bundle
    from mtlsi_edge.compiler import CompileRequest, compile_bundle
    from mtlsi_edge.runtime.predictor import Predictor

    out = compile_bundle(tmp_path / "tt", CompileRequest(
        "torch-tensorrt", "fp16", checkpoint=tiny_checkpoint,
        options=CompileOptions(target_options=TorchTensorRTOptions(workspace_mb=64))))
    m, folder = load_bundle(out)
    assert set(m["files"]) == {PROGRAM_FILE}
    rec = m["torch_tensorrt"]
    assert rec["input_shape"] == [1, 3, 64, 96]
    assert rec["precision_settings"] == ["autocast_low_precision_type", "enable_autocast",
                                         "workspace_size"]
    kind, ir, shapes, kw = fake_torch_tensorrt[0]
    assert (kind, ir, shapes) == ("compile", "dynamo", [(1, 3, 64, 96)])
    assert kw["enable_autocast"] and kw["workspace_size"] == 64 << 20
    assert ("save", "exported_program") in fake_torch_tensorrt
    # the stand-in compiles nothing, so parity with PyTorch is exact: outputs are in order
    for task, d in m["parity"]["per_task"].items():
        assert d["max_abs"] < 1e-4, (task, d)
    pred = Predictor.from_bundle(out)
    frame = (np.random.default_rng(0).random((64, 96, 3)) * 255).astype(np.uint8)
    res = pred(frame)
    assert set(res) == set(m["outputs"])
