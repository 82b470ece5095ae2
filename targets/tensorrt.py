"""TensorRT target (build half): ONNX → serialized engine (``model.engine``).

Each precision is built the way the installed major supports it (:func:`build_plan`): fp32
and int8 (a Q/DQ ONNX that passes :func:`check_qdq`) as strongly typed networks, fp16 via
``BuilderFlag.FP16`` on 10.x and an FP16-cast ONNX on 11.x.  Loading and running the engine
is the runtime's :class:`~mtlsi_edge.backends.tensorrt.TensorRTBackend`.

Not yet run on an NVIDIA GPU (tested against the real API names only).  Design, build record,
DLA, Q/DQ rules and what is verified: docs/nvidia.md.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtlsi_edge.backends.tensorrt import (  # noqa: F401 - re-exported for the build half
    ENGINE_FILE,
    SUPPORTED_MAJORS,
    TensorRTBackend,
    version_problem,
    version_tuple,
)
from mtlsi_edge.errors import ConfigError
from mtlsi_edge.fileio import atomic_write_bytes
from mtlsi_edge.targets.base import (
    Compiled,
    CompileOptions,
    Int8Policy,
    ModelMismatch,
    Target,
)

DEFAULT_WORKSPACE_MB = 1024


def dla_problem(version: str) -> str | None:
    """DLA availability by version (NVIDIA 'Working with DLA' / 'Strongly Typed Networks for
    DLA' pages): 10.x on Jetson (JetPack 6); not in 11.0-11.4.0; 11.4.1+ on Jetson AGX Orin
    with JetPack 7.2.2+."""
    v = version_tuple(version)
    if v[0] == 11 and v < (11, 4, 1):
        return (f"TensorRT {version} has no DLA support (11.0 to 11.4.0); use JetPack 6 "
                "(TensorRT 10.x) or TensorRT 11.4.1+ from JetPack 7.2.2+ on Jetson AGX Orin")
    return None


def build_plan(version: str, precision: str, dla_core: int | None) -> dict:
    """How ``precision`` is built on this TensorRT version (pure: no TensorRT needed).

    Returns ``{"strongly_typed", "builder_flags", "fp16_onnx_cast", "gpu_fallback"}``;
    flag names are ``trt.BuilderFlag`` members.
    """
    major = version_tuple(version)[0]
    weak_fp16 = precision == "fp16" and major == 10
    flags = ["FP16"] if weak_fp16 else []
    if dla_core is not None:
        flags.append("GPU_FALLBACK")
    return {"strongly_typed": not weak_fp16, "builder_flags": flags,
            "fp16_onnx_cast": precision == "fp16" and major >= 11,
            "gpu_fallback": dla_core is not None}


# -- the Q/DQ rules -------------------------------------------------------------------------

#: Weight input index and output-channel axis of the ops TensorRT quantises per channel.
_WEIGHT_AXIS = {"Conv": (1, 0), "ConvTranspose": (1, 1), "MatMul": (1, -1), "Gemm": (1, None)}


def _load_onnx(path: Path):
    import onnx

    if not Path(path).is_file():
        raise FileNotFoundError(f"ONNX file not found: {path}")
    return onnx.load(str(path), load_external_data=False)


class _QDQGraph:
    """What the Q/DQ rules look up in a graph: constants (initializers and Constant nodes), the
    tensors computed from constants only, tensor ranks, and the consumers of each tensor."""

    def __init__(self, model):
        import onnx

        g = model.graph
        self.consts = {i.name: i for i in g.initializer}
        for n in g.node:
            if n.op_type == "Constant" and n.attribute and \
                    n.attribute[0].type == onnx.AttributeProto.TENSOR:
                self.consts[n.output[0]] = n.attribute[0].t
        self.producer = {o: n for n in g.node for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in g.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        # Tensors computed from constants only (e.g. a Gather of a relative-bias table):
        # TensorRT folds them into build-time weights, so they may be quantised per channel
        # like weights.
        self.const_derived = set(self.consts)
        for n in g.node:  # ONNX graphs are topologically sorted
            if all(i in self.const_derived for i in n.input if i):
                self.const_derived.update(n.output)
        inferred = onnx.shape_inference.infer_shapes(model)
        self.ranks = {vi.name: len(vi.type.tensor_type.shape.dim)
                      for vi in [*inferred.graph.value_info, *inferred.graph.input]}
        self.ranks.update({name: len(t.dims) for name, t in self.consts.items()})

    def weight_rank(self, name: str) -> int | None:
        """Rank of the constant (or constant-derived) weight behind ``name`` (itself, or the
        input of its producing Q); None for an activation."""
        p = self.producer.get(name)
        if name not in self.const_derived and p is not None and p.op_type == "QuantizeLinear":
            name = p.input[0]
        return self.ranks.get(name, 0) if name in self.const_derived else None


def qdq_problems(model) -> list[str]:
    """Every way ``model`` (an ``onnx.ModelProto``) breaks TensorRT's explicit-quantisation
    rules; an empty list means it conforms.  Checks: Q/DQ present; zero points INT8 and all 0
    (signed, symmetric); scales constant and positive; activations per tensor; per-channel
    scales only on a weight, along its output-channel axis."""
    import onnx

    graph = _QDQGraph(model)
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
           and n.domain in ("", "ai.onnx")]
    if not any(n.op_type == "QuantizeLinear" for n in qdq):
        return ["no QuantizeLinear nodes (not an explicitly quantised Q/DQ model)"]
    problems = []
    for n in qdq:
        where = f"{n.op_type} {n.name or n.output[0]!r}"
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        problems += [f"{where}: {p}" for p in _zero_point_problems(n, attrs, graph.consts)]
        problems += [f"{where}: {p}" for p in _scale_problems(n, attrs, graph)]
    return problems


def _zero_point_problems(n, attrs: dict, consts: dict) -> list[str]:
    """What is wrong with the zero point of Q/DQ node ``n`` (at most one problem)."""
    import onnx
    from onnx import numpy_helper

    zp_name = n.input[2] if len(n.input) > 2 else ""
    if zp_name and zp_name not in consts:
        return ["zero point is not a constant"]
    if zp_name:
        zp = consts[zp_name]
        if zp.data_type != onnx.TensorProto.INT8:
            kind = onnx.TensorProto.DataType.Name(zp.data_type)
            return [f"zero point is {kind}; TensorRT needs signed INT8"]
        if np.any(numpy_helper.to_array(zp) != 0):
            return ["zero point is not 0 (asymmetric); TensorRT needs symmetric quantisation"]
    elif n.op_type == "QuantizeLinear" and \
            attrs.get("output_dtype", onnx.TensorProto.UINT8) != onnx.TensorProto.INT8:
        return ["no INT8 zero point, so the output is UINT8 (the ONNX default); TensorRT needs "
                "signed INT8"]
    return []


def _scale_problems(n, attrs: dict, graph: _QDQGraph) -> list[str]:
    """What is wrong with the scale of Q/DQ node ``n``: not a positive constant, per channel
    on an activation, or on a weight along another axis than its output channels."""
    from onnx import numpy_helper

    if n.input[1] not in graph.consts:
        return ["scale is not a constant"]
    problems = []
    s = numpy_helper.to_array(graph.consts[n.input[1]])
    if np.any(~np.isfinite(s)) or np.any(s <= 0):
        problems.append("scale has non-positive or non-finite values")
    if s.size <= 1:
        return problems
    rank = graph.weight_rank(n.input[0])
    if rank is None:
        return problems + ["per-channel scale on an activation; TensorRT quantises activations "
                           "per tensor"]
    axis = attrs.get("axis", 1)
    axis = axis + rank if axis < 0 else axis
    if n.op_type != "DequantizeLinear":
        return problems  # the DQ that feeds the consumer carries the same axis
    for c in graph.consumers.get(n.output[0], []):
        if c.op_type not in _WEIGHT_AXIS:
            continue
        idx, want = _WEIGHT_AXIS[c.op_type]
        if c.op_type == "Gemm":
            want = 0 if next((a.i for a in c.attribute if a.name == "transB"), 0) else 1
        want = want + rank if want < 0 else want
        if list(c.input).index(n.output[0]) == idx and axis != want:
            problems.append(f"per-channel axis {axis} on the {c.op_type} weight; TensorRT needs "
                            f"the output-channel axis {want}")
    return problems


def check_qdq(onnx_path: Path) -> None:
    """Refuse, with one line, a Q/DQ ONNX TensorRT cannot build (see :func:`qdq_problems`)."""
    problems = qdq_problems(_load_onnx(onnx_path))
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ModelMismatch(f"{onnx_path} is not a TensorRT-ready Q/DQ model: {problems[0]}{more}; "
                            "quantise with `mtlsi-edge quantize --format onnx --target tensorrt`")


def cast_fp16(src: Path, dst: Path) -> Path:
    """Write ``src`` with FP16 weights and compute, FP32 inputs/outputs (what a strongly typed
    FP16 build needs on TensorRT 11, where ``BuilderFlag.FP16`` is gone)."""
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(src))
    onnx.save(float16.convert_float_to_float16(model, keep_io_types=True), str(dst))
    return dst


def _size_hw(value, what: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"TensorRT: {what} must be (H, W); got {value!r}") from None
    return h, w


def _own(opts: CompileOptions) -> TensorRTOptions:
    """The TensorRT knobs of ``opts`` (the defaults when none were given)."""
    return opts.target_options or TensorRTOptions()


@dataclass(frozen=True)
class TensorRTOptions:
    """``compile --target tensorrt`` knobs (the CLI option of each is its name in kebab
    case; the last three are library-only).

    workspace_mb: the builder's workspace (MiB).  dla_core: Jetson DLA core (GPU fallback on).
    timing_cache: a file read before and written after the build.  input_size: (H, W), the
    optimisation-profile *opt* shape, required when H/W are symbolic.  min_size / max_size:
    default half / double of ``input_size``.  max_batch: profile max N when N is symbolic.
    """

    workspace_mb: int = DEFAULT_WORKSPACE_MB
    dla_core: int | None = None
    timing_cache: Path | None = None
    input_size: tuple[int, int] | None = None
    min_size: tuple[int, int] | None = None
    max_size: tuple[int, int] | None = None
    max_batch: int = 1


class TensorRTTarget(TensorRTBackend, Target):
    """ONNX → TensorRT engine, with :class:`TensorRTOptions` (``opts.target_options``)."""

    # quantize --target tensorrt: signed symmetric Q/DQ that passes qdq_problems
    int8 = Int8Policy("onnx", symmetric_signed=True, problems=lambda m: qdq_problems(m),
                      rules="tensorrt")
    options_type = TensorRTOptions

    # -- compile --------------------------------------------------------------------------
    def _check_options(self, onnx_path: Path, opts: CompileOptions) -> None:
        """Everything decidable without TensorRT (runs before the availability check)."""
        if opts.precision not in self.precisions:
            raise ConfigError(f"TensorRT: unknown precision {opts.precision!r}; "
                              f"choose from {', '.join(self.precisions)}")
        own = _own(opts)
        dla = own.dla_core
        if dla is not None:
            if int(dla) < 0:
                raise ConfigError(f"TensorRT: --dla-core must be >= 0, got {dla}")
            if opts.precision == "fp32":
                raise ConfigError("TensorRT: DLA runs FP16 or INT8 networks only; "
                                  "use --precision fp16 or int8 with --dla-core")
        if int(own.workspace_mb) <= 0:
            raise ConfigError("TensorRT: --workspace-mb must be > 0")
        if opts.precision == "int8":
            check_qdq(onnx_path)
        elif not Path(onnx_path).is_file():
            raise FileNotFoundError(f"ONNX file not found: {onnx_path}")

    def compile(self, onnx_path: Path, out_dir: Path, opts: CompileOptions,
                outputs: list[str]) -> Compiled:
        onnx_path, out_dir = Path(onnx_path), Path(out_dir)
        self._check_options(onnx_path, opts)
        trt = self._require()
        version = str(trt.__version__)
        dla = _own(opts).dla_core
        dla = None if dla is None else int(dla)
        if dla is not None and dla_problem(version):
            raise ConfigError(dla_problem(version))
        plan = build_plan(version, opts.precision, dla)
        with tempfile.TemporaryDirectory(prefix=".trt-build.") as tmp:
            src = cast_fp16(onnx_path, Path(tmp) / "fp16.onnx") if plan["fp16_onnx_cast"] \
                else onnx_path
            serialized, record = self._build(trt, src, plan, opts, outputs, dla)
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out_dir / ENGINE_FILE, bytes(serialized))
        record.update(version=version, precision=opts.precision, dla_core=dla, **plan)
        return Compiled([ENGINE_FILE], {"tensorrt": record})

    def _build(self, trt, src: Path, plan: dict, opts: CompileOptions, outputs: list[str],
               dla: int | None):
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        flags = 0
        if plan["strongly_typed"]:  # required on 10.x for Q/DQ; implied (ignored) on 11.x
            flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(src)):
            errs = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            msg = " | ".join(" ".join(e.split()) for e in errs) or "no parser error recorded"
            raise RuntimeError(f"TensorRT ONNX parser failed on {src}: {msg}")
        net_outputs = [network.get_output(i).name for i in range(network.num_outputs)]
        missing = [n for n in (outputs or []) if n not in net_outputs]
        if missing:
            raise ModelMismatch(f"TensorRT: outputs {missing} not in the ONNX graph "
                                f"(graph outputs: {net_outputs})")

        config = builder.create_builder_config()
        own = _own(opts)
        workspace_mb = int(own.workspace_mb)
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
        for name in plan["builder_flags"]:
            config.set_flag(getattr(trt.BuilderFlag, name))
        record: dict = {"workspace_mb": workspace_mb}
        if dla is not None:
            config.default_device_type = trt.DeviceType.DLA
            config.DLA_core = dla
            record["layer_placement"] = self._placement(network, config)
        profile, record["profile"] = self._profile(builder, network, opts)
        if profile is not None:
            config.add_optimization_profile(profile)

        cache_path = own.timing_cache
        if cache_path:
            cache_path = Path(cache_path)
            blob = cache_path.read_bytes() if cache_path.is_file() else b""
            cache = config.create_timing_cache(blob)
            # ignore_mismatch=False: a cache from another GPU / TensorRT is not reused.
            if not config.set_timing_cache(cache, False):
                cache = config.create_timing_cache(b"")
                config.set_timing_cache(cache, False)
            record["timing_cache"] = str(cache_path)

        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeError(f"TensorRT engine build failed for {src} "
                               f"(precision={opts.precision}; see the TensorRT log above)")
        if cache_path:
            atomic_write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))
        return serialized, record

    @staticmethod
    def _placement(network, config) -> dict:
        """Which layers the builder can put on the DLA; the rest fall back to the GPU."""
        on_dla, on_gpu = [], []
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            (on_dla if config.can_run_on_DLA(layer) else on_gpu).append(layer.name)
        return {"dla_layers": len(on_dla), "gpu_fallback_layers": len(on_gpu),
                "gpu_fallback": on_gpu}

    @staticmethod
    def _profile(builder, network, opts: CompileOptions):
        """(profile, record) when an input has symbolic dims (shown as -1), else (None, None).

        N×C×H×W inputs only: N → (1, 1, max_batch); H, W → min / opt / max sizes."""
        inputs = [network.get_input(i) for i in range(network.num_inputs)]
        dynamic = [t for t in inputs if any(int(d) < 0 for d in t.shape)]
        if not dynamic:
            return None, None
        own = _own(opts)
        profile = builder.create_optimization_profile()
        record = {}
        for t in dynamic:
            shape = [int(d) for d in t.shape]
            if len(shape) != 4:
                raise ModelMismatch(f"TensorRT: dynamic input {t.name!r} has shape {shape}; "
                                    "only N×C×H×W inputs are supported")
            if shape[1] < 0:
                raise ModelMismatch(f"TensorRT: input {t.name!r} has a symbolic channel dim")
            if own.input_size is None and (shape[2] < 0 or shape[3] < 0):
                raise ConfigError(
                    f"TensorRT: input {t.name!r} has symbolic H/W; pass --input-size HxW "
                    "(TensorRTOptions.input_size) for the optimisation profile")
            if own.input_size is not None:
                oh, ow = _size_hw(own.input_size, "input_size")
            else:
                oh, ow = shape[2], shape[3]
            lh, lw = _size_hw(own.min_size or (max(1, oh // 2), max(1, ow // 2)), "min_size")
            hh, hw = _size_hw(own.max_size or (oh * 2, ow * 2), "max_size")
            if not (lh <= oh <= hh and lw <= ow <= hw):
                raise ConfigError(f"TensorRT: need min_size <= input_size <= max_size, got "
                                  f"{(lh, lw)}, {(oh, ow)}, {(hh, hw)}")
            max_n = max(1, int(own.max_batch))
            dims = {0: (1, 1, max_n), 2: (lh, oh, hh), 3: (lw, ow, hw)}
            mins, opts_, maxs = zip(*[(d, d, d) if d >= 0 else dims[ax]
                                      for ax, d in enumerate(shape)])
            profile.set_shape(t.name, tuple(mins), tuple(opts_), tuple(maxs))
            record[t.name] = {"min": list(mins), "opt": list(opts_), "max": list(maxs)}
        return profile, record

