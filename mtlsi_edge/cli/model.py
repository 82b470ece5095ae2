"""``info`` (variants, params, MACs) and ``export`` (ONNX + parity)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mtlsi_edge.cli.app import app, console, fail, print_path
from mtlsi_edge.cli.options import check_variant, parse_size
from mtlsi_edge.cli.tables import complexity_table, parity_table, variants_table
from mtlsi_edge.fileio import check_output_file


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
        console.print(variants_table(rows))
        console.print("Details: [bold]mtlsi-edge info NAME[/] (add --latency to time it).")
        return

    check_variant(variant)
    hw = parse_size(size) if size else tuple(VARIANTS[variant].config.input_size)
    from mtlsi_edge.model.complexity import variant_report

    what = " and timing PyTorch eager FP32" if latency else ""
    with console.status(f"building {variant}, counting MACs at {hw[0]}×{hw[1]}{what}…"):
        rep = variant_report(variant, hw, latency)
    if as_json:
        print(json.dumps(rep, indent=2))
        return
    from mtlsi_edge.tasks import get_task_set

    ts = VARIANTS[variant].config.task_set
    console.print(complexity_table(rep, f"{variant} @ {hw[0]}×{hw[1]} ({ts}: "
                                        f"{', '.join(get_task_set(ts).names)})"))
    if latency:
        console.print(f"PyTorch eager FP32: [bold]{rep['eager_fp32_ms']:.1f} ms[/] median "
                      f"(batch 1, {rep['threads']} threads)")


@app.command()
def export(
    checkpoint: Path = typer.Option(None, help="Checkpoint; default: the embedded starter."),
    variant: str = typer.Option(None, help="Export a variant with random weights instead."),
    out: Path = typer.Option(Path("runs/export/model.onnx"), help="Output .onnx file."),
    dynamic: bool = typer.Option(False, help="Symbolic N×H×W (else fixed at the input size)."),
    stride: int = typer.Option(4, help="Output stride of the deployed graph: 4 or 1."),
    graph: str = typer.Option(None, help="batched | per-task deploy graph (default: the "
                              "checkpoint's own setting; compile picks per target)."),
) -> None:
    """Export the deploy graph to ONNX and print its parity against PyTorch.

    Examples:
      mtlsi-edge export --out runs/export/edge.onnx
      mtlsi-edge export --variant edge-mbv3 --dynamic --out runs/export/mbv3-dyn.onnx
    """
    from mtlsi_edge.compiler import export_with_parity
    from mtlsi_edge.weights import starter_checkpoint

    if stride not in (1, 4):
        fail("--stride must be 1 or 4")
    check_output_file(out, (".onnx",), "--out file")
    if variant:
        import torch

        from mtlsi_edge.model import create_model

        check_variant(variant)
        torch.manual_seed(0)
        model = create_model(variant).eval()
    else:
        from mtlsi_edge.train.checkpoint import build_from_checkpoint

        model, _ = build_from_checkpoint(checkpoint or starter_checkpoint())
    runs = model.use_graph(graph) if graph is not None else model.graph
    with console.status("exporting…"):
        path, rep, report = export_with_parity(model, out, dynamic=dynamic, stride=stride)
    console.print(parity_table(rep, "ONNX Runtime vs PyTorch (4 SynthIndoor renders)"))
    print_path("onnx", path, f" ({runs} graph)  parity report: {report}")
