"""PyTorch eager target: the reference for parity and the baseline for speed.

The bundle holds the checkpoint's weights (safetensors) and its model config; it runs the
same deploy graph (:class:`mtlsi_edge.export.DeployModel`) the other targets were exported from.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from mtlsi_edge.export import DeployModel
from mtlsi_edge.model.restore import model_from_state_dict
from mtlsi_edge.targets.base import Compiled, CompileOptions, Runner, Target, TargetUnavailable


class TorchRunner:
    name = "torch"

    def __init__(self, model, opts: CompileOptions, stride: int = 4, frame_io: bool = False,
                 label_size: tuple[int, int] | None = None):
        if opts.precision != "fp32":
            raise TargetUnavailable("the torch target runs FP32 only (it is the reference)")
        if opts.threads:
            torch.set_num_threads(opts.threads)
        self.model = DeployModel(model, stride, frame_io, label_size).eval()
        self.outputs = self.model.output_names
        self.device, self.precision = "cpu", "fp32"
        self.layouts = {n: "NCHW" for n in self.outputs}

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        res = self.model(torch.from_numpy(batch))
        # contiguous: the batched graph's convolutions leave channels-last outputs
        return {n: r.contiguous().numpy() for n, r in zip(self.outputs, res)}


class TorchTarget(Target):
    """Checkpoint weights → eager PyTorch (FP32 reference)."""

    name = "torch"
    frame_io = True  # the same graph as the other frame-I/O bundles, in eager PyTorch
    task_batched = True  # frame-I/O eager: 1.15x the per-task graph (benchmarks/targets.py)
    precisions = ("fp32",)

    def available(self) -> tuple[bool, str]:
        return True, ""

    def runtime_version(self) -> str:
        return torch.__version__

    def compile(self, onnx_path: Path, out_dir: Path, opts: CompileOptions,
                outputs: list[str]) -> Compiled:
        ckpt = opts.weights
        if ckpt is None:
            raise TargetUnavailable("the torch target needs a checkpoint (--checkpoint), "
                                    "not an ONNX file")
        shutil.copyfile(ckpt, out_dir / "model.safetensors")
        return Compiled(["model.safetensors"])

    def load(self, bundle_dir: Path, manifest: dict, opts: CompileOptions) -> TorchRunner:
        model = model_from_weights(manifest["model"]["config"], bundle_dir / "model.safetensors",
                                   manifest["model"].get("pruned"))
        frame = manifest.get("io") == "frame"
        label = manifest.get("label_size") if frame else None
        return TorchRunner(model, opts, manifest["output_stride"], frame,
                           tuple(label) if label else None)

    def effective_threads(self, runner: Runner) -> int | None:
        """PyTorch's intra-op thread count (process-wide)."""
        return torch.get_num_threads()


def model_from_weights(config: dict, weights: Path, pruned: dict | None = None):
    """An ``MTLSINet`` built from its config dict and a safetensors state dict (channel-pruned
    checkpoints are re-shaped to the stored tensors first)."""
    return model_from_state_dict(config, load_file(str(weights)), pruned)
