"""How each task kind is trained and scored against ground truth (the build half's side of a
:class:`~mtlsi_edge.kinds.TaskKind`): loss, metric accumulator, torch activation and the
deep-supervision downsampling of ground truth, keyed by the kind's name.

The runtime half knows a kind by its :class:`~mtlsi_edge.kinds.TaskKind` record (numpy only);
everything torch-shaped about it lives here, so a device never imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mtlsi_edge import losses, metrics
from mtlsi_edge.kinds import KINDS, TaskKind


# -- downsampling of ground truth for deep supervision -------------------------------------------
def _nearest_downsample(gt: Tensor, factor: int) -> Tensor:
    return gt[..., ::factor, ::factor]


def _maxpool_downsample(gt: Tensor, factor: int) -> Tensor:
    # Nearest sampling would drop most one-pixel boundary lines.
    return F.max_pool2d(gt, factor, ceil_mode=True)


# -- torch activations (deployed graph) ----------------------------------------------------------
def _argmax(p: Tensor) -> Tensor:
    return p.argmax(1)


def _clamp0(p: Tensor) -> Tensor:
    return p.clamp_min(0.0)


def _l2norm(p: Tensor) -> Tensor:
    return p / p.norm(dim=1, keepdim=True).clamp_min(1e-6)


def _sigmoid(p: Tensor) -> Tensor:
    return p.sigmoid()


def _boundary_metric_args(task) -> dict:
    # A task without a tolerance leaves it to BoundaryMetric, which refuses it by name.
    return {"max_dist": float(task.max_dist)} if task.max_dist > 0 else {}


@dataclass(frozen=True)
class Objective:
    """How one kind is trained and evaluated.

    loss: ``(raw head output, gt) -> scalar`` (:mod:`mtlsi_edge.losses`).
    metric: accumulator class (:mod:`mtlsi_edge.metrics`), built as
      ``metric(task, **metric_args(task))``.
    activate: torch, raw head output ``B×K×h×w`` → prediction (labels ``B×h×w`` for labels).
    aux_downsample: ground truth ``…×H×W`` → ``1/factor`` resolution for the deep-supervision
      outputs (nearest sampling; max-pooling for one-pixel boundaries).
    monitor: cheap accumulator evaluated during training next to ``metric`` (or ``None``).
    """

    loss: Callable[[Tensor, Tensor], Tensor]
    metric: type
    activate: Callable[[Tensor], Tensor]
    aux_downsample: Callable[[Tensor, int], Tensor] = _nearest_downsample
    metric_args: Callable[[Any], dict] = field(default=lambda task: {})
    monitor: type | None = None

    def make_metric(self, task) -> Any:
        """A fresh ``metric`` accumulator for ``task``."""
        return self.metric(task, **self.metric_args(task))


#: kind name → objective; the build half's only table keyed by kind (same keys as KINDS).
OBJECTIVES: dict[str, Objective] = {
    "segmentation": Objective(losses.segmentation_loss, metrics.SegmentationMetric, _argmax),
    "depth": Objective(losses.depth_loss, metrics.DepthMetric, _clamp0),
    "normals": Objective(losses.normals_loss, metrics.NormalsMetric, _l2norm),
    "boundary": Objective(losses.boundary_loss, metrics.BoundaryMetric, _sigmoid,
                          aux_downsample=_maxpool_downsample,
                          metric_args=_boundary_metric_args, monitor=metrics.BoundaryMonitor),
    "saliency": Objective(losses.saliency_loss, metrics.SaliencyMetric, _sigmoid),
}


def objective(kind: str) -> Objective:
    """The objective of kind ``kind``, with a one-line error listing the known ones."""
    try:
        return OBJECTIVES[kind]
    except KeyError:
        raise KeyError(f"unknown task kind {kind!r}; known: {', '.join(OBJECTIVES)}") from None


def task_loss(task, pred: Tensor, gt: Tensor) -> Tensor:
    """Loss of a prediction ``B×K×H×W`` against ground truth at the same size."""
    return objective(task.kind).loss(pred, gt)


def task_metric(task, boundary_flavour: str | None = None) -> Any:
    """A fresh metric accumulator (``update(pred, gt)``, ``compute() -> dict``);
    ``boundary_flavour`` picks the SEISM reader of boundary tasks (``metrics.
    BOUNDARY_FLAVOURS``; default: the metric's own)."""
    obj = objective(task.kind)
    if boundary_flavour is not None and obj.metric is metrics.BoundaryMetric:
        return obj.metric(task, **obj.metric_args(task), flavour=boundary_flavour)
    return obj.make_metric(task)


def task_activate(task, pred: Tensor) -> Tensor:
    """Raw head output ``B×K×H×W`` (torch) → the task's prediction."""
    return objective(task.kind).activate(pred)


def gt_to_tensor(kind: TaskKind, a: np.ndarray) -> Tensor:
    """Ground truth numpy ``H×W[×C]`` → the tensor the loss takes (``kind.gt_dtype``)."""
    if not kind.gt_channels:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=kind.gt_dtype))
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(a, dtype=kind.gt_dtype))


assert set(OBJECTIVES) == set(KINDS), "every task kind needs an objective"
