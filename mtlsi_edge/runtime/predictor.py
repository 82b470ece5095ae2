"""Predictor: BGR uint8 frames in, per-task outputs at frame size out — for every target.

Preprocessing (colour conversion, resize or letterbox to the bundle's input size, ImageNet
normalisation) and postprocessing (resize each output back to the frame, argmax for
segmentation, re-normalise normals) are the same code whatever Runner sits in the middle.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mtlsi_edge.bundle import check_io, load_bundle
from mtlsi_edge.errors import MtlsiError
from mtlsi_edge.targets import get_target
from mtlsi_edge.tasks import TaskSet


class FrameError(MtlsiError, ValueError):
    """A frame the Predictor cannot use (wrong dtype, shape or channel count)."""


@dataclass
class Timings:
    """Milliseconds of the last call, per stage."""

    preprocess: float = 0.0
    inference: float = 0.0
    postprocess: float = 0.0
    extra: dict = field(default_factory=dict)


def to_bgr(frame: np.ndarray) -> np.ndarray:
    """Accept H×W gray, H×W×1, H×W×3 BGR or H×W×4 BGRA uint8; return H×W×3 BGR uint8."""
    if not isinstance(frame, np.ndarray):
        raise FrameError(f"frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise FrameError(f"frame dtype must be uint8, got {frame.dtype}")
    if frame.ndim in (2, 3) and 0 in frame.shape[:2]:  # cv2.cvtColor asserts on empty input
        raise FrameError(f"frame of {frame.shape[0]}×{frame.shape[1]} pixels is too small")
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        return cv2.cvtColor(frame.reshape(frame.shape[:2]), cv2.COLOR_GRAY2BGR)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return frame
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    raise FrameError(f"frame shape {frame.shape} is not H×W, H×W×1, H×W×3 or H×W×4")


_MEAN = np.asarray((0.485, 0.456, 0.406), np.float32) * 255.0
_INV_STD = 1.0 / (np.asarray((0.229, 0.224, 0.225), np.float32) * 255.0)


def fit_frame(frame: np.ndarray, input_size: tuple[int, int], letterbox: bool = False
              ) -> tuple[np.ndarray, tuple]:
    """BGR/gray/BGRA uint8 frame → ``H×W×3`` BGR uint8 at ``input_size`` by resizing (or
    letterboxing), and the geometry to undo it."""
    bgr = to_bgr(frame)
    fh, fw = bgr.shape[:2]
    if fh < 2 or fw < 2:
        raise FrameError(f"frame of {fh}×{fw} pixels is too small")
    ih, iw = input_size
    if letterbox:
        s = min(ih / fh, iw / fw)
        nh, nw = max(1, round(fh * s)), max(1, round(fw * s))
        img = np.zeros((ih, iw, 3), np.uint8)
        top, left = (ih - nh) // 2, (iw - nw) // 2
        img[top:top + nh, left:left + nw] = cv2.resize(bgr, (nw, nh),
                                                       interpolation=cv2.INTER_AREA)
        box = (top, left, nh, nw)
    else:
        interp = cv2.INTER_AREA if fh > ih else cv2.INTER_LINEAR
        img = bgr if (fh, fw) == (ih, iw) else cv2.resize(bgr, (iw, ih), interpolation=interp)
        box = (0, 0, ih, iw)
    return img, (box, (fh, fw))


def preprocess_frame(frame: np.ndarray, input_size: tuple[int, int], letterbox: bool = False,
                     mean: np.ndarray = _MEAN, inv_std: np.ndarray = _INV_STD
                     ) -> tuple[np.ndarray, tuple]:
    """BGR/gray/BGRA uint8 frame → ``1×3×H×W`` float32 (RGB, ImageNet-normalised) at
    ``input_size`` by resizing (or letterboxing), and the geometry to undo it."""
    img, geom = fit_frame(frame, input_size, letterbox)
    x = (img[:, :, ::-1].astype(np.float32) - mean) * inv_std
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None]), geom


_ONES3 = np.ones((1, 3), np.float32)


def unit_normals(a: np.ndarray) -> np.ndarray:
    """``H×W×3`` float32 → unit vectors (bilinear resizing shortens them).  OpenCV's
    vectorised ops: the numpy equivalent cost ~7 ms at 640×480 against ~1 ms (measured)."""
    n2 = cv2.transform(cv2.multiply(a, a), _ONES3)  # H×W sum of squares
    inv = cv2.pow(np.maximum(n2, 1e-12, out=n2), -0.5)
    return cv2.multiply(a, cv2.merge([inv, inv, inv]))


#: Per kind: the H×W×K output resized to the frame → the final per-pixel prediction.
FINISH = {
    "segmentation": lambda a: a.argmax(-1).astype(np.uint8),
    "depth": lambda a: np.maximum(a[:, :, 0], 0.0),
    "normals": lambda a: unit_normals(np.ascontiguousarray(a, np.float32)),
    "boundary": lambda a: np.clip(a[:, :, 0], 0.0, 1.0),
    "saliency": lambda a: np.clip(a[:, :, 0], 0.0, 1.0),
}


class Predictor:
    """``Predictor.from_bundle(path)(frame) -> {task: array at frame size}``.

    Outputs: segmentation-like tasks ``H×W`` uint8 class labels; ``depth`` ``H×W`` float32
    metres; ``normals`` ``H×W×3`` float32 unit vectors (camera frame: x right, y down, z
    forward); ``boundary`` / ``saliency`` ``H×W`` float32 probabilities.
    """

    def __init__(self, runner, manifest: dict, letterbox: bool = False):
        self.runner = runner
        self.manifest = manifest
        self.task_set = TaskSet.from_dict(manifest["task_set"])
        self.input_size = tuple(manifest["input"]["size"])  # (H, W)
        self.mean = np.asarray(manifest["input"]["mean"], np.float32) * 255.0
        self.inv_std = 1.0 / (np.asarray(manifest["input"]["std"], np.float32) * 255.0)
        self.layouts = dict(getattr(runner, "layouts", {}))
        # Frame-I/O bundles (manifest "io": "frame") take the uint8 BGR frame and emit class
        # labels: the host side is one resize in, one resize per output out.
        self.frame_io = manifest.get("io") == "frame"
        self.letterbox = letterbox
        self.timings = Timings()

    @classmethod
    def from_bundle(cls, path: str | Path, device: str | None = None,
                    threads: int | None = None, hint: str = "latency",
                    letterbox: bool = False, verify: bool = False) -> Predictor:
        """Load and verify a bundle (checksums, manifest, the model file's outputs).

        ``verify``: also re-prove the bundle on this machine (:func:`mtlsi_edge.verify.
        check_bundle`); raises :class:`~mtlsi_edge.verify.VerificationError` when it fails.
        The report is kept in ``predictor.check``.
        """
        from mtlsi_edge.verify import VerificationError, check_bundle

        manifest, folder = load_bundle(path)
        target = get_target(manifest["target"])
        target.require(f"bundle needs target {manifest['target']}")
        opts = target.load_options(manifest, device, threads, hint)
        runner = target.load(folder, manifest, opts)
        check_io(runner, manifest, folder)
        pred = cls(runner, manifest, letterbox)
        pred.check = None
        if verify:
            pred.check = check_bundle(pred, folder)
            if not pred.check.passed:
                raise VerificationError(
                    f"{folder}: fails its self-check on this machine "
                    f"({'; '.join(pred.check.result.failures)}); mtlsi-edge check {folder} "
                    f"shows the table")
        return pred

    @property
    def target(self) -> str:
        return self.manifest["target"]

    @property
    def precision(self) -> str:
        return self.manifest["precision"]

    # -- stages ---------------------------------------------------------------------------
    def preprocess(self, frame: np.ndarray) -> tuple[np.ndarray, tuple]:
        """Frame → ``1×3×H×W`` float32 batch and the geometry to undo (crop box)."""
        if self.frame_io:
            img, geom = fit_frame(frame, self.input_size, self.letterbox)
            return img[None], geom
        return preprocess_frame(frame, self.input_size, self.letterbox, self.mean, self.inv_std)

    def sample_input(self) -> np.ndarray:
        """What the runner takes, for a mid-grey frame at the input size (to time compute)."""
        return self.preprocess(np.full((*self.input_size, 3), 128, np.uint8))[0]

    def postprocess(self, raw: dict[str, np.ndarray], geom: tuple) -> dict[str, np.ndarray]:
        (top, left, nh, nw), (fh, fw) = geom
        ih, iw = self.input_size
        out = {}
        for t in self.task_set:
            a = raw[t.name][0]
            if self.layouts.get(t.name, "NCHW") == "NCHW":
                a = a.transpose(1, 2, 0)  # h×w×K (cv2 wants channels last)
            labels = a.dtype.kind in "iu"  # class labels from the graph (frame-I/O bundles)
            a = np.ascontiguousarray(a, dtype=np.uint8 if labels else np.float32)
            sh, sw = a.shape[:2]
            # Output pixel grid covers the input; crop the letterbox region, then resize.
            y0, x0 = top * sh / ih, left * sw / iw
            y1, x1 = (top + nh) * sh / ih, (left + nw) * sw / iw
            if (y0, x0, y1, x1) != (0, 0, sh, sw):
                if all(float(v).is_integer() for v in (y0, x0, y1, x1)):
                    a = a[int(y0):int(y1), int(x0):int(x1)]
                else:  # box off the 1/s grid: crop exactly at input resolution instead
                    a = cv2.resize(a, (iw, ih), interpolation=cv2.INTER_NEAREST if labels
                                   else cv2.INTER_LINEAR)
                    a = a.reshape(ih, iw, -1)[top:top + nh, left:left + nw]
            if labels:
                out[t.name] = cv2.resize(a.reshape(a.shape[:2]), (fw, fh),
                                         interpolation=cv2.INTER_NEAREST)
                continue
            if t.kind == "segmentation" and fh * fw > ih * iw:
                # Class logits are resized only up to the network's input size; labels are
                # then upscaled with nearest (the network cannot resolve finer; saves ~20 ms
                # of 40-channel resizing + argmax per megapixel).
                a = cv2.resize(a, (min(fw, iw), min(fh, ih)), interpolation=cv2.INTER_LINEAR)
                labels = FINISH[t.kind](a)
                out[t.name] = cv2.resize(labels, (fw, fh), interpolation=cv2.INTER_NEAREST)
                continue
            if (sh, sw) != (fh, fw):
                a = cv2.resize(a, (fw, fh), interpolation=cv2.INTER_LINEAR)
            if a.ndim == 2:
                a = a[:, :, None]
            out[t.name] = FINISH[t.kind](a)
        return out

    def __call__(self, frame: np.ndarray) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        x, geom = self.preprocess(frame)
        t1 = time.perf_counter()
        raw = self.runner(x)
        t2 = time.perf_counter()
        out = self.postprocess(raw, geom)
        t3 = time.perf_counter()
        self.timings = Timings(1e3 * (t1 - t0), 1e3 * (t2 - t1), 1e3 * (t3 - t2))
        return out
