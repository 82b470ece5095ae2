"""Task kinds as data: everything the runtime needs to know about *what* a task predicts, one
record per kind — numpy and OpenCV only, so a device imports it without the build half.

A :class:`~mtlsi_edge.tasks.Task` names its kind by string (``task.kind``, what checkpoints and
bundle manifests store) and reaches the record through ``task.spec``.  The Predictor (finish),
the overlay (view), the parity gate and the self-check (agreement measure, thresholds) and the
data pipeline (augmentation fields) read the record; how a kind is trained and scored against
ground truth (loss, metric, activation in torch) is the build half's
:mod:`mtlsi_edge.objectives`, keyed by the same name.  Nothing else in the package branches on
a task's kind.  A new kind is one :class:`TaskKind` in :data:`KINDS` plus one
:class:`~mtlsi_edge.objectives.Objective` (docs/design.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from mtlsi_edge.inputs import IGNORE_INDEX


@dataclass(frozen=True)
class TaskKind:
    """How one kind of dense task is deployed, shown and checked (and augmented).

    name: the kind's string (``Task.kind``).
    output: what the finished prediction is — ``labels`` (``H×W`` class index, the head emits
      ``K`` logits), ``metres``, ``unit_vectors`` (``H×W×3``) or ``probability``.
    deploy_activated: whether the deployed graph applies the activation (segmentation emits
      logits: argmax after upsampling, in postprocessing).
    finish: numpy, a deployed output resized to the frame (``H×W×K``, channels last) → the
      Predictor's final prediction.
    gate_finish: numpy, deployed outputs ``N×K×h×w`` → what the parity gate compares.
    measure: parity-gate agreement of two ``gate_finish`` results; ``measure_name``, ``unit``,
      ``higher_is_better`` describe it and ``gate_thresholds`` (per precision) bound it.
    parity_score: that agreement → a 0..100 score (100 = identical) for ``tune``.
    pad_value: fill of the ground truth when a sample is padded.
    gt_dtype / gt_channels: ground-truth tensor after ``ToTensor`` — ``int64 H×W`` labels or
      ``float32 C×H×W`` maps (``H×W`` arrays gain a channel axis, ``H×W×C`` are transposed).
    flip_negates_x: a horizontal flip negates channel 0 (the x component of normals).
    zoom_divides: values are divided by the zoom factor when the image is rescaled (depth: a
      bigger image = a closer camera).
    needs_max_dist: tasks of this kind carry a ``max_dist`` evaluation tolerance.
    view: the demo overlay view it feeds (``seg``, ``depth``, ``normals``, ``edges``) or ``""``.
    gate_range: the thresholds a gate of this measure accepts, ``(low, high)`` inclusive:
      outside it a gate could never fail (or never pass), so bundles and ``--gate`` refuse it.
    """

    name: str
    output: str
    deploy_activated: bool
    finish: Callable[[np.ndarray], np.ndarray]
    gate_finish: Callable[[np.ndarray], np.ndarray]
    measure: Callable[[np.ndarray, np.ndarray], float]
    measure_name: str
    unit: str
    higher_is_better: bool
    gate_thresholds: dict[str, float]
    parity_score: Callable[[float], float]
    pad_value: float
    gt_dtype: str = "float32"
    gt_channels: bool = True
    flip_negates_x: bool = False
    zoom_divides: bool = False
    needs_max_dist: bool = False
    view: str = ""
    gate_range: tuple[float, float] = (0.0, float("inf"))

    def threshold_problem(self, value: object) -> str | None:
        """Why ``value`` cannot be a gate threshold of this kind (None when it can)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {value!r}"
        lo, hi = self.gate_range
        if not (math.isfinite(value) and lo <= value <= hi):
            return (f"{self.measure_name} threshold {value!r}{self.unit} is outside "
                    f"{lo:g}..{hi:g}{self.unit}, where a gate can fail")
        return None


# -- numpy finish (Predictor, channels last) -----------------------------------------------------
def _labels_last(a: np.ndarray) -> np.ndarray:
    return a.argmax(-1).astype(np.uint8)


def _depth_last(a: np.ndarray) -> np.ndarray:
    return np.maximum(a[:, :, 0], 0.0)


_ONES3 = np.ones((1, 3), np.float32)


def _unit_last(a: np.ndarray) -> np.ndarray:
    # OpenCV's vectorised ops: numpy's norm cost ~7 ms at 640×480 against ~1 ms (measured).
    a = np.ascontiguousarray(a, np.float32)
    n2 = cv2.transform(cv2.multiply(a, a), _ONES3)  # H×W sum of squares
    inv = cv2.pow(np.maximum(n2, 1e-12, out=n2), -0.5)
    return cv2.multiply(a, cv2.merge([inv, inv, inv]))


def _prob_last(a: np.ndarray) -> np.ndarray:
    return np.clip(a[:, :, 0], 0.0, 1.0)


# -- numpy finish of the parity gate (N×K×h×w) ---------------------------------------------------
def _labels_first(a: np.ndarray) -> np.ndarray:
    return a.argmax(1).astype(np.uint8)


def _unit_first(a: np.ndarray) -> np.ndarray:
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-6)


def _channel0(a: np.ndarray) -> np.ndarray:
    return a[:, 0]


# -- parity-gate agreement measures --------------------------------------------------------------
def label_agreement(ref: np.ndarray, got: np.ndarray) -> float:
    """% of pixels with the same label."""
    return float((ref == got).mean() * 100.0)


def absrel_difference(ref: np.ndarray, got: np.ndarray) -> float:
    """Mean ``|got − ref| / ref`` over pixels with ``ref > 1 mm`` (mean abs diff if none)."""
    valid = ref > 1e-3
    if not valid.any():
        return float(np.abs(got - ref).mean())
    return float((np.abs(got[valid] - ref[valid]) / ref[valid]).mean())


def angle_difference(ref: np.ndarray, got: np.ndarray) -> float:
    """Mean angle (degrees) between ``N×3×…`` vectors after normalising both."""
    a = ref / np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), 1e-6)
    b = got / np.maximum(np.linalg.norm(got, axis=1, keepdims=True), 1e-6)
    # 2·asin(|a−b|/2) is exact for small angles where arccos(a·b) loses all precision.
    chord = np.clip(np.linalg.norm(a - b, axis=1) / 2, 0.0, 1.0)
    return float(np.degrees(2 * np.arcsin(chord)).mean())


def binary_f(ref: np.ndarray, got: np.ndarray) -> float:
    """F-score (%) of the two maps binarised at 0.5 (100 when both are empty)."""
    a, b = ref >= 0.5, got >= 0.5
    tp = float(np.logical_and(a, b).sum())
    denom = float(a.sum() + b.sum())
    return 100.0 if denom == 0 else 200.0 * tp / denom


def _same(v: float) -> float:
    return v


def _absrel_score(v: float) -> float:
    return 100.0 * (1.0 - v)


def _angle_score(v: float) -> float:
    return 100.0 * (1.0 - v / 90.0)


# Gate thresholds per precision: chosen from measurements on two CPUs (docs/trust.md); each
# sits several times the observed spread of a correct artifact away from it, and far from the
# broken OpenVINO INT8 build (79.7 % labels, 13.1° normals).
_PROB_GATE = {"fp32": 99.0, "fp16": 97.0, "int8": 85.0}

SEGMENTATION = TaskKind(
    name="segmentation", output="labels",
    deploy_activated=False, finish=_labels_last, gate_finish=_labels_first,
    measure=label_agreement, measure_name="label_agree", unit="%", higher_is_better=True,
    gate_thresholds={"fp32": 99.9, "fp16": 99.0, "int8": 93.0}, parity_score=_same,
    gate_range=(50.0, 100.0),
    pad_value=IGNORE_INDEX, gt_dtype="int64", gt_channels=False, view="seg",
)
DEPTH = TaskKind(
    name="depth", output="metres",
    deploy_activated=True, finish=_depth_last, gate_finish=_channel0,
    measure=absrel_difference, measure_name="absrel_diff", unit="", higher_is_better=False,
    gate_thresholds={"fp32": 0.001, "fp16": 0.01, "int8": 0.05}, parity_score=_absrel_score,
    gate_range=(1e-7, 0.5),
    pad_value=0.0, zoom_divides=True, view="depth",
)
NORMALS = TaskKind(
    name="normals", output="unit_vectors",
    deploy_activated=True, finish=_unit_last, gate_finish=_unit_first,
    measure=angle_difference, measure_name="angle_deg", unit="°", higher_is_better=False,
    gate_thresholds={"fp32": 0.1, "fp16": 1.0, "int8": 4.0}, parity_score=_angle_score,
    gate_range=(1e-6, 45.0),
    pad_value=0.0, flip_negates_x=True, view="normals",
)
BOUNDARY = TaskKind(
    name="boundary", output="probability",
    deploy_activated=True, finish=_prob_last, gate_finish=_channel0,
    measure=binary_f, measure_name="f_binary", unit="%", higher_is_better=True,
    gate_thresholds=dict(_PROB_GATE), parity_score=_same, gate_range=(50.0, 100.0),
    pad_value=IGNORE_INDEX, needs_max_dist=True,
    view="edges",
)
SALIENCY = TaskKind(
    name="saliency", output="probability",
    deploy_activated=True, finish=_prob_last, gate_finish=_channel0,
    measure=binary_f, measure_name="f_binary", unit="%", higher_is_better=True,
    gate_thresholds=dict(_PROB_GATE), parity_score=_same, gate_range=(50.0, 100.0),
    pad_value=IGNORE_INDEX,
)

#: kind name → record; the only table keyed by kind.
KINDS: dict[str, TaskKind] = {k.name: k for k in (SEGMENTATION, DEPTH, NORMALS, BOUNDARY,
                                                  SALIENCY)}


def get_kind(name: str) -> TaskKind:
    """The record of kind ``name``, with a one-line error listing the known ones."""
    try:
        return KINDS[name]
    except KeyError:
        raise KeyError(f"unknown task kind {name!r}; known: {', '.join(KINDS)}") from None

