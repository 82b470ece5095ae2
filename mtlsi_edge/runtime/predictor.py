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
from mtlsi_edge.inputs import InputSpec
from mtlsi_edge.runtime.frames import FrameError, preprocess_frame, to_bgr
from mtlsi_edge.targets import CompileOptions, TargetUnavailable, get_target
from mtlsi_edge.tasks import TaskSet
from mtlsi_edge.verify import VerificationError, check_bundle

__all__ = ["FrameError", "Predictor", "Timings", "preprocess_frame", "to_bgr"]


@dataclass
class Timings:
    """Milliseconds of the last call, per stage."""

    preprocess: float = 0.0
    inference: float = 0.0
    postprocess: float = 0.0
    extra: dict = field(default_factory=dict)


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
        spec = InputSpec.from_manifest(manifest["input"])
        self.input_size = spec.size  # (H, W)
        self.mean, self.inv_std = spec.mean_255(), spec.inv_std_255()
        self.layouts = dict(getattr(runner, "layouts", {}))
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
        manifest, folder = load_bundle(path)
        target = get_target(manifest["target"])
        ok, why = target.available()
        if not ok:
            raise TargetUnavailable(f"bundle needs target {manifest['target']}: {why}")
        opts = CompileOptions(precision=manifest["precision"],
                              device=device or manifest.get("device", "CPU"),
                              threads=threads, hint=hint)
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
        return preprocess_frame(frame, self.input_size, self.letterbox, self.mean, self.inv_std)

    def postprocess(self, raw: dict[str, np.ndarray], geom: tuple) -> dict[str, np.ndarray]:
        (top, left, nh, nw), (fh, fw) = geom
        ih, iw = self.input_size
        out = {}
        for t in self.task_set:
            a = raw[t.name][0]
            if self.layouts.get(t.name, "NCHW") == "NCHW":
                a = a.transpose(1, 2, 0)  # h×w×K (cv2 wants channels last)
            a = np.ascontiguousarray(a, dtype=np.float32)
            sh, sw = a.shape[:2]
            # Output pixel grid covers the input; crop the letterbox region, then resize.
            y0, x0 = top * sh / ih, left * sw / iw
            y1, x1 = (top + nh) * sh / ih, (left + nw) * sw / iw
            if (y0, x0, y1, x1) != (0, 0, sh, sw):
                if all(float(v).is_integer() for v in (y0, x0, y1, x1)):
                    a = a[int(y0):int(y1), int(x0):int(x1)]
                else:  # box off the 1/s grid: crop exactly at input resolution instead
                    a = cv2.resize(a, (iw, ih), interpolation=cv2.INTER_LINEAR)
                    a = a.reshape(ih, iw, -1)[top:top + nh, left:left + nw]
            if t.spec.output == "labels" and fh * fw > ih * iw:
                # Class logits are resized only up to the network's input size; labels are
                # then upscaled with nearest (the network cannot resolve finer; saves ~20 ms
                # of 40-channel resizing + argmax per megapixel).
                a = cv2.resize(a, (min(fw, iw), min(fh, ih)), interpolation=cv2.INTER_LINEAR)
                labels = t.spec.finish(a)
                out[t.name] = cv2.resize(labels, (fw, fh), interpolation=cv2.INTER_NEAREST)
                continue
            a = cv2.resize(a, (fw, fh), interpolation=cv2.INTER_LINEAR)
            if a.ndim == 2:
                a = a[:, :, None]
            out[t.name] = t.spec.finish(a)
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
