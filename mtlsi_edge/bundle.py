"""Self-describing, checksummed model bundles: ``manifest.json`` + the target's model files.

``compile_bundle`` exports (or takes) an ONNX model, compiles it for a target, measures parity
against a reference on rendered SynthIndoor images, and writes the folder atomically (staged
next to the destination, then renamed).  ``load_bundle`` verifies the schema and the sha256 of
every file and refuses anything tampered, missing or extra with a one-line reason.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from mtlsi_edge import __version__
from mtlsi_edge.fileio import atomic_write_json, read_json_doc, sha256
from mtlsi_edge.targets import CompileOptions, get_target

SCHEMA = "mtlsi-edge/bundle@1"
MANIFEST = "manifest.json"


class BundleError(ValueError):
    """A bundle that cannot be used; one line naming the file and the problem."""


def reference_inputs(size: tuple[int, int], n: int = 4, seed: int = 1234) -> np.ndarray:
    """Real (rendered) images for parity: ``n×3×H×W`` float32, normalised as at inference."""
    import cv2

    from mtlsi_edge.data.synth import render_sample
    from mtlsi_edge.export import normalize

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


def compile_bundle(
    out: str | Path,
    target: str,
    precision: str = "fp32",
    checkpoint: str | Path | None = None,
    onnx_path: str | Path | None = None,
    opts: CompileOptions | None = None,
    parity_images: int = 4,
    extra_manifest: dict | None = None,
) -> Path:
    """Build a bundle for ``target`` from a checkpoint or an exported ONNX (or OpenVINO IR)."""
    from mtlsi_edge.export import export_onnx, parity_report
    from mtlsi_edge.targets.onnxruntime import ORTRunner
    from mtlsi_edge.tasks import TaskSet
    from mtlsi_edge.train.checkpoint import build_from_checkpoint

    tgt = get_target(target)
    ok, why = tgt.available()
    if not ok:
        raise BundleError(f"target {target} unavailable: {why}")
    if precision not in tgt.precisions:
        raise BundleError(f"target {target} supports {', '.join(tgt.precisions)}, "
                          f"not {precision}")
    opts = opts or CompileOptions(precision=precision)
    opts.precision = precision
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    work = Path(tempfile.mkdtemp(prefix=".work.", dir=out.parent))
    try:
        model = None
        if checkpoint is not None:
            model, doc = build_from_checkpoint(checkpoint)
            stride = 4
            src = export_onnx(model, work / "model.onnx", stride=stride)
            meta = {"model_config": model.cfg.to_dict(), "stride": stride}
            from mtlsi_edge.train.checkpoint import read_checkpoint_meta

            _, jpath = read_checkpoint_meta(checkpoint)
            opts.extra["checkpoint_weights"] = jpath.parent / doc["weights"]
            task_set = model.task_set
            variant = doc.get("variant")
            pruned = doc.get("pruned")
        elif onnx_path is not None:
            src = Path(onnx_path)
            if not src.is_file():
                raise BundleError(f"{src}: file not found")
            meta_src = src if src.suffix == ".onnx" else Path(
                (extra_manifest or {}).get("source_onnx", ""))
            meta = _onnx_meta(meta_src)
            from mtlsi_edge.tasks import get_task_set

            task_set = get_task_set(meta["model_config"]["task_set"])
            variant = None
            pruned = meta.get("pruned")
        else:
            raise BundleError("give a checkpoint or an ONNX file")
        cfg = meta["model_config"]
        size = tuple(cfg["input_size"])
        outputs = task_set.names
        files = tgt.compile(src, stage, opts, outputs)
        manifest = {
            "schema": SCHEMA,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "mtlsi_edge_version": __version__,
            "model": {"variant": variant, "config": cfg, "pruned": pruned},
            "task_set": task_set.to_dict(),
            "input": {"name": "image", "size": list(size), "layout": "NCHW", "color": "RGB",
                      "dtype": "float32", "mean": [0.485, 0.456, 0.406],
                      "std": [0.229, 0.224, 0.225], "scale": 1 / 255},
            "outputs": outputs,
            "output_stride": meta.get("stride", 4),
            "precision": precision,
            "target": target,
            "device": opts.device,
            "runtime_versions": {target: tgt.runtime_version()},
            "files": {},
        }
        manifest.update(opts.extra.pop("manifest", {}))  # the target's build record
        manifest.update(extra_manifest or {})
        # Parity against the reference on real rendered images: PyTorch when we have the
        # checkpoint, else ONNX Runtime FP32 on the source ONNX.
        x = reference_inputs(size, parity_images)
        runner = tgt.load(stage, manifest, CompileOptions(precision=precision,
                                                          device=opts.device,
                                                          threads=opts.threads))
        got = _run_each(runner, x)
        if model is not None:
            from mtlsi_edge.targets.torch import TorchRunner

            ref_runner = TorchRunner(model, CompileOptions(), manifest["output_stride"])
            ref_name = "torch-fp32"
        else:
            ref_src = Path((extra_manifest or {}).get("source_onnx", src))
            ref_runner = ORTRunner(ref_src, CompileOptions(device="cpu"), outputs)
            ref_name = "onnxruntime-fp32"
        ref = _run_each(ref_runner, x)
        manifest["parity"] = {"reference": ref_name, "images": parity_images,
                              "inputs": "SynthIndoor renders",
                              "per_task": parity_report(ref, got, TaskSet.from_dict(
                                  task_set.to_dict()), ref_runner.layouts, runner.layouts)}
        manifest["output_layouts"] = runner.layouts
        del runner
        manifest["files"] = {f: sha256(stage / f) for f in files}
        atomic_write_json(stage / MANIFEST, manifest)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{time.time_ns()}")
            out.rename(old)
            stage.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            stage.rename(out)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def _run_each(runner, x: np.ndarray) -> dict[str, np.ndarray]:
    """Run image by image (batch 1 is what static exports accept) and stack."""
    outs = [runner(x[i:i + 1]) for i in range(len(x))]
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def load_bundle(path: str | Path) -> tuple[dict, Path]:
    """Read and verify a bundle; returns (manifest, folder)."""
    p = Path(path)
    if p.is_file() and p.name == MANIFEST:
        p = p.parent
    mpath = p / MANIFEST
    if not p.is_dir():
        raise BundleError(f"{p}: bundle folder not found")
    if not mpath.is_file():
        raise BundleError(f"{mpath}: missing (not a bundle, or an incomplete one)")
    m = read_json_doc(mpath, SCHEMA, ("target", "precision", "files", "outputs", "task_set",
                                      "input", "model"), BundleError, "manifest")
    if not isinstance(m["files"], dict) or not m["files"]:
        raise BundleError(f"{mpath}: 'files' must map file names to sha256 digests")
    on_disk = {f.name for f in p.iterdir() if f.is_file() and not f.name.startswith(".")}
    extra = on_disk - set(m["files"]) - {MANIFEST}
    if extra:
        raise BundleError(f"{p / sorted(extra)[0]}: file not listed in the manifest "
                          f"(bundle was modified)")
    for name, digest in m["files"].items():
        f = p / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise BundleError(f"{mpath}: file entry {name!r} points outside the bundle")
        if not f.is_file():
            raise BundleError(f"{f}: listed in the manifest but missing")
        if sha256(f) != digest:
            raise BundleError(f"{f}: sha256 mismatch (file modified after the bundle was made)")
    return m, p
