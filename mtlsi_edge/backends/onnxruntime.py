"""ONNX Runtime backend: runs a bundle's ``model.onnx`` in an ``InferenceSession`` (CPU
provider; CUDA / TensorRT providers when the build has them).

Session options fix the thread count and enable all graph optimisations.  Note: on CPUs
without VNNI, QDQ INT8 is slower than FP32 (docs/design.md, 'Lessons measured on the build
machine').  Compilation (frame I/O folded into the ONNX graph) is the build half's
:mod:`mtlsi_edge.targets.onnxruntime`.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import threading
from pathlib import Path

import numpy as np

from mtlsi_edge.backends.base import (
    Backend,
    LayerTime,
    ModelMismatch,
    RunOptions,
    TargetUnavailable,
    import_problem,
    require_outputs,
)
from mtlsi_edge.timing import DEFAULT_TIME_S, WARMUP_RUNS, clock, warmup

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


class ORTRunner:
    """Runs an ONNX file in an ``onnxruntime.InferenceSession``."""

    name = "onnxruntime"

    def __init__(self, onnx_path: Path, opts: RunOptions, outputs: list[str]):
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
        require_outputs(onnx_path, [o.name for o in self.session.get_outputs()], outputs)

    def io(self) -> tuple[list, dict[str, list]]:
        """(input shape, {output: shape}); symbolic dims are ``"?"``."""
        def dims(shape) -> list:
            return [d if isinstance(d, int) else "?" for d in shape]

        outs = {o.name: dims(o.shape) for o in self.session.get_outputs()}
        return dims(self.session.get_inputs()[0].shape), {n: outs[n] for n in self.outputs}

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        res = self.session.run(self.outputs, {self.input_name: batch})
        return dict(zip(self.outputs, res))


class ONNXRuntimeBackend(Backend):
    """A bundle's ONNX (FP32 or QDQ INT8) → ``onnxruntime.InferenceSession``."""

    model_file = "model.onnx"  # what the precision label and I/O checks read
    frame_io = True  # bundles take uint8 BGR frames and emit labels (with_frame_io)
    name = "onnxruntime"
    precisions = ("fp32", "int8")
    default_device = "cpu"
    per_layer_source = "onnxruntime profiler (Node kernel_time events)"

    def available(self) -> tuple[bool, str]:
        why = import_problem("onnxruntime")
        return (False, why) if why else (True, "")

    def runtime_version(self) -> str:
        import onnxruntime

        return onnxruntime.__version__

    def load(self, bundle_dir: Path, manifest: dict, opts: RunOptions) -> ORTRunner:
        ok, why = self.available()
        if not ok:
            raise TargetUnavailable(why)
        return ORTRunner(bundle_dir / "model.onnx", opts, manifest["outputs"])

    # -- optional hooks ---------------------------------------------------------------------
    def per_layer(self, bundle_dir: Path, manifest: dict, opts: RunOptions,
                  batch: np.ndarray, iterations: int) -> list[LayerTime]:
        """ONNX Runtime's own profiler (``SessionOptions.enable_profiling``) on a session made
        by :meth:`load` with the timed session's options plus the profile file prefix; only
        the node events of the last ``iterations`` runs are kept (the warm-up is in the same
        trace)."""
        with tempfile.TemporaryDirectory(prefix="mtlsi-ortprof-") as tmp:
            prof = dataclasses.replace(
                opts, extra={**opts.extra, "profile_prefix": str(Path(tmp) / "ort")})
            runner = self.load(bundle_dir, manifest, prof)
            for _ in range(WARMUP_RUNS):
                runner(batch)
            for _ in range(iterations):
                runner(batch)
            trace = runner.session.end_profiling()
            events = json.loads(Path(trace).read_text())
        acc = parse_ort_profile(events, last_runs=iterations)
        return [LayerTime(node, kind, ms) for node, (kind, ms) in acc.items()]

    def throughput(self, bundle_dir: Path, manifest: dict, opts: RunOptions,
                   batch: np.ndarray, time_s: float | None, runs: int | None) -> dict:
        """``opts.threads`` (default: the logical core count) concurrent sessions × 1 intra-op
        thread, each in its own Python thread, started together once every one is warm."""
        import psutil

        workers = opts.threads or psutil.cpu_count(logical=True) or 1
        one = dataclasses.replace(opts, threads=1)
        runners = [self.load(bundle_dir, manifest, one) for _ in range(workers)]
        if runs is None and time_s is None:
            time_s = DEFAULT_TIME_S
        t_stop = [0.0, 0.0]  # [start, stop], set by the barrier when every worker is warm

        def go() -> None:
            t_stop[0] = clock()
            t_stop[1] = t_stop[0] + (time_s or 0.0)

        start = threading.Barrier(workers + 1, action=go)
        lock = threading.Lock()
        left = [runs if runs is not None else -1]
        lat: list[list[float]] = [[] for _ in range(workers)]
        errors: list[BaseException] = []

        def work(i: int) -> None:
            try:
                r = runners[i]
                warmup(lambda: r(batch))
                start.wait()
                while True:
                    if runs is not None:
                        with lock:
                            if left[0] <= 0:
                                return
                            left[0] -= 1
                    elif clock() >= t_stop[1]:
                        return
                    t = clock()
                    r(batch)
                    lat[i].append(clock() - t)
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller
                errors.append(e)
                start.abort()

        pool = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(workers)]
        for th in pool:
            th.start()
        try:
            start.wait()
        except threading.BrokenBarrierError:
            pass
        for th in pool:
            th.join()
        wall = clock() - t_stop[0]
        if errors:
            raise errors[0]
        done = [t for per in lat for t in per]
        return {"fps": len(done) / wall, "frames": len(done), "wall_s": wall,
                "parallel": workers, "streams": workers, "latencies_s": done,
                "how": f"ONNX Runtime: {workers} concurrent sessions × 1 intra-op thread"}


def parse_ort_profile(events: list[dict], last_runs: int | None = None) -> dict:
    """Per-node kernel time (ms, summed) from an ONNX Runtime profile; only the last runs.

    ``events``: the Chrome-trace JSON list ``InferenceSession.end_profiling()`` writes; its
    ``cat == "Node"`` events carry ``name`` (``<node>_kernel_time``), ``dur`` (µs), ``ts``
    (µs) and ``args.op_name``; ``cat == "Session"`` events named ``model_run`` delimit each
    run.  Returns ``{node_name: (op_name, ms)}``.  ``last_runs`` keeps the node events of the
    last ``model_run`` spans only (warm-up runs are in the same trace).
    """
    cutoff = -1
    if last_runs:
        starts = sorted(e["ts"] for e in events
                        if e.get("cat") == "Session" and e.get("name") == "model_run")
        if len(starts) >= last_runs:
            cutoff = starts[-last_runs]
    acc: dict[str, tuple[str, float]] = {}
    for e in events:
        if e.get("cat") != "Node" or e.get("ts", 0) < cutoff:
            continue
        name = e.get("name", "")
        if not name.endswith("_kernel_time"):
            continue  # _fence_before / _fence_after markers
        node = name[: -len("_kernel_time")]
        kind = e.get("args", {}).get("op_name", "?")
        acc[node] = (kind, acc.get(node, (kind, 0.0))[1] + e.get("dur", 0) / 1e3)
    return acc
