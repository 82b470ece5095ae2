"""OpenVINO backend: loads a bundle's IR (``model.xml`` + ``model.bin``) for CPU / GPU / NPU /
AUTO and times it.

- Outputs are declared ``NHWC`` with ``PrePostProcessor``: the plugin then writes results in
  the layout the postprocessing (OpenCV, H×W×C) wants instead of paying a reorder
  (an NHWC→NCHW reorder of a 40×240×320 output cost 8.7 ms: docs/design.md, 'Lessons
  measured on the build machine').
- ``LATENCY`` / ``THROUGHPUT`` performance hints, thread count, and a model cache folder.

Conversion from ONNX (and frame I/O) is the build half's :mod:`mtlsi_edge.targets.openvino`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from mtlsi_edge.backends.base import (
    Backend,
    LayerTime,
    ModelMismatch,
    Runner,
    RunOptions,
    RuntimeRefused,
    TargetUnavailable,
    import_problem,
    require_outputs,
)
from mtlsi_edge.native import quiet_native
from mtlsi_edge.precisions import PRECISIONS
from mtlsi_edge.timing import DEFAULT_TIME_S, WARMUP_RUNS, WARMUP_S, clock


def _with_nhwc_outputs(model, outputs: list[str]):
    from openvino.preprocess import PrePostProcessor

    ppp = PrePostProcessor(model)
    for name in outputs:
        out = ppp.output(name)
        out.model().set_layout("NCHW")
        out.tensor().set_layout("NHWC")
    return ppp.build()


def first_line(e: Exception) -> str:
    """OpenVINO's messages start with a C++ source location; keep the reason."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    reasons = [ln for ln in lines if not ln.startswith(("Exception from", "Check "))]
    return (reasons or lines or [type(e).__name__])[0][:300]


#: Environment variable: a folder for OpenVINO's compiled-model cache, or ``0`` for none.
CACHE_ENV = "MTLSI_EDGE_OV_CACHE"


def model_cache_dir() -> str | None:
    """Where OpenVINO caches compiled models (``$MTLSI_EDGE_OV_CACHE``, else
    ``$XDG_CACHE_HOME/mtlsi-edge/openvino`` or ``~/.cache/…``); None when switched off (``0``)
    or not writable.  OpenVINO keys each blob by model, device and configuration."""
    given = os.environ.get(CACHE_ENV)
    if given is not None and given.strip() in ("", "0"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = given or os.path.join(base, "mtlsi-edge", "openvino")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK | os.X_OK) else None


class OpenVINORunner:
    name = "openvino"

    def __init__(self, xml: Path, opts: RunOptions, outputs: list[str],
                 cache_dir: Path | None = None):
        import openvino as ov
        import openvino.properties.hint as hints

        core = ov.Core()
        device = opts.device.upper()
        if device != "AUTO" and not any(d.startswith(device) for d in core.available_devices):
            raise TargetUnavailable(f"OpenVINO device {device} not present (available: "
                                    f"{', '.join(core.available_devices)})")
        try:
            with quiet_native():  # the frontends' own log lines on a garbage file stay out
                model = core.read_model(str(xml))
        except RuntimeError as e:  # OpenVINO reports unreadable IRs as RuntimeError
            raise ModelMismatch(f"{xml}: OpenVINO cannot read it: {first_line(e)}") from None
        require_outputs(xml, {n for o in model.outputs for n in o.get_names()}, outputs)
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
        if opts.extra.get("profiling"):  # per-layer profile: the timed config + PERF_COUNT
            import openvino.properties as props

            cfg[props.enable_profiling] = True
        self.config = dict(cfg)  # what compile_model was given
        try:
            with quiet_native():
                self.compiled = core.compile_model(model, device, cfg)
        except RuntimeError as e:
            raise RuntimeRefused(f"{xml}: OpenVINO cannot compile it: {first_line(e)}") from None
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


class OpenVINOBackend(Backend):
    """A bundle's OpenVINO IR, compiled by ``ov.Core`` at load time."""

    model_file = "model.xml"  # what the precision label and I/O checks read
    frame_io = True  # bundles take uint8 BGR frames and emit labels (with_frame_io)
    name = "openvino"
    precisions = PRECISIONS
    per_layer_source = "openvino get_profiling_info (real_time)"

    def available(self) -> tuple[bool, str]:
        why = import_problem("openvino")
        return (False, why) if why else (True, "")

    def runtime_version(self) -> str:
        import openvino

        return openvino.get_version()

    def load_options(self, manifest: dict, device: str | None = None,
                     threads: int | None = None, hint: str = "latency") -> RunOptions:
        """:meth:`Backend.load_options` plus OpenVINO's model cache (:func:`model_cache_dir`):
        the second load of a bundle on a device skips most of the compile (measured 0.34 →
        0.18 s for the starter on a 2-core EPYC, docs/devices.md)."""
        opts = super().load_options(manifest, device, threads, hint)
        cache = model_cache_dir()
        if cache is not None:
            opts.extra["cache_dir"] = cache
        return opts

    def load(self, bundle_dir: Path, manifest: dict, opts: RunOptions) -> OpenVINORunner:
        ok, why = self.available()
        if not ok:
            raise TargetUnavailable(why)
        cache = opts.extra.get("cache_dir")
        return OpenVINORunner(bundle_dir / "model.xml", opts, manifest["outputs"],
                              Path(cache) if cache else None)

    # -- optional hooks ---------------------------------------------------------------------
    def profiling_runner(self, bundle_dir: Path, manifest: dict,
                         opts: RunOptions) -> OpenVINORunner:
        """The runner :meth:`load` makes with ``opts``, compiled with ``enable_profiling``
        (``PERF_COUNT``) added and nothing else changed: the per-layer profile runs the very
        configuration that was timed (FP16 snippets workaround, inference precision,
        threads, hint)."""
        return self.load(bundle_dir, manifest,
                         dataclasses.replace(opts, extra={**opts.extra, "profiling": True}))

    def per_layer(self, bundle_dir: Path, manifest: dict, opts: RunOptions,
                  batch: np.ndarray, iterations: int) -> list[LayerTime]:
        """``InferRequest.get_profiling_info()`` of :meth:`profiling_runner`, summed over
        ``iterations`` calls after a warm-up: ``ProfilingInfo`` rows (``node_name``,
        ``node_type``, ``exec_type``, ``real_time`` as a ``timedelta``) whose ``status`` is
        ``EXECUTED`` (``NOT_RUN`` / ``OPTIMIZED_OUT`` nodes are skipped)."""
        import openvino as ov

        runner = self.profiling_runner(bundle_dir, manifest, opts)
        for _ in range(WARMUP_RUNS):
            runner(batch)
        acc: dict[str, tuple[str, float]] = {}
        for _ in range(iterations):
            runner(batch)
            for info in runner.request.get_profiling_info():
                if info.status != ov.ProfilingInfo.Status.EXECUTED:
                    continue
                ms = info.real_time.total_seconds() * 1e3
                kind = f"{info.node_type} ({info.exec_type})"
                acc[info.node_name] = (kind, acc.get(info.node_name, (kind, 0.0))[1] + ms)
        return [LayerTime(node, kind, ms) for node, (kind, ms) in acc.items()]

    def throughput(self, bundle_dir: Path, manifest: dict, opts: RunOptions,
                   batch: np.ndarray, time_s: float | None, runs: int | None) -> dict:
        """The ``THROUGHPUT`` performance hint and an ``openvino.AsyncInferQueue`` of
        ``optimal_number_of_infer_requests`` (read from the compiled model) requests, fed
        with ``get_idle_request_id`` + ``start_async(inputs, userdata=submit time)``; the
        ``set_callback`` callback records each request's latency from submission."""
        import openvino as ov
        import openvino.properties as props

        runner = self.load(bundle_dir, manifest, dataclasses.replace(opts, hint="throughput"))
        compiled = runner.compiled
        nireq = int(compiled.get_property(props.optimal_number_of_infer_requests))
        queue = ov.AsyncInferQueue(compiled, nireq)
        done: list[float] = []
        queue.set_callback(lambda _req, t0: done.append(clock() - t0))

        def submit() -> None:
            queue.get_idle_request_id()  # wait for a free request: latency starts at submission
            queue.start_async({0: batch}, userdata=clock())

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

    def effective_threads(self, runner: Runner) -> int | None:
        """``inference_num_threads`` read back from the compiled model."""
        try:
            import openvino.properties as props

            return int(runner.compiled.get_property(props.inference_num_threads))
        except Exception:  # noqa: BLE001 - informative only
            return None
