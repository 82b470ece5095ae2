"""PyTorch → ONNX, and the parity report every exported or compiled model carries.

The exported graph (:class:`DeployModel`) takes a normalised ``N×3×H×W`` float32 image and
emits, per task, at ``H/s × W/s`` (``s`` = deploy stride, default 4):

- segmentation-like tasks: logits ``N×K×h×w``;
- depth: metres ``N×1×h×w`` (clamped ≥ 0);
- normals: unit vectors ``N×3×h×w``;
- boundary / saliency: probabilities ``N×1×h×w``.

That graph is what calibration and quantisation work on.  Frame-I/O bundles wrap it
(:func:`with_frame_io`, ``DeployModel(frame_io=True)``, OpenVINO's ``PrePostProcessor``):
uint8 BGR ``N×H×W×3`` in, segmentation labels ``N×1×h×w`` uint8 out (logits resized to
1/``label_stride`` of the input, then argmax), the rest unchanged (docs/design.md,
"Deployment conventions"; measurements in docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtlsi_edge.fileio import atomic_write
from mtlsi_edge.inputs import IMAGENET
from mtlsi_edge.model.mtlsi import MTLSINet
from mtlsi_edge.objectives import task_activate

if TYPE_CHECKING:
    import onnx

INPUT_NAME = "image"
MEAN, STD = IMAGENET.mean, IMAGENET.std


class DeployModel(nn.Module):
    """Inference graph: the network, activations, and outputs at ``stride`` (1 or 4).

    ``frame_io``: the graph of a frame-I/O bundle (see :func:`with_frame_io`, which builds the
    same graph for ONNX): input ``N×H×W×3`` uint8 BGR, segmentation outputs class labels
    ``N×1×h×w`` uint8 (logits resized to ``label_size`` first, when given).
    """

    def __init__(self, model: MTLSINet, stride: int = 4, frame_io: bool = False,
                 label_size: tuple[int, int] | None = None):
        super().__init__()
        if stride not in (1, 4):
            raise ValueError(f"deploy stride must be 1 or 4, got {stride}")
        self.model = model.eval()
        self.stride = stride
        self.tasks = list(model.task_set)
        self.frame_io, self.label_size = frame_io, label_size
        self.register_buffer("mean255", torch.tensor(MEAN).view(1, 3, 1, 1) * 255.0, False)
        self.register_buffer("inv_std255", 1.0 / (torch.tensor(STD).view(1, 3, 1, 1) * 255.0),
                             False)

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.frame_io:  # N×H×W×3 uint8 BGR → normalised N×3×H×W RGB
            image = image.permute(0, 3, 1, 2).flip(1).float()
            image = (image - self.mean255) * self.inv_std255
        out = self.model(image, output_stride=4)  # heads' native resolution
        res = []
        for t in self.tasks:
            y = out[t.name]
            if self.stride == 1:
                y = F.interpolate(_channels_last(y), size=image.shape[-2:], mode="bilinear",
                                  align_corners=False)
            if t.spec.deploy_activated:
                y = task_activate(t, y)
            elif self.frame_io and t.spec.output == "labels":  # logits → labels in the graph
                y = (y.argmax(1, keepdim=True).to(torch.uint8) if self.label_size is None
                     else bilinear_argmax(y, self.label_size))
            res.append(y)
        return tuple(res)


@functools.lru_cache(maxsize=32)
def _bilinear_taps(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Half-pixel bilinear sampling along one axis, as ``F.interpolate(align_corners=False)``
    and ONNX ``Resize`` (``half_pixel``, clamped at the edges): per output index, its two
    source indices and the weight of the second."""
    s = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5).clamp(min=0)
    i0 = s.floor().long().clamp(max=n_in - 1)
    return i0, (i0 + 1).clamp(max=n_in - 1), (s - i0).float()


#: Above this share of label-edge cells, :func:`bilinear_argmax` resizes all C maps instead:
#: the per-pixel blend then costs more than the resize (crossover measured at ~15 % in eager
#: PyTorch and ~27 % in ONNX Runtime; a noise frame is all edges and would cost 10× more).
DENSE_ABOVE = 0.15


def bilinear_argmax(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Class labels ``N×1×H×W`` uint8: the argmax over classes of ``logits`` (``N×C×h×w``)
    bilinearly resized to ``size`` — the labels of ``F.interpolate`` then ``argmax``,
    usually without resizing the C maps.

    An output pixel blends the logit vectors of its four source neighbours with non-negative
    weights that sum to one, so where the four agree on the winning class, the blend's winner
    is that class too.  Only the other pixels (along label edges: ~11 % of cells at 4×
    upsampling on SynthIndoor renders) are blended in full — the same labels up to float
    near-ties (the blend rounds differently from a resize).  When more than
    :data:`DENSE_ABOVE` of the cells are on edges, the maps are resized as usual.  Exported
    into ONNX Runtime bundles (the choice as an ``If``), where the label path takes 1.53
    instead of 3.39 ms on a render; OpenVINO keeps its own Interpolate + TopK, which
    measured faster there (docs/task_batched.md, "The label path").
    """
    if tuple(size) == tuple(logits.shape[-2:]):  # no resize
        return logits.argmax(1, keepdim=True).to(torch.uint8)
    cells = _edge_cells(logits)
    if (cells < 0).float().mean() > DENSE_ABOVE:
        return _resize_argmax(logits, size)
    return _blend_edges(logits, cells, size)


def _resize_argmax(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(_channels_last(logits), size=size, mode="bilinear",
                         align_corners=False).argmax(1, keepdim=True).to(torch.uint8)


def _edge_cells(logits: torch.Tensor) -> torch.Tensor:
    """``N×1×h×w``: cell (i, j) holds the low-resolution winner if rows {i, i+1} × columns
    {j, j+1} (clamped at the border) agree on it, else -1 (a label edge)."""
    low = F.pad(logits.argmax(1, keepdim=True).float(), (0, 1, 0, 1), mode="replicate")
    hi, lo = F.max_pool2d(low, 2, 1), -F.max_pool2d(-low, 2, 1)
    return torch.where(hi == lo, hi, torch.full_like(hi, -1.0))


def _blend_edges(logits: torch.Tensor, cells: torch.Tensor, size: tuple[int, int]
                 ) -> torch.Tensor:
    """Labels from :func:`_edge_cells`, the pixels of edge cells blended in full."""
    _, c, h, w = logits.shape
    h, w, c = int(h), int(w), int(c)  # static per graph: the export traces constants
    big_h, big_w = size
    y0, y1, wy = _bilinear_taps(h, big_h)
    x0, x1, wx = _bilinear_taps(w, big_w)
    labels = cells.index_select(2, y0).index_select(3, x0).reshape(-1)  # N·H·W
    todo = (labels < 0).nonzero()[:, 0]  # the pixels whose neighbours disagree
    px, py, pn = todo % big_w, (todo // big_w) % big_h, todo // (big_h * big_w)
    rows = logits.permute(0, 2, 3, 1).reshape(-1, c)  # N·h·w × C
    r0, r1 = pn * (h * w) + y0[py] * w, pn * (h * w) + y1[py] * w
    corners = rows[torch.stack((r0 + x0[px], r0 + x1[px], r1 + x0[px], r1 + x1[px]), 1)]
    ay, ax = wy[py], wx[px]
    weights = torch.stack(((1 - ay) * (1 - ax), (1 - ay) * ax, ay * (1 - ax), ay * ax), 1)
    weights = weights.to(corners.dtype)
    blended = (weights.unsqueeze(1) @ corners).squeeze(1)  # K×C
    labels = labels.index_put((todo,), blended.argmax(1).float())
    return labels.view(-1, 1, big_h, big_w).to(torch.uint8)


class _LabelParts(nn.Module):
    """For the ONNX exporter: logits → (share of edge cells, labels by the edge blend)."""

    def __init__(self, size: tuple[int, int]):
        super().__init__()
        self.size = size

    def forward(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cells = _edge_cells(logits)
        return (cells < 0).float().mean(), _blend_edges(logits, cells, self.size)


@functools.lru_cache(maxsize=8)
def _label_parts_onnx(chw: tuple[int, int, int], size: tuple[int, int], opset: int) -> bytes:
    """:class:`_LabelParts` for ``N×C×h×w`` logits (N symbolic) as a serialised ONNX model:
    input ``logits``, outputs ``edge_share`` and ``labels``."""
    buf = io.BytesIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(_LabelParts(size), (torch.zeros(1, *chw),), buf,
                          input_names=["logits"], output_names=["edge_share", "labels"],
                          opset_version=opset, dynamo=False,
                          dynamic_axes={"logits": {0: "N"}, "labels": {0: "N"}})
    return buf.getvalue()


def _channels_last(y: torch.Tensor) -> torch.Tensor:
    # Eager PyTorch resizes (and argmaxes) a 40-class map ~3× faster in channels-last memory
    # (16 → 5 ms at 240×320, measured); exports ignore the memory format.
    return y.contiguous(memory_format=torch.channels_last)


def export_onnx(model: MTLSINet, path: str | Path, size: tuple[int, int] | None = None,
                dynamic: bool = False, stride: int = 4, opset: int = 17,
                extra_meta: dict | None = None) -> Path:
    """Export the deploy graph to a single ONNX file, checked with ``onnx.checker``.

    Static (default): H×W fixed at ``size`` (the model's input size when omitted), via the
    TorchScript exporter — fast, one file.  ``dynamic``: N, H and W symbolic, via the dynamo
    exporter (it tracks symbolic shapes through the window padding; slower to export), written
    as one file (``external_data=False``).
    """
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = tuple(size or model.cfg.input_size)
    wrapper = DeployModel(model, stride).eval()
    names = wrapper.output_names

    def write(tmp: str) -> None:  # a failed export (full disk, kill) leaves nothing
        _export_to(wrapper, Path(tmp), size, names, dynamic, opset)
        proto = fold_weight_ops(onnx.load(tmp))
        onnx.checker.check_model(proto)
        meta = proto.metadata_props.add()
        meta.key, meta.value = "mtlsi_edge", json.dumps(
            {"model_config": model.cfg.to_dict(), "stride": stride, "dynamic": dynamic,
             "graph": "batched" if model.cfg.task_batched and model.batchable()
             else "per-task", **(extra_meta or {})})
        onnx.save(proto, tmp)

    return atomic_write(path, write)


#: Folded outputs larger than this stay nodes (an Expand or ConstantOfShape of a weight would
#: otherwise be stored expanded in the file).
FOLD_MAX_ELEMENTS = 1 << 22


def fold_weight_ops(proto):
    """Evaluate the nodes whose inputs are all constants (initializers that are not graph
    inputs, or ``Constant`` tensors) and store their outputs as initializers (in place;
    returns ``proto``).

    The batched graph folds norms and projections into the weights of the ops that follow
    (``model/blocks.py``); the exporter's constant folding leaves some of that weight math
    (MatMul, ReduceSum of two weights) as nodes, and then NNCF finds no weight on those
    convolutions and runtimes repeat the math at load.  Evaluated with ONNX's reference
    implementation in the graph's topological order.  Nodes it cannot evaluate (custom
    domains, subgraphs), graph outputs and very large results are left as they are.
    """
    import onnx
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    g = proto.graph
    overridable = {i.name for i in g.input}
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer
              if i.name not in overridable}
    outputs = {o.name for o in g.output}
    keep = []
    for node in g.node:
        ins = list(dict.fromkeys(i for i in node.input if i))
        if node.op_type == "Constant":
            keep.append(node)
            attr = {a.name: a for a in node.attribute}
            if "value" in attr:
                consts[node.output[0]] = numpy_helper.to_array(attr["value"].t)
            continue
        if (not ins or not all(i in consts for i in ins) or node.domain not in ("", "ai.onnx")
                or any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                       for a in node.attribute)
                or any(o in outputs or not o for o in node.output)):
            keep.append(node)
            continue
        sub = onnx.helper.make_model(onnx.helper.make_graph(
            [node], "fold",
            [onnx.helper.make_tensor_value_info(
                i, onnx.helper.np_dtype_to_tensor_dtype(consts[i].dtype), consts[i].shape)
             for i in ins],
            [onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None)
             for o in node.output]), opset_imports=proto.opset_import)
        try:
            values = [np.asarray(v) for v in ReferenceEvaluator(sub).run(
                None, {i: consts[i] for i in ins})]
        except Exception:  # noqa: BLE001 - not evaluable here: the runtime computes it
            keep.append(node)
            continue
        if any(v.size > FOLD_MAX_ELEMENTS or v.dtype == object for v in values):
            keep.append(node)
            continue
        for name, v in zip(node.output, values):
            consts[name] = v
            g.initializer.append(numpy_helper.from_array(v, name))
    # Drop what only the folded nodes read (Constants, initializers); names used inside
    # subgraphs count as used.
    used = _names_read(keep) | outputs | overridable
    keep = [n for n in keep if n.op_type != "Constant" or n.output[0] in used]
    live = [t for t in g.initializer if t.name in used]
    del g.node[:]
    g.node.extend(keep)
    del g.initializer[:]
    g.initializer.extend(live)
    return proto


def _names_read(nodes) -> set[str]:
    """Every tensor name the nodes read, including inside their subgraphs."""
    import onnx

    names: set[str] = set()
    for n in nodes:
        names.update(i for i in n.input if i)
        for a in n.attribute:
            graphs = ([a.g] if a.type == onnx.AttributeProto.GRAPH else
                      list(a.graphs) if a.type == onnx.AttributeProto.GRAPHS else [])
            for sg in graphs:
                names |= _names_read(sg.node) | {o.name for o in sg.output}
    return names


def _export_to(wrapper: nn.Module, tmp: Path, size: tuple[int, int], names: list[str],
               dynamic: bool, opset: int) -> None:
    x = torch.zeros(1, 3, *size)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if dynamic:
            dim_n = torch.export.Dim("N", min=1, max=256)
            dim_h = torch.export.Dim("H", min=64, max=4096)
            dim_w = torch.export.Dim("W", min=64, max=4096)
            # Example batch of 2: torch.export specialises a size-1 dim to the constant 1.
            torch.onnx.export(wrapper, (torch.zeros(2, 3, *size),), str(tmp),
                              input_names=[INPUT_NAME],
                              output_names=names, dynamo=True, external_data=False,
                              dynamic_shapes={"image": {0: dim_n, 2: dim_h, 3: dim_w}},
                              opset_version=max(opset, 18))
        else:
            torch.onnx.export(wrapper, (x,), str(tmp), input_names=[INPUT_NAME],
                              output_names=names, opset_version=opset, dynamo=False,
                              do_constant_folding=True)


def with_frame_io(proto, mean: tuple[float, ...], std: tuple[float, ...],
                  label_outputs: list[str], label_size: tuple[int, int] | None):
    """The deploy graph with the Predictor's pre- and postprocessing folded in (in place).

    Input ``image`` becomes the frame as a camera gives it: ``N×H×W×3`` uint8 BGR at the
    model's input size (cast, BGR→RGB, ImageNet mean/std, NHWC→NCHW inside the graph).  Each
    output in ``label_outputs`` (segmentation logits) becomes class labels ``N×1×h×w`` uint8 —
    argmax in the graph, after a bilinear resize of the logits to ``label_size`` when given
    (the Predictor's old host path: resize logits to the input size, then argmax) — by
    :func:`bilinear_argmax` when the logits' sizes are static, by Resize + ArgMax otherwise.
    Works on FP32 and QDQ INT8 graphs alike (the new ops are float ops outside the quantised
    region).
    """
    g = proto.graph
    static = _output_types(proto, label_outputs)  # before the graph is rewired
    opset = _opset(proto)
    pre = _frame_input_nodes(g, mean, std)
    post = []
    for out_name in label_outputs:
        post += _label_nodes(g, out_name, static.get(out_name, (None, [])), label_size, opset)
        _retype_label_output(g, out_name, label_size)
    nodes = pre + list(g.node) + post
    del g.node[:]
    g.node.extend(nodes)
    return proto


def _add_initializer(g: onnx.GraphProto, name: str, a: np.ndarray) -> str:
    """Add ``a`` to ``g`` as initializer ``name``; returns the name."""
    from onnx import numpy_helper

    g.initializer.append(numpy_helper.from_array(a, name))
    return name


def _frame_input_nodes(g: onnx.GraphProto, mean: tuple[float, ...],
                       std: tuple[float, ...]) -> list[onnx.NodeProto]:  # fmt: skip
    """Make ``g``'s input the uint8 BGR NHWC frame; returns the nodes (to go first) that turn
    it into the normalised NCHW float tensor the rest of the graph reads."""
    from onnx import TensorProto, helper

    old = g.input[0]
    dims = [d.dim_value or d.dim_param for d in old.type.tensor_type.shape.dim]
    name, inner = old.name, old.name + "__nchw"
    for node in g.node:
        node.input[:] = [inner if i == name else i for i in node.input]
    # Channel flip, mean and std as one 1×1 convolution: W[o, i] = [i is BGR of o] / (255·std_o),
    # bias −mean_o/std_o.  ONNX Runtime ran Gather + Sub + Mul in 1.26 ms at 240×320 against
    # 0.47 ms for this (measured); outputs differ by ≤ 3e-7.
    mean32, std32 = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    w = np.zeros((3, 3, 1, 1), np.float32)
    for o in range(3):
        w[o, 2 - o, 0, 0] = 1.0 / (std32[o] * 255.0)
    pre = [
        helper.make_node("Cast", [name], [name + "__f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", [name + "__f"], [name + "__t"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", [name + "__t", _add_initializer(g, name + "__norm_w", w),
                                  _add_initializer(g, name + "__norm_b", -mean32 / std32)],
                         [inner]),
    ]
    g.input.remove(old)
    g.input.insert(0, helper.make_tensor_value_info(
        name, TensorProto.UINT8, [dims[0], dims[2], dims[3], 3]))
    return pre


def _label_nodes(g: onnx.GraphProto, out_name: str, static: tuple[int | None, list[int]],
                 label_size: tuple[int, int] | None, opset: int) -> list[onnx.NodeProto]:
    """Rename output ``out_name`` of ``g`` (segmentation logits) to ``…__logits``; returns the
    nodes (to go last) that compute the uint8 labels ``out_name`` from it.  ``static``: the
    logits' element type and ``C, h, w`` (0 where unknown)."""
    from onnx import TensorProto

    logits = out_name + "__logits"
    for node in g.node:
        node.output[:] = [logits if o == out_name else o for o in node.output]
        node.input[:] = [logits if i == out_name else i for i in node.input]
    elem, chw = static
    if (label_size is not None and elem == TensorProto.FLOAT and len(chw) == 3
            and all(chw) and opset >= 11):  # index_put needs ScatterND (opset 11)
        return _bilinear_argmax_nodes(g, out_name, tuple(chw), label_size, opset)
    # symbolic sizes (a dynamic export), non-float logits, old opsets
    return _resize_argmax_nodes(g, logits, out_name, label_size, out_name)


def _bilinear_argmax_nodes(g: onnx.GraphProto, out_name: str, chw: tuple[int, int, int],
                           label_size: tuple[int, int], opset: int) -> list[onnx.NodeProto]:
    """Labels ``out_name`` from ``out_name__logits`` (static ``chw``) by :func:`bilinear_argmax`
    as the eager graph runs it: the edge share decides (an If) between the edge blend and the
    full resize.  Initializers go into ``g``."""
    import onnx
    from onnx import TensorProto, helper

    logits = out_name + "__logits"
    share, blend = out_name + "__edge_share", out_name + "__blend"
    parts = _splice(onnx.load_from_string(_label_parts_onnx(chw, tuple(label_size), opset)), g,
                    out_name + "__labels/", {"logits": logits, "edge_share": share,
                                              "labels": blend})  # fmt: skip
    outer = _producers(parts, share)
    branch = [n for n in parts if all(n is not m for m in outer)]
    return outer + [
        helper.make_node("Greater", [share, _add_initializer(
            g, out_name + "__dense_above", np.asarray(DENSE_ABOVE, np.float32))],
            [out_name + "__dense"]),
        helper.make_node(
            "If", [out_name + "__dense"], [out_name],
            then_branch=helper.make_graph(
                _resize_argmax_nodes(g, logits, out_name, label_size, out_name + "__resized"),
                out_name + "__resize", [],
                [helper.make_tensor_value_info(out_name + "__resized",
                                               TensorProto.UINT8, None)]),
            else_branch=helper.make_graph(
                branch, out_name + "__edges", [],
                [helper.make_tensor_value_info(blend, TensorProto.UINT8, None)]))]


def _retype_label_output(g: onnx.GraphProto, out_name: str,
                         label_size: tuple[int, int] | None) -> None:  # fmt: skip
    """Declare graph output ``out_name`` as uint8 labels ``N×1×h×w`` (``label_size`` when
    given, else the logits' own size), in place."""
    from onnx import TensorProto, helper

    for i, o in enumerate(g.output):
        if o.name == out_name:
            od = [d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim]
            hw = list(label_size) if label_size is not None else od[2:]
            g.output.remove(o)
            g.output.insert(i, helper.make_tensor_value_info(
                out_name, TensorProto.UINT8, [od[0] if od else "N", 1, *hw]))
            break


def _output_types(proto: onnx.ModelProto, names: list[str]
                  ) -> dict[str, tuple[int, list[int]]]:
    """Element type and ``C, h, w`` (0 where unknown) of the named graph outputs, by ONNX
    shape inference.  The exporter declares outputs with symbolic sizes even in static
    graphs, so the declarations are dropped first (on a copy)."""
    import onnx

    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    for o in probe.graph.output:
        o.type.tensor_type.ClearField("shape")
    inferred = onnx.shape_inference.infer_shapes(probe)
    return {o.name: (o.type.tensor_type.elem_type,
                     [d.dim_value for d in o.type.tensor_type.shape.dim][1:])
            for o in inferred.graph.output if o.name in names}


def _opset(proto: onnx.ModelProto) -> int:
    """The graph's default-domain opset (1 when it declares none, as ONNX specifies)."""
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)


def _resize_argmax_nodes(g: onnx.GraphProto, logits: str, prefix: str,
                         label_size: tuple[int, int] | None, dst: str) -> list[onnx.NodeProto]:
    """``dst`` = uint8 argmax over channels of ``logits``, bilinearly resized to
    ``label_size`` first when given (the label-size initializer goes into ``g``)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, src = [], logits
    if label_size is not None:
        # sizes = (N, K) of the logits + the label size: works for dynamic N too.
        g.initializer.append(numpy_helper.from_array(np.asarray(label_size, np.int64),
                                                     prefix + "__hw"))
        nodes = [
            helper.make_node("Shape", [logits], [prefix + "__shape"], start=0, end=2),
            helper.make_node("Concat", [prefix + "__shape", prefix + "__hw"],
                             [prefix + "__sizes"], axis=0),
            helper.make_node("Resize", [logits, "", "", prefix + "__sizes"], [prefix + "__up"],
                             mode="linear", coordinate_transformation_mode="half_pixel"),
        ]
        src = prefix + "__up"
    return nodes + [
        helper.make_node("ArgMax", [src], [prefix + "__idx"], axis=1, keepdims=1),
        helper.make_node("Cast", [prefix + "__idx"], [dst], to=TensorProto.UINT8)]


def _producers(nodes: list[onnx.NodeProto], name: str) -> list[onnx.NodeProto]:
    """The nodes (in order) that ``name`` depends on, itself included."""
    made = {o: n for n in nodes for o in n.output}
    need, todo = set(), [name]
    while todo:
        n = made.get(todo.pop())
        if n is not None and id(n) not in need:
            need.add(id(n))
            todo += list(n.input)
    return [n for n in nodes if id(n) in need]


def _splice(sub: onnx.ModelProto, g: onnx.GraphProto, prefix: str,
            io_names: dict[str, str]) -> list[onnx.NodeProto]:
    """``sub``'s nodes for insertion into graph ``g``: its initializers are added to ``g``,
    its graph input and output renamed per ``io_names`` and every other tensor name (and
    node name) prefixed with ``prefix``."""
    def name(n: str) -> str:
        return io_names.get(n, prefix + n) if n else n

    for t in sub.graph.initializer:
        t.name = name(t.name)
        g.initializer.append(t)
    nodes = []
    for n in sub.graph.node:
        n.input[:] = [name(i) for i in n.input]
        n.output[:] = [name(o) for o in n.output]
        n.name = prefix + n.name
        nodes.append(n)
    return nodes


def normalize(images_rgb_uint8: np.ndarray) -> np.ndarray:
    """``N×H×W×3`` uint8 RGB → ``N×3×H×W`` float32, ImageNet-normalised."""
    x = images_rgb_uint8.astype(np.float32) / 255.0
    x = (x - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
