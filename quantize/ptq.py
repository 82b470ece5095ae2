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

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mtlsi_edge.errors import ConfigError
from mtlsi_edge.machine import has_vnni
from mtlsi_edge.quantize import quiet_nncf

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
    makes even FP32 fail; the final gate in ``run_quantize`` reports it either way.
    """
    vals = []
    for b in budgets:
        d = b.drop(fp32[b.task][b.metric], q[b.task][b.metric])
        vals.append((b.value - d) / max(abs(b.value), 1e-9))
    return min(vals)


def _nncf_params(preset: str, ignore: str, names: list[str], transformer: bool,
                 overflow_fix: bool, also_ignore: list[str] = (), target: str | None = None):
    nncf = quiet_nncf()
    from nncf.common.quantization.structs import QuantizationScheme as QS
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        OverflowFix,
        QuantizationParameters,
    )

    patterns = IGNORE_PRESETS[ignore]
    matched = [n for n in names if any(re.match(p, n) for p in patterns)]
    matched += [n for n in also_ignore if n not in matched]
    ignored = nncf.IgnoredScope(names=matched, validate=False) if matched else None
    kwargs = dict(
        preset=(nncf.QuantizationPreset.MIXED if preset == "mixed"
                else nncf.QuantizationPreset.PERFORMANCE),
        model_type=nncf.ModelType.TRANSFORMER if transformer else None,
        ignored_scope=ignored,
        target_device=nncf.TargetDevice.CPU,
    )
    if target == "tensorrt":
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
    adv = AdvancedQuantizationParameters(
        overflow_fix=OverflowFix.ENABLE if overflow_fix else OverflowFix.DISABLE)
    return kwargs, adv, matched


#: Ops a MatMul input may pass through and still count as a constant (weights).
_PASS_THROUGH = {"Convert", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Cast",
                 "DequantizeLinear", "Identity"}


def activation_matmuls(model, fmt: str) -> list[str]:
    """Names of the MatMuls whose two inputs are both activations (no input traces back to a
    constant through reshapes/transposes/casts): the attention products.

    OpenVINO's CPU plugin computes these wrongly in INT8 on AVX-512 VNNI/AMX CPUs (u8×u8
    brgemm; a different result per ``compile_model``): docs/known-issues.md.
    """
    if fmt == "openvino":
        def is_const(node) -> bool:
            while node.get_type_name() in _PASS_THROUGH:
                node = node.input_value(0).get_node()
            return node.get_type_name() == "Constant"

        return [op.get_friendly_name() for op in model.get_ops()
                if op.get_type_name() == "MatMul"
                and not any(is_const(op.input_value(i).get_node()) for i in range(2))]
    g = model.graph
    consts = {i.name for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    consts |= {o for n in g.node if n.op_type == "Constant" for o in n.output}

    def is_const_name(name: str) -> bool:
        while name not in consts and name in producer \
                and producer[name].op_type in _PASS_THROUGH:
            name = producer[name].input[0]
        return name in consts

    return [n.name for n in g.node if n.op_type == "MatMul"
            and not any(is_const_name(i) for i in n.input[:2])]
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


def cpu_has_vnni() -> bool:
    return has_vnni()


def quantize_model(model, calib_items: list[np.ndarray], fmt: str, preset: str = "performance",
                   ignore: str = "attention-norm", transformer: bool = True,
                   overflow_fix: bool | None = None, subset_size: int = 300,
                   budgets: list[Budget] | None = None,
                   evaluate: Callable[[object], dict] | None = None,
                   fp32_metrics: dict | None = None, val_items: list | None = None,
                   max_reverts: int = 40, act_matmuls: str = "float",
                   target: str | None = None):
    """Quantise an ``openvino.Model`` (fmt ``openvino``) or ``onnx.ModelProto`` (``onnx``).

    With ``budgets``, runs accuracy control: ``evaluate(model_for_inference)`` must return
    ``{task: {metric: value}}`` on the validation set.  ``act_matmuls="float"`` keeps the
    activation × activation MatMuls in float (:func:`activation_matmuls`).
    ``target="tensorrt"`` (onnx only) produces a Q/DQ model that follows TensorRT's rules.
    Returns (model, info dict).
    """
    if act_matmuls not in ("float", "int8"):
        raise ConfigError(f"act_matmuls must be float or int8, not {act_matmuls!r}")
    nncf = quiet_nncf()

    if overflow_fix is None:
        overflow_fix = not cpu_has_vnni()
    if fmt == "openvino":
        names = [op.get_friendly_name() for op in model.get_ops()]
    else:
        names = [n.name for n in model.graph.node]
    if target == "tensorrt" and (fmt != "onnx" or preset != "performance"):
        raise ConfigError("target tensorrt needs format onnx and preset performance "
                          "(TensorRT takes signed, symmetric INT8 only)")
    if target == "tensorrt":
        overflow_fix = False
    act = activation_matmuls(model, fmt) if act_matmuls == "float" else []
    kwargs, adv, matched = _nncf_params(preset, ignore, names, transformer, overflow_fix, act,
                                        target)
    # NNCF's ONNX engine feeds sessions with {input name: array}; OpenVINO takes arrays.
    as_input = (lambda x: {"image": x}) if fmt == "onnx" else (lambda x: x)
    calib = nncf.Dataset(calib_items, as_input)
    info = {"preset": preset, "ignore_preset": ignore, "ignored_nodes": matched,
            "act_matmuls": act_matmuls, "act_matmuls_in_float": len(act),
            "model_type": "transformer" if transformer else "default",
            "overflow_fix": overflow_fix, "subset_size": min(subset_size, len(calib_items))}
    if not budgets:
        q = nncf.quantize(model, calib, subset_size=min(subset_size, len(calib_items)),
                          advanced_parameters=adv, **kwargs)
        return _finish(q, info, target)
    assert evaluate is not None and fp32_metrics is not None and val_items is not None

    def validation_fn(compiled, items) -> tuple[float, None]:
        items = list(items)
        return headroom(budgets, fp32_metrics, evaluate(compiled, items)), None

    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    val = nncf.Dataset(list(enumerate(val_items)), lambda item: as_input(item[1]))
    # Ranking every quantised op on the whole validation set took > 10 min for 188 ops on
    # 2 cores; a 16-image ranking subset and at most 40 reverts keep it to minutes.
    restorer = AdvancedAccuracyRestorerParameters(
        ranking_subset_size=min(16, len(val_items)), max_num_iterations=max_reverts)
    q = nncf.quantize_with_accuracy_control(
        model, calib, val, validation_fn, max_drop=1.0,
        drop_type=nncf.DropType.ABSOLUTE, subset_size=min(subset_size, len(calib_items)),
        advanced_quantization_parameters=adv, advanced_accuracy_restorer_parameters=restorer,
        **kwargs)
    info["budgets"] = [b.describe() for b in budgets]
    return _finish(q, info, target)


def _finish(q, info: dict, target: str | None):
    if target == "tensorrt":
        info["target"] = "tensorrt"
        info["signed_activation_qdq"] = to_signed_int8_qdq(q)
    return q, info


def reverted_to_float(model, fmt: str) -> list[str]:
    """Compute-heavy ops (conv / matmul) left in float: none of their inputs is quantised."""
    if fmt == "openvino":
        heavy = ("Convolution", "GroupConvolution", "MatMul")
        return [op.get_friendly_name() for op in model.get_ops()
                if op.get_type_name() in heavy and not any(
                    op.input_value(i).get_node().get_type_name() == "FakeQuantize"
                    for i in range(op.get_input_size()))]
    producers = {o: n for n in model.graph.node for o in n.output}
    return [n.name for n in model.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")
            and not any(i in producers and producers[i].op_type == "DequantizeLinear"
                        for i in n.input)]
