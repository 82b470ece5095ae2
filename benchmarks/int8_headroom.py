"""Where OpenVINO INT8 time goes, and what INT8 could gain at most here (one run).

    python -m benchmarks.int8_headroom [--checkpoint C] [--rounds 5]

The deploy graph (task-batched) of one checkpoint, as OpenVINO bundles run it:
FP32 with the f32 hint (an ``fp32`` bundle), FP32 at the CPU plugin's default precision
(BF16 on BF16 CPUs), INT8 with the attention products in float (what ``quantize`` makes), and
INT8 with them quantised too (``--act-matmuls int8``), both INT8 models at the default
precision like ``int8`` bundles.  Per model: compute median (interleaved rounds), speed-up over
FP32, the label-free parity gate against FP32 (``quantize``'s gate; an INT8 model that fails
it is never shipped), and the per-layer profile split into attention kernels (the fused
Softmax subgraphs), convolutions, data movement (transposes, reorders, splits, concats) and
the rest — the part of FP32 time INT8 cannot touch bounds its speed-up.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks.common import checkpoint_or_random, timed_rounds
from mtlsi_edge.data.seeds import gate_frames
from mtlsi_edge.evaluation import compiled_infer
from mtlsi_edge.export import export_onnx
from mtlsi_edge.machine import cpu_flags
from mtlsi_edge.quantize.ptq import PtqSettings, quantize_model
from mtlsi_edge.quantize.run import load_or_build_calibration
from mtlsi_edge.runtime.predictor import preprocess_frame
from mtlsi_edge.targets import get_target
from mtlsi_edge.train.checkpoint import build_from_checkpoint

PARTS = ("attention", "convs", "movement", "rest")
MOVEMENT = ("Transpose", "Reorder", "Concat", "Split", "VariadicSplit", "Gather", "Reshape")


def _part(op_rt: dict) -> str:
    kind = op_rt["layerType"]
    if kind == "Subgraph" and "Softmax" in op_rt["originalLayersNames"]:
        return "attention"  # a fused attention kernel (MatMul, Softmax, MatMul)
    if "Convolution" in kind:
        return "convs"
    return "movement" if kind in MOVEMENT else "rest"


def _profile(core, model, cfg: dict, x: np.ndarray, runs: int = 30) -> Counter:
    import openvino.properties as props

    c = core.compile_model(model, "CPU", {**cfg, props.enable_profiling: True})
    parts = {op.get_friendly_name(): _part({k: v.astype(str) for k, v in
                                            op.get_rt_info().items()
                                            if k in ("layerType", "originalLayersNames")})
             for op in c.get_runtime_model().get_ordered_ops()}
    r = c.create_infer_request()
    for _ in range(10):
        r.infer({0: x})
    acc: Counter = Counter()
    for _ in range(runs):
        r.infer({0: x})
        for p in r.profiling_info:
            if p.status == p.Status.EXECUTED:
                acc[parts.get(p.node_name, "rest")] += p.real_time.total_seconds() * 1e3 / runs
    return acc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(args, Path(tmp))


def run(args: argparse.Namespace, tmp: Path) -> None:
    """Build the four models in ``tmp``, time and profile them, print the table."""
    import openvino as ov

    from mtlsi_edge import verify

    model, _ = build_from_checkpoint(checkpoint_or_random(args.checkpoint, tmp=tmp))
    graph = model.use_graph(get_target("openvino").default_graph)  # what a bundle runs
    size = tuple(model.cfg.input_size)
    task_set, names = model.task_set, model.task_set.names
    src = export_onnx(model, tmp / "model.onnx")
    cs = load_or_build_calibration("synth", 64, size)
    core = ov.Core()
    base = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 2}
    f32 = {**base, "INFERENCE_PRECISION_HINT": "f32"}
    fp32 = ov.convert_model(str(src))
    policy = get_target("openvino").int8
    q_float, _ = quantize_model(ov.convert_model(str(src)), cs.items(), policy)
    q_int8, _ = quantize_model(ov.convert_model(str(src)), cs.items(), policy,
                               PtqSettings(act_matmuls="int8"))
    default = core.compile_model(fp32, "CPU", base).get_property(
        "INFERENCE_PRECISION_HINT").to_string()
    variants = {  # name → (model, config)
        "FP32 (f32 hint; fp32 bundle)": (fp32, f32),
        f"FP32 at the default precision ({default})": (fp32, base),
        "INT8, attention in float (quantize default)": (q_float, base),
        "INT8, attention INT8 too (--act-matmuls int8)": (q_int8, base),
    }
    compiled = {k: core.compile_model(m, "CPU", c) for k, (m, c) in variants.items()}
    reqs = {k: c.create_infer_request() for k, c in compiled.items()}
    x = cs.items()[0]
    med = timed_rounds({k: (lambda r=r: r.infer({0: x})) for k, r in reqs.items()},
                       args.runs, args.rounds)

    frames = [preprocess_frame(f, size)[0] for f in gate_frames(size)]

    def outputs(c) -> dict:  # as quantize's gate runs them
        run = compiled_infer(c, names)
        raw = [run(f) for f in frames]
        return verify.finish_raw({n: np.concatenate([r[n] for r in raw]) for n in names},
                                 task_set)

    ref = outputs(compiled["FP32 (f32 hint; fp32 bundle)"])
    thresholds = verify.thresholds_for("int8", task_set, {})
    fp32_ms = med["FP32 (f32 hint; fp32 bundle)"]
    print(f"CPU flags: {cpu_flags()}; OpenVINO {ov.get_version()}; 2 threads; {graph} graph "
          f"at {size[0]}×{size[1]}; {args.rounds} interleaved rounds of {args.runs}; "
          "per-layer ms by part (attention kernels, convolutions, data movement, rest)")
    print(f"{'model':46s} {'ms':>6s} {'× FP32':>7s} " + " ".join(f"{p:>9s}" for p in PARTS)
          + "  parity gate vs FP32")
    for k, (m, c) in variants.items():
        prof = _profile(core, m, c, x)
        gate = verify.gate(ref, outputs(compiled[k]), task_set, "int8", thresholds)
        seg = next((r for r in gate.rows if r["measure"] == "label_agree"), None)
        verdict = ("pass" if gate.passed else "FAIL: " + "; ".join(gate.failures))
        if seg is not None and gate.passed:
            verdict += f" (labels {seg['value']:.1f} %)"
        print(f"{k:46s} {med[k]:6.2f} {fp32_ms / med[k]:6.2f}× "
              + " ".join(f"{prof[p]:9.2f}" for p in PARTS) + f"  {verdict}")


if __name__ == "__main__":
    main()
