"""Which deploy graph a bundle runs: the target's measured default (task-batched for OpenVINO,
ONNX Runtime and eager PyTorch; the per-task reference for TensorRT, not measured on a GPU),
``compile --graph`` to choose, recorded in the manifest."""

from __future__ import annotations

import pytest
from conftest import one_error_line
from typer.testing import CliRunner

from mtlsi_edge.bundle import load_bundle
from mtlsi_edge.cli import app
from mtlsi_edge.model import create_model
from mtlsi_edge.runtime.predictor import Predictor, check_bundle_folder
from mtlsi_edge.targets import get_target

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.mark.parametrize("target,graph", [("onnxruntime", "batched"), ("torch", "batched")])
def test_bundles_run_the_targets_default_graph(bundle, target, graph):
    m, _ = load_bundle(bundle(target))
    assert m["graph"] == graph
    assert m["model"]["config"]["task_batched"] is (graph == "batched")


def test_use_graph_reports_what_runs():
    m = create_model("edge-effvit-b0", input_size=(64, 96))
    assert get_target("openvino").default_graph == "batched"
    assert get_target("torch").default_graph == "batched"
    assert get_target("tensorrt").default_graph == "per-task"  # not measured on a GPU
    assert m.use_graph("batched") == "batched" == m.graph and m.cfg.task_batched
    assert m.use_graph("per-task") == "per-task" == m.graph and not m.cfg.task_batched
    shifted = create_model("edge-effvit-b0", input_size=(64, 96), shifted_windows=True,
                           cwib_depths=(1, 1))
    assert shifted.use_graph("batched") == "per-task"  # no batched shifted windows


def test_compile_graph_option(tiny_checkpoint, tiny_onnx, tmp_path):
    """OpenVINO from a checkpoint runs the batched graph unless `--graph per-task`; both are
    recorded, pass their gate and load; a bad value, or `--graph` with an ONNX file (whose
    graph is fixed), is one line and exit 2 before any work."""
    for opt, graph in (([], "batched"), (["--graph", "per-task"], "per-task")):
        out = tmp_path / graph
        res = CliRunner().invoke(app, ["compile", "--target", "openvino", "--checkpoint",
                                       str(tiny_checkpoint), *opt, "--out", str(out)])
        assert res.exit_code == 0, res.output
        m, _ = load_bundle(out)
        assert m["graph"] == graph and m["gate"]["passed"]
        assert check_bundle_folder(out).passed  # its stored references reproduce on load
        assert m["model"]["config"]["task_batched"] is (graph == "batched")
        p = Predictor.from_bundle(out, threads=1)
        assert set(p.runner(p.sample_input())) == set(m["outputs"])
    for extra, words in ((["--checkpoint", str(tiny_checkpoint), "--graph", "fast"],
                          "graph must be batched or per-task, got 'fast'"),
                         (["--onnx", str(tiny_onnx), "--graph", "batched"],
                          "--graph applies to a checkpoint")):
        bad = CliRunner().invoke(app, ["compile", "--target", "openvino", *extra, "--out",
                                       str(tmp_path / "c")])
        one_error_line(bad, words, code=2)
        assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("target", ["torch", "onnxruntime"])
def test_batched_bundles_pass_their_self_check(bundle, target):
    """The batched graph's outputs are channels-last in torch: the references stored at
    compile time must still be what a reload computes (they were stored scrambled once)."""
    assert check_bundle_folder(bundle(target)).passed


def test_references_store_channels_last_arrays_in_order(tmp_path):
    import numpy as np

    from mtlsi_edge import verify
    from mtlsi_edge.tasks import get_task_set

    ts = get_task_set("nyud")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (2, 8, 8, 3), dtype=np.uint8)
    normals = rng.normal(size=(2, 8, 8, 3)).astype(np.float32).transpose(0, 3, 1, 2)
    assert not normals.flags["C_CONTIGUOUS"]
    out = {t.name: (normals if t.name == "normals" else
                    rng.random((2, 8, 8)).astype(np.float32)) for t in ts}
    out["semseg"] = rng.integers(0, 40, (2, 8, 8), dtype=np.uint8)
    verify.save_references(tmp_path / "r.safetensors", frames, out)
    _, back = verify.load_references(tmp_path / "r.safetensors", ts)
    for k, v in out.items():
        np.testing.assert_array_equal(back[k], v, err_msg=k)


def test_quantize_graph_option_reaches_the_bundle(tiny_checkpoint, tmp_path):
    """`quantize --graph per-task` quantises the per-task graph (the exported ONNX records it)
    and a bundle compiled from it records it too; the default is the target's (batched)."""
    import json

    import onnx

    from mtlsi_edge.compiler import CompileRequest, compile_bundle
    from mtlsi_edge.targets import CompileOptions

    for opt, graph in ((["--graph", "per-task"], "per-task"), ([], "batched")):
        stem = tmp_path / graph / "q"
        res = CliRunner().invoke(app, ["quantize", "--checkpoint", str(tiny_checkpoint),
                                       "--format", "onnx", "--n", "4", "--gate",
                                       "semseg=50", "--gate", "depth=0.5", "--gate",
                                       "normals=45", "--gate", "boundary=50", *opt,
                                       "--out", str(stem)])
        assert res.exit_code == 0, res.output
        meta = {p.key: p.value for p in onnx.load(str(stem) + ".onnx").metadata_props}
        assert json.loads(meta["mtlsi_edge"])["graph"] == graph
        b = compile_bundle(tmp_path / graph / "b", CompileRequest(
            "onnxruntime", "int8", model_file=stem.with_name(stem.name + ".onnx"), force=True,
            options=CompileOptions(threads=1)))
        assert load_bundle(b)[0]["graph"] == graph


def test_export_graph_option(tiny_checkpoint, tmp_path):
    """`export --graph batched` writes the batched graph and says so (the ONNX metadata too);
    a bundle compiled from that file records it; a bad value is one line, exit 2."""
    import json

    import onnx

    out = tmp_path / "m.onnx"
    res = CliRunner().invoke(app, ["export", "--checkpoint", str(tiny_checkpoint), "--graph",
                                   "batched", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "(batched graph)" in " ".join(res.output.split())  # rich wraps lines
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["mtlsi_edge"])["graph"] == "batched"
    res = CliRunner().invoke(app, ["compile", "--target", "onnxruntime", "--onnx", str(out),
                                   "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    assert load_bundle(tmp_path / "b")[0]["graph"] == "batched"
    bad = CliRunner().invoke(app, ["export", "--checkpoint", str(tiny_checkpoint), "--graph",
                                   "both", "--out", str(tmp_path / "x.onnx")])
    one_error_line(bad, "graph must be batched or per-task", code=2)
    assert not (tmp_path / "x.onnx").exists()
