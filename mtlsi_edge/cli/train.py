"""``train`` and ``eval``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer
from rich.markup import escape

from mtlsi_edge.cli.app import app, console, fail, print_path
from mtlsi_edge.cli.tables import metrics_table


def _recipe_help() -> str:
    from mtlsi_edge.train.recipes import RECIPES

    return ("Named schedule (explicit options override it; --show-recipe prints it). "
            + "; ".join(f"{r.name}: {r.summary}" for r in RECIPES.values()))


@app.command()
def train(
    data: Path = typer.Option(None, help="Dataset folder (NYUD or PASCAL-MT layout)."),
    out: Path = typer.Option(Path("runs/train/exp"), help="Run folder (checkpoints, log)."),
    recipe: str = typer.Option(None, help=_recipe_help()),
    show_recipe: bool = typer.Option(False, "--show-recipe",
                                     help="Print the --recipe's settings and exit."),
    variant: str = typer.Option(None, help="Model variant (mtlsi-edge info) "
                                           "[default: edge-effvit-b0-v2, or the recipe's]."),
    steps: int = typer.Option(None, min=1, help="[default: 2000]"),
    batch_size: int = typer.Option(None, min=1, help="Per process. [default: 8]"),
    lr: float = typer.Option(None, help="[default: 1e-3]"),
    weight_decay: float = typer.Option(None, help="[default: 1e-4]"),
    optimizer: str = typer.Option(None, help="adam | adamw [default: adamw]"),
    schedule: str = typer.Option(None, help="poly | cosine [default: poly]"),
    warmup: int = typer.Option(None, help="Linear warm-up steps. [default: 100]"),
    scale: str = typer.Option(None, help="Random scale range lo,hi. [default: 0.5,2.0]"),
    amp: bool = typer.Option(True, "--amp/--no-amp",
                             help="CUDA autocast: BF16 where supported, else FP16."),
    seed: int = typer.Option(0),
    workers: int = typer.Option(2, min=0),
    ckpt_every: int = typer.Option(200, min=1),
    set_: list[str] = typer.Option([], "--set", help="Model config override KEY=VALUE (JSON)."),
    resume: bool = typer.Option(False, help="Continue the run in --out from its last checkpoint."),
) -> None:
    """Train MTLSI-Net (DDP when launched with torchrun).  Checkpoints: OUT/last.*

    Examples:
      mtlsi-edge train --data data/synth --steps 4000 --out runs/train/edge
      mtlsi-edge train --recipe paper-nyud --show-recipe
      mtlsi-edge train --recipe paper-nyud --data /data/NYUDv2 --out runs/train/nyud
      mtlsi-edge train --out runs/train/edge --resume
      torchrun --nproc_per_node 2 -m mtlsi_edge.cli train --data data/synth --workers 0
    """
    if show_recipe:
        from mtlsi_edge.train.recipes import get_recipe

        if recipe is None:
            fail("--show-recipe needs --recipe NAME")
        for line in get_recipe(recipe).lines():
            console.print(line, highlight=False, soft_wrap=True)
        return
    from mtlsi_edge.train.engine import train as run_train
    from mtlsi_edge.train.options import train_config

    options = {"variant": variant, "steps": steps, "batch_size": batch_size, "lr": lr,
               "weight_decay": weight_decay, "optimizer": optimizer, "schedule": schedule,
               "warmup_steps": warmup}
    cfg = train_config(data, out, recipe, options, scale, set_, resume, amp=amp, seed=seed,
                       workers=workers, ckpt_every=ckpt_every)
    last = run_train(cfg, resume=resume, console=console)
    print_path("checkpoint", last)


@app.command("eval")
def eval_(
    checkpoint: Path = typer.Option(None, help="Checkpoint (.json or .safetensors); "
                                              "default: the embedded starter model."),
    bundle: Path = typer.Option(None, help="Evaluate a compiled bundle instead (any target "
                                          "and precision), through the Predictor."),
    data: Path = typer.Option(..., help="Dataset folder."),
    split: str = typer.Option("val"),
    batch_size: int = typer.Option(4, min=1),
    limit: int = typer.Option(None, min=1, help="Evaluate the first N images only."),
    as_json: bool = typer.Option(False, "--json"),
    boundary_protocol: str = typer.Option(
        "seism-nms", help="Boundary odsF/oisF/AP reader: seism-nms (SEISM's contour reader with "
                          "non-maximum suppression, as behind InvPT-lineage NYUD tables) or mtl "
                          "(Multi-Task-Learning-PyTorch's, no NMS); docs/evaluation.md."),
) -> None:
    """Per-task metrics of a checkpoint or a compiled bundle on a dataset split (pooled).

    Examples:
      mtlsi-edge eval --checkpoint runs/train/edge/last.json --data data/synth
      mtlsi-edge eval --bundle runs/compile/openvino-int8 --data data/synth --limit 200
    """
    if bundle is not None and checkpoint is not None:
        fail("give --checkpoint or --bundle, not both")
    from mtlsi_edge.metrics import BOUNDARY_FLAVOURS

    if boundary_protocol not in BOUNDARY_FLAVOURS:
        fail(f"unknown --boundary-protocol {boundary_protocol!r}; choose "
             f"{' or '.join(BOUNDARY_FLAVOURS)}")
    if bundle is not None:
        from mtlsi_edge.evaluation import evaluate_bundle

        with console.status("evaluating the bundle…"):
            res, task_set = evaluate_bundle(bundle, data, split, limit,
                                            boundary_flavour=boundary_protocol)
    else:
        from mtlsi_edge.evaluation import evaluate_checkpoint
        from mtlsi_edge.weights import starter_checkpoint

        res, task_set = evaluate_checkpoint(checkpoint or starter_checkpoint(), data, split,
                                            batch_size, limit=limit, progress=not as_json,
                                            boundary_flavour=boundary_protocol)
    # A task without any valid pixel in the split scores NaN (undefined), never a score.
    empty = [name for name, m in res.items() if all(math.isnan(v) for v in m.values())]
    if as_json:
        print(json.dumps({name: {k: None if math.isnan(v) else v for k, v in m.items()}
                          for name, m in res.items()}, indent=2))
        return
    console.print(metrics_table(res, task_set))
    if any(t.spec.needs_max_dist for t in task_set):
        console.print(f"boundary metrics: SEISM protocol, {boundary_protocol} reader",
                      highlight=False)
    for name in empty:
        console.print(escape(f"{name}: no valid pixels in split {split!r} (metrics are NaN)"),
                      style="yellow")
