"""MT-MQLFB vs softmax self-attention: FLOPs and eager latency as resolution grows.

Both blocks see the same T=4 task maps at 1/16 of the image (C=64, 4 heads), as in the edge
variants.  Prints MACs, median eager latency and the growth ratio from one size to the next.

    python benchmarks/scaling.py [--dim 64] [--runs 10]
"""

from __future__ import annotations

import argparse

import torch

from mtlsi_edge.model.blocks import MTMQLFB, SemanticTokenDistiller, SoftmaxSelfAttention
from mtlsi_edge.model.complexity import count_macs
from mtlsi_edge.timing import measure

TASKS = ["semseg", "depth", "normals", "boundary"]
SIZES = [(120, 160), (240, 320), (480, 640)]


@torch.inference_mode()
def median_ms(fn, runs: int) -> float:
    """Upper median (ms) of ``runs`` timed calls after one untimed call."""
    times = measure(fn, warmup_s=0.0, warmup_runs=1, runs=runs)
    return 1000 * sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    torch.manual_seed(0)
    blocks = {
        "MT-MQLFB": MTMQLFB(args.dim, TASKS, heads=4).eval(),
        "distiller (M=64)": SemanticTokenDistiller(args.dim, 4, num_tokens=64, heads=4).eval(),
        "softmax attention": SoftmaxSelfAttention(args.dim, heads=4).eval(),
    }
    print(f"threads={torch.get_num_threads()}  C={args.dim}  T={len(TASKS)}  tokens at 1/16")
    print(f"{'block':20s} {'image':>9s} {'tokens':>7s} {'MMACs':>10s} {'x':>6s} "
          f"{'ms':>9s} {'x':>6s}")
    for name, blk in blocks.items():
        prev = None
        for h, w in SIZES:
            feats = [torch.randn(1, args.dim, h // 16, w // 16) for _ in TASKS]
            macs = count_macs(lambda: blk(feats), blk)["Global"] / 1e6  # noqa: B023
            ms = median_ms(lambda: blk(feats), args.runs)  # noqa: B023
            rm = f"{macs / prev[0]:.2f}" if prev else ""
            rt = f"{ms / prev[1]:.2f}" if prev else ""
            ntok = len(TASKS) * (h // 16) * (w // 16)
            print(f"{name:20s} {h:>4d}x{w:<4d} {ntok:7d} {macs:10.1f} {rm:>6s} {ms:9.2f} {rt:>6s}")
            prev = (macs, ms)
    print("pixels grow 4x per step: linear cost -> ~4x, quadratic -> ~16x")


if __name__ == "__main__":
    main()
