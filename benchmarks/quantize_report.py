"""FP32 vs INT8 accuracy and latency of real bundles, OpenVINO and ONNX Runtime, in one run.

For a checkpoint (default: the embedded starter): FP32 bundles, NNCF INT8 (``run_quantize``,
the defaults of ``mtlsi-edge quantize``) compiled into INT8 bundles, each scored exactly as
``mtlsi-edge eval --bundle`` does (Predictor pre/postprocessing, pooled metrics, SEISM-protocol
boundary F) on a held-out split, with its label-free parity gate and compute latency.

    python -m benchmarks.quantize_report --data data/heldout --val-limit 200 \
        --md docs/quantization.md
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks.common import checkpoint_or_random, machine, median_ms
from mtlsi_edge.fileio import display_path
from mtlsi_edge.machine import cpu_flags


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint")
    ap.add_argument("--data", required=True)
    ap.add_argument("--val-limit", type=int, default=200)
    ap.add_argument("--calib", default="synth")
    ap.add_argument("--n-calib", type=int, default=128)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--md")
    ap.add_argument("--json")
    args = ap.parse_args()

    from mtlsi_edge.bundle import load_bundle
    from mtlsi_edge.compiler import CompileRequest, compile_bundle, export_checkpoint
    from mtlsi_edge.deploy import build_int8_bundle
    from mtlsi_edge.evaluation import evaluate_predictor, load_val_set
    from mtlsi_edge.quantize.run import QuantizeRequest
    from mtlsi_edge.runtime.predictor import Predictor
    from mtlsi_edge.targets import CompileOptions, get_target

    out = Path("runs/bench/quantize")
    out.mkdir(parents=True, exist_ok=True)
    ckpt = checkpoint_or_random(args.checkpoint, tmp=out)
    bundles = {}
    for target in ("openvino", "onnxruntime"):
        tgt = get_target(target)
        exp = export_checkpoint(ckpt, tgt, out / f"{target}.fp32.onnx")
        bundles[f"{target} fp32"] = compile_bundle(out / f"{target}-fp32", CompileRequest(
            target, "fp32", exported=exp, options=CompileOptions(device=tgt.default_device)))
        t = time.perf_counter()
        built = build_int8_bundle(exp, tgt, QuantizeRequest(calib=args.calib,
                                                            n_calib=args.n_calib, force=True),
                                  out / f"{target}-int8", out)
        print(f"{target}: quantised and compiled in {time.perf_counter() - t:.0f} s")
        if built.bundle is None:
            raise SystemExit(f"{target} INT8: {built.failed}")
        bundles[f"{target} int8"] = built.bundle
    rows = {}
    val = None
    for name, b in bundles.items():
        pred = Predictor.from_bundle(b, threads=2)
        if val is None:
            val = load_val_set(args.data, "val", pred.task_set, pred.input_size, args.val_limit)
        t = time.perf_counter()
        metrics = evaluate_predictor(pred, val)
        x = pred.sample_input()
        lat = median_ms(lambda p=pred, x=x: p.runner(x), args.runs)
        gate = load_bundle(b)[0]["gate"]
        rows[name] = {"metrics": metrics, "latency_ms": lat, "gate": gate,
                      "device_precision": pred.runner.device_precision,
                      "eval_s": round(time.perf_counter() - t, 1)}
        print(f"{name:18s} latency {lat:6.2f} ms  gate {'pass' if gate['passed'] else 'FAIL'}  "
              + "  ".join(f"{t.name} {t.metric_name} {metrics[t.name][t.metric_name]:.4g}"
                          for t in pred.task_set), flush=True)

    cmd = (f"python -m benchmarks.quantize_report --data {display_path(args.data)} --val-limit "
           f"{args.val_limit} --n-calib {args.n_calib} --md docs/quantization.md")
    lines = ["# INT8 quantisation: FP32 vs INT8 bundles, per task, OpenVINO and ONNX Runtime",
             "", "Regenerate (one run; the SEISM boundary protocol makes scoring ~2 s/image):",
             "", "```bash", cmd, "```", "",
             f"Machine: {machine()}; CPU flags: {cpu_flags()}. {len(val.frames)} held-out "
             f"SynthIndoor renders (`{display_path(args.data)}`, seed 7, never trained on); "
             f"{args.n_calib} calibration renders; NNCF defaults of `mtlsi-edge quantize` "
             f"(preset performance, model_type transformer, activation × activation MatMuls "
             f"in float, docs/known-issues.md). Scores are those of `mtlsi-edge eval --bundle` "
             f"(boundary: SEISM-protocol odsF). Latency: compute only, batch 1, 2 threads, "
             f"median of {args.runs}.", "",
             "| bundle | computes in | mIoU ↑ | RMSE ↓ | normals mean ° ↓ | odsF ↑ | "
             "parity gate | latency ms |", "|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        m = r["metrics"]
        lines.append(f"| {name} | {r['device_precision']} | {m['semseg']['miou']:.2f} | "
                     f"{m['depth']['rmse']:.4f} | {m['normals']['mean']:.2f} | "
                     f"{m['boundary']['odsF']:.2f} | "
                     f"{'pass' if r['gate']['passed'] else 'FAIL'} | {r['latency_ms']:.2f} |")
    for be in ("openvino", "onnxruntime"):
        a, b = rows[f"{be} fp32"], rows[f"{be} int8"]
        am, bm = a["metrics"], b["metrics"]
        lines += ["", f"- {be} INT8 − FP32: mIoU {bm['semseg']['miou'] - am['semseg']['miou']:+.2f}"
                  f", RMSE {100 * (bm['depth']['rmse'] / am['depth']['rmse'] - 1):+.2f} %, "
                  f"normals {bm['normals']['mean'] - am['normals']['mean']:+.2f}°, odsF "
                  f"{bm['boundary']['odsF'] - am['boundary']['odsF']:+.2f}; INT8 is "
                  f"{a['latency_ms'] / b['latency_ms']:.2f}× the speed of FP32"]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    if args.md:
        Path(args.md).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, default=float))


if __name__ == "__main__":
    main()
