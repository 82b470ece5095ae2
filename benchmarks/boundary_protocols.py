"""Boundary F of a checkpoint on a split under both protocols (SEISM and the fast monitor).

    python benchmarks/boundary_protocols.py --data data/synth --split val --limit 200

Prints one JSON line: the SEISM-protocol odsF / oisF / AP (``mtlsi-edge eval``'s metric, i.e.
``BoundaryMetric``'s default flavour, recorded as ``flavour``: ``seism-nms``, SEISM's NMS before
the threshold), the fast approximation ``odsF_approx`` on the same predictions, the tolerance
used, and the wall time. ``benchmarks/boundary_flavours.py table`` shows both SEISM flavours
(with and without NMS) side by side.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from mtlsi_edge.metrics import DEFAULT_BOUNDARY_FLAVOUR
from mtlsi_edge.train.checkpoint import build_from_checkpoint
from mtlsi_edge.train.engine import evaluate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", type=Path, default=None, help="default: the starter")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    if args.checkpoint is None:
        from mtlsi_edge.weights import starter_checkpoint

        args.checkpoint = starter_checkpoint()
    torch.set_num_threads(1)
    model, _ = build_from_checkpoint(args.checkpoint)
    start = time.perf_counter()
    res = evaluate(model, args.data, args.split, limit=args.limit, boundary_monitor=True)
    task = next(t for t in model.task_set if t.kind == "boundary")
    print(json.dumps({"split": args.split, "limit": args.limit, "max_dist": task.max_dist,
                      "flavour": DEFAULT_BOUNDARY_FLAVOUR, **res[task.name],
                      "seconds": round(time.perf_counter() - start, 1)}))


if __name__ == "__main__":
    main()
