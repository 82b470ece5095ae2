"""Pruning: NNCF magnitude sparsity, and structured channel removal with torch-pruning.

- ``magnitude``: ``nncf.prune`` (UNSTRUCTURED_MAGNITUDE_GLOBAL) zeroes the smallest weights,
  baked into a plain copy of the model.  Dense kernels still multiply the zeros: no speedup
  on CPUs (measured; README), but smaller compressed files.
- ``channels``: torch-pruning removes whole channels (``MagnitudePruner``, L2 importance), so
  convolutions really get narrower and latency drops.  The decoder width C (the residual
  stream shared by attention heads) and the task heads are kept; prunable are the
  backbone's inner channels and the hidden channels of the decoder's FFNs and conv blocks.

Both are followed by a short fine-tune on the training data and by recomputing BatchNorm
statistics on in-distribution images (adapting BN on off-distribution images destroyed the
outputs: docs/design.md, 'Lessons measured on the build machine').
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from mtlsi_edge.backends.onnxruntime import ORTRunner
from mtlsi_edge.data.datasets import build_dataset
from mtlsi_edge.data.transforms import train_transforms, val_transforms
from mtlsi_edge.errors import ConfigError
from mtlsi_edge.export import export_onnx
from mtlsi_edge.model.blocks import ConvFFN
from mtlsi_edge.model.complexity import model_report
from mtlsi_edge.model.eager import eager_latency_ms
from mtlsi_edge.model.mtlsi import MTLSINet
from mtlsi_edge.model.restore import PRUNE_METHODS
from mtlsi_edge.targets import CompileOptions
from mtlsi_edge.timing import measure
from mtlsi_edge.train.checkpoint import build_from_checkpoint, save_checkpoint
from mtlsi_edge.train.engine import Positions, Stream, evaluate, multitask_loss


@dataclass
class PruneResult:
    model: MTLSINet
    method: str
    ratio: float
    removed_params: int


def _backbone_ignored(model: MTLSINet) -> list[nn.Module]:
    """Inside the backbone adapter: keep the C-wide projections' outputs and any attention
    (EfficientViT's LiteMLA splits channels into heads)."""
    keep: list[nn.Module] = [m for m in model.backbone.modules()
                             if type(m).__name__ in ("LiteMLA", "Attention", "WindowAttention")]
    for proj in (model.backbone.p4, model.backbone.p8, *model.backbone.p16):
        keep += [m for m in proj.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
                 and m.out_channels == model.cfg.dim]
    return keep


def prune_channels(model: MTLSINet, ratio: float) -> PruneResult:
    """Remove ``ratio`` of the prunable channels (torch-pruning, L2 magnitude).

    Pruned per sub-graph, each with its interface channels fixed: the backbone (its outputs
    are the C-wide projections) and every decoder FFN (hidden channels only).  The multi-task
    attention blocks in between keep their width, which their head split requires.
    """
    import torch_pruning as tp

    model = copy.deepcopy(model).eval()
    before = sum(p.numel() for p in model.parameters())
    imp = tp.importance.MagnitudeImportance(p=2)
    ex = torch.zeros(1, 3, *model.cfg.input_size)
    tp.pruner.MagnitudePruner(model.backbone, ex, importance=imp, pruning_ratio=ratio,
                              ignored_layers=_backbone_ignored(model)).step()
    c = model.cfg.dim
    for m in model.modules():
        if isinstance(m, ConvFFN):
            tp.pruner.MagnitudePruner(m, torch.zeros(1, c, 8, 8), importance=imp,
                                      pruning_ratio=ratio, ignored_layers=[m.fc2]).step()
    with torch.no_grad():
        model(ex)  # the pruned graph still runs
    after = sum(p.numel() for p in model.parameters())
    return PruneResult(model, "channels", ratio, before - after)


def prune_magnitude(model: MTLSINet, ratio: float) -> PruneResult:
    """Zero ``ratio`` of the weights by global magnitude (NNCF), masks baked into a plain copy.

    ``nncf.strip`` would bake the masks but imports torchao (not a dependency here), so the
    binary masks are read from NNCF's hook storage and multiplied into a clean copy.
    """
    import nncf
    from nncf.torch.function_hook.hook_storage import decode_hook_name
    from nncf.torch.function_hook.pruning.magnitude.modules import UnstructuredPruningMask
    from nncf.torch.function_hook.wrapper import get_hook_storage
    from nncf.torch.model_graph_manager import split_const_name

    clean = copy.deepcopy(model).eval()
    ex = torch.zeros(1, 3, *model.cfg.input_size)
    wrapped = nncf.prune(copy.deepcopy(model).eval(),
                         nncf.PruneMode.UNSTRUCTURED_MAGNITUDE_GLOBAL, ratio=ratio,
                         examples_inputs=ex)
    zeros = 0
    with torch.no_grad():
        for name, hook in get_hook_storage(wrapped).named_hooks():
            if not isinstance(hook, UnstructuredPruningMask):
                continue
            _, op_name, _ = decode_hook_name(name)
            module_name, attr = split_const_name(op_name)
            p = clean.get_parameter(f"{module_name}.{attr}" if module_name else attr)
            mask = hook.binary_mask.to(p.dtype)
            p.mul_(mask)
            zeros += int((mask == 0).sum())
    return PruneResult(clean, "magnitude", ratio, zeros)


@torch.no_grad()
def recompute_bn(model: nn.Module, images: list[torch.Tensor]) -> None:
    """Reset and re-estimate BatchNorm running statistics on in-distribution ``images``."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
    model.train()
    for x in images:
        model(x)
    model.eval()


def finetune(model: MTLSINet, data: str, steps: int, batch_size: int = 8, lr: float = 2e-4,
             seed: int = 0, progress: bool = False) -> list[float]:
    """A short fine-tune on the training split (same losses as training); returns losses."""
    if steps <= 0:
        return []
    ds = build_dataset(data, "train", model.task_set)
    stream = Stream(ds, train_transforms(tuple(model.cfg.input_size), (0.75, 1.5)), seed + 99)
    loader = DataLoader(stream, batch_size=batch_size,
                        sampler=Positions(0, steps, batch_size, 0, 1), num_workers=0)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    model.train()
    losses = []
    masks = {n: (p != 0) for n, p in model.named_parameters()}  # keep zeroed weights zero
    for i, batch in enumerate(loader):
        lr_i = lr * 0.5 * (1 + np.cos(np.pi * i / steps))
        for g in opt.param_groups:
            g["lr"] = lr_i
        loss, _ = multitask_loss(model(batch["image"]), batch, model.task_set, True)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        with torch.no_grad():
            for n, p in model.named_parameters():
                if masks[n].dtype == torch.bool and not masks[n].all():
                    p.mul_(masks[n])
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def _ort_latency_ms(model: MTLSINet, tmp_dir, runs: int = 30) -> float:
    """Median ONNX Runtime FP32 compute latency of ``model``'s deploy graph."""
    path = export_onnx(model, f"{tmp_dir}/lat.onnx")
    r = ORTRunner(path, CompileOptions(device="cpu"), model.task_set.names)
    x = np.zeros((1, 3, *model.cfg.input_size), np.float32)
    ts = measure(lambda: r(x), runs=runs)
    return 1e3 * float(np.median(ts))


@dataclass(frozen=True)
class PruneRequest:
    """One ``prune``: ``method`` (channels | magnitude) removing ``ratio`` of the prunable
    channels / weights, BatchNorm re-estimated on ``bn_images`` in-distribution images of
    ``data``, then ``finetune_steps`` of fine-tuning at ``batch_size``; ``val_limit`` val
    images score before and after."""

    method: str
    ratio: float
    data: str
    finetune_steps: int = 200
    bn_images: int = 64
    val_limit: int = 100
    batch_size: int = 8

    def check(self) -> None:
        if self.method not in PRUNE_METHODS:
            raise ConfigError(f"--method must be channels or magnitude, not {self.method!r}")
        if not 0 < self.ratio < 1:
            raise ConfigError(f"--ratio must be in (0, 1), got {self.ratio}")


def run_prune(checkpoint, req: PruneRequest, out) -> dict:
    """Prune a checkpoint, recompute BN, fine-tune, save; report before/after.

    Report: params, GMACs, eager and ONNX Runtime latency, per-task metrics (val split).
    """
    req.check()
    method, ratio, data = req.method, req.ratio, req.data
    finetune_steps, bn_images = req.finetune_steps, req.bn_images
    val_limit, batch_size = req.val_limit, req.batch_size
    base, doc = build_from_checkpoint(checkpoint)
    size = tuple(base.cfg.input_size)
    tmp = tempfile.mkdtemp(prefix="prune-")

    def measure(m) -> dict:
        rep = model_report(m)
        return {"params": rep["params"], "gmacs": rep["gmacs"],
                "eager_ms": eager_latency_ms(m, size, runs=15),
                "ort_ms": _ort_latency_ms(m, tmp),
                "metrics": evaluate(m, data, "val", batch_size=4, limit=val_limit)}

    before = measure(base)
    res = prune_channels(base, ratio) if method == "channels" else prune_magnitude(base, ratio)
    model = res.model
    ds = build_dataset(data, "train", model.task_set, val_transforms(size))
    imgs = [ds[i]["image"][None] for i in range(min(bn_images, len(ds)))]
    recompute_bn(model, [torch.cat(imgs[i:i + 8]) for i in range(0, len(imgs), 8)])
    losses = finetune(model, data, finetune_steps, batch_size)
    if imgs:  # BN statistics again, for the fine-tuned weights, on in-distribution images
        recompute_bn(model, [torch.cat(imgs[i:i + 8]) for i in range(0, len(imgs), 8)])
    after = measure(model)
    out = Path(out)
    meta = {k: doc[k] for k in ("model_config", "task_set", "variant") if k in doc}
    meta["pruned"] = {"method": method, "ratio": ratio, "finetune_steps": finetune_steps,
                      "from": str(checkpoint)}
    path = save_checkpoint(out / "pruned", model, meta)
    return {"checkpoint": path, "method": method, "ratio": ratio, "before": before,
            "after": after, "finetune_losses": losses[:: max(1, len(losses) // 10)]}
