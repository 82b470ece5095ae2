"""Frames → network input: colour conversion, resize or letterbox, normalisation.

The Predictor's preprocessing, shared with the bundle's parity gate (which must feed the
compiled model exactly what the Predictor will); both import it from here, so the bundle
writer does not depend on the runtime that reads bundles.
"""

from __future__ import annotations

import cv2
import numpy as np

from mtlsi_edge.errors import MtlsiError
from mtlsi_edge.inputs import IMAGENET


class FrameError(MtlsiError, ValueError):
    """A frame the Predictor cannot use (wrong dtype, shape or channel count)."""


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


_MEAN = IMAGENET.mean_255()
_INV_STD = IMAGENET.inv_std_255()


def fit_frame(frame: np.ndarray, input_size: tuple[int, int], letterbox: bool = False
              ) -> tuple[np.ndarray, tuple]:
    """BGR/gray/BGRA uint8 frame → ``H×W×3`` BGR uint8 at ``input_size`` by resizing (or
    letterboxing), and the geometry to undo it.  All a frame-I/O bundle needs on the host."""
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
    ``input_size`` by resizing (or letterboxing), and the geometry to undo it (the host-side
    preprocessing of float-input bundles)."""
    img, geom = fit_frame(frame, input_size, letterbox)
    x = (img[:, :, ::-1].astype(np.float32) - mean) * inv_std
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None]), geom


def runner_input(frame: np.ndarray, input_size: tuple[int, int], frame_io: bool,
                 letterbox: bool = False, mean: np.ndarray = _MEAN,
                 inv_std: np.ndarray = _INV_STD) -> tuple[np.ndarray, tuple]:
    """What a bundle's model takes for ``frame``: ``1×H×W×3`` uint8 BGR for frame-I/O
    bundles (their graph normalises), else the normalised float batch; and the geometry."""
    if frame_io:
        img, geom = fit_frame(frame, input_size, letterbox)
        return np.ascontiguousarray(img[None]), geom  # a BGR view of RGB has negative strides
    return preprocess_frame(frame, input_size, letterbox, mean, inv_std)
