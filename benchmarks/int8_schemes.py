"""Which INT8 scheme is accurate and fastest, per runtime (one run, one machine).

    python -m benchmarks.int8_schemes [--checkpoint C] [--targets openvino,onnxruntime]

For each target's INT8 format (OpenVINO IR, ONNX Runtime Q/DQ), every scheme in
:data:`SCHEMES` is built as ``deploy`` builds INT8 — :func:`mtlsi_edge.deploy.build_int8_bundle`,
quantised with those NNCF settings and gated against the eager model — and every bundle that
passes its gate is timed against the same target's FP32 bundle (compute only, 2 threads,
interleaved rounds over all bundles).  Prints the table and, per runtime, the fastest scheme
that passes; the CPU flags decide the answer (VNNI or not).

The schemes vary one setting of :class:`~mtlsi_edge.quantize.ptq.PtqSettings` at a time from
the default (what ``deploy`` uses): which MatMuls are quantised (the activation × activation
attention products, the linear-attention normalisation), per-channel or per-tensor weights,
SmoothQuant (``transformer``) and symmetric or asymmetric activations.  Mixed precision by
measured sensitivity is ``deploy --max-drop`` (NNCF accuracy control): it needs labelled data
and is measured in docs/benchmarks.md, not here.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

from benchmarks.common import timed_rounds
from mtlsi_edge.compiler import CompileRequest, compile_bundle, export_checkpoint
from mtlsi_edge.deploy import build_int8_bundle
from mtlsi_edge.machine import describe
from mtlsi_edge.quantize.ptq import PtqSettings
from mtlsi_edge.quantize.run import QuantizeError, QuantizeRequest
from mtlsi_edge.runtime.predictor import Predictor
from mtlsi_edge.targets import CompileOptions, get_target
from mtlsi_edge.weights import starter_checkpoint

SCHEMES: dict[str, tuple[PtqSettings, str]] = {
    "default": (PtqSettings(), "deploy's: attention products and attention norm in float, "
                               "per-channel weights, SmoothQuant, symmetric"),
    "act-int8": (PtqSettings(act_matmuls="int8"), "attention products INT8 too"),
    "norm-int8": (PtqSettings(ignore="none"), "linear-attention normalisation INT8 too"),
    "all-int8": (PtqSettings(ignore="none", act_matmuls="int8"), "every MatMul INT8"),
    "attention-float": (PtqSettings(ignore="attention"),
                        "MT-MQLFB entirely and every attention MatMul in float"),
    "per-tensor": (PtqSettings(per_channel_weights=False), "one scale per weight tensor"),
    "no-smoothquant": (PtqSettings(transformer=False), "NNCF's default model type"),
    "asymmetric": (PtqSettings(preset="mixed"), "asymmetric activations (mixed preset)"),
}


def build(ckpt: Path, target: str, work: Path, n_calib: int, threads: int, schemes: list[str]
          ) -> tuple[dict[str, Path], dict[str, str]]:
    """The FP32 bundle and one INT8 bundle per scheme of ``target``; returns the bundles
    that passed their gate and, per scheme, the verdict."""
    tgt = get_target(target)
    exp = export_checkpoint(ckpt, tgt, work / f"{target}.onnx")
    opts = CompileOptions(device=tgt.default_device, threads=threads)
    out = {"fp32": compile_bundle(work / f"{target}-fp32",
                                  CompileRequest(target, "fp32", exported=exp, options=opts))}
    verdicts = {}
    for name in schemes:
        settings, _ = SCHEMES[name]
        try:
            built = build_int8_bundle(exp, tgt,
                                      QuantizeRequest(n_calib=n_calib, settings=settings),
                                      work / f"{target}-{name}", work, log=lambda _m: None,
                                      options=opts)
        except QuantizeError as e:  # e.g. asymmetric activations under TensorRT's rules
            verdicts[name] = f"not allowed: {e}"
            continue
        if built.bundle is None:
            verdicts[name] = built.failed or "no bundle"
            continue
        rows = {r["task"]: r for r in built.gate["rows"]}
        verdicts[name] = "pass (" + ", ".join(
            f"{t} {r['value']:.3g}{r['unit']}" for t, r in rows.items()) + ")"
        out[name] = built.bundle
    return out, verdicts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=str(starter_checkpoint()))
    ap.add_argument("--targets", default="openvino,onnxruntime")
    ap.add_argument("--schemes", default=",".join(SCHEMES))
    ap.add_argument("--n-calib", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=30)
    a = ap.parse_args()
    schemes = [s for s in a.schemes.split(",") if s]
    unknown = set(schemes) - set(SCHEMES)
    if unknown:
        raise SystemExit(f"unknown schemes: {', '.join(sorted(unknown))}; known: "
                         f"{', '.join(SCHEMES)}")
    targets = [t for t in a.targets.split(",") if t]
    with tempfile.TemporaryDirectory() as tmp:
        preds, verdicts = {}, {}
        for target in targets:
            bundles, verdicts[target] = build(Path(a.checkpoint), target, Path(tmp) / target,
                                              a.n_calib, a.threads, schemes)
            for name, b in bundles.items():
                preds[f"{target}|{name}"] = Predictor.from_bundle(b, threads=a.threads)
        ms = timed_rounds({k: (lambda p=p, x=p.sample_input(): p.runner(x))
                           for k, p in preds.items()}, a.runs, a.rounds)
    print(f"\n{describe()}; checkpoint {a.checkpoint}; {a.threads} threads; {a.n_calib} "
          f"calibration renders; {a.rounds} interleaved rounds of {a.runs} runs; compute "
          "median\n")
    print("| runtime | scheme | what | gate | ms | × FP32 |\n|---|---|---|---|---|---|")
    for target in targets:
        fp32 = ms[f"{target}|fp32"]
        print(f"| {target} | fp32 | the FP32 bundle | (reference) | {fp32:.2f} | 1.00 |")
        for name in schemes:
            t = ms.get(f"{target}|{name}")
            cols = f"{t:.2f} | {fp32 / t:.2f}" if t else "– | –"
            print(f"| {target} | {name} | {SCHEMES[name][1]} | {verdicts[target][name]} | "
                  f"{cols} |")
    print()
    for target in targets:
        passing = {n: ms[f"{target}|{n}"] for n in schemes if f"{target}|{n}" in ms}
        if not passing:
            print(f"{target}: no scheme passes its gate; FP32 it is")
            continue
        best = min(passing, key=passing.get)
        fp32 = ms[f"{target}|fp32"]
        verdict = "INT8 wins" if passing[best] < fp32 else "FP32 wins: INT8 does not pay here"
        print(f"{target}: fastest passing scheme {best!r} {passing[best]:.2f} ms, "
              f"{fp32 / passing[best]:.2f}× FP32 ({verdict}); settings "
              f"{dataclasses.asdict(SCHEMES[best][0])}")


if __name__ == "__main__":
    main()
