"""``eval``: pooled per-task metrics of a checkpoint (PyTorch) or of a compiled bundle (through
the Predictor, any target and precision) on a dataset split."""

from __future__ import annotations

from pathlib import Path

from mtlsi_edge.quantize.accuracy import evaluate_predictor, load_val_set
from mtlsi_edge.runtime.predictor import Predictor
from mtlsi_edge.train.checkpoint import build_from_checkpoint
from mtlsi_edge.train.engine import evaluate


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
    return evaluate_predictor(predictor, val, boundary_flavour=boundary_flavour), \
        predictor.task_set
