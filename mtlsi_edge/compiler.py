"""Compiling bundles (the build half): export (or take) an ONNX model, compile it for a target,
gate it against the FP32 reference on held-out SynthIndoor renders and write the folder
atomically (staged next to the destination, then renamed).  The format it writes is
:mod:`mtlsi_edge.bundle`; the frames and reference outputs it stores are what the device's
``check`` re-proves the bundle with.

A checkpoint is built and exported once per command (:func:`export_checkpoint` →
:class:`Exported`); every bundle of that command compiles from it (:class:`CompileRequest`).
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtlsi_edge import verify
from mtlsi_edge._version import __version__
from mtlsi_edge.backends.onnxruntime import ORTRunner
from mtlsi_edge.bundle import (
    LABEL_STRIDE,
    SCHEMA,
    check_destination,
    check_graph,
    load_bundle,
    write_manifest,
)
from mtlsi_edge.data.seeds import GATE_SEED, PARITY_SEED, gate_frames, render_bgr, timing_frame
from mtlsi_edge.errors import BundleError, ConfigError
from mtlsi_edge.export import export_onnx, normalize, with_frame_io
from mtlsi_edge.fileio import _umask, atomic_write_json, replace_dir, sha256, sweep_stale_stages
from mtlsi_edge.inputs import IMAGENET, InputSpec
from mtlsi_edge.machine import cpu_flags
from mtlsi_edge.model.complexity import bundle_complexity
from mtlsi_edge.model.mtlsi import MTLSIConfig
from mtlsi_edge.precisions import PRECISIONS
from mtlsi_edge.profiler.run import ProfileError
from mtlsi_edge.qdq import quantization_ops
from mtlsi_edge.runtime.frames import runner_input
from mtlsi_edge.signing import load_private_key, sign_bundle
from mtlsi_edge.targets import (
    TARGETS,
    CompileOptions,
    FrameIOSpec,
    ModelMismatch,
    Target,
    TargetUnavailable,
    get_target,
)
from mtlsi_edge.targets.torch import TorchRunner
from mtlsi_edge.tasks import get_task_set
from mtlsi_edge.train.checkpoint import build_from_checkpoint, read_checkpoint_meta
from mtlsi_edge.verify import parity_report, run_each

__all__ = ["CompileRequest", "Exported", "check_precision_label", "compile_bundle",
           "compile_matrix", "export_checkpoint", "export_with_parity", "fp32_reference_source",
           "reference_inputs"]


def reference_inputs(size: tuple[int, int], n: int = 4, seed: int = PARITY_SEED) -> np.ndarray:
    """Real (rendered) images for parity: ``n×3×H×W`` float32, normalised as at inference."""
    return normalize(np.stack([render_bgr(seed + i, size)[:, :, ::-1] for i in range(n)]))


@dataclass(frozen=True)
class Exported:
    """A checkpoint built once and exported once: every bundle of one ``deploy`` (FP32 and
    INT8) and its quantisation start from this.  ``model`` is the eager model in its deploy
    graph (the gates' reference), ``onnx`` its FP32 export."""

    model: object
    onnx: Path
    checkpoint: Path
    weights: Path
    variant: str | None
    pruned: dict | None
    stride: int = 4
    #: The model's outputs on gate inputs, by how they were asked for (frame I/O, label size,
    #: output stride): every bundle of one deploy is gated against the same reference run.
    references: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def graph(self) -> str:
        return self.model.graph


def export_checkpoint(checkpoint: str | Path, target: Target, onnx_path: Path,
                      graph: str | None = None, stride: int = 4) -> Exported:
    """Build ``checkpoint``'s model, choose its deploy graph (``graph``, else the target's
    measured default, :attr:`Target.default_graph`) and export it to ``onnx_path``."""
    check_graph(graph, allow_none=True)
    model, doc = build_from_checkpoint(checkpoint)
    model.use_graph(graph or target.default_graph)
    onnx_path = export_onnx(model, onnx_path, stride=stride)
    _, jpath = read_checkpoint_meta(checkpoint)
    return Exported(model, onnx_path, jpath, jpath.parent / doc["weights"], doc.get("variant"),
                    doc.get("pruned"), stride)


def checkpoint_task_set(checkpoint: str | Path):
    """The task set of ``checkpoint``, read from its JSON with its model config checked (no
    weights loaded): what options are checked against before any work."""
    doc, _ = read_checkpoint_meta(checkpoint)
    return get_task_set(MTLSIConfig.from_dict(doc["model_config"]).task_set)


@dataclass(frozen=True)
class CompileRequest:
    """One bundle to build.  The source is exactly one of ``checkpoint`` (built and exported
    here), ``exported`` (a checkpoint already built and exported, :func:`export_checkpoint`)
    or ``model_file`` (an ONNX file or OpenVINO IR; with ``exported`` too, the file is compiled
    and ``exported``'s model is the gate's reference — an INT8 model quantised from it).

    options: device, threads and the target's own knobs (``precision`` and ``frame_io`` are
    set from this request).  frame_io: None = what the target supports.  graph: the deploy
    graph of a checkpoint (None = the target's default).  gate: per-task threshold overrides.
    force: write a bundle that fails its gate (its manifest says so).  sign: an Ed25519
    private key.  accuracy / source_onnx: manifest fields of an INT8 build (its labelled
    accuracy report; the FP32 ONNX a quantised file was made from).
    """

    target: str
    precision: str = "fp32"
    checkpoint: Path | None = None
    exported: Exported | None = None
    model_file: Path | None = None
    options: CompileOptions = dataclasses.field(default_factory=CompileOptions)
    frame_io: bool | None = None
    label_stride: int = LABEL_STRIDE
    graph: str | None = None
    gate: dict[str, float] | None = None
    force: bool = False
    sign: Path | None = None
    accuracy: dict | None = None
    source_onnx: Path | None = None


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


def fp32_reference_source(src: Path, source_onnx: Path | None = None) -> Path:
    """The FP32 ONNX an ONNX/IR source was made from: ``source_onnx``, else the
    ``NAME.fp32.onnx`` that ``mtlsi-edge quantize`` writes beside ``NAME.onnx``/``NAME.xml``,
    else the source itself when it is not quantised."""
    if source_onnx:
        return Path(source_onnx)
    sibling = src.with_name(src.stem + ".fp32.onnx")
    if sibling.is_file():
        return sibling
    if src.suffix == ".onnx" and quantization_ops(src) == 0:
        return src
    raise BundleError(f"{src}: its FP32 reference {sibling.name} is not beside it (the gate "
                      f"compares an INT8 model with the FP32 model it was quantised from)")


def _check_request(req: CompileRequest, tgt: Target) -> bool:
    """Everything decidable before any work; returns whether the bundle takes frame I/O."""
    tgt.require(error=BundleError)
    if req.precision not in tgt.precisions:
        raise BundleError(f"target {req.target} supports {', '.join(tgt.precisions)}, "
                          f"not {req.precision}")
    if req.checkpoint is None and req.model_file is None and req.exported is None:
        raise BundleError("give a checkpoint or an ONNX file")
    frame_io = tgt.frame_io if req.frame_io is None else req.frame_io
    if frame_io and not tgt.frame_io:
        raise BundleError(f"target {req.target} cannot fold pre/postprocessing into its model; "
                          f"compile it without frame I/O")
    if req.label_stride not in (1, 2, 4):
        raise BundleError(f"label stride must be 1, 2 or 4, got {req.label_stride}")
    check_graph(req.graph, allow_none=True)
    if req.sign is not None:
        load_private_key(req.sign)  # a bad key is refused before any work
    if req.graph is not None and req.model_file is not None:
        raise BundleError("--graph applies to a checkpoint; an ONNX file keeps the graph it "
                          "was exported with")
    if req.graph is not None and req.exported is not None:
        raise BundleError("graph applies to a checkpoint; an exported model keeps the graph "
                          "it was exported in")
    if req.model_file is not None and not Path(req.model_file).is_file():
        raise BundleError(f"{req.model_file}: file not found")
    return frame_io


@dataclass
class _Source:
    """What one bundle compiles from, resolved: the file handed to the target, the metadata
    the manifest records, and the reference the gate compares with (the eager model, or the
    FP32 ONNX run by ONNX Runtime)."""

    path: Path
    meta: dict
    task_set: object
    variant: str | None
    pruned: dict | None
    graph: str | None
    model: object | None = None
    ref_onnx: Path | None = None
    weights: Path | None = None
    references: dict = dataclasses.field(default_factory=dict)


def _resolve_source(req: CompileRequest, tgt: Target, work: Path, ref_onnx: Path | None
                    ) -> _Source:
    exp = req.exported
    if exp is None and req.model_file is None:  # a checkpoint: built and exported here
        exp = export_checkpoint(req.checkpoint, tgt, work / "model.onnx", req.graph)
    if exp is not None:
        meta = {"model_config": exp.model.cfg.to_dict(), "stride": exp.stride}
        return _Source(Path(req.model_file or exp.onnx), meta, exp.model.task_set, exp.variant,
                       exp.pruned, exp.graph, model=exp.model, weights=exp.weights,
                       references=exp.references)
    src = Path(req.model_file)
    meta = _onnx_meta(src if src.suffix == ".onnx" else ref_onnx)
    return _Source(src, meta, get_task_set(meta["model_config"]["task_set"]), None,
                   meta.get("pruned"), meta.get("graph"), ref_onnx=ref_onnx)


def _frame_io_spec(req: CompileRequest, task_set, size: tuple[int, int]
                   ) -> FrameIOSpec:
    seg = [t for t in task_set if t.spec.output == "labels"]
    if any(t.out_channels > 256 for t in seg):
        raise BundleError("frame I/O emits uint8 labels: at most 256 classes")
    label_size = None if req.label_stride == 4 else (size[0] // req.label_stride,
                                                     size[1] // req.label_stride)
    return FrameIOSpec(tuple(IMAGENET.mean), tuple(IMAGENET.std), tuple(t.name for t in seg),
                       label_size)


def _manifest(req: CompileRequest, tgt: Target, src: _Source, fio: FrameIOSpec | None,
              record: dict) -> dict:
    cfg = src.meta["model_config"]
    size = tuple(cfg["input_size"])
    frame = {"label_stride": req.label_stride,
             "label_size": list(fio.label_size) if fio.label_size else None} if fio else {}
    manifest = {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mtlsi_edge_version": __version__,
        "model": {"variant": src.variant, "config": cfg, "pruned": src.pruned},
        # for the device's profiler: params, GMACs, part names (no model there)
        "complexity": _complexity(cfg, size),
        "task_set": src.task_set.to_dict(),
        "input": IMAGENET.with_size(size).manifest(frame_io=fio is not None),
        "io": "frame" if fio else "tensor",
        # label_size null: labels at the heads' own resolution (no resize in the graph)
        **frame,
        "outputs": src.task_set.names,
        # the deploy graph (null: an ONNX file exported before exports recorded it)
        "graph": src.graph,
        "output_stride": src.meta.get("stride", 4),
        "precision": req.precision,
        "target": req.target,
        "device": req.options.device,
        "runtime_versions": {req.target: tgt.runtime_version()},
        "files": {},
    }
    manifest.update(record)  # the target's build record
    if req.source_onnx is not None:
        manifest["source_onnx"] = str(req.source_onnx)
    if req.accuracy is not None:
        manifest["accuracy"] = req.accuracy
    return manifest


def _reference_runner(src: _Source, fio: FrameIOSpec | None, work: Path, output_stride: int):
    """The gate's FP32 reference: the eager model, else ONNX Runtime on the FP32 ONNX (with
    the same frame-I/O graph around it)."""
    if src.model is not None:
        return TorchRunner(src.model, CompileOptions(), output_stride, fio is not None,
                           fio.label_size if fio else None), "torch-fp32"
    ref = src.ref_onnx
    if fio:
        import onnx

        ref = work / "reference.onnx"
        onnx.save(with_frame_io(onnx.load(str(src.ref_onnx)), IMAGENET.mean, IMAGENET.std,
                                list(fio.label_outputs), fio.label_size), str(ref))
    return ORTRunner(ref, CompileOptions(device="cpu"), src.task_set.names), "onnxruntime-fp32"


def _gate(req: CompileRequest, tgt: Target, src: _Source, fio: FrameIOSpec | None,
          stage: Path, manifest: dict) -> tuple[np.ndarray, dict]:
    """Load the compiled model as the device will, check its I/O, compare it with the FP32
    reference on held-out frames (into ``manifest``); returns the frames and the reference's
    finished outputs (what the bundle stores).  Raises :class:`VerificationError` on a
    failed gate unless ``req.force``."""
    size = tuple(src.meta["model_config"]["input_size"])
    frames = gate_frames(size)
    runner = tgt.load(stage, manifest, CompileOptions(precision=req.precision,
                                                      device=req.options.device,
                                                      threads=req.options.threads))
    verify.check_io(runner, manifest, stage)
    ref_runner, ref_name = _reference_runner(src, fio, stage / ".work",
                                             manifest["output_stride"])
    spec = InputSpec.from_manifest(manifest["input"])
    x = np.concatenate([runner_input(f, spec.size, fio is not None, False, spec.mean_255(),
                                     spec.inv_std_255())[0] for f in frames])
    got = run_each(runner, x)
    key = (fio, manifest["output_stride"])
    if key not in src.references:  # a second bundle of the same export reuses the run
        src.references[key] = run_each(ref_runner, x)
    ref = src.references[key]
    task_set = src.task_set
    manifest["parity"] = {"reference": ref_name, "images": len(frames),
                          "inputs": f"SynthIndoor renders, seeds {GATE_SEED}+",
                          "per_task": parity_report(ref, got, task_set, ref_runner.layouts,
                                                    runner.layouts)}
    ref_f = verify.finish_raw(ref, task_set, ref_runner.layouts)
    thresholds = verify.thresholds_for(req.precision, task_set, req.gate)
    result = verify.gate(ref_f, verify.finish_raw(got, task_set, runner.layouts), task_set,
                         req.precision, thresholds)
    manifest["gate"] = {**result.to_dict(), "forced": bool(req.force and not result.passed),
                        "cpu_flags": cpu_flags()}
    manifest["device_precision"] = getattr(runner, "device_precision", req.precision)
    manifest["output_layouts"] = runner.layouts
    manifest["reference"] = {"file": verify.REFERENCE_FILE, "source": ref_name,
                             "frames": len(frames), "thresholds": thresholds}
    del runner
    if not result.passed and not req.force:
        raise verify.VerificationError(
            f"{req.target} {req.precision} failed its parity gate against {ref_name} on this "
            f"machine: {'; '.join(result.failures)} (not written; --force keeps it)", result)
    return frames, ref_f


def compile_bundle(out: str | Path, req: CompileRequest) -> Path:
    """Build the bundle ``req`` asks for at ``out``; returns its folder.

    The compiled artifact is gated against the FP32 reference (PyTorch for a checkpoint, ONNX
    Runtime on the FP32 ONNX otherwise) on held-out frames (:mod:`mtlsi_edge.verify`); a bundle
    that fails raises :class:`~mtlsi_edge.verify.VerificationError` and is not written, unless
    ``req.force`` (then its manifest records the failure).  The frames and the reference
    outputs go into the bundle for ``mtlsi-edge check``.

    Frame I/O (default: what the target supports): the compiled model takes the uint8 BGR
    frame and emits class labels at 1/``label_stride`` of the input size (pre/postprocessing
    in the graph, manifest ``"io": "frame"``); otherwise normalised float NCHW in, logits out.
    """
    tgt = get_target(req.target)
    frame_io = _check_request(req, tgt)
    out = Path(out)
    check_destination(out)
    file = None if req.model_file is None else Path(req.model_file)
    check_precision_label(file, req.precision)
    ref_onnx = None if file is None or req.exported is not None else fp32_reference_source(
        file, req.source_onnx)
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_stages(out)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{os.getpid()}-", dir=out.parent))
    os.chmod(stage, 0o777 & ~_umask())  # mkdtemp makes it 0700; a bundle is a normal folder
    (stage / ".work").mkdir()
    try:
        src = _resolve_source(req, tgt, stage / ".work", ref_onnx)
        size = tuple(src.meta["model_config"]["input_size"])
        fio = _frame_io_spec(req, src.task_set, size) if frame_io else None
        opts = dataclasses.replace(req.options, precision=req.precision, frame_io=fio,
                                   weights=src.weights)
        built = tgt.compile(src.path, stage, opts, src.task_set.names)
        manifest = _manifest(req, tgt, src, fio, built.record)
        frames, ref_f = _gate(req, tgt, src, fio, stage, manifest)
        verify.save_references(stage / verify.REFERENCE_FILE, frames, ref_f,
                               timing=timing_frame(size))
        files = [*built.files, verify.REFERENCE_FILE]
        manifest["files"] = {f: sha256(stage / f) for f in files}
        shutil.rmtree(stage / ".work")
        mpath = write_manifest(stage, manifest)
        if req.sign is not None:
            sign_bundle(stage, json.loads(mpath.read_text()), req.sign)
        check_destination(out)  # it may have changed while we compiled
        return replace_dir(stage, out)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


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


def _matrix_problem(checkpoint: Path, targets: list[str], precisions: list[str]) -> str | None:
    if not Path(checkpoint).is_file():
        return f"{checkpoint}: checkpoint not found"
    for t in targets:
        if t not in TARGETS:
            return f"unknown target {t!r}; known: {', '.join(TARGETS)}"
    for p in precisions:
        if p not in PRECISIONS:
            return f"unknown precision {p!r}; use {', '.join(PRECISIONS[:-1])} or {PRECISIONS[-1]}"
    if not targets or not precisions:
        return "--targets and --precisions must each name at least one"
    return None


def compile_matrix(checkpoint: Path, targets: list[str], precisions: list[str], out: Path,
                   note: Callable[[str], None], console=None) -> list[Path]:
    """One bundle per available target × precision under ``out`` (``out/TARGET-PREC``); pairs
    that cannot be built here are skipped with a ``note``."""
    problem = _matrix_problem(checkpoint, targets, precisions)
    if problem:
        raise ProfileError(problem)
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
            req = CompileRequest(t, p, checkpoint=Path(checkpoint),
                                 options=CompileOptions(device=tgt.default_device))
            try:
                with console.status(f"compiling {t} {p} bundle…") if console is not None \
                        else nullcontext():
                    paths.append(compile_bundle(out / f"{t}-{p}", req))
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
