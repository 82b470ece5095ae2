"""TensorRT backend: ONNX → serialized TensorRT engine (``model.engine``) → GPU Runner.

``compile`` parses the ONNX file with TensorRT's ONNX parser, configures the builder
(workspace pool, FP16 / INT8 flags, optional DLA core on Jetson, an optimisation profile when
the input has symbolic N/H/W) and writes the serialized engine atomically.  ``load``
deserialises it and returns a :class:`TensorRTRunner` that keeps its device buffers in torch
CUDA tensors (torch is already a dependency, so no pycuda / cuda-python is needed) and runs
``execute_async_v3`` on a ``torch.cuda.Stream``.

API level: written against the TensorRT **10.x** Python API (name-based I/O tensors,
``execute_async_v3``, ``build_serialized_network``, ``set_memory_pool_limit``; no implicit
batch).  TensorRT 8.6 exposes the same calls, so it is accepted too: the only difference
handled is the ``EXPLICIT_BATCH`` network flag, required before 10.0 and ignored (deprecated)
from 10.0 on.  Older releases are reported as unavailable.

INT8 means *explicit* quantisation only: the ONNX must already hold QuantizeLinear /
DequantizeLinear nodes (a QDQ model, e.g. from ``mtlsi_edge.quantize``).  Implicit calibration
(``int8_calibrator``) is deprecated since TensorRT 10.1 and is not offered.

Order of checks in ``compile`` (deliberate): option validation (precision, DLA needs fp16 /
int8) and the INT8 QDQ check come first and need only the ``onnx`` package, so a model that
could never be built is refused with a ``ValueError`` on any machine; only then is TensorRT
required (:class:`TargetUnavailable` if it is missing or no CUDA device is visible).

UNTESTED HERE: the development machine has no NVIDIA GPU and TensorRT cannot be installed on
it, so the build and inference paths below have never been executed.  The tests that exercise
them skip with the reason from :meth:`TensorRTTarget.available`.

API verified against (NVIDIA documentation, by page title):
- TensorRT Python API: "Builder" (``Builder``, ``create_network``, ``create_builder_config``,
  ``create_optimization_profile``, ``build_serialized_network``;
  ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH`` "[DEPRECATED] Ignored ... in TensorRT 10.0")
- TensorRT Python API: "IBuilderConfig" (``set_memory_pool_limit``, ``MemoryPoolType.WORKSPACE``,
  ``set_flag``, ``BuilderFlag.FP16/INT8/GPU_FALLBACK``, ``default_device_type``, ``DLA_core``,
  ``add_optimization_profile``; ``int8_calibrator`` deprecated in 10.1)
- TensorRT Python API: "IOptimizationProfile" (``set_shape(input, min, opt, max)``)
- TensorRT Python API: "Onnx Parser" (``OnnxParser``, ``parse_from_file``, ``num_errors``,
  ``get_error``, ``ParserError``)
- TensorRT Python API: "Runtime" (``deserialize_cuda_engine`` → None on failure, ``DLA_core``)
- TensorRT Python API: "ICudaEngine" (``num_io_tensors``, ``get_tensor_name``,
  ``get_tensor_mode``, ``TensorIOMode``, ``get_tensor_dtype``, ``create_execution_context``)
- TensorRT Python API: "IExecutionContext" (``set_input_shape``, ``get_tensor_shape``,
  ``set_tensor_address``, ``execute_async_v3(stream_handle)``)
- TensorRT Developer Guide: "Working with DLA" / "Building and Launching the Loadable"
  (DLA runs FP16 / INT8 networks; GPU fallback mode)
- Cross-checked with NVIDIA/TensorRT ``samples/python/common_runtime.py`` and
  ``samples/python/detectron2/build_engine.py`` and the pybind11 sources
  ``python/src/infer/pyCore.cpp`` / ``python/src/parsers/pyOnnx.cpp``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mtlsi_edge.targets.base import CompileOptions, TargetUnavailable

ENGINE_FILE = "model.engine"
MIN_VERSION = (8, 6)
_MISSING = ("tensorrt Python package not installed (TensorRT runs on NVIDIA GPUs/Jetson; "
            "pip install tensorrt on such a machine)")
_NO_CUDA = "no CUDA device visible"


def _version_tuple(v: str) -> tuple[int, ...]:
    out = []
    for part in v.split(".")[:2]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits or 0))
    return tuple(out)


def _has_qdq(onnx_path: Path) -> bool:
    """True if the ONNX graph (incl. subgraphs and local functions) has a standard-domain
    ``QuantizeLinear`` node, i.e. it is an explicitly quantised (QDQ) model."""
    import onnx

    if not Path(onnx_path).is_file():
        raise FileNotFoundError(f"ONNX file not found: {onnx_path}")
    model = onnx.load(str(onnx_path), load_external_data=False)

    def graph_has(graph) -> bool:
        for node in graph.node:
            if node.op_type == "QuantizeLinear" and node.domain in ("", "ai.onnx"):
                return True
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH and graph_has(attr.g):
                    return True
                if attr.type == onnx.AttributeProto.GRAPHS and any(graph_has(g)
                                                                    for g in attr.graphs):
                    return True
        return False

    if graph_has(model.graph):
        return True
    return any(n.op_type == "QuantizeLinear" and n.domain in ("", "ai.onnx")
               for f in model.functions for n in f.node)


def _cuda_device(device: str | None) -> str:
    """TensorRT always executes from a CUDA context: ``cuda`` / ``cuda:N`` are kept, anything
    else (the generic ``CPU`` default, ``GPU``, ``AUTO``) means ``cuda:0``."""
    d = (device or "").strip().lower()
    if d == "cuda":
        return "cuda:0"
    return d if d.startswith("cuda:") else "cuda:0"


def _size_hw(value, what: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"TensorRT: opts.extra[{what!r}] must be (H, W); got {value!r}") from None
    return h, w


class TensorRTTarget:
    """ONNX → TensorRT engine.  ``opts.extra`` knobs: ``workspace_mb`` (1024), ``dla_core``
    (Jetson DLA core index; GPU fallback on), ``input_size`` (H, W: the optimisation-profile
    *opt* shape, required when H/W are symbolic), ``min_size`` / ``max_size`` (defaults: half
    and double of ``input_size``), ``max_batch`` (profile max N when N is symbolic; default 1)."""

    name = "tensorrt"
    precisions = ("fp32", "fp16", "int8")

    # -- availability ---------------------------------------------------------------------
    def available(self) -> tuple[bool, str]:
        try:
            import tensorrt as trt
        except ImportError:
            return False, _MISSING
        except Exception as e:  # a broken install (missing libnvinfer, CUDA mismatch, ...)
            return False, (f"tensorrt Python package failed to import "
                           f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
        version = str(getattr(trt, "__version__", "0"))
        if _version_tuple(version) < MIN_VERSION:
            return False, (f"tensorrt {version} is too old (this backend needs the "
                           f">= {'.'.join(map(str, MIN_VERSION))} name-based I/O API)")
        import torch

        if not torch.cuda.is_available():
            return False, _NO_CUDA
        return True, ""

    def runtime_version(self) -> str:
        try:
            import tensorrt as trt
        except Exception:
            return "not installed"
        return str(getattr(trt, "__version__", "unknown"))

    def _require(self):
        ok, why = self.available()
        if not ok:
            raise TargetUnavailable(f"TensorRT target unavailable: {why}")
        import tensorrt as trt

        return trt

    # -- compile --------------------------------------------------------------------------
    def _check_options(self, onnx_path: Path, opts: CompileOptions) -> None:
        """Everything decidable without TensorRT (runs before the availability check)."""
        if opts.precision not in self.precisions:
            raise ValueError(f"TensorRT: unknown precision {opts.precision!r}; "
                             f"choose from {self.precisions}")
        dla = opts.extra.get("dla_core")
        if dla is not None:
            if int(dla) < 0:
                raise ValueError(f"TensorRT: dla_core must be >= 0, got {dla!r}")
            if opts.precision == "fp32":
                raise ValueError("TensorRT: DLA runs FP16 or INT8 networks only; "
                                 "use precision fp16 or int8 with dla_core")
        if opts.precision == "int8" and not _has_qdq(onnx_path):
            raise ValueError(
                f"TensorRT int8 needs an explicitly quantised (QDQ) ONNX, but {onnx_path} has "
                "no QuantizeLinear nodes; quantise it first (QDQ format) or build fp16 "
                "(implicit INT8 calibration is deprecated since TensorRT 10.1 and not offered)")

    def compile(self, onnx_path: Path, out_dir: Path, opts: CompileOptions,
                outputs: list[str]) -> list[str]:
        onnx_path, out_dir = Path(onnx_path), Path(out_dir)
        self._check_options(onnx_path, opts)
        trt = self._require()
        if not onnx_path.is_file():
            raise FileNotFoundError(f"ONNX file not found: {onnx_path}")

        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        flags = 0
        if _version_tuple(trt.__version__) < (10, 0):  # 8.6: explicit batch must be requested
            flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errs = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            msg = " | ".join(" ".join(e.split()) for e in errs) or "no parser error recorded"
            raise RuntimeError(f"TensorRT ONNX parser failed on {onnx_path}: {msg}")

        net_outputs = [network.get_output(i).name for i in range(network.num_outputs)]
        missing = [n for n in (outputs or []) if n not in net_outputs]
        if missing:
            raise ValueError(f"TensorRT: outputs {missing} not in the ONNX graph "
                             f"(graph outputs: {net_outputs})")

        config = builder.create_builder_config()
        workspace_mb = int(opts.extra.get("workspace_mb", 1024))
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
        if opts.precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)  # int8: FP16 for layers left unquantised
        if opts.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)  # explicit quantisation: Q/DQ scales rule
        dla = opts.extra.get("dla_core")
        if dla is not None:
            config.default_device_type = trt.DeviceType.DLA
            config.DLA_core = int(dla)
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)

        profile = self._profile(builder, network, opts)
        if profile is not None:
            config.add_optimization_profile(profile)

        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeError(f"TensorRT engine build failed for {onnx_path} "
                               f"(precision={opts.precision}; see the TensorRT log above)")
        out_dir.mkdir(parents=True, exist_ok=True)
        final = out_dir / ENGINE_FILE
        tmp = out_dir / f".{ENGINE_FILE}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(serialized)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                tmp.unlink()
        return [ENGINE_FILE]

    @staticmethod
    def _profile(builder, network, opts: CompileOptions):
        """An optimisation profile when an input has symbolic dims (shown as -1), else None.

        N×C×H×W inputs only: N → (1, 1, max_batch); H, W → min / opt / max sizes."""
        inputs = [network.get_input(i) for i in range(network.num_inputs)]
        dynamic = [t for t in inputs if any(int(d) < 0 for d in t.shape)]
        if not dynamic:
            return None
        extra = opts.extra
        profile = builder.create_optimization_profile()
        for t in dynamic:
            shape = [int(d) for d in t.shape]
            if len(shape) != 4:
                raise ValueError(f"TensorRT: dynamic input {t.name!r} has shape {shape}; "
                                 "only N×C×H×W inputs are supported")
            if shape[1] < 0:
                raise ValueError(f"TensorRT: input {t.name!r} has a symbolic channel dim")
            if "input_size" not in extra and (shape[2] < 0 or shape[3] < 0):
                raise ValueError(
                    f"TensorRT: input {t.name!r} has symbolic H/W {shape}; pass "
                    "opts.extra['input_size'] = (H, W) (and optionally min_size / max_size) "
                    "for the optimisation profile")
            if "input_size" in extra:
                oh, ow = _size_hw(extra["input_size"], "input_size")
            else:
                oh, ow = shape[2], shape[3]
            lh, lw = _size_hw(extra.get("min_size", (max(1, oh // 2), max(1, ow // 2))),
                              "min_size")
            hh, hw = _size_hw(extra.get("max_size", (oh * 2, ow * 2)), "max_size")
            if not (lh <= oh <= hh and lw <= ow <= hw):
                raise ValueError(f"TensorRT: need min_size <= input_size <= max_size, got "
                                 f"{(lh, lw)}, {(oh, ow)}, {(hh, hw)}")
            max_n = int(extra.get("max_batch", 1))
            mins, opts_, maxs = [], [], []
            for axis, d in enumerate(shape):
                if d >= 0:
                    lo, op, hi = d, d, d
                elif axis == 0:
                    lo, op, hi = 1, 1, max(1, max_n)
                elif axis == 2:
                    lo, op, hi = lh, oh, hh
                else:
                    lo, op, hi = lw, ow, hw
                mins.append(lo)
                opts_.append(op)
                maxs.append(hi)
            profile.set_shape(t.name, tuple(mins), tuple(opts_), tuple(maxs))
        return profile

    # -- load -----------------------------------------------------------------------------
    def load(self, bundle_dir: Path, manifest: dict, opts: CompileOptions) -> TensorRTRunner:
        self._require()
        files = [f for f in manifest.get("files", []) if str(f).endswith(".engine")]
        path = Path(bundle_dir) / (files[0] if files else ENGINE_FILE)
        if not path.is_file():
            raise FileNotFoundError(f"TensorRT engine not found: {path}")
        return TensorRTRunner(path, list(manifest.get("outputs") or []),
                              device=_cuda_device(opts.device),
                              precision=manifest.get("precision", opts.precision),
                              dla_core=opts.extra.get("dla_core"))


def _torch_dtype(trt, dtype):
    """TensorRT DataType → torch dtype (names that exist in this TensorRT version only)."""
    import torch

    table = [("FLOAT", torch.float32), ("HALF", torch.float16), ("BF16", torch.bfloat16),
             ("INT8", torch.int8), ("UINT8", torch.uint8), ("INT32", torch.int32),
             ("INT64", torch.int64), ("BOOL", torch.bool)]
    for name, tdt in table:
        if hasattr(trt.DataType, name) and dtype == getattr(trt.DataType, name):
            return tdt
    raise TypeError(f"TensorRT I/O dtype {dtype} has no torch equivalent")


class TensorRTRunner:
    """Runs a serialized engine.  ``batch`` (N×3×H×W float32, host) → {output: np.ndarray}."""

    name = "tensorrt"

    def __init__(self, engine_path: Path, outputs: list[str], device: str = "cuda:0",
                 precision: str = "fp32", dla_core: int | None = None):
        import tensorrt as trt
        import torch

        self._trt, self._torch = trt, torch
        self.device = device if dla_core is None else f"{device}+DLA{int(dla_core)}"
        self.precision = precision
        self._dev = torch.device(device)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        if dla_core is not None:
            self._runtime.DLA_core = int(dla_core)
        with torch.cuda.device(self._dev):
            self._engine = self._runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
            if self._engine is None:
                raise RuntimeError(f"TensorRT could not deserialise {engine_path} (built with a "
                                   "different TensorRT version or GPU?)")
            self._context = self._engine.create_execution_context()
            if self._context is None:
                raise RuntimeError("TensorRT could not create an execution context")
            self._stream = torch.cuda.Stream(device=self._dev)

        eng = self._engine
        names = [eng.get_tensor_name(i) for i in range(eng.num_io_tensors)]
        self._inputs = [n for n in names if eng.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if eng.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(self._inputs) != 1:
            raise RuntimeError(f"TensorRT engine has inputs {self._inputs}; expected one image")
        self._dtypes = {n: _torch_dtype(trt, eng.get_tensor_dtype(n)) for n in names}
        unknown = [n for n in outputs if n not in self._outputs]
        if unknown:
            raise ValueError(f"manifest outputs {unknown} not in the engine ({self._outputs})")
        self.output_names = list(outputs) or list(self._outputs)
        self.layouts = {n: "NCHW" for n in self.output_names}
        self._cache_shape: tuple | None = None
        self._bufs: dict = {}

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        torch = self._torch
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4:
            raise ValueError(f"expected an N×3×H×W batch, got shape {batch.shape}")
        name_in = self._inputs[0]
        shape = tuple(int(s) for s in batch.shape)
        ctx = self._context
        with torch.cuda.device(self._dev), torch.cuda.stream(self._stream):
            x = torch.from_numpy(batch).to(self._dev, non_blocking=False)
            if self._dtypes[name_in] != torch.float32:
                x = x.to(self._dtypes[name_in])
            if shape != self._cache_shape:
                if not ctx.set_input_shape(name_in, shape):
                    raise ValueError(f"input shape {shape} rejected by the engine (outside its "
                                     "optimisation profile?)")
                self._bufs = {
                    n: torch.empty(tuple(int(d) for d in ctx.get_tensor_shape(n)),
                                   dtype=self._dtypes[n], device=self._dev)
                    for n in self._outputs}
                for n, buf in self._bufs.items():  # every output needs an address
                    ctx.set_tensor_address(n, buf.data_ptr())
                self._cache_shape = shape
            ctx.set_tensor_address(name_in, x.data_ptr())
            if not ctx.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            self._stream.synchronize()
            res = {}
            for n in self.output_names:
                t = self._bufs[n]
                if t.is_floating_point() and t.dtype != torch.float32:
                    t = t.float()
                res[n] = t.cpu().numpy()
        return res
