"""NNCF post-training INT8 quantisation of exported models, plain or accuracy-controlled.

Quantise *after* export (quantising the torch model then exporting is broken: docs/design.md,
'Lessons measured on the build machine'): the OpenVINO IR for the OpenVINO target, the ONNX
(QDQ) for ONNX Runtime and TensorRT.

Multi-task accuracy control: NNCF's ``quantize_with_accuracy_control`` optimises one scalar.
We give it the *budget headroom* ``min_t (1 − drop_t / budget_t)`` computed against our own
FP32 metrics: 1.0 for the FP32 model, ≥ 0 exactly when every task is within its budget.  With
``max_drop = 1.0`` (absolute) NNCF therefore reverts layers to float until all tasks pass.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mtlsi_edge.errors import ConfigError
from mtlsi_edge.machine import has_vnni
from mtlsi_edge.quantize import quiet_nncf
from mtlsi_edge.quantize.formats import FORMATS
from mtlsi_edge.targets.base import Int8Policy

#: Ignored-scope presets (regexes over node names of the exported graph).  "attention-norm":
#: the linear-attention normaliser (Q·z + ε and the division) of MT-MQLFB, whose small
#: denominators INT8 rounding distorts; "attention": every attention-like op of the decoder.
IGNORE_PRESETS: dict[str, list[str]] = {
    "none": [],
    "attention-norm": [r".*fusion.*/(Div|ReduceSum|Add_\d+)$", r".*fusion.*/Mul_\d+$"],
    # (per-task graph: CWIB MatMuls under "cwib"; batched graph: the decoders' MatMuls are
    # all attention, its linears being convolutions)
    "attention": [r".*fusion.*", r".*distiller.*/MatMul.*", r".*cwib.*/MatMul.*",
                  r".*/decoders/MatMul.*"],
}


@dataclass
class Budget:
    """Allowed drop of one metric: absolute (``0.5``) or relative (``1%``)."""

    task: str
    metric: str
    value: float
    relative: bool
    higher_is_better: bool

    def drop(self, fp32: float, q: float) -> float:
        d = (fp32 - q) if self.higher_is_better else (q - fp32)
        return 100.0 * d / abs(fp32) if self.relative else d

    def describe(self) -> str:
        return f"{self.task}.{self.metric} ≤ {self.value:g}{'%' if self.relative else ''}"


def parse_budgets(specs: list[str], task_set) -> list[Budget]:
    """``["miou=0.5", "rmse=1%", "normals=0.5", "boundary=0.5"]`` → budgets.

    A key is a task name (its headline metric) or a metric name of one of the tasks.
    """
    out = []
    for spec in specs:
        key, sep, val = spec.partition("=")
        if not sep:
            raise ConfigError(f"bad budget {spec!r}: expected KEY=VALUE, e.g. miou=0.5")
        rel = val.endswith("%")
        try:
            v = float(val.rstrip("%"))
        except ValueError:
            raise ConfigError(f"bad budget value in {spec!r}") from None
        if not math.isfinite(v):
            raise ConfigError(f"bad budget value in {spec!r}: must be a finite number")
        match = None
        for t in task_set:
            if key == t.name or key == t.metric_name:
                match = (t, t.metric_name)
                break
        if match is None:
            known = sorted({t.name for t in task_set} | {t.metric_name for t in task_set})
            raise ConfigError(f"unknown budget key {key!r}; use one of {', '.join(known)}")
        t, metric = match
        out.append(Budget(t.name, metric, v, rel, t.higher_is_better))
    return out


def headroom(budgets: list[Budget], fp32: dict, q: dict) -> float:
    """min over budgets of (budget − drop) / |budget|: ≥ 0 exactly when all are met.

    For positive budgets the FP32 model scores 1.0.  A negative budget ("must improve by")
    makes even FP32 fail; the labelled report of ``quantize_exported`` reports it either way.
    """
    vals = []
    for b in budgets:
        d = b.drop(fp32[b.task][b.metric], q[b.task][b.metric])
        vals.append((b.value - d) / max(abs(b.value), 1e-9))
    return min(vals)


@dataclass(frozen=True)
class PtqSettings:
    """NNCF settings of one quantisation (the CLI's ``quantize`` options).

    preset: ``performance`` (symmetric) | ``mixed``.  ignore: an :data:`IGNORE_PRESETS` name.
    act_matmuls: ``float`` keeps the activation × activation MatMuls in float
    (:meth:`~mtlsi_edge.quantize.formats.IRFormat.activation_matmuls`), ``int8`` quantises
    them.  per_channel_weights: one weight scale per output channel (False: one per tensor;
    TensorRT's rules always use per-channel).  overflow_fix: 7-bit weights (None: on CPUs
    without VNNI).  subset_size: calibration
    samples NNCF uses at most.  max_reverts: accuracy control's revert budget.
    """

    preset: str = "performance"
    ignore: str = "attention-norm"
    act_matmuls: str = "float"
    transformer: bool = True
    per_channel_weights: bool = True
    overflow_fix: bool | None = None
    subset_size: int = 300
    max_reverts: int = 40

    def check(self, policy: Int8Policy) -> None:
        """One-line :class:`ConfigError` for a setting NNCF or ``policy`` does not take."""
        if self.ignore not in IGNORE_PRESETS:
            raise ConfigError(f"--ignore must be one of {', '.join(IGNORE_PRESETS)}")
        if self.act_matmuls not in ("float", "int8"):
            raise ConfigError(f"--act-matmuls must be float or int8, not {self.act_matmuls!r}")
        if self.preset not in ("performance", "mixed"):
            raise ConfigError("--preset must be performance or mixed")
        if policy.symmetric_signed and self.preset != "performance":
            raise ConfigError(f"--target {policy.rules} needs --preset performance (it takes "
                              f"symmetric INT8 only; mixed makes activations asymmetric)")


@dataclass
class AccuracyControl:
    """NNCF accuracy control against per-task budgets: ``evaluate(model, items)`` scores a
    candidate (what NNCF hands a validation function) on the validation ``items``
    (``(index, image)`` pairs) as ``{task: {metric: value}}``; ``fp32_metrics`` is the FP32
    model's score on the same items (computed once, by the caller)."""

    budgets: list[Budget]
    evaluate: Callable[[object, list], dict]
    fp32_metrics: dict
    val_items: list


def _nncf_params(settings: PtqSettings, policy: Int8Policy, names: list[str],
                 also_ignore: list[str]):
    nncf = quiet_nncf()
    from nncf.common.quantization.structs import QuantizationScheme as QS
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        OverflowFix,
        QuantizationParameters,
    )

    patterns = IGNORE_PRESETS[settings.ignore]
    matched = [n for n in names if any(re.match(p, n) for p in patterns)]
    matched += [n for n in also_ignore if n not in matched]
    ignored = nncf.IgnoredScope(names=matched, validate=False) if matched else None
    kwargs = dict(
        preset=(nncf.QuantizationPreset.MIXED if settings.preset == "mixed"
                else nncf.QuantizationPreset.PERFORMANCE),
        model_type=nncf.ModelType.TRANSFORMER if settings.transformer else None,
        ignored_scope=ignored,
        target_device=nncf.TargetDevice.CPU,
    )
    if policy.symmetric_signed:
        # TensorRT's explicit quantisation: symmetric per-tensor activations, symmetric
        # per-channel weights; no 7-bit overflow fix (that is a CPU-without-VNNI workaround).
        # NNCF cannot force *signed* activations (its hardware configs reject
        # signedness_to_force for activations), see to_signed_int8_qdq.
        kwargs["target_device"] = nncf.TargetDevice.ANY
        adv = AdvancedQuantizationParameters(
            overflow_fix=OverflowFix.DISABLE,
            activations_quantization_params=QuantizationParameters(
                mode=QS.SYMMETRIC, per_channel=False),
            weights_quantization_params=QuantizationParameters(
                mode=QS.SYMMETRIC, per_channel=True))
        return kwargs, adv, matched
    # Without VNNI, int8 dot products can saturate; overflow_fix uses 7-bit weights
    # (measured here: ~8× lower INT8 error on AVX2).
    fix = not has_vnni() if settings.overflow_fix is None else settings.overflow_fix
    adv = AdvancedQuantizationParameters(
        overflow_fix=OverflowFix.ENABLE if fix else OverflowFix.DISABLE,
        weights_quantization_params=None if settings.per_channel_weights else
        QuantizationParameters(per_channel=False))
    return kwargs, adv, matched


def to_signed_int8_qdq(model) -> int:
    """Turn NNCF's unsigned (UINT8, zero point 0) activation Q/DQ pairs into signed INT8 ones
    in place; returns how many.  Same covered range [0, 255·s], so the scale becomes
    ``s · 255 / 127`` (one bit less resolution, what a signed symmetric quantiser gives a
    non-negative tensor).  Asymmetric (non-zero) zero points are left for the validator."""
    import onnx
    from onnx import numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    dq_of: dict[str, list] = {}
    for n in g.node:
        if n.op_type == "DequantizeLinear":
            dq_of.setdefault(n.input[0], []).append(n)
    count = 0
    for q in [n for n in g.node if n.op_type == "QuantizeLinear"]:
        zp = inits.get(q.input[2]) if len(q.input) > 2 else None
        if zp is None or zp.data_type != onnx.TensorProto.UINT8 or q.input[1] not in inits:
            continue
        if numpy_helper.to_array(zp).any():
            continue
        scale = numpy_helper.to_array(inits[q.input[1]]).astype(np.float32) * (255.0 / 127.0)
        base = f"{q.output[0]}_signed"
        g.initializer.extend([
            numpy_helper.from_array(scale, f"{base}_scale"),
            numpy_helper.from_array(np.zeros(scale.shape, np.int8), f"{base}_zero_point")])
        for n in [q, *dq_of.get(q.output[0], [])]:
            n.input[1], n.input[2] = f"{base}_scale", f"{base}_zero_point"
        for vi in g.value_info:  # NNCF records the Q output's (now stale) UINT8 type
            if vi.name == q.output[0]:
                vi.type.tensor_type.elem_type = onnx.TensorProto.INT8
        count += 1
    used = {i for n in g.node for i in n.input}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    return count


def quantize_model(model, calib_items: list[np.ndarray], policy: Int8Policy,
                   settings: PtqSettings = PtqSettings(),
                   control: AccuracyControl | None = None):
    """Quantise an ``openvino.Model`` or ``onnx.ModelProto`` (``policy.format``) under the
    target's INT8 ``policy``; returns (model, info dict).

    With ``control``, runs NNCF's accuracy control until every budget holds (or the revert
    budget is spent).
    """
    settings.check(policy)
    nncf = quiet_nncf()
    fmt = FORMATS[policy.format]
    fix = False if policy.symmetric_signed else (
        not has_vnni() if settings.overflow_fix is None else settings.overflow_fix)
    settings = dataclasses.replace(settings, overflow_fix=fix)
    act = fmt.activation_matmuls(model) if settings.act_matmuls == "float" else []
    kwargs, adv, matched = _nncf_params(settings, policy, fmt.op_names(model), act)
    calib = nncf.Dataset(calib_items, fmt.nncf_input)
    subset = min(settings.subset_size, len(calib_items))
    info = {"preset": settings.preset, "ignore_preset": settings.ignore,
            "ignored_nodes": matched, "act_matmuls": settings.act_matmuls,
            "act_matmuls_in_float": len(act),
            "model_type": "transformer" if settings.transformer else "default",
            "overflow_fix": fix, "subset_size": subset,
            "per_channel_weights": settings.per_channel_weights or policy.symmetric_signed}
    if control is None:
        q = nncf.quantize(model, calib, subset_size=subset, advanced_parameters=adv, **kwargs)
        return _finish(q, info, policy)

    def validation_fn(compiled, items) -> tuple[float, None]:
        items = list(items)
        return headroom(control.budgets, control.fp32_metrics,
                        control.evaluate(compiled, items)), None

    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    val = nncf.Dataset(list(enumerate(control.val_items)),
                       lambda item: fmt.nncf_input(item[1]))
    # Ranking every quantised op on the whole validation set took > 10 min for 188 ops on
    # 2 cores; a 16-image ranking subset and a bounded number of reverts keep it to minutes.
    restorer = AdvancedAccuracyRestorerParameters(
        ranking_subset_size=min(16, len(control.val_items)),
        max_num_iterations=settings.max_reverts)
    q = nncf.quantize_with_accuracy_control(
        model, calib, val, validation_fn, max_drop=1.0,
        drop_type=nncf.DropType.ABSOLUTE, subset_size=subset,
        advanced_quantization_parameters=adv, advanced_accuracy_restorer_parameters=restorer,
        **kwargs)
    info["budgets"] = [b.describe() for b in control.budgets]
    return _finish(q, info, policy)


def _finish(q, info: dict, policy: Int8Policy):
    if policy.symmetric_signed:
        info["rules"] = policy.rules
        info["signed_activation_qdq"] = to_signed_int8_qdq(q)
    if policy.problems is not None:
        problems = policy.problems(q)
        if problems:  # a bug in our NNCF settings, not a user error: say exactly what broke
            raise RuntimeError(f"NNCF output breaks the {policy.rules} Q/DQ rules: "
                               f"{problems[0]}")
        info[f"{policy.rules}_qdq_check"] = "pass"
    return q, info
