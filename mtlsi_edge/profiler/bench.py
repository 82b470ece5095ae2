"""The per-bundle profile (compute-only, end-to-end, throughput, per-layer).

Conventions (docs/design.md, 'Profiling conventions'): warm up by time (≥ 200 ms) *and*
count, then time either a duration or a number of iterations; compute-only latency (the Runner
on an already preprocessed batch) is reported apart from end-to-end latency (the Predictor on
a BGR uint8 frame: preprocessing, inference, postprocessing and the copies in between);
latency and throughput are separate runs.  Per-iteration times are kept so they can be
exported as JSON.

Backends are reached only through their :class:`~mtlsi_edge.targets.Target` hooks:
``per_layer`` (each backend's own profiler, compiled exactly as the timed model),
``throughput`` (its concurrent-request API) and ``effective_threads``; the timing loops are
:mod:`mtlsi_edge.timing`.
"""

from __future__ import annotations

import os
import platform
import re
import resource
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from mtlsi_edge.backends import UnsupportedByTarget, get_backend
from mtlsi_edge.bundle import load_bundle
from mtlsi_edge.fileio import display_path
from mtlsi_edge.machine import ISA_FLAGS, cpu_info
from mtlsi_edge.runtime.predictor import Predictor
from mtlsi_edge.stats import summarize
from mtlsi_edge.timing import WARMUP_RUNS, WARMUP_S, time_call
from mtlsi_edge.timing import check_budget as _check_budget

MODES = ("latency", "throughput")

Progress = Callable[[str], None]


# -- machine ------------------------------------------------------------------------------
def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def machine_header() -> dict:
    """Where the numbers were measured: CPU, cores, ISA flags, OS, Python, runtimes, load."""
    import psutil

    model, flags = cpu_info()
    isa = {f: f in flags for f in ISA_FLAGS if not f.startswith("amx")}
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
        "runtimes": {p: _version(p) for p in ("torch", "onnxruntime", "openvino", "tensorrt")},
        "load_avg_1_5_15": load,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
    }


def _memory(rss_before: int) -> dict:
    import psutil

    rss = psutil.Process().memory_info().rss
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"peak_rss_mb": peak_kb / 1024, "rss_mb": rss / 2**20,
            "rss_delta_mb": (rss - rss_before) / 2**20}


# -- per-layer grouping -------------------------------------------------------------------
#: Display name of each part of MTLSI-Net keyed by its module prefix in exported node names
#: (``model.mtlsi.PARTS`` inverted; a test keeps the two equal).
_PART_OF_PREFIX = {"backbone": "backbone", "prelim": "preliminary decoders",
                   "fusion": "MT-MQLFB", "distiller": "distiller", "decoders": "CWIB decoders",
                   "heads": "heads"}


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


def per_layer_profile(target, folder: Path, manifest: dict, threads: int | None,
                      x: np.ndarray, iterations: int, structure: dict | None) -> dict:
    """The target's per-layer hook (compiled as the timed model, latency hint) grouped by
    MTLSI-Net part; raises :class:`~mtlsi_edge.targets.UnsupportedByTarget` without one."""
    opts = target.load_options(manifest, threads=threads, hint="latency")
    layers = target.per_layer(folder, manifest, opts, x, iterations)
    out = _group({r.name: (r.type, r.ms) for r in layers}, iterations, structure)
    out["source"] = target.per_layer_source
    return out


# -- the profile of one bundle ------------------------------------------------------------
def _ms_list(times_s: list[float]) -> list[float]:
    return [round(t * 1e3, 6) for t in times_s]


@dataclass(frozen=True)
class ProfileOptions:
    """What :func:`profile_bundle` measures, on what input and for how long.

    Measurements:
    mode: ``"latency"``: compute-only latency (the Runner on its prepared input: the uint8
      frame of a frame-I/O bundle, else the normalised ``1×3×H×W`` batch) and end-to-end
      latency (the Predictor on a BGR uint8 frame, with the median pre/infer/post split).
      ``"throughput"``: concurrent inference (OpenVINO THROUGHPUT hint and an
      ``AsyncInferQueue``; ONNX Runtime N sessions × 1 thread) → frames/s and the per-request
      latency under load; targets without it give a row with ``skipped`` set.
    e2e: with ``False`` the end-to-end measurement is skipped (compute-only comparisons).
    per_layer: hot spots from the backend's own profiler (OpenVINO, ONNX Runtime), grouped by
      MTLSI-Net part, measured in a separate short run so it never perturbs the timings.

    Budget (one of the two, or neither for the default): ``time_s`` seconds or ``runs``
    iterations per measurement, after the warm-up.

    Input and threads:
    size: the end-to-end frame size ``(H, W)`` (``None``: the bundle's input size; compute-only
      always uses the latter).
    threads: the per-request thread count, except for ONNX Runtime throughput where it is the
      number of concurrent single-threaded sessions (``None``: the runtime's default; the
      logical core count for those sessions).
    """

    mode: str = "latency"
    e2e: bool = True
    per_layer: bool = False

    time_s: float | None = None
    runs: int | None = None

    size: tuple[int, int] | None = None
    threads: int | None = None


def profile_bundle(path: str | Path, options: ProfileOptions | None = None, *,
                   progress: Progress | None = None) -> dict:
    """Profile one bundle as ``options`` say (:class:`ProfileOptions`); returns one result
    row (JSON-ready, with per-iteration times).  ``progress(message)`` is told each step.

    Raises :class:`~mtlsi_edge.bundle.BundleError` (missing / tampered bundle),
    :class:`~mtlsi_edge.targets.TargetUnavailable` and ``ValueError`` (bad mode / budget).
    """
    import psutil

    options = options or ProfileOptions()
    _check_options(options)
    say = progress or (lambda _msg: None)
    manifest, folder = load_bundle(path)
    target = manifest["target"]
    tgt = get_backend(target)
    tgt.require(f"{folder}: bundle needs target {target}")
    row = _base_row(manifest, folder, options)

    rss_before = psutil.Process().memory_info().rss
    if options.mode == "throughput":
        if not _measure_throughput(row, tgt, manifest, folder, options, say):
            return row
    else:
        _measure_latency(row, tgt, folder, options, say)
    row["memory"] = _memory(rss_before)
    row.setdefault("gflops_per_s", None)

    if options.per_layer:
        _profile_layers(row, tgt, manifest, folder, options, say)
    return row


def _check_options(options: ProfileOptions) -> None:
    """``ValueError`` for an unknown mode, a bad budget or a thread count below 1."""
    if options.mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {options.mode!r}")
    _check_budget(options.time_s, options.runs)
    if options.threads is not None and options.threads < 1:
        raise ValueError(f"threads must be ≥ 1, got {options.threads}")


def _base_row(manifest: dict, folder: Path, options: ProfileOptions) -> dict:
    """The result row before measuring: what the bundle is, the settings and the budget, its
    size and complexity; the measurements are ``None`` until filled in."""
    target = manifest["target"]
    in_size = tuple(manifest["input"]["size"])
    frame_size = tuple(options.size) if options.size else in_size
    row: dict = {
        "name": f"{target}-{manifest['precision']}", "target": target,
        "precision": manifest["precision"],
        "graph": manifest.get("graph"), "mode": options.mode,
        "device": manifest.get("device"), "threads": options.threads,
        "bundle": display_path(folder),
        "variant": manifest["model"].get("variant"), "input_size": list(in_size),
        "frame_size": list(frame_size),
        "runtime_version": manifest.get("runtime_versions", {}).get(target),
        "budget": {"time_s": options.time_s, "runs": options.runs, "warmup_s": WARMUP_S,
                   "warmup_runs": WARMUP_RUNS},
        "compute": None, "e2e": None, "throughput": None, "fps": None, "per_layer": None,
        "notes": [], "skipped": None,
        "model_file_mb": sum((folder / f).stat().st_size for f in manifest["files"]) / 2**20,
    }
    cx = manifest.get("complexity") or {}
    row["params"], row["gmacs"] = cx.get("params"), cx.get("gmacs")
    if not cx:
        row["notes"].append("params/GMACs unavailable: the bundle predates manifests that "
                            "record them (compile it again)")
    return row


def _measure_throughput(row: dict, tgt, manifest: dict, folder: Path, options: ProfileOptions,
                        say: Progress) -> bool:
    """Fill in the throughput measurement; False (and ``skipped`` set) when the target has no
    concurrent-request API."""
    x = Predictor(_NullRunner(), manifest, folder=folder).sample_input()
    say(f"{row['name']}: throughput")
    try:
        res = tgt.throughput(folder, manifest,
                             tgt.load_options(manifest, threads=options.threads,
                                              hint="throughput"),
                             x, options.time_s, options.runs)
    except UnsupportedByTarget:
        row["skipped"] = (f"throughput mode not implemented for {row['target']} "
                          f"(batch-1 eager has no concurrent-request API here)")
        return False
    lat = res.pop("latencies_s")
    row["compute"] = {**summarize(lat), "times_ms": _ms_list(lat)}
    row["throughput"] = res
    row["fps"] = res["fps"]
    if row.get("gmacs"):
        row["gflops_per_s"] = 2 * row["gmacs"] * res["fps"]
    return True


def _measure_latency(row: dict, tgt, folder: Path, options: ProfileOptions,
                     say: Progress) -> None:
    """Fill in compute-only latency, end-to-end latency with its pre/infer/post split (unless
    ``e2e`` is off), GFLOP/s and the threads the runtime really used.  The Predictor is
    released on return, before the caller reads the memory use."""
    name, time_s, runs = row["name"], options.time_s, options.runs
    say(f"{name}: loading")
    predictor = Predictor.from_bundle(folder, threads=options.threads, hint="latency")
    frame = predictor.timing_frame(tuple(row["frame_size"]))
    x = predictor.sample_input()
    runner = predictor.runner
    say(f"{name}: compute-only latency")
    t_compute = time_call(lambda: runner(x), time_s=time_s, runs=runs)
    row["compute"] = {**t_compute.stats, "times_ms": t_compute.times_ms}
    row["fps"] = row["compute"]["fps"]
    if options.e2e:
        say(f"{name}: end-to-end latency")
        split: list = []

        def call() -> None:
            predictor(frame)
            split.append(predictor.timings)

        t_e2e = time_call(call, time_s=time_s, runs=runs)
        split = split[-len(t_e2e.times_s):]
        med = {k: float(np.median([getattr(s, k) for s in split]))
               for k in ("preprocess", "inference", "postprocess")}
        row["e2e"] = {**t_e2e.stats, "times_ms": t_e2e.times_ms, "split_ms": med}
    if row.get("gmacs"):
        row["gflops_per_s"] = 2 * row["gmacs"] / (row["compute"]["median_ms"] / 1e3)
    eff = tgt.effective_threads(runner)
    if eff is not None:
        row["threads_effective"] = eff


def _profile_layers(row: dict, tgt, manifest: dict, folder: Path, options: ProfileOptions,
                    say: Progress) -> None:
    """Fill in the per-layer hot spots, or a note when the target has no per-layer hook."""
    say(f"{row['name']}: per-layer profile")
    x = Predictor(_NullRunner(), manifest, folder=folder).sample_input()
    iters = max(5, min(options.runs or 20, 50))
    structure = (manifest.get("complexity") or {}).get("structure")
    try:
        row["per_layer"] = per_layer_profile(tgt, folder, manifest, options.threads, x, iters,
                                             structure)
    except UnsupportedByTarget:
        row["notes"].append(f"per-layer profile not available for {row['target']} "
                            f"(use torch.profiler for eager PyTorch)")


class _NullRunner:
    """Stands in for a Runner when only the Predictor's preprocessing is needed."""

    name = device = precision = "none"
    layouts: dict = {}

    def __call__(self, batch: np.ndarray) -> dict:  # pragma: no cover - never called
        raise RuntimeError("no runner")
