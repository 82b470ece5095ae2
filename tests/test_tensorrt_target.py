"""TensorRT target without a GPU: version dispatch, the real API names of 10.x / 11.x, the
build / load / run code paths against a stand-in that accepts only those names, the manifest
round trip of the DLA core and workspace, and refusals.

The stand-in (:class:`FakeTRT`) is built from ``tests/tensorrt_api/tensorrt-X.Y.json``, the
names NVIDIA's bindings wheels expose (``tests/tensorrt_api/extract_names.py``): reading or
setting any attribute the real module of that version does not have raises AttributeError, as
the real module would.  Its "engine" is the parsed ONNX run by ONNX Runtime, and its execution
context reads and writes the raw addresses the runner hands it, so the buffer and shape logic
is checked by value.  CUDA is faked too, without torch: :class:`CPURunner` replaces the
runner's CUDA hooks with numpy-backed memory and records each call, and :class:`FakeCudart`
stands in for cuda-python's ``cuda.bindings.runtime`` (availability, and one run through the
real hooks).  Real-engine tests at the end skip unless TensorRT and a GPU are present.
"""

from __future__ import annotations

import ast
import contextlib
import ctypes
import dataclasses
import gc
import importlib.machinery
import importlib.util
import json
import sys
import types
import warnings
from enum import IntEnum
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import one_error_line
from onnx import TensorProto, helper

import mtlsi_edge.backends.tensorrt as backend
from mtlsi_edge.backends.tensorrt import TensorRTRunner, _cudart, _numpy_dtype
from mtlsi_edge.targets.base import CompileOptions, TargetUnavailable
from mtlsi_edge.targets.tensorrt import (
    ENGINE_FILE,
    TensorRTOptions,
    TensorRTTarget,
    build_plan,
    cast_fp16,
    dla_problem,
    qdq_problems,
    version_problem,
)

API_DIR = Path(__file__).parent / "tensorrt_api"
VERSIONS = {json.loads(p.read_text())["tensorrt_version"]: p
            for p in sorted(API_DIR.glob("tensorrt-*.json"))}
AVAILABLE, REASON = TensorRTTarget().available()
needs_trt = pytest.mark.skipif(not AVAILABLE, reason=REASON or "TensorRT available")
pytestmark = pytest.mark.usefixtures("torch_one_thread")


def api_names(version: str) -> set[str]:
    doc = json.loads(VERSIONS[version].read_text())
    return set(doc["so_names"]) | set(doc["python_names"])


def has_name(names: set[str], name: str) -> bool:
    """Present as a stored string or at the end of one (the linker merges "INT8" into
    "UINT8"'s tail)."""
    return name in names or any(s.endswith(name) for s in names)


# -- the name lists themselves ---------------------------------------------------------------

def test_name_lists_cover_both_supported_majors():
    majors = {int(v.split(".")[0]) for v in VERSIONS}
    assert majors == {10, 11}
    for v in VERSIONS:
        doc = json.loads(VERSIONS[v].read_text())
        assert doc["command"].startswith("pip download --no-deps tensorrt-cu1")
        assert len(doc["so_names"]) > 3000 and "__version__" in doc["python_names"]


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_removed_in_11_names_are_absent_there(version):
    """The oracle can say no: 11.x dropped the weak-typing flags (NVIDIA's 10.x → 11.x
    migration page), 10.x still has them."""
    names = api_names(version)
    gone = ["OBEY_PRECISION_CONSTRAINTS", "EXPLICIT_BATCH", "platform_has_fast_fp16"]
    present = {n: has_name(names, n) for n in ["FP16", *gone]}
    if version.startswith("11."):
        assert not any(present.values()), present
    else:
        assert all(present.values()), present


# -- a stand-in tensorrt module that accepts only the real names -----------------------------

class Tok(str):
    """An enum member / constant of the stand-in (``int()`` gives its bit index)."""

    def __int__(self) -> int:
        return 3


class Obj:
    """An object of the stand-in: attribute reads and writes are checked against the API."""

    def __init__(self, api: FakeTRT, label: str, call=None, **members):
        object.__setattr__(self, "_api", api)
        object.__setattr__(self, "_label", label)
        object.__setattr__(self, "_call", call)
        object.__setattr__(self, "_members", members)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        self._api.check(name)
        return self._members.get(name, Tok(f"{self._label}.{name}"))

    def __setattr__(self, name, value):
        self._api.check(name)
        self._api.calls.append(("set", self._label, name, value))

    def __call__(self, *args):
        return self._call(*args)


class FakeTRT(types.ModuleType):
    """``tensorrt`` as version ``version`` exposes it; every name used is recorded."""

    def __init__(self, version: str, can_run_on_dla=lambda layer: True):
        super().__init__("tensorrt")
        # torch._dynamo looks modules up with find_spec, which needs a spec
        self.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
        self.names, self.used, self.calls = api_names(version), set(), []
        self.__version__ = version
        self.engines: dict[bytes, bytes] = {}  # serialized "engine" → the parsed ONNX
        api = self
        ns = {}
        for enum in ("BuilderFlag", "NetworkDefinitionCreationFlag", "MemoryPoolType",
                     "DeviceType", "TensorIOMode"):
            ns[enum] = Obj(api, enum)
        ns["Logger"] = Obj(api, "Logger", call=lambda sev: Obj(api, "logger"))
        ns["Builder"] = lambda logger: api._builder()
        ns["OnnxParser"] = lambda network, logger: api._parser(network)
        ns["Runtime"] = lambda logger: api._runtime()
        self._can_run_on_dla = can_run_on_dla
        self._ns = ns

    def __getattr__(self, name):  # module attributes
        if name.startswith("__") or name in ("names", "used", "calls", "engines", "_ns",
                                              "_can_run_on_dla"):
            raise AttributeError(name)
        self.check(name)
        return self._ns.get(name, Tok(f"tensorrt.{name}"))

    def check(self, name: str) -> None:
        if not has_name(self.names, name):
            raise AttributeError(f"TensorRT {self.__version__} has no attribute {name!r}")
        self.used.add(name)

    # -- builder side ---------------------------------------------------------------------
    def _builder(self):
        api = self

        def create_network(flags):
            api.calls.append(("create_network", flags))
            api.network = api._network()
            return api.network

        def build(network, config):
            api.calls.append(("build",))
            blob = f"ENGINE{len(api.engines)}".encode()
            api.engines[blob] = api.parsed
            return memoryview(blob)

        return Obj(api, "builder", create_network=create_network,
                   create_builder_config=lambda: api._config(),
                   create_optimization_profile=lambda: Obj(
                       api, "profile",
                       set_shape=lambda *a: api.calls.append(("set_shape", *a))),
                   build_serialized_network=build)

    def _network(self):
        api = self
        layers = [Obj(api, "layer", name=f"layer{i}") for i in range(3)]
        return Obj(api, "network", num_layers=3, get_layer=lambda i: layers[i],
                   num_inputs=1, num_outputs=0)

    def _parser(self, network):
        api = self

        def parse(path):
            import onnxruntime as ort

            api.parsed = Path(path).read_bytes()  # the build's temp files do not outlive it
            model = onnx.load(str(path))
            api.calls.append(("parse", path))
            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            inp = sess.get_inputs()[0]
            shape = [d if isinstance(d, int) else -1 for d in inp.shape]
            outs = [o.name for o in sess.get_outputs()]
            members = network._members
            members.update(num_inputs=1, get_input=lambda i: Obj(api, "tensor", name=inp.name,
                                                                 shape=shape),
                           num_outputs=len(outs),
                           get_output=lambda i: Obj(api, "tensor", name=outs[i]))
            api.parsed_initializer_types = {i.data_type for i in model.graph.initializer}
            return True

        return Obj(api, "parser", parse_from_file=parse, num_errors=0,
                   get_error=lambda i: "")

    def _config(self):
        api = self

        def create_timing_cache(blob):
            api.calls.append(("create_timing_cache", bytes(blob)))
            return Obj(api, "timing_cache", serialize=lambda: memoryview(b"CACHE+" + blob))

        def set_timing_cache(cache, ignore_mismatch):
            api.calls.append(("set_timing_cache", ignore_mismatch))
            api.cache = cache
            return True

        return Obj(api, "config",
                   set_memory_pool_limit=lambda pool, size: api.calls.append(("pool", pool,
                                                                              size)),
                   set_flag=lambda f: api.calls.append(("flag", f)),
                   add_optimization_profile=lambda p: api.calls.append(("add_profile",)),
                   can_run_on_DLA=self._can_run_on_dla,
                   create_timing_cache=create_timing_cache, set_timing_cache=set_timing_cache,
                   get_timing_cache=lambda: api.cache)

    # -- runtime side: the "engine" runs the parsed ONNX in ONNX Runtime --------------------
    def _runtime(self):
        api = self
        return Obj(api, "runtime", deserialize_cuda_engine=lambda blob: api._engine(
            api.engines.get(bytes(blob))))

    def _engine(self, onnx_bytes):
        import onnxruntime as ort

        if onnx_bytes is None:
            return None
        api = self
        sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        name_in = sess.get_inputs()[0].name
        names = [name_in] + [o.name for o in sess.get_outputs()]

        def ctx():
            state = {"addr": {}, "shape": None}

            def set_input_shape(name, shape):
                api.calls.append(("set_input_shape", name, tuple(shape)))
                if shape[-1] > 4096:  # the stand-in's "optimisation profile"
                    return False
                state["shape"] = tuple(shape)
                state["out"] = dict(zip(names[1:], sess.run(
                    None, {name_in: np.zeros(shape, np.float32)})))
                return True

            def set_tensor_address(name, ptr):
                api.calls.append(("set_tensor_address", name))
                state["addr"][name] = ptr

            def execute(stream):
                n = int(np.prod(state["shape"]))
                x = np.ctypeslib.as_array((ctypes.c_float * n).from_address(
                    state["addr"][name_in])).reshape(state["shape"]).copy()
                for name, y in zip(names[1:], sess.run(None, {name_in: x})):
                    y = np.ascontiguousarray(y, np.float32)
                    ctypes.memmove(state["addr"][name], y.ctypes.data, y.nbytes)
                return True

            return Obj(api, "context", set_input_shape=set_input_shape,
                       get_tensor_shape=lambda name: state["out"][name].shape,
                       set_tensor_address=set_tensor_address, execute_async_v3=execute)

        return Obj(api, "engine", num_io_tensors=len(names),
                   get_tensor_name=lambda i: names[i],
                   get_tensor_mode=lambda n: Tok("TensorIOMode.INPUT" if n == name_in
                                                 else "TensorIOMode.OUTPUT"),
                   get_tensor_dtype=lambda n: Tok("tensorrt.float32"),
                   create_execution_context=ctx)


# -- a stand-in CUDA: numpy-backed "device" memory, every call recorded ----------------------

class CPURunner(TensorRTRunner):
    """The real runner with its CUDA hooks on numpy-backed host memory: ``memory`` holds the
    live "device" buffers by address, ``cuda_calls`` records each hook call."""

    def __init__(self, *args, **kw):
        self.cuda_calls, self.memory = [], {}
        super().__init__(*args, **kw)

    def _live(self, ptr: int, nbytes: int) -> None:
        assert self.memory[ptr].nbytes >= nbytes, "copy past the end of a device buffer"

    def _load_cuda(self):
        return None

    def _set_device(self):
        self.cuda_calls.append(("set_device", self._device_index))

    def _new_stream(self):
        self.cuda_calls.append(("stream_create",))
        return "stream"

    def _stream_handle(self) -> int:
        return 0

    def _malloc(self, nbytes):
        buf = np.zeros(nbytes, np.uint8)
        self.memory[buf.ctypes.data] = buf
        self.cuda_calls.append(("malloc", nbytes, buf.ctypes.data))
        return buf.ctypes.data

    def _free(self, ptr):
        del self.memory[ptr]  # KeyError: a double free or a pointer never allocated
        self.cuda_calls.append(("free", ptr))

    def _copy_in(self, ptr, host):
        self._live(ptr, host.nbytes)
        ctypes.memmove(ptr, host.ctypes.data, host.nbytes)
        self.cuda_calls.append(("copy_in", ptr, host.nbytes))

    def _copy_out(self, host, ptr):
        self._live(ptr, host.nbytes)
        ctypes.memmove(host.ctypes.data, ptr, host.nbytes)
        self.cuda_calls.append(("copy_out", ptr, host.nbytes))

    def _synchronize(self):
        self.cuda_calls.append(("synchronize",))

    def _destroy_stream(self, stream):
        self.cuda_calls.append(("stream_destroy", stream))


class Err(IntEnum):  # cuda-python's cudaError_t: an int enum with a name
    cudaSuccess = 0
    cudaErrorMemoryAllocation = 2
    cudaErrorInsufficientDriver = 35


class Kind(IntEnum):  # cudaMemcpyKind
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


class Stream:  # cudaStream_t: an opaque handle that int() turns into its address
    def __int__(self) -> int:
        return 0


class FakeCudart(types.ModuleType):
    """``cuda.bindings.runtime`` as far as the backend uses it, with the signatures of
    cuda-bindings 12.9's ``runtime.pyx``: each call returns ``(cudaError_t, *values)``; device
    memory is numpy-backed; ``calls`` records (name, args)."""

    cudaError_t, cudaMemcpyKind = Err, Kind

    def __init__(self, devices=1, count_error=Err.cudaSuccess):
        super().__init__("cuda.bindings.runtime")
        self.devices, self.count_error = devices, count_error
        self.calls, self.memory, self.fail = [], {}, set()

    def _ret(self, name, *args, values=()):
        self.calls.append((name, *args))
        err = Err.cudaErrorMemoryAllocation if name in self.fail else Err.cudaSuccess
        return (err, *([None] * len(values) if err else values))

    def cudaGetDeviceCount(self):
        return (self.count_error, None if self.count_error else self.devices)

    def cudaSetDevice(self, device: int):
        return self._ret("cudaSetDevice", device)

    def cudaStreamCreate(self):
        return self._ret("cudaStreamCreate", values=(Stream(),))

    def cudaStreamSynchronize(self, stream):
        return self._ret("cudaStreamSynchronize")

    def cudaStreamDestroy(self, stream):
        return self._ret("cudaStreamDestroy")

    def cudaMalloc(self, size: int):
        buf = np.zeros(size, np.uint8)
        result = self._ret("cudaMalloc", size, values=(buf.ctypes.data,))
        if not result[0]:
            self.memory[buf.ctypes.data] = buf
        return result

    def cudaFree(self, ptr):
        del self.memory[ptr]
        return self._ret("cudaFree")

    def cudaMemcpyAsync(self, dst, src, count: int, kind: Kind, stream):
        device = dst if kind == Kind.cudaMemcpyHostToDevice else src
        assert self.memory[device].nbytes >= count and stream is not None
        ctypes.memmove(dst, src, count)
        return self._ret("cudaMemcpyAsync", kind.name)


@pytest.fixture
def fake_cuda(monkeypatch):
    """``fake_cuda(**kw)`` installs a :class:`FakeCudart` as cuda-python's runtime module."""

    def install(**kw) -> FakeCudart:
        rt = FakeCudart(**kw)
        pkg = types.ModuleType("cuda.bindings")
        pkg.runtime = rt
        monkeypatch.setitem(sys.modules, "cuda", types.ModuleType("cuda"))
        monkeypatch.setitem(sys.modules, "cuda.bindings", pkg)
        monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", rt)
        monkeypatch.setitem(sys.modules, "cuda.bindings.utils", None)
        return rt

    return install


@pytest.fixture
def fake_trt(monkeypatch, fake_cuda):
    """``fake_trt(version)`` installs the stand-in as ``tensorrt`` (one CUDA device visible,
    runners on the CPU)."""
    fake_cuda()
    monkeypatch.setattr(backend, "TensorRTRunner", CPURunner)

    def install(version: str, **kw) -> FakeTRT:
        fake = FakeTRT(version, **kw)
        monkeypatch.setitem(sys.modules, "tensorrt", fake)
        return fake

    return install


# -- version dispatch ------------------------------------------------------------------------

def test_version_dispatch():
    assert version_problem("10.3.0.26") is None and version_problem("11.4.0.106") is None
    for v, word in [("8.6.1", "too old"), ("9.3.0", "too old"), ("12.0.1", "newer")]:
        msg = version_problem(v)
        assert word in msg and "10.x and 11.x" in msg and "pip install" in msg
        assert "\n" not in msg
    assert dla_problem("10.3.0") is None and dla_problem("11.4.1") is None
    assert "no DLA" in dla_problem("11.1.0.106") and "no DLA" in dla_problem("11.4.0")


def test_build_plan_per_major():
    assert build_plan("10.3.0", "fp16", None) == {
        "strongly_typed": False, "builder_flags": ["FP16"], "fp16_onnx_cast": False,
        "gpu_fallback": False}
    assert build_plan("11.1.0", "fp16", None) == {
        "strongly_typed": True, "builder_flags": [], "fp16_onnx_cast": True,
        "gpu_fallback": False}
    for v in ("10.16.1", "11.4.0"):
        assert build_plan(v, "int8", None)["strongly_typed"]
        assert build_plan(v, "int8", None)["builder_flags"] == []
        assert build_plan(v, "fp32", None)["builder_flags"] == []
    assert build_plan("10.3.0", "int8", 0)["builder_flags"] == ["GPU_FALLBACK"]


@pytest.mark.parametrize("version", sorted(VERSIONS))
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_every_name_used_exists_in_every_supported_version(fake_trt, tiny_qdq, tiny_dyn_onnx,
                                                           tmp_path, version, precision):
    """compile → load → run on the stand-in of each version: any TensorRT name the target
    uses that this version lacks raises AttributeError here."""
    trt = fake_trt(version)
    src = tiny_qdq if precision == "int8" else tiny_dyn_onnx
    opts = CompileOptions(precision=precision, target_options=TensorRTOptions(
        input_size=(32, 48), timing_cache=tmp_path / "trt.cache"))
    t = TensorRTTarget()
    built = t.compile(src, tmp_path, opts, ["y"])
    assert built.files == [ENGINE_FILE] and opts == CompileOptions(  # opts untouched
        precision=precision, target_options=TensorRTOptions(
            input_size=(32, 48), timing_cache=tmp_path / "trt.cache"))
    rec = built.record["tensorrt"]
    assert rec["version"] == version and rec["precision"] == precision
    net_flags = [c[1] for c in trt.calls if c[0] == "create_network"]
    strongly = precision != "fp16" or version.startswith("11.")
    assert net_flags == [1 << 3 if strongly else 0]
    flags = [c[1] for c in trt.calls if c[0] == "flag"]
    assert flags == (["BuilderFlag.FP16"] if not strongly else [])
    if precision == "fp16" and version.startswith("11."):  # FP16 lives in the parsed graph
        assert TensorProto.FLOAT16 in trt.parsed_initializer_types
    runner = t.load(tmp_path, {"files": {ENGINE_FILE: ""}, "outputs": ["y"],
                               "precision": precision, "tensorrt": rec}, CompileOptions())
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 48)).astype(np.float32)
    assert runner(x)["y"].shape == (1, 4, 16, 24)
    assert ("STRONGLY_TYPED" in trt.used) == strongly and "execute_async_v3" in trt.used


@pytest.mark.parametrize("version", ["11.1.0.106", "11.4.0.106"])
def test_removed_flag_would_fail_on_11(fake_trt, version):
    """The stand-in really refuses what 11.x removed (the bug this target fixes)."""
    trt = fake_trt(version)
    with pytest.raises(AttributeError, match="FP16"):
        trt.BuilderFlag.FP16  # noqa: B018
    with pytest.raises(AttributeError, match="EXPLICIT_BATCH"):
        trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH  # noqa: B018


def test_dla_build_records_placement_and_load_reapplies_core(fake_trt, tiny_dyn_onnx, tmp_path):
    trt = fake_trt("10.3.0", can_run_on_dla=lambda layer: layer.name != "layer1")
    opts = CompileOptions(precision="fp16", target_options=TensorRTOptions(
        dla_core=1, workspace_mb=256, input_size=(32, 48)))
    rec = TensorRTTarget().compile(tiny_dyn_onnx, tmp_path, opts, ["y"]).record["tensorrt"]
    assert rec["dla_core"] == 1 and rec["workspace_mb"] == 256 and rec["gpu_fallback"]
    assert rec["layer_placement"] == {"dla_layers": 2, "gpu_fallback_layers": 1,
                                      "gpu_fallback": ["layer1"]}
    assert ("set", "config", "DLA_core", 1) in trt.calls
    assert ("set", "config", "default_device_type", "DeviceType.DLA") in trt.calls
    assert ("pool", "MemoryPoolType.WORKSPACE", 256 << 20) in trt.calls
    assert ("flag", "BuilderFlag.GPU_FALLBACK") in trt.calls
    assert ("set_shape", "image", (1, 3, 16, 24), (1, 3, 32, 48), (1, 3, 64, 96)) in trt.calls
    # load takes the DLA core from the manifest record, not from the caller's options
    runner = TensorRTTarget().load(tmp_path, {"files": {ENGINE_FILE: ""}, "outputs": ["y"],
                                              "tensorrt": rec}, CompileOptions())
    assert ("set", "runtime", "DLA_core", 1) in trt.calls
    assert runner.device.endswith("+DLA1")


def test_dla_refused_on_11_before_build(fake_trt, tiny_dyn_onnx, tmp_path):
    trt = fake_trt("11.4.0.106")
    opts = CompileOptions(precision="fp16",
                          target_options=TensorRTOptions(dla_core=0, input_size=(32, 48)))
    with pytest.raises(ValueError, match="no DLA support") as e:
        TensorRTTarget().compile(tiny_dyn_onnx, tmp_path, opts, ["y"])
    assert "\n" not in str(e.value) and not [c for c in trt.calls if c[0] == "build"]


def test_load_refuses_engine_from_other_version(fake_trt, tmp_path):
    fake_trt("10.3.0")
    (tmp_path / ENGINE_FILE).write_bytes(b"x")
    with pytest.raises(TargetUnavailable, match="built with TensorRT 11.1.0.106"):
        TensorRTTarget().load(tmp_path, {"files": {ENGINE_FILE: ""}, "outputs": ["y"],
                                         "tensorrt": {"version": "11.1.0.106"}},
                              CompileOptions())


def test_timing_cache_is_read_and_written(fake_trt, tiny_dyn_onnx, tmp_path):
    trt = fake_trt("11.4.0.106")
    cache = tmp_path / "trt.cache"
    cache.write_bytes(b"OLD")
    opts = CompileOptions(target_options=TensorRTOptions(input_size=(32, 48), timing_cache=cache))
    TensorRTTarget().compile(tiny_dyn_onnx, tmp_path / "b", opts, ["y"])
    assert ("create_timing_cache", b"OLD") in trt.calls
    assert ("set_timing_cache", False) in trt.calls
    assert cache.read_bytes() == b"CACHE+OLD"


def _built(tiny_dyn_onnx, tmp_path) -> dict:
    """Compile ``tiny_dyn_onnx`` on the stand-in; the manifest ``load`` takes."""
    opts = CompileOptions(target_options=TensorRTOptions(input_size=(32, 48)))
    built = TensorRTTarget().compile(tiny_dyn_onnx, tmp_path, opts, ["y"])
    return {"files": {ENGINE_FILE: ""}, "outputs": ["y"], "tensorrt": built.record["tensorrt"]}


def test_runner_buffers_follow_the_input_shape(fake_trt, tiny_dyn_onnx, tmp_path):
    """Buffers are allocated per shape (the old ones freed first), every I/O tensor gets an
    address, each call copies the input in and every output back before one synchronise,
    values are those of the graph (ONNX Runtime on the same ONNX), "cuda:1" is device 1, and
    close() frees everything once."""
    import onnxruntime as ort

    trt = fake_trt("10.16.1.11")
    runner = TensorRTTarget().load(tmp_path, _built(tiny_dyn_onnx, tmp_path),
                                   CompileOptions(device="cuda:1"))
    ref = ort.InferenceSession(str(tiny_dyn_onnx), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    shapes = [(1, 3, 32, 48), (1, 3, 32, 48), (2, 3, 16, 40), (1, 3, 32, 48)]
    per_call = []
    for shape in shapes:
        x = rng.standard_normal(shape).astype(np.float32)
        start = len(runner.cuda_calls)
        got = runner(x)["y"]
        np.testing.assert_allclose(got, ref.run(["y"], {"image": x})[0], rtol=1e-5, atol=1e-5)
        per_call.append([c[0] for c in runner.cuda_calls[start:]])
        out = [c for c in runner.cuda_calls[start:] if c[0] == "copy_out"]
        assert out == [("copy_out", runner._bufs["y"], got.nbytes)]  # the current "y" buffer
    set_shapes = [c[2] for c in trt.calls if c[0] == "set_input_shape"]
    assert set_shapes == [shapes[0], shapes[2], shapes[3]]  # not for a repeat
    assert trt.calls.count(("set_tensor_address", "y")) == 3
    assert trt.calls.count(("set_tensor_address", "image")) == 3
    realloc = ["set_device", "malloc", "malloc", "copy_in", "copy_out", "synchronize"]
    assert per_call == [realloc, ["set_device", "copy_in", "copy_out", "synchronize"],
                        ["set_device", "free", "free", *realloc[1:]],
                        ["set_device", "free", "free", *realloc[1:]]]
    assert {c for c in runner.cuda_calls if c[0] == "set_device"} == {("set_device", 1)}
    assert runner.device == "cuda:1" and len(runner.memory) == 2
    with pytest.raises(ValueError, match="outside its optimisation profile"):
        runner(np.zeros((1, 3, 8, 5000), np.float32))
    with pytest.raises(ValueError, match="N×3×H×W"):
        runner(np.zeros((3, 8, 8), np.float32))
    runner(np.zeros(shapes[0], np.float32))
    memory, calls = runner.memory, runner.cuda_calls
    runner.close()
    assert memory == {} and calls[-1] == ("stream_destroy", "stream")
    n = len(calls)
    runner.close()
    del runner
    gc.collect()
    assert len(calls) == n  # closed once: no second free or destroy, none from __del__


def test_runner_frees_when_garbage_collected(fake_trt, tiny_dyn_onnx, tmp_path):
    fake_trt("11.4.0.106")
    runner = TensorRTTarget().load(tmp_path, _built(tiny_dyn_onnx, tmp_path), CompileOptions())
    runner(np.zeros((1, 3, 32, 48), np.float32))
    memory, calls = runner.memory, runner.cuda_calls
    assert len(memory) == 2
    del runner
    gc.collect()
    assert memory == {} and calls[-1][0] == "stream_destroy"
    assert [c[0] for c in calls].count("free") == 2


def test_runner_close_reports_cuda_errors_but_del_never_raises(fake_trt, tiny_dyn_onnx,
                                                                tmp_path):
    fake_trt("10.3.0")
    runner = TensorRTTarget().load(tmp_path, _built(tiny_dyn_onnx, tmp_path), CompileOptions())
    runner(np.zeros((1, 3, 32, 48), np.float32))
    runner.memory.clear()  # every free now fails (KeyError) ...
    with pytest.raises(KeyError):
        runner.close()
    assert runner.cuda_calls[-1][0] == "stream_destroy"  # ... and the stream is still destroyed
    with pytest.raises(RuntimeError, match="closed"):
        runner(np.zeros((1, 3, 32, 48), np.float32))
    broken = TensorRTTarget().load(tmp_path, _built(tiny_dyn_onnx, tmp_path), CompileOptions())
    broken._destroy_stream = None  # not callable: close() raises TypeError
    broken.__del__()  # swallowed


def test_runner_real_hooks_call_cuda_python(fake_trt, fake_cuda, tiny_dyn_onnx, tmp_path):
    """The runner's own hooks (not CPURunner's) against a stand-in ``cuda.bindings.runtime``:
    the calls, their order and copy directions, and a failed call as a one-line error."""
    fake_trt("10.16.1.11")
    _built(tiny_dyn_onnx, tmp_path)
    rt = fake_cuda()
    runner = TensorRTRunner(tmp_path / ENGINE_FILE, ["y"], device="cuda:0")
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 48)).astype(np.float32)
    assert runner(x)["y"].shape == (1, 4, 16, 24)
    runner(x)
    runner.close()
    assert rt.calls == [
        ("cudaSetDevice", 0), ("cudaStreamCreate",),
        ("cudaSetDevice", 0), ("cudaMalloc", x.nbytes), ("cudaMalloc", 4 * 4 * 16 * 24),
        ("cudaMemcpyAsync", "cudaMemcpyHostToDevice"),
        ("cudaMemcpyAsync", "cudaMemcpyDeviceToHost"), ("cudaStreamSynchronize",),
        ("cudaSetDevice", 0), ("cudaMemcpyAsync", "cudaMemcpyHostToDevice"),
        ("cudaMemcpyAsync", "cudaMemcpyDeviceToHost"), ("cudaStreamSynchronize",),
        ("cudaSetDevice", 0), ("cudaFree",), ("cudaFree",), ("cudaStreamDestroy",)]
    assert rt.memory == {}
    rt.fail.add("cudaMalloc")
    runner = TensorRTRunner(tmp_path / ENGINE_FILE, ["y"], device="cuda:0")
    with pytest.raises(RuntimeError) as e:
        runner(x)
    assert str(e.value) == ("CUDA cudaMalloc(18432) failed: cudaErrorMemoryAllocation (2)")


def test_numpy_dtypes(fake_trt):
    trt = fake_trt("10.3.0")  # the one name list where the bindings' "bool" string survives
    for name, want in [("float32", np.float32), ("float16", np.float16), ("int8", np.int8),
                       ("uint8", np.uint8), ("int32", np.int32), ("int64", np.int64),
                       ("bool", np.bool_)]:
        assert _numpy_dtype(trt, getattr(trt, name)) == np.dtype(want)
    with pytest.raises(TypeError, match="'depth' is bfloat16") as e:
        _numpy_dtype(trt, trt.bfloat16, "depth")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="cuda:N"):
        TensorRTRunner(Path("x.engine"), [], device="gpu0")


def test_runtime_half_never_imports_torch():
    tree = ast.parse(Path(backend.__file__).read_text())
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in imported if m.split(".")[0] == "torch"], imported


def test_bundle_round_trip_records_dla_and_workspace(fake_trt, tiny_checkpoint, tmp_path):
    """compile_bundle → load_bundle → Predictor: the manifest keeps the DLA core / workspace,
    and loading re-applies the core (the stand-in engine runs the real model's ONNX)."""
    from mtlsi_edge.bundle import load_bundle
    from mtlsi_edge.compiler import CompileRequest, compile_bundle
    from mtlsi_edge.runtime.predictor import Predictor

    trt = fake_trt("10.3.0")
    opts = CompileOptions(target_options=TensorRTOptions(dla_core=0, workspace_mb=128))
    out = compile_bundle(tmp_path / "trt", CompileRequest("tensorrt", "fp16",
                                                          checkpoint=tiny_checkpoint, options=opts))
    m, _ = load_bundle(out)
    rec = m["tensorrt"]
    assert (rec["dla_core"], rec["workspace_mb"], rec["version"]) == (0, 128, "10.3.0")
    assert rec["builder_flags"] == ["FP16", "GPU_FALLBACK"] and not rec["strongly_typed"]
    assert rec["layer_placement"]["gpu_fallback_layers"] == 0
    assert m["parity"]["per_task"]["semseg"]["argmax_agree_pct"] > 99
    n_before = trt.calls.count(("set", "runtime", "DLA_core", 0))
    pred = Predictor.from_bundle(out)
    assert trt.calls.count(("set", "runtime", "DLA_core", 0)) == n_before + 1
    assert pred.runner.device.endswith("+DLA0")


def test_cli_compile_passes_tensorrt_options(fake_trt, tiny_checkpoint, tmp_path):
    from typer.testing import CliRunner

    from mtlsi_edge.bundle import load_bundle
    from mtlsi_edge.cli import app

    fake_trt("10.3.0")
    out, cache = tmp_path / "b", tmp_path / "t.cache"
    res = CliRunner().invoke(app, [str(a) for a in (
        "compile", "--target", "tensorrt", "--precision", "fp16", "--checkpoint",
        tiny_checkpoint, "--out", out, "--dla-core", 1, "--workspace-mb", 64,
        "--timing-cache", cache)])
    assert res.exit_code == 0, res.output
    rec = load_bundle(out)[0]["tensorrt"]
    assert (rec["dla_core"], rec["workspace_mb"], rec["timing_cache"]) == (1, 64, str(cache))
    assert cache.is_file()


@pytest.mark.parametrize("args,fragment", [
    (["--target", "onnxruntime", "--dla-core", "0"], "applies to --target tensorrt only"),
    (["--target", "tensorrt", "--input-size", "12x12"], "bad size"),
])
def test_cli_compile_option_errors_are_one_line(tiny_onnx, tmp_path, args, fragment):
    from typer.testing import CliRunner

    from mtlsi_edge.cli import app

    res = CliRunner().invoke(app, ["compile", "--onnx", str(tiny_onnx), "--out",
                                   str(tmp_path / "b"), *args])
    one_error_line(res, fragment, code=2)
    assert not (tmp_path / "b").exists()


# -- refusals that need no TensorRT ----------------------------------------------------------

@pytest.fixture
def no_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None,
                    reason="tensorrt is installed here")
def test_available_here_says_what_to_install():
    ok, why = TensorRTTarget().available()
    assert not ok and "not installed" in why and 'pip install "mtlsi-edge[tensorrt]"' in why
    assert "JetPack" in why and TensorRTTarget().runtime_version() == "not installed"


def test_available_rejects_unsupported_versions(monkeypatch, fake_cuda):
    fake_cuda()
    for v in ("8.6.1", "12.0.0"):
        monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__=v))
        ok, why = TensorRTTarget().available()
        assert not ok and v in why and "10.x and 11.x" in why


def test_available_needs_cuda_python_and_a_device(monkeypatch, fake_cuda):
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.3.0"))
    fake_cuda(devices=1)
    assert TensorRTTarget().available() == (True, "")
    fake_cuda(devices=0)
    assert TensorRTTarget().available() == (False, "no CUDA device visible")
    fake_cuda(count_error=Err.cudaErrorInsufficientDriver)  # what a machine without a GPU says
    assert TensorRTTarget().available() == (
        False, "no CUDA device visible (cudaErrorInsufficientDriver)")
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)  # cuda-python < 12.6.1 ...
    monkeypatch.setitem(sys.modules, "cuda", types.SimpleNamespace(cudart=FakeCudart()))
    assert TensorRTTarget().available() == (True, "") and isinstance(_cudart(), FakeCudart)
    monkeypatch.setitem(sys.modules, "cuda", None)  # ... or none at all
    ok, why = TensorRTTarget().available()
    assert not ok and "pip install cuda-python" in why and "PyPI" in why and "\n" not in why


def test_int8_refuses_non_conforming_qdq_before_tensorrt(no_tensorrt, tiny_dyn_onnx,
                                                         tiny_qdq_uint8, tmp_path):
    t = TensorRTTarget()
    with pytest.raises(ValueError, match="no QuantizeLinear") as e:
        t.compile(tiny_dyn_onnx, tmp_path, CompileOptions(precision="int8"), ["y"])
    assert "quantize --format onnx --target tensorrt" in str(e.value)
    with pytest.raises(ValueError, match="UINT8") as e:
        t.compile(tiny_qdq_uint8, tmp_path, CompileOptions(precision="int8"), ["y"])
    assert "\n" not in str(e.value)


def test_option_validation(no_tensorrt, tiny_dyn_onnx, tmp_path):
    t = TensorRTTarget()
    with pytest.raises(ValueError, match="precision"):
        t.compile(tiny_dyn_onnx, tmp_path, CompileOptions(precision="int4"), ["y"])
    with pytest.raises(ValueError, match="DLA runs FP16 or INT8"):
        t.compile(tiny_dyn_onnx, tmp_path,
                  CompileOptions(target_options=TensorRTOptions(dla_core=0)), ["y"])
    with pytest.raises(FileNotFoundError):
        t.compile(tmp_path / "nope.onnx", tmp_path, CompileOptions(precision="int8"), ["y"])
    with pytest.raises(TargetUnavailable, match="not installed"):
        t.compile(tiny_dyn_onnx, tmp_path, CompileOptions(), ["y"])


# -- the Q/DQ rules on hand-made graphs (real NNCF output: test_tensorrt_qdq.py) -------------

def _qdq_model(zp_type=TensorProto.INT8, zp_val=0, w_axis=0, act_scale_shape=()):
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    inits = [
        helper.make_tensor("sa", TensorProto.FLOAT, list(act_scale_shape),
                           [0.05] * int(np.prod(act_scale_shape or [1]))),
        helper.make_tensor("za", zp_type, list(act_scale_shape),
                           [zp_val] * int(np.prod(act_scale_shape or [1]))),
        onnx.numpy_helper.from_array(w, "w"),
        helper.make_tensor("sw", TensorProto.FLOAT, [w.shape[w_axis]], [0.01] * w.shape[w_axis]),
        helper.make_tensor("zw", TensorProto.INT8, [w.shape[w_axis]], [0] * w.shape[w_axis]),
    ]
    nodes = [helper.make_node("QuantizeLinear", ["x", "sa", "za"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sa", "za"], ["xd"]),
             helper.make_node("QuantizeLinear", ["w", "sw", "zw"], ["wq"], axis=w_axis),
             helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["wd"], axis=w_axis),
             helper.make_node("Conv", ["xd", "wd"], ["y"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                             [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                             [1, 4, 8, 8])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_qdq_rules_on_small_nncf_output(tiny_dyn_onnx, tiny_qdq):
    """Real NNCF on a small graph: the CPU settings break the rules (UINT8 after ReLU), the
    tensorrt settings pass (the full model: test_tensorrt_qdq.py, -m slow)."""
    from mtlsi_edge.quantize.ptq import PtqSettings, quantize_model
    from mtlsi_edge.targets import get_target

    items = [np.random.default_rng(i).standard_normal((1, 3, 32, 48)).astype(np.float32)
             for i in range(4)]
    q, _ = quantize_model(onnx.load(str(tiny_dyn_onnx)), items,
                          get_target("onnxruntime").int8,
                          PtqSettings(ignore="none", transformer=False))
    problems = qdq_problems(q)
    assert problems and all("UINT8" in p for p in problems), problems
    assert qdq_problems(onnx.load(str(tiny_qdq))) == []


def test_per_tensor_weight_scheme(tiny_dyn_onnx):
    """``PtqSettings.per_channel_weights=False`` gives each conv weight one scale (the scheme
    benchmarks/int8_schemes.py measures); the default keeps one per output channel."""
    from mtlsi_edge.quantize.ptq import PtqSettings, quantize_model
    from mtlsi_edge.targets import get_target

    items = [np.random.default_rng(i).standard_normal((1, 3, 32, 48)).astype(np.float32)
             for i in range(4)]

    def weight_scale_sizes(settings: PtqSettings) -> list[int]:
        q, info = quantize_model(onnx.load(str(tiny_dyn_onnx)), items,
                                 get_target("onnxruntime").int8, settings)
        assert info["per_channel_weights"] == settings.per_channel_weights
        inits = {i.name: i for i in q.graph.initializer}
        return [int(np.prod(inits[n.input[1]].dims)) for n in q.graph.node
                if n.op_type == "DequantizeLinear" and n.input[0] in inits]

    base = PtqSettings(ignore="none", transformer=False)
    assert sorted(weight_scale_sizes(base)) == [4, 8]
    assert weight_scale_sizes(dataclasses.replace(base, per_channel_weights=False)) == [1, 1]


def test_qdq_rules_on_hand_made_graphs():
    assert qdq_problems(_qdq_model()) == []
    assert "UINT8" in qdq_problems(_qdq_model(zp_type=TensorProto.UINT8))[0]
    assert "asymmetric" in qdq_problems(_qdq_model(zp_val=3))[0]
    assert "output-channel axis 0" in qdq_problems(_qdq_model(w_axis=1))[0]
    assert "per-channel scale on an activation" in qdq_problems(
        _qdq_model(act_scale_shape=(3,)))[0]


# -- FP16 cast used for TensorRT 11 -----------------------------------------------------------

def test_cast_fp16_keeps_fp32_io_and_values(tiny_dyn_onnx, tmp_path):
    import onnxruntime as ort

    dst = cast_fp16(tiny_dyn_onnx, tmp_path / "fp16.onnx")
    m = onnx.load(str(dst))
    assert {i.data_type for i in m.graph.initializer} == {TensorProto.FLOAT16}
    assert m.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert m.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 48)).astype(np.float32)
    runs = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(
        ["y"], {"image": x})[0] for p in (tiny_dyn_onnx, dst)]
    assert runs[1].dtype == np.float32
    np.testing.assert_allclose(runs[1], runs[0], atol=2e-2, rtol=2e-2)


# -- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_dyn_onnx(tmp_path_factory) -> Path:
    """conv(3→8, s2) → ReLU → conv(8→4), symbolic N/H/W, input "image", output "y"."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 4, 3, padding=1)).eval()
    path = tmp_path_factory.mktemp("trt") / "tiny.onnx"
    with contextlib.redirect_stdout(None), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, 3, 32, 48),), str(path), input_names=["image"],
                          output_names=["y"], opset_version=17, dynamo=False,
                          dynamic_axes={"image": {0: "N", 2: "H", 3: "W"},
                                        "y": {0: "N", 2: "h", 3: "w"}})
    return path


@pytest.fixture(scope="module")
def tiny_qdq(tiny_dyn_onnx, tmp_path_factory) -> Path:
    """``tiny_dyn_onnx`` quantised by NNCF for TensorRT (the real quantiser, 4 samples)."""
    from mtlsi_edge.quantize.ptq import PtqSettings, quantize_model
    from mtlsi_edge.targets import get_target

    items = [np.random.default_rng(i).standard_normal((1, 3, 32, 48)).astype(np.float32)
             for i in range(4)]
    q, _ = quantize_model(onnx.load(str(tiny_dyn_onnx)), items, get_target("tensorrt").int8,
                          PtqSettings(ignore="none", transformer=False))
    path = tmp_path_factory.mktemp("trt") / "tiny_qdq.onnx"
    onnx.save(q, str(path))
    return path


@pytest.fixture(scope="module")
def tiny_qdq_uint8(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("trt") / "uint8.onnx"
    onnx.save(_qdq_model(zp_type=TensorProto.UINT8), str(path))
    return path


# -- needs TensorRT and a CUDA GPU (skipped here) --------------------------------------------

@needs_trt
@pytest.mark.parametrize("precision,tol", [("fp32", 1e-2), ("fp16", 5e-2)])
def test_real_engine_matches_onnxruntime(tiny_dyn_onnx, tmp_path, precision, tol):
    import onnxruntime as ort

    t = TensorRTTarget()
    opts = CompileOptions(precision=precision, device="cuda:0",
                          target_options=TensorRTOptions(input_size=(32, 48)))
    built = t.compile(tiny_dyn_onnx, tmp_path, opts, ["y"])
    runner = t.load(tmp_path, {"files": built.files, "outputs": ["y"], "precision": precision,
                               "tensorrt": built.record["tensorrt"]}, opts)
    ref = ort.InferenceSession(str(tiny_dyn_onnx), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 48)).astype(np.float32)
    np.testing.assert_allclose(runner(x)["y"], ref.run(["y"], {"image": x})[0], atol=tol,
                               rtol=tol)
