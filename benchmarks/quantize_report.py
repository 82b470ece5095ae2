"""FP32 vs INT8 per-task accuracy and latency, OpenVINO and ONNX Runtime, in one run.

For a checkpoint (default: the embedded starter) on a held-out split: NNCF PTQ INT8 of the
OpenVINO IR and of the ONNX model (QDQ), each evaluated with the same pooled metrics as FP32,
and the compute latency of every model.  Writes a Markdown table to --md.

    python benchmarks/quantize_report.py --data data/synth --val-limit 150 --md docs/quantization.md
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks.common import checkpoint_or_random, machine, median_ms
from mtlsi_edge.quantize.accuracy import compiled_infer, evaluate_fn, load_val_set
from mtlsi_edge.quantize.ptq import cpu_has_vnni, quantize_model
from mtlsi_edge.quantize.run import load_or_build_calibration
from mtlsi_edge.train.checkpoint import build_from_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint")
    ap.add_argument("--data", required=True)
    ap.add_argument("--val-limit", type=int, default=150)
    ap.add_argument("--calib", default="synth")
    ap.add_argument("--n-calib", type=int, default=128)
    ap.add_argument("--ignore", default="attention-norm")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--md")
    ap.add_argument("--json")
    args = ap.parse_args()

    import onnx
    import openvino as ov

    from mtlsi_edge.export import export_onnx

    out = Path("runs/bench/quantize")
    out.mkdir(parents=True, exist_ok=True)
    ckpt = checkpoint_or_random(args.checkpoint, tmp=out)
    model, _ = build_from_checkpoint(ckpt)
    ts, size, names = model.task_set, tuple(model.cfg.input_size), model.task_set.names
    onnx_path = export_onnx(model, out / "fp32.onnx")
    val = load_val_set(args.data, "val", ts, size, args.val_limit)
    cs = load_or_build_calibration(args.calib, args.n_calib, size)
    core = ov.Core()
    cfg = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
           "INFERENCE_NUM_THREADS": 2}
    x = val.items[0]
    rows = {}

    def record(name, infer, q_info=None, seconds=None):
        t = time.perf_counter()
        metrics = evaluate_fn(infer, val, ts, layouts={n: "NCHW" for n in names})
        lat = median_ms(lambda: infer(x), args.runs)
        rows[name] = {"metrics": metrics, "latency_ms": lat, "quantize_s": seconds,
                      "info": q_info, "eval_s": round(time.perf_counter() - t, 1)}
        print(f"{name:18s} latency {lat:6.2f} ms  " + "  ".join(
            f"{t.name} {t.metric_name} {metrics[t.name][t.metric_name]:.4g}" for t in ts))

    fp32_ov = ov.convert_model(str(onnx_path))
    record("openvino fp32", compiled_infer(core.compile_model(fp32_ov, "CPU", cfg), names))
    t = time.perf_counter()
    q_ov, info = quantize_model(ov.convert_model(str(onnx_path)), cs.items(), "openvino",
                                ignore=args.ignore)
    record("openvino int8", compiled_infer(core.compile_model(q_ov, "CPU", cfg), names), info,
           round(time.perf_counter() - t, 1))
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    fp32_onnx = onnx.load(str(onnx_path))
    record("onnxruntime fp32", compiled_infer(ort.InferenceSession(
        fp32_onnx.SerializeToString(), so, providers=["CPUExecutionProvider"]), names))
    t = time.perf_counter()
    q_onnx, info2 = quantize_model(onnx.load(str(onnx_path)), cs.items(), "onnx",
                                   ignore=args.ignore)
    record("onnxruntime int8", compiled_infer(ort.InferenceSession(
        q_onnx.SerializeToString(), so, providers=["CPUExecutionProvider"]), names), info2,
           round(time.perf_counter() - t, 1))

    lines = [f"Machine: {machine()} (VNNI: {cpu_has_vnni()}). Checkpoint `{ckpt}`; "
             f"{len(val.items)} held-out images of `{args.data}` (val split), "
             f"{len(cs.origins)} calibration samples from `{cs.source}`; NNCF preset "
             f"performance, model_type transformer, overflow_fix {not cpu_has_vnni()}, "
             f"ignored scope `{args.ignore}`. Latency: compute only, batch 1, 2 threads, "
             f"median of {args.runs}.", "",
             "| model | mIoU ↑ | RMSE ↓ | normals mean ° ↓ | odsF ↑ | latency ms |",
             "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        m = r["metrics"]
        lines.append(f"| {name} | {m['semseg']['miou']:.2f} | {m['depth']['rmse']:.4f} | "
                     f"{m['normals']['mean']:.2f} | {m['boundary']['odsF']:.2f} | "
                     f"{r['latency_ms']:.2f} |")
    for be in ("openvino", "onnxruntime"):
        a, b = rows[f"{be} fp32"], rows[f"{be} int8"]
        am, bm = a["metrics"], b["metrics"]
        lines.append("")
        lines.append(
            f"- {be} INT8 − FP32: mIoU {bm['semseg']['miou'] - am['semseg']['miou']:+.2f}, "
            f"RMSE {100 * (bm['depth']['rmse'] / am['depth']['rmse'] - 1):+.2f} %, normals "
            f"{bm['normals']['mean'] - am['normals']['mean']:+.2f}°, odsF "
            f"{bm['boundary']['odsF'] - am['boundary']['odsF']:+.2f}; latency "
            f"{a['latency_ms'] / b['latency_ms']:.2f}× vs FP32 "
            f"({len(b['info']['ignored_nodes'])} nodes kept in float by the ignored scope)")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    if args.md:
        Path(args.md).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, default=float))



if __name__ == "__main__":
    main()
