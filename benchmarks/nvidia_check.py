"""Build, check and time every NVIDIA bundle on this machine, printing one table.

For a person with an NVIDIA GPU or a Jetson: TensorRT FP32 / FP16 / INT8 (the INT8 model from
``quantize --format onnx --target tensorrt``) and torch-tensorrt FP32 / FP16, each compiled
from the same checkpoint with the parity report against PyTorch FP32 on SynthIndoor renders,
then timed (median compute-only and end-to-end latency, batch 1).  On a machine without a
CUDA GPU it says so and exits 0.

    python -m benchmarks.nvidia_check [--checkpoint C] [--out runs/nvidia-check]
        [--runs 100] [--dla-core 0] [--calib-n 64] [--json report.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.common import checkpoint_or_random, machine, median_ms

ROWS = [("tensorrt", "fp32"), ("tensorrt", "fp16"), ("tensorrt", "int8"),
        ("torch-tensorrt", "fp32"), ("torch-tensorrt", "fp16")]


def _parity(manifest: dict) -> str:
    per = manifest["parity"]["per_task"]
    parts = []
    for task, d in per.items():
        if "argmax_agree_pct" in d:
            parts.append(f"{task} {d['argmax_agree_pct']:.1f}%")
        elif "angle_mean_deg" in d:
            parts.append(f"{task} {d['angle_mean_deg']:.2f}°")
        else:
            parts.append(f"{task} {d['max_abs']:.3g}")
    return ", ".join(parts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint")
    ap.add_argument("--out", type=Path, default=Path("runs/nvidia-check"))
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--dla-core", type=int, default=None, help="Jetson: build TensorRT "
                    "FP16/INT8 for this DLA core (GPU fallback on)")
    ap.add_argument("--calib-n", type=int, default=64, help="INT8 calibration images")
    ap.add_argument("--json", type=Path, help="also write the table as JSON")
    args = ap.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU visible: nothing to check here (this script builds TensorRT and "
              "torch-tensorrt bundles; run it on a machine with an NVIDIA GPU or a Jetson)")
        return 0

    from mtlsi_edge.compiler import CompileRequest, compile_bundle
    from mtlsi_edge.data.synthindoor import render_sample
    from mtlsi_edge.errors import BundleError
    from mtlsi_edge.fileio import atomic_write_json
    from mtlsi_edge.quantize.run import QuantizeError, QuantizeRequest, run_quantize
    from mtlsi_edge.runtime.predictor import Predictor
    from mtlsi_edge.targets import CompileOptions, TargetUnavailable, get_target, target_options

    args.out.mkdir(parents=True, exist_ok=True)
    ckpt = checkpoint_or_random(args.checkpoint, tmp=args.out)
    print(f"machine: {machine()}; GPU {torch.cuda.get_device_name(0)}; checkpoint {ckpt}")
    for name in ("tensorrt", "torch-tensorrt"):
        t = get_target(name)
        print(f"{name}: {t.runtime_version()} ({t.available()[1] or 'available'})")

    int8 = None  # (quantised ONNX, its FP32 source), made once
    results = []
    for target, prec in ROWS:
        row = {"target": target, "precision": prec}
        results.append(row)
        ok, why = get_target(target).available()
        if not ok:
            row["error"] = why
            continue
        tgt = get_target(target)
        knobs = {"timing_cache": args.out / "tensorrt.timing-cache"}
        if args.dla_core is not None and prec != "fp32":
            knobs["dla_core"] = args.dla_core
        own = target_options(target, knobs) if "dla_core" in getattr(
            tgt.options_type, "__dataclass_fields__", ()) else None
        src = {"checkpoint": ckpt}
        try:
            if prec == "int8":
                if int8 is None:
                    q = run_quantize(ckpt, QuantizeRequest("onnx", "tensorrt",
                                                           n_calib=args.calib_n),
                                     args.out / "int8-trt")
                    int8 = (q.path, q.source_onnx)
                src = {"model_file": int8[0], "source_onnx": int8[1]}
            bundle = compile_bundle(args.out / f"{target}-{prec}", CompileRequest(
                target, prec, options=CompileOptions(device="cuda:0", target_options=own),
                **src))
            pred = Predictor.from_bundle(bundle, device="cuda:0")
        except (BundleError, TargetUnavailable, QuantizeError, ValueError, RuntimeError) as e:
            row["error"] = " ".join(str(e).split())
            continue
        x = pred.sample_input()
        frame = render_sample(7, size=pred.input_size).image_rgb[:, :, ::-1].copy()
        row["compute_ms"] = median_ms(lambda p=pred, x=x: p.runner(x), args.runs)
        row["end_to_end_ms"] = median_ms(lambda p=pred, f=frame: p(f), args.runs)
        row["parity"] = _parity(pred.manifest)
        row["dla"] = (pred.manifest.get("tensorrt") or {}).get("layer_placement")

    print(f"\n{'target':15s} {'prec':5s} {'compute ms':>11s} {'end-to-end ms':>14s}  parity "
          "vs PyTorch FP32 (argmax agree / normals angle / max abs)")
    for r in results:
        if "error" in r:
            print(f"{r['target']:15s} {r['precision']:5s} {'-':>11s} {'-':>14s}  "
                  f"FAILED: {r['error']}")
            continue
        print(f"{r['target']:15s} {r['precision']:5s} {r['compute_ms']:11.2f} "
              f"{r['end_to_end_ms']:14.2f}  {r['parity']}")
        if r["dla"]:
            print(f"{'':22s} DLA: {r['dla']['dla_layers']} layers, "
                  f"{r['dla']['gpu_fallback_layers']} on GPU fallback")
    if args.json:
        atomic_write_json(args.json, {"machine": machine(), "rows": results})
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
