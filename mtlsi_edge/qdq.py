"""How many quantisation nodes a model file holds: ONNX Q/DQ nodes read from the protobuf wire
format (the device needs no ``onnx`` package for it), OpenVINO ``FakeQuantize`` ops.  A
bundle's precision label must be true of its model file (:func:`mtlsi_edge.verify.check_io`).
"""

from __future__ import annotations

from pathlib import Path

from mtlsi_edge.backends.openvino import first_line
from mtlsi_edge.errors import BundleError
from mtlsi_edge.native import quiet_native

_QDQ_OPS = (b"QuantizeLinear", b"DequantizeLinear")


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    """The protobuf varint at ``buf[i]`` and the index after it."""
    shift = value = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: bytes):
    """(field number, wire type, value) of each field of one protobuf message; value is the
    bytes of a length-delimited field, else None (skipped)."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            _, i = _varint(buf, i)
            yield num, wire, None
        elif wire == 1:
            i += 8
            yield num, wire, None
        elif wire == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise ValueError("truncated field")
            yield num, wire, buf[i:i + n]
            i += n
        elif wire == 5:
            i += 4
            yield num, wire, None
        else:
            raise ValueError(f"unsupported wire type {wire}")


def _graph_qdq(graph: bytes) -> int:
    """Q/DQ nodes of an ONNX ``GraphProto`` (``node`` = field 1, ``NodeProto.op_type`` =
    field 4), subgraphs of control-flow nodes (``NodeProto.attribute`` = 5,
    ``AttributeProto.g`` = 6 / ``graphs`` = 11) included."""
    n = 0
    for num, _, node in _fields(graph):
        if num != 1 or node is None:
            continue
        for fnum, _, val in _fields(node):
            if fnum == 4 and val in _QDQ_OPS:
                n += 1
            elif fnum == 5 and val is not None:
                n += sum(_graph_qdq(g) for anum, _, g in _fields(val)
                         if anum in (6, 11) and g is not None)
    return n


def onnx_qdq_count(path: Path) -> int:
    """QuantizeLinear/DequantizeLinear nodes of an ONNX file, read from its protobuf wire
    format (``ModelProto.graph`` = field 7) — the device needs no ``onnx`` package for it."""
    try:
        buf = Path(path).read_bytes()
        top = list(_fields(buf))  # a ModelProto at all (cheap: the graph is one field)
        if not any(num == 7 and g is not None for num, _, g in top):
            raise ValueError("no graph")
        if b"QuantizeLinear" not in buf:  # (also covers DequantizeLinear) most files: no walk
            return 0
        return sum(_graph_qdq(g) for num, _, g in top if num == 7 and g is not None)
    except (ValueError, IndexError) as e:
        raise BundleError(f"{path}: not a readable ONNX file ({e})") from None


def quantization_ops(path: Path) -> int:
    """How many quantisation nodes a model file holds (ONNX Q/DQ, OpenVINO FakeQuantize)."""
    if path.suffix == ".xml":
        import openvino as ov

        try:
            with quiet_native():  # the frontends' lines on a garbage file stay out
                model = ov.Core().read_model(str(path))
        except RuntimeError as e:  # OpenVINO reports unreadable IRs as RuntimeError
            raise BundleError(f"{path}: OpenVINO cannot read it: {first_line(e)}") from None
        return sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
    return onnx_qdq_count(path)
