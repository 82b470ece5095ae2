"""Profiler: statistics, timing loops, per-layer grouping, report writers and the CLI."""

from __future__ import annotations

import csv
import json
import random
import statistics
import time

import pytest
from conftest import one_error_line
from typer.testing import CliRunner

from mtlsi_edge.backends.onnxruntime import parse_ort_profile
from mtlsi_edge.cli import app
from mtlsi_edge.profiler import report
from mtlsi_edge.profiler.bench import ProfileOptions, classify_node, profile_bundle
from mtlsi_edge.runtime.predictor import Predictor
from mtlsi_edge.stats import nearest_rank, summarize
from mtlsi_edge.timing import measure

pytestmark = pytest.mark.usefixtures("torch_one_thread")
PNG = b"\x89PNG\r\n\x1a\n"


# -- statistics ---------------------------------------------------------------------------
def test_summarize_one_to_hundred():
    s = summarize([i / 1000 for i in range(1, 101)])  # seconds in, milliseconds out
    assert s["n"] == 100
    assert s["p90_ms"] == pytest.approx(90)
    assert s["p95_ms"] == pytest.approx(95)
    assert s["p99_ms"] == pytest.approx(99)
    assert s["min_ms"] == pytest.approx(1) and s["max_ms"] == pytest.approx(100)
    assert s["median_ms"] == pytest.approx(50.5) and s["mean_ms"] == pytest.approx(50.5)
    assert s["std_ms"] == pytest.approx(statistics.stdev(range(1, 101)))  # n-1: 29.01
    assert s["fps"] == pytest.approx(1000 / 50.5)


def test_summarize_single_and_unsorted():
    one = summarize([0.004])
    assert one["n"] == 1 and one["std_ms"] == 0.0
    assert one["min_ms"] == one["median_ms"] == one["p99_ms"] == one["max_ms"] == \
        pytest.approx(4.0)
    assert one["fps"] == pytest.approx(250.0)
    vals = [i / 1000 for i in range(1, 101)]
    random.Random(0).shuffle(vals)
    assert summarize(vals) == pytest.approx(summarize(sorted(vals)))
    small = summarize([0.003, 0.001, 0.004, 0.002])
    assert small["median_ms"] == pytest.approx(2.5)
    assert small["p90_ms"] == pytest.approx(4)  # rank ceil(3.6) = 4
    assert small["std_ms"] == pytest.approx(statistics.stdev([1, 2, 3, 4]))


def test_nearest_rank_definition():
    ten = list(range(1, 11))
    assert nearest_rank(ten, 90) == 9 and nearest_rank(ten, 91) == 10
    assert nearest_rank(ten, 100) == 10 and nearest_rank(ten, 1) == 1
    assert nearest_rank(list(range(1, 101)), 29) == 29  # 0.29*100 is 28.999…; rank stays 29


def test_summarize_refuses_empty_and_negative():
    with pytest.raises(ValueError):
        summarize([])
    with pytest.raises(ValueError):
        summarize([0.001, -0.002])
    with pytest.raises(ValueError):
        nearest_rank([], 50)


# -- timing loops -------------------------------------------------------------------------
class Counter:
    def __init__(self, sleep: float = 0.0):
        self.calls, self.stamps, self.sleep = 0, [], sleep

    def __call__(self) -> None:
        self.calls += 1
        self.stamps.append(time.perf_counter())
        if self.sleep:
            time.sleep(self.sleep)


def test_measure_warmup_count_then_runs():
    fn = Counter()
    times = measure(fn, warmup_s=0.0, warmup_runs=5, runs=7)
    assert len(times) == 7 and fn.calls == 12
    assert all(t >= 0 for t in times)


def test_measure_warmup_by_time_and_count():
    fn = Counter(sleep=0.002)
    times = measure(fn, warmup_s=0.05, warmup_runs=2, runs=3)
    warm = fn.calls - 3
    assert warm >= 2
    # the first timed call starts only after ≥ 50 ms of warm-up
    assert fn.stamps[warm] - fn.stamps[0] >= 0.05
    assert len(times) == 3 and min(times) >= 0.002


def test_measure_by_duration():
    fn = Counter(sleep=0.005)
    t0 = time.perf_counter()
    times = measure(fn, warmup_s=0.0, warmup_runs=1, time_s=0.05)
    assert time.perf_counter() - t0 >= 0.05
    assert 1 <= len(times) <= fn.calls - 1
    assert sum(times) >= 0.04


@pytest.mark.parametrize("kw", [{"runs": 0}, {"runs": -3}, {"time_s": 0}, {"time_s": -1.0},
                                {"time_s": 1.0, "runs": 5}])
def test_measure_refuses_bad_budget(kw):
    with pytest.raises(ValueError):
        measure(Counter(), warmup_s=0, warmup_runs=0, **kw)


# -- per-layer grouping -------------------------------------------------------------------
STRUCTURE = {"tasks": ["semseg", "depth"], "prelim": ["aux", "body"],
             "decoders": ["cwib4", "cwib8", "merge4", "merge8"]}


@pytest.mark.parametrize("name,part", [
    ("/model/backbone/body/stem_in_conv/conv/Conv", "backbone"),
    ("image_abcd_acdb_/model/backbone/body/stem/Conv/WithoutBiases", "backbone"),
    ("/model/fusion.0/semseg/MatMul", "MT-MQLFB"),
    ("/model/distiller/mlp/mlp.0/Add", "distiller"),
    ("/model/prelim/semseg/body/Conv", "preliminary decoders"),
    ("/model/decoders/depth/cwib8.0/Softmax", "CWIB decoders"),
    ("/model/heads/semseg/Conv", "heads"),
    ("/model/semseg/body/body.0/Conv", "preliminary decoders"),
    ("/model/depth/cwib8.0/local/Softmax", "CWIB decoders"),
    ("/model/semseg/merge4/merge4.2/Relu_output_0_nchwc", "CWIB decoders"),
    ("/model/semseg/Resize_1", "CWIB decoders"),
    ("/model/semseg_1/Conv", "heads"),
    ("/model/depth_1/Conv/WithoutBiases", "heads"),
    ("ReorderInput_token_498", "other"),
    ("MVN_10650", "other"),
])
def test_classify_node(name, part):
    assert classify_node(name, STRUCTURE) == part


def test_parse_ort_profile_keeps_last_runs_kernels():
    ev = [{"cat": "Session", "name": "model_run", "ts": 0, "dur": 10},
          {"cat": "Node", "name": "/model/backbone/Conv_kernel_time", "ts": 1, "dur": 900,
           "args": {"op_name": "Conv"}},
          {"cat": "Session", "name": "model_run", "ts": 100, "dur": 10},
          {"cat": "Node", "name": "/model/backbone/Conv_fence_before", "ts": 101, "dur": 0},
          {"cat": "Node", "name": "/model/backbone/Conv_kernel_time", "ts": 101, "dur": 300,
           "args": {"op_name": "Conv"}},
          {"cat": "Node", "name": "/model/fusion.0/Add_kernel_time", "ts": 102, "dur": 100,
           "args": {"op_name": "Add"}}]
    got = parse_ort_profile(ev, last_runs=1)
    assert got == {"/model/backbone/Conv": ("Conv", 0.3), "/model/fusion.0/Add": ("Add", 0.1)}
    assert parse_ort_profile(ev)["/model/backbone/Conv"][1] == pytest.approx(1.2)


# -- reports ------------------------------------------------------------------------------
def _row(target: str, precision: str, median_ms: float, **extra) -> dict:
    times = [median_ms * (0.9 + 0.02 * i) / 1e3 for i in range(11)]
    c = summarize(times)
    row = {"name": f"{target}-{precision}", "target": target, "precision": precision,
           "mode": "latency", "device": "CPU", "threads": 2,
           "compute": {**c, "times_ms": [t * 1e3 for t in times]},
           "e2e": {**summarize([t * 1.2 for t in times]),
                   "times_ms": [t * 1.2e3 for t in times],
                   "split_ms": {"preprocess": 0.3, "inference": median_ms,
                                "postprocess": 0.8}},
           "fps": c["fps"], "params": 1_129_162, "gmacs": 0.5,
           "gflops_per_s": 1.0 / (c["median_ms"] / 1e3), "model_file_mb": 4.4,
           "memory": {"peak_rss_mb": 900.0}, "per_layer": None, "notes": [], "skipped": None}
    row.update(extra)
    return row


@pytest.fixture()
def doc():
    pl = {"source": "fake", "iterations": 5, "total_ms": 10.0,
          "parts": {"backbone": {"ms": 6.0, "share": 0.6}, "other": {"ms": 4.0, "share": 0.4}},
          "top": [{"name": "/model/backbone/Conv", "type": "Convolution", "part": "backbone",
                   "ms": 6.0, "share": 0.6}], "nodes": 1}
    results = [_row("torch", "fp32", 40.0), _row("openvino", "fp32", 20.0, per_layer=pl),
               {"name": "torch-fp32", "target": "torch", "precision": "fp32",
                "mode": "throughput", "skipped": "not for torch", "compute": None}]
    report.add_ratios(results)
    return {"schema": report.SCHEMA, "created": "now",
            "machine": {"cpu": "Test CPU", "logical_cores": 2, "physical_cores": 2,
                        "isa": {"avx2": True, "avx512f": False}, "runtimes": {"torch": "x"}},
            "settings": {"runs": 11}, "results": results, "notes": ["a note"]}


def test_report_writers(doc, tmp_path):
    from mtlsi_edge.profiler.plots import write_plots

    out = report.write_all(doc, tmp_path / "p.json", tmp_path / "p.csv", tmp_path / "p.md",
                           tmp_path / "plots", plotter=write_plots)
    back = json.loads((tmp_path / "p.json").read_text())
    assert back["results"][1]["compute"]["times_ms"] == doc["results"][1]["compute"]["times_ms"]
    assert back["results"][1]["ratio_vs_torch"] == pytest.approx(2.0)

    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == ["torch-fp32", "openvino-fp32"]  # skipped row left out
    assert list(rows[0]) == report.CSV_COLUMNS
    assert float(rows[1]["median_ms"]) == pytest.approx(20.0, rel=1e-3)
    assert float(rows[1]["ratio_vs_torch"]) == pytest.approx(2.0, rel=1e-3)
    assert float(rows[1]["p99_ms"]) >= float(rows[1]["p90_ms"]) >= float(rows[1]["median_ms"])

    md = (tmp_path / "p.md").read_text()
    assert "Test CPU" in md and "| target | precision | graph | mode | median |" in md
    assert "2.00×" in md and "Hot spots: openvino-fp32" in md
    assert "skipped: not for torch" in md and "a note" in md

    pngs = out["plots"]
    assert {p.name for p in pngs} == {"latency_distribution.png", "latency_percentiles.png"}
    for p in pngs:
        assert p.read_bytes()[:8] == PNG
    leftovers = [p.name for p in tmp_path.rglob(".*")]
    assert not leftovers, f"temporary files left behind: {leftovers}"


def test_json_writer_is_strict(tmp_path):
    p = report.write_json({"x": float("inf"), "y": [float("nan"), 1.0]}, tmp_path / "s.json")
    assert json.loads(p.read_text()) == {"x": None, "y": [None, 1.0]}


# -- CLI and a real profile ---------------------------------------------------------------
def run(*args) -> object:
    return CliRunner().invoke(app, ["profile", *[str(a) for a in args]])


@pytest.fixture()
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the CLI writes under ./runs/profile
    return tmp_path


def test_cli_bad_input(in_tmp, tiny_checkpoint, bundle):
    one_error_line(run("--checkpoint", tiny_checkpoint, "--targets", "nope"),
                   "unknown target 'nope'")
    one_error_line(run("--bundle", bundle("onnxruntime"), "--runs", "0"), "--runs")
    one_error_line(run("--bundle", bundle("onnxruntime"), "--time", "0"), "--time")
    one_error_line(run("--bundle", in_tmp / "missing"), "not found")
    one_error_line(run("--bundle", bundle("onnxruntime"), "--mode", "fast"), "--mode")
    # only an unavailable target asked for: a note, then a one-line error
    res = run("--checkpoint", tiny_checkpoint, "--targets", "tensorrt")
    one_error_line(res, "nothing to profile")
    assert "skipping tensorrt" in res.stdout


def test_cli_tensorrt_bundle_refused(in_tmp, bundle):
    import shutil

    from mtlsi_edge.bundle import MANIFEST, write_manifest
    from mtlsi_edge.targets.tensorrt import TensorRTTarget

    if TensorRTTarget().available()[0]:
        pytest.skip("TensorRT is available here")
    fake = in_tmp / "trt-bundle"
    shutil.copytree(bundle("onnxruntime"), fake)
    m = json.loads((fake / MANIFEST).read_text())
    m.pop("integrity")
    m["target"] = "tensorrt"
    write_manifest(fake, m)
    one_error_line(run("--bundle", fake), "tensorrt")


def test_cli_profile_onnxruntime_bundle(in_tmp, bundle):
    res = run("--bundle", bundle("onnxruntime"), "--runs", "5", "--threads", "1",
              "--per-layer", "--name", "t", "--json", in_tmp / "out.json")
    assert res.exit_code == 0, res.output + (res.stderr or "")
    doc = json.loads((in_tmp / "out.json").read_text())
    assert doc["machine"]["logical_cores"] >= 1
    (row,) = doc["results"]
    assert row["target"] == "onnxruntime" and row["mode"] == "latency"
    c, e = row["compute"], row["e2e"]
    assert c["n"] == 5 and len(c["times_ms"]) == 5
    assert 0 < c["min_ms"] <= c["median_ms"] <= c["p99_ms"] == c["max_ms"]
    assert e["n"] == 5 and e["median_ms"] > 0
    assert set(e["split_ms"]) == {"preprocess", "inference", "postprocess"}
    assert all(v > 0 for v in e["split_ms"].values())
    assert row["gmacs"] > 0 and row["params"] > 0 and row["gflops_per_s"] > 0
    assert row["memory"]["peak_rss_mb"] > 0 and row["model_file_mb"] > 0
    pl = row["per_layer"]
    assert pl["parts"] and "backbone" in pl["parts"] and len(pl["top"]) == 10
    run_dir = in_tmp / "runs" / "profile" / "t"
    for f in ("profile.csv", "profile.md", "plots/latency_distribution.png"):
        assert (run_dir / f).is_file(), f
    assert "json:" in res.stdout and "median" in res.stdout, res.stdout


def test_profile_bundle_throughput_onnxruntime(bundle):
    row = profile_bundle(bundle("onnxruntime"), ProfileOptions(mode="throughput", runs=6,
                                                               threads=2))
    t = row["throughput"]
    assert t["frames"] == 6 and t["parallel"] == 2 and t["fps"] > 0
    assert row["fps"] == t["fps"] and row["compute"]["n"] == 6 and row["e2e"] is None


def test_profile_bundle_torch_throughput_is_skipped(bundle):
    row = profile_bundle(bundle("torch"), ProfileOptions(mode="throughput", runs=3))
    assert row["skipped"] and row["compute"] is None


# -- backend hooks: per-layer runs what was timed -------------------------------------------
def test_openvino_fp16_per_layer_compiles_the_timed_config(bundle):
    """The per-layer profile compiles the bundle exactly as the timed model (FP16 snippets
    workaround included), PERF_COUNT being the one addition."""
    import openvino.properties as props

    from mtlsi_edge.bundle import load_bundle
    from mtlsi_edge.runtime.predictor import Predictor
    from mtlsi_edge.targets import get_target

    manifest, folder = load_bundle(bundle("openvino", "fp16"))
    target = get_target("openvino")
    timed = Predictor.from_bundle(folder, threads=1, hint="latency").runner
    prof = target.profiling_runner(folder, manifest, target.load_options(manifest, threads=1))
    assert timed.config.get("SNIPPETS_MODE") == "DISABLE"  # the workaround is in both
    assert prof.config == {**timed.config, props.enable_profiling: True}
    # and the plugin applied the same values to both: every readable property but PERF_COUNT
    supported = [str(k) for k in timed.compiled.get_property(props.supported_properties)]
    assert "PERFORMANCE_HINT" in supported and "INFERENCE_PRECISION_HINT" in supported
    for key in supported:
        if key not in ("PERF_COUNT", "SUPPORTED_PROPERTIES"):
            assert str(prof.compiled.get_property(key)) == \
                str(timed.compiled.get_property(key)), key
    assert prof.device_precision == timed.device_precision
    assert str(prof.compiled.get_property(props.enable_profiling)) in ("YES", "True")
    assert str(timed.compiled.get_property(props.enable_profiling)) in ("NO", "False")


def test_openvino_per_layer_hook_reports_layers(bundle):

    from mtlsi_edge.bundle import load_bundle
    from mtlsi_edge.targets import get_target

    manifest, folder = load_bundle(bundle("openvino", "fp16"))
    target = get_target("openvino")
    x = Predictor(None, manifest, folder=folder).sample_input()  # the bundle's own input
    layers = target.per_layer(folder, manifest, target.load_options(manifest, threads=1), x, 2)
    assert layers and all(r.ms >= 0 and r.name and r.type for r in layers)


def test_onnxruntime_per_layer_uses_the_timed_session_options(bundle, monkeypatch):

    from mtlsi_edge.bundle import load_bundle
    from mtlsi_edge.targets import get_target
    from mtlsi_edge.targets.onnxruntime import ONNXRuntimeTarget

    manifest, folder = load_bundle(bundle("onnxruntime"))
    target = get_target("onnxruntime")
    opts = target.load_options(manifest, threads=1)
    loaded, real = [], ONNXRuntimeTarget.load

    def load(self, *a, **kw):
        loaded.append(real(self, *a, **kw))
        return loaded[-1]

    monkeypatch.setattr(ONNXRuntimeTarget, "load", load)
    timed = target.load(folder, manifest, opts)
    x = Predictor(None, manifest, folder=folder).sample_input()  # the bundle's own input
    layers = target.per_layer(folder, manifest, opts, x, 2)
    assert layers and len(loaded) == 2
    a, b = (r.session.get_session_options() for r in (timed, loaded[1]))
    for k in ("intra_op_num_threads", "inter_op_num_threads", "graph_optimization_level",
              "log_severity_level"):
        assert getattr(a, k) == getattr(b, k), k
    assert b.enable_profiling and not a.enable_profiling
    assert timed.session.get_providers() == loaded[1].session.get_providers()


def test_every_target_derives_from_the_base():
    from mtlsi_edge.targets import TARGETS, Target, TargetUnavailable, UnsupportedByTarget

    assert all(isinstance(t, Target) for t in TARGETS.values())
    assert TARGETS["onnxruntime"].default_device == "cpu"
    assert TARGETS["tensorrt"].default_device == "cuda:0"
    assert TARGETS["openvino"].default_device == "CPU"
    with pytest.raises(UnsupportedByTarget, match="target torch has no per-layer profiler"):
        TARGETS["torch"].per_layer(None, {}, None, None, 1)
    with pytest.raises(NotImplementedError, match="torch-tensorrt has no throughput"):
        TARGETS["torch-tensorrt"].throughput(None, {}, None, None, None, 1)
    TARGETS["onnxruntime"].require()  # available: no error
    if not TARGETS["tensorrt"].available()[0]:
        with pytest.raises(TargetUnavailable, match=r"^ctx: .*not installed|^ctx: "):
            TARGETS["tensorrt"].require("ctx")


def test_time_call_is_measure_plus_summary():
    from mtlsi_edge.timing import time_call

    fn = Counter()
    t = time_call(fn, warmup_s=0.0, warmup_runs=3, runs=4)
    assert fn.calls == 7 and len(t.times_s) == 4
    assert t.stats == summarize(t.times_s) and t.median_ms == t.stats["median_ms"]
    assert len(t.times_ms) == 4


def test_profile_bundle_openvino_hooks(bundle):
    """profile_bundle reaches OpenVINO only through its hooks: per-layer, effective threads,
    throughput."""
    row = profile_bundle(bundle("openvino", "fp16"),
                         ProfileOptions(runs=3, threads=1, per_layer=True, e2e=False))
    assert row["compute"]["n"] == 3 and row["threads_effective"] == 1
    pl = row["per_layer"]
    assert pl["source"].startswith("openvino") and pl["nodes"] > 0 and pl["iterations"] == 5
    row = profile_bundle(bundle("openvino", "fp16"),
                         ProfileOptions(mode="throughput", runs=4, threads=1))
    t = row["throughput"]
    assert t["frames"] == 4 and t["parallel"] >= 1 and row["compute"]["n"] == 4


def test_compiled_infer_goes_through_native_infer(tiny_onnx):
    """evaluation.compiled_infer: every NNCF-side model kind is run by its target."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    import openvino as ov

    from mtlsi_edge.evaluation import compiled_infer

    proto = onnx.load(str(tiny_onnx))
    outputs = [o.name for o in proto.graph.output]
    x = np.zeros((1, 3, 64, 96), np.float32)
    sess = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    compiled = ov.Core().compile_model(str(tiny_onnx), "CPU", {"INFERENCE_NUM_THREADS": 1})
    for model in (proto, sess, compiled):
        out = compiled_infer(model, outputs)(x)
        assert list(out) == outputs and all(np.isfinite(v).all() for v in out.values())
    with pytest.raises(TypeError, match="no target runs a str"):
        compiled_infer("model.onnx", outputs)


def test_ratio_is_against_the_torch_row_of_the_same_graph():
    """Two torch rows (per-task and batched eager): each row's ratio is against the torch row
    that ran its deploy graph, the reference is named, and the graph is a table column."""
    rows = [_row("torch", "fp32", 36.0, graph="per-task", bundle="b/torch-pt"),
            _row("torch", "fp32", 30.0, graph="batched", bundle="b/torch-b"),
            _row("openvino", "fp32", 10.0, graph="batched"),
            _row("onnxruntime", "fp32", 18.0, graph="per-task"),
            _row("openvino", "int8", 9.0)]  # a bundle from before graphs were recorded
    report.add_ratios(rows)
    assert rows[2]["ratio_vs_torch"] == pytest.approx(3.0)
    assert rows[2]["ratio_ref"] == "b/torch-b"
    assert rows[3]["ratio_vs_torch"] == pytest.approx(2.0)
    assert rows[4]["ratio_vs_torch"] == pytest.approx(4.0)  # no graph: the first torch row
    assert report.flat_row(rows[3])["graph"] == "per-task"
    doc = {"results": rows}
    (table,) = report.terminal_tables(doc, width=report.WIDE)
    assert [c.header for c in table.columns][:4] == ["target", "prec", "graph", "mode"]
