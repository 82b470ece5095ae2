"""Artifacts vouch for themselves: parity gates, ``mtlsi-edge check``, self-check on start.

Runs on the embedded starter model (a trained model: the gate thresholds are for those).  A
fault-injected runner (one task's output perturbed) stands in for a runtime that computes
wrongly on some CPU; every path must catch it and name the task.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import STARTER, needs_starter, one_error_line
from typer.testing import CliRunner

from mtlsi_edge.backends.onnxruntime import ONNXRuntimeBackend
from mtlsi_edge.bundle import LEGACY_SCHEMAS, MANIFEST, load_bundle, write_manifest
from mtlsi_edge.cli import app
from mtlsi_edge.compiler import CompileRequest, compile_bundle
from mtlsi_edge.fileio import sha256
from mtlsi_edge.targets import CompileOptions
from mtlsi_edge.verify import REFERENCE_FILE, VerificationError, gate, measure, thresholds_for

pytestmark = [pytest.mark.usefixtures("torch_one_thread"), needs_starter]


def run(*args) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def ort_bundle(tmp_path_factory) -> Path:
    return compile_bundle(tmp_path_factory.mktemp("trust") / "ort", CompileRequest(
        "onnxruntime", "fp32", checkpoint=STARTER, options=CompileOptions(device="cpu", threads=1)))


@pytest.fixture
def copy(ort_bundle, tmp_path) -> Path:
    return Path(shutil.copytree(ort_bundle, tmp_path / "b"))


# -- the measures -------------------------------------------------------------------------------
def test_measures_on_hand_made_arrays():
    a = np.zeros((1, 4, 4), np.uint8)
    b = a.copy()
    b[0, 0, :2] = 1
    assert measure("segmentation", a, b) == pytest.approx(100 * 14 / 16)
    d = np.full((1, 2, 2), 2.0, np.float32)
    assert measure("depth", d, d * 1.1) == pytest.approx(0.1, rel=1e-5)
    n = np.zeros((1, 3, 1, 2), np.float32)
    n[:, 2] = 1
    m = n.copy()
    m[0, :, 0, 1] = (np.sin(np.radians(10)), 0, np.cos(np.radians(10)))
    assert measure("normals", n, m) == pytest.approx(5.0, abs=1e-3)  # (0° + 10°) / 2
    e = np.zeros((1, 2, 4), np.float32)
    e[0, 0] = 1
    f = e.copy()
    f[0, 1, 0] = 1  # 4 true, 5 predicted, 4 shared: F = 2·4/9
    assert measure("boundary", e, f) == pytest.approx(100 * 8 / 9)


def test_gate_names_the_failing_task():
    from mtlsi_edge.tasks import get_task_set

    ts = get_task_set("nyud")
    ref = {"semseg": np.zeros((1, 8, 8), np.uint8), "depth": np.ones((1, 8, 8), np.float32),
           "normals": np.stack([np.zeros((8, 8)), np.zeros((8, 8)), np.ones((8, 8))])[None]
           .astype(np.float32), "boundary": np.zeros((1, 8, 8), np.float32)}
    got = {**ref, "depth": ref["depth"] * 1.2}
    res = gate(ref, got, ts, "int8", thresholds_for("int8", ts))
    assert not res.passed and len(res.failures) == 1 and res.failures[0].startswith("depth")
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        thresholds_for("int8", ts, {"nope": 1.0})


# -- check ------------------------------------------------------------------------------------
def test_check_passes_on_a_good_bundle(ort_bundle):
    res = run("check", ort_bundle)
    assert res.exit_code == 0, res.output
    assert "pass" in res.output and "CPU flags" in res.output
    rep = json.loads(run("check", ort_bundle, "--json").output)
    assert rep["passed"] and {r["task"] for r in rep["gate"]["rows"]} == {
        "semseg", "depth", "normals", "boundary"}


def test_perturbed_runner_fails_check_naming_the_task(ort_bundle, corrupt_outputs):
    corrupt_outputs(ONNXRuntimeBackend, "normals")
    res = run("check", ort_bundle)
    assert res.exit_code == 3
    line = one_error_line(res)
    assert "normals" in line and "depth" not in line


def test_tampered_reference_file_refused(copy):
    f = copy / REFERENCE_FILE
    data = bytearray(f.read_bytes())
    data[-3] ^= 0xFF
    f.write_bytes(bytes(data))
    res = run("check", copy)
    assert res.exit_code == 2 and "sha256" in one_error_line(res)


def test_rewritten_reference_outputs_fail_check(copy):
    """Even with checksums and the manifest hash recomputed, altered references cannot
    pass: the artifact no longer matches them."""
    from safetensors.numpy import load_file, save_file

    f = copy / REFERENCE_FILE
    t = load_file(str(f))
    t["out.depth"] = t["out.depth"] * 1.5
    save_file(t, str(f))
    m = json.loads((copy / MANIFEST).read_text())
    m.pop("integrity")
    m["files"][REFERENCE_FILE] = sha256(f)
    write_manifest(copy, m)
    res = run("check", copy)
    assert res.exit_code == 3 and "depth" in one_error_line(res)


def _make_legacy(folder: Path) -> None:
    """Turn a bundle into one made before references and the manifest hash existed."""
    m = json.loads((folder / MANIFEST).read_text())
    for k in ("integrity", "reference", "gate"):
        m.pop(k)
    del m["files"][REFERENCE_FILE]
    (folder / REFERENCE_FILE).unlink()
    m["schema"] = LEGACY_SCHEMAS[0]
    (folder / MANIFEST).write_text(json.dumps(m))


def test_old_bundle_without_references_gets_a_clear_message(copy):
    _make_legacy(copy)
    load_bundle(copy)  # still loadable
    res = run("check", copy)
    assert res.exit_code == 2 and "no reference outputs" in one_error_line(res)


def test_old_bundle_can_be_replaced(copy):
    _make_legacy(copy)
    opts = CompileOptions(device="cpu", threads=1)
    compile_bundle(copy, CompileRequest("onnxruntime", "fp32", checkpoint=STARTER, options=opts))
    assert load_bundle(copy)[0]["reference"]
    assert opts == CompileOptions(device="cpu", threads=1)  # the caller's options unchanged


def test_edited_normalisation_fails_check(tmp_path):
    """manifest input.mean of a float-input bundle edited and re-signed: the Predictor's
    preprocessing changes, and the self-check sees it."""
    copy = compile_bundle(tmp_path / "t", CompileRequest(
        "onnxruntime", "fp32", checkpoint=STARTER, frame_io=False,
        options=CompileOptions(device="cpu", threads=1)))
    m = json.loads((copy / MANIFEST).read_text())
    m.pop("integrity")
    m["input"]["mean"] = [0.3, 0.3, 0.3]
    write_manifest(copy, m)
    res = run("check", copy)
    assert res.exit_code == 3 and "error: " in one_error_line(res)


def test_demo_refuses_a_bundle_that_fails_its_self_check(ort_bundle, corrupt_outputs,
                                                         tmp_path):
    # logits or labels: shift 3 columns
    corrupt_outputs(ONNXRuntimeBackend, "semseg", lambda a: np.roll(a, 3, axis=-1))
    cv2.imwrite(str(tmp_path / "frame.png"), np.full((64, 96, 3), 90, np.uint8))  # a source
    res = run("demo", "--bundle", ort_bundle, "--headless", "--max-frames", "1",
              "--source", tmp_path)
    assert res.exit_code == 3
    line = one_error_line(res)
    assert "self-check" in line and "semseg" in line


def test_profile_self_checks_each_bundle(ort_bundle, corrupt_outputs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    corrupt_outputs(ONNXRuntimeBackend, "boundary", lambda a: 1.0 - a)
    res = run("profile", "--bundle", ort_bundle, "--runs", "1")
    assert res.exit_code == 3 and "boundary" in one_error_line(res)


# -- gates at build time ------------------------------------------------------------------------
def test_compile_gate_refuses_and_force_keeps(corrupt_outputs, tmp_path):
    corrupt_outputs(ONNXRuntimeBackend, "depth", lambda a: a * 1.3)
    out = tmp_path / "b"
    res = run("compile", "--target", "onnxruntime", "--checkpoint", STARTER, "--out", out)
    assert res.exit_code == 3
    assert "depth" in one_error_line(res) and "parity gate" in res.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []  # nothing written, no stage
    res = run("compile", "--target", "onnxruntime", "--checkpoint", STARTER, "--out", out,
              "--force")
    assert res.exit_code == 0, res.output
    m, _ = load_bundle(out)
    assert m["gate"]["passed"] is False and m["gate"]["forced"] is True


def test_compile_gate_override(corrupt_outputs, tmp_path):
    corrupt_outputs(ONNXRuntimeBackend, "depth", lambda a: a * 1.3)
    res = run("compile", "--target", "onnxruntime", "--checkpoint", STARTER,
              "--out", tmp_path / "b", "--gate", "depth=0.5")
    assert res.exit_code == 0, res.output
    res = run("compile", "--target", "onnxruntime", "--checkpoint", STARTER,
              "--out", tmp_path / "c", "--gate", "depth=oops")
    assert res.exit_code == 2 and "--gate" in one_error_line(res)


def test_deploy_with_a_fault_injected_int8_runtime_keeps_fp32(corrupt_outputs, tmp_path):
    """No --val: the label-free parity gate alone refuses the INT8 artifact (as its bundle,
    in this machine's runtime), names the task, keeps the FP32 bundle and exits 3."""
    def int8(folder, manifest, opts) -> bool:
        return manifest["precision"] == "int8"

    corrupt_outputs(ONNXRuntimeBackend, "normals", when=int8)
    out = tmp_path / "deploy"
    res = run("deploy", "--checkpoint", STARTER, "--target", "onnxruntime", "--precision",
              "int8", "--n-calib", "4", "--out", out)
    assert res.exit_code == 3, res.output
    line = one_error_line(res)
    assert "normals" in line and "kept the FP32 bundle" in line
    load_bundle(out / "onnxruntime-fp32")
    assert not (out / "onnxruntime-int8").exists()
    report = (out / "report.md").read_text()
    assert "FAILED" in report and "INT8 refused" in report


def test_verification_error_is_a_user_error_type():
    assert issubclass(VerificationError, ValueError)
