"""Predictor: BGR uint8 frames in, per-task outputs at frame size out — for every target.

Frame-I/O bundles (manifest ``"io": "frame"``, the default for torch, ONNX Runtime and
OpenVINO) normalise and argmax inside the compiled model: the host converts the frame to BGR,
resizes or letterboxes it to the input size, and resizes each output back to the frame
(nearest for labels; normals re-normalised).  Float-input bundles (TensorRT, schema 2) get the
ImageNet normalisation and the argmax on the host, the same code for every Runner.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mtlsi_edge.backends import get_backend
from mtlsi_edge.bundle import load_bundle
from mtlsi_edge.inputs import InputSpec
from mtlsi_edge.runtime.frames import FrameError, preprocess_frame, runner_input, to_bgr
from mtlsi_edge.signing import check_signature, trusted_keys
from mtlsi_edge.tasks import TaskSet
from mtlsi_edge.verify import (
    CheckReport,
    VerificationError,
    check_bundle,
    check_io,
    load_timing_frame,
)

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

    def __init__(self, runner, manifest: dict, letterbox: bool = False,
                 folder: Path | None = None, runtime_version: str = "?"):
        self.runner = runner
        self.manifest = manifest
        #: The bundle folder (None for a Predictor built around a runner by hand).
        self.folder = None if folder is None else Path(folder)
        #: The version of the backend runtime that runs it on this machine.
        self.runtime_version = runtime_version
        self.task_set = TaskSet.from_dict(manifest["task_set"])
        spec = InputSpec.from_manifest(manifest["input"])
        self.input_size = spec.size  # (H, W)
        self.mean, self.inv_std = spec.mean_255(), spec.inv_std_255()
        self.layouts = dict(getattr(runner, "layouts", {}))
        # Frame-I/O bundles (manifest "io": "frame") take the uint8 BGR frame and emit class
        # labels: the host side is one resize in, one resize per output out.
        self.frame_io = manifest.get("io") == "frame"
        self.letterbox = letterbox
        self.timings = Timings()
        self._timing: np.ndarray | None = None

    @classmethod
    def from_bundle(cls, path: str | Path, device: str | None = None,
                    threads: int | None = None, hint: str = "latency",
                    letterbox: bool = False, verify: bool = False,
                    trust: list[str | Path] | None = None) -> Predictor:
        """Load and verify a bundle (checksums, manifest, the model file's outputs).

        ``trust``: public keys (PEM files or folders of them; default: the
        ``MTLSI_EDGE_TRUST`` environment variable); when any is given, a bundle not signed by
        one of them — or edited after signing — is refused (:mod:`mtlsi_edge.signing`).
        ``predictor.signature`` says what was found.

        ``verify``: also re-prove the bundle on this machine (:func:`mtlsi_edge.verify.
        check_bundle`); raises :class:`~mtlsi_edge.verify.VerificationError` when it fails.
        The report is kept in ``predictor.check``.
        """
        keys = trusted_keys(trust)
        manifest, folder = load_bundle(path, trust=keys)
        backend = get_backend(manifest["target"])
        backend.require(f"bundle needs target {manifest['target']}")
        opts = backend.load_options(manifest, device, threads, hint)
        runner = backend.load(folder, manifest, opts)
        check_io(runner, manifest, folder)
        pred = cls(runner, manifest, letterbox, folder, backend.runtime_version())
        pred.signature = check_signature(folder, manifest, keys)
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
        """Frame → the runner's input (frame-I/O bundles: ``1×H×W×3`` uint8 BGR; otherwise
        ``1×3×H×W`` float32, normalised) and the geometry to undo (crop box)."""
        return runner_input(frame, self.input_size, self.frame_io, self.letterbox, self.mean,
                            self.inv_std)

    def timing_frame(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """The frame compute latency is timed on (a SynthIndoor render stored in the bundle at
        compile time: :func:`mtlsi_edge.verify.load_timing_frame`), at ``size`` (default: the
        input size; resized with OpenCV when it differs)."""
        if self.folder is None or not self.manifest.get("reference"):
            raise FrameError("this Predictor has no bundle reference frames to time on")
        if self._timing is None:
            self._timing = load_timing_frame(self.folder / self.manifest["reference"]["file"])
        h, w = size or self.input_size
        f = self._timing
        if f.shape[:2] != (h, w):
            f = cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA if h < f.shape[0]
                           else cv2.INTER_LINEAR)
        return f

    def sample_input(self) -> np.ndarray:
        """What the runner takes for :meth:`timing_frame` at the input size (to time
        compute)."""
        return self.preprocess(self.timing_frame())[0]

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
            if t.spec.output == "labels" and fh * fw > ih * iw:
                # Class logits are resized only up to the network's input size; labels are
                # then upscaled with nearest (the network cannot resolve finer; saves ~20 ms
                # of 40-channel resizing + argmax per megapixel).
                a = cv2.resize(a, (min(fw, iw), min(fh, ih)), interpolation=cv2.INTER_LINEAR)
                out[t.name] = cv2.resize(t.spec.finish(a), (fw, fh),
                                         interpolation=cv2.INTER_NEAREST)
                continue
            if (sh, sw) != (fh, fw):
                a = cv2.resize(a, (fw, fh), interpolation=cv2.INTER_LINEAR)
            if a.ndim == 2:
                a = a[:, :, None]
            out[t.name] = t.spec.finish(a)
        return out

    def predict(self, source, **kwargs):
        """``Iterator[Prediction]`` over every frame of ``source`` (an image, folder, glob,
        video, camera, stream or pipeline; ``options=SourceOptions(...)``), pipelined — the
        code path of ``mtlsi-edge predict``
        (:func:`mtlsi_edge.runtime.predict.iter_predictions`, which lists the keywords)."""
        from mtlsi_edge.runtime.predict import iter_predictions

        return iter_predictions(self, source, **kwargs)

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


def check_bundle_folder(bundle: str | Path, device: str | None = None,
                        trust: list[str | Path] | None = None) -> CheckReport:
    """Load a bundle (a folder or its manifest) for ``device`` — refused unless signed by a
    ``trust`` key when any is set — and re-prove it on this machine
    (:func:`mtlsi_edge.verify.check_bundle`; ``mtlsi-edge check``)."""
    predictor = Predictor.from_bundle(bundle, device=device, trust=trust)
    folder = Path(bundle) if Path(bundle).is_dir() else Path(bundle).parent
    rep = check_bundle(predictor, folder)
    rep.signature = predictor.signature.describe()
    return rep
