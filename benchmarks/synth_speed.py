"""SynthIndoor renderer speed (single process) and an optional ground-truth montage.

    PYTHONPATH=. python benchmarks/synth_speed.py [--n 50] [--size 240 320] [--no-noise]
                                                  [--montage docs/synth_montage.png] [--rows 4]

Prints the median per-image time and images/s over ``--n`` renders (seeds 0..n-1, after one
warm-up render). With ``--montage`` also writes a PNG: one row per sample,
RGB | segmentation (NYUD palette) | depth (TURBO, fixed 0–8 m) | normals ((n+1)/2 as RGB) |
boundary.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import cv2
import numpy as np

from mtlsi_edge.data.synthindoor import SynthSample, render_sample
from mtlsi_edge.tasks import get_task_set, palette_array


def montage_row(s: SynthSample) -> np.ndarray:
    """``H×5W×3`` uint8 BGR: RGB | segmentation | depth | normals | boundary."""
    lut = palette_array(get_task_set("nyud")["semseg"])  # BGR LUT, 255 → black
    rgb = cv2.cvtColor(s.image_rgb, cv2.COLOR_RGB2BGR)
    seg = lut[s.semseg]
    d8 = np.clip(s.depth / 8.0 * 255.0, 0, 255).astype(np.uint8)
    depth = cv2.applyColorMap(d8, cv2.COLORMAP_TURBO)
    nrm = np.clip((s.normals + 1.0) * 127.5, 0, 255).astype(np.uint8)[..., ::-1]
    bnd = cv2.cvtColor(s.boundary * 255, cv2.COLOR_GRAY2BGR)
    sep = np.full((s.semseg.shape[0], 2, 3), 255, np.uint8)
    parts = [rgb, sep, seg, sep, depth, sep, nrm, sep, bnd]
    return np.concatenate(parts, axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    ap.add_argument("--no-noise", action="store_true")
    ap.add_argument("--montage", type=Path, default=None)
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--seed0", type=int, default=0, help="first seed of the montage rows")
    a = ap.parse_args()
    size = (a.size[0], a.size[1])
    render_sample(10_000, size, noise=not a.no_noise)  # warm-up (caches)
    times = []
    for i in range(a.n):
        t0 = time.perf_counter()
        render_sample(i, size, noise=not a.no_noise)
        times.append(time.perf_counter() - t0)
    med = float(np.median(times))
    print(
        f"synth render {size[0]}x{size[1]} noise={not a.no_noise}: n={a.n} "
        f"median {med * 1e3:.1f} ms/img, mean {np.mean(times) * 1e3:.1f} ms/img, "
        f"{1.0 / med:.1f} img/s (median), {a.n / sum(times):.1f} img/s (overall), "
        f"load avg {os.getloadavg()[0]:.2f}"
    )
    if a.montage is not None:
        rows = [montage_row(render_sample(a.seed0 + i, size)) for i in range(a.rows)]
        sep = np.full((2, rows[0].shape[1], 3), 255, np.uint8)
        img = np.concatenate([x for r in rows for x in (r, sep)][:-1], axis=0)
        a.montage.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(a.montage), img):
            raise SystemExit(f"{a.montage}: cv2.imwrite failed")
        print(f"montage: {a.montage} ({img.shape[1]}x{img.shape[0]})")


if __name__ == "__main__":
    main()
