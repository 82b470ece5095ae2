"""ONNX Runtime target (build half): the bundle keeps the ONNX file as is (an INT8 bundle
keeps the QDQ ONNX from ``mtlsi-edge quantize``), with the Predictor's pre/postprocessing
folded in for frame I/O.  Loading and timing are the runtime's
:class:`~mtlsi_edge.backends.onnxruntime.ONNXRuntimeBackend`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mtlsi_edge.backends.onnxruntime import ONNXRuntimeBackend
from mtlsi_edge.export import with_frame_io
from mtlsi_edge.targets.base import (
    Compiled,
    CompileOptions,
    Int8Policy,
    Target,
    TargetUnavailable,
    require_outputs,
)


class ONNXRuntimeTarget(ONNXRuntimeBackend, Target):
    """ONNX (FP32 or QDQ INT8) → a bundle's ``model.onnx``."""

    task_batched = True  # 1.14-1.24x the per-task graph (benchmarks/targets.py)
    int8 = Int8Policy("onnx")  # a Q/DQ ONNX (NNCF's ONNX backend)

    def compile(self, onnx_path: Path, out_dir: Path, opts: CompileOptions,
                outputs: list[str]) -> Compiled:
        ok, why = self.available()
        if not ok:
            raise TargetUnavailable(why)
        fio = opts.frame_io
        if not fio:
            shutil.copyfile(onnx_path, out_dir / "model.onnx")
            return Compiled(["model.onnx"])
        import onnx

        proto = onnx.load(str(onnx_path))
        require_outputs(onnx_path, [o.name for o in proto.graph.output], outputs)
        proto = with_frame_io(proto, fio.mean, fio.std, list(fio.label_outputs),
                              fio.label_size)
        onnx.save(proto, str(out_dir / "model.onnx"))
        return Compiled(["model.onnx"])

    def native_infer(self, model: object, outputs: list[str]
                     ) -> Callable[[np.ndarray], dict[str, np.ndarray]] | None:
        """Over an ``onnxruntime.InferenceSession`` or an ``onnx.ModelProto`` (run on the CPU
        provider)."""
        if hasattr(model, "run") and hasattr(model, "get_inputs"):
            sess = model
        elif hasattr(model, "SerializeToString") and hasattr(model, "graph"):
            import onnxruntime as ort

            sess = ort.InferenceSession(model.SerializeToString(),
                                        providers=["CPUExecutionProvider"])
        else:
            return None
        name = sess.get_inputs()[0].name

        def run_ort(x: np.ndarray) -> dict[str, np.ndarray]:
            return dict(zip(outputs, sess.run(outputs, {name: x})))

        return run_ort
