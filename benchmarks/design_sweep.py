"""Design sweep of the edge model's shape: MACs, parameters and compute latency per point.

For each design point (a variant plus :class:`MTLSIConfig` overrides) this builds the model
(random weights: latency does not depend on them), exports its deploy graph (task-batched) to
ONNX at each input size, and times it in OpenVINO FP32 and ONNX Runtime FP32, 2 threads,
batch 1, in interleaved rounds (every point in every round, so machine drift hits all alike).
``--int8 NAME…`` also quantises those points with NNCF (the deploy settings: performance
preset, attention-norm ignored scope, act×act MatMuls in float) on rendered frames and times
the INT8 IR.  The fraction of GEMM peak is the point's OpenVINO FP32 rate (2·MACs / time)
over torch's 2-thread SGEMM rate measured in the same run.

    python -m benchmarks.design_sweep                       # every point, 240×320 + 480×640
    python -m benchmarks.design_sweep --points base,w8 --sizes 240x320 --int8 base,w8

Prints a markdown table; ``--json PATH`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from benchmarks.common import machine, matmul_peak_gflops, timed_rounds
from mtlsi_edge.machine import cpu_flags

# Each point: (name, variant, overrides, what it tests).  Pruned by measurement: see
# docs/design_sweep.md for the rounds that led to this list.
POINTS: list[tuple[str, str, dict, str]] = [
    ("base", "edge-effvit-b0", {}, "today's default: C=48, 4 heads (d=12), window 10"),
    ("h2", "edge-effvit-b0", {"heads": 2}, "C=48, 2 heads (d=24)"),
    ("h1", "edge-effvit-b0", {"heads": 1}, "C=48, 1 head (d=48)"),
    ("c32h2", "edge-effvit-b0", {"dim": 32, "heads": 2}, "C=32, 2 heads (d=16)"),
    ("c32h1", "edge-effvit-b0", {"dim": 32, "heads": 1}, "C=32, 1 head (d=32)"),
    ("c64h2", "edge-effvit-b0", {"dim": 64, "heads": 2}, "C=64, 2 heads (d=32)"),
    ("w5", "edge-effvit-b0", {"heads": 2, "window": 5}, "C=48, d=24, window 5"),
    ("w15", "edge-effvit-b0", {"heads": 2, "window": 15}, "C=48, d=24, window 15"),
    ("w8", "edge-effvit-b0", {"heads": 2, "window": 8}, "C=48, d=24, window 8 (pads 30×40)"),
    ("m32", "edge-effvit-b0", {"heads": 2, "num_tokens": 32}, "C=48, d=24, M=32 tokens"),
    ("ffn1", "edge-effvit-b0", {"heads": 2, "ffn_ratio": 1.0}, "C=48, d=24, FFN ratio 1"),
    ("nocwib", "edge-effvit-b0", {"heads": 2, "cwib_depths": (0, 0)},
     "C=48, d=24, no CWIB (decoders without window attention)"),
    ("nofuse", "edge-effvit-b0", {"heads": 2, "fusion_blocks": 0}, "C=48, d=24, no MT-MQLFB"),
    ("h1f1m32", "edge-effvit-b0", {"heads": 1, "ffn_ratio": 1.0, "num_tokens": 32},
     "C=48, d=48, FFN 1, M=32"),
    ("c32h1f1", "edge-effvit-b0", {"dim": 32, "heads": 1, "ffn_ratio": 1.0}, "C=32, d=32, FFN 1"),
    ("c32h1m32", "edge-effvit-b0", {"dim": 32, "heads": 1, "num_tokens": 32},
     "C=32, d=32, M=32"),
    ("c32h1f1m32", "edge-effvit-b0", {"dim": 32, "heads": 1, "ffn_ratio": 1.0, "num_tokens": 32},
     "C=32, d=32, FFN 1, M=32"),
    ("mnv4", "edge-effvit-b0", {"backbone": "mobilenetv4_conv_small", "heads": 1},
     "MobileNetV4-conv-S backbone, C=48, d=48"),
    ("mnv4c32", "edge-effvit-b0", {"backbone": "mobilenetv4_conv_small", "dim": 32, "heads": 1},
     "MobileNetV4-conv-S backbone, C=32, d=32"),
    ("mnv4c32w5", "edge-effvit-b0", {"backbone": "mobilenetv4_conv_small", "dim": 32, "heads": 1,
                                     "window": 5}, "MobileNetV4-conv-S, C=32, d=32, window 5"),
    ("c16h1", "edge-effvit-b0", {"heads": 1, "window": 5, "cwib_depth16": 1, "cwib_depths": (0, 0)},
     "C=48, d=48, CWIB at 1/16 (window 5) instead of 1/8"),
    ("c16h2", "edge-effvit-b0-cwib16", {}, "C=48, d=24, CWIB at 1/16 (window 5)"),
    ("c16c64h2", "edge-effvit-b0", {"dim": 64, "heads": 2, "window": 5, "cwib_depth16": 1,
                                    "cwib_depths": (0, 0)}, "C=64, d=32, CWIB at 1/16 (window 5)"),
    ("c16x2", "edge-effvit-b0", {"heads": 2, "window": 5, "cwib_depth16": 2, "cwib_depths": (0, 0)},
     "C=48, d=24, two CWIBs at 1/16 (window 5)"),
    ("c16mnv4", "edge-effvit-b0", {"backbone": "mobilenetv4_conv_small", "heads": 2, "window": 5,
                                   "cwib_depth16": 1, "cwib_depths": (0, 0)},
     "MobileNetV4-conv-S, C=48, d=24, CWIB at 1/16"),
    ("c16h2pw1", "edge-effvit-b0-cwib16", {"pointwise_merges": 1},
     "C=48, d=24, CWIB at 1/16, pointwise 1×1 after the 1/8 merge"),
    ("c16h2pw2", "edge-effvit-b0-v2", {},
     "C=48, d=24, CWIB at 1/16, pointwise 1×1 after the 1/8 and 1/4 merges"),
]


def _model(variant: str, overrides: dict, size: tuple[int, int]):
    import torch

    from mtlsi_edge.model import create_model

    torch.manual_seed(0)
    m = create_model(variant, input_size=size, **overrides).eval()
    m.use_graph("batched")
    return m


def _frames(size: tuple[int, int], n: int) -> list:
    """``n`` calibration renders at ``size``, preprocessed (the calibration set's items)."""
    from mtlsi_edge.calibration.sources import build_calibration_set

    return build_calibration_set("synth", n, size).items()


def _runners(onnx_path: Path, int8: bool, size, threads: int) -> dict:
    import onnxruntime as ort
    import openvino as ov
    import openvino.properties as props
    import openvino.properties.hint as hints

    core = ov.Core()
    cfg = {hints.performance_mode: hints.PerformanceMode.LATENCY,
           props.inference_num_threads: threads}
    fp32 = core.compile_model(str(onnx_path), "CPU",
                              {**cfg, hints.inference_precision: ov.Type.f32})
    x = _frames(size, 1)[0]
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    fns = {"ov_fp32": lambda r=fp32.create_infer_request(): r.infer([x]),
           "ort_fp32": lambda: sess.run(None, {name: x})}
    if int8:
        from mtlsi_edge.quantize.ptq import PtqSettings, quantize_model
        from mtlsi_edge.targets import get_target

        q, _ = quantize_model(ov.convert_model(str(onnx_path)), _frames(size, 32),
                              get_target("openvino").int8, PtqSettings(subset_size=32))
        qc = core.compile_model(q, "CPU", cfg)
        fns["ov_int8"] = lambda r=qc.create_infer_request(): r.infer([x])
    return fns


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", default="", help="comma-separated point names (default all)")
    ap.add_argument("--sizes", default="240x320,480x640")
    ap.add_argument("--int8", default="", help="points to also quantise and time in INT8")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    import torch

    from mtlsi_edge.export import export_onnx
    from mtlsi_edge.model.complexity import model_report

    torch.set_num_threads(a.threads)
    want = [p for p in a.points.split(",") if p]
    points = [p for p in POINTS if not want or p[0] in want]
    unknown = set(want) - {p[0] for p in POINTS}
    if unknown:
        raise SystemExit(f"unknown points: {', '.join(sorted(unknown))}")
    int8 = {p for p in a.int8.split(",") if p}
    sizes = [tuple(int(v) for v in s.split("x")) for s in a.sizes.split(",")]
    peak = matmul_peak_gflops(a.threads)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        fns: dict[str, object] = {}
        for name, variant, over, what in points:
            for size in sizes:
                m = _model(variant, over, size)
                rep = model_report(m, size)
                path = export_onnx(m, Path(tmp) / f"{name}-{size[0]}.onnx", stride=4)
                for k, fn in _runners(path, name in int8, size, a.threads).items():
                    fns[f"{name}|{size[0]}x{size[1]}|{k}"] = fn
                rows.append({"point": name, "what": what, "size": f"{size[0]}x{size[1]}",
                             "params_m": rep["params"] / 1e6, "gmacs": rep["gmacs"]})
                print(f"built {name} {size}: {rep['gmacs']:.3f} GMACs", flush=True)
        ms = timed_rounds(fns, runs=a.runs, rounds=a.rounds)
    for r in rows:
        for k in ("ov_fp32", "ort_fp32", "ov_int8"):
            r[k] = ms.get(f"{r['point']}|{r['size']}|{k}")
        r["peak_pct"] = 100 * 2 * r["gmacs"] / (r["ov_fp32"] / 1e3) / peak
    base = {r["size"]: r["ov_fp32"] for r in rows if r["point"] == points[0][0]}
    print(f"\n{machine()}; CPU flags: {cpu_flags()}; {a.threads} threads; torch SGEMM "
          f"{peak:.0f} GFLOP/s; {a.rounds} interleaved rounds of {a.runs} runs, median ms\n")
    print("| point | shape | size | params M | GMACs | OV FP32 ms | × base | % GEMM peak "
          "| ORT FP32 ms | OV INT8 ms | INT8 × FP32 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        i8 = f"{r['ov_int8']:.2f}" if r["ov_int8"] else ""
        x8 = f"{r['ov_fp32'] / r['ov_int8']:.2f}" if r["ov_int8"] else ""
        print(f"| {r['point']} | {r['what']} | {r['size']} | {r['params_m']:.2f} | "
              f"{r['gmacs']:.3f} | {r['ov_fp32']:.2f} | {base[r['size']] / r['ov_fp32']:.2f} | "
              f"{r['peak_pct']:.0f} | {r['ort_fp32']:.2f} | {i8} | {x8} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": machine(), "cpu_flags": cpu_flags(),
                                            "gemm_gflops": peak, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
