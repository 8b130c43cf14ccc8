"""The training losses of SAM: focal + dice on the masks, IoU regression, object score.

All mask terms are computed per mask (mean or sums over pixels), then summed over objects
and divided by the number of objects ``B``; pixels of an ``ignore`` mask are left out of
every mask term. With several candidate masks per object (multimask output), only the
candidate with the lowest ``focal_weight * focal + dice_weight * dice`` is supervised, so
the others stay free to cover other valid readings of an ambiguous prompt.

Shapes: ``mask_logits`` ``B x M x H x W``, ``targets`` and ``ignore`` ``B x 1 x H x W``
(``B x H x W`` accepted), ``iou_pred`` ``B x M``, ``object_score_logits`` ``B x 1``.

:func:`feature_scale_penalty` is a regulariser on the image features for training from
random weights (it is 0 by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Sequence
from typing import Literal, Optional

import torch
import torch.nn.functional as F

from samkit.masks import mask_iou

__all__ = [
    "LossWeights",
    "LossTerms",
    "sigmoid_focal_loss",
    "dice_loss",
    "iou_prediction_loss",
    "object_score_loss",
    "sam_loss",
    "feature_scale_penalty",
]


@dataclass
class LossWeights:
    """Weights of the loss terms (SAM: focal 20, dice 1, IoU 1, object score / class 1)."""

    focal: float = 20.0  # sigmoid focal loss on the mask logits
    dice: float = 1.0  # dice loss on the mask probabilities
    iou: float = 1.0  # regression of the predicted IoU onto the real IoU
    object_score: float = 1.0  # BCE of the object score (is the object in the image?)
    feature_scale: float = 0.0  # image features above unit RMS per pixel (see feature_scale_penalty)


@dataclass
class LossTerms:
    """The result of :func:`sam_loss`: weighted total and the unweighted terms (scalars)."""

    total: torch.Tensor  # scalar, sum of the weighted terms; call .backward() on it
    focal: torch.Tensor  # scalar, mean over objects
    dice: torch.Tensor  # scalar, mean over objects
    iou: torch.Tensor  # scalar, mean over objects
    object_score: torch.Tensor  # scalar, mean over objects (0 without object scores)
    best: torch.Tensor  # B long, index of the supervised candidate mask of each object


def _as_4d(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.ndim == 3:
        return x[:, None]
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape B x 1 x H x W or B x H x W, got {tuple(x.shape)}")
    return x


def _valid(
    ignore: Optional[torch.Tensor], like: torch.Tensor, dtype: torch.dtype
) -> Optional[torch.Tensor]:
    """``B x 1 x H x W`` float weights: 1 on pixels that count, 0 on ignored ones."""
    if ignore is None:
        return None
    ig = _as_4d(ignore, "ignore")
    if ig.shape[0] != like.shape[0] or ig.shape[-2:] != like.shape[-2:]:
        raise ValueError(
            f"ignore of shape {tuple(ig.shape)} does not match logits of shape {tuple(like.shape)}"
        )
    return (~(ig > 0)).to(dtype)


def sigmoid_focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    ignore: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Sigmoid focal loss (Lin et al.), averaged over the pixels of each mask.

    Per pixel: ``a_t * (1 - p_t) ** gamma * BCE(logit, t)`` with ``p_t`` the probability
    given to the true class and ``a_t = alpha`` on positives, ``1 - alpha`` on negatives
    (no alpha weighting when ``alpha < 0``).

    Args:
        logits: ``B x M x H x W``.
        targets: ``B x 1 x H x W`` (or ``B x M x H x W``) in ``{0, 1}``.
        alpha, gamma: the focal parameters.
        ignore: ``B x 1 x H x W`` boolean, pixels left out of the mean, or ``None``.

    Returns:
        ``B x M``: the mean over the non-ignored pixels of each mask.
    """
    t = _as_4d(targets, "targets").to(logits.dtype).expand_as(logits)
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    p_t = prob * t + (1 - prob) * (1 - t)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    valid = _valid(ignore, logits, logits.dtype)
    if valid is None:
        return loss.flatten(2).mean(-1)
    valid = valid.expand_as(logits)
    return (loss * valid).flatten(2).sum(-1) / valid.flatten(2).sum(-1).clamp(min=1.0)


def dice_loss(
    logits: torch.Tensor, targets: torch.Tensor, ignore: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Dice loss ``1 - (2 |p t| + 1) / (|p| + |t| + 1)`` on sigmoid probabilities.

    Args:
        logits: ``B x M x H x W``.
        targets: ``B x 1 x H x W`` (or ``B x M x H x W``) in ``{0, 1}``.
        ignore: ``B x 1 x H x W`` boolean, pixels left out of the sums, or ``None``.

    Returns:
        ``B x M``.
    """
    t = _as_4d(targets, "targets").to(logits.dtype).expand_as(logits)
    p = logits.sigmoid()
    valid = _valid(ignore, logits, logits.dtype)
    if valid is not None:
        p = p * valid
        t = t * valid
    p, t = p.flatten(2), t.flatten(2)
    numerator = 2 * (p * t).sum(-1)
    denominator = p.sum(-1) + t.sum(-1)
    return 1 - (numerator + 1) / (denominator + 1)


def iou_prediction_loss(
    iou_pred: torch.Tensor,
    logits: torch.Tensor,
    targets: torch.Tensor,
    ignore: Optional[torch.Tensor] = None,
    kind: Literal["mse", "l1"] = "mse",
) -> torch.Tensor:
    """Regression of the predicted IoU onto the real IoU of each mask (not back-propagated
    into the masks).

    Args:
        iou_pred: ``B x M``.
        logits: ``B x M x H x W``.
        targets: ``B x 1 x H x W``.
        ignore: ``B x 1 x H x W`` boolean, or ``None``.
        kind: ``"mse"`` (SAM) or ``"l1"`` (the SAM 2.1 training setting).

    Returns:
        ``B x M``.
    """
    keep_out = None if ignore is None else _as_4d(ignore, "ignore") > 0
    # two empty masks count as no overlap (0): an empty target has nothing to predict the IoU of
    real = mask_iou(logits.detach() > 0, _as_4d(targets, "targets") > 0, ignore=keep_out, empty=0.0).to(iou_pred.dtype)
    if kind == "mse":
        return F.mse_loss(iou_pred, real, reduction="none")
    if kind == "l1":
        return F.l1_loss(iou_pred, real, reduction="none")
    raise ValueError(f"kind must be 'mse' or 'l1', got {kind!r}")


def object_score_loss(object_score_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BCE of the object score against "the target has at least one pixel".

    Args:
        object_score_logits: ``B x 1``.
        targets: ``B x 1 x H x W``.

    Returns:
        ``B x 1``.
    """
    present = (_as_4d(targets, "targets") > 0).flatten(1).any(dim=1, keepdim=True)
    return F.binary_cross_entropy_with_logits(
        object_score_logits, present.to(object_score_logits.dtype), reduction="none"
    )


def feature_scale_penalty(features: Sequence[torch.Tensor], limit: float = 1.0) -> torch.Tensor:
    """Keeps image features on the scale of the prompt position encodings.

    For every ``B x C x h x w`` map in ``features`` (the image encoder's outputs), each pixel's
    root-mean-square over channels is compared with ``limit``; the squared excess is averaged
    over pixels and summed over maps. Below the limit the penalty is 0.

    Why: the mask decoder finds the prompted object by matching the prompt's position encoding
    (unit-scale sines and cosines) with the pixels' encodings, which are *added* to the image
    features. Trained from random weights without this term, the features of ``samkit_nano``
    grew to an RMS of about 30 per channel within 1,500 steps, the position encodings were
    drowned, and the decoder stopped using the prompt at all (the same mask for every click).
    """
    total = features[0].new_zeros(()) if features else torch.zeros(())
    for f in features:
        rms = f.float().pow(2).mean(dim=1).add(1e-6).sqrt()  # B x h x w
        total = total + torch.relu(rms - limit).pow(2).mean()
    return total


def sam_loss(
    mask_logits: torch.Tensor,
    iou_pred: torch.Tensor,
    targets: torch.Tensor,
    object_score_logits: Optional[torch.Tensor] = None,
    ignore: Optional[torch.Tensor] = None,
    weights: Optional[LossWeights] = None,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
    iou_kind: Literal["mse", "l1"] = "mse",
    supervise_all_iou: bool = False,
) -> LossTerms:
    """The combined loss of one decoder run.

    With ``M > 1`` candidates per object, the focal, dice and IoU terms are taken from the
    candidate with the lowest ``weights.focal * focal + weights.dice * dice`` (with
    ``supervise_all_iou`` the IoU term averages all candidates instead). Mask and IoU terms
    count only objects whose target has at least one pixel (an absent object is taught by
    the object score alone). Every term is summed over objects and divided by ``B``.

    For interactive training, call this once per decoder run and add the totals.

    Args:
        mask_logits: ``B x M x H x W``, at the resolution of ``targets``.
        iou_pred: ``B x M`` predicted IoUs.
        targets: ``B x 1 x H x W`` (or ``B x H x W``) in ``{0, 1}``.
        object_score_logits: ``B x 1``, or ``None`` (then the object term is 0).
        ignore: ``B x 1 x H x W`` (or ``B x H x W``) boolean, pixels excluded, or ``None``.
        weights: term weights (default :class:`LossWeights`, 20:1:1:1).
        focal_alpha, focal_gamma: focal loss parameters.
        iou_kind: ``"mse"`` or ``"l1"`` for the IoU term.
        supervise_all_iou: supervise the IoU prediction of every candidate.

    Returns:
        :class:`LossTerms`.
    """
    w = weights if weights is not None else LossWeights()
    if mask_logits.ndim != 4:
        raise ValueError(f"mask_logits must be B x M x H x W, got {tuple(mask_logits.shape)}")
    t = _as_4d(targets, "targets")
    b, m = mask_logits.shape[:2]
    if t.shape[0] != b or t.shape[-2:] != mask_logits.shape[-2:]:
        raise ValueError(
            f"targets of shape {tuple(t.shape)} do not match mask_logits of shape "
            f"{tuple(mask_logits.shape)} (upsample the logits or downsample the targets first)"
        )
    if iou_pred.shape != (b, m):
        raise ValueError(f"iou_pred must have shape {(b, m)}, got {tuple(iou_pred.shape)}")
    t = t.to(mask_logits.dtype)

    focal = sigmoid_focal_loss(mask_logits, t, focal_alpha, focal_gamma, ignore)  # B x M
    dice = dice_loss(mask_logits, t, ignore)  # B x M
    iou = iou_prediction_loss(iou_pred, mask_logits, t, ignore, iou_kind)  # B x M

    rows = torch.arange(b, device=mask_logits.device)
    if m > 1:
        combo = w.focal * focal + w.dice * dice
        best = combo.detach().argmin(dim=1)
    else:
        best = torch.zeros(b, dtype=torch.long, device=mask_logits.device)
    focal_b = focal[rows, best]
    dice_b = dice[rows, best]
    iou_b = iou.mean(dim=1) if supervise_all_iou else iou[rows, best]

    present = (t > 0).flatten(1).any(dim=1).to(mask_logits.dtype)  # B
    focal_term = (focal_b * present).sum() / b
    dice_term = (dice_b * present).sum() / b
    iou_term = (iou_b * present).sum() / b
    if object_score_logits is None:
        obj_term = mask_logits.new_zeros(())
    else:
        obj_term = object_score_loss(object_score_logits, t).sum() / b

    total = w.focal * focal_term + w.dice * dice_term + w.iou * iou_term + w.object_score * obj_term
    return LossTerms(
        total=total,
        focal=focal_term,
        dice=dice_term,
        iou=iou_term,
        object_score=obj_term,
        best=best,
    )
