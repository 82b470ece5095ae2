"""ONNX export of the deploy graph (static and dynamic), normalisation and the parity report."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from mtlsi_edge.compiler import reference_inputs
from mtlsi_edge.export import (
    INPUT_NAME,
    MEAN,
    STD,
    DeployModel,
    export_onnx,
    normalize,
)
from mtlsi_edge.tasks import Task, TaskSet, get_task_set
from mtlsi_edge.verify import parity_report

pytestmark = pytest.mark.usefixtures("torch_one_thread")
SIZE = (64, 96)  # the tiny model's input size (tests/conftest.py)


def _torch_outputs(model, x: np.ndarray, stride: int = 4) -> dict[str, np.ndarray]:
    dm = DeployModel(model, stride).eval()
    with torch.inference_mode():
        res = dm(torch.from_numpy(x))
    return {n: r.numpy() for n, r in zip(dm.output_names, res)}


def _ort_outputs(path, x: np.ndarray) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {INPUT_NAME: x})))


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def _meta(proto) -> dict:
    found = [p.value for p in proto.metadata_props if p.key == "mtlsi_edge"]
    assert len(found) == 1, "exactly one mtlsi_edge metadata entry expected"
    return json.loads(found[0])


def test_static_export_is_valid_and_self_describing(tiny_model, tiny_onnx):
    proto = onnx.load(str(tiny_onnx))
    onnx.checker.check_model(proto)  # the final file (with metadata), not only the temp one
    meta = _meta(proto)
    assert meta["model_config"] == json.loads(json.dumps(tiny_model.cfg.to_dict()))
    assert meta["stride"] == 4 and meta["dynamic"] is False
    assert [i.name for i in proto.graph.input] == [INPUT_NAME]
    assert _dims(proto.graph.input[0]) == [1, 3, *SIZE]
    assert [o.name for o in proto.graph.output] == tiny_model.task_set.names
    # atomic write: no staging file left next to it
    assert sorted(p.name for p in tiny_onnx.parent.iterdir()) == [tiny_onnx.name]


def test_static_export_matches_pytorch(tiny_model, tiny_onnx):
    x = reference_inputs(SIZE, n=2)
    got = {k: [] for k in tiny_model.task_set.names}
    for i in range(len(x)):  # static graph: batch 1
        for k, v in _ort_outputs(tiny_onnx, x[i:i + 1]).items():
            got[k].append(v)
    ref = _torch_outputs(tiny_model, x)
    for t in tiny_model.task_set:
        g = np.concatenate(got[t.name])
        assert g.shape == (2, t.out_channels, SIZE[0] // 4, SIZE[1] // 4), t.name
        np.testing.assert_allclose(g, ref[t.name], atol=1e-4, rtol=0, err_msg=t.name)
    # activations are in the graph: depth ≥ 0, unit normals, boundary probabilities
    assert (np.concatenate(got["depth"]) >= 0).all()
    n = np.concatenate(got["normals"])
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-4)
    b = np.concatenate(got["boundary"])
    assert ((b >= 0) & (b <= 1)).all()


def test_deploy_stride_validated(tiny_model):
    with pytest.raises(ValueError, match="stride must be 1 or 4"):
        DeployModel(tiny_model, stride=2)


@pytest.mark.slow
def test_dynamic_export_runs_at_other_sizes(tiny_model, tmp_path):
    """Symbolic H×W: one export serves sizes the window / the /16 grid do not divide."""
    path = export_onnx(tiny_model, tmp_path / "dyn.onnx", dynamic=True)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert _meta(proto)["dynamic"] is True
    n_dim, c_dim, h_dim, w_dim = _dims(proto.graph.input[0])
    assert c_dim == 3
    assert all(isinstance(d, str) for d in (n_dim, h_dim, w_dim)), "N, H, W must be symbolic"
    assert [o.name for o in proto.graph.output] == tiny_model.task_set.names
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    # 72×104: not a multiple of 16 nor of the window (10 at 1/8); batch 2 as well
    for n, hw in [(2, (72, 104)), (1, (96, 128))]:
        x = reference_inputs(hw, n=n)
        got = dict(zip(names, sess.run(names, {INPUT_NAME: x})))
        ref = _torch_outputs(tiny_model, x)
        for t in tiny_model.task_set:
            assert got[t.name].shape == (n, t.out_channels, hw[0] // 4, hw[1] // 4), (hw, t.name)
            np.testing.assert_allclose(got[t.name], ref[t.name], atol=1e-4, rtol=0,
                                       err_msg=f"{t.name} at {hw}")


def test_normalize_matches_imagenet_convention():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    x = normalize(imgs)
    assert x.shape == (2, 3, 5, 7) and x.dtype == np.float32 and x.flags.c_contiguous
    for c in range(3):
        want = (imgs[..., c].astype(np.float32) / 255 - MEAN[c]) / STD[c]
        np.testing.assert_allclose(x[:, c], want, rtol=1e-6, atol=1e-6)


def _two_task_set() -> TaskSet:
    return TaskSet("t", (Task("semseg", "segmentation", 3, 1.0), get_task_set("nyud")["normals"]))


def test_parity_report_values_and_layouts():
    ts = _two_task_set()
    rng = np.random.default_rng(0)
    seg = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    nrm = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    ref = {"semseg": seg, "normals": nrm}

    same = parity_report(ref, {k: v.copy() for k, v in ref.items()}, ts)
    assert same["semseg"] == {"max_abs": 0.0, "mean_abs": 0.0, "argmax_agree_pct": 100.0}
    assert same["normals"]["max_abs"] == 0.0
    assert same["normals"]["angle_max_deg"] < 0.1  # arccos(1 - eps) is not exactly 0

    # the other runner emits NHWC: the report transposes before comparing
    nhwc = {k: v.transpose(0, 2, 3, 1).copy() for k, v in ref.items()}
    rep = parity_report(ref, nhwc, ts, got_layouts={"semseg": "NHWC", "normals": "NHWC"})
    assert rep["semseg"]["max_abs"] == 0.0 and rep["normals"]["max_abs"] == 0.0

    # one pixel's argmax flipped out of 2·4·5 = 40; normals flipped: 180°
    bad = seg.copy()
    bad[0, (seg[0, :, 0, 0].argmax() + 1) % 3, 0, 0] = seg[0, :, 0, 0].max() + 1.0
    rep = parity_report(ref, {"semseg": bad, "normals": -nrm}, ts)
    assert rep["semseg"]["argmax_agree_pct"] == pytest.approx(100 * 39 / 40)
    assert rep["semseg"]["max_abs"] == pytest.approx(np.abs(bad - seg).max())
    assert rep["normals"]["angle_mean_deg"] == pytest.approx(180.0, abs=0.1)
    assert rep["normals"]["max_abs"] == pytest.approx(2 * np.abs(nrm).max(), rel=1e-6)


def test_fold_weight_ops_folds_weight_math_only():
    """Weight arithmetic the exporter leaves as nodes becomes initializers; a graph input's
    default, a graph output and an op the reference evaluator does not know stay nodes, and
    the folded model computes the same."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    from mtlsi_edge.export import fold_weight_ops

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(3, 4)).astype(np.float32)
    inits = [numpy_helper.from_array(a, "a"), numpy_helper.from_array(b, "b"),
             numpy_helper.from_array(np.ones(4, np.float32), "dflt")]
    nodes = [helper.make_node("MatMul", ["a", "b"], ["w"], name="fold_me"),
             helper.make_node("MatMul", ["x", "w"], ["y0"]),
             helper.make_node("Add", ["dflt", "dflt"], ["z"], name="input_default"),
             helper.make_node("Mul", ["b", "b"], ["bb"], name="to_output"),
             helper.make_node("Custom", ["a"], ["c"], domain="my.ops", name="custom"),
             helper.make_node("Add", ["y0", "dflt"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                     [2, 4]),
                                       helper.make_tensor_value_info("dflt", TensorProto.FLOAT,
                                                                     [4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4]),
                           helper.make_tensor_value_info("bb", TensorProto.FLOAT, [3, 4])],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                            helper.make_opsetid("my.ops", 1)])
    x = rng.normal(size=(2, 4)).astype(np.float32)
    ref = x @ (a @ b) + 1.0
    folded = fold_weight_ops(m)
    names = {n.name for n in folded.graph.node}
    assert "fold_me" not in names and "w" in {i.name for i in folded.graph.initializer}
    assert {"input_default", "to_output", "custom"} <= names
    sub = onnx.helper.make_model(onnx.helper.make_graph(
        [n for n in folded.graph.node if n.op_type == "MatMul" or n.output[0] == "y"], "s",
        list(folded.graph.input), [folded.graph.output[0]],
        [i for i in folded.graph.initializer if i.name in ("w", "dflt")]),
        opset_imports=[helper.make_opsetid("", 17)])
    np.testing.assert_allclose(ReferenceEvaluator(sub).run(None, {"x": x, "dflt": np.ones(
        4, np.float32)})[0], ref, rtol=1e-5)
