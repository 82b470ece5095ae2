"""Per-task vs task-batched decoders: compute latency in torch eager, ONNX Runtime and
OpenVINO (FP32), one run, same checkpoint and thread count.

Both graphs come from the same weights (``MTLSIConfig.task_batched`` off / on); for each
runtime the two are timed in alternating rounds so that load from other processes hits both
alike.  Prints medians, the per-task / batched ratio, the ONNX node counts and the largest
output difference between the two graphs.

    python benchmarks/batched.py [--checkpoint C] [--threads 2] [--runs 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks.common import checkpoint_or_random, machine, median_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=40, help="timed calls per round")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per graph")
    args = ap.parse_args()
    import onnx
    import torch

    from mtlsi_edge.backends.onnxruntime import ORTRunner
    from mtlsi_edge.backends.openvino import OpenVINORunner
    from mtlsi_edge.export import export_onnx
    from mtlsi_edge.targets import CompileOptions
    from mtlsi_edge.train.checkpoint import build_from_checkpoint

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-batched-"))
    ckpt = checkpoint_or_random(args.checkpoint, tmp=tmp)
    model, _ = build_from_checkpoint(ckpt)
    names = model.task_set.names
    size = tuple(model.cfg.input_size)
    print(f"machine: {machine()}; threads {args.threads}; checkpoint {ckpt}; input {size}")

    x = np.random.default_rng(0).normal(size=(1, 3, *size)).astype(np.float32)
    xt = torch.from_numpy(x)
    runners: dict[str, dict[str, object]] = {"torch eager": {}, "onnxruntime": {},
                                             "openvino": {}}
    outs = {}
    for graph, batched in (("per-task", False), ("batched", True)):
        model.cfg.task_batched = batched
        path = export_onnx(model, tmp / f"{graph}.onnx")
        ops = Counter(n.op_type for n in onnx.load(str(path)).graph.node)
        print(f"{graph:9s} ONNX: {sum(ops.values())} nodes "
              f"({', '.join(f'{k} {v}' for k, v in ops.most_common(6))})")

        def eager(b=batched):
            model.cfg.task_batched = b
            with torch.inference_mode():
                return model(xt, output_stride=4)

        ort_r = ORTRunner(path, CompileOptions(device="cpu", threads=args.threads), names)
        ov_r = OpenVINORunner(path, CompileOptions(device="CPU", threads=args.threads), names)
        runners["torch eager"][graph] = eager
        runners["onnxruntime"][graph] = lambda r=ort_r: r(x)
        runners["openvino"][graph] = lambda r=ov_r: r(x)
        outs[graph] = ort_r(x)
    diff = max(float(np.abs(outs["per-task"][n] - outs["batched"][n]).max()) for n in names)
    print(f"max |per-task - batched| over the outputs (ONNX Runtime): {diff:.2e}")

    print(f"\n{'runtime':12s} {'per-task ms':>12s} {'batched ms':>11s} {'per-task/batched':>17s}")
    for rt, fns in runners.items():
        t: dict[str, list[float]] = {"per-task": [], "batched": []}
        for _ in range(args.rounds):
            for graph, fn in fns.items():
                t[graph].append(median_ms(fn, args.runs, warmup_s=0.3))
        a, b = float(np.median(t["per-task"])), float(np.median(t["batched"]))
        print(f"{rt:12s} {a:12.2f} {b:11.2f} {a / b:16.2f}x")
    print(f"\n(medians over {args.rounds} alternating rounds of {args.runs} calls each)")


if __name__ == "__main__":
    main()
