"""The ``quantize`` pipeline: an exported FP32 model → calibration → NNCF INT8 → labelled
report, under the target's INT8 policy (:class:`~mtlsi_edge.targets.Int8Policy`).

:func:`quantize_exported` is the one quantisation every command runs (``quantize``,
``deploy``, ``tune``, the benchmarks); :func:`run_quantize` adds what the ``quantize`` command
needs on its own: the build and export, the parity gate in this machine's runtime (``deploy``
gates the compiled bundle instead, once) and the files.

Accuracy control is bounded: candidates are ranked with the cheap boundary F
(:class:`~mtlsi_edge.evaluation.Scoring`), progress and an ETA are printed per validation
pass, and at ``max_minutes`` the search stops (the FP32 model is kept, exit 3, report
written); the final report scores FP32 and INT8 once each on the full protocol (SEISM).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtlsi_edge import evaluation, verify  # module attributes: tests swap compiled_infer
from mtlsi_edge.calibration.sources import CalibrationError, CalibrationSet, build_calibration_set
from mtlsi_edge.compiler import Exported, checkpoint_task_set, export_checkpoint
from mtlsi_edge.data.datasets import DatasetError
from mtlsi_edge.data.seeds import gate_frames
from mtlsi_edge.errors import ConfigError, MtlsiError
from mtlsi_edge.evaluation import Scoring
from mtlsi_edge.fileio import atomic_write_json
from mtlsi_edge.quantize.formats import FORMATS, named
from mtlsi_edge.quantize.ptq import (
    AccuracyControl,
    Budget,
    PtqSettings,
    headroom,
    parse_budgets,
    quantize_model,
)
from mtlsi_edge.runtime.predictor import preprocess_frame
from mtlsi_edge.targets import Int8Policy, Target, int8_policy
from mtlsi_edge.train.checkpoint import CheckpointError


class QuantizeError(MtlsiError, ValueError):
    """Bad input to quantisation; one line."""


class SearchStopped(MtlsiError):
    """Accuracy control reached its time bound without a candidate that meets the budgets."""


#: Files ``quantize --out STEM`` writes (by format): none is replaced without --overwrite.
QUANTIZE_SUFFIXES = (".xml", ".bin", ".onnx", ".fp32.onnx", ".report.json")


@dataclass(frozen=True)
class QuantizeRequest:
    """One INT8 quantisation (the ``quantize`` command's options; ``deploy`` and ``tune``
    build one too).

    format / rules: the INT8 policy (``--format``, ``--target``; see
    :func:`mtlsi_edge.targets.int8_policy`).  calib, n_calib: calibration source and size.
    val, val_limit, max_drop: labelled per-task budgets (``KEY=VALUE[%]``) on a val split.
    settings: NNCF settings.  accuracy_control: let NNCF revert ops to float until the
    budgets hold (else only report).  gate: parity-gate threshold overrides.  force: write a
    model that fails its gate.  graph: deploy graph (None: the policy target's default).
    max_minutes: bound on the accuracy search (None: unbounded).
    """

    format: str = "openvino"
    rules: str | None = None
    calib: str = "synth"
    n_calib: int = 128
    val: Path | None = None
    val_limit: int = 100
    max_drop: tuple[str, ...] = ()
    settings: PtqSettings = PtqSettings()
    accuracy_control: bool = True
    gate: dict[str, float] | None = None
    force: bool = False
    graph: str | None = None
    max_minutes: float | None = None

    def for_target(self, target: Target) -> QuantizeRequest:
        """This request under ``target``'s INT8 policy (its format and rules)."""
        return dataclasses.replace(self, format=target.int8.format, rules=target.int8.rules)

    def policy(self) -> tuple[Int8Policy, Target]:
        """The INT8 policy and its target; a :class:`QuantizeError` names a bad option."""
        try:
            policy, tgt = int8_policy(self.format, self.rules)
            self.settings.check(policy)
        except ConfigError as e:
            raise QuantizeError(str(e)) from None
        return policy, tgt

    def check(self, task_set) -> list[Budget]:
        """Every option checked against the model's tasks before any work; the budgets."""
        try:
            budgets = parse_budgets(list(self.max_drop), task_set)
        except ValueError as e:
            raise QuantizeError(str(e)) from None
        if budgets and self.val is None:
            raise QuantizeError("--max-drop needs --val (a dataset to measure the drops on)")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise QuantizeError(f"--max-minutes must be > 0, got {self.max_minutes:g}")
        verify.thresholds_for("int8", task_set, self.gate)  # unknown task names: fail now
        return budgets


@dataclass
class QuantizeResult:
    """What a quantisation produced: the INT8 model (the format's native object), NNCF's
    ``info``, the labelled metrics and per-task report (None without ``val``) and ``failed``
    (a missed budget, in words).  ``path`` / ``report_path``: the files, once written."""

    model: object
    info: dict
    fp32: dict | None = None
    int8: dict | None = None
    report: dict | None = None
    failed: str | None = None
    path: Path | None = None
    source_onnx: Path | None = None
    report_path: Path | None = None
    search: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"path": self.path and str(self.path),
                "source_onnx": self.source_onnx and str(self.source_onnx), "info": self.info,
                "fp32": self.fp32, "int8": self.int8,
                "report": self.report, "failed": self.failed}


def load_or_build_calibration(calib: str, n: int, size: tuple[int, int]) -> CalibrationSet:
    try:
        if calib.endswith(".npy") or Path(calib + ".npy").is_file():
            cs = CalibrationSet.load(calib.removesuffix(".npy"))
        else:
            cs = build_calibration_set(calib, n, size)
    except CalibrationError as e:
        raise QuantizeError(str(e)) from None
    if tuple(cs.data.shape[2:]) != tuple(size):
        raise QuantizeError(f"{calib}: calibration samples are {cs.data.shape[2]}×"
                            f"{cs.data.shape[3]}, the model takes {size[0]}×{size[1]} "
                            f"(rebuild it with mtlsi-edge calibrate --size {size[0]}x{size[1]})")
    return cs


class _Search:
    """Accuracy control's clock and progress: each NNCF validation pass is timed and
    printed with the time left to the bound; past the bound, the next pass raises
    :class:`SearchStopped` (NNCF returns only once a candidate passes, so what is stopped
    never met the budgets)."""

    def __init__(self, max_minutes: float | None, log, start: float,
                 reserve_s: float = 0.0) -> None:
        """The search ends ``reserve_s`` before ``max_minutes`` after ``start`` (a
        ``time.monotonic()`` reading): ``reserve_s`` is what scoring the INT8 model for the
        report will take (as long as the FP32 model's, measured)."""
        self.t0 = time.monotonic()
        self.deadline = None if max_minutes is None else \
            start + 60.0 * max_minutes - reserve_s
        self.log, self.passes, self.last = log, 0, self.t0

    def tick(self, n_items: int, value: float) -> None:
        now = time.monotonic()
        self.passes += 1
        left = "" if self.deadline is None else \
            f", ≤ {max(0.0, self.deadline - now):.0f} s to the --max-minutes bound"
        self.log(f"  accuracy control: pass {self.passes} ({n_items} images, "
                 f"{now - self.last:.1f} s): budget headroom {value:+.3f}; "
                 f"{now - self.t0:.0f} s elapsed{left}")
        self.last = now

    def check(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise SearchStopped(f"accuracy search stopped at --max-minutes after "
                                f"{self.passes} passes without meeting the budgets")


def _control(fmt, fp32_native, valset, task_set, budgets, search: _Search) -> AccuracyControl:
    """NNCF's accuracy control scored with the cheap boundary F (FP32 scored once, here)."""
    outputs = task_set.names
    fast = Scoring(fast=True)
    fp32 = evaluation.evaluate_fn(evaluation.compiled_infer(
        fmt.inference_model(fp32_native, True), outputs), valset, task_set, scoring=fast)

    def evaluate(compiled, items) -> dict:
        search.check()
        res = evaluation.evaluate_fn(evaluation.compiled_infer(compiled, outputs), valset,
                                     task_set, indices=[i for i, _ in items], scoring=fast)
        search.tick(len(items), headroom(budgets, fp32, res))
        return res

    return AccuracyControl(budgets, evaluate, fp32, valset.items)


def _full_scoring() -> Scoring:
    return Scoring(workers=evaluation.default_workers())


def _labelled_report(fmt, fp32: dict, q, valset, task_set, budgets) -> tuple:
    """INT8 on the full protocol (SEISM boundaries, matching spread over the CPUs) against
    the FP32 model's ``fp32`` metrics (scored once, before the search): the per-task drops
    against ``budgets`` and the misses in words (None: all met)."""
    outputs = task_set.names
    scoring = _full_scoring()
    int8 = evaluation.evaluate_fn(evaluation.compiled_infer(
        fmt.inference_model(q, False), outputs), valset, task_set, scoring=scoring)
    report = evaluation.drops_table(fp32, int8, task_set)
    misses = []
    for b in budgets:
        d = b.drop(fp32[b.task][b.metric], int8[b.task][b.metric])
        report[b.task].update(budget=b.describe().split("≤ ")[1], ok=d <= b.value,
                              relative=b.relative, drop=d)
        if d > b.value:
            unit = "%" if b.relative else ""
            misses.append(f"{b.task} {b.metric} dropped {d:.3g}{unit} (budget {b.value:g}"
                          f"{unit}, missed by {d - b.value:.3g})")
    failed = "accuracy gate failed: " + "; ".join(misses) if misses else None
    return fp32, int8, report, failed


def quantize_exported(onnx_path: Path, task_set, size: tuple[int, int], req: QuantizeRequest,
                      log=print) -> QuantizeResult:
    """Quantise the exported FP32 model at ``onnx_path`` (input ``size``) under ``req``'s
    policy; returns the INT8 model in memory with its labelled report (nothing written)."""
    start = time.monotonic()  # --max-minutes counts from here
    policy, _ = req.policy()
    budgets = req.check(task_set)
    fmt = FORMATS[policy.format]
    fp32_native = fmt.read(onnx_path)
    cs = load_or_build_calibration(req.calib, req.n_calib, size)
    valset = None
    if req.val is not None:
        try:
            valset = evaluation.load_val_set(str(req.val), "val", task_set, size, req.val_limit)
        except DatasetError as e:
            raise QuantizeError(str(e)) from None
    t0 = time.perf_counter()
    fp32_full = None
    if valset is not None:  # scored once; its time is what the INT8 report will take too
        fp32_full = evaluation.evaluate_fn(evaluation.compiled_infer(
            fmt.inference_model(fp32_native, True), task_set.names), valset, task_set,
            scoring=_full_scoring())
    search = _Search(req.max_minutes, log, start, reserve_s=time.perf_counter() - t0)
    control = None
    if budgets and req.accuracy_control:
        control = _control(fmt, fp32_native, valset, task_set, budgets, search)
    try:
        q, info = quantize_model(fp32_native, cs.items(), policy, req.settings, control)
    except SearchStopped as e:
        return QuantizeResult(None, {"seconds": round(time.perf_counter() - t0, 1)},
                              failed=str(e), search={"passes": search.passes, "stopped": True})
    info.update(seconds=round(time.perf_counter() - t0, 1), accuracy_control=control is not None,
                calibration={"source": cs.source, "n": len(cs.origins), "skipped": cs.skipped},
                float_ops=fmt.float_heavy_ops(q))
    res = QuantizeResult(q, info, search={"passes": search.passes, "stopped": False})
    if valset is not None:
        res.fp32, res.int8, res.report, res.failed = _labelled_report(
            fmt, fp32_full, q, valset, task_set, budgets)
    return res


def gate_in_runtime(onnx_path: Path, res: QuantizeResult, task_set, size, req: QuantizeRequest,
                    policy: Int8Policy) -> verify.GateResult:
    """The label-free parity gate of the INT8 model against FP32 on held-out frames, in this
    machine's runtime (what ``quantize`` checks before writing; a bundle gates itself)."""
    fmt = FORMATS[policy.format]
    xs = [preprocess_frame(f, size)[0] for f in gate_frames(size)]
    outputs = task_set.names

    def finished(native, fp32: bool) -> dict:
        run = evaluation.compiled_infer(fmt.inference_model(native, fp32), outputs)
        raw = [run(x) for x in xs]
        return verify.finish_raw({k: np.concatenate([r[k] for r in raw]) for k in outputs},
                                 task_set)

    return verify.gate(finished(fmt.read(onnx_path), True), finished(res.model, False),
                       task_set, "int8", verify.thresholds_for("int8", task_set, req.gate))


def run_quantize(checkpoint: str | Path, req: QuantizeRequest, out: Path,
                 log=print) -> QuantizeResult:
    """The ``quantize`` command: build and export ``checkpoint`` (in the policy target's
    deploy graph), quantise, gate in this machine's runtime, then write ``OUT.xml|.onnx``
    beside ``OUT.fp32.onnx`` and ``OUT.report.json``.  A model that fails its gate is not
    written (``req.force`` writes it); one that misses a budget is not either."""
    policy, tgt = req.policy()
    try:
        task_set = checkpoint_task_set(checkpoint)
    except CheckpointError as e:
        raise QuantizeError(str(e)) from None
    req.check(task_set)  # before the export
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # The FP32 export is staged and moved beside the INT8 model only when that is written:
    # a refused run leaves the user's previous NAME.fp32.onnx / NAME.xml pair as it was.
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        try:
            exp = export_checkpoint(checkpoint, tgt, stage / "model.fp32.onnx", req.graph)
        except CheckpointError as e:
            raise QuantizeError(str(e)) from None
        return _quantize_and_write(exp, req, policy, out, log)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _quantize_and_write(exp: Exported, req: QuantizeRequest, policy: Int8Policy, out: Path,
                        log) -> QuantizeResult:
    task_set, size = exp.model.task_set, tuple(exp.model.cfg.input_size)
    res = quantize_exported(exp.onnx, task_set, size, req, log)
    if res.model is None:  # the search was stopped: nothing to gate or write
        res.report_path = atomic_write_json(named(out, ".report.json"), res.to_json())
        return res
    gate = gate_in_runtime(exp.onnx, res, task_set, size, req, policy)
    res.info["gate"] = gate.to_dict()
    if not gate.passed and not req.force:
        raise verify.VerificationError(
            f"INT8 model failed its parity gate against FP32 on this machine: "
            f"{'; '.join(gate.failures)} (nothing written; --force keeps it)", gate)
    if res.failed is None or req.force:
        res.path = FORMATS[policy.format].write(res.model, exp.onnx, out)
        res.source_onnx = Path(shutil.move(str(exp.onnx), named(out, ".fp32.onnx")))
    else:
        res.source_onnx = exp.onnx
    res.report_path = atomic_write_json(named(out, ".report.json"), res.to_json())
    return res
