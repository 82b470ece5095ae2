"""Backends behind one base class (``base.py``): a registry, not if/elif chains."""

from __future__ import annotations

from mtlsi_edge.errors import ConfigError
from mtlsi_edge.targets.base import (
    Compiled,
    CompileOptions,
    FrameIOSpec,
    Int8Policy,
    LayerTime,
    ModelMismatch,
    Runner,
    Target,
    TargetUnavailable,
    UnsupportedByTarget,
)
from mtlsi_edge.targets.onnxruntime import ONNXRuntimeTarget
from mtlsi_edge.targets.openvino import OpenVINOTarget
from mtlsi_edge.targets.tensorrt import TensorRTTarget
from mtlsi_edge.targets.torch import TorchTarget
from mtlsi_edge.targets.torch_tensorrt import TorchTensorRTTarget

TARGETS: dict[str, Target] = {
    t.name: t for t in (TorchTarget(), ONNXRuntimeTarget(), OpenVINOTarget(), TensorRTTarget(),
                        TorchTensorRTTarget())
}


def get_target(name: str) -> Target:
    """The target called ``name``; a one-line error lists the known ones."""
    if name not in TARGETS:
        raise TargetUnavailable(f"unknown target {name!r}; known: {', '.join(TARGETS)}")
    return TARGETS[name]


def int8_policy(fmt: str, rules: str | None = None) -> tuple[Int8Policy, Target]:
    """The INT8 policy ``quantize --format FMT [--target RULES]`` asks for, and the target it
    belongs to (whose deploy graph the model is exported in): the target named ``rules``, or
    the target whose plain policy (no extra rules) quantises ``fmt``."""
    formats = sorted({t.int8.format for t in TARGETS.values() if t.int8})
    if fmt not in formats:
        raise ConfigError(f"--format must be {' or '.join(formats)}, not {fmt!r}")
    if rules is not None:
        ruled = [n for n, t in TARGETS.items() if t.int8 and t.int8.rules]
        if rules not in ruled:
            raise ConfigError(f"--target must be {' or '.join(ruled)} (or omitted), not "
                              f"{rules!r}")
        tgt = TARGETS[rules]
        if tgt.int8.format != fmt:
            raise ConfigError(f"--target {rules} needs --format {tgt.int8.format} (the format "
                              f"its INT8 model is built in)")
        return tgt.int8, tgt
    tgt = next(t for t in TARGETS.values() if t.int8 and t.int8.format == fmt
               and t.int8.rules is None)
    return tgt.int8, tgt


def target_option_names() -> dict[str, list[str]]:
    """``{option field: [targets that take it]}`` over every target's :attr:`options_type`."""
    out: dict[str, list[str]] = {}
    for name, t in TARGETS.items():
        for f in getattr(t.options_type, "__dataclass_fields__", ()):
            out.setdefault(f, []).append(name)
    return out


def target_options(target: str, values: dict[str, object]) -> object | None:
    """``target``'s typed options (:attr:`Target.options_type`) from the CLI's
    ``{field: value}`` (None: left at the default); a value the target does not take is
    refused in one line naming the option and the targets that take it."""
    takers = target_option_names()
    for name, value in values.items():
        if value is not None and target not in takers.get(name, []):
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} applies to --target {' or '.join(takers.get(name, []))}"
                              f" only, not {target}")
    given = {k: v for k, v in values.items() if v is not None}
    tgt = get_target(target)
    return tgt.options_type(**given) if tgt.options_type is not None else None


__all__ = ["TARGETS", "Compiled", "CompileOptions", "FrameIOSpec", "Int8Policy", "LayerTime",
           "ModelMismatch", "Runner", "Target", "TargetUnavailable", "UnsupportedByTarget",
           "get_target", "int8_policy", "target_option_names", "target_options"]
