"""Per-task accuracy of any inference function on a held-out split, Predictor-style.

The same postprocessing as :class:`mtlsi_edge.runtime.predictor.Predictor` (resize to the
image, argmax, re-normalise) feeds the pooled metrics of ``mtlsi_edge.metrics``; so FP32,
INT8, pruned and every target are scored by one code path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mtlsi_edge.runtime.predictor import FINISH, preprocess_frame
from mtlsi_edge.tasks import TaskSet


@dataclass
class ValSet:
    items: list[np.ndarray]  # 1×3×H×W float32 each
    gts: list[dict]  # per image: task → ground-truth array as the dataset reader gives it
    ids: list[str]


def load_val_set(data: str, split: str, task_set: TaskSet, size: tuple[int, int],
                 limit: int | None = None) -> ValSet:
    """Images of a split, preprocessed for a model of input ``size``, with their labels."""
    from mtlsi_edge.data.datasets import build_dataset

    ds = build_dataset(data, split, task_set)
    n = len(ds) if limit is None else min(limit, len(ds))
    items, gts, ids = [], [], []
    for i in range(n):
        s = ds.load(i)
        bgr = np.ascontiguousarray(s["image"][:, :, ::-1]).clip(0, 255).astype(np.uint8)
        items.append(preprocess_frame(bgr, size)[0])
        gts.append({t.name: s[t.name] for t in task_set})
        ids.append(s["meta"]["id"])
    return ValSet(items, gts, ids)


def _finish(task, a: np.ndarray, layout: str, hw: tuple[int, int]) -> np.ndarray:
    import cv2

    a = a[0]
    if layout == "NCHW":
        a = a.transpose(1, 2, 0)
    a = cv2.resize(np.ascontiguousarray(a, np.float32), (hw[1], hw[0]),
                   interpolation=cv2.INTER_LINEAR)
    if a.ndim == 2:
        a = a[:, :, None]
    return FINISH[task.kind](a)


def evaluate_fn(infer: Callable[[np.ndarray], dict], val: ValSet, task_set: TaskSet,
                layouts: dict[str, str] | None = None, indices=None) -> dict:
    """``{task: {metric: value}}`` of ``infer`` (batch → {task: raw output}) on ``val``."""
    metrics = {t.name: t.metric() for t in task_set}
    layouts = layouts or {}
    for i in (range(len(val.items)) if indices is None else indices):
        raw = infer(val.items[i])
        for t in task_set:
            gt = val.gts[i][t.name]
            pred = _finish(t, raw[t.name], layouts.get(t.name, "NCHW"), gt.shape[:2])
            if pred.ndim == 3:  # normals H×W×3 → 3×H×W
                pred, gt = pred.transpose(2, 0, 1), gt.transpose(2, 0, 1)
            metrics[t.name].update(pred[None], gt[None])
    return {k: m.compute() for k, m in metrics.items()}


def compiled_infer(model, outputs: list[str]) -> Callable[[np.ndarray], dict]:
    """An inference function for what NNCF hands a validation function: an OpenVINO
    ``CompiledModel``, an ``onnx.ModelProto`` or an ONNX Runtime session."""
    if hasattr(model, "create_infer_request"):  # openvino.CompiledModel
        ports = {n: model.output(n) for n in outputs}
        req = model.create_infer_request()

        def run(x):
            res = req.infer({0: x})
            return {n: res[p] for n, p in ports.items()}

        return run
    import onnxruntime as ort

    sess = model if hasattr(model, "run") else ort.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def run_ort(x):
        return dict(zip(outputs, sess.run(outputs, {name: x})))

    return run_ort


def drops_table(fp32: dict, q: dict, task_set: TaskSet) -> dict:
    """Headline metric per task: fp32, quantised, and the drop (positive = worse)."""
    out = {}
    for t in task_set:
        a, b = fp32[t.name][t.metric_name], q[t.name][t.metric_name]
        out[t.name] = {"metric": t.metric_name, "fp32": a, "quantized": b,
                       "drop": (a - b) if t.higher_is_better else (b - a)}
    return out
