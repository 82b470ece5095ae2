"""Two checkpoints (e.g. the previous and the new default variant) profiled in one run: eager
PyTorch, ONNX Runtime FP32, OpenVINO FP32 and OpenVINO INT8 bundles, compute latency at the
model's input size, 2 threads, batch 1, interleaved rounds (every bundle in every round).

On some virtual machines one loaded model runs at a stable but up to 1.8× slower rate than
another load of the same file (docs/design_sweep.md, "Run-to-run mode"): ``--instances N``
loads every bundle N times, times each load in the same rounds, and reports the median over
the loads with their range.

Prints per bundle the median ms, the ratio to the same model's eager FP32, the rate
(2·MACs / time) and its fraction of torch's SGEMM rate measured in the same run, and for
each runtime the new/old speed ratio.  The INT8 bundles are built by
:func:`mtlsi_edge.deploy.build_int8_bundle` (gated, as ``deploy`` ships them).

    python -m benchmarks.variant_profile --a old/starter.json --b mtlsi_edge/weights/starter.json
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from benchmarks.common import matmul_peak_gflops, timed_rounds
from mtlsi_edge.compiler import CompileRequest, compile_bundle, export_checkpoint
from mtlsi_edge.deploy import build_int8_bundle
from mtlsi_edge.machine import describe
from mtlsi_edge.quantize.run import QuantizeRequest
from mtlsi_edge.runtime.predictor import Predictor
from mtlsi_edge.targets import CompileOptions, get_target

FP32 = ("torch", "onnxruntime", "openvino")


def bundles(ckpt: Path, work: Path, threads: int) -> dict[str, Path]:
    """torch / onnxruntime / openvino FP32 and openvino INT8 bundles of ``ckpt``."""
    out, exported = {}, {}
    for target in FP32:  # one export per target, shared by its FP32 and INT8 bundles
        tgt = get_target(target)
        exported[target] = export_checkpoint(ckpt, tgt, work / f"{target}.fp32.onnx")
        out[f"{target} fp32"] = compile_bundle(work / f"{target}-fp32", CompileRequest(
            target, "fp32", exported=exported[target],
            options=CompileOptions(device=tgt.default_device, threads=threads)))
    ov = get_target("openvino")
    built = build_int8_bundle(exported["openvino"], ov, QuantizeRequest(n_calib=128),
                              work / "openvino-int8",
                              work, log=lambda _m: None)
    if built.bundle is not None:
        out["openvino int8"] = built.bundle
    else:
        print(f"{ckpt}: openvino INT8 refused: {built.failed}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", required=True, help="the old checkpoint")
    ap.add_argument("--b", required=True, help="the new checkpoint")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--instances", type=int, default=1, help="loads of each bundle")
    a = ap.parse_args()
    if a.instances < 1:
        raise SystemExit("--instances must be ≥ 1")
    peak = matmul_peak_gflops(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        preds, gmacs = {}, {}
        for tag, ck in (("old", a.a), ("new", a.b)):
            for name, b in bundles(Path(ck), Path(tmp) / tag, a.threads).items():
                for i in range(a.instances):
                    p = Predictor.from_bundle(b, threads=a.threads)
                    preds[(f"{tag} {name}", i)] = p
                    gmacs[tag] = p.manifest["complexity"]["gmacs"]
        per_load = timed_rounds({k: (lambda p=p, x=p.sample_input(): p.runner(x))
                                 for k, p in preds.items()}, a.runs, a.rounds)
    loads: dict[str, list[float]] = {}
    for (k, _), v in per_load.items():
        loads.setdefault(k, []).append(v)
    ms = {k: statistics.median(v) for k, v in loads.items()}
    print(f"\n{describe()}; {a.threads} threads; torch SGEMM {peak:.0f} GFLOP/s; "
          f"{a.rounds} interleaved rounds of {a.runs} runs; compute median"
          + (f" over {a.instances} loads of each bundle (range: "
             + "; ".join(f"{k} {min(v):.2f}–{max(v):.2f}" for k, v in loads.items()) + ")"
             if a.instances > 1 else "") + "\n")
    print("| model | bundle | GMACs | ms | × eager | GFLOP/s | % GEMM peak |")
    print("|---|---|---|---|---|---|---|")
    for k, v in ms.items():
        tag, name = k.split(" ", 1)
        rate = 2 * gmacs[tag] / (v / 1e3)
        print(f"| {tag} | {name} | {gmacs[tag]:.3f} | {v:.2f} | "
              f"{ms[f'{tag} torch fp32'] / v:.2f} | {rate:.0f} | {100 * rate / peak:.0f} |")
    print("\n| bundle | old ms | new ms | new speed-up |\n|---|---|---|---|")
    for name in [*(f"{t} fp32" for t in FP32), "openvino int8"]:
        if f"old {name}" in ms and f"new {name}" in ms:
            o, n = ms[f"old {name}"], ms[f"new {name}"]
            print(f"| {name} | {o:.2f} | {n:.2f} | {o / n:.2f}× |")
    for tag in ("old", "new"):
        if f"{tag} openvino int8" in ms:
            print(f"\n{tag}: OpenVINO INT8 / FP32 speed-up "
                  f"{ms[f'{tag} openvino fp32'] / ms[f'{tag} openvino int8']:.2f}×")


if __name__ == "__main__":
    main()
