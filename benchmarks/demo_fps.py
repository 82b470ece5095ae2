"""End-to-end FPS of the live loop (capture → infer → overlay → write) with the per-stage
split, and an optional long headless soak that tracks resident memory.

The source is the SynthIndoor walkthrough (240×320, or ``--size``), read unpaced (the capture
thread waits for the loop instead of dropping frames), so the figure is the loop's maximum rate.

    python benchmarks/demo_fps.py --target openvino --frames 600 --record
    python benchmarks/demo_fps.py --size 480 640 --record   # a camera-sized source
    python benchmarks/demo_fps.py --soak 10000          # memory growth over 10k frames
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import psutil

from benchmarks.common import checkpoint_or_random, machine
from mtlsi_edge.compiler import CompileRequest, compile_bundle
from mtlsi_edge.data.synthindoor import render_walkthrough
from mtlsi_edge.runtime.capture import Source
from mtlsi_edge.runtime.loop import LoopOptions, run_loop
from mtlsi_edge.runtime.predictor import Predictor
from mtlsi_edge.targets import CompileOptions, get_target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint")
    ap.add_argument("--target", default="openvino")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--record", action="store_true", help="also write the rendered video")
    ap.add_argument("--soak", type=int, default=0, help="frames for the memory soak (0: off)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"),
                    help="walkthrough frame size")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="demo-fps-"))
    ckpt = checkpoint_or_random(args.checkpoint, tmp=tmp)
    dev = get_target(args.target).default_device
    bundle = compile_bundle(tmp / "bundle", CompileRequest(
        args.target, args.precision, checkpoint=ckpt, options=CompileOptions(device=dev)))
    size = tuple(args.size)
    video = render_walkthrough(tmp / "walk.mp4", seconds=20, fps=15, size=size)
    pred = Predictor.from_bundle(bundle, threads=args.threads)
    print(f"machine: {machine()}; {args.target} {args.precision}; "
          f"source {size[0]}x{size[1]} walkthrough")

    def loop(n: int, record: bool, pipeline: bool = True):
        # The 300-frame walkthrough is looped by reopening it until n frames were processed.
        done, fps_parts, stages = 0, [], {}
        proc = psutil.Process()
        rss = []
        while done < n:
            src = Source(str(video))
            rec = tmp / f"rec{done}.mp4" if record else None
            st = run_loop(pred, src, LoopOptions(record=rec, max_frames=n - done, pace=False,
                                                 pipeline=pipeline))
            done += st.frames
            fps_parts.append((st.frames, st.wall_s))
            for k, v in st.stages_ms.items():
                stages.setdefault(k, []).extend(v)
            rss.append((done, proc.memory_info().rss / 2**20))
        frames = sum(f for f, _ in fps_parts)
        wall = sum(w for _, w in fps_parts)
        return frames / wall, stages, rss

    import statistics

    seq_fps, _, _ = loop(args.frames, args.record, pipeline=False)
    fps, stages, _ = loop(args.frames, args.record)
    print(f"sequential loop: {seq_fps:.1f} FPS; pipelined (inference of frame N overlaps the "
          f"rendering of N-1): {fps:.1f} FPS ({fps / seq_fps:.2f}x)")

    total = sum(statistics.median(v) for v in stages.values())
    print(f"\nend-to-end: {fps:.1f} FPS over {args.frames} frames "
          f"({'with' if args.record else 'without'} video writing)")
    for k, v in stages.items():
        m = statistics.median(v)
        print(f"  {k:12s} {m:6.2f} ms median ({100 * m / total:4.1f} %)")
    if args.soak:
        # One continuous loop over a looping source, as a long demo session runs.
        proc = psutil.Process()
        rss: list[tuple[int, float]] = []

        def sample(_view, _out, n=[0]):  # noqa: B006 - a counter across calls
            n[0] += 1
            if n[0] % 500 == 0:
                rss.append((n[0], proc.memory_info().rss / 2**20))

        st = run_loop(pred, Source(str(video), loop=True),
                      LoopOptions(max_frames=args.soak, pace=False), on_frame=sample)
        base = rss[1][1]  # after 1,000 frames: buffers, caches and arenas are warm
        print(f"\nsoak: {st.frames} frames at {st.fps:.1f} FPS; resident memory "
              f"{rss[0][1]:.0f} MiB at 500 frames, {base:.0f} MiB at 1,000, "
              f"{rss[-1][1]:.0f} MiB at {rss[-1][0]}: growth after warm-up "
              f"{rss[-1][1] - base:+.1f} MiB ({(rss[-1][1] - base) * 1.048576:+.1f} MB)")
        print("rss samples (frame, MiB): " + ", ".join(f"({n}, {m:.0f})" for n, m in rss))


if __name__ == "__main__":
    main()
