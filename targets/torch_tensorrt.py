"""torch-tensorrt target (desktop / server NVIDIA GPUs): the checkpoint compiled by
``torch_tensorrt.compile(ir="dynamo")`` and saved with ``torch_tensorrt.save`` as an
ExportedProgram (``model.ep``, torch-tensorrt's default serialisation, TensorRT engines embedded)
inside a normal checksummed bundle; ``load`` returns it through ``torch_tensorrt.load``.

Precisions: fp32, and fp16 through torch-tensorrt's rule-based autocast
(``enable_autocast`` + ``autocast_low_precision_type``, 2.10+; I/O stays FP32) or, on older
releases such as the Jetson wheels, ``enabled_precisions``.  INT8 is not offered: our Q/DQ
route is an ONNX file, and torch-tensorrt takes INT8 only from a ModelOpt-quantised torch
model (use the ``tensorrt`` target with ``quantize --target tensorrt`` instead).

Needs a checkpoint (like the ``torch`` target): torch-tensorrt compiles the PyTorch graph, not
the ONNX file.  UNVERIFIED: no NVIDIA GPU was available while writing this (docs/nvidia.md).
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtlsi_edge.errors import ConfigError
from mtlsi_edge.export import DeployModel
from mtlsi_edge.targets.base import (
    Compiled,
    CompileOptions,
    ModelMismatch,
    Target,
    TargetUnavailable,
)
from mtlsi_edge.targets.torch import model_from_weights

PROGRAM_FILE = "model.ep"
INSTALL_HINT = ('pip install "mtlsi-edge[tensorrt]" on x86-64 Linux with CUDA 13; on Jetson '
                "install NVIDIA's torch / torch-tensorrt wheels for your JetPack")


def _minor(version: str) -> tuple[int, int]:
    parts = (str(version).split("+")[0].split(".") + ["0", "0"])[:2]
    return tuple(int("".join(c for c in p if c.isdigit()) or 0) for p in parts)


def version_problem(tt_version: str, torch_version: str) -> str | None:
    """torch-tensorrt X.Y is built against torch X.Y only; None when they match."""
    if _minor(tt_version) != _minor(torch_version):
        return (f"torch-tensorrt {tt_version} needs torch {'.'.join(map(str, _minor(tt_version)))}"
                f".x, this environment has torch {torch_version} ({INSTALL_HINT})")
    return None


def fp16_kwargs(compile_fn) -> dict:
    """FP16 settings for this torch-tensorrt: autocast where ``compile`` has it, else the
    legacy ``enabled_precisions`` (torch-tensorrt < 2.10)."""
    import torch

    params = inspect.signature(compile_fn).parameters
    if "enable_autocast" in params:
        return {"enable_autocast": True, "autocast_low_precision_type": torch.float16}
    return {"enabled_precisions": {torch.float16, torch.float32}}


def _onnx_meta(onnx_path: Path) -> dict:
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)
    for p in proto.metadata_props:
        if p.key == "mtlsi_edge":
            return json.loads(p.value)
    raise ModelMismatch(f"{onnx_path}: ONNX lacks mtlsi_edge metadata")


@dataclass(frozen=True)
class TorchTensorRTOptions:
    """``compile --target torch-tensorrt`` knobs: ``workspace_mb`` (the TensorRT builder's
    workspace, MiB; None = torch-tensorrt's default)."""

    workspace_mb: int | None = None


class TorchTensorRTTarget(Target):
    """Checkpoint → torch-tensorrt ExportedProgram, from the checkpoint's weights
    (``opts.weights``, set by ``compile_bundle``)."""

    name = "torch-tensorrt"
    options_type = TorchTensorRTOptions
    precisions = ("fp32", "fp16")
    default_device = "cuda:0"

    def available(self) -> tuple[bool, str]:
        try:
            import torch_tensorrt
        except ImportError:
            return False, f"torch-tensorrt not installed ({INSTALL_HINT})"
        except Exception as e:  # a broken install: missing libnvinfer, CUDA mismatch, ...
            first = str(e).splitlines()[0] if str(e) else ""
            return False, f"torch-tensorrt failed to import ({type(e).__name__}: {first})"
        import torch

        problem = version_problem(torch_tensorrt.__version__, torch.__version__)
        if problem:
            return False, problem
        if not torch.cuda.is_available():
            return False, "no CUDA device visible"
        return True, ""

    def runtime_version(self) -> str:
        try:
            import torch_tensorrt
        except Exception:
            return "not installed"
        return str(torch_tensorrt.__version__)

    def _require(self):
        self.require("torch-tensorrt target unavailable")
        import torch_tensorrt

        return torch_tensorrt

    def compile(self, onnx_path: Path, out_dir: Path, opts: CompileOptions,
                outputs: list[str]) -> Compiled:
        if opts.precision not in self.precisions:
            raise ConfigError(f"torch-tensorrt: precision {opts.precision!r} not offered (fp32 | "
                              "fp16); for INT8 use --target tensorrt with a Q/DQ ONNX")
        weights = opts.weights
        if weights is None:
            raise TargetUnavailable("the torch-tensorrt target needs a checkpoint "
                                    "(--checkpoint), not an ONNX file")
        tt = self._require()
        import torch

        meta = _onnx_meta(Path(onnx_path))
        cfg = meta["model_config"]
        model = model_from_weights(cfg, Path(weights), meta.get("pruned"))
        deploy = DeployModel(model, meta.get("stride", 4)).eval()
        if list(outputs) != deploy.output_names:
            raise ModelMismatch(f"torch-tensorrt: outputs {outputs} differ from the model's "
                                f"{deploy.output_names}")
        device = torch.device(_cuda_device(opts.device))
        h, w = cfg["input_size"]
        x = torch.zeros(1, 3, int(h), int(w), device=device)
        kwargs = fp16_kwargs(tt.dynamo.compile) if opts.precision == "fp16" else {}
        own = opts.target_options or TorchTensorRTOptions()
        if own.workspace_mb is not None:
            kwargs["workspace_size"] = int(own.workspace_mb) << 20
        with torch.no_grad():
            trt_gm = tt.compile(deploy.to(device), ir="dynamo", arg_inputs=[x], **kwargs)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        # torch_tensorrt.save writes in place; the bundle folder is a staging dir that
        # compile_bundle renames into place only when complete, which keeps this atomic.
        tt.save(trt_gm, str(out_dir / PROGRAM_FILE), output_format="exported_program",
                arg_inputs=[x])
        return Compiled([PROGRAM_FILE], {"torch_tensorrt": {
            "version": tt.__version__, "torch": torch.__version__,
            "precision_settings": sorted(kwargs), "input_shape": [1, 3, int(h), int(w)]}})

    def load(self, bundle_dir: Path, manifest: dict, opts: CompileOptions):
        tt = self._require()
        path = Path(bundle_dir) / PROGRAM_FILE
        if not path.is_file():
            raise FileNotFoundError(f"torch-tensorrt program not found: {path}")
        return TorchTensorRTRunner(tt.load(str(path)).module(), list(manifest["outputs"]),
                                   _cuda_device(opts.device), manifest.get("precision", "fp32"))


def _cuda_device(device: str | None) -> str:
    d = (device or "").strip().lower()
    if d == "cuda":
        return "cuda:0"
    return d if d.startswith("cuda:") else "cuda:0"


class TorchTensorRTRunner:
    """``batch`` (1×3×H×W float32, host) → {output: np.ndarray float32}."""

    name = "torch-tensorrt"

    def __init__(self, module, outputs: list[str], device: str, precision: str):
        import torch

        self._torch, self._module = torch, module
        self._dev = torch.device(device)
        self.device, self.precision = device, precision
        self.output_names = outputs
        self.layouts = {n: "NCHW" for n in outputs}

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self._dev)
        with torch.no_grad():
            res = self._module(x)
        res = res if isinstance(res, (tuple, list)) else (res,)
        if len(res) != len(self.output_names):
            raise RuntimeError(f"torch-tensorrt program returned {len(res)} outputs, the "
                               f"manifest lists {len(self.output_names)}")
        return {n: r.float().cpu().numpy() for n, r in zip(self.output_names, res)}
