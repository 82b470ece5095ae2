"""Per-kind training losses, as the InvPT / Multi-Task-Learning-PyTorch references define them
(which kind uses which: :mod:`mtlsi_edge.kinds`).

Every loss takes ``(pred, gt)`` and returns a scalar tensor. ``pred`` is the raw head output
(logits for segmentation / boundary / saliency, metres for depth, unnormalised vectors for
normals). When ``pred``'s spatial size differs from ``gt``'s (deep-supervision outputs at a lower
resolution), ``pred`` is first upsampled bilinearly to ``gt``'s size (``align_corners=False``).

All losses average over valid pixels only and return an exact ``0`` that still carries a gradient
(never NaN) when a batch has no valid pixel. ``IGNORE_INDEX`` (255) marks invalid ground truth.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mtlsi_edge.inputs import IGNORE_INDEX

BOUNDARY_POS_WEIGHT = 0.95  # InvPT's edge weighting w (ATRC / MTDP use 0.8 for NYUD)

__all__ = [
    "BOUNDARY_POS_WEIGHT",
    "balanced_bce_with_logits",
    "boundary_loss",
    "depth_loss",
    "normals_loss",
    "resize_to",
    "saliency_loss",
    "segmentation_loss",
]


def resize_to(pred: Tensor, gt: Tensor) -> Tensor:
    """Bilinearly upsample ``pred`` (``B×C×h×w``) to ``gt``'s last two dims if they differ."""
    size = tuple(gt.shape[-2:])
    if tuple(pred.shape[-2:]) != size:
        pred = F.interpolate(pred, size=size, mode="bilinear", align_corners=False)
    return pred


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values[mask]``; 0 (still attached to the graph) when ``mask`` is empty."""
    # Dividing by max(count, 1) keeps the result 0 (not NaN) for an empty mask without a host
    # sync; the masked-out entries are replaced by 0 so a NaN there cannot leak into the sum.
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    return total / mask.sum().clamp(min=1)


def _channel_gt(gt: Tensor) -> Tensor:
    """``B×H×W`` → ``B×1×H×W``; 4-D ground truth is returned unchanged."""
    return gt.unsqueeze(1) if gt.dim() == 3 else gt


def segmentation_loss(pred: Tensor, gt: Tensor) -> Tensor:
    """Cross-entropy ignoring label 255.

    pred: ``B×K×h×w`` logits. gt: ``B×H×W`` (or ``B×1×H×W``) integer labels in ``0..K-1`` or 255.
    Returns the mean over non-ignored pixels (0 with a gradient if every pixel is ignored).
    """
    if gt.dim() == 4:
        gt = gt.squeeze(1)
    pred = resize_to(pred.float(), gt)
    gt = gt.long()
    per_pixel = F.cross_entropy(pred, gt, ignore_index=IGNORE_INDEX, reduction="none")
    return _masked_mean(per_pixel, gt != IGNORE_INDEX)


def depth_loss(pred: Tensor, gt: Tensor) -> Tensor:
    """L1 on valid depth pixels (``gt > 0``).

    pred: ``B×1×h×w`` metres. gt: ``B×1×H×W`` (or ``B×H×W``) metres, 0 = invalid.
    """
    # NaN/inf depth counts as invalid; zeroing it first keeps NaN out of the backward pass too.
    gt = torch.nan_to_num(_channel_gt(gt).to(torch.float32), nan=0.0, posinf=0.0, neginf=0.0)
    pred = resize_to(pred.float(), gt)
    valid = gt > 0
    return _masked_mean((pred - gt).abs(), valid)


def normals_loss(pred: Tensor, gt: Tensor) -> Tensor:
    """L1 between the L2-normalised prediction and the ground truth, summed over the three
    channels and averaged over valid pixels (InvPT's ``L1Loss(normalize=True)``).

    pred: ``B×3×h×w`` (any scale). gt: ``B×3×H×W`` unit normals; a pixel is invalid where its
    gt norm is 0 or any channel equals 255. ``Σ_valid Σ_c |n̂_c − g_c| / N_valid`` — 3× a
    per-element mean, which is what the reference weight 10 was tuned with.
    """
    gt = gt.to(torch.float32)
    pred = resize_to(pred.float(), gt)
    unit = F.normalize(pred, p=2, dim=1)
    valid = (gt.norm(p=2, dim=1, keepdim=True) > 0) & (gt != IGNORE_INDEX).all(1, keepdim=True)
    per_pixel = (unit - gt).abs().sum(1, keepdim=True)
    return _masked_mean(per_pixel, valid)


def balanced_bce_with_logits(pred: Tensor, gt: Tensor, pos_weight: float | Tensor | None) -> Tensor:
    """Binary cross-entropy with logits, averaged over pixels whose gt is not 255.

    With ``pos_weight = w``: ``-[w·y·log σ(x) + (1-w)·(1-y)·log(1-σ(x))]`` (class-balanced, HED /
    InvPT style). With ``pos_weight = None``: plain ``-[y·log σ(x) + (1-y)·log(1-σ(x))]``.
    Uses ``logsigmoid`` for stability (``log(1-σ(x)) = logsigmoid(-x)``).

    pred: ``B×1×h×w`` logits. gt: ``B×1×H×W`` (or ``B×H×W``) in {0, 1}, 255 = ignore.
    """
    gt = _channel_gt(gt).to(torch.float32)
    pred = resize_to(pred.float(), gt)
    valid = gt != IGNORE_INDEX
    y = torch.where(valid, gt, torch.zeros_like(gt))
    w_pos, w_neg = (1.0, 1.0) if pos_weight is None else (pos_weight, 1.0 - pos_weight)
    per_pixel = -(w_pos * y * F.logsigmoid(pred) + w_neg * (1.0 - y) * F.logsigmoid(-pred))
    return _masked_mean(per_pixel, valid)


def boundary_loss(pred: Tensor, gt: Tensor) -> Tensor:
    """Class-balanced BCE with ``w = 0.95`` for boundary pixels. Shapes as in
    :func:`balanced_bce_with_logits`."""
    return balanced_bce_with_logits(pred, gt, BOUNDARY_POS_WEIGHT)


def saliency_loss(pred: Tensor, gt: Tensor) -> Tensor:
    """Balanced two-class cross-entropy (InvPT / TaskPrompter ``CrossEntropyLoss(balanced=True)``).

    With ``w = #negatives / #valid`` over the batch, the positive class is weighted ``w`` and the
    negative ``1 − w``; the weighted per-pixel losses are summed and divided by the number of
    valid pixels. Our head emits one logit ``x``: the two-class softmax of logits ``(0, x)`` is
    exactly ``σ(x)``, so the loss is ``−Σ[w·y·log σ(x) + (1−w)(1−y)·log σ(−x)] / N_valid``.
    Shapes as in :func:`balanced_bce_with_logits`.
    """
    gt = _channel_gt(gt).to(torch.float32)
    valid = gt != IGNORE_INDEX
    n_valid = valid.sum()
    n_neg = (valid & (gt < 0.5)).sum()
    # The weight is a statistic of the labels, not a function of the prediction.
    w = (n_neg.float() / n_valid.clamp(min=1).float()).detach()
    return balanced_bce_with_logits(pred, gt, w)
