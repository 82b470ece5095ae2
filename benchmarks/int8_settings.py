"""OpenVINO INT8 vs FP32 compute latency under several NNCF settings (one run).

    python -m benchmarks.int8_settings

Needs runs/bench/quantize/q-openvino.fp32.onnx (written by benchmarks.quantize_report).
"""

from __future__ import annotations

import openvino as ov

from benchmarks.common import median_ms
from mtlsi_edge.quantize.ptq import PtqSettings, quantize_model
from mtlsi_edge.quantize.run import load_or_build_calibration
from mtlsi_edge.targets import get_target

SETTINGS = [  # (model_type transformer, ignored-scope preset)
    (True, "attention-norm"), (True, "none"), (False, "none"), (True, "attention"),
    (False, "attention"),
]


def main(src: str = "runs/bench/quantize/q-openvino.fp32.onnx") -> None:
    cs = load_or_build_calibration("synth", 64, (240, 320))
    core = ov.Core()
    cfg = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
           "INFERENCE_NUM_THREADS": 2}
    x = cs.items()[0]
    req = core.compile_model(ov.convert_model(src), "CPU", cfg).create_infer_request()
    print(f"fp32: {median_ms(lambda: req.infer({0: x}), 60):.2f} ms")
    for transformer, ignore in SETTINGS:
        q, info = quantize_model(ov.convert_model(src), cs.items(),
                                 get_target("openvino").int8,
                                 PtqSettings(ignore=ignore, transformer=transformer))
        r = core.compile_model(q, "CPU", cfg).create_infer_request()
        print(f"int8 transformer={transformer} ignore={ignore} "
              f"({len(info['ignored_nodes'])} nodes float): "
              f"{median_ms(lambda r=r: r.infer({0: x}), 60):.2f} ms")


if __name__ == "__main__":
    main()
