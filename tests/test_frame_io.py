"""Frame-I/O bundles: pre/postprocessing folded into the compiled model.

The bundle's model takes the uint8 BGR frame at the input size and emits class labels; the
Predictor's host side is one resize in and one resize per output out.  Its results must equal
the float-input bundle's (the old host-side pre/postprocessing) on the same trained model, old
bundles must still load, and a manifest that misdescribes the graph is refused.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import STARTER, needs_starter, one_error_line

from mtlsi_edge.bundle import MANIFEST, load_bundle, write_manifest
from mtlsi_edge.compiler import CompileRequest, compile_bundle
from mtlsi_edge.data.synthindoor import render_sample
from mtlsi_edge.errors import BundleError
from mtlsi_edge.runtime.predictor import Predictor
from mtlsi_edge.targets import CompileOptions

pytestmark = [pytest.mark.usefixtures("torch_one_thread"), needs_starter]
DEVICE = {"onnxruntime": "cpu", "openvino": "CPU", "torch": "cpu"}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """(target, frame_io) → bundle of the starter model (compiled once per module)."""
    root = tmp_path_factory.mktemp("frame_io")
    cache: dict = {}

    def get(target: str, frame_io: bool) -> Path:
        if (target, frame_io) not in cache:
            cache[target, frame_io] = compile_bundle(root / f"{target}-{frame_io}", CompileRequest(
                target, "fp32", checkpoint=STARTER, frame_io=frame_io,
                options=CompileOptions(device=DEVICE[target], threads=1)))
        return cache[target, frame_io]

    return get


@pytest.fixture(scope="module")
def frame640() -> np.ndarray:
    return np.ascontiguousarray(render_sample(20_000_500, size=(480, 640)).image_rgb[:, :, ::-1])


@pytest.mark.parametrize("target", ["onnxruntime", "openvino", "torch"])
def test_frame_io_equals_host_pre_and_postprocessing(bundles, frame640, target):
    frame_p = Predictor.from_bundle(bundles(target, True), threads=1)
    host_p = Predictor.from_bundle(bundles(target, False), threads=1)
    assert frame_p.manifest["io"] == "frame" and host_p.manifest["io"] == "tensor"
    a, b = frame_p(frame640), host_p(frame640)
    assert list(a) == list(b)
    agree = (a["semseg"] == b["semseg"]).mean()
    assert agree >= 0.999, agree
    for k in ("depth", "normals", "boundary"):
        assert a[k].shape == b[k].shape and a[k].dtype == b[k].dtype
        np.testing.assert_allclose(a[k], b[k], atol=2e-4, err_msg=k)
    np.testing.assert_allclose(np.linalg.norm(a["normals"], axis=-1), 1.0, atol=1e-4)


@pytest.mark.parametrize("target", ["onnxruntime", "openvino"])
def test_frame_bundle_graph_io(bundles, target):
    m, folder = load_bundle(bundles(target, True))
    p = Predictor.from_bundle(folder, threads=1)
    h, w = m["input"]["size"]
    in_shape, outs = p.runner.io()
    assert in_shape == [1, h, w, 3]
    lh, lw = m["label_size"]
    assert (lh, lw) == (h // m["label_stride"], w // m["label_stride"])
    x = np.zeros((1, h, w, 3), np.uint8)
    raw = p.runner(x)
    assert raw["semseg"].dtype == np.uint8
    assert raw["semseg"].reshape(-1).max() < p.task_set["semseg"].out_channels
    assert raw["semseg"].size == lh * lw
    assert raw["depth"].dtype == np.float32


def test_frame_bundle_self_check_passes(bundles):
    p = Predictor.from_bundle(bundles("openvino", True), threads=1, verify=True)
    assert p.check.passed, p.check.result.failures


def _edit(folder: Path, tmp_path: Path, edit) -> Path:
    copy = Path(shutil.copytree(folder, tmp_path / "b"))
    m = json.loads((copy / MANIFEST).read_text())
    m.pop("integrity")
    edit(m)
    write_manifest(copy, m)
    return copy


def test_schema_2_bundle_still_loads_and_checks(bundles, tmp_path):
    """A bundle of the previous schema (float NCHW input, no 'io' field) keeps working."""
    def to_v2(m):
        m["schema"] = "mtlsi-edge/bundle@2"
        m.pop("io")
    old = _edit(bundles("onnxruntime", False), tmp_path, to_v2)
    p = Predictor.from_bundle(old, threads=1, verify=True)
    assert not p.frame_io and p.check.passed


def test_manifest_that_misdescribes_the_graph_is_refused(bundles, tmp_path):
    lie = _edit(bundles("onnxruntime", True), tmp_path, lambda m: m.update(io="tensor"))
    with pytest.raises(BundleError, match="model input"):
        Predictor.from_bundle(lie, threads=1)


def test_frame_bundle_normalisation_record_must_match_the_graph(bundles, tmp_path):
    def edit(m):
        m["input"]["mean"] = [0.3, 0.3, 0.3]
    with pytest.raises(BundleError, match="input.mean"):
        load_bundle(_edit(bundles("onnxruntime", True), tmp_path, edit))


def test_target_without_frame_io_is_refused_when_asked(tmp_path, monkeypatch):
    """TensorRT targets keep float input (frame I/O unverified on a GPU): asking is refused
    before any work (stood in for by an ONNX Runtime target without the capability)."""
    from mtlsi_edge.targets.onnxruntime import ONNXRuntimeTarget

    monkeypatch.setattr(ONNXRuntimeTarget, "frame_io", False)
    with pytest.raises(BundleError, match="frame I/O"):
        compile_bundle(tmp_path / "t", CompileRequest("onnxruntime", "fp32", checkpoint=STARTER,
                                                      frame_io=True))
    assert not (tmp_path / "t").exists()


def test_a_bgr_view_at_the_input_size_works_on_every_frame_target(bundles):
    """``rgb[:, :, ::-1]`` at exactly the input size needs no resize, so the frame reaches the
    runner as is: negative strides must not break torch.from_numpy (regression)."""
    for target in ("torch", "onnxruntime"):
        p = Predictor.from_bundle(bundles(target, True), threads=1)
        rgb = render_sample(20_000_600, size=p.input_size).image_rgb
        view = rgb[:, :, ::-1]
        assert view.strides[-1] < 0
        got, want = p(view), p(np.ascontiguousarray(view))
        for k in got:
            np.testing.assert_array_equal(got[k], want[k], err_msg=f"{target} {k}")


def test_compile_label_stride_option(tmp_path):
    """`compile --label-stride 2` writes labels at half the input size; 3 is refused in one
    line before any work."""
    from typer.testing import CliRunner

    from mtlsi_edge.cli import app

    out = tmp_path / "b"
    res = CliRunner().invoke(app, ["compile", "--target", "onnxruntime", "--checkpoint",
                                   str(STARTER), "--label-stride", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    m, _ = load_bundle(out)
    h, w = m["input"]["size"]
    assert m["label_stride"] == 2 and m["label_size"] == [h // 2, w // 2]
    p = Predictor.from_bundle(out, threads=1)
    assert p.runner(p.sample_input())["semseg"].shape == (1, 1, h // 2, w // 2)
    bad = CliRunner().invoke(app, ["compile", "--target", "onnxruntime", "--checkpoint",
                                   str(STARTER), "--label-stride", "3", "--out",
                                   str(tmp_path / "c")])
    one_error_line(bad, "label stride must be 1, 2 or 4", code=2)
    assert not (tmp_path / "c").exists()


def _smooth_logits(n: int, c: int, h: int, w: int, seed: int = 0):
    """Logits with regions, like a segmentation head's (a few % of cells on label edges)."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, c, max(2, h // 8), max(2, w // 8), generator=g) * 3
    return (F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
            + 0.3 * torch.randn(n, c, h, w, generator=g))


@pytest.mark.parametrize("shape,size", [((1, 40, 60, 80), (240, 320)),  # stride 1
                                        ((2, 40, 60, 80), (120, 160)),  # stride 2, batch 2
                                        ((1, 13, 7, 9), (30, 41)),  # ratios that are not whole
                                        ((1, 5, 16, 16), (16, 16))])  # no resize at all
@pytest.mark.parametrize("kind", ["smooth", "noise"])
def test_bilinear_argmax_equals_resize_then_argmax(shape, size, kind):
    import torch
    import torch.nn.functional as F

    from mtlsi_edge.export import _blend_edges, _edge_cells, bilinear_argmax

    logits = (_smooth_logits(*shape) if kind == "smooth"
              else torch.randn(*shape, generator=torch.Generator().manual_seed(1)))
    want = F.interpolate(logits, size=size, mode="bilinear", align_corners=False).argmax(1)
    # the function as used, and its edge blend alone (whatever the share of edges)
    for got in (bilinear_argmax(logits, size), _blend_edges(logits, _edge_cells(logits), size)):
        assert got.shape == (shape[0], 1, *size) and got.dtype == torch.uint8
        # the same labels; a float near-tie may round the other way (none seen in practice)
        assert (got[:, 0].long() == want).float().mean().item() >= 0.9999


def test_onnx_frame_io_labels_on_few_many_and_no_label_edges():
    """The labels ONNX Runtime frame-I/O graphs compute (edge share → If: edge blend or full
    resize) equal resize-then-argmax of the same logits, on a smooth frame (few edges: the
    blend), a noise frame (mostly edges: the resize) and a flat one (no edge at all: empty
    tensors inside the blend)."""
    import onnx
    import onnxruntime as ort
    import torch
    import torch.nn.functional as F
    from onnx import TensorProto, helper, numpy_helper

    from mtlsi_edge.export import DENSE_ABOVE, _edge_cells, with_frame_io

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(40, 3, 1, 1)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["semseg"]),
         helper.make_node("Identity", ["semseg"], ["copy"])], "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 60, 80])],
        [helper.make_tensor_value_info("semseg", TensorProto.FLOAT, [1, 40, 60, 80]),
         helper.make_tensor_value_info("copy", TensorProto.FLOAT, [1, 40, 60, 80])], [w])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto = with_frame_io(proto, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), ["semseg"], (240, 320))
    onnx.checker.check_model(proto)
    assert "If" in {n.op_type for n in proto.graph.node}
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    yy, xx = np.mgrid[0:60, 0:80]
    smooth = np.stack([yy * 4, xx * 3, 255 - yy * 4], -1)
    frames = {"smooth": smooth, "noise": rng.integers(0, 256, (60, 80, 3)),
              "flat": np.full((60, 80, 3), 128)}
    shares = {}
    for name, f in frames.items():
        labels, logits = sess.run(None, {"image": f[None].astype(np.uint8)})
        t = torch.from_numpy(logits)
        want = F.interpolate(t, size=(240, 320), mode="bilinear", align_corners=False)
        want = want.argmax(1, keepdim=True).numpy()
        assert labels.dtype == np.uint8 and labels.shape == want.shape
        assert (labels == want).mean() >= 0.9999, name
        shares[name] = (_edge_cells(t) < 0).float().mean().item()
    assert shares["smooth"] < DENSE_ABOVE < shares["noise"] and shares["flat"] == 0


def test_onnx_frame_io_labels_use_bilinear_argmax(bundles):
    import onnx

    proto = onnx.load(str(bundles("onnxruntime", True) / "model.onnx"))
    nodes = {n.name: n for n in proto.graph.node}
    label_ops = {n.op_type for k, n in nodes.items() if k.startswith("semseg__labels/")}
    assert "ReduceMean" in label_ops and "Resize" not in label_ops  # the edge share
    (choice,) = [n for n in proto.graph.node if n.op_type == "If"]
    branches = {a.name: {n.op_type for n in a.g.node} for a in choice.attribute}
    assert "Resize" in branches["then_branch"]
    assert {"NonZero", "ScatterND"} <= branches["else_branch"]
    assert not [n for n in proto.graph.node if "semseg__logits" in n.input
                and n.op_type == "Resize"]


def test_bilinear_argmax_keeps_the_logits_dtype():
    import torch

    from mtlsi_edge.export import bilinear_argmax

    logits = _smooth_logits(1, 12, 15, 20, seed=3)
    want = bilinear_argmax(logits, (60, 80))
    assert (bilinear_argmax(logits.double(), (60, 80)) == want).float().mean() >= 0.9999
    assert bilinear_argmax(logits.bfloat16(), (60, 80)).dtype == torch.uint8
    assert torch.equal(bilinear_argmax(logits, (15, 20)), logits.argmax(1, keepdim=True)
                       .to(torch.uint8))  # no resize: the plain argmax
