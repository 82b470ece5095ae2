"""Compiling bundles (the build half): export (or take) an ONNX model, compile it for a target,
gate it against the FP32 reference on held-out SynthIndoor renders and write the folder
atomically (staged next to the destination, then renamed).  The format it writes is
:mod:`mtlsi_edge.bundle`; the frames and reference outputs it stores are what the device's
``check`` re-proves the bundle with.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import cv2
import numpy as np

from mtlsi_edge import verify
from mtlsi_edge._version import __version__
from mtlsi_edge.backends.onnxruntime import ORTRunner
from mtlsi_edge.bundle import (
    LABEL_STRIDE,
    SCHEMA,
    check_destination,
    check_graph,
    check_io,
    load_bundle,
    quantization_ops,
    run_each,
    write_manifest,
)
from mtlsi_edge.data.seeds import GATE_SEED, gate_frames, timing_frame
from mtlsi_edge.data.synthindoor import render_sample
from mtlsi_edge.errors import BundleError, ConfigError
from mtlsi_edge.export import export_onnx, normalize, parity_report, with_frame_io
from mtlsi_edge.fileio import (
    _umask,
    atomic_write_json,
    replace_dir,
    sha256,
    sweep_stale_stages,
)
from mtlsi_edge.inputs import IMAGENET, InputSpec
from mtlsi_edge.machine import cpu_flags
from mtlsi_edge.model.complexity import bundle_complexity
from mtlsi_edge.profiler.run import PRECISIONS, ProfileError
from mtlsi_edge.runtime.frames import runner_input
from mtlsi_edge.signing import load_private_key, sign_bundle
from mtlsi_edge.targets import (
    TARGETS,
    CompileOptions,
    ModelMismatch,
    TargetUnavailable,
    get_target,
)
from mtlsi_edge.targets.torch import TorchRunner
from mtlsi_edge.tasks import get_task_set
from mtlsi_edge.train.checkpoint import build_from_checkpoint, read_checkpoint_meta

__all__ = ["cached_bundle", "check_precision_label", "choose_graph", "compile_bundle",
           "compile_matrix", "export_with_parity", "fp32_reference_source", "reference_inputs",
           "set_graph"]


def reference_inputs(size: tuple[int, int], n: int = 4, seed: int = 1234) -> np.ndarray:
    """Real (rendered) images for parity: ``n×3×H×W`` float32, normalised as at inference."""
    imgs = []
    for i in range(n):
        s = render_sample(seed + i, size=(size[0], size[1]))
        img = s.image_rgb
        if img.shape[:2] != tuple(size):
            img = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        imgs.append(img)
    return normalize(np.stack(imgs))


def _onnx_meta(onnx_path: Path) -> dict:
    import onnx

    try:
        proto = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as e:
        raise BundleError(f"{onnx_path}: not a readable ONNX file ({e})") from None
    for p in proto.metadata_props:
        if p.key == "mtlsi_edge":
            return json.loads(p.value)
    raise BundleError(f"{onnx_path}: ONNX lacks mtlsi_edge metadata (export it with "
                      f"mtlsi-edge export, or quantise an exported model)")


def _complexity(cfg: dict, size: tuple[int, int]) -> dict | None:
    try:
        return bundle_complexity(cfg, size)
    except Exception:  # noqa: BLE001 - informative only (a config this version cannot build)
        return None


def check_precision_label(src: Path | None, precision: str) -> None:
    """A precision label must be true of the file: int8 needs quantisation nodes, fp32/fp16
    need none (they are applied by the target)."""
    n = 0 if src is None else quantization_ops(src)
    what = "a checkpoint" if src is None else src
    if precision == "int8" and n == 0:
        raise BundleError(f"{what} is not quantised: an int8 bundle needs an INT8 model "
                          f"(mtlsi-edge quantize, or mtlsi-edge deploy --precision int8)")
    if precision != "int8" and n:
        raise BundleError(f"{what} is quantised ({n} quantisation nodes): compile it with "
                          f"--precision int8")


def fp32_reference_source(src: Path, extra_manifest: dict | None = None) -> Path:
    """The FP32 ONNX an ONNX/IR source was made from: ``source_onnx``, else the
    ``NAME.fp32.onnx`` that ``mtlsi-edge quantize`` writes beside ``NAME.onnx``/``NAME.xml``,
    else the source itself when it is not quantised."""
    given = (extra_manifest or {}).get("source_onnx")
    if given:
        return Path(given)
    sibling = src.with_name(src.stem + ".fp32.onnx")
    if sibling.is_file():
        return sibling
    if src.suffix == ".onnx" and quantization_ops(src) == 0:
        return src
    raise BundleError(f"{src}: its FP32 reference {sibling.name} is not beside it (the gate "
                      f"compares an INT8 model with the FP32 model it was quantised from)")


def set_graph(model, graph: str) -> str:
    """Make ``model`` export/run the ``"batched"`` or ``"per-task"`` deploy graph; returns the
    graph that will run — ``"per-task"`` also when batched was asked for but the tasks'
    branches differ in shape (:meth:`MTLSINet.batchable`).  The config records what runs."""
    check_graph(graph)
    model.cfg.task_batched = graph == "batched" and model.batchable()
    return "batched" if model.cfg.task_batched else "per-task"


def choose_graph(model, target: str, graph: str | None = None) -> str:
    """:func:`set_graph` with ``graph``, or when None the target's measured default
    (:attr:`Target.task_batched`)."""
    if graph is None:
        graph = "batched" if get_target(target).task_batched else "per-task"
    return set_graph(model, graph)


def compile_bundle(
    out: str | Path,
    target: str,
    precision: str = "fp32",
    checkpoint: str | Path | None = None,
    onnx_path: str | Path | None = None,
    opts: CompileOptions | None = None,
    extra_manifest: dict | None = None,
    gate_overrides: dict[str, float] | None = None,
    force: bool = False,
    frame_io: bool | None = None,
    label_stride: int = LABEL_STRIDE,
    graph: str | None = None,
    sign: str | Path | None = None,
) -> Path:
    """Build a bundle for ``target`` from a checkpoint or an exported ONNX (or OpenVINO IR).

    The compiled artifact is gated against the FP32 reference (PyTorch for a checkpoint, ONNX
    Runtime on the FP32 ONNX otherwise) on held-out frames (:mod:`mtlsi_edge.verify`); a bundle
    that fails raises :class:`~mtlsi_edge.verify.VerificationError` and is not written, unless
    ``force`` (then its manifest records the failure).  The frames and the reference outputs go
    into the bundle for ``mtlsi-edge check``.

    ``frame_io`` (default: what the target supports): the compiled model takes the uint8 BGR
    frame and emits class labels at 1/``label_stride`` of the input size (pre/postprocessing
    in the graph, manifest ``"io": "frame"``); otherwise normalised float NCHW in, logits out.

    ``graph`` (checkpoints only; default: the target's :attr:`Target.task_batched`):
    ``"batched"`` or ``"per-task"`` deploy graph, see :func:`choose_graph`.

    ``sign``: an Ed25519 private key (``mtlsi-edge keys new``); the bundle then carries a
    detached signature over its manifest (:mod:`mtlsi_edge.signing`).
    """
    tgt = get_target(target)
    tgt.require(error=BundleError)
    if precision not in tgt.precisions:
        raise BundleError(f"target {target} supports {', '.join(tgt.precisions)}, "
                          f"not {precision}")
    if checkpoint is None and onnx_path is None:
        raise BundleError("give a checkpoint or an ONNX file")
    if frame_io is None:
        frame_io = tgt.frame_io
    elif frame_io and not tgt.frame_io:
        raise BundleError(f"target {target} cannot fold pre/postprocessing into its model; "
                          f"compile it without frame I/O")
    if label_stride not in (1, 2, 4):
        raise BundleError(f"label stride must be 1, 2 or 4, got {label_stride}")
    check_graph(graph, allow_none=True)  # before any work
    if sign is not None:
        load_private_key(sign)  # a bad key is refused before any work
    if graph is not None and onnx_path is not None:
        raise BundleError("--graph applies to a checkpoint; an ONNX file keeps the graph it "
                          "was exported with")
    src = None if onnx_path is None else Path(onnx_path)
    if src is not None and not src.is_file():
        raise BundleError(f"{src}: file not found")
    # a copy: the caller's options are never changed (the build knobs below are this call's)
    opts = dataclasses.replace(opts or CompileOptions(), precision=precision,
                               extra=dict((opts or CompileOptions()).extra))
    out = Path(out)
    check_destination(out)
    check_precision_label(src, precision)
    ref_src = None if src is None else fp32_reference_source(src, extra_manifest)
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_stages(out)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{os.getpid()}-", dir=out.parent))
    os.chmod(stage, 0o777 & ~_umask())  # mkdtemp makes it 0700; a bundle is a normal folder
    work = stage / ".work"
    work.mkdir()
    try:
        model = None
        if src is None:
            model, doc = build_from_checkpoint(checkpoint)
            graph = choose_graph(model, target, graph)
            stride = 4
            src = export_onnx(model, work / "model.onnx", stride=stride)
            meta = {"model_config": model.cfg.to_dict(), "stride": stride}
            _, jpath = read_checkpoint_meta(checkpoint)
            opts.extra["checkpoint_weights"] = jpath.parent / doc["weights"]
            task_set = model.task_set
            variant = doc.get("variant")
            pruned = doc.get("pruned")
        else:
            meta = _onnx_meta(src if src.suffix == ".onnx" else ref_src)
            task_set = get_task_set(meta["model_config"]["task_set"])
            variant = None
            pruned = meta.get("pruned")
        cfg = meta["model_config"]
        size = tuple(cfg["input_size"])
        outputs = task_set.names
        label_size = None
        if frame_io:
            seg = [t for t in task_set if t.spec.output == "labels"]
            if any(t.out_channels > 256 for t in seg):
                raise BundleError("frame I/O emits uint8 labels: at most 256 classes")
            if label_stride != 4:
                label_size = (size[0] // label_stride, size[1] // label_stride)
            opts.extra["frame_io"] = {"mean": IMAGENET.mean, "std": IMAGENET.std,
                                      "label_outputs": [t.name for t in seg],
                                      "label_size": label_size}
        built = tgt.compile(src, stage, opts, outputs)
        files = built.files
        manifest = {
            "schema": SCHEMA,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "mtlsi_edge_version": __version__,
            "model": {"variant": variant, "config": cfg, "pruned": pruned},
            # for the device's profiler: params, GMACs, part names (no model there)
            "complexity": _complexity(cfg, size),
            "task_set": task_set.to_dict(),
            "input": IMAGENET.with_size(size).manifest(frame_io=frame_io),
            "io": "frame" if frame_io else "tensor",
            # label_size null: labels at the heads' own resolution (no resize in the graph)
            **({"label_stride": label_stride,
                "label_size": list(label_size) if label_size else None} if frame_io else {}),
            "outputs": outputs,
            # the deploy graph (null: an ONNX file exported before exports recorded it)
            "graph": graph if model is not None else meta.get("graph"),
            "output_stride": meta.get("stride", 4),
            "precision": precision,
            "target": target,
            "device": opts.device,
            "runtime_versions": {target: tgt.runtime_version()},
            "files": {},
        }
        manifest.update(built.record)  # the target's build record
        manifest.update(extra_manifest or {})
        # Gate and parity on held-out frames, through the Predictor's own preprocessing.
        frames = gate_frames(size)
        runner = tgt.load(stage, manifest, CompileOptions(precision=precision,
                                                          device=opts.device,
                                                          threads=opts.threads))
        check_io(runner, manifest, stage)
        if model is not None:
            ref_runner = TorchRunner(model, CompileOptions(), manifest["output_stride"],
                                     frame_io, label_size)
            ref_name = "torch-fp32"
        else:
            if frame_io:  # the same frame-I/O graph around the FP32 model
                import onnx

                ref_path = work / "reference.onnx"
                onnx.save(with_frame_io(onnx.load(str(ref_src)), IMAGENET.mean, IMAGENET.std,
                                        opts.extra["frame_io"]["label_outputs"], label_size),
                          str(ref_path))
                ref_src = ref_path
            ref_runner = ORTRunner(ref_src, CompileOptions(device="cpu"), outputs)
            ref_name = "onnxruntime-fp32"
        spec = InputSpec.from_manifest(manifest["input"])
        x = np.concatenate([runner_input(f, spec.size, frame_io, False, spec.mean_255(),
                                         spec.inv_std_255())[0] for f in frames])
        got, ref = run_each(runner, x), run_each(ref_runner, x)
        manifest["parity"] = {"reference": ref_name, "images": len(frames),
                              "inputs": f"SynthIndoor renders, seeds {GATE_SEED}+",
                              "per_task": parity_report(ref, got, task_set, ref_runner.layouts,
                                                        runner.layouts)}
        ref_f = verify.finish_raw(ref, task_set, ref_runner.layouts)
        thresholds = verify.thresholds_for(precision, task_set, gate_overrides)
        result = verify.gate(ref_f, verify.finish_raw(got, task_set, runner.layouts), task_set,
                             precision, thresholds)
        manifest["gate"] = {**result.to_dict(), "forced": bool(force and not result.passed),
                            "cpu_flags": cpu_flags()}
        manifest["device_precision"] = getattr(runner, "device_precision", precision)
        manifest["output_layouts"] = runner.layouts
        del runner
        if not result.passed and not force:
            raise verify.VerificationError(
                f"{target} {precision} failed its parity gate against {ref_name} on this "
                f"machine: {'; '.join(result.failures)} (not written; --force keeps it)",
                result)
        verify.save_references(stage / verify.REFERENCE_FILE, frames, ref_f,
                               timing=timing_frame(size))
        files = [*files, verify.REFERENCE_FILE]
        manifest["reference"] = {"file": verify.REFERENCE_FILE, "source": ref_name,
                                 "frames": len(frames), "thresholds": thresholds}
        manifest["files"] = {f: sha256(stage / f) for f in files}
        shutil.rmtree(work)
        mpath = write_manifest(stage, manifest)
        if sign is not None:
            sign_bundle(stage, json.loads(mpath.read_text()), sign)
        check_destination(out)  # it may have changed while we compiled
        return replace_dir(stage, out)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def cached_bundle(checkpoint: str | Path, target: str, precision: str,
                  cache: str | Path = "runs/demo/bundles", console=None) -> Path:
    """A bundle of ``checkpoint`` for target/precision, compiled once under ``cache`` (keyed
    by the target's default graph and the weights' hash) and reused while it loads and
    carries reference outputs."""
    doc, _ = read_checkpoint_meta(checkpoint)
    # keyed by the target's default graph too: a bundle cached before that default changed
    # is not reused
    graph = "batched" if get_target(target).task_batched else "per-task"
    out = Path(cache) / f"{target}-{precision}-{graph}-{doc['weights_sha256'][:12]}"
    try:
        if load_bundle(out)[0].get("reference"):
            return out
    except BundleError:
        pass  # missing, damaged, or made before bundles carried references: compile again
    msg = f"compiling the model for {target} {precision} (once)…"
    with console.status(msg) if console is not None else nullcontext():
        return compile_bundle(out, target, precision, checkpoint=checkpoint,
                              opts=CompileOptions(precision=precision,
                                                  device=get_target(target).default_device))


def export_with_parity(model, out: str | Path, dynamic: bool = False,
                       stride: int = 4) -> tuple[Path, dict, Path]:
    """Export ``model`` to ONNX at ``out``, then compare ONNX Runtime with PyTorch on four
    SynthIndoor renders; returns (onnx path, parity report, report path beside the .onnx)."""
    path = export_onnx(model, out, dynamic=dynamic, stride=stride)
    x = reference_inputs(tuple(model.cfg.input_size), 4)
    ref = run_each(TorchRunner(model, CompileOptions(), stride), x)
    got = run_each(ORTRunner(path, CompileOptions(device="cpu"), model.task_set.names), x)
    rep = parity_report(ref, got, model.task_set)
    return path, rep, atomic_write_json(path.with_suffix(".parity.json"), rep)


def compile_matrix(checkpoint: Path, targets: list[str], precisions: list[str], out: Path,
                   note: Callable[[str], None], console=None) -> list[Path]:
    """One bundle per available target × precision under ``out`` (``out/TARGET-PREC``); pairs
    that cannot be built here are skipped with a ``note``."""

    if not Path(checkpoint).is_file():
        raise ProfileError(f"{checkpoint}: checkpoint not found")
    for t in targets:
        if t not in TARGETS:
            raise ProfileError(f"unknown target {t!r}; known: {', '.join(TARGETS)}")
    for p in precisions:
        if p not in PRECISIONS:
            raise ProfileError(f"unknown precision {p!r}; use fp32, fp16 or int8")
    if not targets or not precisions:
        raise ProfileError("--targets and --precisions must each name at least one")
    paths: list[Path] = []
    skipped: list[str] = []

    def skip(msg: str) -> None:
        skipped.append(msg)
        note(msg)

    for t in targets:
        tgt = get_target(t)
        ok, why = tgt.available()
        if not ok:
            skip(f"skipping {t}: {why}")
            continue
        for p in precisions:
            if p == "int8":
                skip(f"skipping {t}-int8: INT8 needs a quantised model (mtlsi-edge quantize), "
                     f"then profile its bundle with --bundle")
                continue
            if p not in tgt.precisions:
                skip(f"skipping {t}-{p}: {t} supports {', '.join(tgt.precisions)}")
                continue
            opts = CompileOptions(precision=p, device=get_target(t).default_device)
            try:
                with console.status(f"compiling {t} {p} bundle…") if console is not None \
                        else nullcontext():
                    paths.append(compile_bundle(out / f"{t}-{p}", t, p, checkpoint=checkpoint,
                                                opts=opts))
            except (BundleError, TargetUnavailable, ConfigError, ModelMismatch) as e:
                # a target refusing this model, precision or option is a skip with its
                # reason, not the end of the run (a failed parity gate still ends it: exit 3)
                skip(f"skipping {t}-{p}: {e}")
    if not paths:
        raise ProfileError("nothing to profile: " + ("; ".join(skipped)
                                                     or "no target/precision pairs"))
    return paths


def sign_written(folder: str | Path, key: str | Path) -> str:
    """Sign a bundle that is already written (``deploy``'s and ``tune``'s bundles); returns
    the key id.  The key was checked before the work (:func:`~mtlsi_edge.signing.
    load_private_key`), so this only writes ``manifest.sig``."""
    manifest, folder = load_bundle(folder)
    return sign_bundle(folder, manifest, key)
