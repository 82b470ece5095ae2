"""Timing loops and the per-bundle profile (compute-only, end-to-end, throughput, per-layer).

Conventions (docs/design.md, 'Profiling conventions'): warm up by time (≥ 200 ms) *and* count,
then time either a duration or a number of iterations; compute-only latency (the Runner on an
already preprocessed batch) is reported apart from end-to-end latency (the Predictor on a BGR
uint8 frame: preprocessing, inference, postprocessing and the copies in between); latency and
throughput are separate runs.  Per-iteration times are kept so they can be exported as JSON.

Backend APIs used (checked against the OpenVINO and ONNX Runtime documentation):

- OpenVINO: ``openvino.properties.hint.performance_mode`` (``LATENCY`` / ``THROUGHPUT``),
  ``openvino.properties.optimal_number_of_infer_requests`` read from the compiled model,
  ``openvino.AsyncInferQueue(compiled, jobs)`` with ``set_callback(f(request, userdata))``,
  ``get_idle_request_id``, ``start_async(inputs, userdata)`` and ``wait_all``;
  ``openvino.properties.enable_profiling`` then ``InferRequest.get_profiling_info()`` →
  ``ProfilingInfo`` (``node_name``, ``node_type``, ``exec_type``, ``real_time`` as a
  ``timedelta``, ``status`` ∈ ``NOT_RUN / OPTIMIZED_OUT / EXECUTED``).
- ONNX Runtime: ``SessionOptions.enable_profiling`` / ``profile_file_prefix`` then
  ``InferenceSession.end_profiling()`` → path of a Chrome-trace JSON list whose ``cat ==
  "Node"`` events carry ``name`` (``<node>_kernel_time``), ``dur`` (µs), ``ts`` (µs) and
  ``args.op_name``; ``cat == "Session"`` events named ``model_run`` delimit each run.
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import re
import resource
import tempfile
import threading
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np

from mtlsi_edge.machine import cpu_info
from mtlsi_edge.profiler.stats import summarize

#: Warm-up defaults: at least this long *and* at least this many calls.
WARMUP_S = 0.2
WARMUP_RUNS = 5
#: Measurement default when neither a duration nor a count is given.
DEFAULT_TIME_S = 1.0
MODES = ("latency", "throughput")
#: ISA flags of interest in /proc/cpuinfo (``amx`` = any ``amx_*`` flag).
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni")

Progress = Callable[[str], None]


# -- timing loops -------------------------------------------------------------------------
def _check_budget(time_s: float | None, runs: int | None) -> None:
    if runs is not None and time_s is not None:
        raise ValueError("give a duration (time_s) or a count (runs), not both")
    if runs is not None and int(runs) < 1:
        raise ValueError(f"runs must be ≥ 1, got {runs}")
    if time_s is not None and not (time_s > 0 and math.isfinite(time_s)):
        raise ValueError(f"time must be > 0 seconds, got {time_s}")


def warmup(fn: Callable[[], object], warmup_s: float = WARMUP_S,
           warmup_runs: int = WARMUP_RUNS) -> int:
    """Call ``fn`` (untimed) until ``warmup_s`` seconds passed *and* ``warmup_runs`` calls
    were made; returns the number of calls."""
    t_end, k = time.perf_counter() + warmup_s, 0
    while k < warmup_runs or time.perf_counter() < t_end:
        fn()
        k += 1
    return k


def measure(fn: Callable[[], object], warmup_s: float = WARMUP_S,
            warmup_runs: int = WARMUP_RUNS, time_s: float | None = None,
            runs: int | None = None) -> list[float]:
    """Call ``fn`` repeatedly; return the wall time of each timed call in seconds.

    Warm-up (untimed) lasts until both ``warmup_s`` seconds have passed and ``warmup_runs``
    calls were made (like ``benchmark_app``).  Then either ``runs`` calls are timed, or calls
    are timed until ``time_s`` seconds have passed (at least one call); with neither,
    :data:`DEFAULT_TIME_S`.  ``runs < 1`` or ``time_s <= 0`` raise ``ValueError``.
    """
    _check_budget(time_s, runs)
    if warmup_s < 0 or warmup_runs < 0:
        raise ValueError("warm-up time and count must be ≥ 0")
    if runs is None and time_s is None:
        time_s = DEFAULT_TIME_S
    warmup(fn, warmup_s, warmup_runs)
    clock = time.perf_counter
    times: list[float] = []
    if runs is not None:
        for _ in range(int(runs)):
            t = clock()
            fn()
            times.append(clock() - t)
        return times
    t_stop = clock() + float(time_s)
    while True:
        t = clock()
        fn()
        now = clock()
        times.append(now - t)
        if now >= t_stop:
            return times


# -- machine ------------------------------------------------------------------------------
def _cpuinfo() -> tuple[str, frozenset[str]]:
    return cpu_info()


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def machine_header() -> dict:
    """Where the numbers were measured: CPU, cores, ISA flags, OS, Python, runtimes, load."""
    import psutil

    model, flags = _cpuinfo()
    isa = {f: f in flags for f in ISA_FLAGS}
    isa["amx"] = any(f.startswith("amx") for f in flags)
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu": model,
        "logical_cores": psutil.cpu_count(logical=True),
        "physical_cores": psutil.cpu_count(logical=False),
        "isa": isa,
        "os": platform.platform(),
        "python": platform.python_version(),
        "runtimes": {p: _version(p) for p in ("torch", "onnxruntime", "openvino")},
        "load_avg_1_5_15": load,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
    }


def _memory(rss_before: int) -> dict:
    import psutil

    rss = psutil.Process().memory_info().rss
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"peak_rss_mb": peak_kb / 1024, "rss_mb": rss / 2**20,
            "rss_delta_mb": (rss - rss_before) / 2**20}


# -- model complexity ---------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def _model_info(cfg_json: str, size: tuple[int, int]) -> tuple[dict, dict]:
    """(``model_report`` at ``size``, names of child modules per part) for a model config."""
    import torch

    from mtlsi_edge.model.complexity import model_report
    from mtlsi_edge.model.mtlsi import MTLSIConfig, MTLSINet

    cfg = MTLSIConfig.from_dict(json.loads(cfg_json))
    cfg.pretrained = False  # structure only: never download weights to count MACs
    with torch.random.fork_rng():
        model = MTLSINet(cfg).eval()
    rep = model_report(model, size)
    tasks = model.task_set.names
    structure = {
        "tasks": tasks,
        "prelim": sorted({k for t in tasks for k, _ in model.prelim[t].named_children()}),
        "decoders": sorted({k for t in tasks for k, _ in model.decoders[t].named_children()}),
    }
    return rep, structure


def model_complexity(model_config: dict, size: tuple[int, int] | None = None) -> dict:
    """Params and GMACs (batch 1) of a manifest's model config, computed once per process."""
    size = tuple(size or model_config["input_size"])
    rep, _ = _model_info(json.dumps(model_config, sort_keys=True), size)
    return rep


# -- per-layer grouping -------------------------------------------------------------------
#: Display name of each part (mtlsi.PARTS) keyed by module prefix.
_PART_OF_PREFIX = {"backbone": "backbone", "prelim": "preliminary decoders",
                   "fusion": "MT-MQLFB", "distiller": "distiller",
                   "decoders": "CWIB decoders", "heads": "heads"}


def classify_node(name: str, structure: dict | None = None) -> str:
    """The MTLSI-Net part (``mtlsi.PARTS`` display name) a backend node belongs to, or "other".

    Node names carry the ONNX exporter's scopes (``/model/backbone/…``, ``/model/fusion.0/…``,
    ``/model/distiller/…``).  The exporter names the children of the per-task ``ModuleDict``s
    by task (``/model/semseg/cwib8.0/…``, heads as ``/model/semseg_1/Conv``), so with
    ``structure`` (child module names of the preliminary decoders and task decoders) those
    are resolved too.  Backend-made nodes (layout reorders, fused ops named ``MVN_123``) are
    "other".
    """
    i = name.find("/model/")
    if i < 0:
        return "other"
    segs = name[i + len("/model/"):].split("/")
    head = segs[0].split(".")[0]
    if head in _PART_OF_PREFIX:
        return _PART_OF_PREFIX[head]
    if structure is None:
        return "other"
    task = re.sub(r"_\d+$", "", head)
    if task not in structure["tasks"]:
        return "other"
    child = segs[1].split(".")[0] if len(segs) > 1 else ""
    child = re.sub(r"_(kernel_time|output_\d+.*)$", "", child)
    if child in structure["prelim"]:
        return _PART_OF_PREFIX["prelim"]
    if child in structure["decoders"]:
        return _PART_OF_PREFIX["decoders"]
    if child.startswith("Conv") and head != task:  # heads[task]: a 1×1 Conv2d, scope task_k
        return _PART_OF_PREFIX["heads"]
    return _PART_OF_PREFIX["decoders"]  # TaskDecoder's own ops (resize + add of skips)


def _group(node_ms: dict[str, tuple[str, float]], iterations: int,
           structure: dict | None, top: int = 10) -> dict:
    """Per-node totals (ms over all iterations) → per-part and top-N, per iteration."""
    total = sum(ms for _, ms in node_ms.values()) / iterations
    parts: dict[str, float] = {}
    rows = []
    for name, (kind, ms) in node_ms.items():
        per = ms / iterations
        part = classify_node(name, structure)
        parts[part] = parts.get(part, 0.0) + per
        rows.append({"name": name, "type": kind, "part": part, "ms": per})
    rows.sort(key=lambda r: -r["ms"])
    for r in rows:
        r["share"] = r["ms"] / total if total else 0.0
    return {
        "iterations": iterations,
        "total_ms": total,
        "parts": {k: {"ms": v, "share": v / total if total else 0.0}
                  for k, v in sorted(parts.items(), key=lambda kv: -kv[1])},
        "top": rows[:top],
        "nodes": len(rows),
    }


def _per_layer_openvino(folder: Path, manifest: dict, threads: int | None, x: np.ndarray,
                        iterations: int, structure: dict | None) -> dict:
    import openvino as ov
    import openvino.properties as props
    import openvino.properties.hint as hints

    from mtlsi_edge.targets.openvino import _with_nhwc_outputs

    core = ov.Core()
    device = str(manifest.get("device", "CPU")).upper()
    model = _with_nhwc_outputs(core.read_model(str(folder / "model.xml")), manifest["outputs"])
    cfg: dict = {hints.performance_mode: hints.PerformanceMode.LATENCY,
                 props.enable_profiling: True}
    if threads and device in ("CPU", "AUTO"):
        cfg[props.inference_num_threads] = threads
    if manifest["precision"] == "fp32" and device in ("CPU", "AUTO"):
        cfg[hints.inference_precision] = ov.Type.f32
    request = core.compile_model(model, device, cfg).create_infer_request()
    for _ in range(WARMUP_RUNS):
        request.infer({0: x})
    acc: dict[str, tuple[str, float]] = {}
    for _ in range(iterations):
        request.infer({0: x})
        for info in request.get_profiling_info():
            if info.status != ov.ProfilingInfo.Status.EXECUTED:
                continue
            ms = info.real_time.total_seconds() * 1e3
            kind = f"{info.node_type} ({info.exec_type})"
            acc[info.node_name] = (kind, acc.get(info.node_name, (kind, 0.0))[1] + ms)
    out = _group(acc, iterations, structure)
    out["source"] = "openvino get_profiling_info (real_time)"
    return out


def parse_ort_profile(events: list[dict], last_runs: int | None = None) -> dict:
    """Per-node kernel time (ms, summed) from an ONNX Runtime profile; only the last runs.

    Returns ``{node_name: (op_name, ms)}``.  ``last_runs`` keeps the node events of the last
    ``model_run`` spans only (warm-up runs are in the same trace).
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


def _per_layer_onnxruntime(folder: Path, manifest: dict, threads: int | None, x: np.ndarray,
                           iterations: int, structure: dict | None) -> dict:
    from mtlsi_edge.targets import CompileOptions
    from mtlsi_edge.targets.onnxruntime import ORTRunner

    with tempfile.TemporaryDirectory(prefix="mtlsi-ortprof-") as tmp:
        opts = CompileOptions(precision=manifest["precision"],
                              device=manifest.get("device", "cpu"), threads=threads,
                              extra={"profile_prefix": str(Path(tmp) / "ort")})
        runner = ORTRunner(folder / "model.onnx", opts, manifest["outputs"])
        for _ in range(WARMUP_RUNS):
            runner(x)
        for _ in range(iterations):
            runner(x)
        trace = runner.session.end_profiling()
        events = json.loads(Path(trace).read_text())
    acc = parse_ort_profile(events, last_runs=iterations)
    out = _group(acc, iterations, structure)
    out["source"] = "onnxruntime profiler (Node kernel_time events)"
    return out


# -- throughput ---------------------------------------------------------------------------
def _throughput_openvino(folder: Path, manifest: dict, threads: int | None, x: np.ndarray,
                         time_s: float | None, runs: int | None) -> dict:
    import openvino as ov
    import openvino.properties as props

    from mtlsi_edge.targets import CompileOptions, get_target

    opts = CompileOptions(precision=manifest["precision"], device=manifest.get("device", "CPU"),
                          threads=threads, hint="throughput")
    runner = get_target("openvino").load(folder, manifest, opts)
    compiled = runner.compiled
    nireq = int(compiled.get_property(props.optimal_number_of_infer_requests))
    queue = ov.AsyncInferQueue(compiled, nireq)
    done: list[float] = []
    queue.set_callback(lambda _req, t0: done.append(time.perf_counter() - t0))

    def submit() -> None:
        queue.get_idle_request_id()  # wait for a free request: latency starts at submission
        queue.start_async({0: x}, userdata=time.perf_counter())

    clock = time.perf_counter
    t_end, k = clock() + WARMUP_S, 0
    while k < max(WARMUP_RUNS, 2 * nireq) or clock() < t_end:
        submit()
        k += 1
    queue.wait_all()
    done.clear()
    if runs is None and time_s is None:
        time_s = DEFAULT_TIME_S
    t0 = clock()
    n = 0
    while (n < runs) if runs is not None else (clock() - t0 < time_s or n == 0):
        submit()
        n += 1
    queue.wait_all()
    wall = clock() - t0
    try:
        streams = int(compiled.get_property(props.num_streams))
    except Exception:  # noqa: BLE001 - informative only
        streams = None
    return {"fps": len(done) / wall, "frames": len(done), "wall_s": wall,
            "parallel": nireq, "streams": streams, "latencies_s": list(done),
            "how": f"OpenVINO THROUGHPUT hint, AsyncInferQueue of {nireq} requests "
                   f"(optimal_number_of_infer_requests), {streams} streams"}


def _throughput_onnxruntime(folder: Path, manifest: dict, threads: int | None, x: np.ndarray,
                            time_s: float | None, runs: int | None) -> dict:
    import psutil

    from mtlsi_edge.targets import CompileOptions
    from mtlsi_edge.targets.onnxruntime import ORTRunner

    workers = threads or psutil.cpu_count(logical=True) or 1
    opts = CompileOptions(precision=manifest["precision"], device=manifest.get("device", "cpu"),
                          threads=1)
    runners = [ORTRunner(folder / "model.onnx", opts, manifest["outputs"])
               for _ in range(workers)]
    if runs is None and time_s is None:
        time_s = DEFAULT_TIME_S
    t_stop = [0.0, 0.0]  # [start, stop], set by the barrier when every worker is warm

    def go() -> None:
        t_stop[0] = time.perf_counter()
        t_stop[1] = t_stop[0] + (time_s or 0.0)

    start = threading.Barrier(workers + 1, action=go)
    lock = threading.Lock()
    left = [runs if runs is not None else -1]
    lat: list[list[float]] = [[] for _ in range(workers)]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            r = runners[i]
            warmup(lambda: r(x))
            start.wait()
            while True:
                if runs is not None:
                    with lock:
                        if left[0] <= 0:
                            return
                        left[0] -= 1
                elif time.perf_counter() >= t_stop[1]:
                    return
                t = time.perf_counter()
                r(x)
                lat[i].append(time.perf_counter() - t)
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
    wall = time.perf_counter() - t_stop[0]
    if errors:
        raise errors[0]
    done = [t for per in lat for t in per]
    return {"fps": len(done) / wall, "frames": len(done), "wall_s": wall,
            "parallel": workers, "streams": workers, "latencies_s": done,
            "how": f"ONNX Runtime: {workers} concurrent sessions × 1 intra-op thread"}


THROUGHPUT = {"openvino": _throughput_openvino, "onnxruntime": _throughput_onnxruntime}
PER_LAYER = {"openvino": _per_layer_openvino, "onnxruntime": _per_layer_onnxruntime}


# -- the profile of one bundle ------------------------------------------------------------
def _frame(size: tuple[int, int]) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (size[0], size[1], 3), dtype=np.uint8)


def _ms_list(times_s: list[float]) -> list[float]:
    return [round(t * 1e3, 6) for t in times_s]


def profile_bundle(path: str | Path, size: tuple[int, int] | None = None,
                   threads: int | None = None, mode: str = "latency",
                   time_s: float | None = None, runs: int | None = None,
                   per_layer: bool = False, progress: Progress | None = None,
                   e2e: bool = True) -> dict:
    """Profile one bundle; returns one result row (JSON-ready, with per-iteration times).

    ``mode="latency"``: compute-only latency (the Runner on a preprocessed ``1×3×H×W`` batch)
    and end-to-end latency (the Predictor on a BGR uint8 frame of ``size``, default the
    bundle's input size, with the median pre/infer/post split); each gets ``time_s`` or
    ``runs``.  ``mode="throughput"``: concurrent inference (OpenVINO THROUGHPUT hint and an
    ``AsyncInferQueue``; ONNX Runtime N sessions × 1 thread) → frames/s and the per-request
    latency under load; targets without it return a row with ``skipped`` set.  ``threads``
    is the per-request thread count, except for ONNX Runtime throughput where it is the number
    of concurrent single-threaded sessions (default: the logical core count).
    ``per_layer``: hot spots from the backend's own profiler (OpenVINO, ONNX Runtime), grouped
    by MTLSI-Net part, measured in a separate short run so it never perturbs the timings.
    ``e2e=False`` skips the end-to-end measurement (compute-only comparisons).

    Raises :class:`~mtlsi_edge.bundle.BundleError` (missing / tampered bundle),
    :class:`~mtlsi_edge.targets.TargetUnavailable` and ``ValueError`` (bad mode / budget).
    """
    import psutil

    from mtlsi_edge.bundle import load_bundle
    from mtlsi_edge.runtime.predictor import Predictor
    from mtlsi_edge.targets import TargetUnavailable, get_target

    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    _check_budget(time_s, runs)
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be ≥ 1, got {threads}")
    say = progress or (lambda _msg: None)
    manifest, folder = load_bundle(path)
    target = manifest["target"]
    ok, why = get_target(target).available()
    if not ok:
        raise TargetUnavailable(f"{folder}: bundle needs target {target}: {why}")
    in_size = tuple(manifest["input"]["size"])
    frame_size = tuple(size) if size else in_size
    name = f"{target}-{manifest['precision']}"
    row: dict = {
        "name": name, "target": target, "precision": manifest["precision"], "mode": mode,
        "device": manifest.get("device"), "threads": threads, "bundle": str(folder),
        "variant": manifest["model"].get("variant"), "input_size": list(in_size),
        "frame_size": list(frame_size),
        "runtime_version": manifest.get("runtime_versions", {}).get(target),
        "budget": {"time_s": time_s, "runs": runs, "warmup_s": WARMUP_S,
                   "warmup_runs": WARMUP_RUNS},
        "compute": None, "e2e": None, "throughput": None, "fps": None, "per_layer": None,
        "notes": [], "skipped": None,
        "model_file_mb": sum((folder / f).stat().st_size for f in manifest["files"]) / 2**20,
    }
    say(f"{name}: counting MACs")
    cfg = manifest["model"]["config"]
    structure = None
    try:
        rep, structure = _model_info(json.dumps(cfg, sort_keys=True), in_size)
        row["params"], row["gmacs"] = rep["params"], rep["gmacs"]
    except Exception as e:  # noqa: BLE001 - complexity is informative; keep profiling
        row["params"] = row["gmacs"] = None
        row["notes"].append(f"params/GMACs unavailable: {e}")

    rss_before = psutil.Process().memory_info().rss
    if mode == "throughput":
        fn = THROUGHPUT.get(target)
        if fn is None:
            row["skipped"] = (f"throughput mode not implemented for {target} "
                              f"(batch-1 eager has no concurrent-request API here)")
            return row
        pre = Predictor(_NullRunner(), manifest)
        x, _ = pre.preprocess(_frame(in_size))
        say(f"{name}: throughput")
        res = fn(folder, manifest, threads, x, time_s, runs)
        lat = res.pop("latencies_s")
        row["compute"] = {**summarize(lat), "times_ms": _ms_list(lat)}
        row["throughput"] = res
        row["fps"] = res["fps"]
        if row.get("gmacs"):
            row["gflops_per_s"] = 2 * row["gmacs"] * res["fps"]
    else:
        say(f"{name}: loading")
        predictor = Predictor.from_bundle(folder, threads=threads, hint="latency")
        frame = _frame(frame_size)
        x, _ = predictor.preprocess(frame)
        runner = predictor.runner
        say(f"{name}: compute-only latency")
        t_compute = measure(lambda: runner(x), time_s=time_s, runs=runs)
        row["compute"] = {**summarize(t_compute), "times_ms": _ms_list(t_compute)}
        row["fps"] = row["compute"]["fps"]
        if e2e:
            say(f"{name}: end-to-end latency")
            split: list = []

            def call() -> None:
                predictor(frame)
                split.append(predictor.timings)

            t_e2e = measure(call, time_s=time_s, runs=runs)
            split = split[-len(t_e2e):]
            med = {k: float(np.median([getattr(s, k) for s in split]))
                   for k in ("preprocess", "inference", "postprocess")}
            row["e2e"] = {**summarize(t_e2e), "times_ms": _ms_list(t_e2e), "split_ms": med}
        if row.get("gmacs"):
            row["gflops_per_s"] = 2 * row["gmacs"] / (row["compute"]["median_ms"] / 1e3)
        if target == "openvino":
            try:
                import openvino.properties as props

                row["threads_effective"] = int(
                    runner.compiled.get_property(props.inference_num_threads))
            except Exception:  # noqa: BLE001 - informative only
                pass
        elif target == "torch":
            import torch

            row["threads_effective"] = torch.get_num_threads()
        del predictor, runner
    row["memory"] = _memory(rss_before)
    row.setdefault("gflops_per_s", None)

    if per_layer:
        fn = PER_LAYER.get(target)
        if fn is None:
            row["notes"].append(f"per-layer profile not available for {target} "
                                f"(use torch.profiler for eager PyTorch)")
        else:
            say(f"{name}: per-layer profile")
            pre = Predictor(_NullRunner(), manifest)
            x, _ = pre.preprocess(_frame(in_size))
            iters = max(5, min(runs or 20, 50))
            row["per_layer"] = fn(folder, manifest, threads, x, iters, structure)
    return row


class _NullRunner:
    """Stands in for a Runner when only the Predictor's preprocessing is needed."""

    name = device = precision = "none"
    layouts: dict = {}

    def __call__(self, batch: np.ndarray) -> dict:  # pragma: no cover - never called
        raise RuntimeError("no runner")
