"""The ``mtlsi-edge`` command line (typer + rich).

Every command is a thin wrapper over one module; errors users can cause are reported as one
line and a non-zero exit (see :func:`fail`), never a traceback.
"""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="mtlsi-edge",
    help="MTLSI-Net multi-task dense prediction: train, quantise, compile and run on edge devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Render or inspect datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console()
err_console = Console(stderr=True)


class UserError(Exception):
    """A problem with the user's input: reported as one line, exit code 2."""


def fail(msg: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _variant_or_fail(name: str):
    from mtlsi_edge.model import VARIANTS

    if name not in VARIANTS:
        fail(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    return VARIANTS[name]


@app.command()
def info(
    variant: str = typer.Argument(None, help="Variant name; omit to list all variants."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    latency: bool = typer.Option(
        False, "--latency", help="Also measure PyTorch eager FP32 latency (median of 20 runs)."
    ),
    size: str = typer.Option(None, help="Input size HxW (default: the variant's)."),
) -> None:
    """Params and GMACs per part of a variant, or the list of variants.

    Examples:
      mtlsi-edge info
      mtlsi-edge info edge-effvit-b0 --latency
      mtlsi-edge info paper-swin-l --json
    """
    from mtlsi_edge.model import VARIANTS

    if variant is None:
        rows = [
            {"name": v.name, "edge": v.edge, "backbone": v.config.backbone,
             "input_size": list(v.config.input_size), "task_set": v.config.task_set,
             "description": v.description}
            for v in VARIANTS.values()
        ]
        if as_json:
            print(json.dumps(rows, indent=2))
            return
        t = Table(title="MTLSI-Net variants")
        for col in ("name", "kind", "backbone", "input", "description"):
            t.add_column(col)
        for r in rows:
            t.add_row(r["name"], "edge" if r["edge"] else "paper", r["backbone"],
                      "×".join(map(str, r["input_size"])), r["description"])
        console.print(t)
        console.print("Details: [bold]mtlsi-edge info NAME[/] (add --latency to time it).")
        return

    v = _variant_or_fail(variant)
    hw = _parse_size(size) if size else tuple(v.config.input_size)
    import torch

    from mtlsi_edge.model import create_model
    from mtlsi_edge.model.complexity import eager_latency_ms, model_report

    torch.manual_seed(0)
    with console.status(f"building {variant} and counting MACs at {hw[0]}×{hw[1]}…"):
        model = create_model(variant)
        rep = model_report(model, hw)
    rep = {"variant": variant, "config": model.cfg.to_dict(), **rep}
    if latency:
        with console.status("timing PyTorch eager FP32…"):
            rep["eager_fp32_ms"] = eager_latency_ms(model, hw)
        rep["threads"] = torch.get_num_threads()
    if as_json:
        print(json.dumps(rep, indent=2))
        return
    t = Table(title=f"{variant} @ {hw[0]}×{hw[1]} ({v.config.task_set}: "
                    f"{', '.join(model.task_set.names)})")
    t.add_column("part")
    t.add_column("params (M)", justify="right")
    t.add_column("GMACs", justify="right")
    for part, d in rep["parts"].items():
        t.add_row(part, f"{d['params'] / 1e6:.3f}", f"{d['gmacs']:.3f}")
    t.add_row("[bold]total", f"[bold]{rep['params'] / 1e6:.3f}", f"[bold]{rep['gmacs']:.3f}")
    console.print(t)
    if latency:
        console.print(f"PyTorch eager FP32: [bold]{rep['eager_fp32_ms']:.1f} ms[/] median "
                      f"(batch 1, {rep['threads']} threads)")


def _parse_size(s: str) -> tuple[int, int]:
    try:
        h, w = (int(x) for x in s.lower().split("x"))
        if h < 32 or w < 32:
            raise ValueError
        return h, w
    except ValueError:
        fail(f"bad size {s!r}: expected HxW with both ≥ 32, e.g. 240x320")
        raise  # unreachable


def main() -> None:  # pragma: no cover - console script entry
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()

