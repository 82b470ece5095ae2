"""Per-task accuracy on a held-out split: of a checkpoint (eager), of a compiled bundle, of any
inference function.

Everything but the eager path is scored through :class:`mtlsi_edge.runtime.predictor.Predictor`
(its preprocessing, its postprocessing to the image size) into the pooled metrics of
``mtlsi_edge.metrics``: a compiled bundle (``mtlsi-edge eval --bundle``), NNCF's candidate
models during accuracy control, FP32, INT8 and pruned models all take one code path.

``Scoring`` says how: ``fast`` scores boundaries with the cheap F-measure of
:class:`~mtlsi_edge.metrics.BoundaryMonitor` (reported under the task's metric name: for
ranking candidates against each other, never as a result), ``workers`` spreads SEISM's
per-image boundary matching over processes while the main process runs inference.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtlsi_edge.data.datasets import build_dataset
from mtlsi_edge.export import MEAN, STD
from mtlsi_edge.metrics import BoundaryMetric, BoundaryMonitor
from mtlsi_edge.objectives import task_metric
from mtlsi_edge.runtime.predictor import Predictor, preprocess_frame
from mtlsi_edge.targets import TARGETS
from mtlsi_edge.tasks import TaskSet
from mtlsi_edge.train.checkpoint import build_from_checkpoint
from mtlsi_edge.train.engine import evaluate


@dataclass
class ValSet:
    frames: list[np.ndarray]  # BGR uint8 as a camera gives them (the Predictor's input)
    items: list[np.ndarray]  # 1×3×H×W float32 each: the same frames preprocessed (for NNCF)
    gts: list[dict]  # per image: task → ground-truth array as the dataset reader gives it
    ids: list[str]
    size: tuple[int, int]  # model input size the items were made for


def load_val_set(data: str, split: str, task_set: TaskSet, size: tuple[int, int],
                 limit: int | None = None) -> ValSet:
    """Images of a split, preprocessed for a model of input ``size``, with their labels."""
    ds = build_dataset(data, split, task_set)
    n = len(ds) if limit is None else min(limit, len(ds))
    frames, items, gts, ids = [], [], [], []
    for i in range(n):
        s = ds.load(i)
        bgr = np.ascontiguousarray(s["image"][:, :, ::-1]).clip(0, 255).astype(np.uint8)
        frames.append(bgr)
        items.append(preprocess_frame(bgr, size)[0])
        gts.append({t.name: s[t.name] for t in task_set})
        ids.append(s["meta"]["id"])
    return ValSet(frames, items, gts, ids, tuple(size))


class _FnRunner:
    """A Runner over a plain inference function (what NNCF's validation hands us)."""

    name = "function"

    def __init__(self, infer: Callable[[np.ndarray], dict], layouts: dict[str, str]):
        self.infer, self.layouts = infer, layouts

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return self.infer(batch)


@dataclass(frozen=True)
class Scoring:
    """How :func:`evaluate_predictor` scores: ``boundary_flavour`` (SEISM reader, None = the
    metric's default), ``fast`` (cheap boundary F under the metric's name, for ranking only),
    ``workers`` (processes for SEISM's boundary matching; 1 = in this process)."""

    boundary_flavour: str | None = None
    fast: bool = False
    workers: int = 1


class _FastBoundary(BoundaryMonitor):
    """:class:`BoundaryMonitor` reporting under the boundary task's metric name."""

    def __init__(self, task) -> None:
        super().__init__(task)
        self.key = task.metric_name

    def compute(self) -> dict[str, float]:
        return {self.key: super().compute()["odsF_approx"]}


def _metric(task, scoring: Scoring):
    if scoring.fast and task.metric_name == "odsF":
        return _FastBoundary(task)
    return task_metric(task, scoring.boundary_flavour)


def _boundary_counts(args) -> np.ndarray:
    metric, pred, gt = args
    return metric.image_counts(pred, gt)


def evaluate_predictor(predictor: Predictor, val: ValSet, indices=None,
                       scoring: Scoring = Scoring()) -> dict:
    """``{task: {metric: value}}`` of a Predictor on ``val``: its own pre/postprocessing,
    outputs at each image's size, pooled metrics of ``mtlsi_edge.metrics``."""
    task_set = predictor.task_set
    metrics = {t.name: _metric(t, scoring) for t in task_set}
    seism = {k: m for k, m in metrics.items() if isinstance(m, BoundaryMetric)}
    blank = {}  # what a worker needs: the metric's settings, no counts (arguments are pickled)
    for k, m in seism.items():
        blank[k] = copy.copy(m)
        blank[k].counts = []
    pool = None
    if seism and scoring.workers > 1:
        pool = ProcessPoolExecutor(scoring.workers, mp_context=multiprocessing.get_context(
            "fork" if "fork" in multiprocessing.get_all_start_methods() else None))
    pending: list = []
    try:
        for i in (range(len(val.frames)) if indices is None else indices):
            out = predictor(val.frames[i])
            for t in task_set:
                pred, gt = out[t.name], val.gts[i][t.name]
                if pred.ndim == 3:  # normals H×W×3 → 3×H×W
                    pred, gt = pred.transpose(2, 0, 1), gt.transpose(2, 0, 1)
                if pool is not None and t.name in seism:
                    pending.append((seism[t.name], gt, pool.submit(
                        _boundary_counts, (blank[t.name], pred, gt))))
                    continue
                metrics[t.name].update(pred[None], gt[None])
        for m, gt, fut in pending:  # in image order: the pooled counts are the serial ones
            m.add_counts(fut.result(), gt)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return {k: m.compute() for k, m in metrics.items()}


def default_workers() -> int:
    """Processes for SEISM's boundary matching: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def evaluate_fn(infer: Callable[[np.ndarray], dict], val: ValSet, task_set: TaskSet,
                layouts: dict[str, str] | None = None, indices=None,
                scoring: Scoring = Scoring()) -> dict:
    """``{task: {metric: value}}`` of ``infer`` (batch → {task: raw output}) on ``val``,
    through the Predictor's pre/postprocessing (so every artifact is scored one way)."""
    manifest = {"task_set": task_set.to_dict(),
                "input": {"size": list(val.size), "mean": list(MEAN), "std": list(STD)}}
    predictor = Predictor(_FnRunner(infer, layouts or {}), manifest)
    return evaluate_predictor(predictor, val, indices, scoring)


def compiled_infer(model, outputs: list[str]) -> Callable[[np.ndarray], dict]:
    """An inference function for what NNCF hands a validation function (an OpenVINO
    ``CompiledModel``, an ``onnx.ModelProto`` or an ONNX Runtime session): the first target
    whose :meth:`~mtlsi_edge.targets.Target.native_infer` accepts ``model``."""
    for target in TARGETS.values():
        fn = target.native_infer(model, outputs)
        if fn is not None:
            return fn
    raise TypeError(f"no target runs a {type(model).__name__} (expected an OpenVINO "
                    "CompiledModel, an onnx.ModelProto or an ONNX Runtime session)")


def drops_table(fp32: dict, q: dict, task_set: TaskSet) -> dict:
    """Headline metric per task: fp32, quantised, and the drop (positive = worse)."""
    out = {}
    for t in task_set:
        a, b = fp32[t.name][t.metric_name], q[t.name][t.metric_name]
        out[t.name] = {"metric": t.metric_name, "fp32": a, "quantized": b,
                       "drop": (a - b) if t.higher_is_better else (b - a)}
    return out


def evaluate_checkpoint(checkpoint: str | Path, data: str | Path, split: str = "val",
                        batch_size: int = 4, limit: int | None = None,
                        progress: bool = False, boundary_flavour: str | None = None
                        ) -> tuple[dict, object]:
    """(``{task: {metric: value}}``, task set) of a checkpoint on ``data``/``split``."""
    model, _ = build_from_checkpoint(checkpoint)
    res = evaluate(model, str(data), split, batch_size, limit=limit, progress=progress,
                   boundary_flavour=boundary_flavour)
    return res, model.task_set


def evaluate_bundle(bundle: str | Path, data: str | Path, split: str = "val",
                    limit: int | None = None, boundary_flavour: str | None = None
                    ) -> tuple[dict, object]:
    """(``{task: {metric: value}}``, task set) of a compiled bundle on ``data``/``split``,
    with the Predictor's own pre- and postprocessing."""
    predictor = Predictor.from_bundle(bundle)
    val = load_val_set(str(data), split, predictor.task_set, predictor.input_size, limit)
    return evaluate_predictor(predictor, val, scoring=Scoring(boundary_flavour)), \
        predictor.task_set
