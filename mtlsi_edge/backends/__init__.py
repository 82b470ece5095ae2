"""The inference backends a device runs bundles with (one file per backend behind
:class:`~mtlsi_edge.backends.base.Backend`): a registry, not if/elif chains.

ONNX Runtime, OpenVINO and TensorRT bundles run here, with nothing of the build half
installed.  Bundles of the ``torch`` and ``torch-tensorrt`` targets are PyTorch programs: their
backends are the build half's targets, found by module name (:data:`BUILD_SIDE`) when a bundle
names them — so this package never imports the build half, and a runtime-only install refuses
such a bundle in one line naming the extra to install.
"""

from __future__ import annotations

import importlib
import importlib.util

from mtlsi_edge.backends.base import (
    Backend,
    LayerTime,
    ModelMismatch,
    Runner,
    RunOptions,
    RuntimeRefused,
    TargetUnavailable,
    UnsupportedByTarget,
)
from mtlsi_edge.backends.onnxruntime import ONNXRuntimeBackend
from mtlsi_edge.backends.openvino import OpenVINOBackend
from mtlsi_edge.backends.tensorrt import TensorRTBackend

#: The backends of the runtime half, by target name.
BACKENDS: dict[str, Backend] = {
    b.name: b for b in (ONNXRuntimeBackend(), OpenVINOBackend(), TensorRTBackend())
}
#: Targets whose bundles run in PyTorch: name → (module, class, precisions).  The precisions
#: are the target's own (a test keeps them equal), so manifests are checked without torch.
BUILD_SIDE: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "torch": ("mtlsi_edge.targets.torch", "TorchTarget", ("fp32",)),
    "torch-tensorrt": ("mtlsi_edge.targets.torch_tensorrt", "TorchTensorRTTarget",
                       ("fp32", "fp16")),
}
#: Every target name a bundle may carry, in the order users see them.
TARGET_NAMES: tuple[str, ...] = ("torch", *BACKENDS, "torch-tensorrt")
#: The extra that installs the build half (pyproject.toml).
BUILD_EXTRA = "build"


def precisions_of(name: str) -> tuple[str, ...]:
    """The precisions target ``name`` builds and runs (without importing it)."""
    if name in BACKENDS:
        return BACKENDS[name].precisions
    return BUILD_SIDE[name][2]


def importable(module: str) -> bool:
    """Whether ``module`` can be found here (a finder refusing it counts as absent)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a finder that refuses it (a blocked or broken package)
        return False


def build_half_installed() -> bool:
    """Whether the build half's packages (PyTorch, timm) can be imported here."""
    return all(importable(m) for m in ("torch", "timm"))


def get_backend(name: str) -> Backend:
    """The backend that runs bundles of target ``name``; one-line errors for an unknown name
    and for a PyTorch target without the build half."""
    if name in BACKENDS:
        return BACKENDS[name]
    if name not in BUILD_SIDE:
        raise TargetUnavailable(f"unknown target {name!r}; known: {', '.join(TARGET_NAMES)}")
    if not build_half_installed():
        raise TargetUnavailable(
            f"bundles of target {name} run in PyTorch, which this runtime-only install lacks: "
            f"pip install 'mtlsi-edge[{BUILD_EXTRA}]', or compile the model for onnxruntime "
            f"or openvino")
    module, cls, _ = BUILD_SIDE[name]
    return getattr(importlib.import_module(module), cls)()


__all__ = ["BACKENDS", "BUILD_SIDE", "TARGET_NAMES", "Backend", "LayerTime", "ModelMismatch",
           "RunOptions", "Runner", "RuntimeRefused", "TargetUnavailable",
           "UnsupportedByTarget", "build_half_installed", "get_backend", "importable",
           "precisions_of"]
