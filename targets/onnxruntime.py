"""ONNX Runtime target: CPU provider here; CUDA / TensorRT providers when the build has them.

The bundle keeps the ONNX file as is (an INT8 bundle keeps the QDQ ONNX from
``mtlsi-edge quantize``); session options fix the thread count and enable all graph
optimisations.  Note: on CPUs without VNNI, QDQ INT8 is slower than FP32 (architecture.md).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from mtlsi_edge.targets.base import CompileOptions, TargetUnavailable

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


class ORTRunner:
    """Runs an ONNX file in an ``onnxruntime.InferenceSession``."""

    name = "onnxruntime"

    def __init__(self, onnx_path: Path, opts: CompileOptions, outputs: list[str]):
        import onnxruntime as ort

        device = opts.device.lower()
        if device not in PROVIDERS:
            raise TargetUnavailable(f"onnxruntime device {opts.device!r} unknown; use "
                                    f"{', '.join(PROVIDERS)}")
        wanted = PROVIDERS[device]
        have = ort.get_available_providers()
        if wanted[0] not in have:
            raise TargetUnavailable(f"onnxruntime provider {wanted[0]} not in this build "
                                    f"(available: {', '.join(have)})")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if opts.threads:
            so.intra_op_num_threads = opts.threads
            so.inter_op_num_threads = 1
        so.log_severity_level = 3
        if opts.extra.get("profile_prefix"):
            so.enable_profiling = True
            so.profile_file_prefix = str(opts.extra["profile_prefix"])
        self.session = ort.InferenceSession(str(onnx_path), so,
                                            providers=[p for p in wanted if p in have])
        self.device, self.precision = device, opts.precision
        self.outputs = outputs
        self.input_name = self.session.get_inputs()[0].name
        self.layouts = {n: "NCHW" for n in outputs}

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        res = self.session.run(self.outputs, {self.input_name: batch})
        return dict(zip(self.outputs, res))


class ONNXRuntimeTarget:
    name = "onnxruntime"
    precisions = ("fp32", "int8")

    def available(self) -> tuple[bool, str]:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return False, "onnxruntime is not installed (pip install onnxruntime)"
        return True, ""

    def runtime_version(self) -> str:
        import onnxruntime

        return onnxruntime.__version__

    def compile(self, onnx_path: Path, out_dir: Path, opts: CompileOptions,
                outputs: list[str]) -> list[str]:
        ok, why = self.available()
        if not ok:
            raise TargetUnavailable(why)
        shutil.copyfile(onnx_path, out_dir / "model.onnx")
        return ["model.onnx"]

    def load(self, bundle_dir: Path, manifest: dict, opts: CompileOptions) -> ORTRunner:
        ok, why = self.available()
        if not ok:
            raise TargetUnavailable(why)
        return ORTRunner(bundle_dir / "model.onnx", opts, manifest["outputs"])
