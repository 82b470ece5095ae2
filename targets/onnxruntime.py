"""ONNX Runtime target: CPU provider here; CUDA / TensorRT providers when the build has them.

The bundle keeps the ONNX file as is (an INT8 bundle keeps the QDQ ONNX from
``mtlsi-edge quantize``); session options fix the thread count and enable all graph
optimisations.  Note: on CPUs without VNNI, QDQ INT8 is slower than FP32 (docs/design.md,
'Lessons measured on the build machine').
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from mtlsi_edge.targets.base import CompileOptions, ModelMismatch, TargetUnavailable

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
        try:
            self.session = ort.InferenceSession(str(onnx_path), so,
                                                providers=[p for p in wanted if p in have])
        except (ort.capi.onnxruntime_pybind11_state.InvalidGraph,
                ort.capi.onnxruntime_pybind11_state.InvalidArgument,
                ort.capi.onnxruntime_pybind11_state.NoSuchFile,
                ort.capi.onnxruntime_pybind11_state.InvalidProtobuf,
                ort.capi.onnxruntime_pybind11_state.Fail) as e:
            # A model file ONNX Runtime refuses (e.g. external data outside the bundle).
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelMismatch(f"{onnx_path}: ONNX Runtime cannot load it: {first}") from None
        self.device, self.precision = device, opts.precision
        self.device_precision = opts.precision
        self.outputs = outputs
        self.input_name = self.session.get_inputs()[0].name
        self.layouts = {n: "NCHW" for n in outputs}
        have_out = [o.name for o in self.session.get_outputs()]
        missing = [n for n in outputs if n not in have_out]
        if missing:
            raise ModelMismatch(f"{onnx_path}: model has no output {missing[0]!r} (it has "
                                f"{', '.join(have_out) or 'none'})")

    def io(self) -> tuple[list, dict[str, list]]:
        """(input shape, {output: shape}); symbolic dims are ``"?"``."""
        def dims(shape) -> list:
            return [d if isinstance(d, int) else "?" for d in shape]

        outs = {o.name: dims(o.shape) for o in self.session.get_outputs()}
        return dims(self.session.get_inputs()[0].shape), {n: outs[n] for n in self.outputs}

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        res = self.session.run(self.outputs, {self.input_name: batch})
        return dict(zip(self.outputs, res))


class ONNXRuntimeTarget:
    model_file = "model.onnx"  # what the precision label and I/O checks read
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
