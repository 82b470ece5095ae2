"""Latency statistics: min/mean/median/max/std and nearest-rank percentiles, in milliseconds.

Pure Python (no numpy), so the numbers are exact and easy to test.  Percentiles use the
*nearest-rank* definition: the p-th percentile of ``n`` sorted values is the value at 1-based
rank ``ceil(p / 100 · n)`` — always an observed sample, never an interpolation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: Percentiles reported by :func:`summarize`.
PERCENTILES = (90, 95, 99)


def nearest_rank(sorted_values: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile (0 < p ≤ 100) of an already sorted sample.

    >>> nearest_rank(list(range(1, 101)), 90)
    90
    """
    n = len(sorted_values)
    if n == 0:
        raise ValueError("percentile of an empty sample")
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    # The tiny epsilon keeps e.g. 0.29 * 100 = 28.999999999999996 → 29 from rounding up.
    rank = math.ceil(p * n / 100 - 1e-9)
    return sorted_values[min(max(rank, 1), n) - 1]


def _median(sorted_values: Sequence[float]) -> float:
    n = len(sorted_values)
    mid = n // 2
    if n % 2:
        return sorted_values[mid]
    return (sorted_values[mid - 1] + sorted_values[mid]) / 2


def summarize(times_s: Sequence[float]) -> dict:
    """Summary of per-iteration wall times given in **seconds**; values returned in ms.

    Returns ``min_ms, mean_ms, median_ms, max_ms, std_ms`` (sample standard deviation, n−1;
    0 for a single sample), ``p90_ms, p95_ms, p99_ms`` (nearest rank), ``fps``
    (1000 / median, i.e. the rate of back-to-back batch-1 calls; None if the median
    is 0) and ``n``.

    Raises ``ValueError`` on an empty sample or non-finite / negative values.
    """
    ms = [float(t) * 1e3 for t in times_s]
    n = len(ms)
    if n == 0:
        raise ValueError("cannot summarise an empty sample of times")
    if any(not math.isfinite(v) or v < 0 for v in ms):
        raise ValueError("times must be finite and non-negative")
    s = sorted(ms)
    mean = math.fsum(s) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in s) / (n - 1)) if n > 1 else 0.0
    median = _median(s)
    out = {
        "min_ms": s[0],
        "mean_ms": mean,
        "median_ms": median,
        "max_ms": s[-1],
        "std_ms": std,
    }
    for p in PERCENTILES:
        out[f"p{p}_ms"] = nearest_rank(s, p)
    out["fps"] = 1000.0 / median if median > 0 else None
    out["n"] = n
    return out
