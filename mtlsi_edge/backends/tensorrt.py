"""TensorRT backend: runs a bundle's serialized engine (``model.engine``) with
``execute_async_v3`` (:class:`TensorRTRunner`).  CUDA memory and the stream come from NVIDIA's
cuda-python (``cuda.bindings.runtime``, as in TensorRT's own Python samples), not from torch:
this is the runtime half, which never imports torch.

Supports TensorRT 10.x (JetPack 6 on Jetson, optional DLA core) and 11.x (desktop/server pip
wheels); other majors are refused by ``available()`` with the reason.  Building engines is the
build half's :mod:`mtlsi_edge.targets.tensorrt`.

Not yet run on an NVIDIA GPU (tested against the real TensorRT API names and a CPU stand-in of
the cuda-python calls only).  Design, build record, DLA and what is verified: docs/nvidia.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtlsi_edge.backends.base import Backend, RunOptions, TargetUnavailable
from mtlsi_edge.precisions import PRECISIONS

ENGINE_FILE = "model.engine"
SUPPORTED_MAJORS = (10, 11)
INSTALL_HINT = ('pip install "mtlsi-edge[tensorrt]" on x86-64 Linux with CUDA 13; on Jetson '
                "use the TensorRT that JetPack 6 installs")
_MISSING = f"tensorrt Python package not installed ({INSTALL_HINT})"
_NO_CUDA = "no CUDA device visible"
_NO_CUDA_PYTHON = ("cuda-python not installed (the TensorRT runner's CUDA buffers and stream "
                   "use it): pip install cuda-python, 12.x for CUDA 12 (JetPack 6) or 13.x for "
                   "CUDA 13; NVIDIA publishes it on PyPI for x86-64 and aarch64 Linux")


def version_tuple(v: str) -> tuple[int, int, int]:
    """``"10.3.0.26"`` → ``(10, 3, 0)`` (missing or non-numeric parts count as 0)."""
    out = []
    for part in (str(v).split(".") + ["0", "0", "0"])[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits or 0))
    return out[0], out[1], out[2]


def version_problem(version: str) -> str | None:
    """None when this TensorRT version is supported, else the one-line reason."""
    major = version_tuple(version)[0]
    if major in SUPPORTED_MAJORS:
        return None
    which = "too old" if major < SUPPORTED_MAJORS[0] else "newer than this target knows"
    return (f"tensorrt {version} is {which}: the tensorrt target supports 10.x and 11.x "
            f"({INSTALL_HINT})")


def _cuda_device(device: str | None) -> str:
    """TensorRT runs from a CUDA context: ``cuda`` / ``cuda:N`` are kept, anything else (the
    generic ``CPU`` default, ``GPU``, ``AUTO``) means ``cuda:0``."""
    d = (device or "").strip().lower()
    if d == "cuda":
        return "cuda:0"
    return d if d.startswith("cuda:") else "cuda:0"


def _device_index(device: str) -> int:
    """``"cuda:N"`` → N (``"cuda"`` → 0)."""
    d = device.strip().lower()
    index = "0" if d == "cuda" else d[len("cuda:"):] if d.startswith("cuda:") else ""
    if not index.isdigit():
        raise ValueError(f"TensorRT device {device!r} is not cuda or cuda:N")
    return int(index)


def _cudart():
    """cuda-python's CUDA runtime module: ``cuda.bindings.runtime`` (cuda-python >= 12.6.1;
    the only name in 13.x) or ``cuda.cudart`` (older releases).  ImportError when neither."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        from cuda import cudart as runtime
    return runtime


def _err_code(err) -> int:
    """cuda-python returns ``(cudaError_t, *values)``; the enum's value (0: cudaSuccess)."""
    return int(getattr(err, "value", err))


def _err_name(err) -> str:
    return str(getattr(err, "name", err))


def _cuda_call(what: str, result):
    """The values of a cuda-python call (None, one value or a tuple); one-line RuntimeError
    naming the call and the CUDA error when its error code is not cudaSuccess."""
    err, values = result[0], tuple(result[1:])
    if _err_code(err):
        raise RuntimeError(f"CUDA {what} failed: {_err_name(err)} ({_err_code(err)})")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _native_handle(obj) -> int:
    """The address behind a cuda-python handle (``cudaStream_t``) as an int, as
    ``execute_async_v3`` takes it; ``get_cuda_native_handle`` where it exists (cuda-python
    12.9.1+ deprecates ``int(handle)``), else ``int``."""
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:
        return int(obj)
    try:
        return int(get_cuda_native_handle(obj))
    except TypeError:  # a plain int (or a type that release does not register)
        return int(obj)


class TensorRTBackend(Backend):
    """A bundle's serialized TensorRT engine → :class:`TensorRTRunner`."""

    name = "tensorrt"
    precisions = PRECISIONS
    default_device = "cuda:0"

    # -- availability ---------------------------------------------------------------------
    def available(self) -> tuple[bool, str]:
        try:
            import tensorrt as trt
        except ImportError:
            return False, _MISSING
        except Exception as e:  # a broken install (missing libnvinfer, CUDA mismatch, ...)
            first = str(e).splitlines()[0] if str(e) else ""
            return False, f"tensorrt Python package failed to import ({type(e).__name__}: {first})"
        problem = version_problem(str(getattr(trt, "__version__", "0")))
        if problem:
            return False, problem
        try:
            rt = _cudart()
        except ImportError:
            return False, _NO_CUDA_PYTHON
        except Exception as e:  # a broken install
            first = str(e).splitlines()[0] if str(e) else ""
            return False, f"cuda-python failed to import ({type(e).__name__}: {first})"
        try:
            result = rt.cudaGetDeviceCount()
        except Exception as e:
            return False, f"{_NO_CUDA} (cudaGetDeviceCount raised {type(e).__name__})"
        if _err_code(result[0]):  # no driver, no device, driver too old for this cuda-python
            return False, f"{_NO_CUDA} ({_err_name(result[0])})"
        if not result[1]:
            return False, _NO_CUDA
        return True, ""

    def runtime_version(self) -> str:
        try:
            import tensorrt as trt
        except Exception:
            return "not installed"
        return str(getattr(trt, "__version__", "unknown"))

    def _require(self):
        self.require("TensorRT target unavailable")
        import tensorrt as trt

        return trt

    # -- load -----------------------------------------------------------------------------
    def load(self, bundle_dir: Path, manifest: dict, opts: RunOptions) -> TensorRTRunner:
        trt = self._require()
        built = manifest.get("tensorrt") or {}
        have = str(trt.__version__)
        if built.get("version") and version_tuple(built["version"]) != version_tuple(have):
            raise TargetUnavailable(f"engine built with TensorRT {built['version']}, this "
                                    f"machine has {have}; recompile the bundle here")
        files = [f for f in manifest.get("files", []) if str(f).endswith(".engine")]
        path = Path(bundle_dir) / (files[0] if files else ENGINE_FILE)
        if not path.is_file():
            raise FileNotFoundError(f"TensorRT engine not found: {path}")
        dla = opts.extra.get("dla_core", built.get("dla_core"))
        return TensorRTRunner(path, list(manifest.get("outputs") or []),
                              device=_cuda_device(opts.device),
                              precision=manifest.get("precision", opts.precision),
                              dla_core=dla)


#: TensorRT DataType → numpy dtype, through the module-level ``trt.float32`` ... aliases
#: (present in 10.x and 11.x, unlike ``trt.DataType`` whose name 10.3's bindings do not list).
_NUMPY_DTYPES = (("float32", np.float32), ("float16", np.float16), ("int8", np.int8),
                 ("uint8", np.uint8), ("int32", np.int32), ("int64", np.int64),
                 ("bool", np.bool_))


def _numpy_dtype(trt, dtype, name: str = "") -> np.dtype:
    for trt_name, np_type in _NUMPY_DTYPES:
        if hasattr(trt, trt_name) and dtype == getattr(trt, trt_name):
            return np.dtype(np_type)
    what = f"TensorRT I/O tensor {name!r}" if name else "TensorRT I/O tensor"
    if hasattr(trt, "bfloat16") and dtype == trt.bfloat16:
        raise TypeError(f"{what} is bfloat16, which numpy has no type for; build the engine "
                        "with FP32 or FP16 inputs and outputs")
    raise TypeError(f"{what} has dtype {dtype}, which has no numpy equivalent here")


class TensorRTRunner:
    """Runs a serialized engine.  ``batch`` (N×3×H×W float32, host) → {output: np.ndarray}.

    Device memory is cuda-python's ``cudaMalloc``; the input is copied in and every output
    copied back with ``cudaMemcpyAsync`` on the runner's own stream, then the stream is
    synchronised.  Input and output buffers are (re)allocated only when the input shape
    changes, and every I/O tensor gets its address then, before ``execute_async_v3``.

    Host memory is the caller's pageable numpy array in and fresh numpy arrays out, not pinned
    (``cudaMallocHost``) staging buffers: each call ends in a stream synchronise anyway, so
    pinned memory's asynchronous overlap gains nothing, and filling a pinned buffer costs the
    same host copy that the driver's staging of pageable memory does; it would also be host
    memory to free.  Worth measuring on a GPU before changing.

    :meth:`close` (also called on garbage collection) frees the device buffers and the stream.
    The CUDA calls are the small ``_set_device`` ... ``_destroy_stream`` hooks, so a test can
    run all the buffer logic on the CPU with numpy-backed fakes."""

    name = "tensorrt"

    def __init__(self, engine_path: Path, outputs: list[str], device: str = "cuda:0",
                 precision: str = "fp32", dla_core: int | None = None):
        import tensorrt as trt

        self._trt = trt
        self._bufs: dict[str, int] = {}  # I/O tensor name → device pointer
        self._stream = None
        self._cache_shape: tuple | None = None
        self.device = device if dla_core is None else f"{device}+DLA{int(dla_core)}"
        self.precision = precision
        self._device_index = _device_index(device)
        self._cuda = self._load_cuda()
        self._set_device()  # the engine and the stream belong to the current device
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        if dla_core is not None:
            self._runtime.DLA_core = int(dla_core)
        self._engine = self._runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self._engine is None:
            raise RuntimeError(f"TensorRT could not deserialise {engine_path} (built with a "
                               "different TensorRT version or GPU?)")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise RuntimeError("TensorRT could not create an execution context")
        self._stream = self._new_stream()

        eng = self._engine
        names = [eng.get_tensor_name(i) for i in range(eng.num_io_tensors)]
        self._inputs = [n for n in names if eng.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if eng.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(self._inputs) != 1:
            raise RuntimeError(f"TensorRT engine has inputs {self._inputs}; expected one image")
        self._dtypes = {n: _numpy_dtype(trt, eng.get_tensor_dtype(n), n) for n in names}
        unknown = [n for n in outputs if n not in self._outputs]
        if unknown:
            raise ValueError(f"manifest outputs {unknown} not in the engine ({self._outputs})")
        self.output_names = list(outputs) or list(self._outputs)
        self.layouts = {n: "NCHW" for n in self.output_names}
        self._shapes: dict[str, tuple[int, ...]] = {}

    # -- device hooks: cuda-python (a test replaces them to run on the CPU) ------------------
    def _load_cuda(self):
        return _cudart()

    def _set_device(self) -> None:
        _cuda_call(f"cudaSetDevice({self._device_index})",
                   self._cuda.cudaSetDevice(self._device_index))

    def _new_stream(self):
        return _cuda_call("cudaStreamCreate", self._cuda.cudaStreamCreate())

    def _stream_handle(self) -> int:
        return _native_handle(self._stream)

    def _malloc(self, nbytes: int) -> int:
        return int(_cuda_call(f"cudaMalloc({nbytes})", self._cuda.cudaMalloc(nbytes)))

    def _free(self, ptr: int) -> None:
        _cuda_call("cudaFree", self._cuda.cudaFree(ptr))

    def _copy_in(self, ptr: int, host: np.ndarray) -> None:
        rt = self._cuda
        _cuda_call("cudaMemcpyAsync (host to device)", rt.cudaMemcpyAsync(
            ptr, host.ctypes.data, host.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice,
            self._stream))

    def _copy_out(self, host: np.ndarray, ptr: int) -> None:
        rt = self._cuda
        _cuda_call("cudaMemcpyAsync (device to host)", rt.cudaMemcpyAsync(
            host.ctypes.data, ptr, host.nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost,
            self._stream))

    def _synchronize(self) -> None:
        _cuda_call("cudaStreamSynchronize", self._cuda.cudaStreamSynchronize(self._stream))

    def _destroy_stream(self, stream) -> None:
        _cuda_call("cudaStreamDestroy", self._cuda.cudaStreamDestroy(stream))

    # -- buffers ---------------------------------------------------------------------------
    def _free_buffers(self) -> list[Exception]:
        """Free every device buffer (all are tried); the errors, not raised."""
        bufs, self._bufs, self._cache_shape = self._bufs, {}, None
        errors = []
        for ptr in bufs.values():
            try:
                self._free(ptr)
            except Exception as e:
                errors.append(e)
        return errors

    def _allocate(self, shape: tuple[int, ...]) -> None:
        """Buffers for input shape ``shape``: the old ones freed, one per I/O tensor, each
        address handed to the context."""
        ctx, name_in = self._context, self._inputs[0]
        errors = self._free_buffers()
        if errors:
            raise errors[0]
        if not ctx.set_input_shape(name_in, shape):
            raise ValueError(f"input shape {shape} rejected by the engine (outside its "
                             "optimisation profile?)")
        shapes = {name_in: shape}
        for n in self._outputs:
            dims = tuple(int(d) for d in ctx.get_tensor_shape(n))
            if any(d < 0 for d in dims):
                raise RuntimeError(f"TensorRT output {n!r} has a data-dependent shape {dims}; "
                                   "the runner needs static output shapes per input shape")
            shapes[n] = dims
        for n, dims in shapes.items():  # every I/O tensor needs an address
            nbytes = int(np.prod(dims, dtype=np.int64)) * self._dtypes[n].itemsize
            self._bufs[n] = self._malloc(max(nbytes, 1))
            ctx.set_tensor_address(n, self._bufs[n])
        self._shapes = shapes
        self._cache_shape = shape

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if self._stream is None:
            raise RuntimeError("TensorRT runner is closed")
        batch = np.asarray(batch)
        if batch.ndim != 4:
            raise ValueError(f"expected an N×3×H×W batch, got shape {batch.shape}")
        name_in = self._inputs[0]
        x = np.ascontiguousarray(batch, dtype=self._dtypes[name_in])
        shape = tuple(int(s) for s in x.shape)
        self._set_device()  # the CUDA current device is per host thread
        if shape != self._cache_shape:
            self._allocate(shape)
        self._copy_in(self._bufs[name_in], x)
        if not self._context.execute_async_v3(self._stream_handle()):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        host = {n: np.empty(self._shapes[n], self._dtypes[n]) for n in self.output_names}
        for n, arr in host.items():
            self._copy_out(arr, self._bufs[n])
        self._synchronize()
        return {n: arr.astype(np.float32) if arr.dtype == np.float16 else arr
                for n, arr in host.items()}

    # -- lifetime --------------------------------------------------------------------------
    def close(self) -> None:
        """Free the device buffers and destroy the stream (idempotent).  Everything is tried;
        the first CUDA error is then raised."""
        stream = getattr(self, "_stream", None)
        if not getattr(self, "_bufs", None) and stream is None:
            return
        try:  # free on the runner's device, whichever thread closes it
            self._set_device()
        except Exception:
            pass
        errors = self._free_buffers()
        self._stream = None
        if stream is not None:
            try:
                self._destroy_stream(stream)
            except Exception as e:
                errors.append(e)
        if errors:
            raise errors[0]

    def __enter__(self) -> TensorRTRunner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown, CUDA already torn down: nothing to report to
            pass
