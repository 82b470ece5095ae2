"""``tune``: the most accurate bundle within a latency budget."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from mtlsi_edge.cli.app import app, console, fail
from mtlsi_edge.cli.options import parse_size
from mtlsi_edge.fileio import check_output_dir, refuse_existing
from mtlsi_edge.weights import starter_checkpoint


@app.command()
def tune(
    budget: str = typer.Option(..., help="Latency budget: 25ms, 25 (ms) or 0.025s."),
    target: str = typer.Option("openvino", help="openvino | onnxruntime"),
    checkpoint: Path = typer.Option(None, help="Checkpoint (default: the embedded starter)."),
    val: Path = typer.Option(None, help="Labelled dataset: score by its metrics (else "
                                        "label-free parity with FP32 at full size)."),
    val_limit: int = typer.Option(20, min=1, help="Validation images per candidate."),
    max_minutes: float = typer.Option(10.0, help="Stop starting candidates after this."),
    frame_size: str = typer.Option("480x640", help="HxW of the frames the latency is "
                                                   "measured on."),
    out: Path = typer.Option(Path("runs/tune"), help="Output folder."),
    scale: list[float] = typer.Option([], help="Resolution scale of the training size "
                                               "(repeatable; default 1.0 0.8 0.67 0.5)."),
    min_side: int = typer.Option(64, min=32, help="Smallest side of a candidate size."),
    precision: list[str] = typer.Option([], help="Precision to try (repeatable; default: "
                                                 "all the target supports)."),
    threads: list[int] = typer.Option([], help="Inference threads to try (repeatable; "
                                               "default 1 2)."),
    hint: list[str] = typer.Option([], help="Performance hint to try (repeatable; default "
                                            "latency)."),
    time_per_candidate: float = typer.Option(2.0, help="Seconds of timed calls per "
                                                       "candidate."),
    n_calib: int = typer.Option(32, min=1, help="INT8 calibration samples."),
    gate: list[str] = typer.Option([], "--gate", help="Parity threshold override TASK=VALUE "
                                                      "(repeatable; see docs/trust.md)."),
    overwrite: bool = typer.Option(False, help="Replace an existing report (pareto.*) in "
                                               "--out."),
    sign: Path = typer.Option(None, help="Sign the chosen bundle with this Ed25519 private "
                                         "key (mtlsi-edge keys new)."),
) -> None:
    """The most accurate bundle whose end-to-end median latency meets --budget here.

    Searches resolution × precision × threads/hint, gates every bundle, writes
    OUT/pareto.{md,csv,png} and the chosen bundle in OUT/bundle; exits 3 when nothing meets
    the budget (naming the fastest candidate).

    Example:
      mtlsi-edge tune --target openvino --budget 25ms --out runs/tune
    """
    from mtlsi_edge.bundle import check_destination
    from mtlsi_edge.compiler import sign_written
    from mtlsi_edge.signing import load_private_key
    from mtlsi_edge.tune import DEFAULT_SCALES, TuneRequest, parse_budget, summary_line
    from mtlsi_edge.tune import tune as run_tune
    from mtlsi_edge.verify import parse_gate_overrides

    budget_ms = parse_budget(budget)
    if not (max_minutes > 0):
        fail(f"bad --max-minutes {max_minutes}: must be > 0")
    if not (time_per_candidate > 0):
        fail(f"bad --time-per-candidate {time_per_candidate}: must be > 0")
    fsize = parse_size(frame_size)
    check_output_dir(out)
    refuse_existing([out / f"pareto.{ext}" for ext in ("md", "csv", "png")], overwrite)
    check_destination(out / "bundle")  # a folder that is not a bundle is never replaced
    overrides = parse_gate_overrides(gate)
    if sign is not None:
        load_private_key(sign)  # before any work
    req = TuneRequest(target, budget_ms, frame_size=fsize, max_minutes=max_minutes,
                      scales=tuple(scale or DEFAULT_SCALES), min_side=min_side,
                      precisions=tuple(precision) or None, threads=tuple(threads or (1, 2)),
                      hints=tuple(hint or ("latency",)), time_s=time_per_candidate, val=val,
                      val_limit=val_limit, n_calib=n_calib, gate=overrides)
    res = run_tune(checkpoint or starter_checkpoint(), req, out, console=console)
    if res["stopped"]:
        console.print(f"search stopped at --max-minutes {max_minutes:g}")
    console.print(escape(f"pareto: {out / 'pareto.md'}, {out / 'pareto.csv'}, "
                         f"{out / 'pareto.png'}"), highlight=False)
    if sign is not None and res.get("bundle"):
        console.print(escape(f"signed {res['bundle']} with key "
                             f"{sign_written(res['bundle'], sign)}"), highlight=False)
    console.print(escape(summary_line(res)), highlight=False, soft_wrap=True)
