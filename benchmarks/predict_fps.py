"""Throughput of ``predict`` (files written) vs the ``demo`` loop (grid rendered and recorded)
on the same video, same bundle, same process: alternating rounds, so drift of a shared machine
hits every configuration alike.  Also the demo loop without its annotations (panel names,
colour bar, legend), to see whether they cost FPS.

The source is a 640×480 video of SynthIndoor renders (``data.seeds.render_bgr``), read
unpaced (every frame, as ``predict`` reads files; the ``demo`` command paces videos like a
camera, which would cap it at the video's rate).  The bundle is the one ``demo`` and ``predict``
compile by default (the embedded starter, OpenVINO FP32, cached under runs/demo/bundles).

    python -m benchmarks.predict_fps [--frames 120] [--rounds 3] [--video walk.mp4]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import tempfile
from pathlib import Path

import cv2

from benchmarks.common import machine
from mtlsi_edge.cli.demo_cache import cached_bundle
from mtlsi_edge.runtime.capture import Source
from mtlsi_edge.runtime.loop import LoopOptions, run_loop
from mtlsi_edge.runtime.predict import OutputFormats, PredictOptions, run_predict
from mtlsi_edge.runtime.predictor import Predictor
from mtlsi_edge.weights import starter_checkpoint


def render_video(path: Path, n: int, size=(480, 640), fps: int = 15) -> Path:
    from mtlsi_edge.data.seeds import render_bgr

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size[1], size[0]))
    for i in range(n):
        w.write(render_bgr(5000 + i, size))
    w.release()
    return path


def cpu_flags() -> str:
    try:
        txt = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "?"
    return " ".join(sorted(set(re.findall(r"\b(avx2|avx512[a-z_]*)\b", txt)))) or "none"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--video", help="an existing video instead of the rendered one")
    ap.add_argument("--target", default="openvino")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="predict-fps-"))
    video = Path(args.video) if args.video else render_video(tmp / "renders.mp4", args.frames)
    bundle = cached_bundle(starter_checkpoint(), args.target, "fp32")
    pred = Predictor.from_bundle(bundle, threads=args.threads)
    cap = cv2.VideoCapture(str(video))
    n, w, h = (int(cap.get(p)) for p in (cv2.CAP_PROP_FRAME_COUNT, cv2.CAP_PROP_FRAME_WIDTH,
                                         cv2.CAP_PROP_FRAME_HEIGHT))
    cap.release()
    print(f"machine: {machine()}; CPU flags: {cpu_flags()}")
    print(f"bundle: {bundle} ({pred.target} {pred.precision}); source: {video} "
          f"({n} frames, {w}x{h}); {args.rounds} alternating rounds")
    k = [0]

    def predict(formats: OutputFormats):
        def run() -> float:
            k[0] += 1
            st = run_predict(pred, str(video), tmp / f"out{k[0]}",
                             PredictOptions(formats=formats))
            shutil.rmtree(tmp / f"out{k[0]}")  # ~65 MB per 120 frames
            assert st.frames == n, st.frames
            return st.fps
        return run

    def demo(annotate: bool):
        def run() -> float:
            k[0] += 1
            st = run_loop(pred, Source(str(video)),
                          LoopOptions(record=tmp / f"rec{k[0]}.mp4", pace=False,
                                      annotate=annotate))
            (tmp / f"rec{k[0]}.mp4").unlink()
            assert st.frames == n, st.frames
            return st.fps
        return run

    configs = {
        "predict (4 PNGs per frame)": predict(OutputFormats()),
        "predict --overlay (+ grid JPEG)": predict(OutputFormats(overlay=True)),
        "demo loop, recording the grid": demo(True),
        "demo loop, grid without labels": demo(False),
    }
    fps: dict[str, list[float]] = {c: [] for c in configs}
    try:
        for _ in range(args.rounds):
            for c, fn in configs.items():
                fps[c].append(fn())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = statistics.median(fps["demo loop, recording the grid"])
    print(f"\n{'configuration':34s} {'FPS (median)':>12s} {'vs demo':>8s}   rounds")
    for c, v in fps.items():
        m = statistics.median(v)
        print(f"{c:34s} {m:12.1f} {m / base:7.2f}x   " + ", ".join(f"{x:.1f}" for x in v))


if __name__ == "__main__":
    main()
