"""SynthIndoor dataset writer: render ``n`` samples into the NYUD "NYUDv2" folder layout.

The layout is the one ``mtlsi_edge.data.datasets.NYUDDataset`` reads, so synthetic and real data
share one reader. Every file is written atomically (temporary file + rename).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from mtlsi_edge.data.synthindoor.render import render_sample
from mtlsi_edge.data.synthindoor.scene import sample_seed
from mtlsi_edge.fileio import atomic_write
from mtlsi_edge.tasks import IGNORE_INDEX


def _atomic_bytes(path: Path, data: bytes) -> None:
    # No fsync per file: a dataset is thousands of small files, regenerated if a crash hits.
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def _atomic_png(path: Path, img: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise RuntimeError(f"{path}: PNG encoding failed")
    _atomic_bytes(path, buf.tobytes())


def _atomic_npy(path: Path, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    _atomic_bytes(path, buf.getvalue())


def encode_normals(normals: np.ndarray) -> np.ndarray:
    """``H×W×3`` float normals → ``H×W×3`` uint8 RGB, v = round((n+1)/2·255)."""
    return np.clip(np.rint((normals + 1.0) * 127.5), 0, 255).astype(np.uint8)


def _write_one(args: tuple[str, int, int, tuple[int, int], bool]) -> int:
    root, i, seed, size, noise = args
    out = Path(root)
    smp = render_sample(seed, size, noise=noise)
    sid = f"synth_{i:06d}"
    _atomic_png(out / "images" / f"{sid}.png", cv2.cvtColor(smp.image_rgb, cv2.COLOR_RGB2BGR))
    seg = np.where(smp.semseg == IGNORE_INDEX, 0, smp.semseg.astype(np.int16) + 1).astype(np.uint8)
    _atomic_png(out / "segmentation" / f"{sid}.png", seg)
    _atomic_npy(out / "depth" / f"{sid}.npy", smp.depth.astype(np.float32))
    _atomic_png(out / "normals" / f"{sid}.png", encode_normals(smp.normals)[..., ::-1].copy())
    _atomic_png(out / "edge" / f"{sid}.png", (smp.boundary * 255).astype(np.uint8))
    return i


def write_dataset(out: Path, n: int, size: tuple[int, int], seed: int, val_fraction: float = 0.2,
                  progress: Callable[[int, int], None] | None = None, noise: bool = True,
                  workers: int | None = None) -> Path:  # fmt: skip
    """Render ``n`` samples into the NYUD "NYUDv2" layout under ``out`` and return ``out``.

    Files (ids ``synth_000000``...): ``images/{id}.png`` (RGB image, stored BGR by cv2),
    ``segmentation/{id}.png`` uint8 (0 = unlabeled, class+1), ``depth/{id}.npy`` float32 metres
    ``H×W`` (0 = invalid), ``normals/{id}.png`` (RGB channels = camera xyz, v = round((n+1)/2·255),
    decode n = 2v/255 − 1), ``edge/{id}.png`` 0/255, ``gt_sets/{train,val}.txt``. Sample ``i`` uses
    ``sample_seed(seed, i)``; the split is a seeded permutation (``round(n·val_fraction)`` val ids,
    at least one of each when n ≥ 2). Every file is written atomically. ``progress(done, n)`` is
    called after each sample. ``workers``: processes (default 2 when n ≥ 64 and 2+ CPUs, else 1).
    """
    out = Path(out)
    for sub in ("images", "segmentation", "depth", "normals", "edge", "gt_sets"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    size = (int(size[0]), int(size[1]))
    jobs = [(str(out), i, sample_seed(seed, i), size, noise) for i in range(n)]
    if workers is None:
        workers = 2 if n >= 64 and (os.cpu_count() or 1) >= 2 else 1
    done = 0
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(_write_one, jobs, chunksize=4):
                done += 1
                if progress is not None:
                    progress(done, n)
    else:
        for job in jobs:
            _write_one(job)
            done += 1
            if progress is not None:
                progress(done, n)
    ids = [f"synth_{i:06d}" for i in range(n)]
    n_val = int(round(n * val_fraction))
    if n >= 2:
        n_val = min(max(n_val, 1 if val_fraction > 0 else 0), n - 1)
    perm = np.random.default_rng([int(seed) % (1 << 63), 2]).permutation(n)
    val = sorted(ids[j] for j in perm[:n_val])
    train = sorted(ids[j] for j in perm[n_val:])
    _atomic_bytes(out / "gt_sets" / "train.txt", "".join(f"{i}\n" for i in train).encode())
    _atomic_bytes(out / "gt_sets" / "val.txt", "".join(f"{i}\n" for i in val).encode())
    return out

