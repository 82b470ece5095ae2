"""Compute latency of every available target for the default edge model, in one run.

torch eager FP32 (the baseline) vs ONNX Runtime FP32 vs OpenVINO FP32/FP16, batch 1 at the
model's input size, same thread count; medians and ratios vs torch eager.  Also compares what
the deployed graph emits: heads at 1/4 (the default; upsampled in postprocessing) vs full
resolution logits, including the postprocessing each needs.

    python benchmarks/targets.py [--checkpoint C] [--threads 2] [--runs 50]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import checkpoint_or_random, machine, median_ms
from mtlsi_edge.bundle import compile_bundle
from mtlsi_edge.runtime.predictor import Predictor
from mtlsi_edge.targets import CompileOptions, get_target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-targets-"))
    ckpt = checkpoint_or_random(args.checkpoint, tmp=tmp)
    print(f"machine: {machine()}; threads {args.threads}; checkpoint {ckpt}")
    combos = [("torch", "fp32"), ("onnxruntime", "fp32"), ("openvino", "fp32"),
              ("openvino", "fp16"), ("tensorrt", "fp16")]
    rows = []
    frame = None
    for target, prec in combos:
        ok, why = get_target(target).available()
        if not ok:
            print(f"{target:12s} {prec}: skipped ({why})")
            continue
        dev = {"onnxruntime": "cpu"}.get(target, "CPU")
        b = compile_bundle(tmp / f"{target}-{prec}", target, prec, checkpoint=ckpt,
                           opts=CompileOptions(precision=prec, device=dev, threads=args.threads))
        p = Predictor.from_bundle(b, threads=args.threads)
        x = np.zeros((1, 3, *p.input_size), np.float32)
        if frame is None:
            from mtlsi_edge.data.synthindoor import render_sample

            frame = render_sample(7, size=p.input_size).image_rgb[:, :, ::-1].copy()
        compute = median_ms(lambda p=p, x=x: p.runner(x), args.runs)
        e2e = median_ms(lambda p=p, f=frame: p(f), args.runs)
        rows.append((target, prec, compute, e2e))
    base = rows[0][2]
    print(f"\n{'target':12s} {'prec':5s} {'compute ms':>11s} {'x torch':>8s} "
          f"{'end-to-end ms':>14s}")
    for t, pr, c, e in rows:
        print(f"{t:12s} {pr:5s} {c:11.2f} {base / c:7.2f}x {e:14.2f}")
    best = min(rows[1:], key=lambda r: r[2]) if len(rows) > 1 else rows[0]
    print(f"\nbest target: {best[0]} {best[1]}: {base / best[2]:.2f}x faster than torch eager "
          f"(medians of {args.runs}).")

    # What the deployed graph emits: 1/4-resolution heads vs full-resolution outputs.
    print("\ndeploy outputs (compute + postprocessing to a 240x320 frame):")
    from mtlsi_edge.export import export_onnx
    from mtlsi_edge.train.checkpoint import build_from_checkpoint

    model, _ = build_from_checkpoint(ckpt)
    for stride in (4, 1):
        onnx_path = export_onnx(model, tmp / f"s{stride}.onnx", stride=stride)
        for target in ("onnxruntime", "openvino"):
            dev = {"onnxruntime": "cpu"}.get(target, "CPU")
            b = compile_bundle(tmp / f"{target}-s{stride}", target, "fp32", onnx_path=onnx_path,
                               opts=CompileOptions(device=dev, threads=args.threads),
                               parity_images=1)
            p = Predictor.from_bundle(b, threads=args.threads)
            x, geom = p.preprocess(frame)
            raw = p.runner(x)
            c = median_ms(lambda p=p, x=x: p.runner(x), args.runs)
            post = median_ms(lambda p=p, raw=raw, g=geom: p.postprocess(raw, g), args.runs)
            print(f"  stride {stride}  {target:12s} compute {c:6.2f} ms + post {post:5.2f} ms "
                  f"= {c + post:6.2f} ms")


if __name__ == "__main__":
    main()
