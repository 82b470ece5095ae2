"""From a checkpoint to a gated artifact: ``compile``, ``check``, ``calibrate``, ``quantize``,
``deploy`` and ``prune``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape

from mtlsi_edge.cli.app import app, console, err_console, fail, print_path
from mtlsi_edge.cli.options import parse_size
from mtlsi_edge.cli.tables import drops_table, gate_table, parity_table, prune_table
from mtlsi_edge.fileio import (
    atomic_write_json,
    check_output_dir,
    check_output_file,
    refuse_existing,
)
from mtlsi_edge.weights import starter_checkpoint

GATE_HELP = "Parity threshold override TASK=VALUE (repeatable; see docs/trust.md)."
INT8_GATE = "INT8 parity gate (held-out frames, vs FP32)"


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
    gate: list[str] = typer.Option([], "--gate", help=GATE_HELP),
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
    label_stride: int = typer.Option(1, help="Segmentation labels at 1/N of the input size, "
                                     "argmax in the graph: 1 (identical to host argmax), 2 or 4 "
                                     "(faster; docs/benchmarks.md 'Labels in the graph')."),
    graph: str = typer.Option(None, help="Deploy graph from a checkpoint: batched (the tasks "
                              "as one op each) or per-task (the reference); default: the "
                              "faster on the target (batched, except tensorrt: not measured)."),
    sign: Path = typer.Option(None, help="Sign the bundle with this Ed25519 private key "
                                         "(mtlsi-edge keys new); devices with --trust accept "
                                         "only signed bundles."),
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
    from mtlsi_edge.bundle import load_bundle
    from mtlsi_edge.compiler import CompileRequest, compile_bundle
    from mtlsi_edge.signing import SIGNATURE_FILE, key_id, load_private_key
    from mtlsi_edge.targets import CompileOptions, get_target, target_options
    from mtlsi_edge.verify import parse_gate_overrides

    if checkpoint is None and onnx is None:
        checkpoint = starter_checkpoint()
    out = out or Path("runs/compile") / f"{target}-{precision}"
    tgt = get_target(target)
    own = target_options(target, {"dla_core": dla_core, "workspace_mb": workspace_mb,
                                  "input_size": parse_size(input_size) if input_size else None,
                                  "timing_cache": timing_cache})
    req = CompileRequest(
        target, precision, checkpoint=checkpoint, model_file=onnx,
        options=CompileOptions(device=device or tgt.default_device, target_options=own),
        label_stride=label_stride, graph=graph, gate=parse_gate_overrides(gate), force=force,
        sign=sign)
    with console.status(f"compiling for {target} {precision}…"):
        path = compile_bundle(out, req)
    manifest, _ = load_bundle(path)
    console.print(parity_table(manifest["parity"]["per_task"],
                               f"{target} {precision} vs {manifest['parity']['reference']}"))
    console.print(gate_table(manifest["gate"]["rows"], f"parity gate ({precision}) on "
                             f"{manifest['parity']['images']} held-out frames"))
    if not manifest["gate"]["passed"]:
        err_console.print(escape(f"warning: {path} FAILED its parity gate (kept because of "
                                 f"--force)"), style="bold red")
    if sign is not None:
        kid = key_id(load_private_key(sign).public_key())
        console.print(escape(f"signed with key {kid} ({path / SIGNATURE_FILE})"))
    console.print(f"bundle: [bold]{escape(str(path))}[/]")


@app.command()
def check(
    bundle: Path = typer.Argument(..., help="Bundle folder."),
    device: str = typer.Option(None, help="Device to check on (default: the bundle's)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    trust: list[Path] = typer.Option([], "--trust", help="Trusted public key (PEM, or a "
                                     "folder of them; repeatable; default: $MTLSI_EDGE_TRUST):"
                                     " refuse bundles not signed by one."),
) -> None:
    """Re-prove a bundle on this machine: run its reference frames and compare with its FP32
    reference outputs under its gate thresholds.  Exit 0 pass, 3 fail.

    Example:  mtlsi-edge check runs/compile/openvino-int8
    """
    from mtlsi_edge.runtime.predictor import check_bundle_folder

    rep = check_bundle_folder(bundle, device=device, trust=trust)
    if as_json:
        print(json.dumps(rep.to_dict(), indent=2))
    else:
        console.print(gate_table(rep.result.rows,
                                 escape(f"{rep.bundle}: {rep.target} {rep.precision}")))
        console.print(escape(f"device {rep.device} (computes in {rep.device_precision}), "
                             f"{rep.target} {rep.runtime_version}, CPU flags: {rep.cpu_flags}; "
                             f"{rep.seconds * 1e3:.0f} ms; {rep.signature}"), highlight=False)
    if not rep.passed:
        fail(f"{rep.bundle}: FAILED on this machine: {'; '.join(rep.result.failures)}", code=3)
    if not as_json:
        console.print("[green]pass[/]")


@app.command()
def calibrate(
    source: str = typer.Option("synth", help="synth | image folder | video | DIR:SPLIT"),
    n: int = typer.Option(64, min=1, help="Number of samples."),
    size: str = typer.Option("240x320", help="Model input size HxW."),
    seed: int = typer.Option(0),
    every: int = typer.Option(10, min=1, help="For videos: take every k-th frame."),
    out: Path = typer.Option(Path("runs/calibrate/calib"), help="Cache stem (.npy + .json)."),
    overwrite: bool = typer.Option(False, help="Replace existing output files of that name."),
) -> None:
    """Build and cache a calibration set: frames normalised as the exported (float-input)
    graph expects them, i.e. as the Predictor does on the host for float-input bundles.

    Examples:
      mtlsi-edge calibrate --source data/synth:train --n 128
      mtlsi-edge calibrate --source walk.mp4 --every 5 --out runs/calibrate/walk
    """
    from mtlsi_edge.calibration.sources import build_calibration_set

    check_output_file(Path(str(out) + ".npy"), (), "--out stem")
    refuse_existing([Path(str(out) + s) for s in (".npy", ".json")], overwrite)
    cs = build_calibration_set(source, n, parse_size(size), seed, every)
    path = cs.save(out)
    for s in cs.skipped:
        err_console.print(f"[yellow]skipped[/] {escape(str(s))}")
    console.print(escape(f"{len(cs.origins)} samples from {source} → {path} "
                         f"(record: {path.with_suffix('.json')})"), highlight=False)


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
    gate: list[str] = typer.Option([], "--gate", help=GATE_HELP),
    force: bool = typer.Option(False, help="Write the model even if it fails its parity "
                                           "gate."),
    target: str = typer.Option(None, help="tensorrt: a Q/DQ ONNX TensorRT can build "
                               "(signed symmetric INT8; needs --format onnx)."),
    graph: str = typer.Option(None, help="batched | per-task deploy graph (default: the "
                              "target's, see compile --help)."),
    overwrite: bool = typer.Option(False, help="Replace existing output files of that name."),
    max_minutes: float = typer.Option(None, help="Bound on the accuracy search: at the bound "
                                      "the search stops and nothing is written (exit 3)."),
) -> None:
    """NNCF INT8 post-training quantisation, optionally with per-task accuracy budgets.

    Examples:
      mtlsi-edge quantize --format openvino --val data/synth
      mtlsi-edge quantize --val data/synth --max-drop miou=0.5 --max-drop rmse=1% \\
          --max-drop normals=0.5 --max-drop boundary=0.5
      mtlsi-edge quantize --format onnx --target tensorrt --out runs/quantize/trt
    """
    from mtlsi_edge.quantize.ptq import PtqSettings
    from mtlsi_edge.quantize.run import QUANTIZE_SUFFIXES, QuantizeRequest, run_quantize
    from mtlsi_edge.verify import VerificationError, parse_gate_overrides

    check_output_file(Path(str(out) + ".xml"), (), "--out stem")
    refuse_existing([Path(str(out) + s) for s in QUANTIZE_SUFFIXES], overwrite)
    req = QuantizeRequest(
        fmt, target, calib, n, val, val_limit, tuple(max_drop),
        PtqSettings(preset=preset, ignore=ignore, act_matmuls=act_matmuls),
        gate=parse_gate_overrides(gate), force=force, graph=graph, max_minutes=max_minutes)
    try:
        res = run_quantize(checkpoint or starter_checkpoint(), req, out, log=console.print)
    except VerificationError as e:  # show the gate's rows, then the one-line error
        if e.result is not None:
            console.print(gate_table(e.result.rows, INT8_GATE))
        raise
    if "gate" in res.info:
        console.print(gate_table(res.info["gate"]["rows"], INT8_GATE))
    if res.report:
        console.print(drops_table(res.report))
    if res.model is None:  # the accuracy search was stopped: only the report is written
        fail(f"{res.failed} (only {res.report_path} written)", code=3)
    if res.failed and res.path is None:
        fail(f"{res.failed} (nothing written; --force keeps it)", code=3)
    console.print(f"quantised model: [bold]{escape(str(res.path))}[/]")
    if res.failed:
        fail(res.failed, code=3)


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
    gate: list[str] = typer.Option([], "--gate", help=GATE_HELP),
    act_matmuls: str = typer.Option("float", help="float | int8 (see quantize --help)."),
    preset: str = typer.Option("performance", help="performance (symmetric activations) | "
                               "mixed (asymmetric: more accurate at the same speed on "
                               "OpenVINO and ONNX Runtime, docs/design_sweep.md)."),
    graph: str = typer.Option(None, help="batched | per-task deploy graph (default: the "
                              "target's, see compile --help)."),
    sign: Path = typer.Option(None, help="Sign the bundle with this Ed25519 private key "
                                         "(mtlsi-edge keys new); devices with --trust accept "
                                         "only signed bundles."),
    max_minutes: float = typer.Option(None, help="Bound on the whole deploy: the accuracy "
                                      "search (with --max-drop) stops in time for the report; "
                                      "at the bound the FP32 bundle is kept and the report "
                                      "written (exit 3)."),
) -> None:
    """One command: export → calibrate → quantise (gated) → compile → parity → profile.

    The INT8 artifact always passes a parity gate against FP32 on held-out frames on this
    machine (labels or not); with --val, the per-task budgets apply on top.  Exits 3 when a
    gate fails, naming the task and the miss (the FP32 bundle is kept).

    Example:
      mtlsi-edge deploy --target openvino --precision int8 --val data/synth \\
          --max-drop miou=0.5 --max-drop rmse=1% --max-drop normals=0.5 --max-drop boundary=0.5
    """
    from mtlsi_edge.compiler import sign_written
    from mtlsi_edge.deploy import DeployRequest, run_deploy
    from mtlsi_edge.quantize.ptq import PtqSettings
    from mtlsi_edge.quantize.run import QuantizeRequest
    from mtlsi_edge.signing import load_private_key
    from mtlsi_edge.verify import parse_gate_overrides

    if precision == "int8" and val is None and max_drop:
        fail("--max-drop needs --val")
    check_output_dir(out)
    qreq = QuantizeRequest(calib=calib, n_calib=n_calib, val=val, val_limit=val_limit,
                           max_drop=tuple(max_drop),
                           settings=PtqSettings(preset=preset, act_matmuls=act_matmuls),
                           accuracy_control=accuracy_control, gate=parse_gate_overrides(gate),
                           max_minutes=max_minutes)
    if sign is not None:
        load_private_key(sign)  # before any work
    # a VerificationError here is the FP32 bundle itself failing: nothing to ship (exit 3)
    res = run_deploy(checkpoint or starter_checkpoint(),
                     DeployRequest(target, precision, qreq, graph), out, console=console)
    if res.int8 is not None and res.int8.gate:
        console.print(gate_table(res.int8.gate["rows"], INT8_GATE))
    q = res.int8.quantized if res.int8 is not None else None
    if q is not None and q.report:
        console.print(drops_table(q.report))
    for k, v in res.latency.items():
        console.print(f"{k}: {v['median_ms']:.2f} ms median compute latency")
    if res.note:
        console.print(f"[yellow]note:[/] {escape(res.note)}")
    if sign is not None:
        for folder in sorted({p.parent for p in Path(out).rglob("manifest.json")}):
            console.print(escape(f"signed {folder} with key {sign_written(folder, sign)}"))
    console.print(f"bundle: [bold]{escape(str(res.bundle))}[/]  report: "
                  f"{escape(str(res.report_md))}")
    if res.failed:
        fail(res.failed, code=3)


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
    from mtlsi_edge.prune import PruneRequest, run_prune
    from mtlsi_edge.tasks import TaskSet
    from mtlsi_edge.train.checkpoint import read_checkpoint_meta

    check_output_dir(out)
    with console.status(f"pruning ({method}, {ratio:.0%}) and fine-tuning…"):
        res = run_prune(checkpoint or starter_checkpoint(),
                        PruneRequest(method, ratio, str(data), finetune_steps,
                                     val_limit=val_limit), out)
    atomic_write_json(Path(out) / "report.json", {**res, "checkpoint": str(res["checkpoint"])})
    tasks = TaskSet.from_dict(read_checkpoint_meta(res["checkpoint"])[0]["task_set"])
    console.print(prune_table(res, method, ratio, tasks))
    print_path("pruned checkpoint", res["checkpoint"], f"; report {out}/report.json")
