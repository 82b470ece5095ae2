"""TensorRT-ready INT8 from NNCF: the Q/DQ validator on real ``mtlsi-edge quantize`` output
(marked slow; run with ``-m slow``).

``quantize --format onnx`` (the CPU settings) must fail the TensorRT rules with the reason,
``quantize --format onnx --target tensorrt`` must pass them; both run the real NNCF on the
tiny model with 4 calibration samples (module-scoped: a few seconds).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import one_error_line
from typer.testing import CliRunner

from mtlsi_edge.cli import app
from mtlsi_edge.targets.base import CompileOptions
from mtlsi_edge.targets.tensorrt import TensorRTTarget, check_qdq, qdq_problems

# ~45 s on a shared 2-core machine (two NNCF runs on the full tiny MTLSI-Net); the same rules
# on a small NNCF-quantised graph run in the default suite (test_tensorrt_target.py).
pytestmark = [pytest.mark.usefixtures("torch_one_thread"), pytest.mark.slow]


def run(*args) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def quantized(tiny_checkpoint, tmp_path_factory):
    """{"cpu": path, "tensorrt": path}: the same checkpoint quantised both ways by the CLI."""
    from mtlsi_edge.quantize.run import run_quantize

    root = tmp_path_factory.mktemp("qdq")
    res = run("quantize", "--checkpoint", tiny_checkpoint, "--format", "onnx", "--n", 4,
              "--out", root / "tensorrt", "--target", "tensorrt")
    assert res.exit_code == 0, res.output
    # the CPU settings on the same exported FP32 ONNX (one export, not two)
    run_quantize(tiny_checkpoint, "onnx", "synth", 4, None, 1, [], "performance",
                 "attention-norm", root / "cpu", onnx_path=root / "tensorrt.fp32.onnx")
    return {"cpu": root / "cpu.onnx", "tensorrt": root / "tensorrt.onnx"}


def test_default_onnx_output_fails_the_tensorrt_rules(quantized):
    problems = qdq_problems(onnx.load(str(quantized["cpu"])))
    # NNCF's CPU settings: unsigned activations after non-negative ops, and per-channel
    # activation quantisers (the CPU hardware config allows them, TensorRT does not)
    assert any("UINT8" in p and "signed INT8" in p for p in problems), problems
    assert any("per-channel scale on an activation" in p for p in problems), problems
    with pytest.raises(ValueError, match="not a TensorRT-ready Q/DQ model") as e:
        check_qdq(quantized["cpu"])
    assert "\n" not in str(e.value) and "--target tensorrt" in str(e.value)


def test_tensorrt_output_passes_and_is_signed_symmetric(quantized):
    model = onnx.load(str(quantized["tensorrt"]))
    assert qdq_problems(model) == []
    check_qdq(quantized["tensorrt"])
    inits = {i.name: i for i in model.graph.initializer}
    zps = [inits[n.input[2]] for n in model.graph.node
           if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert zps and {z.data_type for z in zps} == {onnx.TensorProto.INT8}
    assert not any(onnx.numpy_helper.to_array(z).any() for z in zps)
    per_channel = [n for n in model.graph.node if n.op_type == "DequantizeLinear"
                   and onnx.numpy_helper.to_array(inits[n.input[1]]).size > 1]
    assert per_channel, "weights should be quantised per output channel"


def test_tensorrt_output_is_close_to_the_cpu_output(quantized, tiny_checkpoint):
    """Signed activations cost a bit of resolution, not correctness: both INT8 models agree
    with each other on a rendered image (ONNX Runtime CPU)."""
    import onnxruntime as ort

    from mtlsi_edge.compiler import reference_inputs

    x = reference_inputs((64, 96), n=1)
    outs = [ort.InferenceSession(str(quantized[k]), providers=["CPUExecutionProvider"]).run(
        None, {"image": x}) for k in ("cpu", "tensorrt")]
    seg_cpu, seg_trt = outs[0][0].argmax(1), outs[1][0].argmax(1)
    assert (seg_cpu == seg_trt).mean() > 0.9
    for a, b in zip(outs[0][1:], outs[1][1:]):
        assert np.abs(a - b).max() < 0.25 * max(np.abs(a).max(), 1e-3)


def test_report_records_the_check(quantized):
    import json

    rep = json.loads(quantized["tensorrt"].with_suffix(".report.json").read_text())
    assert rep["info"]["target"] == "tensorrt" and rep["info"]["tensorrt_qdq_check"] == "pass"
    assert rep["info"]["overflow_fix"] is False


def test_compile_int8_refuses_default_output_in_one_line(quantized, tmp_path):
    res = run("compile", "--target", "tensorrt", "--precision", "int8", "--onnx",
              quantized["cpu"], "--out", tmp_path / "b")
    line = one_error_line(res)
    # without TensorRT the availability check speaks first; the rules are checked by the
    # target itself before any build (next test)
    assert "tensorrt" in line.lower()


def test_target_checks_rules_before_needing_tensorrt(quantized, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(ValueError, match="not a TensorRT-ready Q/DQ model"):
        TensorRTTarget().compile(quantized["cpu"], tmp_path, CompileOptions(precision="int8"),
                                 ["semseg"])


@pytest.mark.parametrize("args,fragment", [
    (["--format", "openvino", "--target", "tensorrt"], "needs --format onnx"),
    (["--format", "onnx", "--target", "tensorrt", "--preset", "mixed"], "preset performance"),
    (["--format", "onnx", "--target", "coreml"], "--target must be tensorrt"),
])
def test_quantize_target_refusals_are_one_line(tiny_checkpoint, tmp_path, args, fragment):
    res = run("quantize", "--checkpoint", tiny_checkpoint, "--n", 2, "--out", tmp_path / "q",
              *args)
    one_error_line(res, fragment, code=2)
    assert not list(tmp_path.iterdir())


def test_nncf_cannot_force_signed_activations():
    """Why ``to_signed_int8_qdq`` exists: NNCF's hardware configs reject
    ``signedness_to_force`` for activations.  If a future NNCF accepts it, this fails and the
    post-step can go."""
    import nncf
    import torch
    from nncf.common.quantization.structs import QuantizationScheme
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        QuantizationParameters,
    )

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                              torch.nn.Conv2d(4, 4, 3)).eval()
    import io
    import warnings

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, 3, 16, 16),), buf, input_names=["image"],
                          opset_version=17, dynamo=False)
    model = onnx.load_from_string(buf.getvalue())
    adv = AdvancedQuantizationParameters(activations_quantization_params=QuantizationParameters(
        mode=QuantizationScheme.SYMMETRIC, signedness_to_force=True))
    data = nncf.Dataset([np.zeros((1, 3, 16, 16), np.float32)], lambda x: {"image": x})
    with pytest.raises(ValueError, match="incompatible"):
        nncf.quantize(model, data, subset_size=1, advanced_parameters=adv)
