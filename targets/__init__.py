"""Backends behind one base class (``base.py``): a registry, not if/elif chains."""

from __future__ import annotations

from mtlsi_edge.targets.base import (
    Compiled,
    CompileOptions,
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


__all__ = ["TARGETS", "Compiled", "CompileOptions", "LayerTime", "ModelMismatch", "Runner",
           "Target", "TargetUnavailable", "UnsupportedByTarget", "get_target"]
