"""The named ranges of SynthIndoor render seeds, and the frames the build half renders from them.

Each use of rendered frames has its own seed range so that none sees another's pictures:
training renders start at 0, calibration at :data:`CALIBRATION_SEED`, parity gates at
:data:`GATE_SEED`, latency timing at :data:`TIMING_SEED` and the export parity report at
:data:`PARITY_SEED`.  The gate frames and the timing
frame are rendered once, at compile time, and stored in the bundle
(``reference.safetensors``): the device reads them from there and never renders.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from mtlsi_edge.data.synthindoor import render_sample

#: Held-out frames of the parity gate and the on-device self-check.
GATE_SEED = 20_000_000
GATE_FRAMES = 6
#: The render compute latency is timed on.  A graph's cost can depend on the picture
#: (segmentation labels by ``export.bilinear_argmax`` blend only the pixels on label edges), so
#: it is timed on a scene, not on noise (all edges) or flat grey (none).
TIMING_SEED = 20_000_700
#: Calibration renders (never seen by a gate).
CALIBRATION_SEED = 10_000_000
#: The renders ``export`` compares ONNX Runtime with PyTorch on.
PARITY_SEED = 1234


def render_bgr(seed: int, size: tuple[int, int]) -> np.ndarray:
    """The SynthIndoor render of ``seed`` as a BGR uint8 ``H×W×3`` frame at ``size``."""
    rgb = render_sample(seed, size=(size[0], size[1])).image_rgb
    if rgb.shape[:2] != tuple(size):
        rgb = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(rgb[:, :, ::-1])


def gate_frames(size: tuple[int, int], n: int = GATE_FRAMES) -> np.ndarray:
    """``n`` held-out SynthIndoor renders as BGR uint8 frames at ``size`` (``n×H×W×3``)."""
    return np.ascontiguousarray(np.stack([render_bgr(GATE_SEED + i, size) for i in range(n)]))


@functools.lru_cache(maxsize=4)
def timing_frame(size: tuple[int, int]) -> np.ndarray:
    """The BGR uint8 ``H×W×3`` frame of :data:`TIMING_SEED` at ``size`` (read-only, cached)."""
    frame = render_bgr(TIMING_SEED, tuple(size))
    frame.flags.writeable = False
    return frame
