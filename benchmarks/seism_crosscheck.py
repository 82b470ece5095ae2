"""Cross-check the SEISM-protocol boundary metric against pyEdgeEval's compiled BSDS kernels.

pyEdgeEval (MIT, but its ``correspondPixels`` is the BSDS500 C++ code under GPL-2.0 and its NMS
is under the MSR-LA) is not a dependency of this project; build it into a scratch folder:

    pip download --no-deps pyEdgeEval && pip install --no-deps --target /tmp/pee pyEdgeEval-*.tar.gz
    PYTHONPATH=/tmp/pee python benchmarks/seism_crosscheck.py --n 20

For random smooth probability maps and edge maps it compares, per threshold, (a) our thinning
with pyEdgeEval's port of MATLAB ``bwmorph(·,'thin',Inf)`` and (b) our matched-pixel count with
``correspondPixels`` on the same thinned maps, and prints the largest differences.
"""

from __future__ import annotations

import argparse
import math

import cv2
import numpy as np

from mtlsi_edge.metrics import match_count, thin


def random_case(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A blurred-noise probability map and a one-pixel boundary map of random regions."""
    labels = cv2.resize(rng.integers(0, 4, (h // 24, w // 24)).astype(np.uint8), (w, h),
                        interpolation=cv2.INTER_NEAREST)
    edge = np.zeros((h, w), bool)
    edge[:-1] |= labels[:-1] != labels[1:]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    prob = cv2.GaussianBlur(edge.astype(np.float32), (0, 0), 1.5) * 2.5
    prob += rng.normal(0, 0.15, (h, w)).astype(np.float32)
    return np.clip(prob, 0, 1), edge


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--size", default="240x320")
    ap.add_argument("--max-dist", type=float, default=0.011)
    args = ap.parse_args()
    try:
        from pyEdgeEval._lib import correspond_pixels
        from pyEdgeEval.preprocess import binary_thin
    except ImportError:
        raise SystemExit("error: this cross-check needs pyEdgeEval built into a scratch folder "
                         "(see the module docstring: pip download … && PYTHONPATH=…)") from None

    h, w = (int(v) for v in args.size.split("x"))
    rng = np.random.default_rng(0)
    thin_diff = cnt_diff = cnt_total = signed = 0
    for _ in range(args.n):
        prob, edge = random_case(rng, h, w)
        gt = thin(edge)
        for t in np.linspace(0.05, 0.95, 10):
            ours = thin(prob > t)
            theirs = binary_thin(prob > t)
            thin_diff += int(np.count_nonzero(ours != theirs))
            m1, _, _, _ = correspond_pixels(ours.astype(float), gt.astype(float),
                                            max_dist=args.max_dist)
            ref = int(np.count_nonzero(m1 > 0))
            got = match_count(ours, gt, args.max_dist * math.hypot(h, w))
            cnt_diff = max(cnt_diff, abs(ref - got))
            signed += got - ref
            cnt_total += ref
    print(f"{args.n} images × 10 thresholds: pixels where thinning differs: {thin_diff}; "
          f"largest matched-count difference: {cnt_diff}; ours − BSDS summed: {signed:+d} "
          f"(of {cnt_total} matched by BSDS in total)")


if __name__ == "__main__":
    main()
