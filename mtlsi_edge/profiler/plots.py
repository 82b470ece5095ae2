"""PNG plots of a profile (matplotlib): box plots of the latency distribution and p50/p99 bars.

Not part of the device's runtime install (matplotlib is a build-half dependency): the CLI
passes :func:`write_plots` to :func:`mtlsi_edge.profiler.report.write_all` when matplotlib
can be imported, and says so when it cannot.
"""

from __future__ import annotations

import io
from pathlib import Path

from mtlsi_edge.fileio import atomic_write_bytes
from mtlsi_edge.profiler.report import _label, rows


def _save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())


def write_plots(doc: dict, out_dir: str | Path) -> list[Path]:
    """``latency_distribution.png`` (box plots per target, compute and e2e) and
    ``latency_percentiles.png`` (p50 / p99 bars per target); returns the written paths."""
    # Figure objects, not pyplot: no global backend state, no display needed (renders
    # with Agg when saved as PNG).
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    data = [r for r in rows(doc) if r["compute"].get("times_ms")]
    if not data:
        return []
    labels = [_label(r) for r in data]
    written = []

    with_e2e = [r for r in data if (r.get("e2e") or {}).get("times_ms")]
    ncols = 2 if with_e2e else 1
    fig = Figure(figsize=(max(6, 1.6 * len(data)) * ncols / 1.3, 4.5))
    axes = fig.subplots(1, ncols, squeeze=False)
    ax = axes[0][0]
    ax.boxplot([r["compute"]["times_ms"] for r in data], showfliers=True)
    ax.set_xticks(range(1, len(data) + 1), labels, rotation=20, ha="right")
    ax.set_ylabel("ms per frame")
    ax.set_title("compute-only latency")
    ax.grid(axis="y", alpha=0.3)
    if with_e2e:
        ax = axes[0][1]
        ax.boxplot([r["e2e"]["times_ms"] for r in with_e2e], showfliers=True)
        ax.set_xticks(range(1, len(with_e2e) + 1), [_label(r) for r in with_e2e],
                      rotation=20, ha="right")
        ax.set_title("end-to-end latency (pre + infer + post)")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(doc.get("machine", {}).get("cpu", ""), fontsize=9)
    written.append(_save(fig, out_dir / "latency_distribution.png"))

    fig = Figure(figsize=(max(6, 1.4 * len(data)), 4.5))
    ax = fig.subplots()
    xs = range(len(data))
    w = 0.38
    p50 = [r["compute"]["median_ms"] for r in data]
    p99 = [r["compute"]["p99_ms"] for r in data]
    b1 = ax.bar([x - w / 2 for x in xs], p50, w, label="p50 (median)")
    b2 = ax.bar([x + w / 2 for x in xs], p99, w, label="p99")
    ax.bar_label(b1, fmt="%.1f", fontsize=8)
    ax.bar_label(b2, fmt="%.1f", fontsize=8)
    ax.set_xticks(list(xs), labels, rotation=20, ha="right")
    ax.set_ylabel("compute-only latency, ms")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    written.append(_save(fig, out_dir / "latency_percentiles.png"))
    return written
