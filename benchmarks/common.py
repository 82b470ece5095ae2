"""Shared helpers for the benchmark scripts: timing, checkpoints, machine line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mtlsi_edge.machine import describe
from mtlsi_edge.timing import interleaved, time_call


def median_ms(fn: Callable[[], object], runs: int = 50, warmup_s: float = 0.5,
              warmup_runs: int = 5) -> float:
    """Median wall time of ``fn()`` in ms after a warm-up by time and count
    (:func:`mtlsi_edge.timing.time_call`)."""
    return float(time_call(fn, warmup_s=warmup_s, warmup_runs=warmup_runs,
                           runs=runs).median_ms)


def timed_rounds(fns: dict[str, Callable[[], object]], runs: int, rounds: int
                 ) -> dict[str, float]:
    """Median ms of each ``fn`` over ``rounds`` alternating rounds of ``runs`` calls (the
    median of the rounds' medians, :func:`mtlsi_edge.timing.interleaved`)."""
    return {k: s.stats["round_median_ms"] for k, s in interleaved(fns, rounds, runs).items()}


def machine() -> str:
    """CPU, cores, OS and architecture (:func:`mtlsi_edge.machine.describe`)."""
    return describe(flags=False)


def checkpoint_or_random(path: str | None, variant: str | None = None,
                         tmp: Path | None = None) -> Path:
    """The given checkpoint, else the embedded starter, else random weights saved to ``tmp``."""
    if path:
        return Path(path)
    starter = Path(__file__).resolve().parents[1] / "mtlsi_edge" / "weights" / "starter.json"
    if starter.is_file():
        return starter
    import torch

    from mtlsi_edge.model import DEFAULT_VARIANT, create_model
    from mtlsi_edge.train.checkpoint import save_checkpoint

    variant = variant or DEFAULT_VARIANT
    torch.manual_seed(0)
    m = create_model(variant)
    tmp = tmp or Path("runs/bench")
    return save_checkpoint(tmp / "random", m, {"model_config": m.cfg.to_dict(),
                                               "task_set": m.task_set.to_dict(),
                                               "variant": variant})


def matmul_peak_gflops(threads: int, n: int = 1024) -> float:
    """FP32 GEMM throughput of this machine (torch.mm, ``n×n``), median of 20."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    ms = median_ms(lambda: torch.mm(a, b), runs=20)
    return 2 * n**3 / (ms / 1e3) / 1e9
