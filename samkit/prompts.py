"""Simulated clicks and boxes: the prompts of interactive training and evaluation.

Training follows the interactive algorithm of the Segment Anything papers:

1. a first prompt per object (:func:`sample_first_prompt`): a positive point uniform in the
   mask, a positive point at the mask's centre, or the mask's box with noise;
2. correction rounds (:func:`sample_error_click`): each adds one click drawn uniformly from
   the error region between the current prediction and the target, positive (label 1) on a
   false negative pixel and negative (label 0) on a false positive one;
3. a few rounds that add no click and only feed the previous mask back
   (:func:`round_schedule` says which rounds are which).

Evaluation uses the deterministic click of the standard interactive protocol (RITM,
SimpleClick): :func:`sample_center_error_click` (batched, torch) and :func:`evaluation_click`
(one mask, numpy).

Conventions: points are ``(x, y)`` pixel coordinates at the resolution of the masks given;
labels are 1 (positive), 0 (negative), 2 / 3 (box top-left / bottom-right corner, as the
prompt encoder reads boxes). Masks are ``B x H x W`` or ``B x 1 x H x W`` tensors, one
per object: boolean, or anything else read as ``> 0`` (so mask logits work; threshold
probabilities yourself). Randomness comes only from the ``torch.Generator`` passed in (on
the masks' device; :func:`round_schedule` takes a CPU one), so a seeded generator makes
every sampler deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np
import torch

from samkit.masks.boxes import masks_to_boxes
from samkit.errors import ConfigError, PromptError

__all__ = [
    "ClickConfig",
    "Prompt",
    "euclidean_distance_transform",
    "sample_point_in_mask",
    "sample_center_point",
    "sample_noisy_box",
    "box_to_points",
    "sample_first_prompt",
    "sample_error_click",
    "sample_center_error_click",
    "sample_correction_click",
    "evaluation_click",
    "round_schedule",
    "best_candidate",
    "select_best",
    
    "POSITIVE",
    "NEGATIVE",
    "BOX_TOP_LEFT",
    "BOX_BOTTOM_RIGHT",
    "FEEDBACK_CLAMP",
]

POSITIVE: int = 1  # a click on the object
NEGATIVE: int = 0  # a click on the background
BOX_TOP_LEFT: int = 2  # a box's top-left corner, as the prompt encoder reads boxes
BOX_BOTTOM_RIGHT: int = 3  # a box's bottom-right corner

# Low-resolution logits fed back as the next round's mask prompt are clamped to
# [-FEEDBACK_CLAMP, FEEDBACK_CLAMP], as ImagePredictor.predict returns them; saturated logits
# beyond that carry no more information and only make the prompt encoder's input extreme.
FEEDBACK_CLAMP: float = 32.0


@dataclass
class ClickConfig:
    """How prompts are simulated during interactive training."""

    # rounds after the first prompt that add one sampled correction click
    num_correction_rounds: int = 8
    # rounds that add no click, only feed the last mask back (one random, one at the end)
    num_rounds_without_click: int = 2
    # probability that the first prompt is a noisy box rather than a point
    prob_box: float = 0.5
    # for a first point: probability of the mask's centre point instead of a uniform one
    prob_center_point: float = 0.0
    # centre point: uniform among pixels at least (1 - center_fraction) * max depth deep;
    # 0 takes the deepest pixel itself
    center_fraction: float = 0.0
    # box corner noise as a fraction of the box side ...
    box_noise: float = 0.1
    # ... and at most this many pixels
    box_noise_max_px: float = 20.0
    # "gaussian": std box_noise * side, clipped to +-box_noise_max_px (the SAM paper);
    # "uniform": in +-min(box_noise * side, box_noise_max_px) (the SAM 2 training code)
    box_noise_distribution: Literal["gaussian", "uniform"] = "gaussian"
    # correction clicks: "uniform" in the error region (training) or "center", the
    # deterministic click of the evaluation protocol
    correction_method: Literal["uniform", "center"] = "uniform"

    def __post_init__(self) -> None:
        if self.num_correction_rounds < 0 or self.num_rounds_without_click < 0:
            raise ConfigError(
                "ClickConfig: num_correction_rounds and num_rounds_without_click must be >= 0, "
                f"got {self.num_correction_rounds} and {self.num_rounds_without_click}"
            )
        for name in ("prob_box", "prob_center_point", "center_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"ClickConfig.{name} must lie in [0, 1], got {value}")
        if self.box_noise < 0 or self.box_noise_max_px < 0:
            raise ConfigError(
                "ClickConfig: box_noise and box_noise_max_px must be >= 0, got "
                f"{self.box_noise} and {self.box_noise_max_px}"
            )
        if self.box_noise_distribution not in ("gaussian", "uniform"):
            raise ConfigError(
                "ClickConfig.box_noise_distribution must be 'gaussian' or 'uniform', got "
                f"{self.box_noise_distribution!r}"
            )
        if self.correction_method not in ("uniform", "center"):
            raise ConfigError(
                "ClickConfig.correction_method must be 'uniform' or 'center', got "
                f"{self.correction_method!r}"
            )


@dataclass
class Prompt:
    """The first prompt of each object of a batch, in the prompt encoder's point form.

    A box is given as its two corners with labels 2 (top-left) and 3 (bottom-right).
    """

    points: torch.Tensor  # B x N x 2 float (x, y); N = 1 for a point, 2 for a box
    labels: torch.Tensor  # B x N int32
    boxes: Optional[torch.Tensor]  # B x 4 float (x0, y0, x1, y1) when a box, else None

    @property
    def is_box(self) -> bool:
        """Whether the prompt is a box (two corner points) rather than one click."""
        return self.boxes is not None


# --------------------------------------------------------------------------- helpers


def _as_masks(masks: torch.Tensor, what: str = "masks") -> torch.Tensor:
    """Accept ``B x H x W`` or ``B x 1 x H x W`` masks; return ``B x H x W`` bool."""
    if not isinstance(masks, torch.Tensor):
        raise PromptError(f"{what} must be a torch.Tensor, got {type(masks).__name__}")
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.ndim != 3:
        raise PromptError(
            f"{what} must have shape B x H x W or B x 1 x H x W, got {tuple(masks.shape)}"
        )
    return masks if masks.dtype == torch.bool else masks > 0


def _check_same(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise PromptError(
            f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )


def _require_nonempty(masks: torch.Tensor) -> None:
    empty = ~masks.flatten(1).any(dim=1)
    if bool(empty.any()):
        idx = torch.nonzero(empty).flatten().tolist()
        raise PromptError(
            f"cannot place a prompt on an empty mask (objects {idx[:10]} of the batch have no "
            "pixel); drop empty targets before sampling prompts"
        )


def _index_to_xy(flat_index: torch.Tensor, width: int) -> torch.Tensor:
    """``B`` flat indices into ``H x W`` -> ``B x 2`` float (x, y)."""
    return torch.stack([flat_index % width, flat_index // width], dim=-1).to(torch.float32)


def _sample_flat(weights: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """One index per row, uniform among the True entries of ``weights`` (``B x N`` bool).

    Every row must have at least one True entry.
    """
    choice = torch.multinomial(weights.to(torch.float32), 1, generator=generator)  # B x 1
    return choice[:, 0]


def euclidean_distance_transform(mask: np.ndarray) -> np.ndarray:
    """Exact Euclidean distance of every pixel to the nearest zero pixel.

    The same quantity as ``scipy.ndimage.distance_transform_edt`` and OpenCV's
    ``distanceTransform(..., DIST_L2, 0)``: 0 on zero pixels, and on non-zero pixels the
    distance to the closest zero pixel. Computed with the two-pass lower-envelope algorithm of
    Felzenszwalb and Huttenlocher, vectorised over rows (and over a leading batch axis).

    Args:
        mask: ``H x W`` or ``B x H x W`` array; non-zero pixels are the foreground.

    Returns:
        float64 array of the same shape. Where a mask has no zero pixel at all, every
        distance is ``inf``.
    """
    fg = np.asarray(mask) != 0
    if fg.ndim not in (2, 3):
        raise PromptError(f"mask must be H x W or B x H x W, got shape {fg.shape}")
    squeeze = fg.ndim == 2
    if squeeze:
        fg = fg[None]
    b, h, w = fg.shape
    if h == 0 or w == 0:
        out = np.zeros(fg.shape, dtype=np.float64)
        return out[0] if squeeze else out

    # Pass 1, along columns: distance to the nearest zero pixel in the same column.
    rows = np.arange(h)[None, :, None]
    big = float(h + w) ** 2 * 4.0 + 1.0  # larger than any true squared distance
    last_zero = np.where(~fg, rows, -(10 * (h + w)))
    last_zero = np.maximum.accumulate(last_zero, axis=1)
    next_zero = np.where(~fg, rows, 10 * (h + w))
    next_zero = np.minimum.accumulate(next_zero[:, ::-1], axis=1)[:, ::-1]
    col = np.minimum(rows - last_zero, next_zero - rows).astype(np.float64)
    g2 = np.where(col >= h, big, col * col).reshape(b * h, w)  # (B*H) x W squared distances

    # Pass 2, along rows: min over q of (x - q)^2 + g2[q], the lower envelope of parabolas.
    n = b * h
    r = np.arange(n)
    v = np.zeros((n, w), dtype=np.int64)  # parabola apexes in the envelope
    z = np.full((n, w + 1), np.inf)  # boundaries between envelope parabolas
    z[:, 0] = -np.inf
    k = np.zeros(n, dtype=np.int64)  # index of the last parabola per row
    for q in range(1, w):
        fq = g2[:, q] + float(q * q)
        while True:
            vk = v[r, k]
            s = (fq - (g2[r, vk] + vk * vk)) / (2.0 * (q - vk))
            pop = s <= z[r, k]
            if not pop.any():
                break
            k = np.where(pop, k - 1, k)
        k = k + 1
        v[r, k] = q
        z[r, k] = s
        z[r, k + 1] = np.inf
    d2 = np.empty((n, w), dtype=np.float64)
    k = np.zeros(n, dtype=np.int64)
    for q in range(w):
        while True:
            advance = z[r, k + 1] < q
            if not advance.any():
                break
            k = np.where(advance, k + 1, k)
        vk = v[r, k]
        d2[:, q] = (q - vk) ** 2 + g2[r, vk]
    dist = np.sqrt(d2).reshape(b, h, w)
    dist[~fg] = 0.0
    no_zero = ~(~fg).reshape(b, -1).any(axis=1)
    dist[no_zero] = np.inf
    return dist[0] if squeeze else dist


def _depth(masks: np.ndarray, padding: bool) -> np.ndarray:
    """Distance to the region boundary; with ``padding`` the image border counts as one.

    With ``padding`` each mask is transformed inside its bounding box grown by one pixel
    (zeros beyond the image): the nearest zero pixel of any foreground pixel always lies in
    that box, so the result is the same as on the whole padded image, at the cost of the
    region's size rather than the image's.
    """
    if not padding:
        return euclidean_distance_transform(masks)
    fg = np.asarray(masks) != 0
    out = np.zeros(fg.shape, dtype=np.float64)
    for i in range(fg.shape[0]):
        rows = np.flatnonzero(fg[i].any(axis=1))
        if rows.size == 0:
            continue
        cols = np.flatnonzero(fg[i].any(axis=0))
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        crop = np.pad(fg[i, y0:y1, x0:x1], 1)
        out[i, y0:y1, x0:x1] = euclidean_distance_transform(crop)[1:-1, 1:-1]
    return out


# --------------------------------------------------------------------------- first prompt


def sample_point_in_mask(
    masks: torch.Tensor, generator: Optional[torch.Generator] = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A positive click uniformly at random inside each mask.

    Args:
        masks: ``B x H x W`` or ``B x 1 x H x W`` boolean, none of them empty.
        generator: source of randomness.

    Returns:
        ``(points, labels)``: ``B x 1 x 2`` float (x, y) and ``B x 1`` int32 (all 1).

    Raises:
        PromptError: a mask is empty or has the wrong shape.
    """
    m = _as_masks(masks)
    _require_nonempty(m)
    idx = _sample_flat(m.flatten(1), generator)
    points = _index_to_xy(idx, m.shape[2])[:, None]
    labels = torch.full((m.shape[0], 1), POSITIVE, dtype=torch.int32, device=m.device)
    return points, labels


def sample_center_point(
    masks: torch.Tensor,
    center_fraction: float = 0.0,
    generator: Optional[torch.Generator] = None,
    padding: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A positive click at the centre of each mask: its pixel farthest from the boundary.

    Args:
        masks: ``B x H x W`` or ``B x 1 x H x W`` boolean, none of them empty.
        center_fraction: 0 picks the deepest pixel (the first one in raster order on ties);
            ``f > 0`` picks uniformly among the pixels at least ``(1 - f) * max_depth`` deep.
        generator: source of randomness (only used when ``center_fraction > 0``).
        padding: treat the image border as boundary (as RITM does).

    Returns:
        ``(points, labels)``: ``B x 1 x 2`` float (x, y) and ``B x 1`` int32 (all 1).
    """
    if not 0.0 <= center_fraction <= 1.0:
        raise PromptError(f"center_fraction must lie in [0, 1], got {center_fraction}")
    m = _as_masks(masks)
    _require_nonempty(m)
    depth = torch.from_numpy(_depth(m.cpu().numpy(), padding)).flatten(1).to(m.device)  # B x HW
    if center_fraction == 0.0:
        idx = depth.argmax(dim=1)
    else:
        top = depth.amax(dim=1, keepdim=True)
        idx = _sample_flat(depth >= (1.0 - center_fraction) * top, generator)
    points = _index_to_xy(idx, m.shape[2])[:, None]
    labels = torch.full((m.shape[0], 1), POSITIVE, dtype=torch.int32, device=m.device)
    return points, labels


def sample_noisy_box(
    masks: torch.Tensor,
    noise: float = 0.1,
    max_noise_px: float = 20.0,
    distribution: Literal["gaussian", "uniform"] = "gaussian",
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """The box of each mask with every coordinate moved by random noise.

    Args:
        masks: ``B x H x W`` or ``B x 1 x H x W`` boolean, none of them empty.
        noise: noise scale as a fraction of the box width (x) or height (y).
        max_noise_px: bound on the noise in pixels.
        distribution: ``"gaussian"``: normal with std ``noise * side``, clipped to
            ``+-max_noise_px``; ``"uniform"``: uniform in ``+-min(noise * side, max_noise_px)``.
        generator: source of randomness.

    Returns:
        ``B x 4`` float ``(x0, y0, x1, y1)`` clamped to the image (``0..W-1``, ``0..H-1``),
        with ``x0 <= x1`` and ``y0 <= y1``.
    """
    m = _as_masks(masks)
    _require_nonempty(m)
    b, h, w = m.shape
    boxes = masks_to_boxes(m).to(torch.float32)  # inclusive x0, y0, x1, y1
    if noise > 0 and max_noise_px > 0:
        side_w = boxes[:, 2] - boxes[:, 0]
        side_h = boxes[:, 3] - boxes[:, 1]
        scale = torch.stack([side_w, side_h, side_w, side_h], dim=1) * noise  # B x 4
        bound = torch.tensor(float(max_noise_px), device=boxes.device)
        if distribution == "gaussian":
            eps = torch.randn((b, 4), generator=generator, device=boxes.device)
            offset = torch.clamp(eps * scale, -bound, bound)
        elif distribution == "uniform":
            eps = torch.rand((b, 4), generator=generator, device=boxes.device) * 2.0 - 1.0
            offset = eps * torch.minimum(scale, bound)
        else:
            raise PromptError(f"distribution must be 'gaussian' or 'uniform', got {distribution!r}")
        boxes = boxes + offset
    limit = torch.tensor([w - 1, h - 1, w - 1, h - 1], dtype=boxes.dtype, device=boxes.device)
    boxes = torch.minimum(boxes.clamp(min=0.0), limit)
    x0 = torch.minimum(boxes[:, 0], boxes[:, 2])
    x1 = torch.maximum(boxes[:, 0], boxes[:, 2])
    y0 = torch.minimum(boxes[:, 1], boxes[:, 3])
    y1 = torch.maximum(boxes[:, 1], boxes[:, 3])
    return torch.stack([x0, y0, x1, y1], dim=1)


def box_to_points(boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes as the two corner points the prompt encoder reads.

    Args:
        boxes: ``B x 4`` ``(x0, y0, x1, y1)``.

    Returns:
        ``(points, labels)``: ``B x 2 x 2`` float and ``B x 2`` int32 (``[2, 3]`` each).
    """
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise PromptError(f"boxes must have shape B x 4, got {tuple(boxes.shape)}")
    points = boxes.to(torch.float32).reshape(-1, 2, 2)
    labels = torch.tensor([BOX_TOP_LEFT, BOX_BOTTOM_RIGHT], dtype=torch.int32, device=boxes.device)
    return points, labels.repeat(boxes.shape[0], 1)


def sample_first_prompt(
    masks: torch.Tensor,
    config: Optional[ClickConfig] = None,
    generator: Optional[torch.Generator] = None,
) -> Prompt:
    """The first prompt for every object of a batch.

    One draw decides, for the whole batch, between a noisy box (probability
    ``config.prob_box``) and a point, so that the batch keeps one prompt shape; a point is
    the centre point with probability ``config.prob_center_point``, else uniform in the mask.

    Args:
        masks: ``B x H x W`` or ``B x 1 x H x W`` boolean targets, none of them empty.
        config: the click simulation settings (defaults: :class:`ClickConfig`).
        generator: source of randomness.

    Returns:
        A :class:`Prompt` (``B x 1`` or ``B x 2`` points).
    """
    cfg = config if config is not None else ClickConfig()
    m = _as_masks(masks)
    device = m.device
    draw = torch.rand(2, generator=generator, device=device)
    if float(draw[0]) < cfg.prob_box:
        boxes = sample_noisy_box(
            m, cfg.box_noise, cfg.box_noise_max_px, cfg.box_noise_distribution, generator
        )
        points, labels = box_to_points(boxes)
        return Prompt(points=points, labels=labels, boxes=boxes)
    if float(draw[1]) < cfg.prob_center_point:
        points, labels = sample_center_point(m, cfg.center_fraction, generator)
    else:
        points, labels = sample_point_in_mask(m, generator)
    return Prompt(points=points, labels=labels, boxes=None)


# --------------------------------------------------------------------------- corrections


def _error_regions(
    target: torch.Tensor, pred: Optional[torch.Tensor], ignore: Optional[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(gt, valid, false_negative, false_positive)``, all ``B x H x W`` bool."""
    gt = _as_masks(target, "target")
    pr = torch.zeros_like(gt) if pred is None else _as_masks(pred, "pred")
    _check_same(gt, pr, "target", "pred")
    if ignore is None:
        valid = torch.ones_like(gt)
    else:
        ig = _as_masks(ignore, "ignore")
        _check_same(gt, ig, "target", "ignore")
        valid = ~ig
    fn = gt & ~pr & valid
    fp = ~gt & pr & valid
    return gt, valid, fn, fp


def sample_error_click(
    target: torch.Tensor,
    pred: Optional[torch.Tensor] = None,
    ignore: Optional[torch.Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One correction click per object, uniform over the error region (training).

    The click is drawn uniformly from the union of the false negative pixels (target but
    not predicted; label 1) and the false positive pixels (predicted but not target;
    label 0), leaving out ignored pixels. FN and FP are thus chosen in proportion to their
    areas, which is also what the SAM 2 training code does. When the prediction is already
    right everywhere, a negative click is drawn from the (non-ignored) background, or,
    without background, a positive one from the target.

    Args:
        target: ``B x H x W`` or ``B x 1 x H x W`` boolean ground truth.
        pred: predicted masks of the same shape (``None``: nothing predicted yet, so the
            click is uniform in the target).
        ignore: pixels never clicked, same shape, or ``None``.
        generator: source of randomness.

    Returns:
        ``(points, labels)``: ``B x 1 x 2`` float (x, y) and ``B x 1`` int32.
    """
    gt, valid, fn, fp = _error_regions(target, pred, ignore)
    b, h, w = gt.shape
    errors = (fn | fp).flatten(1)
    has_error = errors.any(dim=1, keepdim=True)
    background = (~gt & valid).flatten(1)
    foreground = (gt & valid).flatten(1)
    fallback = torch.where(background.any(dim=1, keepdim=True), background, foreground)
    # Last resort (every pixel ignored): anywhere in the image.
    fallback = torch.where(fallback.any(dim=1, keepdim=True), fallback, torch.ones_like(fallback))
    candidates = torch.where(has_error, errors, fallback)
    idx = _sample_flat(candidates, generator)
    points = _index_to_xy(idx, w)[:, None]
    labels = gt.flatten(1).gather(1, idx[:, None]).to(torch.int32)  # 1 on target pixels
    return points, labels


def sample_center_error_click(
    target: torch.Tensor,
    pred: Optional[torch.Tensor] = None,
    ignore: Optional[torch.Tensor] = None,
    padding: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The click of the standard interactive evaluation protocol (RITM), batched.

    For each object, the false negative region (label 1) and the false positive region
    (label 0), ignored pixels left out, are distance-transformed (with ``padding`` the
    image border counts as boundary); the click goes to the deepest pixel of the region
    whose deepest pixel is deeper, the false positives winning ties, and the first pixel in
    raster order among equally deep ones. With no error at all this gives a negative click
    at ``(0, 0)``, as the reference protocol does.

    Args:
        target: ``B x H x W`` or ``B x 1 x H x W`` boolean ground truth.
        pred: predicted masks of the same shape, or ``None`` (nothing predicted yet).
        ignore: pixels never clicked, same shape, or ``None``.
        padding: treat the image border as boundary.

    Returns:
        ``(points, labels)``: ``B x 1 x 2`` float (x, y) and ``B x 1`` int32.
    """
    gt, _, fn, fp = _error_regions(target, pred, ignore)
    b, h, w = gt.shape
    both = torch.cat([fn, fp], dim=0).cpu().numpy()
    depth = torch.from_numpy(_depth(both, padding)).flatten(1)  # 2B x HW
    fn_depth, fp_depth = depth[:b], depth[b:]
    fn_max, fn_idx = fn_depth.max(dim=1)
    fp_max, fp_idx = fp_depth.max(dim=1)
    # torch.max does not promise the first index on ties; take it explicitly.
    fn_idx = (fn_depth == fn_max[:, None]).to(torch.uint8).argmax(dim=1)
    fp_idx = (fp_depth == fp_max[:, None]).to(torch.uint8).argmax(dim=1)
    positive = fn_max > fp_max
    idx = torch.where(positive, fn_idx, fp_idx)
    points = _index_to_xy(idx, w)[:, None].to(gt.device)
    labels = positive.to(torch.int32)[:, None].to(gt.device)
    return points, labels


def sample_correction_click(
    target: torch.Tensor,
    pred: Optional[torch.Tensor] = None,
    ignore: Optional[torch.Tensor] = None,
    config: Optional[ClickConfig] = None,
    generator: Optional[torch.Generator] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One correction click per object, by ``config.correction_method``.

    ``"uniform"``: :func:`sample_error_click`; ``"center"``: :func:`sample_center_error_click`.

    Returns:
        ``(points, labels)``: ``B x 1 x 2`` float (x, y) and ``B x 1`` int32.
    """
    cfg = config if config is not None else ClickConfig()
    if cfg.correction_method == "center":
        return sample_center_error_click(target, pred, ignore)
    return sample_error_click(target, pred, ignore, generator)


def evaluation_click(
    target: np.ndarray,
    pred: Optional[np.ndarray] = None,
    ignore: Optional[np.ndarray] = None,
    padding: bool = True,
) -> tuple[int, int, int]:
    """The next click of the standard interactive protocol for one mask (numpy).

    Same rule as :func:`sample_center_error_click`.

    Args:
        target: ``H x W`` ground truth (non-zero = object).
        pred: ``H x W`` current prediction, or ``None`` before the first click.
        ignore: ``H x W`` pixels never clicked, or ``None``.
        padding: treat the image border as boundary.

    Returns:
        ``(x, y, label)`` with label 1 (positive) or 0 (negative).
    """
    t = torch.from_numpy(np.asarray(target) != 0)
    if t.ndim != 2:
        raise PromptError(f"target must be an H x W mask, got shape {tuple(t.shape)}")
    p = None if pred is None else torch.from_numpy(np.asarray(pred) != 0)[None]
    ig = None if ignore is None else torch.from_numpy(np.asarray(ignore) != 0)[None]
    points, labels = sample_center_error_click(t[None], p, ig, padding)
    return int(points[0, 0, 0]), int(points[0, 0, 1]), int(labels[0, 0])


def round_schedule(
    config: Optional[ClickConfig] = None, generator: Optional[torch.Generator] = None
) -> list[bool]:
    """Which rounds after the first prompt add a click.

    ``config.num_correction_rounds`` rounds add one sampled click (``True``); of the
    ``config.num_rounds_without_click`` rounds that add none (``False``), one is the last
    round and the others fall at random places, as in SAM's training (8 + 2 rounds by
    default, 11 decoder runs with the first prompt).

    Returns:
        A list of ``num_correction_rounds + num_rounds_without_click`` booleans.
    """
    cfg = config if config is not None else ClickConfig()
    schedule = [True] * cfg.num_correction_rounds
    if cfg.num_rounds_without_click == 0:
        return schedule
    for _ in range(cfg.num_rounds_without_click - 1):
        pos = int(torch.randint(0, len(schedule) + 1, (1,), generator=generator))
        schedule.insert(pos, False)
    schedule.append(False)
    return schedule


# --------------------------------------------------------------------------- interactive state


def best_candidate(iou: torch.Tensor) -> torch.Tensor:
    """Index of each object's candidate mask with the highest predicted IoU: ``K x M`` -> ``K``
    int64 (0 when there is one candidate; the first of equal ones)."""
    return iou.argmax(dim=1)


def select_best(low_res: torch.Tensor, iou: torch.Tensor) -> torch.Tensor:
    """Each object's candidate with the highest predicted IoU (:func:`best_candidate`).

    Args:
        low_res: ``K x M x h x w`` candidate logits (``M = 1`` is returned as is).
        iou: ``K x M`` predicted IoUs.

    Returns:
        ``K x 1 x h x w``.
    """
    if low_res.shape[1] == 1:
        return low_res
    rows = torch.arange(low_res.shape[0], device=low_res.device)
    return low_res[rows, best_candidate(iou)][:, None]
