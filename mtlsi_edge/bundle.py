"""Self-describing, checksummed model bundles: ``manifest.json`` + the target's model files.

``compile_bundle`` exports (or takes) an ONNX model, compiles it for a target, measures parity
against a reference on rendered SynthIndoor images, and writes the folder atomically (staged
next to the destination, then renamed).  ``load_bundle`` verifies the schema and the sha256 of
every file and refuses anything tampered, missing or extra with a one-line reason.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import cv2
import numpy as np

from mtlsi_edge import verify
from mtlsi_edge._version import __version__
from mtlsi_edge.data.synthindoor import render_sample
from mtlsi_edge.errors import BundleError
from mtlsi_edge.export import export_onnx, normalize, parity_report, with_frame_io
from mtlsi_edge.fileio import _umask, atomic_write_json, replace_dir, sha256
from mtlsi_edge.inputs import IMAGENET, InputSpec
from mtlsi_edge.machine import cpu_flags
from mtlsi_edge.runtime.frames import runner_input
from mtlsi_edge.targets import TARGETS, CompileOptions, get_target
from mtlsi_edge.targets.onnxruntime import ORTRunner
from mtlsi_edge.targets.torch import TorchRunner
from mtlsi_edge.tasks import TaskSet, get_task_set
from mtlsi_edge.train.checkpoint import build_from_checkpoint, read_checkpoint_meta

SCHEMA = "mtlsi-edge/bundle@3"
#: Earlier schemas that still load and check (@2: float NCHW input, logits out).
CHECKED_SCHEMAS = (SCHEMA, "mtlsi-edge/bundle@2")
#: Bundles made before references and the manifest hash: still loadable, not checkable.
LEGACY_SCHEMAS = ("mtlsi-edge/bundle@1",)
#: Segmentation labels of frame-I/O bundles come out at 1/LABEL_STRIDE of the input size
#: (argmax in the graph after resizing the logits; 4 = the heads' own resolution).  Chosen by
#: measurement: docs/benchmarks.md, "Labels in the graph".
LABEL_STRIDE = 1
MANIFEST = "manifest.json"


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


def quantization_ops(path: Path) -> int:
    """How many quantisation nodes a model file holds (ONNX Q/DQ, OpenVINO FakeQuantize)."""
    if path.suffix == ".xml":
        import openvino as ov

        model = ov.Core().read_model(str(path))
        return sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError and friends
        raise BundleError(f"{path}: not a readable ONNX file ({e})") from None
    return sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in proto.graph.node)


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


#: Deploy graphs of a model: its task branches as one op each, or the per-task reference.
GRAPHS = ("batched", "per-task")


def check_graph(graph: str | None, allow_none: bool = False) -> None:
    """A deploy graph name (``None`` too when ``allow_none``), or :class:`BundleError`."""
    if graph not in ((None, *GRAPHS) if allow_none else GRAPHS):
        raise BundleError(f"graph must be {' or '.join(GRAPHS)}, got {graph!r}")


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
    if graph is not None and onnx_path is not None:
        raise BundleError("--graph applies to a checkpoint; an ONNX file keeps the graph it "
                          "was exported with")
    src = None if onnx_path is None else Path(onnx_path)
    if src is not None and not src.is_file():
        raise BundleError(f"{src}: file not found")
    opts = opts or CompileOptions(precision=precision)
    opts.precision = precision
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
        files = tgt.compile(src, stage, opts, outputs)
        manifest = {
            "schema": SCHEMA,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "mtlsi_edge_version": __version__,
            "model": {"variant": variant, "config": cfg, "pruned": pruned},
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
        manifest.update(opts.extra.pop("manifest", {}))  # the target's build record
        manifest.update(extra_manifest or {})
        # Gate and parity on held-out frames, through the Predictor's own preprocessing.
        frames = verify.gate_frames(size)
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
                              "inputs": f"SynthIndoor renders, seeds {verify.GATE_SEED}+",
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
        verify.save_references(stage / verify.REFERENCE_FILE, frames, ref_f)
        files = [*files, verify.REFERENCE_FILE]
        manifest["reference"] = {"file": verify.REFERENCE_FILE, "source": ref_name,
                                 "frames": len(frames), "thresholds": thresholds}
        manifest["files"] = {f: sha256(stage / f) for f in files}
        shutil.rmtree(work)
        write_manifest(stage, manifest)
        check_destination(out)  # it may have changed while we compiled
        return replace_dir(stage, out)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def _canonical_hash(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items() if k != "integrity"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def write_manifest(folder: Path, manifest: dict) -> Path:
    """Write ``manifest.json`` with its own integrity hash (over its canonical JSON)."""
    manifest = {**manifest, "integrity": _canonical_hash(manifest)}
    return atomic_write_json(folder / MANIFEST, manifest)


def check_io(runner, manifest: dict, folder: Path) -> None:
    """The model file must be what the manifest says: its precision label true of it, its
    real input and outputs the manifest's (names, channels per task)."""
    model_file = get_target(manifest["target"]).model_file
    if model_file is not None:
        n = quantization_ops(folder / model_file)
        if (manifest["precision"] == "int8") != (n > 0):
            raise BundleError(f"{folder}: manifest says {manifest['precision']} but "
                              f"{model_file} has {n} quantisation nodes")
    io = getattr(runner, "io", None)
    if io is None:
        return
    in_shape, out_shapes = io()
    h, w = manifest["input"]["size"]
    frame = manifest.get("io") == "frame"
    want = (h, w, 3) if frame else (3, h, w)
    if len(in_shape) != 4 or any(isinstance(d, int) and d != e
                                 for d, e in zip(in_shape[1:], want)):
        raise BundleError(f"{folder}: model input {list(in_shape)} does not match the "
                          f"manifest's {'×'.join(map(str, want))}")
    for t in TaskSet.from_dict(manifest["task_set"]):
        if t.name not in out_shapes:
            raise BundleError(f"{folder}: model has no output {t.name!r} (it has "
                              f"{', '.join(out_shapes) or 'none'})")
        shape = out_shapes[t.name]
        layout = manifest.get("output_layouts", runner.layouts).get(t.name, "NCHW")
        ch = shape[3] if layout == "NHWC" else shape[1]
        need = 1 if frame and t.spec.output == "labels" else t.out_channels  # labels
        if len(shape) != 4 or (isinstance(ch, int) and ch != need):
            raise BundleError(f"{folder}: output {t.name!r} has shape {list(shape)}, the "
                              f"manifest's task needs {need} channels")


def check_destination(out: Path) -> None:
    """``out`` must be a new path, an empty folder or an existing bundle (which is replaced):
    never a file or a folder of someone's other work."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise BundleError(f"{out}: exists and is not a bundle folder; choose a new --out path")
    if not out.exists():
        for parent in out.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise BundleError(f"{out}: {parent} is a file, not a folder")
                break
        return
    entries = list(out.iterdir())
    if not entries:
        return
    why = "it holds no manifest.json"
    mpath = out / MANIFEST
    if mpath.is_file():
        try:
            m = json.loads(mpath.read_text())
            listed = (set(m["files"]) | {MANIFEST}
                      if m.get("schema") in (*CHECKED_SCHEMAS, *LEGACY_SCHEMAS) else None)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
            listed = None
        others = [e.name for e in entries if e.name not in (listed or ())]
        if listed is None:
            why = "its manifest.json is not an mtlsi-edge bundle manifest"
        elif not others:
            return
        else:
            why = f"it holds files that are not part of the bundle (e.g. {sorted(others)[0]})"
    raise BundleError(f"{out}: folder exists and is not a bundle ({why}); refusing to replace "
                      f"it: choose a new --out path")


_STAGE = re.compile(r"\.(?P<name>.+)\.(?:partial|old)-(?P<pid>\d+)-.*")


def sweep_stale_stages(out: Path) -> None:
    """Remove staging folders that killed compiles of ``out`` left behind (their process is
    gone); if a kill came between moving the old bundle aside and the new one in, put the old
    one back first."""
    if not out.parent.is_dir():
        return
    for d in sorted(out.parent.iterdir()):
        m = _STAGE.fullmatch(d.name)
        if not m or m["name"] != out.name or not d.is_dir() or _alive(int(m["pid"])):
            continue
        if ".old-" in d.name and not out.exists():
            d.rename(out)
        else:
            shutil.rmtree(d, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_each(runner, x: np.ndarray) -> dict[str, np.ndarray]:
    """Run image by image (batch 1 is what static exports accept) and stack."""
    outs = [runner(x[i:i + 1]) for i in range(len(x))]
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def load_bundle(path: str | Path) -> tuple[dict, Path]:
    """Read and verify a bundle; returns (manifest, folder).

    Checks: the manifest's schema, its own integrity hash, its fields (types, ranges, task set
    against outputs), and that the folder holds exactly the listed files — plain files, no
    links, no folders, nothing hidden — each with its sha256.
    """
    p = Path(path)
    if p.is_file() and p.name == MANIFEST:
        p = p.parent
    mpath = p / MANIFEST
    if not p.is_dir():
        raise BundleError(f"{p}: bundle folder not found")
    if not mpath.is_file():
        raise BundleError(f"{mpath}: missing (not a bundle, or an incomplete one)")
    try:
        m = json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{mpath}: unreadable manifest ({e})") from None
    found = m.get("schema") if isinstance(m, dict) else "?"
    if found not in CHECKED_SCHEMAS and found not in LEGACY_SCHEMAS:
        raise BundleError(f"{mpath}: manifest schema {found} is not {SCHEMA}")
    if found in CHECKED_SCHEMAS and m.get("integrity") != _canonical_hash(m):
        raise BundleError(f"{mpath}: manifest was modified after the bundle was made "
                          f"(its integrity hash does not match)")
    _check_fields(m, mpath)
    for entry in p.iterdir():
        if entry.name == MANIFEST:
            continue
        if entry.name not in m["files"]:
            raise BundleError(f"{entry}: not listed in the manifest (bundle was modified)")
        if entry.is_symlink() or not entry.is_file():
            raise BundleError(f"{entry}: must be a plain file, not a link or a folder")
    for name, digest in m["files"].items():
        f = p / name
        if not f.is_file():
            raise BundleError(f"{f}: listed in the manifest but missing")
        if sha256(f) != digest:
            raise BundleError(f"{f}: sha256 mismatch (file modified after the bundle was made)")
    return m, p


def _check_fields(m: dict, mpath: Path) -> None:
    """The manifest fields the runtime relies on, each named in the one-line error."""
    def bad(field: str, why: str) -> BundleError:
        return BundleError(f"{mpath}: {field} {why}")

    for key in ("target", "precision", "files", "outputs", "task_set", "input", "model"):
        if key not in m:
            raise bad(repr(key), "is missing")
    files = m["files"]
    if not isinstance(files, dict) or not files or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise bad("'files'", "must map file names to sha256 digests")
    for name in files:
        if name in ("", ".", "..") or Path(name).name != name or name.startswith(".") \
                or name == MANIFEST:
            raise bad("'files'", f"entry {name!r} points outside the bundle (or is not a plain "
                                 f"file name)")
    if m["target"] not in TARGETS:
        raise bad("'target'", f"{m['target']!r} is not one of {', '.join(TARGETS)}")
    if m["precision"] not in TARGETS[m["target"]].precisions:
        raise bad("'precision'", f"{m['precision']!r} is not one of target {m['target']}'s "
                                 f"{', '.join(TARGETS[m['target']].precisions)}")
    try:
        task_set = TaskSet.from_dict(m["task_set"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise bad("'task_set'", f"is malformed ({type(e).__name__}: {e})") from None
    if m["outputs"] != task_set.names:
        raise bad("'outputs'", f"{m['outputs']!r} do not match the task set's "
                               f"{task_set.names}")
    for t in task_set:
        if t.spec.output == "labels" and (len(t.class_names) != t.out_channels
                                         or len(t.palette) != t.out_channels):
            raise bad("'task_set'", f"task {t.name!r} has {len(t.class_names)} class names "
                                    f"and {len(t.palette)} colours for {t.out_channels} classes")
    inp = m["input"]
    if not isinstance(inp, dict):
        raise bad("'input'", "must be an object")
    size = inp.get("size")
    if not (isinstance(size, list) and len(size) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and 32 <= v <= 8192 for v in size)):
        raise bad("'input.size'", f"must be [H, W] with integers in 32..8192, got {size!r}")
    for key in ("mean", "std"):
        v = inp.get(key)
        if not (isinstance(v, list) and len(v) == 3 and all(
                isinstance(x, (int, float)) and math.isfinite(x) for x in v)):
            raise bad(f"'input.{key}'", f"must be 3 finite numbers, got {v!r}")
    if any(x <= 0 for x in inp["std"]):
        raise bad("'input.std'", "must be positive")
    if m.get("io", "tensor") not in ("tensor", "frame"):
        raise bad("'io'", f"must be 'tensor' or 'frame', got {m.get('io')!r}")
    if m.get("io") == "frame":
        if m.get("label_stride") not in (1, 2, 4):
            raise bad("'label_stride'", f"must be 1, 2 or 4, got {m.get('label_stride')!r}")
        ls = m.get("label_size")
        if ls is not None and not (isinstance(ls, list) and len(ls) == 2 and all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in ls)):
            raise bad("'label_size'", f"must be null or [H, W] positive integers, got {ls!r}")
        # The normalisation is folded into the model file; the manifest only records it.
        for key, folded in (("mean", IMAGENET.mean), ("std", IMAGENET.std)):
            if not np.allclose(inp[key], folded, rtol=0, atol=1e-7):
                raise bad(f"'input.{key}'", f"{inp[key]!r} is not the normalisation folded "
                                            f"into the model ({list(folded)})")
        if (inp.get("dtype"), inp.get("layout"), inp.get("color")) != ("uint8", "NHWC", "BGR"):
            raise bad("'input'", "of a frame-I/O bundle must be uint8 NHWC BGR")
    if m.get("graph") not in (None, *GRAPHS):
        raise bad("'graph'", f"must be null or one of {', '.join(GRAPHS)}, got {m.get('graph')!r}")
    if m.get("output_stride", 4) not in (1, 4):
        raise bad("'output_stride'", f"must be 1 or 4, got {m.get('output_stride')!r}")
    layouts = m.get("output_layouts", {})
    if not isinstance(layouts, dict) or any(v not in ("NCHW", "NHWC") for v in layouts.values()):
        raise bad("'output_layouts'", "must map outputs to NCHW or NHWC")
    ref = m.get("reference")
    if ref is not None and not (isinstance(ref, dict) and ref.get("file") in files
                                and isinstance(ref.get("thresholds"), dict)
                                and set(ref["thresholds"]) == set(task_set.names)
                                and all(isinstance(v, (int, float)) and math.isfinite(v)
                                        for v in ref["thresholds"].values())):
        raise bad("'reference'", "must name a listed file and a threshold per task")


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
