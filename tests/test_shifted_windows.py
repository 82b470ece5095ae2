"""Shifted windows (Swin): the roll, the region mask, and information crossing window borders."""

from __future__ import annotations

import pytest
import torch

from mtlsi_edge.model import create_model
from mtlsi_edge.model.blocks import WindowAttention, shift_region_mask


def _attn(shift: int, seed: int = 0) -> WindowAttention:
    torch.manual_seed(seed)
    m = WindowAttention(16, heads=2, window=4, shift=shift).eval()
    with torch.no_grad():
        m.rel_bias.normal_()
    return m


def test_region_mask_by_hand():
    # 8×8 map, window 4, shift 2: the last window (bottom-right) holds 4 regions after the roll
    m = shift_region_mask(8, 8, 4, 2)
    assert m.shape == (4, 16, 16)
    assert (m[0] == 0).all()  # top-left window: one region, nothing masked
    last = m[3].reshape(4, 4, 4, 4)  # query (y, x) × key (y, x) inside the window
    assert last[0, 0, 1, 1] == 0 and last[0, 0, 0, 2] != 0 and last[0, 0, 2, 0] != 0
    assert last[3, 3, 2, 2] == 0 and last[3, 3, 0, 0] != 0


@torch.no_grad()
def test_unshifted_output_unchanged_by_the_new_code_path():
    m = _attn(0)
    x = torch.randn(1, 16, 12, 12)
    ref = m(x)
    m.shift = 0
    assert torch.equal(m(x), ref)


@torch.no_grad()
@pytest.mark.parametrize("hw", [(8, 8), (10, 13)])  # exact multiple, and padded
def test_wrapped_pixels_do_not_attend_across_the_border(hw):
    """After the roll, the image's first rows/columns sit next to its last ones in the
    bottom-right window; the region mask must keep them apart."""
    m = _attn(2)
    x = torch.randn(1, 16, *hw)
    y = x.clone()
    y[:, :, 0, 0] += 5.0  # top-left pixel: rolled into the bottom-right window
    d = (m(y) - m(x)).abs().sum(1)[0]
    h, w = hw
    assert d[h - 1, w - 1] < 1e-5  # would be reached without the mask (same window after roll)
    assert d[0, 1] > 1e-4  # its real neighbour (same region) is reached


@torch.no_grad()
def test_two_blocks_cross_window_borders_only_with_shift():
    x = torch.randn(1, 16, 8, 8)
    y = x.clone()
    y[:, :, 3, 3] += 5.0  # inside window (0, 0) of the unshifted grid
    a0, a1, s1 = _attn(0, 1), _attn(0, 2), _attn(2, 2)

    def reach(b2):
        return (b2(a0(y)) - b2(a0(x))).abs().sum(1)[0]

    assert reach(a1)[4, 4] < 1e-6  # unshifted twice: stays in its window
    assert reach(s1)[4, 4] > 1e-4  # shifted second block: crosses to the next window


def test_paper_variants_shift_every_second_cwib_edge_do_not():
    m = create_model("paper-vit-l", backbone="resnet18", backbone_out_indices=None,
                     input_size=(64, 96), num_tokens=8, dim=32, heads=4).eval()
    dec = next(iter(m.decoders.values()))
    assert [b.local.shift for b in [*dec.cwib8, *dec.cwib4]] == [0, 4]
    assert not m.batchable()  # shifted windows run the per-task path
    out = m(torch.randn(1, 3, 64, 96))
    assert all(torch.isfinite(v).all() for v in out.values())
    edge = create_model("edge-effvit-b0", input_size=(64, 96))
    assert edge.cfg.shifted_windows is False
