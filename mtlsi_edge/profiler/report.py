"""Profile reports: JSON (everything, per-iteration times included), CSV, Markdown (PNG plots:
:mod:`mtlsi_edge.profiler.plots`).

A *profile document* is ``{"schema", "created", "machine", "settings", "results": [row…],
"notes": [...]}`` where each row comes from :func:`mtlsi_edge.profiler.bench.profile_bundle`.
Every file is written atomically: to a temporary file in the destination folder, then
``os.replace``d over the target, so a reader never sees a half-written report.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path

from rich import box
from rich.table import Table

from mtlsi_edge.fileio import atomic_write_text

SCHEMA = "mtlsi-edge/profile@1"
REFERENCE = ("torch", "fp32")

#: CSV columns, in order (one row per target / precision / mode).
CSV_COLUMNS = [
    "name", "target", "precision", "graph", "mode", "device", "threads", "n",
    "min_ms", "mean_ms", "median_ms", "max_ms", "std_ms", "p90_ms", "p95_ms", "p99_ms", "fps",
    "e2e_median_ms", "e2e_p90_ms", "e2e_p99_ms", "pre_ms", "infer_ms", "post_ms",
    "params", "gmacs", "gflops_per_s", "model_file_mb", "peak_rss_mb", "ratio_vs_torch",
]


# -- derived values -----------------------------------------------------------------------
def rows(doc: dict) -> list[dict]:
    """The measured (not skipped) result rows of a document."""
    return [r for r in doc.get("results", []) if not r.get("skipped") and r.get("compute")]


def add_ratios(results: Iterable[dict]) -> None:
    """Set ``ratio_vs_torch`` on each row: speed relative to a torch-fp32 row of its mode —
    the one that ran the same deploy graph (``graph``: batched / per-task) when there is one,
    else the first torch-fp32 row of that mode.

    Latency mode: torch median / row median (compute-only); throughput mode: row FPS /
    torch FPS.  > 1 means faster than PyTorch eager.  None when there is no torch-fp32 row.
    ``ratio_ref`` (JSON) names the reference row's bundle; tables show each row's graph.
    """
    results = list(results)
    same_graph: dict[tuple, dict] = {}
    first: dict[str, dict] = {}
    for r in results:
        if ((r.get("target"), r.get("precision")) == REFERENCE and r.get("compute")
                and not r.get("skipped")):
            same_graph.setdefault((r["mode"], r.get("graph")), r)
            first.setdefault(r["mode"], r)
    for r in results:
        base = same_graph.get((r.get("mode"), r.get("graph"))) or first.get(r.get("mode"))
        r["ratio_vs_torch"] = r["ratio_ref"] = None
        if base is None or r.get("skipped") or not r.get("compute"):
            continue
        r["ratio_ref"] = base.get("bundle") or base.get("name")
        if r["mode"] == "throughput":
            if base.get("fps") and r.get("fps"):
                r["ratio_vs_torch"] = r["fps"] / base["fps"]
        elif r["compute"]["median_ms"] > 0:
            r["ratio_vs_torch"] = base["compute"]["median_ms"] / r["compute"]["median_ms"]


def flat_row(r: dict) -> dict:
    """One row's headline numbers as a flat dict with :data:`CSV_COLUMNS` keys."""
    c = r.get("compute") or {}
    e = r.get("e2e") or {}
    split = e.get("split_ms") or {}
    out = {k: r.get(k) for k in ("name", "target", "precision", "graph", "mode", "device",
                                 "threads", "params", "gmacs", "gflops_per_s",
                                 "model_file_mb", "ratio_vs_torch")}
    out.update({k: c.get(k) for k in ("n", "min_ms", "mean_ms", "median_ms", "max_ms",
                                      "std_ms", "p90_ms", "p95_ms", "p99_ms")})
    out["fps"] = r.get("fps")
    out["e2e_median_ms"] = e.get("median_ms")
    out["e2e_p90_ms"] = e.get("p90_ms")
    out["e2e_p99_ms"] = e.get("p99_ms")
    out["pre_ms"] = split.get("preprocess")
    out["infer_ms"] = split.get("inference")
    out["post_ms"] = split.get("postprocess")
    out["peak_rss_mb"] = (r.get("memory") or {}).get("peak_rss_mb")
    return {k: out.get(k) for k in CSV_COLUMNS}


def _fmt(v, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _label(r: dict) -> str:
    """``name (graph, mode)``: the deploy graph when recorded, the mode unless latency."""
    extra = [x for x in (r.get("graph"),
                         None if r.get("mode", "latency") == "latency" else r["mode"]) if x]
    return r["name"] + (f" ({', '.join(extra)})" if extra else "")


# -- writers ------------------------------------------------------------------------------
def _json_safe(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(doc: dict, path: str | Path) -> Path:
    """The whole document, per-iteration times included (strict JSON: no NaN/Infinity)."""
    return atomic_write_text(path, json.dumps(_json_safe(doc), indent=2, allow_nan=False) + "\n")


def write_csv(doc: dict, path: str | Path) -> Path:
    """One line per measured target / precision / mode with the summary statistics."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows(doc):
        w.writerow({k: ("" if v is None else round(v, 4) if isinstance(v, float) else v)
                    for k, v in flat_row(r).items()})
    return atomic_write_text(path, buf.getvalue())


def markdown(doc: dict) -> str:
    """The report as Markdown: machine header, settings, table, ratios, hot spots, notes."""
    m = doc.get("machine", {})
    isa = ", ".join(k for k, v in (m.get("isa") or {}).items() if v) or "none of interest"
    rt = ", ".join(f"{k} {v}" for k, v in (m.get("runtimes") or {}).items() if v)
    lines = [
        "# mtlsi-edge profile", "",
        f"- created: {doc.get('created', '?')}",
        f"- CPU: {m.get('cpu', '?')} — {m.get('physical_cores', '?')} physical / "
        f"{m.get('logical_cores', '?')} logical cores; ISA: {isa}",
        f"- OS: {m.get('os', '?')}; Python {m.get('python', '?')}; {rt}",
        f"- load average (1/5/15 min) at start: {m.get('load_avg_1_5_15')}",
    ]
    s = doc.get("settings") or {}
    if s:
        lines.append("- settings: " + ", ".join(f"{k}={v}" for k, v in s.items()))
    lines += ["", "Latencies in ms (compute-only: the runtime on a preprocessed batch; e2e: "
              "BGR frame → outputs at frame size). FPS = 1000 / compute median in latency "
              "mode, measured frames/s in throughput mode. Ratio = speed vs torch-fp32 of "
              "the same mode and deploy graph when profiled, else of the same mode "
              "(> 1 is faster). Peak RSS is the whole profiling process's "
              "high-water mark so far (ru_maxrss), so later rows include earlier ones; the JSON "
              "also has the RSS growth while each row ran.", ""]
    head = ["target", "precision", "graph", "mode", "median", "p90", "p99", "FPS", "e2e median",
            "pre / infer / post", "GFLOP/s", "params (M)", "GMACs", "file MB", "peak RSS MB",
            "ratio vs torch"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows(doc):
        f = flat_row(r)
        split = (" / ".join(_fmt(f[k]) for k in ("pre_ms", "infer_ms", "post_ms"))
                 if f["infer_ms"] is not None else "–")
        ratio = f"{f['ratio_vs_torch']:.2f}×" if f["ratio_vs_torch"] else "–"
        params = f["params"] / 1e6 if f["params"] else None
        lines.append("| " + " | ".join([
            f["target"], f["precision"], f["graph"] or "–", f["mode"], _fmt(f["median_ms"]),
            _fmt(f["p90_ms"]),
            _fmt(f["p99_ms"]), _fmt(f["fps"], 1), _fmt(f["e2e_median_ms"]), split,
            _fmt(f["gflops_per_s"], 1), _fmt(params, 3), _fmt(f["gmacs"], 3),
            _fmt(f["model_file_mb"], 1), _fmt(f["peak_rss_mb"], 0), ratio]) + " |")
    for r in rows(doc):
        t = r.get("throughput")
        if t:
            lines += ["", f"Throughput {_label(r)}: {t['fps']:.1f} frames/s over "
                          f"{t['wall_s']:.2f} s ({t['how']})."]
    for r in rows(doc):
        pl = r.get("per_layer")
        if not pl:
            continue
        lines += ["", f"## Hot spots: {_label(r)}", "",
                  f"{pl['source']}; {pl['iterations']} iterations, sum of node times "
                  f"{pl['total_ms']:.2f} ms per inference (profiling adds overhead; "
                  f"shares matter more than absolute values).", "",
                  "| part | ms | share |", "|---|---|---|"]
        lines += [f"| {p} | {d['ms']:.3f} | {100 * d['share']:.1f} % |"
                  for p, d in pl["parts"].items()]
        lines += ["", "| node | type | part | ms | share |", "|---|---|---|---|---|"]
        lines += [f"| `{n['name']}` | {n['type']} | {n['part']} | {n['ms']:.3f} | "
                  f"{100 * n['share']:.1f} % |" for n in pl["top"]]
    notes = list(doc.get("notes") or [])
    for r in doc.get("results", []):
        if r.get("skipped"):
            notes.append(f"{_label(r)} skipped: {r['skipped']}")
        notes += [f"{_label(r)}: {n}" for n in r.get("notes") or []]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def write_markdown(doc: dict, path: str | Path) -> Path:
    """:func:`markdown` written atomically."""
    return atomic_write_text(path, markdown(doc))


#: Terminal columns: header → value from a :func:`flat_row` (formatted).
def _split(f: dict) -> str:
    if f["infer_ms"] is None:
        return "–"
    return "/".join(_fmt(f[k], 1) for k in ("pre_ms", "infer_ms", "post_ms"))


_TERMINAL_COLUMNS = {
    "target": lambda f: f["target"],
    "prec": lambda f: f["precision"],
    "graph": lambda f: f["graph"] or "–",
    "mode": lambda f: {"latency": "lat", "throughput": "tput"}.get(f["mode"], f["mode"]),
    "median": lambda f: _fmt(f["median_ms"]),
    "p90": lambda f: _fmt(f["p90_ms"]),
    "p99": lambda f: _fmt(f["p99_ms"]),
    "FPS": lambda f: _fmt(f["fps"], 0),
    "e2e med": lambda f: _fmt(f["e2e_median_ms"]),
    "pre/infer/post": _split,
    "GFLOP/s": lambda f: _fmt(f["gflops_per_s"], 1),
    "vs torch": lambda f: f"{f['ratio_vs_torch']:.2f}×" if f["ratio_vs_torch"] else "–",
}
_KEYS = ("target", "prec", "graph", "mode")
#: Below this console width the table is split in two (compute-only, then end-to-end).
WIDE = 116


def _table(doc: dict, title: str, columns: list[str]):
    t = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    for c in columns:
        t.add_column(c, justify="left" if c in _KEYS else "right", no_wrap=True)
    for r in rows(doc):
        f = flat_row(r)
        t.add_row(*(_TERMINAL_COLUMNS[c](f) for c in columns))
    return t


def terminal_tables(doc: dict, width: int = WIDE) -> list:
    """``rich`` tables of the headline numbers for a console ``width`` columns wide.

    Target, precision, mode, compute-only median / p90 / p99 (ms), FPS, end-to-end median
    (ms) with its pre / infer / post split, achieved GFLOP/s and speed vs torch-fp32 — in one
    table when it fits, else two.
    """
    cols = list(_TERMINAL_COLUMNS)
    e2e = ["e2e med", "pre/infer/post"]
    tput = any(r["mode"] == "throughput" for r in rows(doc))
    title = "compute-only latency (ms)" + ("; tput rows: per request under concurrent load, "
                                           "FPS measured" if tput else "")
    if not any(r.get("e2e") for r in rows(doc)):
        return [_table(doc, title, [c for c in cols if c not in e2e])]
    if width >= WIDE:
        return [_table(doc, "latency in ms: compute-only, end-to-end (e2e) on a BGR frame",
                       cols)]
    return [_table(doc, title, [c for c in cols if c not in e2e]),
            _table(doc, "end-to-end latency on a BGR frame (ms)", [*_KEYS, *e2e])]


def hotspot_table(row: dict, top: int = 10):
    """A ``rich.table.Table`` of one row's per-part times and top nodes (per-layer profile)."""
    pl = row["per_layer"]
    t = Table(title=f"hot spots: {_label(row)} ({pl['source']}, "
                    f"{pl['total_ms']:.2f} ms/inference summed over nodes)")
    t.add_column("part / node")
    t.add_column("type")
    t.add_column("ms", justify="right")
    t.add_column("share", justify="right")
    for p, d in pl["parts"].items():
        t.add_row(f"[bold]{p}", "", f"{d['ms']:.3f}", f"{100 * d['share']:.1f} %")
    for n in pl["top"][:top]:
        name = n["name"] if len(n["name"]) <= 70 else "…" + n["name"][-69:]
        t.add_row(name, n["type"], f"{n['ms']:.3f}", f"{100 * n['share']:.1f} %")
    return t


def write_all(doc: dict, json_path: str | Path | None = None, csv_path: str | Path | None = None,
              md_path: str | Path | None = None, plot_dir: str | Path | None = None,
              plotter: Callable[[dict, Path], list[Path]] | None = None
              ) -> dict[str, list[Path]]:
    """Write every report that has a destination; returns ``{kind: [paths]}``.  Plots need a
    ``plotter`` (:func:`mtlsi_edge.profiler.plots.write_plots`, which needs matplotlib: not
    part of the device's runtime install)."""
    out: dict[str, list[Path]] = {}
    if json_path:
        out["json"] = [write_json(doc, json_path)]
    if csv_path:
        out["csv"] = [write_csv(doc, csv_path)]
    if md_path:
        out["md"] = [write_markdown(doc, md_path)]
    if plot_dir and plotter is not None:
        out["plots"] = plotter(doc, Path(plot_dir))
    return out
