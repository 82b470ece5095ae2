"""The ``mtlsi-edge`` command line (typer + rich).

Every command is a thin wrapper over one module; errors users can cause are reported as one
line and a non-zero exit (see :func:`fail`), never a traceback.
"""

from __future__ import annotations

import errno
import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from mtlsi_edge.errors import MtlsiError
from mtlsi_edge.fileio import atomic_write_json, check_output_dir, check_output_file

#: OS errors that come from the user's machine (disk full, file too large, permissions, a
#: read-only or missing place), not from our code: reported as one line naming the path.
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM,
                      errno.EROFS, errno.ENAMETOOLONG}


class _Commands(TyperGroup):
    """Every command runs here: user errors (:class:`MtlsiError`, and OS errors caused by the
    machine) become one line and their exit code; everything else keeps its traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             **extra):
        """Usage errors (a bad option value, a missing argument) as one line too, instead of
        click's boxed multi-line panel."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except typer.Abort:
            err_console.print("aborted")
            sys.exit(1)
        except typer.TyperException as e:  # typer's (vendored) click usage errors
            if type(e).__name__ == "NoArgsIsHelpError":
                console.print(e.ctx.get_help(), highlight=False)
                sys.exit(e.exit_code)
            if not hasattr(e, "format_message"):
                raise
            ctx = getattr(e, "ctx", None)
            _print_error(e.format_message() + (f" (see: {ctx.command_path} --help)" if ctx
                                               else ""))
            sys.exit(e.exit_code)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MtlsiError as e:
            fail(str(e), code=e.exit_code)
        except OSError as e:
            if e.errno not in ENVIRONMENT_ERRNOS:
                raise
            where = e.filename if e.filename is not None else ""
            fail(f"{where}: {e.strerror}" if where else (e.strerror or str(e)))


app = typer.Typer(
    cls=_Commands,
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


def _print_error(msg: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(' '.join(str(msg).split()))}",
                      highlight=False, soft_wrap=True)


def fail(msg: str, code: int = 2) -> None:
    """One line on stderr and exit ``code``; ``msg`` is user text, never markup."""
    _print_error(msg)
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
    from mtlsi_edge.model.complexity import model_report
    from mtlsi_edge.profiler.eager import eager_latency_ms

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


@data_app.command("synth")
def data_synth(
    out: Path = typer.Option(..., "--out", help="Output folder (NYUD 'NYUDv2' layout)."),
    n: int = typer.Option(200, "--n", min=1, help="Number of images."),
    size: str = typer.Option("240x320", help="Image size HxW."),
    seed: int = typer.Option(0, help="Dataset seed (sample i is a pure function of seed, i)."),
    val_fraction: float = typer.Option(0.2, min=0.0, max=0.9, help="Share of ids in val."),
    walkthrough: bool = typer.Option(True, help="Also render walkthrough.mp4 (a camera path)."),
) -> None:
    """Render SynthIndoor: RGB + NYUD-40 labels, depth, normals and boundaries, exact GT.

    Examples:
      mtlsi-edge data synth --n 2000 --out data/synth
      mtlsi-edge data synth --n 50 --size 120x160 --seed 3 --out /tmp/tiny
    """
    from rich.progress import Progress

    from mtlsi_edge.data.synthindoor import render_walkthrough, write_dataset

    hw = _parse_size(size)
    check_output_dir(out)
    with Progress(console=console) as prog:
        bar = prog.add_task("rendering", total=n)
        root = write_dataset(out, n=n, size=hw, seed=seed, val_fraction=val_fraction,
                             progress=lambda k, _n: prog.update(bar, completed=k))
    console.print(f"dataset: [bold]{root}[/]")
    if walkthrough:
        video = render_walkthrough(Path(out) / "walkthrough.mp4", size=hw, seed=seed)
        console.print(f"walkthrough video: [bold]{video}[/]")


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
                                           "[default: edge-effvit-b0, or the recipe's]."),
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
    from mtlsi_edge.train.checkpoint import CheckpointError
    from mtlsi_edge.train.engine import PretrainedUnavailable, TrainConfig
    from mtlsi_edge.train.engine import train as run_train
    from mtlsi_edge.train.recipes import get_recipe

    settings = {"variant": "edge-effvit-b0", "steps": 2000, "batch_size": 8, "lr": 1e-3,
                "weight_decay": 1e-4, "optimizer": "adamw", "schedule": "poly",
                "warmup_steps": 100, "scale": (0.5, 2.0)}
    overrides = {}
    if recipe is not None:
        try:
            r = get_recipe(recipe)
        except KeyError as e:
            fail(str(e).strip("'\""))
        if show_recipe:
            for line in r.lines():
                console.print(line, highlight=False, soft_wrap=True)
            return
        settings.update(r.train, variant=r.variant)
        overrides.update(r.model)
    elif show_recipe:
        fail("--show-recipe needs --recipe NAME")
    given = {"variant": variant, "steps": steps, "batch_size": batch_size, "lr": lr,
             "weight_decay": weight_decay, "optimizer": optimizer, "schedule": schedule,
             "warmup_steps": warmup}
    settings.update({k: v for k, v in given.items() if v is not None})
    if scale is not None:
        try:
            lo, hi = (float(x) for x in scale.split(","))
        except ValueError:
            fail(f"bad --scale {scale!r}: expected lo,hi e.g. 0.5,2.0")
        if not 0 < lo <= hi:
            fail(f"bad --scale {scale!r}: needs 0 < lo ≤ hi, e.g. 0.5,2.0")
        settings["scale"] = (lo, hi)
    if not resume:
        _variant_or_fail(settings["variant"])
        if data is None:
            fail("--data is required (a NYUD/PASCAL folder, or render one: mtlsi-edge data synth)")
        if settings["optimizer"] not in ("adam", "adamw") or settings["schedule"] not in (
                "poly", "cosine"):
            fail("--optimizer must be adam|adamw and --schedule poly|cosine")
    check_output_dir(out, "run folder")
    if not resume and (Path(out) / "last.json").exists():
        fail(f"{out} already holds a run (last.json): continue it with --resume, or choose a "
             f"new --out")
    for kv in set_:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            fail(f"bad --set {kv!r}: expected KEY=VALUE, e.g. num_tokens=32")
        try:
            overrides[k] = json.loads(v)
        except json.JSONDecodeError:
            overrides[k] = v
    if not resume:
        from mtlsi_edge.model.mtlsi import check_config_values

        check_config_values(overrides)
    cfg = TrainConfig(data=str(data), out=str(out), model_overrides=overrides, amp=amp,
                      seed=seed, workers=workers, ckpt_every=ckpt_every, **settings)
    try:
        last = run_train(cfg, resume=resume, console=console)
    except (CheckpointError, PretrainedUnavailable) as e:
        fail(str(e))
    console.print(f"checkpoint: [bold]{last}[/]")


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
) -> None:
    """Per-task metrics of a checkpoint or a compiled bundle on a dataset split (pooled).

    Examples:
      mtlsi-edge eval --checkpoint runs/train/edge/last.json --data data/synth
      mtlsi-edge eval --bundle runs/compile/openvino-int8 --data data/synth --limit 200
    """
    import math

    from mtlsi_edge.bundle import BundleError
    from mtlsi_edge.data.datasets import DatasetError
    from mtlsi_edge.targets import ModelMismatch, TargetUnavailable
    from mtlsi_edge.train.checkpoint import CheckpointError, build_from_checkpoint
    from mtlsi_edge.train.engine import evaluate

    if bundle is not None and checkpoint is not None:
        fail("give --checkpoint or --bundle, not both")
    try:
        if bundle is not None:
            from mtlsi_edge.quantize.accuracy import evaluate_predictor, load_val_set
            from mtlsi_edge.runtime.predictor import Predictor

            predictor = Predictor.from_bundle(bundle)
            task_set = predictor.task_set
            with console.status("reading the split…"):
                val = load_val_set(str(data), split, task_set, predictor.input_size, limit)
            with console.status(f"evaluating {len(val.frames)} images…"):
                res = evaluate_predictor(predictor, val)
        else:
            model, doc = build_from_checkpoint(checkpoint or default_checkpoint())
            task_set = model.task_set
            res = evaluate(model, str(data), split, batch_size, limit=limit,
                           progress=not as_json)
    except (CheckpointError, DatasetError, BundleError, TargetUnavailable, ModelMismatch,
            FileNotFoundError) as e:
        fail(str(e))
    # A task without any valid pixel in the split scores NaN (undefined), never a score.
    empty = [name for name, m in res.items() if all(math.isnan(v) for v in m.values())]
    if as_json:
        print(json.dumps({name: {k: None if math.isnan(v) else v for k, v in m.items()}
                          for name, m in res.items()}, indent=2))
        return
    console.print(metrics_table(res, task_set))
    for name in empty:
        console.print(escape(f"{name}: no valid pixels in split {split!r} (metrics are NaN)"),
                      style="yellow")


@app.command()
def export(
    checkpoint: Path = typer.Option(None, help="Checkpoint; default: the embedded starter."),
    variant: str = typer.Option(None, help="Export a variant with random weights instead."),
    out: Path = typer.Option(Path("runs/export/model.onnx"), help="Output .onnx file."),
    dynamic: bool = typer.Option(False, help="Symbolic N×H×W (else fixed at the input size)."),
    stride: int = typer.Option(4, help="Output stride of the deployed graph: 4 or 1."),
) -> None:
    """Export the deploy graph to ONNX and print its parity against PyTorch.

    Examples:
      mtlsi-edge export --out runs/export/edge.onnx
      mtlsi-edge export --variant edge-mbv3 --dynamic --out runs/export/mbv3-dyn.onnx
    """
    import torch

    from mtlsi_edge.bundle import _run_each, reference_inputs
    from mtlsi_edge.export import export_onnx, parity_report
    from mtlsi_edge.targets import CompileOptions
    from mtlsi_edge.targets.onnxruntime import ORTRunner
    from mtlsi_edge.targets.torch import TorchRunner
    from mtlsi_edge.train.checkpoint import CheckpointError, build_from_checkpoint

    if stride not in (1, 4):
        fail("--stride must be 1 or 4")
    check_output_file(out, (".onnx",), "--out file")
    try:
        if variant:
            from mtlsi_edge.model import create_model

            _variant_or_fail(variant)
            torch.manual_seed(0)
            model = create_model(variant).eval()
        else:
            model, _ = build_from_checkpoint(checkpoint or default_checkpoint())
    except CheckpointError as e:
        fail(str(e))
    with console.status("exporting…"):
        path = export_onnx(model, out, dynamic=dynamic, stride=stride)
    x = reference_inputs(tuple(model.cfg.input_size), 4)
    names = model.task_set.names
    ref = _run_each(TorchRunner(model, CompileOptions(), stride), x)
    got = _run_each(ORTRunner(path, CompileOptions(device="cpu"), names), x)
    rep = parity_report(ref, got, model.task_set)
    report = atomic_write_json(path.with_suffix(".parity.json"), rep)
    console.print(parity_table(rep, "ONNX Runtime vs PyTorch (4 SynthIndoor renders)"))
    console.print(f"onnx: [bold]{path}[/]  parity report: {report}")


@app.command("compile")
def compile_(
    target: str = typer.Option(..., help="torch | onnxruntime | openvino | tensorrt | "
                               "torch-tensorrt"),
    precision: str = typer.Option("fp32", help="fp32 | fp16 | int8"),
    checkpoint: Path = typer.Option(None, help="Checkpoint (default: the embedded starter)."),
    onnx: Path = typer.Option(None, help="An exported (or quantised) ONNX / OpenVINO IR "
                                         "instead (an INT8 model needs NAME.fp32.onnx beside "
                                         "it, as mtlsi-edge quantize writes)."),
    out: Path = typer.Option(None, help="Bundle folder: a new path or an existing bundle "
                                        "(default runs/compile/TARGET-PREC)."),
    device: str = typer.Option(None, help="Target device (CPU, GPU, AUTO, cuda:0 …)."),
    gate: list[str] = typer.Option([], "--gate", help="Parity threshold override TASK=VALUE "
                                                      "(repeatable; see docs/trust.md)."),
    force: bool = typer.Option(False, help="Write the bundle even if it fails its parity gate "
                                           "(the manifest records the failure)."),
    dla_core: int = typer.Option(None, min=0, help="tensorrt: Jetson DLA core (GPU fallback "
                                 "on; fp16/int8)."),
    workspace_mb: int = typer.Option(None, min=1, help="tensorrt: builder workspace (MiB, "
                                     "default 1024)."),
    input_size: str = typer.Option(None, help="tensorrt: HxW optimisation-profile size for an "
                                   "ONNX with symbolic H/W."),
    timing_cache: Path = typer.Option(None, help="tensorrt: timing cache file (read, then "
                                      "updated) to speed up rebuilds."),
) -> None:
    """Compile a bundle (manifest + model files + reference outputs, checksummed) for a
    target, gated against the FP32 model on held-out frames: exit 3 when the gate fails.

    Examples:
      mtlsi-edge compile --target openvino --precision fp16
      mtlsi-edge compile --target onnxruntime --onnx runs/export/model.onnx --out b/ort
      mtlsi-edge compile --target openvino --precision int8 --onnx runs/quantize/model.xml
      mtlsi-edge compile --target tensorrt --precision int8 --onnx runs/quantize/trt.onnx
      mtlsi-edge compile --target tensorrt --precision fp16 --dla-core 0 --workspace-mb 512
    """
    from mtlsi_edge.bundle import BundleError, compile_bundle, load_bundle
    from mtlsi_edge.targets import TARGETS, CompileOptions, ModelMismatch, TargetUnavailable
    from mtlsi_edge.train.checkpoint import CheckpointError
    from mtlsi_edge.verify import VerificationError, parse_gate_overrides

    if checkpoint is None and onnx is None:
        checkpoint = default_checkpoint()
    out = out or Path("runs/compile") / f"{target}-{precision}"
    default_dev = TARGETS[target].default_device if target in TARGETS else "CPU"
    opts = CompileOptions(precision=precision, device=device or default_dev)
    trt_opts = {"dla_core": dla_core, "workspace_mb": workspace_mb,
                "input_size": _parse_size(input_size) if input_size else None,
                "timing_cache": timing_cache}
    if any(v is not None for v in trt_opts.values()) and target != "tensorrt":
        fail("--dla-core, --workspace-mb, --input-size and --timing-cache apply to "
             "--target tensorrt only")
    opts.extra.update({k: v for k, v in trt_opts.items() if v is not None})
    try:
        overrides = parse_gate_overrides(gate)
        with console.status(f"compiling for {target} {precision}…"):
            path = compile_bundle(out, target, precision, checkpoint=checkpoint, onnx_path=onnx,
                                  opts=opts, gate_overrides=overrides, force=force)
        manifest, _ = load_bundle(path)
    except VerificationError as e:
        fail(str(e), code=3)
    except (BundleError, CheckpointError, TargetUnavailable, ModelMismatch, ValueError) as e:
        fail(str(e))
    console.print(parity_table(manifest["parity"]["per_task"],
                               f"{target} {precision} vs {manifest['parity']['reference']}"))
    console.print(gate_table(manifest["gate"]["rows"], f"parity gate ({precision}) on "
                             f"{manifest['parity']['images']} held-out frames"))
    if not manifest["gate"]["passed"]:
        err_console.print(escape(f"warning: {path} FAILED its parity gate (kept because of "
                                 f"--force)"), style="bold red")
    console.print(f"bundle: [bold]{escape(str(path))}[/]")


def gate_table(rows: list[dict], title: str) -> Table:
    t = Table(title=title)
    for c in ("task", "measure", "value", "threshold", "ok"):
        t.add_column(c, justify="right")
    for r in rows:
        op = "≥" if r["higher_is_better"] else "≤"
        t.add_row(r["task"], r["measure"], f"{r['value']:.4g}{r['unit']}",
                  f"{op} {r['threshold']:g}{r['unit']}", "[green]yes" if r["ok"] else "[red]NO")
    return t


@app.command()
def check(
    bundle: Path = typer.Argument(..., help="Bundle folder."),
    device: str = typer.Option(None, help="Device to check on (default: the bundle's)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Re-prove a bundle on this machine: run its reference frames and compare with its FP32
    reference outputs under its gate thresholds.  Exit 0 pass, 3 fail.

    Example:  mtlsi-edge check runs/compile/openvino-int8
    """
    from mtlsi_edge.bundle import BundleError
    from mtlsi_edge.runtime.predictor import Predictor
    from mtlsi_edge.targets import ModelMismatch, TargetUnavailable
    from mtlsi_edge.verify import check_bundle

    try:
        predictor = Predictor.from_bundle(bundle, device=device)
        rep = check_bundle(predictor, Path(bundle) if Path(bundle).is_dir()
                           else Path(bundle).parent)
    except (BundleError, TargetUnavailable, ModelMismatch) as e:
        fail(str(e))
    if as_json:
        print(json.dumps(rep.to_dict(), indent=2))
    else:
        console.print(gate_table(rep.result.rows, f"{rep.bundle}: {rep.target} {rep.precision}"))
        console.print(escape(f"device {rep.device} (computes in {rep.device_precision}), "
                             f"{rep.target} {rep.runtime_version}, CPU flags: {rep.cpu_flags}; "
                             f"{rep.seconds * 1e3:.0f} ms"))
    if not rep.passed:
        fail(f"{rep.bundle}: FAILED on this machine: {'; '.join(rep.result.failures)}", code=3)
    if not as_json:
        console.print("[green]pass[/]")


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


@app.command()
def demo(
    bundle: Path = typer.Option(None, help="Compiled bundle; default: the embedded model "
                                          "compiled for --target/--precision (cached)."),
    source: str = typer.Option(None, help="Camera index, video file, URL or image folder; "
                                          "default: camera 0, else the SynthIndoor walkthrough."),
    layout: str = typer.Option("grid", help="grid | blend | seg | depth | normals | edges"),
    record: Path = typer.Option(None, help="Record the rendered view (.mp4 or .avi)."),
    headless: bool = typer.Option(False, help="No window (also chosen when there is no display)."),
    max_frames: int = typer.Option(None, min=1, help="Stop after N frames."),
    target: str = typer.Option("openvino", help="Target for the embedded model."),
    precision: str = typer.Option("fp32", help="Precision for the embedded model."),
    checkpoint: Path = typer.Option(None, help="Checkpoint to use instead of the embedded one."),
    threads: int = typer.Option(None, min=1, help="Inference threads."),
    pipeline: bool = typer.Option(True, help="Infer frame N while rendering frame N-1."),
    loop: bool = typer.Option(False, help="Restart a video file or folder at its end."),
    verify: bool = typer.Option(True, help="Self-check the bundle on this machine first "
                                           "(refuse it when it fails)."),
) -> None:
    """Live demo: all four task outputs overlaid on a camera or video, with a HUD.

    Keys: q/Esc quit, space pause, 1-6 layouts, s snapshot (runs/demo/).

    Examples:
      mtlsi-edge demo
      mtlsi-edge demo --source video.mp4 --record runs/demo/out.mp4 --headless
      mtlsi-edge demo --bundle runs/compile/openvino-fp32 --source 0 --layout blend
    """
    from mtlsi_edge.bundle import BundleError
    from mtlsi_edge.runtime.capture import CaptureError, Source
    from mtlsi_edge.runtime.loop import LAYOUTS, display_available, run_loop
    from mtlsi_edge.runtime.predictor import Predictor
    from mtlsi_edge.targets import ModelMismatch, TargetUnavailable
    from mtlsi_edge.train.checkpoint import CheckpointError
    from mtlsi_edge.verify import VerificationError

    if layout not in LAYOUTS:
        fail(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    if record is not None:
        check_output_file(record, (".mp4", ".avi"), "--record file")
    if not headless and not display_available():
        console.print("[yellow]no display found: running headless[/] (add --record FILE to "
                      "keep the output)")
        headless = True
    try:
        if bundle is None:
            bundle = cached_bundle(checkpoint or default_checkpoint(), target, precision)
        # A bundle that fails its self-check here is refused, not shown: plausible-looking
        # wrong overlays are worse than none, and silently swapping in another precision
        # would hide that this device breaks the one asked for.
        predictor = Predictor.from_bundle(bundle, threads=threads, verify=verify)
        if predictor.check is not None:
            console.print(escape(f"self-check: pass on this machine ({predictor.check.target}"
                                 f" {predictor.check.runtime_version}, computes in "
                                 f"{predictor.check.device_precision}, "
                                 f"{predictor.check.seconds * 1e3:.0f} ms)"))
        if source is None:
            source, why = default_source()
            console.print(f"source: {why}")
        src = Source(source, loop=loop)
    except VerificationError as e:
        fail(str(e), code=3)
    except (BundleError, CheckpointError, TargetUnavailable, ModelMismatch, CaptureError) as e:
        fail(str(e))
    console.print(f"model: {bundle} ({predictor.target} {predictor.precision}); "
                  f"source: {src.info.name}; layout {layout}")
    try:
        stats = run_loop(predictor, src, layout, record, headless, max_frames,
                         pipeline=pipeline)
    except CaptureError as e:
        fail(str(e))
    med = stats.medians()
    console.print(f"{stats.frames} frames in {stats.wall_s:.1f} s = [bold]{stats.fps:.1f} FPS[/]"
                  f", dropped {stats.dropped}; stopped by {stats.stopped_by}")
    console.print("median ms: " + ", ".join(f"{k} {v:.1f}" for k, v in med.items()))
    if src.skipped:
        console.print(f"[yellow]skipped {len(src.skipped)} unreadable images[/], e.g. "
                      f"{src.skipped[0]}")
    if stats.recording:
        console.print(f"recording: [bold]{stats.recording}[/]")
    for p in stats.snapshots:
        console.print(f"snapshot: {p}")


def cached_bundle(checkpoint: Path, target: str, precision: str) -> Path:
    """Compile (once) a bundle of ``checkpoint`` for target/precision under runs/demo/bundles."""
    from mtlsi_edge.bundle import BundleError, compile_bundle, load_bundle
    from mtlsi_edge.targets import TARGETS, CompileOptions
    from mtlsi_edge.train.checkpoint import read_checkpoint_meta

    doc, _ = read_checkpoint_meta(checkpoint)
    out = Path("runs/demo/bundles") / f"{target}-{precision}-{doc['weights_sha256'][:12]}"
    try:
        if load_bundle(out)[0].get("reference"):
            return out
    except BundleError:
        pass  # missing, damaged, or made before bundles carried references: compile again
    dev = TARGETS[target].default_device if target in TARGETS else "CPU"
    with console.status(f"compiling the model for {target} {precision} (once)…"):
        return compile_bundle(out, target, precision, checkpoint=checkpoint,
                              opts=CompileOptions(precision=precision, device=dev))


def default_source() -> tuple[str, str]:
    """Camera 0 when one answers, else the SynthIndoor walkthrough video (rendered once)."""
    import cv2

    cv2.setLogLevel(0) if hasattr(cv2, "setLogLevel") else None
    cap = cv2.VideoCapture(0)
    ok = cap.isOpened() and cap.read()[0]
    cap.release()
    if ok:
        return "0", "camera 0"
    video = Path("runs/demo/walkthrough.mp4")
    if not video.is_file():
        from mtlsi_edge.data.synthindoor import render_walkthrough

        with console.status("no camera: rendering the SynthIndoor walkthrough video…"):
            render_walkthrough(video, seconds=12, fps=15)
    return str(video), f"no camera found: playing the SynthIndoor walkthrough {video}"


@app.command()
def calibrate(
    source: str = typer.Option("synth", help="synth | image folder | video | DIR:SPLIT"),
    n: int = typer.Option(64, min=1, help="Number of samples."),
    size: str = typer.Option("240x320", help="Model input size HxW."),
    seed: int = typer.Option(0),
    every: int = typer.Option(10, min=1, help="For videos: take every k-th frame."),
    out: Path = typer.Option(Path("runs/calibrate/calib"), help="Cache stem (.npy + .json)."),
) -> None:
    """Build and cache a calibration set, preprocessed exactly like the Predictor.

    Examples:
      mtlsi-edge calibrate --source data/synth:train --n 128
      mtlsi-edge calibrate --source walk.mp4 --every 5 --out runs/calibrate/walk
    """
    from mtlsi_edge.calibration.sources import CalibrationError, build_calibration_set

    check_output_file(Path(str(out) + ".npy"), (), "--out stem")
    try:
        cs = build_calibration_set(source, n, _parse_size(size), seed, every)
    except (CalibrationError, ValueError) as e:
        fail(str(e))
    path = cs.save(out)
    for s in cs.skipped:
        err_console.print(f"[yellow]skipped[/] {s}")
    console.print(f"{len(cs.origins)} samples from {source} → [bold]{path}[/] "
                  f"(record: {path.with_suffix('.json')})")


def _parse_budgets(specs: list[str], task_set):
    from mtlsi_edge.quantize.ptq import parse_budgets

    try:
        return parse_budgets(specs, task_set)
    except ValueError as e:
        fail(str(e))


@app.command()
def quantize(
    checkpoint: Path = typer.Option(None, help="Checkpoint (default: the embedded starter)."),
    fmt: str = typer.Option("openvino", "--format", help="openvino (IR) | onnx (QDQ)."),
    calib: str = typer.Option("synth", help="Calibration source or a cached .npy stem."),
    n: int = typer.Option(128, min=1, help="Calibration samples."),
    val: Path = typer.Option(None, help="Dataset for accuracy control / the report."),
    val_limit: int = typer.Option(100, min=1, help="Validation images used."),
    max_drop: list[str] = typer.Option([], help="Per-task budget KEY=VALUE[%], repeatable."),
    preset: str = typer.Option("performance", help="performance | mixed"),
    ignore: str = typer.Option("attention-norm", help="none | attention-norm | attention"),
    out: Path = typer.Option(Path("runs/quantize/model"), help="Output stem."),
    act_matmuls: str = typer.Option(
        "float", help="float | int8: activation × activation MatMuls (attention products) "
                      "in float (default: INT8 ones compute wrongly in OpenVINO on AVX-512 "
                      "VNNI/AMX CPUs, docs/known-issues.md) or INT8."),
    gate: list[str] = typer.Option([], "--gate", help="Parity threshold override TASK=VALUE "
                                                      "(repeatable; see docs/trust.md)."),
    force: bool = typer.Option(False, help="Write the model even if it fails its parity "
                                           "gate."),
    target: str = typer.Option(None, help="tensorrt: a Q/DQ ONNX TensorRT can build "
                               "(signed symmetric INT8; needs --format onnx)."),
) -> None:
    """NNCF INT8 post-training quantisation, optionally with per-task accuracy budgets.

    Examples:
      mtlsi-edge quantize --format openvino --val data/synth
      mtlsi-edge quantize --val data/synth --max-drop miou=0.5 --max-drop rmse=1% \\
          --max-drop normals=0.5 --max-drop boundary=0.5
      mtlsi-edge quantize --format onnx --target tensorrt --out runs/quantize/trt
    """
    from mtlsi_edge.quantize.run import QuantizeError, run_quantize
    from mtlsi_edge.verify import VerificationError, parse_gate_overrides

    check_output_file(Path(str(out) + ".xml"), (), "--out stem")
    try:
        overrides = parse_gate_overrides(gate)
    except ValueError as e:
        fail(str(e))
    try:
        res = run_quantize(checkpoint or default_checkpoint(), fmt, calib, n, val, val_limit,
                           max_drop, preset, ignore, out, console=console,
                           act_matmuls=act_matmuls, gate_overrides=overrides, force=force,
                           target=target)
    except VerificationError as e:
        if e.result is not None:
            console.print(gate_table(e.result.rows, "INT8 parity gate (held-out frames, vs "
                                                     "FP32)"))
        fail(str(e), code=3)
    except QuantizeError as e:
        fail(str(e))
    console.print(gate_table(res["info"]["gate"]["rows"], "INT8 parity gate (held-out frames, "
                                                           "vs FP32)"))
    if res.get("report"):
        console.print(drops_table(res["report"]))
    if res.get("failed") and res["path"] is None:
        fail(f"{res['failed']} (nothing written; --force keeps it)", code=3)
    console.print(f"quantised model: [bold]{escape(str(res['path']))}[/]")
    if res.get("failed"):
        fail(res["failed"], code=3)


@app.command()
def deploy(
    checkpoint: Path = typer.Option(None, help="Checkpoint (default: the embedded starter)."),
    target: str = typer.Option("openvino", help="onnxruntime | openvino | tensorrt"),
    precision: str = typer.Option("int8", help="fp32 | fp16 | int8"),
    calib: str = typer.Option("synth", help="Calibration source (see calibrate)."),
    val: Path = typer.Option(None, help="Dataset whose val split gates the INT8 model."),
    max_drop: list[str] = typer.Option([], help="Per-task budget KEY=VALUE[%], repeatable."),
    out: Path = typer.Option(Path("runs/deploy/exp"), help="Output folder."),
    n_calib: int = typer.Option(128, min=1),
    val_limit: int = typer.Option(100, min=1),
    accuracy_control: bool = typer.Option(
        True, help="Revert layers to float until the budgets hold (NNCF accuracy control; "
                   "minutes). --no-accuracy-control: plain PTQ, then the gate."),
    gate: list[str] = typer.Option([], "--gate", help="Parity threshold override TASK=VALUE "
                                                      "(repeatable; see docs/trust.md)."),
    act_matmuls: str = typer.Option("float", help="float | int8 (see quantize --help)."),
) -> None:
    """One command: export → calibrate → quantise (gated) → compile → parity → profile.

    The INT8 artifact always passes a parity gate against FP32 on held-out frames on this
    machine (labels or not); with --val, the per-task budgets apply on top.  Exits 3 when a
    gate fails, naming the task and the miss (the FP32 bundle is kept).

    Example:
      mtlsi-edge deploy --target openvino --precision int8 --val data/synth \\
          --max-drop miou=0.5 --max-drop rmse=1% --max-drop normals=0.5 --max-drop boundary=0.5
    """
    from mtlsi_edge.bundle import BundleError
    from mtlsi_edge.quantize.deploy import run_deploy
    from mtlsi_edge.quantize.run import QuantizeError
    from mtlsi_edge.targets import ModelMismatch, TargetUnavailable
    from mtlsi_edge.train.checkpoint import CheckpointError
    from mtlsi_edge.verify import VerificationError, parse_gate_overrides

    if precision == "int8" and val is None and max_drop:
        fail("--max-drop needs --val")
    check_output_dir(out)
    try:
        overrides = parse_gate_overrides(gate)
    except ValueError as e:
        fail(str(e))
    try:
        res = run_deploy(checkpoint or default_checkpoint(), target, precision, calib, val, out,
                         max_drop, n_calib, val_limit, console=console,
                         accuracy_control=accuracy_control, gate_overrides=overrides,
                         act_matmuls=act_matmuls)
    except VerificationError as e:  # the FP32 bundle itself failed: nothing to ship
        fail(str(e), code=3)
    except (QuantizeError, BundleError, CheckpointError, TargetUnavailable, ModelMismatch) as e:
        fail(str(e))
    if res.get("gate"):
        console.print(gate_table(res["gate"]["rows"], "INT8 parity gate (held-out frames, "
                                                       "vs FP32)"))
    q = res.get("quantize")
    if q and q.get("report"):
        console.print(drops_table(q["report"]))
    for k, v in res["latency"].items():
        console.print(f"{k}: {v['median_ms']:.2f} ms median compute latency")
    console.print(f"bundle: [bold]{res['bundle']}[/]  report: {res['report_md']}")
    if res["failed"]:
        fail(res["failed"], code=3)


@app.command()
def prune(
    checkpoint: Path = typer.Option(None, help="Checkpoint (default: the embedded starter)."),
    method: str = typer.Option("channels", help="channels (torch-pruning, physically removes "
                                                "channels) | magnitude (NNCF sparsity)"),
    ratio: float = typer.Option(0.25, help="Share of prunable channels / weights removed."),
    data: Path = typer.Option(..., help="Training data for fine-tuning and BN statistics."),
    finetune_steps: int = typer.Option(200, min=0),
    val_limit: int = typer.Option(100, min=1),
    out: Path = typer.Option(Path("runs/prune/exp")),
) -> None:
    """Prune, re-estimate BatchNorm on in-distribution images, fine-tune; report before/after.

    Example:  mtlsi-edge prune --method channels --ratio 0.5 --data data/synth
    """
    from mtlsi_edge.data.datasets import DatasetError
    from mtlsi_edge.quantize.prune import run_prune
    from mtlsi_edge.tasks import TaskSet
    from mtlsi_edge.train.checkpoint import CheckpointError, read_checkpoint_meta

    check_output_dir(out)
    try:
        with console.status(f"pruning ({method}, {ratio:.0%}) and fine-tuning…"):
            res = run_prune(checkpoint or default_checkpoint(), method, ratio, str(data), out,
                            finetune_steps, val_limit=val_limit)
    except (CheckpointError, DatasetError, ValueError) as e:
        fail(str(e))
    atomic_write_json(Path(out) / "report.json", {**res, "checkpoint": str(res["checkpoint"])})
    # One column per task of the checkpoint's own task set (its headline metric).
    tasks = TaskSet.from_dict(read_checkpoint_meta(res["checkpoint"])[0]["task_set"])
    t = Table(title=f"pruning: {method} {ratio:.0%}")
    for c in ("", "params (M)", "GMACs", "eager ms", "ORT ms",
              *(f"{x.name} {x.metric_name}" for x in tasks)):
        t.add_column(c, justify="right")
    for k in ("before", "after"):
        d = res[k]
        m = d["metrics"]
        t.add_row(k, f"{d['params'] / 1e6:.3f}", f"{d['gmacs']:.3f}", f"{d['eager_ms']:.1f}",
                  f"{d['ort_ms']:.1f}", *(f"{m[x.name][x.metric_name]:.3g}" for x in tasks))
    console.print(t)
    console.print(f"pruned checkpoint: [bold]{res['checkpoint']}[/]; report {out}/report.json")


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


def default_checkpoint() -> Path:
    """The embedded starter checkpoint (trained on SynthIndoor; see weights/README)."""
    p = Path(__file__).parent / "weights" / "starter.json"
    if not p.is_file():
        fail("no embedded starter checkpoint in this install; pass --checkpoint")
    return p


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
) -> None:
    """The most accurate bundle whose end-to-end median latency meets --budget here.

    Searches resolution × precision × threads/hint, gates every bundle, writes
    OUT/pareto.{md,csv,png} and the chosen bundle in OUT/bundle; exits 3 when nothing meets
    the budget (naming the fastest candidate).

    Example:
      mtlsi-edge tune --target openvino --budget 25ms --out runs/tune
    """
    from mtlsi_edge.tune import summary_line
    from mtlsi_edge.tune import tune as run_tune
    from mtlsi_edge.verify import parse_gate_overrides

    budget_ms = parse_budget_or_fail(budget)
    if not (max_minutes > 0):
        fail(f"bad --max-minutes {max_minutes}: must be > 0")
    if not (time_per_candidate > 0):
        fail(f"bad --time-per-candidate {time_per_candidate}: must be > 0")
    fsize = _parse_size(frame_size)
    check_output_dir(out)
    try:
        overrides = parse_gate_overrides(gate)
    except ValueError as e:
        fail(str(e))
    res = run_tune(checkpoint or default_checkpoint(), target, budget_ms, out,
                   frame_size=fsize, max_minutes=max_minutes,
                   scales=scale or (1.0, 0.8, 0.67, 0.5), min_side=min_side,
                   precisions=precision or None, threads=threads or (1, 2),
                   hints=hint or ("latency",), time_s=time_per_candidate, val=val,
                   val_limit=val_limit, n_calib=n_calib, gate_overrides=overrides,
                   console=console)
    if res["stopped"]:
        console.print(f"search stopped at --max-minutes {max_minutes:g}")
    console.print(escape(f"pareto: {out / 'pareto.md'}, {out / 'pareto.csv'}, "
                         f"{out / 'pareto.png'}"), highlight=False)
    console.print(escape(summary_line(res)), highlight=False, soft_wrap=True)


def parse_budget_or_fail(text: str) -> float:
    from mtlsi_edge.tune import TuneError, parse_budget

    try:
        return parse_budget(text)
    except TuneError as e:
        fail(str(e))


@app.command()
def profile(
    bundle: list[Path] = typer.Option(
        [], "--bundle", help="A bundle folder to profile (repeat for several)."),
    checkpoint: Path = typer.Option(
        None, help="Compile one bundle per --targets × --precisions from this checkpoint "
                   "(default without --bundle: the embedded starter)."),
    targets: str = typer.Option("torch,onnxruntime,openvino",
                                help="With --checkpoint: comma-separated targets."),
    precisions: str = typer.Option(
        "fp32", help="With --checkpoint: comma-separated precisions (fp32, fp16; int8 needs a "
                     "quantised model: pass its bundle with --bundle)."),
    size: str = typer.Option(None, help="End-to-end frame size HxW (default: the bundle's "
                                        "input size; compute-only always uses the latter)."),
    threads: int = typer.Option(None, help="Inference threads (default: the runtime's)."),
    time_s: float = typer.Option(None, "--time", help="Seconds per measurement (default 2)."),
    runs: int = typer.Option(None, "--runs", help="Iterations per measurement instead."),
    mode: str = typer.Option("latency", help="latency (compute-only + end-to-end, batch 1, "
                                             "sync) | throughput (concurrent requests)."),
    per_layer: bool = typer.Option(False, "--per-layer",
                                   help="Also profile per layer (OpenVINO, ONNX Runtime)."),
    name: str = typer.Option(None, help="Run name: files go to runs/profile/NAME "
                                        "(default: a timestamp)."),
    json_path: Path = typer.Option(None, "--json", help="JSON report (default RUN/profile.json)."),
    csv_path: Path = typer.Option(None, "--csv", help="CSV report (default RUN/profile.csv)."),
    md_path: Path = typer.Option(None, "--md", help="Markdown report (default RUN/profile.md)."),
    plot: Path = typer.Option(None, "--plot", help="Folder for PNG plots (default RUN/plots)."),
    verify: bool = typer.Option(True, help="Self-check each --bundle on this machine first "
                                           "(refuse one that fails)."),
) -> None:
    """Latency / throughput of bundles: stats, pre/infer/post split, hot spots.

    Warm-up ≥ 0.2 s and ≥ 5 calls, then --time seconds (or --runs calls)
    per measurement: median, p90/p95/p99 (nearest rank), FPS, GFLOP/s,
    memory.  Latency and throughput are separate runs (--mode).  Reports
    (JSON with per-iteration times, CSV, Markdown, PNG): runs/profile/NAME/.

    Examples:
      mtlsi-edge profile --bundle runs/compile/openvino-fp32 --time 5
      mtlsi-edge profile --checkpoint last.json --precisions fp32,fp16 --per-layer
      mtlsi-edge profile --bundle b/ov-int8 --mode throughput --threads 2
    """
    import time

    from mtlsi_edge.bundle import BundleError, compile_bundle, load_bundle
    from mtlsi_edge.profiler import report
    from mtlsi_edge.profiler.bench import MODES, machine_header, profile_bundle
    from mtlsi_edge.targets import TARGETS, CompileOptions, TargetUnavailable, get_target
    from mtlsi_edge.train.checkpoint import CheckpointError

    if runs is not None and time_s is not None:
        fail("give --time or --runs, not both")
    if runs is not None and runs < 1:
        fail(f"--runs must be ≥ 1, got {runs}")
    if time_s is not None and not time_s > 0:
        fail(f"--time must be > 0 seconds, got {time_s}")
    if threads is not None and threads < 1:
        fail(f"--threads must be ≥ 1, got {threads}")
    if mode not in MODES:
        fail(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    if bundle and checkpoint:
        fail("give --bundle or --checkpoint, not both")
    if runs is None and time_s is None:
        time_s = 2.0
    for path_, suffix in ((json_path, ".json"), (csv_path, ".csv"), (md_path, ".md")):
        if path_ is not None:
            check_output_file(path_, (suffix,), f"{suffix[1:]} report")
    if plot is not None:
        check_output_dir(plot, "--plot folder")
    frame = _parse_size(size) if size else None
    name = name or time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path("runs/profile") / name
    notes: list[str] = []

    def note(msg: str) -> None:
        notes.append(msg)
        console.print(f"[yellow]note:[/] {msg}", highlight=False)

    paths: list[Path] = []
    if bundle:
        for b in bundle:
            try:
                m, folder = load_bundle(b)
                ok, why = get_target(m["target"]).available()
            except (BundleError, TargetUnavailable) as e:
                fail(str(e))
            if not ok:
                fail(f"{folder}: bundle needs target {m['target']}, unavailable here: {why}")
            paths.append(folder)
    else:
        checkpoint = checkpoint or default_checkpoint()
        if not Path(checkpoint).is_file():
            fail(f"{checkpoint}: checkpoint not found")
        tgts = [t.strip() for t in targets.split(",") if t.strip()]
        precs = [p.strip() for p in precisions.split(",") if p.strip()]
        for t in tgts:
            if t not in TARGETS:
                fail(f"unknown target {t!r}; known: {', '.join(TARGETS)}")
        for p in precs:
            if p not in ("fp32", "fp16", "int8"):
                fail(f"unknown precision {p!r}; use fp32, fp16 or int8")
        if not tgts or not precs:
            fail("--targets and --precisions must each name at least one")
        for t in tgts:
            tgt = get_target(t)
            ok, why = tgt.available()
            if not ok:
                note(f"skipping {t}: {why}")
                continue
            for p in precs:
                if p == "int8":
                    note(f"skipping {t}-int8: INT8 needs a quantised model (mtlsi-edge "
                         f"quantize), then profile its bundle with --bundle")
                    continue
                if p not in tgt.precisions:
                    note(f"skipping {t}-{p}: {t} supports {', '.join(tgt.precisions)}")
                    continue
                out = run_dir / "bundles" / f"{t}-{p}"
                dev = tgt.default_device
                try:
                    with console.status(f"compiling {t} {p} bundle…"):
                        paths.append(compile_bundle(out, t, p, checkpoint=checkpoint,
                                                    opts=CompileOptions(precision=p,
                                                                        device=dev)))
                except CheckpointError as e:
                    fail(str(e))
                except (BundleError, TargetUnavailable, ValueError) as e:
                    note(f"skipping {t}-{p}: {e}")
        if not paths:
            fail("nothing to profile: " + ("; ".join(notes) or "no target/precision pairs"))
        console.print(f"bundles: [bold]{run_dir / 'bundles'}[/]")
    if verify:  # a bundle is timed only once it has proved its outputs on this machine
        for folder in paths:
            _self_check_line(folder)

    doc = {"schema": report.SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "machine": machine_header(),
           "settings": {"mode": mode, "threads": threads, "time_s": time_s, "runs": runs,
                        "frame_size": list(frame) if frame else None,
                        "per_layer": per_layer},
           "results": [], "notes": notes}
    for p in paths:
        try:
            with console.status(f"profiling {p}…") as status:
                row = profile_bundle(p, size=frame, threads=threads, mode=mode, time_s=time_s,
                                     runs=runs, per_layer=per_layer,
                                     progress=lambda msg, st=status: st.update(msg + "…"))
        except (BundleError, TargetUnavailable, ValueError) as e:
            fail(str(e))
        except RuntimeError as e:  # a runtime refusing the model: one line, not a traceback
            fail(f"{p}: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}")
        if row.get("skipped"):
            note(f"{row['name']} ({mode}) skipped: {row['skipped']}")
        doc["results"].append(row)
    report.add_ratios(doc["results"])
    written = report.write_all(doc, json_path or run_dir / "profile.json",
                               csv_path or run_dir / "profile.csv",
                               md_path or run_dir / "profile.md", plot or run_dir / "plots")
    if report.rows(doc):
        for table in report.terminal_tables(doc, console.width):
            console.print(table)
    for row in report.rows(doc):
        if row.get("per_layer"):
            console.print(report.hotspot_table(row))
        for n in row.get("notes") or []:
            console.print(f"[yellow]note:[/] {row['name']}: {n}", highlight=False)
    for kind, files in written.items():
        for f in files:
            console.print(f"{kind}: [bold]{f}[/]")


def _self_check_line(folder: Path) -> None:
    """Run a bundle's self-check and say so in one line; exit 3 if it fails."""
    from mtlsi_edge.bundle import BundleError
    from mtlsi_edge.runtime.predictor import Predictor
    from mtlsi_edge.targets import ModelMismatch, TargetUnavailable
    from mtlsi_edge.verify import VerificationError

    try:
        p = Predictor.from_bundle(folder, verify=True)
    except VerificationError as e:
        fail(str(e), code=3)
    except (BundleError, TargetUnavailable, ModelMismatch) as e:
        fail(str(e))
    console.print(escape(f"self-check {folder}: pass ({p.check.device_precision}, "
                         f"{p.check.seconds * 1e3:.0f} ms)"), highlight=False)


MAX_SIDE = 4096


def _parse_size(s: str) -> tuple[int, int]:
    """``HxW`` with both sides in 32..4096 (the model pads to its stride itself; past 4096 a
    single frame's activations no longer fit in memory on an edge device)."""
    try:
        h, w = (int(x) for x in s.lower().split("x"))
    except ValueError:
        fail(f"bad size {s!r}: expected HxW, e.g. 240x320")
    if not (32 <= h <= MAX_SIDE and 32 <= w <= MAX_SIDE):
        big = (f" (one {h}×{w} float image alone is {3 * 4 * h * w / 2**30:.3g} GiB)"
               if max(h, w) > MAX_SIDE else "")
        fail(f"bad size {s!r}: both sides must be in 32..{MAX_SIDE}{big}")
    return h, w


def main() -> None:  # pragma: no cover - console script entry
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()

