"""A PNG strip of the demo's grid view on the SynthIndoor walkthrough (for the README).

    python -m benchmarks.demo_strip --out docs/demo_grid.png [--bundle B] [--frames 3]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np

from benchmarks.common import checkpoint_or_random
from mtlsi_edge.compiler import CompileRequest, compile_bundle
from mtlsi_edge.data.synthindoor import render_walkthrough
from mtlsi_edge.runtime.overlay import Renderer
from mtlsi_edge.runtime.predictor import Predictor
from mtlsi_edge.targets import CompileOptions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle")
    ap.add_argument("--checkpoint")
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--out", default="docs/demo_grid.png")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="strip-"))
    bundle = args.bundle or compile_bundle(tmp / "b", CompileRequest(
        "onnxruntime", "fp32", checkpoint=checkpoint_or_random(args.checkpoint, tmp=tmp),
        options=CompileOptions(device="cpu")))
    pred = Predictor.from_bundle(bundle)
    video = render_walkthrough(tmp / "walk.mp4", seconds=6, fps=15, size=(240, 320), seed=5)
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    pick = np.linspace(0, len(frames) - 1, args.frames + 2)[1:-1].astype(int)
    r = Renderer(pred.task_set, depth_range=(0.5, 7.0))
    tiles = []
    for i in pick:
        f = frames[i]
        tiles.append(r.render(f, pred(f), "grid"))
    strip = np.hstack([np.pad(t, ((4, 4), (4, 4), (0, 0)), constant_values=255) for t in tiles])
    cv2.imwrite(args.out, strip)
    print(f"wrote {args.out}: frames {list(pick)} of the walkthrough; each tile: seg blend | "
          f"depth / normals | boundaries")


if __name__ == "__main__":
    main()
