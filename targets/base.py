"""The protocol every backend implements (one file per backend, MMDeploy-style).

A :class:`Target` turns an ONNX file into artifact files inside a bundle folder
(``compile``) and loads them back as a :class:`Runner` (``load``).  A Runner maps a float32
``N×3×H×W`` batch (already normalised) to ``{task: array}``; ``layouts`` says, per output,
whether it is ``NCHW`` or ``NHWC`` so the Predictor's postprocessing never guesses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from mtlsi_edge.errors import MtlsiError


class TargetUnavailable(MtlsiError, RuntimeError):
    """The backend cannot run here (package missing, no device); the message says why."""


class ModelMismatch(MtlsiError, ValueError):
    """A model file that does not fit its bundle or the runtime refuses; one line."""


@dataclass
class CompileOptions:
    """What a target should build.

    precision: ``fp32`` | ``fp16`` | ``int8`` (int8 expects an already-quantised model:
      a QDQ ONNX for onnxruntime/TensorRT, an NNCF-quantised IR for OpenVINO).
    device: backend device string (``CPU``, ``GPU``, ``NPU``, ``AUTO`` for OpenVINO; ``cuda:0``
      for TensorRT; ``cpu`` / ``cuda`` for onnxruntime).
    threads: inference threads (None: the backend's default).
    hint: ``latency`` | ``throughput`` performance hint.
    extra: backend-specific knobs (e.g. ``workspace_mb``, ``dla_core`` for TensorRT).
    """

    precision: str = "fp32"
    device: str = "CPU"
    threads: int | None = None
    hint: str = "latency"
    extra: dict = field(default_factory=dict)


class Runner(Protocol):
    name: str
    device: str
    precision: str
    layouts: dict[str, str]

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...


class Target(Protocol):
    name: str
    precisions: tuple[str, ...]

    def available(self) -> tuple[bool, str]:
        """(True, "") or (False, one-line reason)."""
        ...

    def runtime_version(self) -> str: ...

    def compile(self, onnx_path: Path, out_dir: Path, opts: CompileOptions,
                outputs: list[str]) -> list[str]:
        """Build artifacts from ``onnx_path`` into ``out_dir``; return their file names."""
        ...

    def load(self, bundle_dir: Path, manifest: dict, opts: CompileOptions) -> Runner:
        """A Runner over the artifacts listed in ``manifest["files"]``."""
        ...
