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


@dataclass(frozen=True)
class FrameIOSpec:
    """Pre/postprocessing folded into the compiled model: uint8 BGR frames in (normalised
    with ``mean``/``std``), class labels out for ``label_outputs`` (resized to
    ``label_size`` first; None = the heads' own resolution)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    label_outputs: tuple[str, ...]
    label_size: tuple[int, int] | None = None


@dataclass
class CompileOptions(RunOptions):
    """What a target should build: :class:`RunOptions` (precision, device, threads, hint)
    plus the build inputs every target may use — ``frame_io`` (fold pre/postprocessing in),
    ``weights`` (the checkpoint's safetensors, for the targets that compile from weights) —
    and ``target_options``, the target's own typed knobs (:attr:`Target.options_type`, e.g.
    TensorRT's workspace and DLA core).  int8 expects an already-quantised model: a Q/DQ ONNX
    for onnxruntime/TensorRT, an NNCF-quantised IR for OpenVINO."""

    frame_io: FrameIOSpec | None = None
    weights: Path | None = None
    target_options: object | None = None


@dataclass(frozen=True)
class Int8Policy:
    """How a target's INT8 model is made (MMDeploy keeps this in its backend config): the
    model ``format`` NNCF quantises (``"openvino"`` IR or ``"onnx"`` Q/DQ), and the rules the
    result must follow.

    ``symmetric_signed``: symmetric per-tensor activations, symmetric per-channel weights,
    signed INT8 activations and no 7-bit overflow fix (TensorRT's explicit quantisation);
    it needs the ``performance`` preset.  ``problems(model)``: what in a quantised model breaks
    the rules (a non-empty answer is a bug in our NNCF settings, not a user error).  ``rules``
    names the rule set (``quantize --target``) when there is one.
    """

    format: str
    symmetric_signed: bool = False
    problems: Callable[[object], list[str]] | None = None
    rules: str | None = None


class Target(Backend):
    """One backend as the build half sees it: a :class:`Backend` (load, time) that also
    compiles an ONNX file into bundle artifacts.

    Subclasses derive from their runtime backend and this class; they set, where they differ
    from the defaults, ``task_batched``, ``int8`` and ``options_type``, implement ``compile``
    and optionally ``native_infer``.
    """

    #: Whether bundles built from a checkpoint run the task-batched deploy graph
    #: (``MTLSIConfig.task_batched``) unless told otherwise: True where it measured faster
    #: than the per-task graph on this runtime (docs/benchmarks.md).
    task_batched: bool = False
    #: How this target's INT8 model is quantised (:class:`Int8Policy`); None when the target
    #: builds no INT8.
    int8: Int8Policy | None = None
    #: The target's own typed build options (a frozen dataclass whose fields are the CLI
    #: options ``compile`` accepts for it, e.g. ``--workspace-mb``), or None.
    options_type: type | None = None

    @property
    def default_graph(self) -> str:
        """The deploy graph checkpoints are exported in for this target by default."""
        return "batched" if self.task_batched else "per-task"

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
