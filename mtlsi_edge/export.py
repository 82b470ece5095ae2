"""PyTorch → ONNX, and the parity report every exported or compiled model carries.

The deployed graph (:class:`DeployModel`) takes a normalised ``N×3×H×W`` float32 image and
emits, per task, at ``H/s × W/s`` (``s`` = deploy stride, default 4):

- segmentation-like tasks: logits ``N×K×h×w`` (argmax after upsampling, in postprocessing);
- depth: metres ``N×1×h×w`` (clamped ≥ 0);
- normals: unit vectors ``N×3×h×w``;
- boundary / saliency: probabilities ``N×1×h×w``.

Emitting at 1/4 and upsampling in postprocessing is the measured choice (README, "Deploy
outputs"): full-resolution 40-channel logits dominated the compiled models' latency.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtlsi_edge.model.mtlsi import MTLSINet

INPUT_NAME = "image"
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class DeployModel(nn.Module):
    """Inference graph: the network, activations, and outputs at ``stride`` (1 or 4)."""

    def __init__(self, model: MTLSINet, stride: int = 4):
        super().__init__()
        if stride not in (1, 4):
            raise ValueError(f"deploy stride must be 1 or 4, got {stride}")
        self.model = model.eval()
        self.stride = stride
        self.tasks = list(model.task_set)

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(image, output_stride=4)  # heads' native resolution
        res = []
        for t in self.tasks:
            y = out[t.name]
            if self.stride == 1:
                y = F.interpolate(y, size=image.shape[-2:], mode="bilinear", align_corners=False)
            res.append(y if t.kind == "segmentation" else t.activate(y))
        return tuple(res)


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
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        _export_to(wrapper, tmp, size, names, dynamic, opset)
        proto = onnx.load(str(tmp))
        onnx.checker.check_model(proto)
        meta = proto.metadata_props.add()
        meta.key, meta.value = "mtlsi_edge", json.dumps(
            {"model_config": model.cfg.to_dict(), "stride": stride, "dynamic": dynamic,
             **(extra_meta or {})})
        onnx.save(proto, str(tmp))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)  # a failed export (full disk, kill) leaves nothing
    return path


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


def normalize(images_rgb_uint8: np.ndarray) -> np.ndarray:
    """``N×H×W×3`` uint8 RGB → ``N×3×H×W`` float32, ImageNet-normalised."""
    x = images_rgb_uint8.astype(np.float32) / 255.0
    x = (x - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def parity_report(ref: dict[str, np.ndarray], got: dict[str, np.ndarray], task_set,
                  ref_layouts: dict[str, str] | None = None,
                  got_layouts: dict[str, str] | None = None) -> dict:
    """Compare two runners' outputs on the same inputs.

    Per output: max and mean abs error; segmentation: argmax agreement (%); normals: mean and
    max angle (degrees) between the unit vectors.
    """
    rep = {}
    for t in task_set:
        a, b = _nchw(ref[t.name], (ref_layouts or {}).get(t.name)), _nchw(
            got[t.name], (got_layouts or {}).get(t.name))
        a, b = a.astype(np.float32), b.astype(np.float32)
        d = {"max_abs": float(np.abs(a - b).max()), "mean_abs": float(np.abs(a - b).mean())}
        if t.kind == "segmentation":
            d["argmax_agree_pct"] = float((a.argmax(1) == b.argmax(1)).mean() * 100)
        if t.kind == "normals":
            cos = np.clip((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
                                            + 1e-8), -1, 1)
            ang = np.degrees(np.arccos(cos))
            d["angle_mean_deg"], d["angle_max_deg"] = float(ang.mean()), float(ang.max())
        rep[t.name] = d
    return rep


def _nchw(a: np.ndarray, layout: str | None) -> np.ndarray:
    return a.transpose(0, 3, 1, 2) if layout == "NHWC" else a


def export_with_parity(model: MTLSINet, out: str | Path, dynamic: bool = False,
                       stride: int = 4) -> tuple[Path, dict, Path]:
    """Export ``model`` to ONNX at ``out``, then compare ONNX Runtime with PyTorch on four
    SynthIndoor renders; returns (onnx path, parity report, report path beside the .onnx)."""
    from mtlsi_edge.bundle import reference_inputs, run_each
    from mtlsi_edge.fileio import atomic_write_json
    from mtlsi_edge.targets import CompileOptions
    from mtlsi_edge.targets.onnxruntime import ORTRunner
    from mtlsi_edge.targets.torch import TorchRunner

    path = export_onnx(model, out, dynamic=dynamic, stride=stride)
    x = reference_inputs(tuple(model.cfg.input_size), 4)
    ref = run_each(TorchRunner(model, CompileOptions(), stride), x)
    got = run_each(ORTRunner(path, CompileOptions(device="cpu"), model.task_set.names), x)
    rep = parity_report(ref, got, model.task_set)
    return path, rep, atomic_write_json(path.with_suffix(".parity.json"), rep)
