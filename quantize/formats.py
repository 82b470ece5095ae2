"""The two model formats NNCF quantises, behind one interface: the OpenVINO IR
(``openvino.Model``) and ONNX (``onnx.ModelProto``, quantised to Q/DQ).

Each format reads the exported FP32 ONNX, lists node names (for ignored scopes), finds the
activation × activation MatMuls, lists the heavy ops left in float, prepares a model for
inference in this machine's runtime and writes the result.  :data:`FORMATS` is the registry
(:class:`~mtlsi_edge.targets.Int8Policy.format` names the entry): no code branches on a format.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtlsi_edge.fileio import atomic_write_files
from mtlsi_edge.targets.base import RuntimeRefused

#: Ops a MatMul input may pass through and still count as a constant (weights).
_PASS_THROUGH = {"Convert", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Cast",
                 "DequantizeLinear", "Identity"}


def named(out: Path, suffix: str) -> Path:
    """``out`` + suffix (``out.with_suffix`` would eat a dot in the user's stem)."""
    return out.with_name(out.name + suffix)


class IRFormat:
    """OpenVINO IR: NNCF's OpenVINO backend; the CPU plugin runs candidates."""

    name = "openvino"
    suffix = ".xml"

    def read(self, path: Path):
        """The ONNX export converted (or an IR of it read) into an ``openvino.Model``."""
        import openvino as ov

        if Path(path).suffix == ".xml":
            return ov.Core().read_model(str(path))
        return ov.convert_model(str(path))

    def native_source(self, onnx_path: Path) -> Path:
        """The export converted once into an FP32 IR beside it (``NAME.xml``): the FP32
        bundle and the quantisation of one deploy both read it instead of converting twice."""
        import openvino as ov

        xml = Path(onnx_path).with_suffix(".xml")
        ov.save_model(ov.convert_model(str(onnx_path)), str(xml), compress_to_fp16=False)
        return xml

    def op_names(self, model) -> list[str]:
        return [op.get_friendly_name() for op in model.get_ops()]

    def activation_matmuls(self, model) -> list[str]:
        def is_const(node) -> bool:
            while node.get_type_name() in _PASS_THROUGH:
                node = node.input_value(0).get_node()
            return node.get_type_name() == "Constant"

        return [op.get_friendly_name() for op in model.get_ops()
                if op.get_type_name() == "MatMul"
                and not any(is_const(op.input_value(i).get_node()) for i in range(2))]

    def float_heavy_ops(self, model) -> list[str]:
        heavy = ("Convolution", "GroupConvolution", "MatMul")
        return [op.get_friendly_name() for op in model.get_ops()
                if op.get_type_name() in heavy and not any(
                    op.input_value(i).get_node().get_type_name() == "FakeQuantize"
                    for i in range(op.get_input_size()))]

    def nncf_input(self, x: np.ndarray):
        return x

    def inference_model(self, model, fp32: bool):
        """A compiled model, as its bundle runs it: FP32 in f32; an INT8 model with its float
        parts at the CPU's default precision (BF16 on BF16 CPUs), like OpenVINORunner.  (That
        choice decides accuracy: the batched INT8 IR is wrong with the f32 hint on an
        AVX-512/AMX CPU and right without it; docs/known-issues.md.)"""
        import openvino as ov

        from mtlsi_edge.backends.openvino import first_line

        cfg = {"INFERENCE_PRECISION_HINT": "f32"} if fp32 else {}
        try:
            return ov.Core().compile_model(model, "CPU", cfg)
        except RuntimeError as e:  # this CPU plugin refuses the model: say why, once
            raise RuntimeRefused(f"OpenVINO cannot compile the {'FP32' if fp32 else 'INT8'} "
                                 f"model on this CPU: {first_line(e)}") from None

    def write(self, model, src: Path, out: Path) -> Path:
        """The model beside ``out`` (atomically; the .bin first, then the .xml)."""
        import openvino as ov

        return atomic_write_files(
            named(out, ".xml"), lambda tmp: ov.save_model(model, tmp, compress_to_fp16=False),
            companions=(".bin",))


class OnnxFormat:
    """ONNX Q/DQ: NNCF's ONNX backend; ONNX Runtime (CPU) runs candidates."""

    name = "onnx"
    suffix = ".onnx"

    def read(self, onnx_path: Path):
        import onnx

        return onnx.load(str(onnx_path))

    def native_source(self, onnx_path: Path) -> Path:
        """ONNX is its own native form."""
        return Path(onnx_path)

    def op_names(self, model) -> list[str]:
        return [n.name for n in model.graph.node]

    def activation_matmuls(self, model) -> list[str]:
        g = model.graph
        consts = {i.name for i in g.initializer}
        producer = {o: n for n in g.node for o in n.output}
        consts |= {o for n in g.node if n.op_type == "Constant" for o in n.output}

        def is_const_name(name: str) -> bool:
            while name not in consts and name in producer \
                    and producer[name].op_type in _PASS_THROUGH:
                name = producer[name].input[0]
            return name in consts

        return [n.name for n in g.node if n.op_type == "MatMul"
                and not any(is_const_name(i) for i in n.input[:2])]

    def float_heavy_ops(self, model) -> list[str]:
        producers = {o: n for n in model.graph.node for o in n.output}
        return [n.name for n in model.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")
                and not any(i in producers and producers[i].op_type == "DequantizeLinear"
                            for i in n.input)]

    def nncf_input(self, x: np.ndarray):
        return {"image": x}  # NNCF's ONNX engine feeds sessions by input name

    def inference_model(self, model, fp32: bool):
        return model  # the ONNX Runtime target's native_infer takes the ModelProto

    def write(self, model, src: Path, out: Path) -> Path:
        """The Q/DQ model beside ``out`` with the source's mtlsi_edge metadata."""
        import onnx

        src_meta = [p for p in onnx.load(str(src), load_external_data=False).metadata_props
                    if p.key == "mtlsi_edge"]
        del model.metadata_props[:]
        model.metadata_props.extend(src_meta)
        return atomic_write_files(named(out, ".onnx"), lambda tmp: onnx.save(model, tmp))


FORMATS: dict[str, IRFormat | OnnxFormat] = {f.name: f for f in (IRFormat(), OnnxFormat())}
