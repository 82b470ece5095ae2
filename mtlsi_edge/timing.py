"""The one timing loop: warm up by time *and* count, then time a count or a duration.

Every latency number of the toolkit (``mtlsi-edge profile``, ``deploy``'s report, ``tune``,
the pruning report, the eager latency of ``info --latency`` and the ``benchmarks/`` scripts)
comes from :func:`measure` (per-call wall times) or :func:`time_call` (the same times plus
their :func:`~mtlsi_edge.stats.summarize` statistics).

Conventions: warm-up calls are untimed and last until at least ``warmup_s`` seconds have
passed *and* ``warmup_runs`` calls were made (like OpenVINO's ``benchmark_app``); then either
``runs`` calls are timed, or calls are timed until ``time_s`` seconds have passed (at least
one call); with neither, :data:`DEFAULT_TIME_S`.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mtlsi_edge.stats import summarize

#: Warm-up defaults: at least this long *and* at least this many calls.
WARMUP_S = 0.2
WARMUP_RUNS = 5
#: Measurement default when neither a duration nor a count is given.
DEFAULT_TIME_S = 1.0

clock = time.perf_counter


def check_budget(time_s: float | None, runs: int | None) -> None:
    """Refuse (``ValueError``) a budget with both a duration and a count, ``runs < 1`` or a
    non-positive / non-finite duration."""
    if runs is not None and time_s is not None:
        raise ValueError("give a duration (time_s) or a count (runs), not both")
    if runs is not None and int(runs) < 1:
        raise ValueError(f"runs must be ≥ 1, got {runs}")
    if time_s is not None and not (time_s > 0 and math.isfinite(time_s)):
        raise ValueError(f"time must be > 0 seconds, got {time_s}")


def warmup(fn: Callable[[], object], warmup_s: float = WARMUP_S,
           warmup_runs: int = WARMUP_RUNS) -> int:
    """Call ``fn`` (untimed) until ``warmup_s`` seconds passed *and* ``warmup_runs`` calls
    were made; returns the number of calls."""
    t_end, k = clock() + warmup_s, 0
    while k < warmup_runs or clock() < t_end:
        fn()
        k += 1
    return k


def measure(fn: Callable[[], object], warmup_s: float = WARMUP_S,
            warmup_runs: int = WARMUP_RUNS, time_s: float | None = None,
            runs: int | None = None) -> list[float]:
    """Call ``fn`` repeatedly; return the wall time of each timed call in seconds.

    Warm-up (untimed) lasts until both ``warmup_s`` seconds have passed and ``warmup_runs``
    calls were made (like ``benchmark_app``).  Then either ``runs`` calls are timed, or calls
    are timed until ``time_s`` seconds have passed (at least one call); with neither,
    :data:`DEFAULT_TIME_S`.  ``runs < 1`` or ``time_s <= 0`` raise ``ValueError``.
    """
    check_budget(time_s, runs)
    if warmup_s < 0 or warmup_runs < 0:
        raise ValueError("warm-up time and count must be ≥ 0")
    if runs is None and time_s is None:
        time_s = DEFAULT_TIME_S
    warmup(fn, warmup_s, warmup_runs)
    times: list[float] = []
    if runs is not None:
        for _ in range(int(runs)):
            t = clock()
            fn()
            times.append(clock() - t)
        return times
    t_stop = clock() + float(time_s)
    while True:
        t = clock()
        fn()
        now = clock()
        times.append(now - t)
        if now >= t_stop:
            return times


@dataclass
class TimingStats:
    """Per-call wall times (seconds) of one :func:`time_call` and their statistics (ms):
    ``min_ms, mean_ms, median_ms, max_ms, std_ms, p90_ms, p95_ms, p99_ms, fps, n`` as
    :func:`~mtlsi_edge.stats.summarize` computes them."""

    times_s: list[float]
    stats: dict = field(default_factory=dict)

    @property
    def median_ms(self) -> float:
        return self.stats["median_ms"]

    @property
    def p90_ms(self) -> float:
        return self.stats["p90_ms"]

    @property
    def times_ms(self) -> list[float]:
        """Per-call times in ms, rounded to the ns (the JSON export form)."""
        return [round(t * 1e3, 6) for t in self.times_s]


def time_call(fn: Callable[[], object], warmup_s: float = WARMUP_S,
              warmup_runs: int = WARMUP_RUNS, time_s: float | None = None,
              runs: int | None = None) -> TimingStats:
    """:func:`measure` ``fn`` and summarise: the per-call times and their statistics."""
    times = measure(fn, warmup_s=warmup_s, warmup_runs=warmup_runs, time_s=time_s, runs=runs)
    return TimingStats(times, summarize(times))


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, runs: int,
                warmup_s: float = 0.3) -> dict[str, TimingStats]:
    """Time each ``fn`` in ``rounds`` alternating rounds of ``runs`` calls (every fn in every
    round, so drift of the machine — clocks, a neighbour's load — hits all alike); returns
    each fn's calls of all rounds together, with the median of the round medians in
    ``stats["round_median_ms"]`` (the statistic the benchmarks' ratios use)."""
    if rounds < 1:
        raise ValueError(f"rounds must be ≥ 1, got {rounds}")
    times: dict[str, list[float]] = {k: [] for k in fns}
    medians: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t = time_call(fn, warmup_s=warmup_s, runs=runs)
            times[k] += t.times_s
            medians[k].append(t.median_ms)
    out = {}
    for k in fns:
        out[k] = TimingStats(times[k], {**summarize(times[k]),
                                        "round_median_ms": statistics.median(medians[k])})
    return out
