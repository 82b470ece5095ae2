"""Per-kind losses on small hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mtlsi_edge.kinds import KINDS
from mtlsi_edge.losses import (
    balanced_bce_with_logits,
    boundary_loss,
    depth_loss,
    normals_loss,
    saliency_loss,
    segmentation_loss,
)
from mtlsi_edge.objectives import task_loss
from mtlsi_edge.tasks import TASK_SETS


def test_every_task_kind_has_a_loss() -> None:
    kinds = {t.kind for ts in TASK_SETS.values() for t in ts}
    assert kinds <= set(KINDS)


def test_segmentation_ignores_255() -> None:
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 2, 3)
    gt = torch.tensor([[[0, 1, 2], [255, 1, 255]]])
    loss = segmentation_loss(logits, gt)
    valid = gt != 255
    manual = F.cross_entropy(logits.permute(0, 2, 3, 1)[valid], gt[valid])
    assert loss.item() == pytest.approx(manual.item(), rel=1e-6)
    # Changing the logits at ignored pixels changes nothing.
    changed = logits.clone()
    changed[0, :, 1, 0] = torch.tensor([50.0, -50.0, 3.0])
    changed[0, :, 1, 2] = torch.tensor([-9.0, 9.0, 0.0])
    assert segmentation_loss(changed, gt).item() == pytest.approx(loss.item(), rel=1e-6)
    # ... while changing a valid pixel does.
    changed[0, :, 0, 0] = torch.tensor([-5.0, 5.0, 5.0])
    assert segmentation_loss(changed, gt).item() > loss.item() + 1.0


def test_segmentation_all_ignored_is_zero_with_grad() -> None:
    logits = torch.randn(2, 4, 3, 3, requires_grad=True)
    loss = segmentation_loss(logits, torch.full((2, 3, 3), 255))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() == 0


def test_segmentation_upsamples_low_resolution_prediction() -> None:
    torch.manual_seed(1)
    logits = torch.randn(1, 3, 2, 2)
    gt = torch.randint(0, 3, (1, 4, 4))
    up = F.interpolate(logits, size=(4, 4), mode="bilinear", align_corners=False)
    expected = F.cross_entropy(up, gt)
    assert segmentation_loss(logits, gt).item() == pytest.approx(expected.item(), rel=1e-6)


def test_depth_l1_on_valid_pixels_only() -> None:
    pred = torch.tensor([1.0, 2.0, 3.0, 7.0]).view(1, 1, 2, 2)
    gt = torch.tensor([2.0, 0.0, 1.0, float("nan")]).view(1, 1, 2, 2)
    # valid: |1-2| and |3-1| → (1 + 2) / 2
    assert depth_loss(pred, gt).item() == pytest.approx(1.5)
    assert depth_loss(pred, gt[:, 0]).item() == pytest.approx(1.5)  # B×H×W gt accepted


def test_depth_without_valid_pixels_is_zero_not_nan() -> None:
    pred = torch.rand(2, 1, 4, 4, requires_grad=True)
    gt = torch.zeros(2, 1, 4, 4)
    gt[0, 0, 0, 0] = float("nan")
    loss = depth_loss(pred, gt)
    assert loss.item() == 0.0 and not math.isnan(loss.item())
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() == 0


def test_normals_perfect_prediction_gives_zero() -> None:
    gt = F.normalize(torch.randn(2, 3, 4, 5), dim=1)
    scale = torch.rand(2, 1, 4, 5) * 10 + 0.1
    assert normals_loss(gt * scale, gt).item() == pytest.approx(0.0, abs=1e-6)


def test_normals_hand_case_with_invalid_pixels() -> None:
    # pixel 0: pred (0,0,2) → (0,0,1) vs gt (0,1,0): L1 = 0+1+1 = 2
    # pixel 1: gt 255 (invalid); pixel 2: gt zero norm (invalid)
    pred = torch.tensor([[0.0, 5.0, 1.0], [0.0, 5.0, 1.0], [2.0, 5.0, 1.0]]).view(1, 3, 1, 3)
    gt = torch.tensor([[0.0, 255.0, 0.0], [1.0, 255.0, 0.0], [0.0, 255.0, 0.0]]).view(1, 3, 1, 3)
    # InvPT L1Loss(normalize=True): summed over channels, divided by valid *pixels* (1 here).
    assert normals_loss(pred, gt).item() == pytest.approx(2.0, rel=1e-6)


def _reference_normals_l1(out: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """InvPT ``L1Loss(normalize=True, ignore_index=255)`` (losses/loss_functions.py)."""
    out = F.normalize(out, p=2, dim=1)
    mask = (label != 255).all(dim=1, keepdim=True)
    n_valid = mask.sum().item()
    masked_out = torch.masked_select(out, mask)
    masked_label = torch.masked_select(label, mask)
    return F.l1_loss(masked_out, masked_label, reduction="sum") / max(n_valid, 1)


def _reference_balanced_ce(out2: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """InvPT ``CrossEntropyLoss(balanced=True, ignore_index=255)`` on two-class logits."""
    label = label.squeeze(1).long()
    mask = label != 255
    masked = torch.masked_select(label, mask)
    w_pos = torch.sum(1.0 - masked) / masked.numel()
    weight = torch.stack((1.0 - w_pos, w_pos))
    loss = F.cross_entropy(out2, label, weight=weight, ignore_index=255, reduction="none")
    return loss.sum() / max(mask.sum(), 1)


def _reference_balanced_bce(output: torch.Tensor, label: torch.Tensor, w: float) -> torch.Tensor:
    """InvPT ``BalancedBinaryCrossEntropyLoss(pos_weight=w, ignore_index=255)``."""
    mask = label != 255
    factor = 1.0 / (1 - w)
    loss = F.binary_cross_entropy_with_logits(torch.masked_select(output, mask),
                                              torch.masked_select(label, mask),
                                              pos_weight=torch.tensor(w * factor))
    return loss / factor


def test_normals_loss_is_invpt_l1_on_random_tensors() -> None:
    torch.manual_seed(5)
    pred = torch.randn(2, 3, 6, 7)
    gt = F.normalize(torch.randn(2, 3, 6, 7), dim=1)
    gt[0, :, :2] = 255  # invalid rows
    ours = normals_loss(pred, gt)
    assert ours.item() == pytest.approx(_reference_normals_l1(pred, gt).item(), rel=1e-6)
    # 3× the per-element mean: the weight 10 acts on the summed channels.
    valid = (gt != 255).all(1, keepdim=True).expand_as(gt)
    per_element = (F.normalize(pred, dim=1) - gt).abs()[valid].mean()
    assert ours.item() == pytest.approx(3 * per_element.item(), rel=1e-5)


def test_saliency_loss_is_invpt_balanced_ce_on_random_tensors() -> None:
    torch.manual_seed(6)
    x = torch.randn(2, 1, 5, 6) * 3
    gt = (torch.rand(2, 1, 5, 6) > 0.7).float()
    gt[1, 0, 0] = 255
    two_class = torch.cat([torch.zeros_like(x), x], 1)  # softmax((0, x))[1] == σ(x)
    expected = _reference_balanced_ce(two_class, gt)
    assert saliency_loss(x, gt).item() == pytest.approx(expected.item(), rel=1e-5)
    plain = F.binary_cross_entropy_with_logits(x[gt != 255], gt[gt != 255])
    assert abs(saliency_loss(x, gt).item() - plain.item()) > 1e-3  # not plain BCE any more


def test_boundary_loss_is_invpt_balanced_bce_on_random_tensors() -> None:
    torch.manual_seed(7)
    x = torch.randn(2, 1, 5, 6) * 3
    gt = (torch.rand(2, 1, 5, 6) > 0.8).float()
    gt[0, 0, :, 0] = 255
    expected = _reference_balanced_bce(x, gt, 0.95)
    assert boundary_loss(x, gt).item() == pytest.approx(expected.item(), rel=1e-5)


def test_boundary_balanced_bce_matches_hand_computation() -> None:
    pred = torch.tensor([0.0, 2.0, 30.0]).view(1, 1, 1, 3)
    gt = torch.tensor([1.0, 0.0, 255.0]).view(1, 1, 1, 3)
    w = 0.95
    expected = (w * math.log(2.0) + (1 - w) * math.log(1 + math.exp(2.0))) / 2
    assert boundary_loss(pred, gt).item() == pytest.approx(expected, rel=1e-6)
    assert balanced_bce_with_logits(pred, gt, 0.8).item() == pytest.approx(
        (0.8 * math.log(2.0) + 0.2 * math.log(1 + math.exp(2.0))) / 2, rel=1e-6
    )


def test_bce_is_stable_for_extreme_logits() -> None:
    pred = torch.tensor([200.0, -200.0]).view(1, 1, 1, 2).requires_grad_()
    gt = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2)
    loss = boundary_loss(pred, gt)
    # −[0.05·log(1−σ(200)) + 0.95·log σ(−200)] / 2 = (0.05·200 + 0.95·200) / 2
    assert loss.item() == pytest.approx(100.0, rel=1e-5)
    loss.backward()
    assert torch.isfinite(pred.grad).all()


def test_task_loss_dispatches_by_kind() -> None:
    task = TASK_SETS["nyud"]["depth"]
    pred = torch.ones(1, 1, 2, 2)
    gt = torch.full((1, 1, 2, 2), 3.0)
    assert task_loss(task, pred, gt).item() == pytest.approx(2.0)
