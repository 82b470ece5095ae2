"""Per-task accuracy of any inference function on a held-out split, Predictor-style.

Everything is scored through :class:`mtlsi_edge.runtime.predictor.Predictor` (its
preprocessing, its postprocessing to the image size) into the pooled metrics of
``mtlsi_edge.metrics``: a compiled bundle (``mtlsi-edge eval --bundle``), NNCF's candidate
models during accuracy control, FP32, INT8 and pruned models all take one code path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mtlsi_edge.data.datasets import build_dataset
from mtlsi_edge.export import MEAN, STD
from mtlsi_edge.objectives import task_metric
from mtlsi_edge.runtime.predictor import Predictor, preprocess_frame
from mtlsi_edge.targets import TARGETS
from mtlsi_edge.tasks import TaskSet


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


def evaluate_predictor(predictor: Predictor, val: ValSet, indices=None,
                       boundary_flavour: str | None = None) -> dict:
    """``{task: {metric: value}}`` of a Predictor on ``val``: its own pre/postprocessing,
    outputs at each image's size, pooled metrics of ``mtlsi_edge.metrics``."""
    task_set = predictor.task_set
    metrics = {t.name: task_metric(t, boundary_flavour) for t in task_set}
    for i in (range(len(val.frames)) if indices is None else indices):
        out = predictor(val.frames[i])
        for t in task_set:
            pred, gt = out[t.name], val.gts[i][t.name]
            if pred.ndim == 3:  # normals H×W×3 → 3×H×W
                pred, gt = pred.transpose(2, 0, 1), gt.transpose(2, 0, 1)
            metrics[t.name].update(pred[None], gt[None])
    return {k: m.compute() for k, m in metrics.items()}


def evaluate_fn(infer: Callable[[np.ndarray], dict], val: ValSet, task_set: TaskSet,
                layouts: dict[str, str] | None = None, indices=None) -> dict:
    """``{task: {metric: value}}`` of ``infer`` (batch → {task: raw output}) on ``val``,
    through the Predictor's pre/postprocessing (so every artifact is scored one way)."""
    manifest = {"task_set": task_set.to_dict(),
                "input": {"size": list(val.size), "mean": list(MEAN), "std": list(STD)}}
    predictor = Predictor(_FnRunner(infer, layouts or {}), manifest)
    return evaluate_predictor(predictor, val, indices)


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
