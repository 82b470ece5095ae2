"""Cross-check the profiler against OpenVINO's own ``benchmark_app`` on the same IR.

Runs ``benchmark_app -m model.xml -d CPU -hint latency -t SECONDS -api sync`` (shipped with
the ``openvino`` pip package as a console script) with the thread count given through
``-load_config`` (``{"CPU": {"INFERENCE_NUM_THREADS": N}}``) — benchmark_app refuses
``-nthreads`` unless ``-hint none`` ("a benchmark_app UI rule"), and we want the LATENCY hint
on both sides — and parses its ``Median:`` latency; then measures the profiler's compute-only
median (``profile_bundle(..., ProfileOptions(e2e=False))``) on the same bundle with the same
thread count and LATENCY hint.  Prints both and their ratio; exits 1 when they differ by more
than ``--tolerance`` (default 10 %).

Without a path, a random-weight ``edge-effvit-b0`` checkpoint is made and compiled to an
OpenVINO FP32 bundle in a temporary folder (or ``--keep DIR``).

    python benchmarks/benchmark_app_compare.py [BUNDLE | model.xml] [--threads 2] [--time 10]

Known, legitimate differences: our runner declares outputs NHWC (``PrePostProcessor``, as the
Predictor wants them) and copies the input in and outputs out through Python on every call;
``benchmark_app`` keeps the IR's NCHW outputs and reuses its own tensors.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

MEDIAN = re.compile(r"Median:\s+([0-9.]+)\s*(ms|us)")


def make_bundle(root: Path) -> Path:
    """A random-weight edge-effvit-b0 checkpoint compiled to an OpenVINO FP32 bundle."""
    import torch

    from mtlsi_edge.compiler import CompileRequest, compile_bundle
    from mtlsi_edge.model import create_model
    from mtlsi_edge.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = create_model("edge-effvit-b0").eval()
    ckpt = save_checkpoint(root / "random-b0", model, {
        "model_config": model.cfg.to_dict(), "task_set": model.task_set.to_dict(),
        "variant": "edge-effvit-b0"})
    return compile_bundle(root / "openvino-fp32", CompileRequest("openvino", "fp32",
                                                                 checkpoint=ckpt))


def benchmark_app_median_ms(xml: Path, threads: int, seconds: float,
                            precision: str = "fp32") -> tuple[float, str]:
    """Run benchmark_app (sync API, LATENCY hint); returns (median ms, full output)."""
    exe = Path(sys.executable).with_name("benchmark_app")
    if not exe.exists():
        found = shutil.which("benchmark_app")
        if not found:
            raise SystemExit("benchmark_app not found (it ships with `pip install openvino`)")
        exe = Path(found)
    with tempfile.TemporaryDirectory(prefix="bench-app-cfg-") as tmp:
        cfg = Path(tmp) / "config.json"
        cfg.write_text(json.dumps({"CPU": {"INFERENCE_NUM_THREADS": str(threads)}}))
        cmd = [str(exe), "-m", str(xml), "-d", "CPU", "-hint", "latency", "-load_config",
               str(cfg), "-t", str(int(round(seconds))), "-api", "sync"]
        if precision == "fp32":
            cmd += ["-infer_precision", "f32"]  # as our runner: FP32 exact on the CPU plugin
        print("$", " ".join(cmd), f"  # config: {cfg.read_text()}", flush=True)
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    out = res.stdout + res.stderr
    if res.returncode != 0:
        raise SystemExit(f"benchmark_app failed (exit {res.returncode}):\n{out[-2000:]}")
    m = MEDIAN.search(out)
    if not m:
        raise SystemExit(f"no 'Median:' line in benchmark_app output:\n{out[-2000:]}")
    for key in ("INFERENCE_NUM_THREADS", "PERFORMANCE_HINT", "NUM_STREAMS", "Count:"):
        line = next((ln.strip() for ln in out.splitlines() if key in ln), None)
        if line:
            print(f"  benchmark_app: {line}")
    value = float(m.group(1))
    return (value / 1000 if m.group(2) == "us" else value), out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("path", nargs="?", help="OpenVINO bundle folder or its model.xml")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--time", type=float, default=10.0, help="seconds per tool (default 10)")
    ap.add_argument("--tolerance", type=float, default=0.10)
    ap.add_argument("--keep", type=Path, help="build the random-weight bundle here and keep it")
    args = ap.parse_args(argv)

    from mtlsi_edge.bundle import load_bundle
    from mtlsi_edge.profiler.bench import ProfileOptions, profile_bundle

    tmp = None
    try:
        if args.path:
            p = Path(args.path)
            folder = p.parent if p.suffix == ".xml" else p
        else:
            root = args.keep or Path(tempfile.mkdtemp(prefix="bench-app-compare-"))
            tmp = None if args.keep else root
            root.mkdir(parents=True, exist_ok=True)
            print(f"compiling a random-weight edge-effvit-b0 OpenVINO bundle in {root} …",
                  flush=True)
            folder = make_bundle(root)
        manifest, folder = load_bundle(folder)
        if manifest["target"] != "openvino":
            raise SystemExit(f"{folder}: an OpenVINO bundle is needed, got {manifest['target']}")
        h, w = manifest["input"]["size"]
        print(f"bundle {folder} ({manifest['model'].get('variant')}, {h}×{w}, "
              f"{manifest['precision']}), threads {args.threads}, {args.time:g} s each")

        ref, _ = benchmark_app_median_ms(folder / "model.xml", args.threads, args.time,
                                         manifest["precision"])
        row = profile_bundle(folder, ProfileOptions(threads=args.threads, mode="latency",
                                                    time_s=args.time, e2e=False))
        ours = row["compute"]["median_ms"]
        ratio = ours / ref
        print(f"benchmark_app median : {ref:8.3f} ms")
        print(f"profiler median      : {ours:8.3f} ms  (compute-only, n={row['compute']['n']},"
              f" p90 {row['compute']['p90_ms']:.3f}, p99 {row['compute']['p99_ms']:.3f})")
        print(f"ratio profiler / benchmark_app: {ratio:.3f}  "
              f"(tolerance ±{100 * args.tolerance:.0f} %)")
        ok = abs(ratio - 1) <= args.tolerance
        print("OK" if ok else "MISMATCH: the two measurements differ by more than the tolerance")
        return 0 if ok else 1
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
