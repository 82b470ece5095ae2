"""Where the overlay renderer's time goes at camera size: per view and for the grid, the
current renderer vs the NumPy renderer it replaced (frozen in tests/test_overlay.py), on
Predictor-like outputs.  Single-threaded OpenCV, as in the live loop's render stage.

The last table is the cost of the annotations (panel names, depth colour bar, class legend:
``Renderer(annotate=True)``, what the demo, its recordings and ``predict --overlay`` draw):
the grid with and without them, timed in alternating rounds of the same run, on a sequence of
frames whose classes and depth range change (so legend and colour-bar labels change too).

    python -m benchmarks.overlay [--size 480 640] [--runs 100]
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import cv2

from benchmarks.common import machine, median_ms, timed_rounds
from mtlsi_edge.runtime.overlay import Renderer, draw_hud
from mtlsi_edge.tasks import get_task_set


def _reference():
    path = Path(__file__).resolve().parents[1] / "tests" / "test_overlay.py"
    spec = importlib.util.spec_from_file_location("overlay_reference", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    ap.add_argument("--runs", type=int, default=100)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    ref = _reference()
    h, w = args.size
    frame, out = ref.frames(1, h, w)[0], ref.outputs(0, h, w)
    ts = get_task_set("nyud")
    new, old = Renderer(ts), ref.OldRenderer(ts)
    print(f"machine: {machine()}; frame {h}x{w}; medians of {args.runs}")
    rows = [
        ("seg (palette)", lambda r: r.seg(out)),
        ("blend", lambda r: r.blend(frame, out)),
        ("depth", lambda r: r.depth(out)),
        ("normals", lambda r: r.normals(out)),
        ("edges", lambda r: r.edges(frame, out)),
        ("grid (all four)", lambda r: r.render(frame, out)),
    ]
    print(f"\n{'view':18s} {'before ms':>10s} {'now ms':>8s} {'speed-up':>9s}")
    for name, fn in rows:
        a = median_ms(lambda fn=fn: fn(old), args.runs, warmup_s=0.2)
        b = median_ms(lambda fn=fn: fn(new), args.runs, warmup_s=0.2)
        print(f"{name:18s} {a:10.2f} {b:8.2f} {a / b:8.1f}x")
    grid = new.render(frame, out)
    lines = ["30.0 FPS  openvino fp32  dropped 0",
             "wait  0.1  pre  1.0  infer  12.0  post  5.0  render  3.0 ms"]
    print(f"{'HUD on the grid':18s} {'':10s} "
          f"{median_ms(lambda: draw_hud(grid, lines), args.runs, warmup_s=0.2):8.2f}")

    # Annotations: alternating rounds over a moving sequence (labels and depth change).
    seq = [(f, ref.outputs(i, h, w)) for i, f in enumerate(ref.frames(8, h, w))]
    plain, ann = Renderer(ts), Renderer(ts, annotate=True)
    k = {"plain": 0, "annotated": 0}

    def step(r, key):
        f, o = seq[k[key] % len(seq)]
        k[key] += 1
        r.render(f, o)

    t = timed_rounds({"plain": lambda: step(plain, "plain"),
                      "annotated": lambda: step(ann, "annotated")}, args.runs, rounds=5)
    print(f"\n{'grid':18s} {'plain ms':>10s} {'labelled':>8s} {'cost':>9s}")
    cost = t["annotated"] - t["plain"]
    print(f"{'(8 moving frames)':18s} {t['plain']:10.2f} {t['annotated']:8.2f} "
          f"{cost:+8.2f} ms ({100 * cost / t['plain']:+.1f} %)")


if __name__ == "__main__":
    main()
