"""Per-task vs task-batched graphs on torch eager, ONNX Runtime and OpenVINO FP32 — compute and
end-to-end — plus what folding pre/postprocessing into the graph buys, in one run.

Every row is a real bundle compiled from the same weights (the starter unless ``--checkpoint``),
``compile --graph per-task`` and ``--graph batched``.  Timings alternate between the compared
variants in ``--rounds`` rounds (medians of the round medians), so that drift of a shared
machine hits both alike.

- compute: the compiled model alone on its prepared input (what ``mtlsi-edge profile`` calls
  compute);
- end-to-end: ``Predictor(frame)`` — BGR uint8 frame in, every output at frame size out — on a
  frame of the input size and on a 480×640 camera frame;
- host side: the frame-I/O bundle (uint8 BGR in, labels out) vs the float-input bundle with
  pre/postprocessing on the host (schema 2 and before), OpenVINO;
- labels: argmax in the graph at 1/1, 1/2, 1/4 of the input size — compute and label agreement
  with the host path on 20 held-out 480×640 renders.

    python -m benchmarks.targets [--checkpoint C] [--threads 2] [--runs 40] [--rounds 3]
                                 [--md docs/benchmarks/targets.md]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import checkpoint_or_random, machine, median_ms, timed_rounds
from mtlsi_edge.compiler import CompileRequest, compile_bundle
from mtlsi_edge.data.seeds import TIMING_SEED
from mtlsi_edge.data.synthindoor import render_sample
from mtlsi_edge.machine import cpu_flags
from mtlsi_edge.runtime.predictor import Predictor
from mtlsi_edge.targets import CompileOptions, get_target

TARGETS = tuple((t, get_target(t).default_device, label) for t, label in (
    ("torch", "torch eager"), ("onnxruntime", "ONNX Runtime"), ("openvino", "OpenVINO")))
CAMERA = (480, 640)


def _frame(size: tuple[int, int], seed: int = TIMING_SEED) -> np.ndarray:
    return np.ascontiguousarray(render_sample(seed, size=size).image_rgb[:, :, ::-1])


def run(ckpt: Path, work: Path, threads: int, runs: int, rounds: int) -> list[str]:
    """Measure everything; return the markdown section (also printed)."""
    t0 = time.time()
    graphs = ("per-task", "batched")
    preds: dict[tuple[str, str], Predictor] = {}
    for graph in graphs:
        for target, dev, _ in TARGETS:
            b = compile_bundle(work / f"{target}-{graph}", CompileRequest(
                target, "fp32", checkpoint=ckpt, graph=graph,
                options=CompileOptions(device=dev, threads=threads)))
            preds[target, graph] = Predictor.from_bundle(b, threads=threads)
    size = preds["torch", "per-task"].input_size
    small, cam = _frame(size), _frame(CAMERA)

    res: dict[tuple[str, str], dict[str, float]] = {}
    for target, _, _ in TARGETS:
        fns = {}
        for graph in graphs:
            p = preds[target, graph]
            x = p.sample_input()
            fns[f"{graph} compute"] = lambda p=p, x=x: p.runner(x)
            fns[f"{graph} e2e"] = lambda p=p: p(small)
            fns[f"{graph} e2e cam"] = lambda p=p: p(cam)
        t = timed_rounds(fns, runs, rounds)
        for graph in graphs:
            res[target, graph] = {k: t[f"{graph} {k}"] for k in ("compute", "e2e", "e2e cam")}
        print(target, {g: {k: round(v, 2) for k, v in res[target, g].items()} for g in graphs})

    h, w = size
    md = ["## Per-task vs task-batched graphs, compute and end-to-end", "",
          "```bash", ".venv/bin/python -m benchmarks.targets", "```", "",
          f"Machine: {machine()}; CPU flags: {cpu_flags() or 'none of note'}; {threads} threads. "
          f"FP32 bundles of `{os.path.relpath(ckpt)}`, frame-I/O graphs (uint8 BGR in, labels "
          f"out); medians of {rounds} alternating rounds × {runs} calls.", "",
          f"| runtime | graph | compute ms | × eager (same graph) | × eager per-task | "
          f"batched gain | e2e ms, {h}×{w} frame | e2e / compute | "
          f"e2e ms, {CAMERA[0]}×{CAMERA[1]} frame |",
          "|---|---|---|---|---|---|---|---|---|"]
    for target, _, label in TARGETS:
        for graph in graphs:
            r = res[target, graph]
            eager = res["torch", graph]["compute"]
            gain = res[target, "per-task"]["compute"] / r["compute"]
            ref = res["torch", "per-task"]["compute"]
            md.append(f"| {label} | {graph} | {r['compute']:.2f} | {eager / r['compute']:.2f}× | "
                      f"{ref / r['compute']:.2f}× | {gain:.2f}× | {r['e2e']:.2f} | "
                      f"{r['e2e'] / r['compute']:.2f}× | {r['e2e cam']:.2f} |")
    best = min(graphs, key=lambda g: res["openvino", g]["compute"])
    ov = {g: res["openvino", g]["compute"] for g in graphs}
    md += ["", f"OpenVINO FP32 ({best} graph) vs PyTorch eager of the same checkpoint "
               f"(per-task graph, the trained model as is): "
               f"**{res['torch', 'per-task']['compute'] / ov[best]:.2f}×**; batched vs "
               f"per-task on OpenVINO: **{ov['per-task'] / ov['batched']:.2f}×**.", ""]

    # Host side: frame I/O vs float input with host pre/postprocessing (OpenVINO, batched).
    tensor_b = compile_bundle(work / "openvino-tensor", CompileRequest(
        "openvino", "fp32", checkpoint=ckpt, frame_io=False,
        options=CompileOptions(device="CPU", threads=threads)))
    host = {"frame I/O (this release)": preds["openvino", "batched"],
            "float input, host pre/post (schema 2)": Predictor.from_bundle(tensor_b,
                                                                           threads=threads)}
    md += ["## Pre- and postprocessing in the graph", "",
           f"OpenVINO FP32, batched graph, {CAMERA[0]}×{CAMERA[1]} BGR frame → every output at "
           f"frame size; medians of the Predictor's own stage timings.", "",
           "| bundle | e2e ms | preprocess | inference | postprocess |", "|---|---|---|---|---|"]
    for _ in range(rounds):  # warm both alike
        for p in host.values():
            median_ms(lambda p=p: p(cam), runs, warmup_s=0.3)
    for name, p in host.items():
        split = []
        for _ in range(runs * rounds):
            t = time.perf_counter()
            p(cam)
            split.append((1e3 * (time.perf_counter() - t), p.timings.preprocess,
                          p.timings.inference, p.timings.postprocess))
        m = np.median(np.asarray(split), 0)
        md.append(f"| {name} | {m[0]:.2f} | {m[1]:.2f} | {m[2]:.2f} | {m[3]:.2f} |")
        print(name, np.round(m, 2))

    # Where the labels are made: resolution of the in-graph argmax.
    frames = [_frame(CAMERA, 20_000_800 + i) for i in range(20)]
    host_p = host["float input, host pre/post (schema 2)"]
    want = [host_p(f)["semseg"] for f in frames]
    md += ["", "## Labels in the graph", "",
           "Segmentation labels come out of the graph (argmax after a bilinear resize of the "
           "logits to 1/s of the input size); the host only resizes them (nearest) to the frame. "
           "Agreement is with the host path of schema-2 bundles (logits resized to the input "
           "size, argmax, nearest to the frame) on 20 held-out 480×640 renders; compute is "
           "OpenVINO FP32, batched graph.", "",
           "| label stride | compute ms | label agreement % (mean / min) |", "|---|---|---|"]
    lab_p = {}
    for s in (1, 2, 4):
        b = compile_bundle(work / f"openvino-label{s}", CompileRequest(
            "openvino", "fp32", checkpoint=ckpt, label_stride=s,
            options=CompileOptions(device="CPU", threads=threads)))
        lab_p[s] = Predictor.from_bundle(b, threads=threads)
    t = timed_rounds({s: (lambda p=p, x=p.sample_input(): p.runner(x))
                       for s, p in lab_p.items()}, runs, rounds)
    for s, p in lab_p.items():
        agree = [float((p(f)["semseg"] == w_).mean() * 100) for f, w_ in zip(frames, want)]
        md.append(f"| {s} | {t[s]:.2f} | {np.mean(agree):.2f} / {np.min(agree):.2f} |")
        print("label stride", s, round(t[s], 2), round(np.mean(agree), 2))
    md += ["", f"(one run, {time.time() - t0:.0f} s)", ""]
    print("\n".join(md))
    return md


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--md", help="also write the markdown section to this file")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench-targets-"))
    ckpt = checkpoint_or_random(args.checkpoint, tmp=work)
    md = run(ckpt, work, args.threads, args.runs, args.rounds)
    if args.md:
        from mtlsi_edge.fileio import atomic_write_text

        atomic_write_text(Path(args.md), "\n".join(md))
        print(f"wrote {args.md}")


if __name__ == "__main__":
    main()
