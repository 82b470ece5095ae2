"""Running bundles: the live ``demo``, ``predict`` to files and the latency ``profile``."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.markup import escape

from mtlsi_edge.cli.app import app, console, fail, print_path
from mtlsi_edge.cli.options import parse_size
from mtlsi_edge.fileio import (
    check_output_dir,
    check_output_file,
    next_free_path,
    refuse_existing,
    sweep_stale_stages,
)
from mtlsi_edge.weights import starter_checkpoint

# -- source options shared by demo and predict (one parser: runtime/sources.py) -------------
_TARGET = typer.Option("openvino", help="Target for the embedded model.")
_PRECISION = typer.Option("fp32", help="Precision for the embedded model.")
_CHECKPOINT = typer.Option(None, help="Checkpoint to use instead of the embedded one.")
_THREADS = typer.Option(None, min=1, help="Inference threads.")
_VERIFY = typer.Option(True, help="Self-check the bundle on this machine first (refuse it when "
                                  "it fails).")
_TRUST = typer.Option([], "--trust", help="Trusted public key (PEM, or a folder of them; "
                                          "repeatable; default: $MTLSI_EDGE_TRUST): refuse "
                                          "bundles not signed by one.")
_CAMERA_SIZE = typer.Option(None, "--camera-size", metavar="WxH",
                            help="Camera mode to ask for, width x height (e.g. 1280x720); "
                                 "applied, then read back.")
_CAMERA_FPS = typer.Option(None, "--camera-fps", help="Camera frame rate to ask for.")
_FOURCC = typer.Option(None, "--fourcc", help="Camera pixel format to ask for: MJPG, YUYV, …")
_CAMERA_STRICT = typer.Option(False, "--camera-strict",
                              help="Refuse a camera that gives another size, rate or format "
                                   "than asked (default: say what it gave in one line).")
_RECONNECT_S = typer.Option(30.0, "--reconnect-s",
                            help="Longest outage of a camera or stream, in seconds of "
                                 "reconnecting with backoff, before the run ends.")


def _source_options(camera_size, camera_fps, fourcc, camera_strict, reconnect_s,
                    loop: bool = False):
    from mtlsi_edge.runtime.sources import SourceOptions

    return SourceOptions.parse(camera_size, camera_fps, fourcc, camera_strict, reconnect_s,
                               loop)


def _print_notes(notes) -> None:
    for n in notes:
        console.print(f"[yellow]warning:[/] {escape(n)}", highlight=False, soft_wrap=True)


def _embedded_bundle(what: str, checkpoint, target: str, precision: str) -> Path:
    from mtlsi_edge.cli.app import require_build_half

    require_build_half(what)
    from mtlsi_edge.cli.demo_cache import cached_bundle

    return cached_bundle(checkpoint or starter_checkpoint(), target, precision, console=console)


def _load_predictor(bundle, threads, verify, trust):
    from mtlsi_edge.runtime.predictor import Predictor

    # A bundle that fails its self-check here is refused, not used: plausible-looking wrong
    # outputs are worse than none, and silently swapping in another precision would hide
    # that this device breaks the one asked for.
    predictor = Predictor.from_bundle(bundle, threads=threads, verify=verify, trust=trust)
    if predictor.check is not None:
        c = predictor.check
        console.print(escape(f"self-check: pass on this machine ({c.target} "
                             f"{c.runtime_version}, computes in {c.device_precision}, "
                             f"{c.seconds * 1e3:.0f} ms)"))
    return predictor


@app.command()
def demo(
    bundle: Path = typer.Option(None, help="Compiled bundle; default: the embedded model "
                                          "compiled for --target/--precision (cached)."),
    source: str = typer.Option(None, help="Camera index, video file, URL or image folder; "
                                          "default: camera 0, else the SynthIndoor walkthrough."),
    layout: str = typer.Option("grid", help="grid | blend | seg | depth | normals | edges"),
    record: Path = typer.Option(None, help="Record the rendered view (.mp4 or .avi); without "
                                           "a display: runs/demo/demo-DATE-TIME.mp4."),
    headless: bool = typer.Option(False, help="No window (also chosen when there is no display)."),
    max_frames: int = typer.Option(None, min=1, help="Stop after N frames."),
    target: str = _TARGET,
    precision: str = _PRECISION,
    checkpoint: Path = _CHECKPOINT,
    threads: int = _THREADS,
    pipeline: bool = typer.Option(True, help="Infer frame N while rendering frame N-1."),
    loop: bool = typer.Option(False, help="Restart a video file or folder at its end."),
    overwrite: bool = typer.Option(False, help="Replace an existing --record file."),
    verify: bool = _VERIFY,
    trust: list[Path] = _TRUST,
    camera_size: str = _CAMERA_SIZE,
    camera_fps: float = _CAMERA_FPS,
    fourcc: str = _FOURCC,
    camera_strict: bool = _CAMERA_STRICT,
    reconnect_s: float = _RECONNECT_S,
) -> None:
    """Live demo: all four task outputs overlaid on a camera or video, with a HUD.

    Keys: q/Esc quit, space pause, 1-6 layouts, s snapshot (runs/demo/).  Without a display
    it runs headless and records the rendered view under runs/demo/ (never overwriting).
    Sources and their options are those of `mtlsi-edge predict` (docs/predict.md).

    Examples:
      mtlsi-edge demo
      mtlsi-edge demo --source video.mp4 --record runs/demo/out.mp4 --headless
      mtlsi-edge demo --bundle runs/compile/openvino-fp32 --source 0 --layout blend
      mtlsi-edge demo --source /dev/video0 --camera-size 1280x720 --fourcc MJPG
      mtlsi-edge demo --source rtsp://192.168.1.20/stream --reconnect-s 60
    """
    from mtlsi_edge.backends import build_half_installed
    from mtlsi_edge.runtime.capture import Source, default_source
    from mtlsi_edge.runtime.loop import LAYOUTS, LoopOptions, display_available, run_loop
    from mtlsi_edge.runtime.sources import parse_source

    if layout not in LAYOUTS:
        fail(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    opts = _source_options(camera_size, camera_fps, fourcc, camera_strict, reconnect_s, loop)
    if source is not None:
        parse_source(source, opts)  # a missing file, device or GStreamer: before any work
    if record is not None:
        check_output_file(record, (".mp4", ".avi"), "--record file")
        refuse_existing([record], overwrite)
        sweep_stale_stages(record)  # partial recordings of killed demos
    if not display_available():
        if record is None:  # keep what was rendered: there is no window to show it in
            record = next_free_path("runs/demo", f"demo-{time.strftime('%Y%m%d-%H%M%S')}",
                                    ".mp4")
            check_output_file(record, (".mp4",), "recording")
        if not headless:
            console.print(escape(f"no display found: running headless, recording to "
                                 f"{record}"), style="yellow", highlight=False, soft_wrap=True)
        headless = True
    if bundle is None:
        bundle = _embedded_bundle("demo without --bundle (it compiles the embedded model)",
                                  checkpoint, target, precision)
    predictor = _load_predictor(bundle, threads, verify, trust)
    if source is None:
        render = None
        if build_half_installed():
            from mtlsi_edge.data.synthindoor import render_walkthrough

            def render(path: Path) -> None:
                render_walkthrough(path, seconds=12, fps=15)

        source, why = default_source(console=console, render=render)
        console.print(escape(f"source: {why}"), highlight=False, soft_wrap=True)
    src = Source(source, options=opts)
    _print_notes(src.notes)
    console.print(f"model: {bundle} ({predictor.target} {predictor.precision}); "
                  f"source: {src.info.name}; layout {layout}")
    stats = run_loop(predictor, src, LoopOptions(layout=layout, record=record, headless=headless,
                                                 max_frames=max_frames, pipeline=pipeline,
                                                 overwrite=overwrite))
    if stats.frames == 0:
        fail(f"{src.info.name}: no frame could be read"
             + (f" ({len(src.skipped)} unreadable images skipped)" if src.skipped else ""))
    med = stats.medians()
    console.print(f"{stats.frames} frames in {stats.wall_s:.1f} s = [bold]{stats.fps:.1f} FPS[/]"
                  f", dropped {stats.dropped}; stopped by {stats.stopped_by}")
    console.print("median ms: " + ", ".join(f"{k} {v:.1f}" for k, v in med.items()))
    if stats.gaps:
        console.print(f"[yellow]source gaps:[/] {stats.gaps} ({stats.gap_s:.1f} s lost), "
                      f"{stats.reconnects} reconnects")
    if src.skipped:
        console.print(f"[yellow]skipped {len(src.skipped)} unreadable images[/], e.g. "
                      f"{src.skipped[0]}")
    for p in stats.snapshots:
        console.print(f"snapshot: {p}")
    if stats.recording:
        if record is not None and stats.recording != str(record):
            console.print(escape(f"note: {record} was created by another program during the "
                                 f"run; this recording is {stats.recording}"), style="yellow",
                          highlight=False)
        console.print(f"recording: [bold]{escape(stats.recording)}[/]", soft_wrap=True)


@app.command()
def predict(
    source: str = typer.Argument(..., help="An image, a folder, a glob (quoted), a video, a "
                                          "camera (0, /dev/video0, csi://0), a URL (rtsp://, "
                                          "http://) or a GStreamer pipeline (with '!')."),
    bundle: Path = typer.Option(None, help="Compiled bundle; default: the embedded model "
                                          "compiled for --target/--precision (cached)."),
    out: Path = typer.Option(None, help="Output folder (default: runs/predict/DATE-TIME)."),
    overlay: bool = typer.Option(False, "--overlay", help="Also write the annotated 2x2 grid "
                                                         "(overlay/STEM.jpg)."),
    depth_npy: bool = typer.Option(False, "--depth-npy", help="Also write depth as float32 "
                                                             "metres (depth/STEM.npy)."),
    exist_ok: bool = typer.Option(False, "--exist-ok", help="Write into a folder holding an "
                                                           "earlier run, replacing its files."),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed or stopped run in "
                                                       "--out: frames already written are "
                                                       "not predicted again."),
    max_frames: int = typer.Option(None, min=1, help="Stop after N frames."),
    target: str = _TARGET,
    precision: str = _PRECISION,
    checkpoint: Path = _CHECKPOINT,
    threads: int = _THREADS,
    pipeline: bool = typer.Option(True, help="Infer frame N while frame N-1 is written."),
    verify: bool = _VERIFY,
    trust: list[Path] = _TRUST,
    camera_size: str = _CAMERA_SIZE,
    camera_fps: float = _CAMERA_FPS,
    fourcc: str = _FOURCC,
    camera_strict: bool = _CAMERA_STRICT,
    reconnect_s: float = _RECONNECT_S,
) -> None:
    """Predict every frame of a source and write the outputs as files.

    Per frame: labels as an indexed PNG (pixel = class index, palette = class
    colours), depth as 16-bit PNG in millimetres, normals as RGB PNG ((n+1)/2,
    RGB = xyz), boundary probability as 8-bit PNG; optionally the overlay and
    float depth.  predictions.jsonl lists each frame written (source name, time,
    files, latency); unreadable frames are listed and skipped.  Nothing is
    replaced without --exist-ok; --resume continues a killed run.  Formats and
    a reader: docs/predict.md.

    Examples:
      mtlsi-edge predict photos/ --out runs/predict/photos
      mtlsi-edge predict "shots/**/*.jpg" --bundle runs/compile/openvino-fp32 --overlay
      mtlsi-edge predict walk.mp4 --out runs/predict/walk --depth-npy
      mtlsi-edge predict walk.mp4 --out runs/predict/walk --resume
      mtlsi-edge predict /dev/video0 --camera-size 1280x720 --fourcc MJPG --max-frames 300
      mtlsi-edge predict csi://0 --camera-size 1920x1080 --camera-fps 30
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    from mtlsi_edge.runtime.predict import (
        OutputFormats,
        PredictOptions,
        check_out_dir,
        run_predict,
    )
    from mtlsi_edge.runtime.sources import parse_source
    from mtlsi_edge.tasks import TASK_SETS

    opts = _source_options(camera_size, camera_fps, fourcc, camera_strict, reconnect_s)
    parsed = parse_source(source, opts)  # a missing file, device or GStreamer: before any work
    if out is None:
        out = next_free_path("runs/predict", time.strftime("%Y%m%d-%H%M%S"), "")
    known = sorted({t.name for ts in TASK_SETS.values() for t in ts})
    check_out_dir(out, known, exist_ok, resume)
    if bundle is None:
        bundle = _embedded_bundle("predict without --bundle (it compiles the embedded model)",
                                  checkpoint, target, precision)
    predictor = _load_predictor(bundle, threads, verify, trust)

    class FPSColumn(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            if not speed and task.elapsed:  # too few samples for rich's estimate yet
                speed = (task.completed - task.fields.get("start_n", 0)) / task.elapsed
            return Text(f"{speed:5.1f} FPS" if speed else "  –   FPS", style="cyan")

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        FPSColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=console, transient=False)
    bar = {}

    def on_start(src, stats) -> None:
        _print_notes(src.notes)
        console.print(escape(f"model: {bundle} ({predictor.target} {predictor.precision}); "
                             f"source: {src.info.name} ({parsed.kind})"), highlight=False,
                      soft_wrap=True)
        if stats.resumed:
            console.print(f"resuming: {stats.resumed} frames already written")
        total = stats.total if max_frames is None else min(stats.total or max_frames,
                                                           stats.resumed + max_frames)
        progress.start()
        bar["id"] = progress.add_task("predict", total=total, completed=stats.resumed,
                                      start_n=stats.resumed)

    def on_written(_rec) -> None:
        progress.advance(bar["id"])

    options = PredictOptions(source_options=opts, max_frames=max_frames, pipeline=pipeline,
                             formats=OutputFormats(depth_npy=depth_npy, overlay=overlay),
                             exist_ok=exist_ok, resume=resume, bundle=bundle)
    try:
        stats = run_predict(predictor, source, out, options, on_start=on_start,
                            on_written=on_written)
        if "id" in bar and stats.stopped_by == "end of source":  # unreadable frames: no gap
            progress.update(bar["id"], total=stats.frames + stats.resumed)
    finally:
        if "id" in bar:  # a Progress that never started would still print a newline
            progress.stop()
    med = stats.medians()
    console.print(f"{stats.frames} frames written in {stats.wall_s:.1f} s = "
                  f"[bold]{stats.fps:.1f} FPS[/] ({stats.bytes / 1e6:.1f} MB)"
                  + (f", {stats.resumed} already done" if stats.resumed else "")
                  + (f", dropped {stats.dropped}" if stats.dropped else "")
                  + f"; stopped by {stats.stopped_by}", highlight=False)
    if med:
        console.print("median ms: " + ", ".join(f"{k} {v:.1f}" for k, v in med.items()),
                      highlight=False)
    if stats.gaps:
        console.print(f"[yellow]source gaps:[/] {stats.gaps} ({stats.gap_s:.1f} s lost), "
                      f"{stats.reconnects} reconnects")
    if stats.unreadable:
        console.print(f"[yellow]skipped {len(stats.unreadable)} unreadable images:[/] "
                      + escape(", ".join(stats.unreadable[:5]))
                      + (" …" if len(stats.unreadable) > 5 else "")
                      + " (listed in summary.json)", soft_wrap=True)
    print_path("index", out / "predictions.jsonl")
    if stats.stopped_by in ("SIGINT", "SIGTERM"):
        console.print(escape(f"interrupted: continue with --resume --out {out}"),
                      style="yellow", highlight=False, soft_wrap=True)
        raise typer.Exit(130 if stats.stopped_by == "SIGINT" else 143)


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
    trust: list[Path] = _TRUST,
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
    from mtlsi_edge.backends import importable
    from mtlsi_edge.cli.app import require_build_half
    from mtlsi_edge.profiler import report
    from mtlsi_edge.profiler.bench import MODES, ProfileOptions
    from mtlsi_edge.profiler.run import (
        ReportOptions,
        check_bundles,
        profile_bundles,
        self_check,
    )

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
    frame = parse_size(size) if size else None
    run_dir = Path("runs/profile") / (name or time.strftime("%Y%m%d-%H%M%S"))
    notes: list[str] = []

    def note(msg: str) -> None:
        notes.append(msg)
        console.print(f"[yellow]note:[/] {escape(msg)}", highlight=False)

    plotter = None
    if importable("matplotlib"):
        from mtlsi_edge.profiler.plots import write_plots as plotter
    elif plot is not None:
        fail("--plot needs matplotlib, which this runtime-only install lacks: "
             "pip install matplotlib")

    if bundle:
        paths = check_bundles(bundle, trust)
    else:
        require_build_half("profile without --bundle (it compiles the checkpoint)")
        from mtlsi_edge.compiler import compile_matrix

        paths = compile_matrix(checkpoint or starter_checkpoint(),
                               [t.strip() for t in targets.split(",") if t.strip()],
                               [p.strip() for p in precisions.split(",") if p.strip()],
                               run_dir / "bundles", note, console=console)
        print_path("bundles", run_dir / "bundles")
    if verify:  # a bundle is timed only once it has proved its outputs on this machine
        for folder in paths:
            c = self_check(folder)
            console.print(escape(f"self-check {folder}: pass ({c.device_precision}, "
                                 f"{c.seconds * 1e3:.0f} ms)"), highlight=False)
    doc, written = profile_bundles(
        paths, run_dir,
        ProfileOptions(mode=mode, per_layer=per_layer, time_s=time_s, runs=runs, size=frame,
                       threads=threads),
        ReportOptions(json=json_path, csv=csv_path, md=md_path, plot=plot, plotter=plotter),
        notes=notes, note=note, console=console)
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
            print_path(kind, f)
    if plotter is None:
        console.print("no PNG plots: matplotlib is not installed (runtime-only install)",
                      style="dim", highlight=False)
