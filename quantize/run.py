"""The ``quantize`` pipeline: checkpoint → ONNX → calibration → NNCF INT8 (gated) → files."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from mtlsi_edge import verify
from mtlsi_edge.calibration.sources import CalibrationError, CalibrationSet, build_calibration_set
from mtlsi_edge.compiler import choose_graph
from mtlsi_edge.data.datasets import DatasetError
from mtlsi_edge.data.seeds import gate_frames
from mtlsi_edge.errors import MtlsiError
from mtlsi_edge.export import export_onnx
from mtlsi_edge.fileio import atomic_write_files, atomic_write_json
from mtlsi_edge.quantize import accuracy  # module attribute: tests swap compiled_infer
from mtlsi_edge.quantize.ptq import IGNORE_PRESETS, parse_budgets, quantize_model, reverted_to_float
from mtlsi_edge.runtime.predictor import preprocess_frame
from mtlsi_edge.targets.tensorrt import qdq_problems
from mtlsi_edge.train.checkpoint import CheckpointError, build_from_checkpoint


class QuantizeError(MtlsiError, ValueError):
    """Bad input to quantisation; one line."""


def load_or_build_calibration(calib: str, n: int, size: tuple[int, int]):
    try:
        if calib.endswith(".npy") or Path(calib + ".npy").is_file():
            return CalibrationSet.load(calib.removesuffix(".npy"))
        return build_calibration_set(calib, n, size)
    except CalibrationError as e:
        raise QuantizeError(str(e)) from None


#: Files ``quantize --out STEM`` writes (by format): none is replaced without --overwrite.
QUANTIZE_SUFFIXES = (".xml", ".bin", ".onnx", ".fp32.onnx", ".report.json")


def run_quantize(checkpoint, fmt: str, calib: str, n: int, val, val_limit: int,
                 max_drop: list[str], preset: str, ignore: str, out: Path,
                 console=None, onnx_path: Path | None = None,
                 accuracy_control: bool = True, act_matmuls: str = "float",
                 gate_overrides: dict | None = None, force: bool = False,
                 target: str | None = None, graph: str | None = None) -> dict:
    """Quantise; returns ``{"path", "info", "report", "fp32", "int8", "failed"}``.

    ``target="tensorrt"``: a Q/DQ ONNX that follows TensorRT's rules, checked by
    :func:`mtlsi_edge.targets.tensorrt.qdq_problems` before it is written.  The INT8 model
    passes a parity gate against FP32 on held-out frames before anything is written
    (``force`` writes it anyway)."""
    if fmt not in ("openvino", "onnx"):
        raise QuantizeError(f"--format must be openvino or onnx, not {fmt!r}")
    if ignore not in IGNORE_PRESETS:
        raise QuantizeError(f"--ignore must be one of {', '.join(IGNORE_PRESETS)}")
    if act_matmuls not in ("float", "int8"):
        raise QuantizeError(f"--act-matmuls must be float or int8, not {act_matmuls!r}")
    if preset not in ("performance", "mixed"):
        raise QuantizeError("--preset must be performance or mixed")
    if target not in (None, "tensorrt"):
        raise QuantizeError(f"--target must be tensorrt (or omitted), not {target!r}")
    if target == "tensorrt" and fmt != "onnx":
        raise QuantizeError("--target tensorrt needs --format onnx (a Q/DQ ONNX)")
    if target == "tensorrt" and preset != "performance":
        raise QuantizeError("--target tensorrt needs --preset performance (TensorRT takes "
                            "symmetric INT8 only; mixed makes activations asymmetric)")
    try:
        model, _ = build_from_checkpoint(checkpoint)
    except CheckpointError as e:
        raise QuantizeError(str(e)) from None
    # The graph the bundle target of this format runs (its measured default) unless chosen.
    choose_graph(model, "openvino" if fmt == "openvino" else target or "onnxruntime", graph)
    task_set = model.task_set
    try:
        budgets = parse_budgets(max_drop, task_set)
    except ValueError as e:
        raise QuantizeError(str(e)) from None
    if budgets and val is None:
        raise QuantizeError("--max-drop needs --val (a dataset to measure the drops on)")
    verify.thresholds_for("int8", task_set, gate_overrides)  # unknown task names: fail now
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # The FP32 export is staged and moved beside the INT8 model only when that is written:
    # a refused run leaves the user's previous NAME.fp32.onnx / NAME.xml pair as it was.
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        return _quantize(model, checkpoint, fmt, calib, n, val, val_limit, max_drop, preset,
                         ignore, out, stage, onnx_path, accuracy_control, act_matmuls,
                         gate_overrides, force, target, budgets)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _named(out: Path, suffix: str) -> Path:
    """``out`` + suffix (``out.with_suffix`` would eat a dot in the user's stem)."""
    return out.with_name(out.name + suffix)


def _quantize(model, checkpoint, fmt, calib, n, val, val_limit, max_drop, preset, ignore,
              out: Path, stage: Path, onnx_path, accuracy_control, act_matmuls,
              gate_overrides, force, target, budgets) -> dict:
    import onnx

    task_set = model.task_set
    size = tuple(model.cfg.input_size)
    src = onnx_path or export_onnx(model, stage / "model.fp32.onnx")
    outputs = task_set.names
    cs = load_or_build_calibration(calib, n, size)
    if tuple(cs.data.shape[2:]) != size:
        raise QuantizeError(f"{calib}: calibration samples are {cs.data.shape[2]}×"
                            f"{cs.data.shape[3]}, the model takes {size[0]}×{size[1]} "
                            f"(rebuild it with mtlsi-edge calibrate --size {size[0]}x{size[1]})")
    t0 = time.perf_counter()
    if fmt == "openvino":
        import openvino as ov

        core = ov.Core()
        fp32_model = ov.convert_model(str(src))

        def compile_(m):
            # Each model as its bundle runs it: FP32 in f32; an INT8 model with its float
            # parts at the CPU's default precision (BF16 on BF16 CPUs), like OpenVINORunner.
            # (That choice decides accuracy here: the batched INT8 IR is wrong with the f32
            # hint on this AVX-512/AMX CPU and right without it; docs/known-issues.md.)
            cfg = {} if m is not fp32_model else {"INFERENCE_PRECISION_HINT": "f32"}
            try:
                return core.compile_model(m, "CPU", cfg)
            except RuntimeError as e:  # this CPU plugin refuses the model: say why, once
                from mtlsi_edge.backends.openvino import first_line
                from mtlsi_edge.targets.base import RuntimeRefused

                which = "FP32" if m is fp32_model else "INT8"
                raise RuntimeRefused(f"OpenVINO cannot compile the {which} model on this "
                                     f"CPU: {first_line(e)}") from None
    else:
        fp32_model = onnx.load(str(src))

        def compile_(m):
            return m
    report = fp32_metrics = q_metrics = None
    valset = None
    if val is not None:
        try:
            valset = accuracy.load_val_set(str(val), "val", task_set, size, val_limit)
        except DatasetError as e:
            raise QuantizeError(str(e)) from None
        fp32_metrics = accuracy.evaluate_fn(
            accuracy.compiled_infer(compile_(fp32_model), outputs), valset, task_set)

    def evaluate(compiled, items):
        # Validation items are (index, image) pairs: the index finds the ground truth.
        return accuracy.evaluate_fn(accuracy.compiled_infer(compiled, outputs), valset,
                                    task_set, indices=[i for i, _ in items])

    control = bool(budgets) and accuracy_control
    q, info = quantize_model(
        fp32_model, cs.items(), fmt, preset, ignore, budgets=budgets if control else None,
        evaluate=evaluate if control else None, fp32_metrics=fp32_metrics,
        val_items=valset.items if valset is not None else None, act_matmuls=act_matmuls,
        target=target)
    if target == "tensorrt":
        problems = qdq_problems(q)
        if problems:  # a bug in our NNCF settings, not a user error: say exactly what broke
            raise RuntimeError(f"NNCF output breaks TensorRT's Q/DQ rules: {problems[0]}")
        info["tensorrt_qdq_check"] = "pass"
    info["seconds"] = round(time.perf_counter() - t0, 1)
    info["accuracy_control"] = control
    info["calibration"] = {"source": cs.source, "n": len(cs.origins), "skipped": cs.skipped}
    info["float_ops"] = reverted_to_float(q, fmt)
    # Label-free parity gate on held-out frames, in this machine's runtime, before anything
    # is written: an INT8 model this device computes wrongly is never handed over.
    frames = gate_frames(size)
    xs = [preprocess_frame(f, size)[0] for f in frames]

    def finished(m) -> dict:
        run = accuracy.compiled_infer(compile_(m), outputs)
        raw = [run(x) for x in xs]
        return verify.finish_raw({k: np.concatenate([r[k] for r in raw]) for k in outputs},
                                 task_set)

    gate = verify.gate(finished(fp32_model), finished(q), task_set, "int8",
                       verify.thresholds_for("int8", task_set, gate_overrides))
    info["gate"] = gate.to_dict()
    if not gate.passed and not force:
        raise verify.VerificationError(
            f"INT8 model failed its parity gate against FP32 on this machine: "
            f"{'; '.join(gate.failures)} (nothing written; --force keeps it)", gate)
    failed = None
    if valset is not None:
        q_metrics = accuracy.evaluate_fn(accuracy.compiled_infer(compile_(q), outputs), valset,
                                         task_set)
        report = accuracy.drops_table(fp32_metrics, q_metrics, task_set)
        misses = []
        for b in budgets:
            d = b.drop(fp32_metrics[b.task][b.metric], q_metrics[b.task][b.metric])
            r = report[b.task]
            r.update(budget=b.describe().split("≤ ")[1], ok=d <= b.value, relative=b.relative,
                     drop=d)
            if d > b.value:
                misses.append(f"{b.task} {b.metric} dropped {d:.3g}{'%' if b.relative else ''}"
                              f" (budget {b.value:g}{'%' if b.relative else ''}, missed by "
                              f"{d - b.value:.3g})")
        if misses:
            failed = "accuracy gate failed: " + "; ".join(misses)
    path = None
    if failed is None or force:
        path = _write_model(q, fmt, src, out)
        if not onnx_path:
            src = Path(shutil.move(str(src), _named(out, ".fp32.onnx")))
    atomic_write_json(_named(out, ".report.json"), {
        "format": fmt, "path": path and str(path), "source_onnx": str(src), "info": info,
        "fp32": fp32_metrics, "int8": q_metrics, "report": report, "failed": failed})
    return {"path": path, "source_onnx": src, "info": info, "report": report,
            "fp32": fp32_metrics, "int8": q_metrics, "failed": failed,
            "report_path": _named(out, ".report.json")}


def _write_model(q, fmt: str, src: Path, out: Path) -> Path:
    """The INT8 model beside ``out`` (atomically; an IR's .bin first, then its .xml)."""
    import onnx

    if fmt == "openvino":
        import openvino as ov

        return atomic_write_files(
            _named(out, ".xml"),
            lambda tmp: ov.save_model(q, tmp, compress_to_fp16=False), companions=(".bin",))
    src_meta = [p for p in onnx.load(str(src), load_external_data=False).metadata_props
                if p.key == "mtlsi_edge"]
    del q.metadata_props[:]
    q.metadata_props.extend(src_meta)
    return atomic_write_files(_named(out, ".onnx"), lambda tmp: onnx.save(q, tmp))
