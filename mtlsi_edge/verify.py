"""Parity gates and the on-device self-check: an artifact's accuracy belongs to
(model, runtime version, device), so it is measured where the artifact runs.

Label-free agreement of a compiled artifact with the FP32 reference, per task kind, on held-out
SynthIndoor frames that calibration never sees (rendered at compile time from
:data:`mtlsi_edge.data.seeds.GATE_SEED` on, and stored in the bundle):

- segmentation: argmax (label) agreement, % of pixels            (higher is better)
- depth: mean absolute relative difference |d − d₀| / d₀         (lower is better)
- normals: mean angle between the unit vectors, degrees          (lower is better)
- boundary / saliency: F-score (%) of the maps binarised at 0.5  (higher is better)

The measure, its unit and the thresholds per precision are fields of each kind's
:class:`~mtlsi_edge.kinds.TaskKind`. ``compile_bundle`` measures these and refuses a bundle
below its precision's thresholds; every bundle carries the frames and the FP32 reference
outputs (``reference.safetensors``) so that :func:`check_bundle` re-proves it on whatever
machine it is on (``mtlsi-edge check``).  numpy, OpenCV and safetensors only: the check runs
in the device's runtime-only install, from the bundle alone.
Thresholds and how they were chosen: ``docs/trust.md``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from mtlsi_edge.backends import BACKENDS
from mtlsi_edge.errors import BundleError, ConfigError, MtlsiError
from mtlsi_edge.fileio import atomic_write
from mtlsi_edge.kinds import KINDS
from mtlsi_edge.machine import cpu_flags
from mtlsi_edge.native import quiet_native
from mtlsi_edge.qdq import quantization_ops
from mtlsi_edge.tasks import TaskSet

REFERENCE_FILE = "reference.safetensors"
#: Key of the frame compute latency is timed on, in ``reference.safetensors``.
TIMING_KEY = "timing"


class VerificationError(MtlsiError, ValueError):
    """An artifact failed its parity gate or self-check (exit code 3 at the CLI);
    ``result`` holds the per-task table when there is one."""

    exit_code = 3

    def __init__(self, msg: str, result: GateResult | None = None):
        super().__init__(msg)
        self.result = result


def to_nchw(a: np.ndarray, layout: str | None) -> np.ndarray:
    """An ``N×h×w×K`` (``layout == "NHWC"``) output as ``N×K×h×w``; others as they are."""
    return a.transpose(0, 3, 1, 2) if layout == "NHWC" else a


def finish_raw(raw: dict[str, np.ndarray], task_set, layouts: dict[str, str] | None = None
               ) -> dict[str, np.ndarray]:
    """Raw graph outputs (``N×K×h×w`` or NHWC) → what the gate compares: labels (uint8) for
    segmentation, ``N×h×w`` depth / probability maps, ``N×3×h×w`` unit normals (float32)."""
    out = {}
    for t in task_set:
        a = to_nchw(np.asarray(raw[t.name]), (layouts or {}).get(t.name))
        if a.dtype.kind in "iu":  # labels from a frame-I/O graph
            out[t.name] = a[:, 0].astype(np.uint8)
            continue
        out[t.name] = t.spec.gate_finish(a.astype(np.float32))
    return out


def measure(kind: str, ref: np.ndarray, got: np.ndarray) -> float:
    """The agreement of ``got`` with ``ref`` for one task kind (``TaskKind.measure``)."""
    if ref.shape != got.shape:
        raise VerificationError(f"output shape {got.shape} differs from the reference's "
                                f"{ref.shape}")
    with quiet_native():  # inf/NaN in an output is a failed gate, not a numpy warning
        return KINDS[kind].measure(ref, got)


@dataclass
class GateResult:
    """Per-task measures against thresholds; ``failures`` name the task and the miss."""

    precision: str
    rows: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r["ok"] for r in self.rows)

    @property
    def failures(self) -> list[str]:
        return [f"{r['task']} {r['measure']} {r['value']:.4g}{r['unit']} "
                f"(needs {'≥' if r['higher_is_better'] else '≤'} {r['threshold']:g}{r['unit']})"
                for r in self.rows if not r["ok"]]

    def to_dict(self) -> dict:
        return {"precision": self.precision, "passed": self.passed, "rows": self.rows}


def thresholds_for(precision: str, task_set, overrides: dict[str, float] | None = None
                   ) -> dict[str, float]:
    """Per task name: the default threshold of its kind at ``precision``, or the override."""
    overrides = overrides or {}
    unknown = set(overrides) - set(task_set.names)
    if unknown:
        raise ConfigError(f"unknown task {sorted(unknown)[0]!r} in gate thresholds; tasks: "
                         f"{', '.join(task_set.names)}")
    for name, v in overrides.items():
        why = task_set[name].spec.threshold_problem(v)
        if why:
            raise ConfigError(f"gate threshold for {name}: {why}")
    return {t.name: float(overrides.get(t.name, t.spec.gate_thresholds[precision]))
            for t in task_set}


def parse_gate_overrides(specs: list[str]) -> dict[str, float]:
    """``["semseg=97", "normals=3"]`` → ``{"semseg": 97.0, "normals": 3.0}``."""
    out = {}
    for spec in specs:
        key, sep, val = spec.partition("=")
        try:
            v = float(val)
        except ValueError:
            v = math.nan
        if not sep or not key or not math.isfinite(v):
            raise ConfigError(f"bad --gate {spec!r}: expected TASK=NUMBER, e.g. semseg=97")
        out[key] = v
    return out


def gate(ref: dict[str, np.ndarray], got: dict[str, np.ndarray], task_set, precision: str,
         thresholds: dict[str, float]) -> GateResult:
    """Compare finished outputs (see :func:`finish_raw`) task by task against thresholds."""
    res = GateResult(precision)
    for t in task_set:
        k = t.spec
        name, unit, hib = k.measure_name, k.unit, k.higher_is_better
        v = measure(t.kind, ref[t.name], got[t.name])
        thr = thresholds[t.name]
        ok = math.isfinite(v) and (v >= thr if hib else v <= thr)
        res.rows.append({"task": t.name, "kind": t.kind, "measure": name, "unit": unit,
                         "value": v, "threshold": thr, "higher_is_better": hib, "ok": ok})
    return res


# -- references carried by a bundle ---------------------------------------------------------
def _png(frame: np.ndarray) -> np.ndarray:
    ok, png = cv2.imencode(".png", frame)
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 BGR
        raise RuntimeError("PNG encoding failed")
    return png.reshape(-1)


def save_references(path: Path, frames_bgr: np.ndarray, finished: dict[str, np.ndarray],
                    timing: np.ndarray | None = None) -> None:
    """Frames (PNG-compressed) and finished FP32 reference outputs at output resolution
    (labels as uint8, the rest float32) in one safetensors file; ``timing``: the frame compute
    latency is timed on (so the device times what the build machine timed)."""
    tensors: dict[str, np.ndarray] = {}
    for i, f in enumerate(frames_bgr):
        tensors[f"frame.{i}"] = _png(f)
    if timing is not None:
        tensors[TIMING_KEY] = _png(timing)
    for name, a in finished.items():
        # C order: safetensors writes the raw buffer, so a channels-last array (what a
        # channels-last torch output becomes) would be stored scrambled under its shape.
        tensors[f"out.{name}"] = np.ascontiguousarray(a, np.uint8 if a.dtype == np.uint8
                                                      else np.float32)
    atomic_write(path, lambda tmp: save_file(tensors, tmp))


def load_references(path: Path, task_set) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(frames ``N×H×W×3`` BGR uint8, finished reference outputs) of a bundle."""
    try:
        t = load_file(str(path))
        n = len([k for k in t if k.startswith("frame.")])
        frames = [cv2.imdecode(t[f"frame.{i}"], cv2.IMREAD_COLOR) for i in range(n)]
        refs = {name: t[f"out.{name}"] for name in task_set.names}
    except (SafetensorError, KeyError, OSError, cv2.error) as e:
        raise BundleError(f"{path}: unreadable reference outputs ({e})") from None
    if n == 0 or any(f is None for f in frames):
        raise BundleError(f"{path}: reference frames missing or undecodable")
    if len({f.shape for f in frames}) > 1:
        sizes = sorted({"×".join(map(str, f.shape[:2])) for f in frames})
        raise BundleError(f"{path}: reference frames differ in size ({', '.join(sizes)})")
    return np.stack(frames), refs


def load_timing_frame(path: Path) -> np.ndarray:
    """The frame a bundle's compute latency is timed on (BGR uint8): the one stored at compile
    time, else (bundles made before it was stored) the first reference frame."""
    try:
        t = load_file(str(path))
        key = TIMING_KEY if TIMING_KEY in t else "frame.0"
        frame = cv2.imdecode(t[key], cv2.IMREAD_COLOR)
    except (SafetensorError, KeyError, OSError, cv2.error) as e:
        raise BundleError(f"{path}: unreadable reference frames ({e})") from None
    if frame is None:
        raise BundleError(f"{path}: its timing frame is undecodable")
    return frame


def run_frames(predictor, frames_bgr: np.ndarray) -> dict[str, np.ndarray]:
    """Frames through the Predictor's own preprocessing and its runner; finished raw outputs."""
    raws = []
    for f in frames_bgr:
        x, _ = predictor.preprocess(f)
        raws.append(predictor.runner(x))
    raw = {k: np.concatenate([r[k] for r in raws]) for k in raws[0]}
    return finish_raw(raw, predictor.task_set, predictor.layouts)


@dataclass
class CheckReport:
    """What ``mtlsi-edge check`` prints: the gate on this machine, and where it ran."""

    bundle: str
    target: str
    precision: str
    device: str
    device_precision: str
    runtime_version: str
    cpu_flags: str
    seconds: float
    result: GateResult
    signature: str = "unsigned"

    @property
    def passed(self) -> bool:
        return self.result.passed

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "result"}
        return {**d, "passed": self.passed, "gate": self.result.to_dict()}


def check_bundle(predictor, folder: Path) -> CheckReport:
    """Run the bundle's reference frames on this machine and gate them against its stored
    FP32 outputs with its stored thresholds."""
    m = predictor.manifest
    ref_info = m.get("reference")
    if not ref_info:
        raise BundleError(f"{folder}: bundle has no reference outputs (made by an older "
                          f"mtlsi-edge); compile it again to make it checkable")
    t0 = time.perf_counter()
    frames, ref = load_references(folder / ref_info["file"], predictor.task_set)
    got = run_frames(predictor, frames)
    res = gate(ref, got, predictor.task_set, m["precision"], ref_info["thresholds"])
    return CheckReport(
        bundle=str(folder), target=m["target"], precision=m["precision"],
        device=getattr(predictor.runner, "device", m.get("device", "?")),
        device_precision=getattr(predictor.runner, "device_precision", m["precision"]),
        runtime_version=predictor.runtime_version, cpu_flags=cpu_flags(),
        seconds=time.perf_counter() - t0, result=res)


def run_each(runner, x: np.ndarray) -> dict[str, np.ndarray]:
    """Run image by image (batch 1 is what static exports accept) and stack."""
    outs = [runner(x[i:i + 1]) for i in range(len(x))]
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def check_io(runner, manifest: dict, folder: Path) -> None:
    """The model file must be what the manifest says: its precision label true of it, its
    real input and outputs the manifest's (names, channels per task)."""
    model_file = (BACKENDS[manifest["target"]].model_file if manifest["target"] in BACKENDS
                  else None)
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
        hw = shape[1:3] if layout == "NHWC" else shape[2:4]
        want_hw = manifest.get("label_size") if frame and t.spec.output == "labels" else None
        if want_hw and all(isinstance(d, int) for d in hw) and list(hw) != list(want_hw):
            raise BundleError(f"{folder}: output {t.name!r} has labels of "
                              f"{hw[0]}×{hw[1]}, the manifest's label_size is "
                              f"{want_hw[0]}×{want_hw[1]}")


def parity_report(ref: dict[str, np.ndarray], got: dict[str, np.ndarray], task_set,
                  ref_layouts: dict[str, str] | None = None,
                  got_layouts: dict[str, str] | None = None) -> dict:
    """Compare two runners' outputs on the same inputs.

    Per output: max and mean abs error; segmentation: argmax agreement (%); normals: mean and
    max angle (degrees) between the unit vectors.
    """
    rep = {}
    for t in task_set:
        a, b = to_nchw(ref[t.name], (ref_layouts or {}).get(t.name)), to_nchw(
            got[t.name], (got_layouts or {}).get(t.name))
        if a.dtype.kind in "iu" or b.dtype.kind in "iu":  # class labels (frame-I/O graphs)
            rep[t.name] = {"argmax_agree_pct": float((a == b).mean() * 100)}
            continue
        a, b = a.astype(np.float32), b.astype(np.float32)
        d = {"max_abs": float(np.abs(a - b).max()), "mean_abs": float(np.abs(a - b).mean())}
        if t.spec.output == "labels":
            d["argmax_agree_pct"] = float((a.argmax(1) == b.argmax(1)).mean() * 100)
        if t.spec.output == "unit_vectors":
            cos = np.clip((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
                                            + 1e-8), -1, 1)
            ang = np.degrees(np.arccos(cos))
            d["angle_mean_deg"], d["angle_max_deg"] = float(ang.mean()), float(ang.max())
        rep[t.name] = d
    return rep
