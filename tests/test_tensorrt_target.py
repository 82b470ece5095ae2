"""TensorRT target: availability reporting, refusal paths, and (on an NVIDIA GPU with TensorRT)
real engine builds checked against onnxruntime.

The refusal tests run everywhere: option / QDQ validation happens before TensorRT is needed, and
the "unavailable" paths are forced by hiding the ``tensorrt`` module.  The real-engine tests skip
with the reason :meth:`TensorRTTarget.available` gives (here: the package is not installed).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
import types
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from mtlsi_edge.targets.base import CompileOptions, TargetUnavailable
from mtlsi_edge.targets.tensorrt import ENGINE_FILE, TensorRTTarget, _has_qdq

AVAILABLE, REASON = TensorRTTarget().available()
needs_trt = pytest.mark.skipif(not AVAILABLE, reason=REASON or "TensorRT available")
OUTPUTS = ["semseg", "boundary"]
MISSING = ("tensorrt Python package not installed (TensorRT runs on NVIDIA GPUs/Jetson; "
           "pip install tensorrt on such a machine)")


class TwoConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):
        y = self.c2(torch.relu(self.c1(x)))
        return y, torch.sigmoid(y[:, :1])


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """A 2-conv model with symbolic N, H, W (as ``export_onnx(dynamic=True)`` writes)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("trt") / "tiny.onnx"
    axes = {"image": {0: "N", 2: "H", 3: "W"}}
    axes.update({n: {0: "N", 2: "h", 3: "w"} for n in OUTPUTS})
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(TwoConv().eval(), (torch.zeros(1, 3, 32, 48),), str(path),
                          input_names=["image"], output_names=OUTPUTS, dynamic_axes=axes,
                          opset_version=17, dynamo=False)
    return path


@pytest.fixture(scope="module")
def qdq_onnx(tmp_path_factory):
    """Smallest explicitly quantised graph: x → QuantizeLinear → DequantizeLinear → y."""
    scale = helper.make_tensor("s", TensorProto.FLOAT, [], [0.05])
    zp = helper.make_tensor("z", TensorProto.INT8, [], [0])
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
         helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])],
        "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
        initializer=[scale, zp])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("trt") / "qdq.onnx"
    onnx.save(model, str(path))
    return path


@pytest.fixture
def no_tensorrt(monkeypatch):
    """Make ``import tensorrt`` fail, whatever is installed."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)


def _fake_tensorrt(monkeypatch, version: str):
    fake = types.ModuleType("tensorrt")
    fake.__version__ = version
    monkeypatch.setitem(sys.modules, "tensorrt", fake)


# -- runs everywhere -------------------------------------------------------------------------

def test_attributes():
    t = TensorRTTarget()
    assert t.name == "tensorrt"
    assert t.precisions == ("fp32", "fp16", "int8")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None,
                    reason="tensorrt is installed here")
def test_available_here_reports_missing_package():
    ok, why = TensorRTTarget().available()
    assert (ok, why) == (False, MISSING)
    assert "tensorrt" in why
    assert TensorRTTarget().runtime_version() == "not installed"


def test_available_without_package(no_tensorrt):
    ok, why = TensorRTTarget().available()
    assert not ok and why == MISSING
    assert TensorRTTarget().runtime_version() == "not installed"


def test_available_without_cuda(monkeypatch):
    _fake_tensorrt(monkeypatch, "10.3.0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert TensorRTTarget().available() == (False, "no CUDA device visible")
    assert TensorRTTarget().runtime_version() == "10.3.0"


def test_available_rejects_old_tensorrt(monkeypatch):
    _fake_tensorrt(monkeypatch, "8.2.5.1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    ok, why = TensorRTTarget().available()
    assert not ok and "8.2.5.1" in why and "too old" in why


def test_compile_and_load_raise_unavailable(no_tensorrt, tiny_onnx, tmp_path):
    t = TensorRTTarget()
    with pytest.raises(TargetUnavailable, match="tensorrt Python package not installed") as e:
        t.compile(tiny_onnx, tmp_path / "out", CompileOptions(precision="fp16"), OUTPUTS)
    assert MISSING in str(e.value)
    assert not (tmp_path / "out").exists()
    with pytest.raises(TargetUnavailable) as e:
        t.load(tmp_path, {"files": [ENGINE_FILE], "outputs": OUTPUTS}, CompileOptions())
    assert MISSING in str(e.value)


def test_int8_refuses_non_qdq_onnx_before_needing_tensorrt(no_tensorrt, tiny_onnx, tmp_path):
    """QDQ is checked first (documented order), so this refusal works without TensorRT."""
    assert not _has_qdq(tiny_onnx)
    with pytest.raises(ValueError, match="QDQ") as e:
        TensorRTTarget().compile(tiny_onnx, tmp_path, CompileOptions(precision="int8"), OUTPUTS)
    assert str(tiny_onnx) in str(e.value)


def test_int8_qdq_onnx_passes_check_then_needs_tensorrt(no_tensorrt, qdq_onnx, tmp_path):
    assert _has_qdq(qdq_onnx)
    with pytest.raises(TargetUnavailable):
        TensorRTTarget().compile(qdq_onnx, tmp_path, CompileOptions(precision="int8"), ["y"])


def test_option_validation(no_tensorrt, tiny_onnx, tmp_path):
    t = TensorRTTarget()
    with pytest.raises(ValueError, match="precision"):
        t.compile(tiny_onnx, tmp_path, CompileOptions(precision="int4"), OUTPUTS)
    with pytest.raises(ValueError, match="DLA"):
        t.compile(tiny_onnx, tmp_path, CompileOptions(precision="fp32", extra={"dla_core": 0}),
                  OUTPUTS)
    with pytest.raises(FileNotFoundError):
        t.compile(tmp_path / "nope.onnx", tmp_path, CompileOptions(precision="int8"), OUTPUTS)


class _Rec:
    """Records what ``compile`` asks of TensorRT (a stand-in, not the real API: it only checks
    this module's control flow; the calls themselves are verified against NVIDIA's docs)."""

    def __init__(self, version="10.3.0", parse_ok=True, in_shape=(-1, 3, -1, -1)):
        self.calls, self.parse_ok, self.in_shape = [], parse_ok, in_shape
        trt = types.ModuleType("tensorrt")
        trt.__version__ = version
        ns = types.SimpleNamespace
        trt.Logger = type("Logger", (), {"WARNING": "W", "__init__": lambda s, sev: None})
        trt.NetworkDefinitionCreationFlag = ns(EXPLICIT_BATCH=0)
        trt.MemoryPoolType = ns(WORKSPACE="WORKSPACE")
        trt.BuilderFlag = ns(FP16="FP16", INT8="INT8", GPU_FALLBACK="GPU_FALLBACK")
        trt.DeviceType = ns(GPU="GPU", DLA="DLA")
        rec = self

        class Config:
            def set_memory_pool_limit(self, pool, size):
                rec.calls.append(("pool", pool, size))

            def set_flag(self, flag):
                rec.calls.append(("flag", flag))

            def add_optimization_profile(self, p):
                rec.calls.append(("add_profile",))

            def __setattr__(self, k, v):
                rec.calls.append(("set", k, v))

        class Profile:
            def set_shape(self, name, mn, opt, mx):
                rec.calls.append(("shape", name, mn, opt, mx))

        class Network:
            num_inputs, num_outputs = 1, len(OUTPUTS)

            def get_input(self, i):
                return ns(name="image", shape=rec.in_shape)

            def get_output(self, i):
                return ns(name=OUTPUTS[i])

        class Parser:
            num_errors = 1

            def __init__(self, network, logger):
                pass

            def parse_from_file(self, path):
                rec.calls.append(("parse", path))
                return rec.parse_ok

            def get_error(self, i):
                return "In node 3 (importConv):\n UNSUPPORTED_NODE: bad"

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                rec.calls.append(("network", flags))
                return Network()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                return b"ENGINE"

        trt.Builder, trt.OnnxParser = Builder, Parser
        self.trt = trt


def test_compile_control_flow_with_recorded_tensorrt(monkeypatch, tiny_onnx, tmp_path):
    rec = _Rec()
    monkeypatch.setitem(sys.modules, "tensorrt", rec.trt)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    opts = CompileOptions(precision="fp16", extra={"input_size": (64, 96), "workspace_mb": 512,
                                                   "dla_core": 1, "max_batch": 4})
    assert TensorRTTarget().compile(tiny_onnx, tmp_path, opts, OUTPUTS) == [ENGINE_FILE]
    assert (tmp_path / ENGINE_FILE).read_bytes() == b"ENGINE"
    assert not list(tmp_path.glob(".*"))
    c = rec.calls
    assert ("network", 0) in c and ("parse", str(tiny_onnx)) in c
    assert ("pool", "WORKSPACE", 512 << 20) in c
    assert ("flag", "FP16") in c and ("flag", "INT8") not in c
    assert {("set", "default_device_type", "DLA"), ("set", "DLA_core", 1),
            ("flag", "GPU_FALLBACK")} <= set(c)
    assert ("shape", "image", (1, 3, 32, 48), (1, 3, 64, 96), (4, 3, 128, 192)) in c
    assert ("add_profile",) in c


def test_compile_control_flow_static_and_trt86(monkeypatch, tiny_onnx, tmp_path):
    rec = _Rec(version="8.6.1", in_shape=(1, 3, 64, 96))
    monkeypatch.setitem(sys.modules, "tensorrt", rec.trt)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    TensorRTTarget().compile(tiny_onnx, tmp_path, CompileOptions(), OUTPUTS)
    assert ("network", 1 << 0) in rec.calls  # EXPLICIT_BATCH before 10.0
    assert not [x for x in rec.calls if x[0] in ("shape", "add_profile", "flag")]


def test_compile_errors_with_recorded_tensorrt(monkeypatch, tiny_onnx, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "tensorrt", _Rec(parse_ok=False).trt)
    with pytest.raises(RuntimeError, match="parser failed") as e:
        TensorRTTarget().compile(tiny_onnx, tmp_path, CompileOptions(), OUTPUTS)
    assert "\n" not in str(e.value) and "UNSUPPORTED_NODE: bad" in str(e.value)
    monkeypatch.setitem(sys.modules, "tensorrt", _Rec().trt)
    with pytest.raises(ValueError, match="input_size"):  # symbolic H/W need a profile size
        TensorRTTarget().compile(tiny_onnx, tmp_path, CompileOptions(), OUTPUTS)
    with pytest.raises(ValueError, match="not in the ONNX graph"):
        TensorRTTarget().compile(tiny_onnx, tmp_path, CompileOptions(
            extra={"input_size": (64, 96)}), ["nope"])
    assert not (tmp_path / ENGINE_FILE).exists()


# -- needs TensorRT and a CUDA GPU -----------------------------------------------------------

def _ort(path, x):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip(OUTPUTS, sess.run(OUTPUTS, {"image": x}), strict=True))


def _build(tiny_onnx, out_dir, precision, outputs=OUTPUTS):
    t = TensorRTTarget()
    opts = CompileOptions(precision=precision, device="cuda:0",
                          extra={"input_size": (64, 96), "workspace_mb": 256})
    files = t.compile(tiny_onnx, out_dir, opts, OUTPUTS)
    manifest = {"files": files, "outputs": outputs, "precision": precision}
    return files, t.load(out_dir, manifest, opts)


@needs_trt
@pytest.mark.parametrize("precision,tol", [("fp32", 1e-2), ("fp16", 5e-2)])
def test_engine_matches_onnxruntime(tiny_onnx, tmp_path, precision, tol):
    files, runner = _build(tiny_onnx, tmp_path, precision)
    assert files == [ENGINE_FILE] and (tmp_path / ENGINE_FILE).stat().st_size > 0
    assert not list(tmp_path.glob(".*.tmp"))
    assert (runner.name, runner.precision) == ("tensorrt", precision)
    assert runner.device.startswith("cuda")
    assert runner.layouts == {n: "NCHW" for n in OUTPUTS}
    rng = np.random.default_rng(0)
    for shape in [(1, 3, 64, 96), (1, 3, 48, 80), (1, 3, 64, 96)]:  # opt, other, back to opt
        x = rng.standard_normal(shape, dtype=np.float32)
        got, ref = runner(x), _ort(tiny_onnx, x)
        assert set(got) == set(OUTPUTS)
        for n in OUTPUTS:
            assert got[n].shape == ref[n].shape and got[n].dtype == np.float32
            np.testing.assert_allclose(got[n], ref[n], atol=tol, rtol=tol)


@needs_trt
def test_runner_returns_manifest_outputs_only_and_rejects_out_of_profile(tiny_onnx, tmp_path):
    _, runner = _build(tiny_onnx, tmp_path, "fp32", outputs=["boundary"])
    x = np.zeros((1, 3, 64, 96), np.float32)
    assert set(runner(x)) == {"boundary"}
    with pytest.raises(ValueError, match="profile"):
        runner(np.zeros((1, 3, 256, 384), np.float32))  # max_size defaults to 2× = 128×192


@needs_trt
def test_parser_error_is_one_line(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(RuntimeError, match="ONNX parser failed") as e:
        TensorRTTarget().compile(bad, tmp_path / "out", CompileOptions(), ["y"])
    assert "\n" not in str(e.value)
