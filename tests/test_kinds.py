"""Task kinds are data: every task reaches its behaviour through one TaskKind record."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mtlsi_edge import metrics
from mtlsi_edge.kinds import KINDS, TaskKind, get_kind
from mtlsi_edge.objectives import (
    OBJECTIVES,
    gt_to_tensor,
    objective,
    task_activate,
    task_loss,
    task_metric,
)
from mtlsi_edge.tasks import TASK_SETS, Task, TaskSet, kind_of


def test_every_registered_task_has_a_kind_record() -> None:
    for ts in TASK_SETS.values():
        for t in ts:
            assert t.spec is KINDS[t.kind]
            assert kind_of(t.name) is t.spec
    with pytest.raises(KeyError, match="unknown task kind"):
        get_kind("nope")


def test_serialized_task_sets_keep_the_kind_string() -> None:
    ts = TASK_SETS["pascal"]
    d = ts.to_dict()
    assert [t["kind"] for t in d["tasks"]] == ["segmentation", "segmentation", "saliency",
                                               "normals", "boundary"]
    assert set(d) == {"name", "tasks"}
    assert TaskSet.from_dict(d) == ts


def test_gt_tensor_layouts() -> None:
    h, w = 3, 4
    seg = gt_to_tensor(KINDS["segmentation"], np.zeros((h, w), np.uint8))
    assert seg.dtype == torch.int64 and seg.shape == (h, w)
    depth = gt_to_tensor(KINDS["depth"], np.ones((h, w), np.float32))
    assert depth.dtype == torch.float32 and depth.shape == (1, h, w)
    normals = np.zeros((h, w, 3), np.float32)
    normals[..., 2] = 1.0
    n = gt_to_tensor(KINDS["normals"], normals)
    assert n.shape == (3, h, w) and float(n[2].min()) == 1.0


def test_aux_downsample_keeps_thin_boundaries() -> None:
    gt = torch.zeros(1, 1, 8, 8)
    gt[0, 0, 1, :] = 1.0  # a line the nearest sampling (rows 0, 4) misses
    assert objective("boundary").aux_downsample(gt, 4)[0, 0, 0].tolist() == [1.0, 1.0]
    assert objective("depth").aux_downsample(gt, 4).sum() == 0


def test_boundary_metric_takes_the_task_tolerance() -> None:
    for ts in TASK_SETS.values():
        t = ts["boundary"]
        assert task_metric(t).max_dist == t.max_dist


def test_a_new_kind_is_one_record(monkeypatch) -> None:
    """A record (runtime) and an objective (build) are all a new kind needs for deployment,
    loss, metric and activation."""
    monkeypatch.setitem(KINDS, "height", dataclasses.replace(KINDS["depth"], name="height"))
    monkeypatch.setitem(OBJECTIVES, "height",
                        dataclasses.replace(OBJECTIVES["depth"], activate=lambda p: p * 2))
    t = Task("height", "height", 1, 1.0, metric_name="rmse", higher_is_better=False)
    assert isinstance(t.spec, TaskKind) and t.spec.name == "height"
    pred = torch.ones(1, 1, 2, 2)
    assert float(task_loss(t, pred, torch.zeros(1, 1, 2, 2) + 2.0)) == pytest.approx(1.0)
    assert float(task_activate(t, pred).sum()) == 8.0
    assert isinstance(task_metric(t), metrics.DepthMetric)


def test_boundary_flavour_is_selectable() -> None:
    t = TASK_SETS["nyud"]["boundary"]
    assert task_metric(t).flavour == "seism-nms"  # the default: published NYUD tables
    assert task_metric(t, "mtl").flavour == "mtl"
    assert task_metric(TASK_SETS["nyud"]["depth"], "mtl").__class__ is metrics.DepthMetric


def test_every_kind_has_an_objective() -> None:
    assert set(OBJECTIVES) == set(KINDS)


def test_backend_registry_knows_build_side_precisions() -> None:
    """The runtime checks manifests of torch bundles without importing the build half: its
    table of their precisions must be the targets' own."""
    from mtlsi_edge.backends import BUILD_SIDE, TARGET_NAMES, precisions_of
    from mtlsi_edge.targets import TARGETS

    assert set(TARGET_NAMES) == set(TARGETS)
    for name in BUILD_SIDE:
        assert precisions_of(name) == TARGETS[name].precisions


def test_input_spec_manifest_is_the_bundle_input_object() -> None:
    """Bundles written before the InputSpec carried exactly these fields."""
    from mtlsi_edge.inputs import IMAGENET, InputSpec

    m = IMAGENET.with_size((240, 320)).manifest()
    assert m == {"name": "image", "size": [240, 320], "layout": "NCHW", "color": "RGB",
                 "dtype": "float32", "mean": [0.485, 0.456, 0.406],
                 "std": [0.229, 0.224, 0.225], "scale": 1 / 255}
    assert InputSpec.from_manifest(m) == IMAGENET.with_size((240, 320))
