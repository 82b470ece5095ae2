"""OpenVINO target (build half): ONNX → IR (``model.xml`` + ``model.bin``).

- FP32 / FP16: ``ov.convert_model`` then ``ov.save_model(compress_to_fp16=…)``; INT8 takes an
  IR already quantised by NNCF (``mtlsi-edge quantize``).
- Frame I/O: the Predictor's pre/postprocessing folded in with ``PrePostProcessor``.

Loading and timing are the runtime's :class:`~mtlsi_edge.backends.openvino.OpenVINOBackend`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from mtlsi_edge.backends.openvino import OpenVINOBackend
from mtlsi_edge.native import quiet_native
from mtlsi_edge.targets.base import (
    Compiled,
    CompileOptions,
    Int8Policy,
    Target,
    TargetUnavailable,
    require_outputs,
)


def with_frame_io(model, mean, std, label_outputs: list[str],
                  label_size: tuple[int, int] | None):
    """The model with the Predictor's pre/postprocessing folded in (OpenVINO's counterpart of
    :func:`mtlsi_edge.export.with_frame_io`): ``PrePostProcessor`` takes ``N×H×W×3`` uint8 BGR
    (convert, BGR→RGB, mean/scale, NHWC→NCHW), and each label output becomes ``N×1×h×w``
    uint8 class labels (bilinear resize of the logits to ``label_size``, then argmax)."""
    import openvino as ov
    import openvino.opset13 as ops
    from openvino.preprocess import ColorFormat, PrePostProcessor

    ppp = PrePostProcessor(model)
    inp = ppp.input(0)
    inp.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")) \
        .set_color_format(ColorFormat.BGR)
    inp.model().set_layout(ov.Layout("NCHW"))
    inp.preprocess().convert_element_type(ov.Type.f32).convert_color(ColorFormat.RGB) \
        .mean([m * 255.0 for m in mean]).scale([s * 255.0 for s in std])
    model = ppp.build()
    results = []
    for res in model.get_results():
        src = res.input_value(0)
        names = src.get_names()
        hit = [n for n in label_outputs if n in names]
        if not hit:
            results.append(res)
            continue
        src.get_tensor().set_names(set())
        x = src
        if label_size is not None:
            # "linear_onnx" (ONNX Resize's half-pixel bilinear): same labels as "linear" and
            # 0.4 ms faster on this CPU plugin (measured at 240×320, 40 classes).
            x = ops.interpolate(x, np.asarray(label_size, np.int64), "linear_onnx", "sizes",
                                axes=np.asarray([2, 3], np.int64),
                                coordinate_transformation_mode="half_pixel").output(0)
        idx = ops.topk(x, np.int64(1), 1, "max", "none", ov.Type.i32).output(1)
        lab = ops.convert(idx, ov.Type.u8).output(0)
        lab.get_tensor().set_names({hit[0]})
        new = ops.result(lab)
        new.set_friendly_name(hit[0])
        results.append(new)
    return ov.Model(results, model.get_parameters(), model.get_friendly_name())


class OpenVINOTarget(OpenVINOBackend, Target):
    """ONNX (or an NNCF INT8 IR) → OpenVINO IR."""

    task_batched = True  # 1.28-1.44x the per-task graph (benchmarks/targets.py)
    int8 = Int8Policy("openvino")  # NNCF on the IR (runs the CPU plugin's own INT8 kernels)

    def compile(self, onnx_path: Path, out_dir: Path, opts: CompileOptions,
                outputs: list[str]) -> Compiled:
        ok, why = self.available()
        if not ok:
            raise TargetUnavailable(why)
        import openvino as ov

        with quiet_native():  # the frontends' log lines on a garbage file stay out
            if Path(onnx_path).suffix == ".xml":  # an already converted (e.g. NNCF INT8) IR
                model = ov.Core().read_model(str(onnx_path))
            else:
                model = ov.convert_model(str(onnx_path))
        fio = opts.frame_io
        if fio:
            require_outputs(onnx_path, {n for o in model.outputs for n in o.get_names()},
                            outputs)
            model = with_frame_io(model, fio.mean, fio.std, list(fio.label_outputs),
                                  fio.label_size)
        ov.save_model(model, str(out_dir / "model.xml"),
                      compress_to_fp16=opts.precision == "fp16")
        return Compiled(["model.xml", "model.bin"])

    def native_infer(self, model: object, outputs: list[str]
                     ) -> Callable[[np.ndarray], dict[str, np.ndarray]] | None:
        """Over an ``openvino.CompiledModel`` (one infer request, outputs by name)."""
        if not hasattr(model, "create_infer_request"):
            return None
        ports = {n: model.output(n) for n in outputs}
        req = model.create_infer_request()

        def run(x: np.ndarray) -> dict[str, np.ndarray]:
            res = req.infer({0: x})
            return {n: res[p] for n, p in ports.items()}

        return run
