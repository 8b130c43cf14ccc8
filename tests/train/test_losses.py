"""SAM losses: hand-computed values, multimask selection, ignore masks."""

from __future__ import annotations

import math

import pytest
import torch

from samkit.masks import mask_iou

from samkit.train.losses import (
    LossWeights,
    dice_loss,
    feature_scale_penalty,
    iou_prediction_loss,
    object_score_loss,
    sam_loss,
    sigmoid_focal_loss,
)

LN2 = math.log(2.0)


def _focal_pixel(logit: float, t: float, alpha: float = 0.25, gamma: float = 2.0) -> float:
    p = 1 / (1 + math.exp(-logit))
    ce = -math.log(p) if t else -math.log(1 - p)
    p_t = p if t else 1 - p
    a_t = alpha if t else 1 - alpha
    return a_t * (1 - p_t) ** gamma * ce


def test_focal_known_values() -> None:
    # Logit 0 everywhere: p = 0.5, (1 - p_t)^2 = 1/4, CE = ln 2.
    logits = torch.zeros(1, 1, 2, 2)
    targets = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    got = sigmoid_focal_loss(logits, targets)
    assert got.shape == (1, 1)
    assert got.item() == pytest.approx((0.25 + 0.75) / 2 * 0.25 * LN2)
    # Mixed logits against a scalar implementation.
    vals = [2.0, -1.0, 0.5, -3.0]
    tgts = [1.0, 1.0, 0.0, 0.0]
    logits = torch.tensor(vals).reshape(1, 1, 2, 2)
    targets = torch.tensor(tgts).reshape(1, 1, 2, 2)
    want = sum(_focal_pixel(v, t) for v, t in zip(vals, tgts)) / 4
    assert sigmoid_focal_loss(logits, targets).item() == pytest.approx(want, rel=1e-6)
    # gamma = 0, alpha < 0: plain BCE.
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    assert sigmoid_focal_loss(logits, targets, alpha=-1, gamma=0).item() == pytest.approx(
        bce.item()
    )


def test_dice_known_values() -> None:
    targets = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    half = dice_loss(torch.zeros(1, 1, 2, 2), targets)
    assert half.item() == pytest.approx(1 - (2 * 1.0 + 1) / (2.0 + 2.0 + 1))  # 0.4
    perfect = dice_loss((targets * 2 - 1) * 50, targets)
    assert perfect.item() == pytest.approx(0.0, abs=1e-6)
    wrong = dice_loss((1 - targets * 2) * 50, targets)
    assert wrong.item() == pytest.approx(1 - 1 / 5, abs=1e-6)  # (0 + 1) / (2 + 2 + 1)


def test_iou_and_object_terms() -> None:
    targets = torch.zeros(1, 1, 4, 4)
    targets[..., :2, :] = 1  # 8 pixels
    logits = -torch.ones(1, 2, 4, 4)
    logits[:, 0, :2, :2] = 1  # 4 of 8: IoU 0.5
    logits[:, 1, :, :2] = 1  # 8 pixels, 4 shared: IoU 4 / 12
    iou = mask_iou(logits > 0, targets > 0, empty=0.0)
    torch.testing.assert_close(iou, torch.tensor([[0.5, 1 / 3]], dtype=torch.float64))
    # two empty masks: no overlap for the IoU head's target
    assert mask_iou(torch.zeros(1, 4, 4) > 0, torch.zeros(1, 4, 4) > 0, empty=0.0).item() == 0.0
    pred = torch.tensor([[0.7, 0.0]])
    loss = iou_prediction_loss(pred, logits, targets)
    torch.testing.assert_close(loss, torch.tensor([[0.04, 1 / 9]]))
    l1 = iou_prediction_loss(pred, logits, targets, kind="l1")
    torch.testing.assert_close(l1, torch.tensor([[0.2, 1 / 3]]))
    obj = object_score_loss(torch.zeros(2, 1), torch.stack([targets[0], torch.zeros(1, 4, 4)]))
    torch.testing.assert_close(obj, torch.full((2, 1), LN2))
    assert object_score_loss(torch.tensor([[10.0]]), targets).item() == pytest.approx(
        math.log1p(math.exp(-10.0))
    )


def test_sam_loss_total_and_weights() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 1, 8, 8)
    targets = (torch.rand(3, 1, 8, 8) > 0.5).float()
    iou_pred = torch.rand(3, 1)
    obj = torch.randn(3, 1)
    out = sam_loss(logits, iou_pred, targets, obj)
    focal = sigmoid_focal_loss(logits, targets).mean()
    dice = dice_loss(logits, targets).mean()
    iou = iou_prediction_loss(iou_pred, logits, targets).mean()
    objl = object_score_loss(obj, targets).mean()
    torch.testing.assert_close(out.focal, focal)
    torch.testing.assert_close(out.dice, dice)
    torch.testing.assert_close(out.iou, iou)
    torch.testing.assert_close(out.object_score, objl)
    torch.testing.assert_close(out.total, 20 * focal + dice + iou + objl)
    w = LossWeights(focal=1.0, dice=2.0, iou=3.0, object_score=4.0)
    torch.testing.assert_close(
        sam_loss(logits, iou_pred, targets, obj, weights=w).total,
        focal + 2 * dice + 3 * iou + 4 * objl,
    )
    no_obj = sam_loss(logits, iou_pred, targets)
    assert no_obj.object_score.item() == 0.0


def test_multimask_supervises_only_the_best_candidate() -> None:
    targets = torch.zeros(2, 1, 6, 6)
    targets[0, 0, 1:4, 1:4] = 1
    targets[1, 0, 2:6, :] = 1
    good = (targets * 2 - 1) * 8  # close to the target
    noise = torch.randn(2, 3, 6, 6)
    logits = noise.clone()
    logits[0, 2] = good[0, 0]
    logits[1, 0] = good[1, 0]
    logits.requires_grad_(True)
    iou_pred = torch.full((2, 3), 0.5, requires_grad=True)
    out = sam_loss(logits, iou_pred, targets)
    assert out.best.tolist() == [2, 0]
    single = sam_loss(
        torch.stack([logits[0, 2], logits[1, 0]])[:, None],
        torch.stack([iou_pred[0, 2], iou_pred[1, 0]])[:, None],
        targets,
    )
    torch.testing.assert_close(out.total, single.total)
    out.total.backward()
    grads = logits.grad.abs().flatten(2).sum(-1)
    assert grads[0, 2] > 0 and grads[1, 0] > 0
    assert grads[0, :2].sum() == 0 and grads[1, 1:].sum() == 0
    assert iou_pred.grad[0, 2] != 0 and iou_pred.grad[0, 0] == 0
    out_all = sam_loss(logits.detach(), iou_pred.detach(), targets, supervise_all_iou=True)
    all_iou = iou_prediction_loss(iou_pred.detach(), logits.detach(), targets).mean()
    torch.testing.assert_close(out_all.iou, all_iou)


def test_ignored_pixels_do_not_count() -> None:
    torch.manual_seed(1)
    targets = (torch.rand(2, 1, 10, 10) > 0.5).float()
    ignore = torch.zeros(2, 1, 10, 10, dtype=torch.bool)
    ignore[..., :, 6:] = True
    logits = torch.randn(2, 2, 10, 10)
    iou_pred = torch.rand(2, 2)
    a = sam_loss(logits, iou_pred, targets, ignore=ignore)
    changed = logits.clone()
    changed[..., :, 6:] = 100.0  # anything on ignored pixels
    b = sam_loss(changed, iou_pred, targets, ignore=ignore)
    torch.testing.assert_close(a.total, b.total)
    # Same as computing on the kept columns only.
    c = sam_loss(logits[..., :6], iou_pred, targets[..., :6])
    torch.testing.assert_close(a.focal, c.focal)
    torch.testing.assert_close(a.dice, c.dice)
    torch.testing.assert_close(a.iou, c.iou)
    # B x H x W ignore and targets are accepted too.
    d = sam_loss(logits, iou_pred, targets[:, 0], ignore=ignore[:, 0])
    torch.testing.assert_close(a.total, d.total)


def test_absent_object_is_taught_by_the_object_score_only() -> None:
    targets = torch.zeros(2, 1, 5, 5)
    targets[0, 0, 1:3, 1:3] = 1  # object 1 is absent
    logits = torch.randn(2, 1, 5, 5)
    iou_pred = torch.rand(2, 1)
    obj = torch.zeros(2, 1)
    out = sam_loss(logits, iou_pred, targets, obj)
    present_only = sam_loss(logits[:1], iou_pred[:1], targets[:1], obj[:1])
    torch.testing.assert_close(out.focal, present_only.focal / 2)  # divided by B = 2
    torch.testing.assert_close(out.object_score, torch.tensor(LN2))


def test_shape_errors() -> None:
    with pytest.raises(ValueError):
        sam_loss(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3), torch.zeros(2, 1, 5, 4))
    with pytest.raises(ValueError):
        sam_loss(torch.zeros(2, 3, 4, 4), torch.zeros(2, 1), torch.zeros(2, 1, 4, 4))


def test_feature_scale_penalty_known_values() -> None:
    small = torch.full((2, 8, 3, 3), 0.9)  # RMS 0.9 <= 1: no penalty, no gradient
    assert float(feature_scale_penalty([small])) == 0.0
    big = torch.full((1, 4, 2, 2), 3.0, requires_grad=True)  # RMS 3: (3 - 1)^2 = 4 per pixel
    mixed = torch.zeros(1, 2, 1, 2)
    mixed[0, :, 0, 0] = 5.0  # one pixel of RMS 5 -> 16, one of 0 -> 0: mean 8
    value = feature_scale_penalty([big, mixed])
    assert value.item() == pytest.approx(4.0 + 8.0, rel=1e-5)
    value.backward()
    assert (big.grad > 0).all()  # descending it shrinks the features
    assert float(feature_scale_penalty([small], limit=0.5)) == pytest.approx(0.16, rel=1e-4)
