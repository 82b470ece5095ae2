"""What every inference backend provides on the device (MMDeploy's backend *wrapper*): load a
bundle's model files as a :class:`Runner` and time them — nothing that builds a model.

A :class:`Backend` loads the artifacts of a bundle (``load``) into a :class:`Runner`, which
maps the model's input — ``N×H×W×3`` uint8 BGR frames for frame-I/O bundles, else a
normalised float32 ``N×3×H×W`` batch — to ``{task: array}``; ``layouts`` says, per output,
whether it is ``NCHW`` or ``NHWC`` so the Predictor's postprocessing never guesses.

Everything else the runtime needs from a backend is a hook or an attribute here, so no code
branches on backend names or imports a backend package outside ``backends/``: availability
(:meth:`Backend.available` / :meth:`Backend.require`), the default device, the backend's own
per-layer profiler (:meth:`Backend.per_layer`), its concurrent throughput mode
(:meth:`Backend.throughput`) and the thread count it really uses
(:meth:`Backend.effective_threads`).  Optional hooks a backend lacks raise
:class:`UnsupportedByTarget`.  The build half's :class:`~mtlsi_edge.targets.base.Target`
derives from :class:`Backend` and adds compilation.
"""

from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from mtlsi_edge.errors import MtlsiError


class TargetUnavailable(MtlsiError, RuntimeError):
    """The backend cannot run here (package missing, no device); the message says why."""


class ModelMismatch(MtlsiError, ValueError):
    """A model file that does not fit its bundle or the runtime refuses; one line."""


class RuntimeRefused(ModelMismatch):
    """This machine's runtime will not compile or run a model we made (e.g. no kernel for an
    op at the precision the CPU plugin picked); one line with the runtime's reason.  Where an
    FP32 fallback exists (``deploy``), the INT8 artifact is refused and the fallback kept."""


class UnsupportedByTarget(MtlsiError, NotImplementedError):
    """A backend lacks an optional hook (per-layer profiler, throughput mode, ...); one line
    naming the backend and what it lacks."""


def require_outputs(path, have, outputs: list[str]) -> None:
    """A model file must have every output the bundle's task set names; one line if not."""
    have = sorted(have) if isinstance(have, set) else list(have)
    missing = [n for n in outputs if n not in have]
    if missing:
        raise ModelMismatch(f"{path}: model has no output {missing[0]!r} (it has "
                            f"{', '.join(have) or 'none'})")


def import_problem(module: str) -> str | None:
    """Why the inference runtime ``module`` cannot be imported here (one line), or None."""
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:  # installed, but something it needs is missing
            return f"{module} cannot be imported ({e})"
        return f"{module} is not installed (pip install {module})"
    except ImportError as e:  # e.g. built against another NumPy
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"{module} is installed but cannot be imported: {first}"
    return None


@dataclass
class RunOptions:
    """How a backend loads a model for inference.

    precision: ``fp32`` | ``fp16`` | ``int8`` (the bundle's label).
    device: backend device string (``CPU``, ``GPU``, ``NPU``, ``AUTO`` for OpenVINO; ``cuda:0``
      for TensorRT; ``cpu`` / ``cuda`` for onnxruntime).
    threads: inference threads (None: the backend's default).
    hint: ``latency`` | ``throughput`` performance hint.
    extra: backend-specific knobs (e.g. ``cache_dir`` for OpenVINO, ``dla_core`` for TensorRT).
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


@dataclass
class LayerTime:
    """One backend node of a per-layer profile: its name, its type as the backend reports it
    and its execution time in ms summed over the profiled iterations."""

    name: str
    type: str
    ms: float


class Backend(abc.ABC):
    """One inference runtime: load a bundle's model files as a Runner, and time them.

    Subclasses set ``name``, ``precisions`` and, where they differ from the defaults,
    ``default_device``, ``model_file`` and ``frame_io``; they implement ``available``,
    ``runtime_version`` and ``load``, and optionally ``per_layer``, ``throughput`` and
    ``effective_threads``.
    """

    name: str = ""
    precisions: tuple[str, ...] = ()
    #: Device a bundle is compiled for when the user names none (backend device string).
    default_device: str = "CPU"
    #: The file the precision label and I/O checks read (None: nothing to inspect).
    model_file: str | None = None
    #: Whether compiled models take uint8 BGR frames and emit labels (bundle ``io: frame``).
    frame_io: bool = False
    #: What the per-layer times are (shown next to the profile); set with ``per_layer``.
    per_layer_source: str = ""

    # -- availability -----------------------------------------------------------------------
    @abc.abstractmethod
    def available(self) -> tuple[bool, str]:
        """(True, "") or (False, one-line reason)."""

    def require(self, context: str | None = None,
                error: type[Exception] = TargetUnavailable) -> None:
        """Raise ``error`` (default :class:`TargetUnavailable`) when the backend cannot run
        here; the one-line message is ``"<context>: <reason>"`` (``context`` defaults to
        ``"target <name> unavailable"``)."""
        ok, why = self.available()
        if not ok:
            raise error(f"{context or f'target {self.name} unavailable'}: {why}")

    @abc.abstractmethod
    def runtime_version(self) -> str:
        """Version of the backend runtime (``"not installed"`` when absent)."""

    # -- load -------------------------------------------------------------------------------
    @abc.abstractmethod
    def load(self, bundle_dir: Path, manifest: dict, opts: RunOptions) -> Runner:
        """A Runner over the artifacts listed in ``manifest["files"]``."""

    def load_options(self, manifest: dict, device: str | None = None,
                     threads: int | None = None, hint: str = "latency") -> RunOptions:
        """The options a bundle is loaded with for inference (and timing): its precision, the
        device it was compiled for unless ``device`` overrides it, ``threads``, ``hint``.
        The per-layer and throughput hooks take these too, so they run what was timed."""
        return RunOptions(precision=manifest["precision"],
                          device=device or manifest.get("device") or self.default_device,
                          threads=threads, hint=hint)

    # -- optional hooks ---------------------------------------------------------------------
    def per_layer(self, bundle_dir: Path, manifest: dict, opts: RunOptions,
                  batch: np.ndarray, iterations: int) -> list[LayerTime]:
        """Per-node times from the backend's own profiler over ``iterations`` calls on
        ``batch`` (after an untimed warm-up), the model compiled exactly as ``load`` with
        ``opts`` compiles it for timing, profiling switched on."""
        raise UnsupportedByTarget(f"target {self.name} has no per-layer profiler")

    def throughput(self, bundle_dir: Path, manifest: dict, opts: RunOptions,
                   batch: np.ndarray, time_s: float | None, runs: int | None) -> dict:
        """Concurrent inference on ``batch`` for ``time_s`` seconds or ``runs`` frames.

        Returns ``{"fps", "frames", "wall_s", "parallel", "streams", "latencies_s", "how"}``
        (``latencies_s``: per-request latency under load).  ``opts.threads`` is the
        backend's per-request thread count or its degree of parallelism (see ``how``).
        """
        raise UnsupportedByTarget(f"target {self.name} has no throughput mode "
                                  "(no concurrent-request API here)")

    def effective_threads(self, runner: Runner) -> int | None:
        """The inference thread count ``runner`` really uses, or None when unknown."""
        return None
