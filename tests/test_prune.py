"""Pruning: channel removal really shrinks the model and survives a checkpoint round trip;
NNCF magnitude sparsity zeroes the requested share; BN re-estimation; budget parsing."""

from __future__ import annotations

import pytest
import torch

from mtlsi_edge.model import create_model
from mtlsi_edge.model.complexity import model_report
from mtlsi_edge.prune import prune_channels, prune_magnitude, recompute_bn
from mtlsi_edge.quantize.ptq import headroom, parse_budgets
from mtlsi_edge.tasks import get_task_set
from mtlsi_edge.train.checkpoint import build_from_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return create_model("edge-effvit-b0", input_size=(64, 96)).eval()


def test_channel_pruning_shrinks_and_round_trips(small, tmp_path):
    res = prune_channels(small, 0.5)
    a, b = model_report(small), model_report(res.model)
    assert b["params"] < a["params"] and b["gmacs"] < a["gmacs"]
    assert res.removed_params == a["params"] - b["params"]
    meta = {"model_config": small.cfg.to_dict(), "task_set": small.task_set.to_dict(),
            "pruned": {"method": "channels", "ratio": 0.5}}
    path = save_checkpoint(tmp_path / "p", res.model, meta)
    rebuilt, _ = build_from_checkpoint(path)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        y0, y1 = res.model(x), rebuilt(x)
    for k in y0:
        assert torch.allclose(y0[k], y1[k], atol=1e-5)
    # the same weights without the "pruned" record do not fit the config: clear refusal
    meta.pop("pruned")
    bad = save_checkpoint(tmp_path / "q", res.model, meta)
    with pytest.raises(Exception, match="do not fit"):
        build_from_checkpoint(bad)


def test_magnitude_pruning_zeroes_the_requested_share(small):
    res = prune_magnitude(small, 0.5)
    total = sum(p.numel() for p in small.parameters())
    zeros = sum(int((p == 0).sum()) for p in res.model.parameters())
    assert zeros >= 0.4 * total  # global ratio over the prunable (weight) tensors
    assert res.removed_params > 0
    assert sum(int((p == 0).sum()) for p in small.parameters()) < 0.01 * total  # source intact


def test_recompute_bn_changes_running_stats(small):
    m = create_model("edge-effvit-b0", input_size=(64, 96)).eval()
    bn = next(x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d))
    before = bn.running_mean.clone()
    recompute_bn(m, [torch.randn(4, 3, 64, 96) * 3 + 1])
    assert not torch.allclose(before, bn.running_mean) and not m.training


def test_budgets_parse_and_headroom():
    ts = get_task_set("nyud")
    b = parse_budgets(["miou=0.5", "rmse=1%", "normals=0.5", "boundary=0.5"], ts)
    assert [x.task for x in b] == ["semseg", "depth", "normals", "boundary"]
    assert b[1].relative and not b[0].relative
    fp = {"semseg": {"miou": 40.0}, "depth": {"rmse": 0.50}, "normals": {"mean": 20.0},
          "boundary": {"odsF": 60.0}}
    ok = {"semseg": {"miou": 39.8}, "depth": {"rmse": 0.504}, "normals": {"mean": 20.2},
          "boundary": {"odsF": 59.9}}
    assert headroom(b, fp, fp) == pytest.approx(1.0)
    assert 0 <= headroom(b, fp, ok) < 1
    bad = {**ok, "depth": {"rmse": 0.52}}  # +4 % RMSE against a 1 % budget
    assert headroom(b, fp, bad) < 0
    with pytest.raises(ValueError, match="unknown budget key"):
        parse_budgets(["accuracy=1"], ts)
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_budgets(["miou"], ts)


def test_prune_report_follows_the_checkpoint_task_set(monkeypatch, tmp_path):
    """The CLI table has one column per task of the checkpoint (a PASCAL checkpoint has no
    depth: the report used to look it up by name and fail with KeyError)."""
    from typer.testing import CliRunner

    import mtlsi_edge.prune as prune_mod
    from mtlsi_edge.cli import app

    ts = get_task_set("pascal")
    model = create_model("edge-effvit-b0", input_size=(64, 96), task_set="pascal")
    ck = save_checkpoint(tmp_path / "ck" / "pruned", model,
                         {"model_config": model.cfg.to_dict(), "task_set": ts.to_dict()})
    metrics = {t.name: {t.metric_name: 1.0} for t in ts}
    side = {"params": 1e6, "gmacs": 0.1, "eager_ms": 1.0, "ort_ms": 1.0, "metrics": metrics}

    def fake_run_prune(*args, **kwargs):
        return {"checkpoint": ck, "method": "channels", "ratio": 0.5, "before": side,
                "after": side, "finetune_losses": []}

    monkeypatch.setattr(prune_mod, "run_prune", fake_run_prune)
    res = CliRunner().invoke(app, ["prune", "--checkpoint", str(ck), "--data", str(tmp_path),
                                   "--out", str(tmp_path / "out")], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "maxF" in res.output and "rmse" not in res.output
