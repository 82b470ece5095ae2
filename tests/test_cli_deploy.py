"""The deploy commands of the CLI: export, compile, and their one-line errors."""

from __future__ import annotations

import json

import pytest
from conftest import one_error_line
from typer.testing import CliRunner

from mtlsi_edge.bundle import load_bundle
from mtlsi_edge.cli import app
from mtlsi_edge.targets.tensorrt import TensorRTTarget

pytestmark = pytest.mark.usefixtures("torch_one_thread")
TRT_OK, _ = TensorRTTarget().available()
#: Parity-gate overrides that pass anything: a random-weight INT8 model is then the result.
OPEN_GATE = ("--gate", "semseg=50", "--gate", "depth=0.5", "--gate", "normals=45",
             "--gate", "boundary=50")  # the widest gates that can still fail


def run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``mtlsi-edge export --variant edge-effvit-b0 --out X`` (random weights, 240×320)."""
    out = tmp_path_factory.mktemp("cli") / "sub" / "edge.onnx"
    res = run("export", "--variant", "edge-effvit-b0", "--out", out)
    return res, out


def test_export_writes_onnx_and_parity(exported):
    res, out = exported
    assert res.exit_code == 0, res.output
    assert out.is_file()
    report = out.with_suffix(".parity.json")
    assert report.is_file()
    rep = json.loads(report.read_text())
    assert set(rep) == {"semseg", "depth", "normals", "boundary"}
    assert all(d["max_abs"] < 1e-3 for d in rep.values()), rep
    assert rep["semseg"]["argmax_agree_pct"] >= 99.9
    assert str(out) in " ".join(res.output.split())  # the path is printed (maybe wrapped)


def test_compile_onnxruntime_from_exported_onnx(exported, tmp_path):
    _, onnx_path = exported
    out = tmp_path / "bundle"
    res = run("compile", "--target", "onnxruntime", "--onnx", onnx_path, "--out", out)
    assert res.exit_code == 0, res.output
    m, folder = load_bundle(out)
    assert folder == out
    assert m["target"] == "onnxruntime" and m["precision"] == "fp32" and m["device"] == "cpu"
    assert m["input"]["size"] == [240, 320]
    assert m["parity"]["reference"] == "onnxruntime-fp32"


@pytest.mark.skipif(TRT_OK, reason="tensorrt is importable here")
def test_compile_tensorrt_unavailable_is_one_line(exported, tmp_path):
    _, onnx_path = exported
    res = run("compile", "--target", "tensorrt", "--onnx", onnx_path, "--out", tmp_path / "t")
    one_error_line(res, "tensorrt", "not installed")
    assert not (tmp_path / "t").exists()


def test_compile_unknown_target_is_one_line(exported, tmp_path):
    _, onnx_path = exported
    res = run("compile", "--target", "nope", "--onnx", onnx_path, "--out", tmp_path / "n")
    one_error_line(res, "unknown target 'nope'", "onnxruntime")


def test_compile_bad_precision_is_one_line(exported, tmp_path):
    _, onnx_path = exported
    res = run("compile", "--target", "onnxruntime", "--precision", "fp16", "--onnx", onnx_path,
              "--out", tmp_path / "p")
    one_error_line(res, "fp16")


def test_compile_missing_onnx_is_one_line(tmp_path):
    res = run("compile", "--target", "onnxruntime", "--onnx", tmp_path / "none.onnx",
              "--out", tmp_path / "b")
    one_error_line(res, "none.onnx", "not found")


def test_compile_bad_checkpoint_is_one_line(tmp_path):
    res = run("compile", "--target", "onnxruntime", "--checkpoint", tmp_path / "nope.json",
              "--out", tmp_path / "b")
    one_error_line(res, "nope.json")


def test_export_unknown_variant_is_one_line(tmp_path):
    res = run("export", "--variant", "nope", "--out", tmp_path / "x.onnx")
    one_error_line(res, "unknown variant 'nope'")
    assert not (tmp_path / "x.onnx").exists()


def test_export_bad_stride_is_one_line(tmp_path):
    res = run("export", "--variant", "edge-effvit-b0", "--stride", "2",
              "--out", tmp_path / "x.onnx")
    one_error_line(res, "--stride must be 1 or 4")


def test_info_unknown_variant_fails():
    res = run("info", "nope")
    one_error_line(res, "unknown variant 'nope'", "edge-effvit-b0")


@pytest.mark.parametrize("target,preset,fragment", [
    ("openvino", "bogus", "--preset must be performance or mixed"),
    ("tensorrt", "mixed", "needs --preset performance"),
])
def test_deploy_preset_checked_before_work(tmp_path, tiny_checkpoint, target, preset, fragment):
    res = run("deploy", "--checkpoint", tiny_checkpoint, "--target", target, "--preset", preset,
              "--out", tmp_path / "d")
    one_error_line(res, fragment, code=2)
    assert not (tmp_path / "d").exists()


def test_deploy_impossible_budget_fails_and_keeps_fp32(tmp_path, tiny_checkpoint):
    """An INT8 model cannot beat FP32 mIoU by 5 points: exit 3, the task named, FP32 kept."""
    from mtlsi_edge.bundle import load_bundle
    from mtlsi_edge.data.synthindoor import write_dataset

    data = write_dataset(tmp_path / "val", n=6, size=(64, 96), seed=3, workers=1)
    out = tmp_path / "deploy"
    earlier = out / "openvino-int8"  # left by an earlier run: kept, and named as not this run's
    earlier.mkdir(parents=True)
    (earlier / "notes.txt").write_text("earlier")
    r = CliRunner().invoke(app, [
        "deploy", "--checkpoint", str(tiny_checkpoint), "--target", "openvino",
        "--precision", "int8", "--calib", "synth", "--n-calib", "8", "--val", str(data),
        "--val-limit", "3", "--max-drop", "miou=-5", "--no-accuracy-control", "--out", str(out),
        # random weights: open the parity gate so that the labelled budget is what decides
        *OPEN_GATE])
    assert r.exit_code == 3, r.output
    assert "Traceback" not in r.output
    assert "accuracy gate failed: semseg miou dropped" in r.output
    assert "missed by" in r.output and "kept the FP32 bundle" in r.output
    m, _ = load_bundle(out / "openvino-fp32")
    assert m["precision"] == "fp32"
    assert [f.name for f in earlier.iterdir()] == ["notes.txt"]  # nothing written into it
    assert "openvino-int8 is from an earlier run, not this one" in " ".join(r.output.split())
    report = (out / "report.md").read_text()
    assert "Gate failed" in report and "is from an earlier run" in report


def test_deploy_accuracy_search_stops_at_max_minutes(tmp_path, tiny_checkpoint):
    """An impossible budget with accuracy control on and a bound already spent: the search
    stops at its first candidate, the FP32 bundle is kept, exit 3, the report is written and
    says why."""
    from mtlsi_edge.bundle import load_bundle
    from mtlsi_edge.data.synthindoor import write_dataset

    data = write_dataset(tmp_path / "val", n=6, size=(64, 96), seed=3, workers=1)
    out = tmp_path / "deploy"
    r = CliRunner().invoke(app, [
        "deploy", "--checkpoint", str(tiny_checkpoint), "--target", "openvino",
        "--precision", "int8", "--n-calib", "8", "--val", str(data), "--val-limit", "3",
        "--max-drop", "miou=-5", "--max-minutes", "0.001", "--out", str(out), *OPEN_GATE])
    assert r.exit_code == 3, r.output
    text = " ".join(r.output.split())
    assert "accuracy search stopped at --max-minutes" in text and "kept the FP32 bundle" in text
    assert load_bundle(out / "openvino-fp32")[0]["precision"] == "fp32"
    assert not (out / "openvino-int8").exists()
    assert "accuracy search stopped at --max-minutes" in (out / "report.md").read_text()


@pytest.fixture
def int8_refusing_openvino(monkeypatch):
    """OpenVINO's CPU plugin refusing every INT8 model, as it did here for the bf16 Softmax
    of an INT8 IR with oneDNN capped at AVX2 (ONEDNN_MAX_CPU_ISA=AVX2 on a BF16 CPU)."""
    import openvino as ov

    real = ov.Core.compile_model

    def compile_model(self, model, *args, **kwargs):
        whole = any("semseg" in o.get_names() for o in model.outputs)  # not NNCF's pieces
        if whole and any(op.get_type_name() == "FakeQuantize" for op in model.get_ops()):
            raise RuntimeError("Exception from src/inference/src/cpp/core.cpp:117:\n"
                               "Check '!getSupportedPrimitiveDescriptors().empty()' failed\n"
                               "Supported primitive descriptors list is empty for node: "
                               "Softmax_1 type: Softmax\n")
        return real(self, model, *args, **kwargs)

    monkeypatch.setattr(ov.Core, "compile_model", compile_model)


def test_quantize_refused_by_the_runtime_is_one_line(int8_refusing_openvino, tmp_path,
                                                     tiny_checkpoint):
    res = run("quantize", "--checkpoint", str(tiny_checkpoint), "--n", "2",
              "--out", str(tmp_path / "q"))
    one_error_line(res, "OpenVINO cannot compile the INT8 model on this CPU",
                   "Supported primitive descriptors list is empty")
    assert res.exit_code == 2
    assert not list(tmp_path.glob("q.*"))  # nothing written


def test_deploy_keeps_fp32_when_the_runtime_refuses_int8(int8_refusing_openvino, tmp_path,
                                                         tiny_checkpoint):
    out = tmp_path / "deploy"
    res = run("deploy", "--checkpoint", str(tiny_checkpoint), "--target", "openvino",
              "--precision", "int8", "--n-calib", "2", "--out", str(out))
    assert res.exit_code == 3, res.output
    assert "Traceback" not in res.output
    text = " ".join(res.output.split())
    assert "INT8 not possible with this machine's runtime" in text
    assert "kept the FP32 bundle" in text
    assert load_bundle(out / "openvino-fp32")[0]["precision"] == "fp32"
    assert not (out / "openvino-int8").exists()
    assert "Runtime refused INT8" in (out / "report.md").read_text()


def test_deploy_keeps_fp32_when_the_int8_bundle_cannot_compile(monkeypatch, tmp_path,
                                                              tiny_checkpoint):
    """The INT8 model is made, but the target's runtime refuses it when the bundle is
    compiled (step 4): same outcome, FP32 kept, exit 3."""
    import mtlsi_edge.deploy as dep
    from mtlsi_edge.targets.base import RuntimeRefused

    real = dep.compile_bundle

    def compile_bundle(out, req):
        if req.precision == "int8":
            raise RuntimeRefused(f"{out}/model.xml: OpenVINO cannot compile it: no kernel")
        return real(out, req)

    monkeypatch.setattr(dep, "compile_bundle", compile_bundle)
    out = tmp_path / "deploy"
    res = run("deploy", "--checkpoint", str(tiny_checkpoint), "--target", "openvino",
              "--precision", "int8", "--n-calib", "2", "--out", str(out), *OPEN_GATE)
    assert res.exit_code == 3, res.output
    text = " ".join(res.output.split())
    assert "OpenVINO cannot compile it: no kernel" in text and "kept the FP32 bundle" in text
    assert "Runtime refused INT8" in (out / "report.md").read_text()


def test_deploy_says_when_int8_is_not_faster(monkeypatch, tmp_path, tiny_checkpoint):
    """An INT8 bundle that passes its gates but measured slower than FP32 on this machine is
    not what ships: deploy chooses the FP32 bundle by that measurement, says so (console and
    report) and keeps the gated INT8 bundle beside it."""
    import mtlsi_edge.deploy as dep

    real = dep.latencies

    def int8_slower(bundles, **kw):
        lat = real(bundles, **kw)
        assert {v["runs"] for v in lat.values()} == {60} and len(lat) == 2
        lat["onnxruntime-int8"]["median_ms"] = 2 * lat["onnxruntime-fp32"]["median_ms"]
        return lat

    monkeypatch.setattr(dep, "latencies", int8_slower)
    out = tmp_path / "deploy"
    res = run("deploy", "--checkpoint", str(tiny_checkpoint), "--target", "onnxruntime",
              "--precision", "int8", "--n-calib", "2", "--out", str(out),
              *OPEN_GATE)  # random weights: open the parity gate, INT8 is the result
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "INT8 is not faster than FP32 on this machine" in text
    assert "shipped the FP32 bundle" in text and "the faster choice here" in text
    shipped = (out / "report.md").read_text().split("- bundle: ")[1].splitlines()[0]
    assert "onnxruntime-fp32" in shipped and "precision fp32" in shipped
    assert load_bundle(out / "onnxruntime-int8")[0]["precision"] == "int8"  # kept, gated
    assert "INT8 is not faster than FP32" in (out / "report.md").read_text()
