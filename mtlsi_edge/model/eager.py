"""Eager PyTorch latency of a model (the profiler measures; the model layer only counts)."""

from __future__ import annotations

import torch
from torch import nn

from mtlsi_edge.timing import measure


@torch.inference_mode()
def eager_latency_ms(model: nn.Module, size: tuple[int, int], runs: int = 20,
                     warmup_s: float = 0.5) -> float:
    """Median wall time of one batch-1 FP32 forward in PyTorch eager, after a timed warm-up."""
    model.eval()
    x = torch.randn(1, 3, *size)
    times = sorted(measure(lambda: model(x), warmup_s=warmup_s, runs=runs))
    return 1000 * times[len(times) // 2]
