"""Mixed precision: the linear-attention context and normaliser stay in FP32."""

from __future__ import annotations

import copy

import pytest
import torch

from mtlsi_edge.model.blocks import MTMQLFB
from mtlsi_edge.train.engine import amp_dtype


@pytest.fixture(scope="module")
def block_and_inputs():
    torch.manual_seed(0)
    blk = MTMQLFB(32, ["a", "b"], heads=2).eval()
    with torch.no_grad():
        blk.kv.weight.mul_(20)  # large keys/values: G = Σ φ(K)ᵀV reaches ~1e5 over 2×48×64 tokens
    x = [torch.randn(1, 32, 48, 64) for _ in range(2)]
    return blk, x


@torch.no_grad()
def test_fp16_context_overflows_without_the_guard_and_not_with_it(block_and_inputs) -> None:
    blk, x = block_and_inputs
    k, v = blk.kv(blk.norm(x[0])).chunk(2, 1)
    g = blk._phi(blk._heads(k)).transpose(-1, -2) @ blk._heads(v)
    assert g.abs().max() > torch.finfo(torch.float16).max  # the case really exceeds FP16

    ref = blk(x)
    half = copy.deepcopy(blk).half()
    xh = [t.half() for t in x]
    guarded = half(xh)
    assert all(o.dtype == torch.float16 and torch.isfinite(o).all() for o in guarded)
    for o, r in zip(guarded, ref):
        assert ((o.float() - r).abs().max() / r.abs().max()).item() < 1e-2

    half.fp32_core = False
    unguarded = half(xh)
    assert not all(torch.isfinite(o).all() for o in unguarded)


def test_amp_dtype_is_none_on_cpu() -> None:
    assert amp_dtype(torch.device("cpu")) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_amp_dtype_prefers_bf16_on_cuda() -> None:
    want = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert amp_dtype(torch.device("cuda")) == want
