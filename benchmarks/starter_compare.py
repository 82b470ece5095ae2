"""Two checkpoints on the same held-out split, on the starter's protocol (weights/README.md).

Eager FP32, batch 4, pooled metrics: every task on the first ``--limit`` val images with the
fast boundary approximation (``odsF_approx``), and the SEISM boundary protocol (``seism-nms``,
odsF / oisF / AP) on the first ``--seism-limit`` of them.

    python -m benchmarks.starter_compare --data data/synth \\
        --a runs/old/starter.json --b mtlsi_edge/weights/starter.json
"""

from __future__ import annotations

import argparse
import json
import time

from mtlsi_edge.machine import describe
from mtlsi_edge.train.checkpoint import build_from_checkpoint
from mtlsi_edge.train.engine import evaluate

ROWS = [("semseg", "miou", "mIoU"), ("semseg", "pixel_acc", "pixel acc. %"),
        ("depth", "rmse", "RMSE m"), ("depth", "abs_rel", "abs-rel"), ("depth", "delta1", "δ1 %"),
        ("normals", "mean", "mean angle °"), ("normals", "median", "median angle °"),
        ("normals", "11.25", "% < 11.25°"),
        ("boundary", "odsF_approx", "odsF_approx"), ("boundary", "odsF", "SEISM odsF"),
        ("boundary", "oisF", "SEISM oisF"), ("boundary", "AP", "SEISM AP")]
LOWER = {"rmse", "abs_rel", "mean", "median"}


def score(ckpt: str, data: str, limit: int, seism_limit: int) -> dict:
    model, _ = build_from_checkpoint(ckpt)
    res = evaluate(model, data, "val", 4, limit=limit, boundary_seism=False)
    seism = evaluate(model, data, "val", 4, limit=seism_limit)["boundary"]
    res["boundary"].update({k: seism[k] for k in ("odsF", "oisF", "AP")})
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--a", required=True, help="first checkpoint (e.g. the previous starter)")
    ap.add_argument("--b", required=True, help="second checkpoint")
    ap.add_argument("--limit", type=int, default=600)
    ap.add_argument("--seism-limit", type=int, default=40)
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    t = time.perf_counter()
    res = {k: score(p, a.data, a.limit, a.seism_limit) for k, p in (("a", a.a), ("b", a.b))}
    print(f"{describe()}; {time.perf_counter() - t:.0f} s; val split of {a.data}: first "
          f"{a.limit} images (SEISM: first {a.seism_limit})\n")
    print(f"| task | metric | A `{a.a}` | B `{a.b}` | B better or equal |")
    print("|---|---|---|---|---|")
    for task, key, label in ROWS:
        va, vb = res["a"][task].get(key), res["b"][task].get(key)
        if va is None or vb is None:
            continue
        ok = vb <= va if key in LOWER else vb >= va
        print(f"| {task} | {label} | {va:.4g} | {vb:.4g} | {'yes' if ok else 'NO'} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
