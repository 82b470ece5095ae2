"""OpenVINO target: ONNX → IR (``model.xml`` + ``model.bin``) for CPU / GPU / NPU / AUTO.

- FP32 / FP16: ``ov.convert_model`` then ``ov.save_model(compress_to_fp16=…)``; INT8 takes an
  IR already quantised by NNCF (``mtlsi-edge quantize``).
- Outputs are declared ``NHWC`` with ``PrePostProcessor``: the plugin then writes results in
  the layout the postprocessing (OpenCV, H×W×C) wants instead of paying a reorder
  (an NHWC→NCHW reorder of a 40×240×320 output cost 8.7 ms: docs/design.md, 'Lessons
  measured on the build machine').
- ``LATENCY`` / ``THROUGHPUT`` performance hints, thread count, and a model cache folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtlsi_edge.targets.base import CompileOptions, ModelMismatch, TargetUnavailable


def _with_nhwc_outputs(model, outputs: list[str]):
    from openvino.preprocess import PrePostProcessor

    ppp = PrePostProcessor(model)
    for name in outputs:
        out = ppp.output(name)
        out.model().set_layout("NCHW")
        out.tensor().set_layout("NHWC")
    return ppp.build()


def _first_line(e: Exception) -> str:
    """OpenVINO's messages start with a C++ source location; keep the reason."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    reasons = [ln for ln in lines if not ln.startswith(("Exception from", "Check "))]
    return (reasons or lines or [type(e).__name__])[0][:300]


class OpenVINORunner:
    name = "openvino"

    def __init__(self, xml: Path, opts: CompileOptions, outputs: list[str],
                 cache_dir: Path | None = None):
        import openvino as ov
        import openvino.properties.hint as hints

        core = ov.Core()
        device = opts.device.upper()
        if device != "AUTO" and not any(d.startswith(device) for d in core.available_devices):
            raise TargetUnavailable(f"OpenVINO device {device} not present (available: "
                                    f"{', '.join(core.available_devices)})")
        try:
            model = core.read_model(str(xml))
        except RuntimeError as e:  # OpenVINO reports unreadable IRs as RuntimeError
            raise ModelMismatch(f"{xml}: OpenVINO cannot read it: {_first_line(e)}") from None
        names = {n for o in model.outputs for n in o.get_names()}
        missing = [n for n in outputs if n not in names]
        if missing:
            raise ModelMismatch(f"{xml}: model has no output {missing[0]!r} (it has "
                                f"{', '.join(sorted(names)) or 'none'})")
        model = _with_nhwc_outputs(model, outputs)
        cfg: dict = {hints.performance_mode: (hints.PerformanceMode.THROUGHPUT
                                              if opts.hint == "throughput"
                                              else hints.PerformanceMode.LATENCY)}
        if opts.threads and device in ("CPU", "AUTO"):
            import openvino.properties as props

            cfg[props.inference_num_threads] = opts.threads
        if opts.precision == "fp32" and device in ("CPU", "AUTO"):
            # CPU plugin may otherwise pick bf16/fp16 on capable hardware: keep FP32 exact.
            cfg[hints.inference_precision] = ov.Type.f32
        if opts.precision == "fp16" and device == "CPU":
            # OpenVINO 2026.4 CPU: with FP16-compressed weights, fused "snippets" subgraphs gave
            # different outputs on repeated calls of the same input (depth error 0.0003 → 0.07
            # m); disabling snippets restores deterministic, FP32-close results (measured).
            cfg["SNIPPETS_MODE"] = "DISABLE"
        if cache_dir is not None:
            import openvino.properties as props

            cfg[props.cache_dir] = str(cache_dir)
        try:
            self.compiled = core.compile_model(model, device, cfg)
        except RuntimeError as e:
            raise ModelMismatch(f"{xml}: OpenVINO cannot compile it: {_first_line(e)}") from None
        self.request = self.compiled.create_infer_request()
        self.device, self.precision, self.outputs = device, opts.precision, outputs
        self.layouts = {n: "NHWC" for n in outputs}
        self._ports = [self.compiled.output(n) for n in outputs]
        # What the device really computes in ("f32", "bf16", …): FP32 IRs run in BF16 on BF16
        # CPUs unless told otherwise, so this, not the bundle's label, is what was measured.
        try:
            self.device_precision = self.compiled.get_property(
                hints.inference_precision).to_string()
        except RuntimeError:  # devices without the property
            self.device_precision = opts.precision

    def io(self) -> tuple[list, dict[str, list]]:
        """(input shape, {output: shape}) of the compiled model; ``"?"`` for dynamic dims."""
        def dims(ps) -> list:
            return [d.get_length() if d.is_static else "?" for d in ps]

        return (dims(self.compiled.input(0).get_partial_shape()),
                {n: dims(p.get_partial_shape()) for n, p in zip(self.outputs, self._ports)})

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        res = self.request.infer({0: batch})
        return {n: res[p] for n, p in zip(self.outputs, self._ports)}


class OpenVINOTarget:
    model_file = "model.xml"  # what the precision label and I/O checks read
    name = "openvino"
    precisions = ("fp32", "fp16", "int8")

    def available(self) -> tuple[bool, str]:
        try:
            import openvino  # noqa: F401
        except ImportError:
            return False, "openvino is not installed (pip install openvino)"
        return True, ""

    def runtime_version(self) -> str:
        import openvino

        return openvino.get_version()

    def compile(self, onnx_path: Path, out_dir: Path, opts: CompileOptions,
                outputs: list[str]) -> list[str]:
        ok, why = self.available()
        if not ok:
            raise TargetUnavailable(why)
        import openvino as ov

        if Path(onnx_path).suffix == ".xml":  # an already converted (e.g. NNCF INT8) IR
            model = ov.Core().read_model(str(onnx_path))
        else:
            model = ov.convert_model(str(onnx_path))
        ov.save_model(model, str(out_dir / "model.xml"),
                      compress_to_fp16=opts.precision == "fp16")
        return ["model.xml", "model.bin"]

    def load(self, bundle_dir: Path, manifest: dict, opts: CompileOptions) -> OpenVINORunner:
        ok, why = self.available()
        if not ok:
            raise TargetUnavailable(why)
        cache = opts.extra.get("cache_dir")
        return OpenVINORunner(bundle_dir / "model.xml", opts, manifest["outputs"],
                              Path(cache) if cache else None)
