"""The build half's view of a backend (MMDeploy's backend *manager*): a
:class:`~mtlsi_edge.backends.base.Backend` (load a bundle, time it: the runtime half) that also
compiles an ONNX file into the bundle's model files.

Everything the toolkit needs from a backend is a hook or an attribute of these two classes, so
no code outside ``targets/`` and ``backends/`` branches on target names or imports a backend
package: availability, the default device, the INT8 source format, the backend's own
per-layer profiler, its throughput mode, the thread count it really uses and inference over
its native model objects (:meth:`Target.native_infer`, what NNCF hands a validation function).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtlsi_edge.backends.base import (  # noqa: F401 - the targets' shared vocabulary
    Backend,
    LayerTime,
    ModelMismatch,
    Runner,
    RunOptions,
    RuntimeRefused,
    TargetUnavailable,
    UnsupportedByTarget,
    require_outputs,
)


@dataclass(frozen=True)
class Compiled:
    """What :meth:`Target.compile` built: the model files it wrote into the bundle folder and
    its build record (manifest fields, e.g. ``{"tensorrt": {...}}``)."""

    files: list[str]
    record: dict = field(default_factory=dict)


@dataclass
class CompileOptions(RunOptions):
    """What a target should build: :class:`RunOptions` (precision, device, threads, hint)
    plus ``extra`` build knobs (e.g. ``workspace_mb``, ``dla_core`` for TensorRT).  int8
    expects an already-quantised model: a QDQ ONNX for onnxruntime/TensorRT, an
    NNCF-quantised IR for OpenVINO."""


class Target(Backend):
    """One backend as the build half sees it: a :class:`Backend` (load, time) that also
    compiles an ONNX file into bundle artifacts.

    Subclasses derive from their runtime backend and this class; they set, where they differ
    from the defaults, ``task_batched``, ``int8_format`` and ``int8_rules``, implement
    ``compile`` and optionally ``native_infer``.
    """

    #: Whether bundles built from a checkpoint run the task-batched deploy graph
    #: (``MTLSIConfig.task_batched``) unless told otherwise: True where it measured faster
    #: than the per-task graph on this runtime (docs/benchmarks.md).
    task_batched: bool = False
    #: ``mtlsi-edge quantize --format`` an INT8 bundle of this target is built from
    #: (``"openvino"`` IR or ``"onnx"`` Q/DQ); None when the target builds no INT8.
    int8_format: str | None = None
    #: Extra quantisation rules the INT8 model must follow (``quantize --target``), or None.
    int8_rules: str | None = None

    @abc.abstractmethod
    def compile(self, onnx_path: Path, out_dir: Path, opts: CompileOptions,
                outputs: list[str]) -> Compiled:
        """Build artifacts from ``onnx_path`` into ``out_dir``; return their file names and
        the build record (never written into ``opts``: nothing mutates what it was given)."""

    def native_infer(self, model: object, outputs: list[str]
                     ) -> Callable[[np.ndarray], dict[str, np.ndarray]] | None:
        """A ``batch → {output: array}`` function over a backend-native model object (e.g.
        what NNCF hands a validation function), or None when ``model`` is not this
        backend's."""
        return None
