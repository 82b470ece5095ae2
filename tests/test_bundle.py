"""Bundles: compile per target, manifest contents, parity, checksum verification, refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mtlsi_edge.bundle import MANIFEST, SCHEMA, load_bundle, write_manifest
from mtlsi_edge.compiler import CompileRequest, compile_bundle
from mtlsi_edge.data.seeds import GATE_FRAMES
from mtlsi_edge.errors import BundleError
from mtlsi_edge.export import MEAN, STD
from mtlsi_edge.fileio import sha256
from mtlsi_edge.targets import TARGETS, TargetUnavailable, get_target
from mtlsi_edge.targets.tensorrt import TensorRTTarget
from mtlsi_edge.verify import REFERENCE_FILE

pytestmark = pytest.mark.usefixtures("torch_one_thread")
BUNDLE_KINDS = [("torch", "fp32"), ("onnxruntime", "fp32"), ("openvino", "fp32"),
                ("openvino", "fp16")]
SIZE = (64, 96)  # the tiny model's input size (tests/conftest.py)
VARIANT = "edge-effvit-b0"

FILES = {"torch": {"model.safetensors"}, "onnxruntime": {"model.onnx"},
         "openvino": {"model.xml", "model.bin"}}
TRT_OK, _ = TensorRTTarget().available()


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_manifest(folder: Path, **changes) -> None:
    """Edit the manifest as a deliberate user would: fields changed, integrity re-signed, so
    that the checks behind the hash are what is tested."""
    m = json.loads((folder / MANIFEST).read_text())
    m.update(changes)
    _resign(folder, m)


def _resign(folder: Path, m: dict) -> None:
    m.pop("integrity", None)
    write_manifest(folder, m)


@pytest.mark.parametrize("target,precision", BUNDLE_KINDS)
def test_bundle_manifest_and_parity(bundle, tiny_model, target, precision):
    folder = bundle(target, precision)
    m, p = load_bundle(folder)
    assert p == folder
    # contents: the manifest and exactly the listed model files, nothing left from staging
    assert {f.name for f in folder.iterdir()} == FILES[target] | {MANIFEST, REFERENCE_FILE}
    assert not [f for f in folder.parent.iterdir() if f.name.startswith(".")], \
        "staging / work folders must be removed"
    assert m["schema"] == SCHEMA
    assert m["target"] == target and m["precision"] == precision
    assert set(m["files"]) == FILES[target] | {REFERENCE_FILE}
    for name, digest in m["files"].items():
        assert len(digest) == 64 and digest == sha256(folder / name)
    assert m["task_set"] == tiny_model.task_set.to_dict()
    assert m["outputs"] == tiny_model.task_set.names
    from_onnx = target == "openvino"  # see FROM_ONNX in conftest.py
    assert m["model"]["variant"] == (None if from_onnx else VARIANT)
    assert m["model"]["config"]["input_size"] == list(SIZE)
    inp = m["input"]
    # frame I/O: the camera's uint8 BGR frame in, normalisation folded into the model
    assert m["io"] == "frame" and m["label_stride"] in (1, 2, 4)
    assert inp["size"] == list(SIZE) and inp["layout"] == "NHWC" and inp["color"] == "BGR"
    assert inp["dtype"] == "uint8"
    assert inp["mean"] == pytest.approx(list(MEAN)) and inp["std"] == pytest.approx(list(STD))
    assert inp["scale"] == pytest.approx(1 / 255)
    assert m["output_stride"] == 4
    assert set(m["output_layouts"]) == set(m["outputs"])
    assert set(m["output_layouts"].values()) == {"NHWC" if target == "openvino" else "NCHW"}
    assert m["runtime_versions"][target]

    par = m["parity"]
    assert par["reference"] == ("onnxruntime-fp32" if from_onnx else "torch-fp32")
    assert par["images"] == GATE_FRAMES
    assert set(par["per_task"]) == set(m["outputs"])
    for name, d in par["per_task"].items():
        t = tiny_model.task_set[name]
        if t.kind == "segmentation":  # labels from the graph: agreement only
            assert d["argmax_agree_pct"] >= (99.9 if precision == "fp32" else 95.0), (name, d)
        else:
            assert d["max_abs"] < (1e-3 if precision == "fp32" else 0.5), (name, d)
        if t.kind == "normals":
            assert d["angle_mean_deg"] < (0.1 if precision == "fp32" else 15.0), (name, d)
    if target == "torch":  # the reference against itself
        assert all(d.get("max_abs", 0.0) == 0.0 and d.get("argmax_agree_pct", 100.0) == 100.0
                   for d in par["per_task"].values())


def test_compile_from_onnx_replaces_existing_bundle(bundle, tiny_onnx, tmp_path):
    old = _copy(bundle("onnxruntime"), tmp_path / "b")  # compiled from the checkpoint
    (old / "notes.txt").write_text("the user's, not the bundle's")
    with pytest.raises(BundleError, match="not a bundle .*notes.txt"):
        compile_bundle(old, CompileRequest("onnxruntime", model_file=tiny_onnx))
    assert (old / "notes.txt").read_text() == "the user's, not the bundle's"
    (old / "notes.txt").unlink()
    out = compile_bundle(old, CompileRequest("onnxruntime", model_file=tiny_onnx))
    m, _ = load_bundle(out)
    assert out == old
    assert m["model"]["variant"] is None
    assert m["parity"]["reference"] == "onnxruntime-fp32" and m["parity"]["images"] == GATE_FRAMES
    assert all(d.get("max_abs", 0.0) == 0.0 and d.get("argmax_agree_pct", 100.0) == 100.0
               for d in m["parity"]["per_task"].values())
    assert sorted(f.name for f in tmp_path.iterdir()) == ["b"]  # no staging leftovers


def test_load_bundle_accepts_manifest_path(bundle):
    folder = bundle("onnxruntime")
    m, p = load_bundle(folder / MANIFEST)
    assert p == folder and m["target"] == "onnxruntime"


# -- refusals ----------------------------------------------------------------------------------

@pytest.fixture
def ort_copy(bundle, tmp_path) -> Path:
    return _copy(bundle("onnxruntime"), tmp_path / "copy")


def test_modified_file_refused(ort_copy):
    f = ort_copy / "model.onnx"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one byte
    f.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256") as e:
        load_bundle(ort_copy)
    assert "model.onnx" in str(e.value) and "\n" not in str(e.value)


def test_missing_file_refused(ort_copy):
    (ort_copy / "model.onnx").unlink()
    with pytest.raises(BundleError, match="missing") as e:
        load_bundle(ort_copy)
    assert "model.onnx" in str(e.value)


def test_openvino_weights_tamper_refused(bundle, tmp_path):
    folder = _copy(bundle("openvino", "fp32"), tmp_path / "ov")
    f = folder / "model.bin"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model\.bin.*sha256"):
        load_bundle(folder)


def test_wrong_schema_refused(ort_copy):
    _edit_manifest(ort_copy, schema="mtlsi-edge/bundle@999")
    with pytest.raises(BundleError, match="schema"):
        load_bundle(ort_copy)


def test_manifest_not_json_refused(ort_copy):
    (ort_copy / MANIFEST).write_text("{not json")
    with pytest.raises(BundleError, match="unreadable manifest"):
        load_bundle(ort_copy)


def test_manifest_missing_key_refused(ort_copy):
    m = json.loads((ort_copy / MANIFEST).read_text())
    del m["task_set"]
    _resign(ort_copy, m)
    with pytest.raises(BundleError, match="task_set"):
        load_bundle(ort_copy)


def test_non_bundle_folder_refused(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"not a bundle")
    with pytest.raises(BundleError, match="not a bundle"):
        load_bundle(tmp_path)
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "nowhere")


@pytest.mark.parametrize("entry", ["../model.onnx", "sub/../../x.onnx"])
def test_file_entry_outside_bundle_refused(ort_copy, entry):
    # make the escaping path resolve to a real file with the right digest: still refused
    target = (ort_copy / entry).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ort_copy / "model.onnx", target)
    m = json.loads((ort_copy / MANIFEST).read_text())
    m["files"][entry] = sha256(target)
    _resign(ort_copy, m)
    with pytest.raises(BundleError, match="outside the bundle"):
        load_bundle(ort_copy)


def test_absolute_file_entry_refused(ort_copy):
    m = json.loads((ort_copy / MANIFEST).read_text())
    m["files"][str((ort_copy / "model.onnx").resolve())] = m["files"]["model.onnx"]
    _resign(ort_copy, m)
    with pytest.raises(BundleError, match="outside the bundle"):
        load_bundle(ort_copy)


# -- targets -----------------------------------------------------------------------------------

def test_unknown_target_is_a_clear_error(tiny_onnx, tmp_path):
    with pytest.raises(TargetUnavailable, match=r"unknown target 'nope'; known: .*onnxruntime"):
        get_target("nope")
    with pytest.raises(TargetUnavailable, match="unknown target 'nope'"):
        compile_bundle(tmp_path / "b", CompileRequest("nope", model_file=tiny_onnx))
    assert not (tmp_path / "b").exists()


def test_registry_names_match():
    assert set(TARGETS) == {"torch", "onnxruntime", "openvino", "tensorrt", "torch-tensorrt"}
    assert all(t.name == name for name, t in TARGETS.items())


@pytest.mark.skipif(TRT_OK, reason="tensorrt is importable here")
def test_tensorrt_unavailable_says_why(tiny_onnx, tmp_path):
    with pytest.raises((BundleError, TargetUnavailable)) as e:
        compile_bundle(tmp_path / "trt", CompileRequest("tensorrt", model_file=tiny_onnx))
    msg = str(e.value)
    assert "tensorrt" in msg and "not installed" in msg and "\n" not in msg
    assert list(tmp_path.iterdir()) == []  # nothing staged


def test_unsupported_precision_refused(tiny_onnx, tmp_path):
    with pytest.raises(BundleError, match="onnxruntime supports fp32, int8, not fp16"):
        compile_bundle(tmp_path / "b", CompileRequest("onnxruntime", "fp16",
                                                      model_file=tiny_onnx))


def test_torch_target_needs_checkpoint(tiny_onnx, tmp_path):
    with pytest.raises(TargetUnavailable, match="needs a checkpoint"):
        compile_bundle(tmp_path / "b", CompileRequest("torch", model_file=tiny_onnx))
    assert list(tmp_path.iterdir()) == []  # staging and work folders cleaned up


def test_missing_sources_refused(tmp_path):
    with pytest.raises(BundleError, match="file not found"):
        compile_bundle(tmp_path / "b", CompileRequest("onnxruntime",
                                                      model_file=tmp_path / "none.onnx"))
    with pytest.raises(BundleError, match="checkpoint or an ONNX"):
        compile_bundle(tmp_path / "b", CompileRequest("onnxruntime"))


def test_onnx_without_metadata_refused(tiny_onnx, tmp_path):
    import onnx

    proto = onnx.load(str(tiny_onnx))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(BundleError, match="lacks mtlsi_edge metadata"):
        compile_bundle(tmp_path / "b", CompileRequest("onnxruntime", model_file=bare))
    assert sorted(f.name for f in tmp_path.iterdir()) == ["bare.onnx"]


def test_openvino_fp16_is_deterministic_across_calls(tmp_path, tiny_checkpoint):
    """Regression: OpenVINO CPU with FP16 weights drifted between calls on the same input
    until snippets were disabled for FP16 bundles."""
    import numpy as np

    from mtlsi_edge.compiler import CompileRequest, compile_bundle
    from mtlsi_edge.targets import CompileOptions

    b = compile_bundle(tmp_path / "f16", CompileRequest(
        "openvino", "fp16", checkpoint=tiny_checkpoint, options=CompileOptions(device="CPU"),
        force=True))
    from mtlsi_edge.runtime.predictor import Predictor

    p = Predictor.from_bundle(b)
    x = np.random.default_rng(0).integers(0, 256, (1, *p.input_size, 3), dtype=np.uint8)
    first = p.runner(x)
    for _ in range(3):
        again = p.runner(x)
        for k in first:
            assert np.array_equal(first[k], again[k]), k
