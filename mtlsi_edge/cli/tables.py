"""Rich tables the commands print (presentation only)."""

from __future__ import annotations

from rich.table import Table


def variants_table(rows: list[dict]) -> Table:
    t = Table(title="MTLSI-Net variants")
    for col in ("name", "kind", "backbone", "input", "description"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["name"], "edge" if r["edge"] else "paper", r["backbone"],
                  "×".join(map(str, r["input_size"])), r["description"])
    return t


def complexity_table(rep: dict, title: str) -> Table:
    t = Table(title=title)
    t.add_column("part")
    t.add_column("params (M)", justify="right")
    t.add_column("GMACs", justify="right")
    for part, d in rep["parts"].items():
        t.add_row(part, f"{d['params'] / 1e6:.3f}", f"{d['gmacs']:.3f}")
    t.add_row("[bold]total", f"[bold]{rep['params'] / 1e6:.3f}", f"[bold]{rep['gmacs']:.3f}")
    return t


def gate_table(rows: list[dict], title: str) -> Table:
    t = Table(title=title)
    for c in ("task", "measure", "value", "threshold", "ok"):
        t.add_column(c, justify="right")
    for r in rows:
        op = "≥" if r["higher_is_better"] else "≤"
        t.add_row(r["task"], r["measure"], f"{r['value']:.4g}{r['unit']}",
                  f"{op} {r['threshold']:g}{r['unit']}", "[green]yes" if r["ok"] else "[red]NO")
    return t


def parity_table(rep: dict, title: str) -> Table:
    t = Table(title=title)
    for c in ("output", "max abs err", "mean abs err", "argmax agree %", "normals angle °"):
        t.add_column(c, justify="right")
    for name, d in rep.items():
        ang = (f"{d['angle_mean_deg']:.3g} (max {d['angle_max_deg']:.3g})"
               if "angle_mean_deg" in d else "")
        agree = f"{d['argmax_agree_pct']:.2f}" if "argmax_agree_pct" in d else ""
        t.add_row(name, f"{d['max_abs']:.3g}" if "max_abs" in d else "labels",
                  f"{d['mean_abs']:.3g}" if "mean_abs" in d else "", agree, ang)
    return t


def drops_table(rep: dict) -> Table:
    t = Table(title="FP32 vs INT8 (headline metric per task)")
    for c in ("task", "metric", "fp32", "int8", "drop", "budget", "ok"):
        t.add_column(c, justify="right")
    for name, d in rep.items():
        ok = d.get("ok")
        t.add_row(name, d["metric"], f"{d['fp32']:.4g}", f"{d['quantized']:.4g}",
                  f"{d['drop']:+.4g}{'%' if d.get('relative') else ''}", d.get("budget", ""),
                  "" if ok is None else ("[green]yes" if ok else "[red]NO"))
    return t


def metrics_table(res: dict, task_set) -> Table:
    t = Table(title="per-task metrics (boundary odsF: Python approximation of SEISM)")
    t.add_column("task")
    t.add_column("headline", justify="right")
    t.add_column("all")
    for task in task_set:
        m = res[task.name]
        arrow = "↑" if task.higher_is_better else "↓"
        t.add_row(task.name, f"{task.metric_name} {m[task.metric_name]:.4g} {arrow}",
                  ", ".join(f"{k} {v:.4g}" for k, v in m.items()))
    return t


def prune_table(res: dict, method: str, ratio: float, tasks) -> Table:
    """Before/after pruning; one column per task of the checkpoint's own task set (its
    headline metric)."""
    t = Table(title=f"pruning: {method} {ratio:.0%}")
    for c in ("", "params (M)", "GMACs", "eager ms", "ORT ms",
              *(f"{x.name} {x.metric_name}" for x in tasks)):
        t.add_column(c, justify="right")
    for k in ("before", "after"):
        d = res[k]
        m = d["metrics"]
        t.add_row(k, f"{d['params'] / 1e6:.3f}", f"{d['gmacs']:.3f}", f"{d['eager_ms']:.1f}",
                  f"{d['ort_ms']:.1f}", *(f"{m[x.name][x.metric_name]:.3g}" for x in tasks))
    return t
