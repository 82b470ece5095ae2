"""Calibration sets: a deterministic subset of images, preprocessed exactly like the Predictor.

Sources (``--source``):

- a folder of images (sorted, then a seeded subset);
- a video file (every k-th frame);
- a dataset split, written ``DIR:SPLIT`` (a NYUD or PASCAL-MT folder);
- ``synth`` — SynthIndoor renders (seeded).

The set is cached as ``NAME.npy`` (``N×3×H×W`` float32, loaded with ``allow_pickle=False``)
plus ``NAME.json`` recording where every sample came from and which inputs were skipped.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mtlsi_edge.data.datasets import build_dataset
from mtlsi_edge.data.seeds import CALIBRATION_SEED
from mtlsi_edge.data.synthindoor import render_sample
from mtlsi_edge.errors import MtlsiError
from mtlsi_edge.fileio import atomic_write_bytes, atomic_write_json
from mtlsi_edge.native import quiet_native
from mtlsi_edge.runtime.capture import IMAGE_EXTS
from mtlsi_edge.runtime.predictor import preprocess_frame


class CalibrationError(MtlsiError, ValueError):
    """No usable calibration data; one line naming the source."""


@dataclass
class CalibrationSet:
    data: np.ndarray  # N×3×H×W float32, normalised
    origins: list[str]  # one entry per sample: file, "video:frame", "synth:seed"
    skipped: list[str] = field(default_factory=list)  # unreadable inputs, with the reason
    source: str = ""

    def save(self, stem: str | Path) -> Path:
        stem = Path(stem)
        buf = io.BytesIO()
        np.save(buf, self.data, allow_pickle=False)
        atomic_write_bytes(stem.with_name(stem.name + ".npy"), buf.getvalue())
        atomic_write_json(stem.with_name(stem.name + ".json"), {
            "source": self.source, "n": len(self.origins), "shape": list(self.data.shape),
            "origins": self.origins, "skipped": self.skipped})
        return stem.with_name(stem.name + ".npy")

    @classmethod
    def load(cls, path: str | Path) -> CalibrationSet:
        p = Path(path)
        p = p.with_name(p.name.removesuffix(".npy"))
        npy, meta = p.with_name(p.name + ".npy"), p.with_name(p.name + ".json")
        if not npy.is_file() or not meta.is_file():
            raise CalibrationError(f"{p}: calibration cache needs both {npy.name} and "
                                   f"{meta.name}")
        try:
            doc = json.loads(meta.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CalibrationError(f"{meta}: unreadable calibration record ({e})") from None
        keys = {"n": int, "origins": list, "skipped": list, "source": str}
        if not isinstance(doc, dict) or not all(isinstance(doc.get(k), t)
                                                for k, t in keys.items()):
            raise CalibrationError(f"{meta}: calibration record needs "
                                   f"{', '.join(keys)} (n a number, origins/skipped lists)")
        try:
            data = np.load(npy, allow_pickle=False)
        except ValueError as e:  # object arrays (pickles) and malformed files
            raise CalibrationError(f"{npy}: not a plain numeric array ({e})") from None
        if data.dtype != np.float32 or data.ndim != 4 or data.shape[1] != 3 \
                or data.shape[0] != doc["n"]:
            raise CalibrationError(f"{npy}: {data.dtype} array of shape {data.shape} does not "
                                   f"match its record (n={doc['n']}, float32 N×3×H×W)")
        return cls(data, doc["origins"], doc["skipped"], doc["source"])

    def items(self) -> list[np.ndarray]:
        """Batch-1 arrays, the form ``nncf.Dataset`` and our runners take."""
        return [self.data[i:i + 1] for i in range(len(self.data))]


def check_calibration_source(source: str) -> None:
    """Refuse, before any work, a calibration source that cannot be one: not ``synth``, a
    cache (``STEM`` / ``STEM.npy`` whose record loads), a folder, a video file or
    ``DIR:SPLIT``."""
    if source == "synth":
        return
    if source.endswith(".npy") or Path(source + ".npy").is_file():
        CalibrationSet.load(source.removesuffix(".npy"))
        return
    if os.path.isdir(source) or os.path.isfile(source):
        return
    if ":" in source and os.path.isdir(source.rsplit(":", 1)[0]):
        return
    raise CalibrationError(f"{source}: not 'synth', a calibration cache, a folder, a video or "
                           f"DIR:SPLIT")


def build_calibration_set(source: str, n: int, size: tuple[int, int], seed: int = 0,
                          every_k: int = 10) -> CalibrationSet:
    """Collect ``n`` samples from ``source`` at the model input ``size`` (H, W)."""
    if n < 1:
        raise CalibrationError(f"calibration size must be ≥ 1, got {n}")
    frames: list[np.ndarray] = []
    origins: list[str] = []
    skipped: list[str] = []
    with quiet_native():  # FFmpeg / libpng lines on broken inputs stay out of the output
        if source == "synth":
            for i in range(n):
                s = render_sample(CALIBRATION_SEED + seed * 100_003 + i, size=size)
                frames.append(s.image_rgb[:, :, ::-1])
                origins.append(f"synth:{CALIBRATION_SEED + seed * 100_003 + i}")
        elif ":" in source and os.path.isdir(source.rsplit(":", 1)[0]):
            root, split = source.rsplit(":", 1)
            ds = build_dataset(root, split, _any_task_set(root))
            for i in np.random.default_rng(seed).permutation(len(ds))[:n]:
                p = ds._files[int(i)]["image"][0]
                img = cv2.imread(p, cv2.IMREAD_COLOR)
                if img is None:
                    skipped.append(f"{p}: unreadable image")
                    continue
                frames.append(img)
                origins.append(p)
        elif os.path.isdir(source):
            files = sorted(p for p in Path(source).iterdir() if p.suffix.lower() in IMAGE_EXTS)
            if not files:
                raise CalibrationError(f"{source}: no images in folder")
            for i in np.random.default_rng(seed).permutation(len(files)):
                if len(frames) == n:
                    break
                img = cv2.imread(str(files[i]), cv2.IMREAD_COLOR)
                if img is None:
                    skipped.append(f"{files[i]}: unreadable image")
                    continue
                frames.append(img)
                origins.append(str(files[i]))
        elif os.path.isfile(source):
            cap = cv2.VideoCapture(source)
            if not cap.isOpened():
                raise CalibrationError(f"{source}: not a readable video")
            idx = 0
            while len(frames) < n:
                ok, img = cap.read()
                if not ok:
                    break
                if idx % every_k == 0:
                    frames.append(img)
                    origins.append(f"{source}:frame{idx}")
                idx += 1
            cap.release()
        else:
            raise CalibrationError(f"{source}: not 'synth', a folder, a video or DIR:SPLIT")
    if not frames:
        raise CalibrationError(f"{source}: no usable calibration images")
    data = np.concatenate([preprocess_frame(f, size)[0] for f in frames])
    return CalibrationSet(data.astype(np.float32), origins, skipped, source)


def _any_task_set(root: str) -> str:
    return "pascal" if os.path.isdir(os.path.join(root, "JPEGImages")) else "nyud"
