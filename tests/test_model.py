"""MTLSI-Net: shapes, variants, config round trip, and linear cost from FLOP counts."""

from __future__ import annotations

import pytest
import torch

from mtlsi_edge.model import VARIANTS, MTLSIConfig, create_model
from mtlsi_edge.model.blocks import (
    CWIB,
    MTMQLFB,
    SemanticTokenDistiller,
    SoftmaxSelfAttention,
    WindowAttention,
)
from mtlsi_edge.model.complexity import count_macs, model_report
from mtlsi_edge.tasks import get_task_set

TASKS = ["semseg", "depth", "normals", "boundary"]


@pytest.mark.parametrize("name", [n for n, v in VARIANTS.items() if v.edge])
def test_edge_variant_outputs(name):
    torch.manual_seed(0)
    m = create_model(name).eval()
    ts = get_task_set(m.cfg.task_set)
    x = torch.randn(2, 3, 240, 320)
    with torch.no_grad():
        out = m(x)
    stride = m.cfg.output_stride
    assert set(out) == set(ts.names)
    for t in ts:
        assert out[t.name].shape == (2, t.out_channels, 240 // stride, 320 // stride)
        assert torch.isfinite(out[t.name]).all()


def test_training_mode_returns_aux_and_full_res():
    m = create_model("edge-effvit-b0", output_stride=1, task_set="pascal").train()
    x = torch.randn(2, 3, 128, 160)
    out = m(x)
    aux = out.pop("aux")
    ts = get_task_set("pascal")
    assert list(out) == ts.names
    for t in ts:
        assert out[t.name].shape == (2, t.out_channels, 128, 160)
        assert aux[t.name].shape == (2, t.out_channels, 8, 10)
    sum(o.mean() for o in out.values()).backward()  # every head is connected
    assert m.distiller.seeds.grad is not None and m.distiller.seeds.grad.abs().sum() > 0


def test_odd_input_sizes_run():
    """Sizes not divisible by the window or by 16 are padded internally, not rejected."""
    m = create_model("edge-mbv3", output_stride=1).eval()
    with torch.no_grad():
        out = m(torch.randn(1, 3, 200, 296))
    assert out["depth"].shape == (1, 1, 200, 296)


def test_config_round_trip_and_overrides():
    m = create_model("edge-mbv3", num_tokens=16, query_scales=(1,))
    cfg = MTLSIConfig.from_dict(m.cfg.to_dict())
    assert cfg == m.cfg and cfg.num_tokens == 16 and cfg.query_scales == (1,)
    assert m.distiller.seeds.shape[0] == 16
    assert len(m.fusion[0].scales) == 1
    with pytest.raises(ValueError, match="unknown model config key .bogus."):
        MTLSIConfig.from_dict({**m.cfg.to_dict(), "bogus": 1})
    with pytest.raises(KeyError, match="unknown variant"):
        create_model("nope")


def test_window_attention_padding_is_masked():
    """With padding, real pixels must not attend to padded ones: the output of the top-left
    window must equal the output computed on that window alone."""
    torch.manual_seed(0)
    wa = WindowAttention(16, heads=2, window=4).eval()
    x = torch.randn(1, 16, 6, 6)  # padded to 8×8
    with torch.no_grad():
        full = wa(x)
        alone = wa(x[:, :, :4, :4])
        corner = wa(x[:, :, 4:, 4:])  # 2×2 real pixels in a 4×4 window with padding
    assert torch.allclose(full[:, :, :4, :4], alone, atol=1e-5)
    assert torch.allclose(full[:, :, 4:, 4:], corner, atol=1e-5)


def test_mtmqlfb_mixes_tasks_through_the_shared_context():
    torch.manual_seed(0)
    blk = MTMQLFB(32, TASKS, heads=4).eval()
    feats = [torch.randn(1, 32, 6, 8) for _ in TASKS]
    with torch.no_grad():
        a = blk(feats)
        feats2 = list(feats)
        feats2[1] = feats2[1] + 1.0  # change only the depth task's input
        b = blk(feats2)
    assert not torch.allclose(a[0], b[0])  # semseg output changes: cross-task interaction


def _macs(block, feats, tokens=None):
    fn = (lambda: block(feats)) if tokens is None else (lambda: block(feats, tokens))
    return count_macs(fn, block)["Global"]


@pytest.mark.parametrize("grid", [(15, 20), (30, 40)])
def test_linear_cost_from_flop_counts(grid):
    """Doubling the pixels: MT-MQLFB and the distiller grow ≤ 2.2×, softmax attention ≥ 3.5×."""
    torch.manual_seed(0)
    c = 64
    h, w = grid

    def feats(hh, ww):
        return [torch.randn(1, c, hh, ww) for _ in TASKS]

    fusion = MTMQLFB(c, TASKS, heads=4).eval()
    distil = SemanticTokenDistiller(c, len(TASKS), num_tokens=512, heads=4).eval()
    softmax = SoftmaxSelfAttention(c, heads=4).eval()
    cwib = CWIB(c, heads=4, window=5).eval()
    tokens = torch.randn(1, 512, c)
    small, big = feats(h, w), feats(h, 2 * w)
    r_fusion = _macs(fusion, big) / _macs(fusion, small)
    r_distil = _macs(distil, big) / _macs(distil, small)
    r_cwib = _macs(cwib, big[0], tokens) / _macs(cwib, small[0], tokens)
    r_soft = _macs(softmax, big) / _macs(softmax, small)
    assert r_fusion <= 2.2, r_fusion
    assert r_distil <= 2.2, r_distil
    assert r_cwib <= 2.2, r_cwib
    assert r_soft >= 3.5, r_soft


def test_model_report_parts_sum_to_total():
    m = create_model("edge-effvit-b0")
    rep = model_report(m, (128, 160))
    assert abs(sum(p["params"] for p in rep["parts"].values()) - rep["params"]) == 0
    parts_macs = sum(p["gmacs"] for p in rep["parts"].values())
    assert abs(parts_macs - rep["gmacs"]) / rep["gmacs"] < 1e-6
    assert all(p["gmacs"] > 0 for p in rep["parts"].values())
