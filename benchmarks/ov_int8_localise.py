"""Localise OpenVINO INT8 failures on this CPU: which ops give a different result per
``compile_model``, and how the whole model scores against FP32, with the activation ×
activation MatMuls in INT8 (``--act-matmuls int8``) and in float (the default).

    python -m benchmarks.ov_int8_localise [--n-calib 64]

Every MatMul of the quantised IR is made a model output; the same IR is compiled twice and
run on one held-out frame; a MatMul whose two compilations disagree is printed with whether
its inputs are both activations.  Writes nothing but stdout (docs/known-issues.md quotes it).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import machine
from mtlsi_edge.machine import cpu_flags


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-calib", type=int, default=64)
    args = ap.parse_args()
    import openvino as ov

    from mtlsi_edge.data.seeds import gate_frames
    from mtlsi_edge.quantize.formats import FORMATS
    from mtlsi_edge.quantize.ptq import PtqSettings
    from mtlsi_edge.quantize.run import QuantizeRequest, run_quantize
    from mtlsi_edge.runtime.predictor import preprocess_frame
    from mtlsi_edge.weights import starter_checkpoint

    print(f"machine: {machine()}; CPU flags: {cpu_flags()}; OpenVINO {ov.get_version()}")
    tmp = Path(tempfile.mkdtemp())
    ckpt = starter_checkpoint()
    frame = gate_frames((240, 320), 1)[0]
    x = preprocess_frame(frame, (240, 320))[0]
    core = ov.Core()
    for mode in ("int8", "float"):
        res = run_quantize(ckpt, QuantizeRequest(n_calib=args.n_calib, force=True,
                                                 settings=PtqSettings(act_matmuls=mode)),
                           tmp / f"q-{mode}")
        gate = res.info["gate"]
        print(f"\n== activation x activation MatMuls in {mode}: gate "
              f"{'pass' if gate['passed'] else 'FAIL'}: " + ", ".join(
                  f"{r['task']} {r['value']:.4g}{r['unit']}" for r in gate["rows"]))
        fp32 = core.read_model(str(tmp / f"q-{mode}.fp32.onnx"))
        act = set(FORMATS["openvino"].activation_matmuls(fp32))
        outs = []
        for _ in range(2):
            m = core.read_model(str(res.path))
            mm = [op for op in m.get_ops() if op.get_type_name() == "MatMul"]
            m.add_outputs([op.output(0) for op in mm])
            c = core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
            r = c({0: x})
            outs.append({op.get_friendly_name(): r[c.outputs[len(c.outputs) - len(mm) + i]]
                         for i, op in enumerate(mm)})
        def rel(a: np.ndarray, b: np.ndarray) -> str:
            if not (np.isfinite(a).all() and np.isfinite(b).all()):
                return "non-finite values"
            return f"rel diff {np.abs(a - b).max() / (np.abs(a).max() + 1e-12):.3g}"

        # get_ops() is in topological order: the first op that differs is where it starts.
        differ = [n for n in outs[0] if not np.array_equal(outs[0][n], outs[1][n])]
        print(f"MatMuls: {len(outs[0])}; differ between two compilations: {len(differ)} "
              f"({sum(n in act for n in differ)} of them activation x activation); the first:")
        for n in differ[:8]:
            print(f"  {'act x act' if n in act else 'weights  '}  {rel(outs[0][n], outs[1][n])}"
                  f"  {n}")


if __name__ == "__main__":
    main()
