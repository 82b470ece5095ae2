"""The two SEISM boundary flavours side by side, and a cross-check of the NMS port.

``BoundaryMetric(flavour="seism-nms")`` reads predictions like SEISM's ``read_one_cont_png``
(``edgesNmsMex`` before the threshold; what InvPT / TaskPrompter's Boundary-Detection-Evaluation-
Tools run), ``flavour="mtl"`` like Multi-Task-Learning-PyTorch's ``read_one_png`` (no NMS).
See docs/evaluation.md.

Held-out SynthIndoor renders of the starter checkpoint (its val split is a seeded permutation of
3,000 renders; ``heldout`` writes the first ``--n`` of those ids that exist under ``--data``)::

    mtlsi-edge data synth --n 182 --seed 0 --no-walkthrough --out data/fid-synth
    python benchmarks/boundary_flavours.py heldout --data data/fid-synth --n 40
    python benchmarks/boundary_flavours.py table --data data/fid-synth --split heldout --limit 40

``table`` prints a Markdown table (odsF / oisF / AP per flavour, the fast monitor's
``odsF_approx`` and the metric seconds per image) and one JSON line. Its third row,
``seism-nms`` restricted to MTL's thresholds 0.01 … 0.99, separates the effect of the NMS from
that of HED's two extra thresholds (0.001, 0.999).

Cross-check of :func:`mtlsi_edge.metrics.edges_nms` / ``edge_orientation`` against OpenCV
contrib's port (``cv2.ximgproc.StructuredEdgeDetection.edgesNms`` / ``computeOrientation``).
opencv-contrib-python replaces this project's opencv-python (both install ``cv2``), so use a
scratch environment::

    python -m venv /tmp/cvx && /tmp/cvx/bin/pip install opencv-contrib-python-headless numpy
    PYTHONPATH=. /tmp/cvx/bin/python benchmarks/boundary_flavours.py nms-crosscheck --n 10
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from mtlsi_edge import metrics

# A structured-edge "model" with no trees: enough for OpenCV to construct the object whose
# computeOrientation / edgesNms we compare with (neither uses the forest).
_EMPTY_SE_MODEL = """%YAML:1.0
options:
   stride: 2
   shrinkNumber: 2
   patchSize: 32
   patchInnerSize: 16
   numberOfGradientOrientations: 4
   gradientSmoothingRadius: 0
   regFeatureSmoothingRadius: 2
   ssFeatureSmoothingRadius: 8
   gradientNormalizationRadius: 4
   selfsimilarityGridSize: 5
   numberOfTrees: 1
   numberOfTreesToEvaluate: 1
"""


def starter_heldout_ids(n_train: int = 3000, seed: int = 0, val_fraction: float = 0.2) -> list[int]:
    """Val ids of the starter's split (``write_dataset``'s seeded permutation), ascending."""
    n_val = int(round(n_train * val_fraction))
    perm = np.random.default_rng([int(seed) % (1 << 63), 2]).permutation(n_train)
    return sorted(int(j) for j in perm[:n_val])


def cmd_heldout(args: argparse.Namespace) -> None:
    data = Path(args.data)
    have = {p.stem for p in (data / "images").glob("synth_*.png")}
    ids = [f"synth_{i:06d}" for i in starter_heldout_ids() if f"synth_{i:06d}" in have]
    if len(ids) < args.n:
        raise SystemExit(f"only {len(ids)} held-out ids rendered under {data}; render more")
    out = data / "gt_sets" / "heldout.txt"
    out.write_text("".join(f"{i}\n" for i in ids[: args.n]))
    print(f"{out}: {args.n} ids, {ids[0]} … {ids[args.n - 1]}")


def _collate(batch: list[dict]) -> dict:
    import torch

    meta = [b.pop("meta") for b in batch]
    out = torch.utils.data.default_collate(batch)
    out["meta"] = meta
    return out


def cmd_table(args: argparse.Namespace) -> None:
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, Subset

    from mtlsi_edge.data.datasets import build_dataset
    from mtlsi_edge.data.transforms import val_transforms
    from mtlsi_edge.objectives import task_activate
    from mtlsi_edge.train.checkpoint import build_from_checkpoint

    if args.checkpoint is None:
        from mtlsi_edge.weights import starter_checkpoint

        args.checkpoint = starter_checkpoint()
    torch.set_num_threads(1)
    model, _ = build_from_checkpoint(args.checkpoint)
    model.eval()
    task = next(t for t in model.task_set if t.kind == "boundary")
    flavours = [*metrics.BOUNDARY_FLAVOURS, "seism-nms@0.01-0.99"]
    meters = {f: metrics.BoundaryMetric(task, flavour=f) for f in metrics.BOUNDARY_FLAVOURS}
    meters[flavours[-1]] = metrics.BoundaryMetric(task, flavour="seism-nms", n_thresholds=99)
    monitor = metrics.BoundaryMonitor(task)
    seconds = dict.fromkeys(flavours, 0.0)

    ds0 = build_dataset(args.data, args.split, model.task_set)
    h, w = ds0.load(0)["image"].shape[:2]
    pad = (-(-h // 32) * 32, -(-w // 32) * 32)  # as train.engine.evaluate
    ds = build_dataset(args.data, args.split, model.task_set, val_transforms(pad))
    if args.limit is not None:
        ds = Subset(ds, range(min(args.limit, len(ds))))
    n = 0
    start = time.perf_counter()
    with torch.no_grad():
        for batch in DataLoader(ds, batch_size=4, collate_fn=_collate):
            raw = model(batch["image"])[task.name].float()
            raw = F.interpolate(raw, size=batch["image"].shape[-2:], mode="bilinear",
                                align_corners=False)
            pred = task_activate(task, raw).numpy()
            gt = batch[task.name].numpy()
            for i, m in enumerate(batch["meta"]):
                oh, ow = m["orig_size"]
                p, g = pred[i : i + 1, ..., :oh, :ow], gt[i : i + 1, ..., :oh, :ow]
                for f in flavours:
                    t0 = time.perf_counter()
                    meters[f].update(p, g)
                    seconds[f] += time.perf_counter() - t0
                monitor.update(p, g)
                n += 1
    res = {f: meters[f].compute() for f in flavours}
    approx = monitor.compute()["odsF_approx"]
    print(f"{n} images of {args.data} split {args.split}, maxDist {task.max_dist}, "
          f"checkpoint {Path(args.checkpoint).name}\n")
    print("| flavour | NMS | threshold | thresholds | odsF | oisF | AP | metric s/image |")
    print("|---|---|---|---|---|---|---|---|")
    for f in flavours:
        pr = meters[f].protocol()
        nms = "edgesNmsMex(E,O,1,5,1.01)" if pr["nms"] else "none"
        r = res[f]
        print(f"| `{f}` | {nms} | E {pr['threshold']} t | {pr['n_thresholds']} | "
              f"{r['odsF']:.1f} | {r['oisF']:.1f} | {r['AP']:.1f} | {seconds[f] / n:.2f} |")
    print(f"| fast monitor `odsF_approx` | none | p >= t | 99 | {approx:.1f} | – | – | – |\n")
    print(json.dumps({"split": args.split, "images": n, "max_dist": task.max_dist,
                      **{f: {k: round(v, 3) for k, v in res[f].items()} for f in flavours},
                      "odsF_approx": round(approx, 3),
                      "metric_seconds": {f: round(s, 1) for f, s in seconds.items()},
                      "seconds": round(time.perf_counter() - start, 1)}))


def _random_case(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A quantised (k/255, float32) blurred boundary-like map of random regions, with noise."""
    import cv2

    labels = cv2.resize(rng.integers(0, 4, (h // 24, w // 24)).astype(np.uint8), (w, h),
                        interpolation=cv2.INTER_NEAREST)
    # rotate the blocky regions so that edges take every orientation
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), float(rng.uniform(0, 180)), 1.3)
    labels = cv2.warpAffine(labels, rot, (w, h), flags=cv2.INTER_NEAREST,
                            borderMode=cv2.BORDER_REFLECT)
    edge = np.zeros((h, w), np.float32)
    edge[:-1] += labels[:-1] != labels[1:]
    edge[:, :-1] += labels[:, :-1] != labels[:, 1:]
    prob = cv2.GaussianBlur(np.minimum(edge, 1), (0, 0), float(rng.uniform(0.7, 2.0))) * 2.0
    prob += rng.normal(0, 0.05, (h, w)).astype(np.float32)
    k = np.floor(np.clip(prob, 0, 1) * 255)
    return (k.astype(np.float32) / np.float32(255)).astype(np.float32)


def cmd_nms_crosscheck(args: argparse.Namespace) -> None:
    import cv2

    if not hasattr(cv2, "ximgproc"):
        raise SystemExit("error: needs opencv-contrib-python (cv2.ximgproc) in a scratch "
                         "environment; see the module docstring")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "empty_se.yml"
        path.write_text(_EMPTY_SE_MODEL)
        se = cv2.ximgproc.createStructuredEdgeDetection(str(path))
    h, w = (int(v) for v in args.size.split("x"))
    rng = np.random.default_rng(0)
    p = metrics.SEISM_NMS
    nz = diff_same_o = 0
    max_abs = 0.0
    ang: list[np.ndarray] = []
    diff_own_o = 0
    for _ in range(args.n):
        e = _random_case(rng, h, w)
        o_cv = se.computeOrientation(e)
        ref = se.edgesNms(e, o_cv, r=p["r"], s=p["s"], m=p["m"])
        ours = metrics.edges_nms(e, o_cv, p["r"], p["s"], p["m"])
        nz += int(np.count_nonzero(e))
        diff_same_o += int(np.count_nonzero(ours != ref))
        max_abs = max(max_abs, float(np.abs(ours - ref).max()))
        o_ours = metrics.edge_orientation(e, p["orient_radius"])
        d = np.abs(o_ours.astype(np.float64) - o_cv)
        d = np.minimum(d, math.pi - d)  # orientations are modulo π
        ang.append(np.degrees(d[e > 0]))
        diff_own_o += int(np.count_nonzero((metrics.seism_nms(e) > 0) != (ref > 0)))
    ang_all = np.concatenate(ang)
    print(json.dumps({
        "images": args.n, "size": args.size, "nonzero_pixels": nz,
        "edges_nms_same_orientation": {"pixels_differing": diff_same_o,
                                       "max_abs_difference": max_abs},
        "orientation_vs_opencv_deg": {"median": round(float(np.median(ang_all)), 3),
                                      "p95": round(float(np.percentile(ang_all, 95)), 3),
                                      "share_within_1deg": round(float(np.mean(ang_all < 1)), 4)},
        "seism_nms_vs_opencv_pipeline": {"pixels_kept_differently": diff_own_o,
                                         "share_of_nonzero": round(diff_own_o / max(nz, 1), 5)},
    }))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("heldout", help="write gt_sets/heldout.txt (starter's held-out ids)")
    a.add_argument("--data", required=True)
    a.add_argument("--n", type=int, default=40)
    a.set_defaults(fn=cmd_heldout)
    a = sub.add_parser("table", help="odsF / oisF / AP of a checkpoint under both flavours")
    a.add_argument("--checkpoint", type=Path, default=None, help="default: the starter")
    a.add_argument("--data", required=True)
    a.add_argument("--split", default="val")
    a.add_argument("--limit", type=int, default=None)
    a.set_defaults(fn=cmd_table)
    a = sub.add_parser("nms-crosscheck", help="edges_nms vs cv2.ximgproc (scratch venv)")
    a.add_argument("--n", type=int, default=10)
    a.add_argument("--size", default="240x320")
    a.set_defaults(fn=cmd_nms_crosscheck)
    args = ap.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
