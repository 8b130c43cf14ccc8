"""Click simulation: first prompts, correction clicks, the evaluation click."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samkit.masks.boxes import masks_to_boxes
from samkit.errors import ConfigError, PromptError
from samkit.prompts import (
    ClickConfig,
    box_to_points,
    euclidean_distance_transform,
    evaluation_click,
    round_schedule,
    sample_center_error_click,
    sample_center_point,
    sample_correction_click,
    sample_error_click,
    sample_first_prompt,
    sample_noisy_box,
    sample_point_in_mask,
)
from tests.helpers import ellipse_masks


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _at(masks: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Value of each ``B x H x W`` mask at its ``B x 1 x 2`` point."""
    x = points[:, 0, 0].long()
    y = points[:, 0, 1].long()
    return masks[torch.arange(masks.shape[0]), y, x]


def test_distance_transform_small_known_case() -> None:
    m = np.ones((5, 5), bool)
    m[2, 2] = False
    d = euclidean_distance_transform(m)
    assert d[2, 2] == 0
    assert d[2, 3] == 1 and d[1, 2] == 1
    assert d[0, 0] == pytest.approx(np.sqrt(8))
    assert d[0, 2] == 2
    assert np.isinf(euclidean_distance_transform(np.ones((3, 4)))).all()
    np.testing.assert_array_equal(euclidean_distance_transform(np.zeros((3, 4))), 0)


def test_distance_transform_matches_scipy() -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (1, 9), (9, 1), (13, 17), (40, 31)]:
        for p in (0.05, 0.5, 0.9, 0.99):
            m = rng.random(shape) < p
            m.flat[0] = False  # at least one zero pixel
            np.testing.assert_allclose(
                euclidean_distance_transform(m), ndimage.distance_transform_edt(m)
            )
    batch = rng.random((3, 20, 25)) < 0.8
    batch[:, 0, 0] = False
    got = euclidean_distance_transform(batch)
    for i in range(3):
        np.testing.assert_allclose(got[i], ndimage.distance_transform_edt(batch[i]))


def test_point_in_mask_inside_and_deterministic() -> None:
    masks = ellipse_masks()
    points, labels = sample_point_in_mask(masks, _gen(1))
    assert points.shape == (4, 1, 2) and points.dtype == torch.float32
    assert labels.shape == (4, 1) and (labels == 1).all()
    assert _at(masks, points).all()
    again, _ = sample_point_in_mask(masks[:, None], _gen(1))  # B x 1 x H x W accepted
    torch.testing.assert_close(points, again)
    other, _ = sample_point_in_mask(masks, _gen(2))
    assert not torch.equal(points, other)


def test_point_in_mask_covers_the_mask() -> None:
    m = torch.zeros(1, 6, 6, dtype=torch.bool)
    m[0, 1, 4] = m[0, 5, 0] = True
    g = _gen(0)
    seen = {tuple(sample_point_in_mask(m, g)[0][0, 0].tolist()) for _ in range(50)}
    assert seen == {(4.0, 1.0), (0.0, 5.0)}


def test_empty_mask_is_refused() -> None:
    m = torch.zeros(2, 5, 5, dtype=torch.bool)
    m[0, 2, 2] = True
    with pytest.raises(PromptError, match="empty"):
        sample_point_in_mask(m)
    with pytest.raises(PromptError):
        sample_point_in_mask(torch.zeros(5, 5, dtype=torch.bool))  # no batch axis


def test_center_point_is_the_deepest_pixel() -> None:
    m = torch.zeros(2, 30, 30, dtype=torch.bool)
    m[0, 5:16, 8:19] = True  # 11 x 11 square: centre (x=13, y=10)
    m[1, 2:9, 3:28] = True  # 7 x 25 bar: centre row 5, and the whole middle is equally deep
    points, labels = sample_center_point(m)
    assert points[0, 0].tolist() == [13.0, 10.0]
    assert points[1, 0, 1] == 5.0
    assert (labels == 1).all()


def test_center_point_treats_the_border_as_boundary() -> None:
    m = torch.zeros(1, 20, 20, dtype=torch.bool)
    m[0, 0:11, 0:11] = True  # touches the top and left border
    padded, _ = sample_center_point(m)
    assert padded[0, 0].tolist() == [5.0, 5.0]
    unpadded, _ = sample_center_point(m, padding=False)
    assert unpadded[0, 0].tolist() == [0.0, 0.0]


def test_center_point_matches_a_reference_distance_transform() -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    masks = ellipse_masks(6, seed=3)
    points, _ = sample_center_point(masks)
    for mask, pt in zip(masks.numpy(), points):
        depth = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        x, y = int(pt[0, 0]), int(pt[0, 1])
        assert depth[y, x] == depth.max()
        assert np.flatnonzero(depth == depth.max())[0] == y * mask.shape[1] + x


def test_center_point_fraction() -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    masks = ellipse_masks(4, seed=5)
    points, _ = sample_center_point(masks, center_fraction=0.3, generator=_gen(0))
    for mask, pt in zip(masks.numpy(), points):
        depth = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        assert depth[int(pt[0, 1]), int(pt[0, 0])] >= 0.7 * depth.max() - 1e-9
    with pytest.raises(PromptError):
        sample_center_point(masks, center_fraction=1.5)


def test_box_without_noise_is_the_tight_inclusive_box() -> None:
    m = torch.zeros(1, 10, 12, dtype=torch.bool)
    m[0, 2:5, 3:9] = True
    assert sample_noisy_box(m, noise=0.0).tolist() == [[3.0, 2.0, 8.0, 4.0]]


@pytest.mark.parametrize("distribution", ["gaussian", "uniform"])
def test_noisy_box_bounds(distribution: str) -> None:
    m = torch.zeros(64, 300, 400, dtype=torch.bool)
    m[:32, 50:250, 40:360] = True  # big box: noise capped at 20 px
    m[32:, 100:120, 100:110] = True  # small box (sides 9 and 19 px): noise ~ 10% of the side
    exact = masks_to_boxes(m).float()
    assert torch.equal(sample_noisy_box(m, noise=0.0), exact)
    boxes = sample_noisy_box(m, 0.1, 20.0, distribution, _gen(0))  # type: ignore[arg-type]
    off = (boxes - exact).abs()
    assert (off[:32] <= 20.0 + 1e-4).all()
    if distribution == "uniform":
        assert (off[32:, [0, 2]] <= 0.1 * 9 + 1e-4).all()
        assert (off[32:, [1, 3]] <= 0.1 * 19 + 1e-4).all()
    assert off.max() > 0
    assert (boxes[:, 0] <= boxes[:, 2]).all() and (boxes[:, 1] <= boxes[:, 3]).all()
    again = sample_noisy_box(m, 0.1, 20.0, distribution, _gen(0))  # type: ignore[arg-type]
    assert torch.equal(boxes, again)


def test_noisy_box_gaussian_spread() -> None:
    m = torch.zeros(4000, 60, 60, dtype=torch.bool)
    m[:, 10:51, 20:41] = True  # sides 20 (x) and 40 (y): std 2 and 4 px
    offsets = sample_noisy_box(m, 0.1, 20.0, "gaussian", _gen(3)) - masks_to_boxes(m).float()
    assert offsets[:, 0].std().item() == pytest.approx(2.0, rel=0.1)
    assert offsets[:, 1].std().item() == pytest.approx(4.0, rel=0.1)
    assert offsets.mean(0).abs().max().item() < 0.3


def test_noisy_box_clamped_to_image() -> None:
    m = torch.zeros(50, 40, 60, dtype=torch.bool)
    m[:, 0:40, 0:60] = True  # the whole image: noise can only push outward, then clamp
    boxes = sample_noisy_box(m, 0.5, 20.0, "uniform", _gen(1))
    assert (boxes[:, :2] >= 0).all()
    assert (boxes[:, 2] <= 59).all() and (boxes[:, 3] <= 39).all()


def test_box_to_points() -> None:
    points, labels = box_to_points(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    assert points.tolist() == [[[1.0, 2.0], [3.0, 4.0]]]
    assert labels.tolist() == [[2, 3]]


def test_first_prompt_kinds() -> None:
    masks = ellipse_masks()
    box = sample_first_prompt(masks, ClickConfig(prob_box=1.0), _gen(0))
    assert box.is_box and box.points.shape == (4, 2, 2) and box.labels[0].tolist() == [2, 3]
    point = sample_first_prompt(masks, ClickConfig(prob_box=0.0), _gen(0))
    assert not point.is_box and point.points.shape == (4, 1, 2)
    assert _at(masks, point.points).all() and (point.labels == 1).all()
    centre = sample_first_prompt(masks, ClickConfig(prob_box=0.0, prob_center_point=1.0), _gen(0))
    torch.testing.assert_close(centre.points, sample_center_point(masks)[0])
    kinds = {sample_first_prompt(masks, ClickConfig(), _gen(s)).is_box for s in range(20)}
    assert kinds == {True, False}


def test_click_config_validation() -> None:
    with pytest.raises(ConfigError):
        ClickConfig(prob_box=1.5)
    with pytest.raises(ConfigError):
        ClickConfig(num_correction_rounds=-1)
    with pytest.raises(ConfigError):
        ClickConfig(correction_method="random")  # type: ignore[arg-type]


def _fn_fp_case() -> tuple[torch.Tensor, torch.Tensor]:
    gt = torch.zeros(1, 40, 40, dtype=torch.bool)
    pred = torch.zeros(1, 40, 40, dtype=torch.bool)
    gt[0, 5:15, 5:15] = True  # 100 px, of which the right 50 are missed
    pred[0, 5:15, 5:10] = True
    pred[0, 20:35, 20:30] = True  # 150 px false positive
    return gt, pred


def test_error_click_regions_labels_and_proportions() -> None:
    gt, pred = _fn_fp_case()
    fn = gt & ~pred
    fp = pred & ~gt
    b = 2000
    points, labels = sample_error_click(
        gt.expand(b, -1, -1), pred.expand(b, -1, -1), generator=_gen(0)
    )
    x, y = points[:, 0, 0].long(), points[:, 0, 1].long()
    on_fn = fn[0, y, x]
    on_fp = fp[0, y, x]
    assert (on_fn | on_fp).all()
    assert torch.equal(labels[:, 0] == 1, on_fn)
    share = on_fn.float().mean().item()
    assert abs(share - 50 / 200) < 0.04  # FN chosen in proportion to its area


def test_error_click_ignore_and_fallbacks() -> None:
    gt, pred = _fn_fp_case()
    ignore = torch.zeros_like(gt)
    ignore[0, 20:35, 20:30] = True  # the whole false positive is ignored
    points, labels = sample_error_click(
        gt.expand(200, -1, -1), pred.expand(200, -1, -1), ignore.expand(200, -1, -1), _gen(1)
    )
    assert (labels == 1).all()
    assert _at((gt & ~pred).expand(200, -1, -1), points).all()
    # Perfect prediction: a negative click in the background.
    points, labels = sample_error_click(gt, gt.clone(), generator=_gen(2))
    assert labels.item() == 0 and not _at(gt, points).item()
    # No prediction yet: a positive click in the target.
    points, labels = sample_error_click(gt, None, generator=_gen(3))
    assert labels.item() == 1 and _at(gt, points).item()
    # Full-image target predicted perfectly: no background, so a positive click.
    full = torch.ones(1, 5, 5, dtype=torch.bool)
    _, labels = sample_error_click(full, full.clone(), generator=_gen(4))
    assert labels.item() == 1
    with pytest.raises(PromptError):
        sample_error_click(gt, pred[:, :-1])


def test_error_click_deterministic() -> None:
    gt, pred = _fn_fp_case()
    a = sample_error_click(gt.expand(8, -1, -1), pred.expand(8, -1, -1), generator=_gen(9))
    b = sample_error_click(gt.expand(8, -1, -1), pred.expand(8, -1, -1), generator=_gen(9))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_center_error_click_known_cases() -> None:
    gt, pred = _fn_fp_case()
    # FP block 15 x 10 is deeper (5) than the FN strip 10 x 5 (3): negative at FP centre.
    points, labels = sample_center_error_click(gt, pred)
    assert labels.item() == 0
    x, y = points[0, 0].tolist()
    assert pred[0, int(y), int(x)] and not gt[0, int(y), int(x)]
    assert (x, y) == (24.0, 24.0)  # first deepest pixel in raster order
    # Without the FP block, the FN strip wins: positive at its centre row/column.
    pred2 = pred.clone()
    pred2[0, 20:35, 20:30] = False
    points, labels = sample_center_error_click(gt, pred2)
    assert labels.item() == 1 and points[0, 0].tolist() == [12.0, 7.0]
    # First click (no prediction): the target's centre.
    assert evaluation_click(gt[0].numpy()) == (9, 9, 1)
    # Perfect prediction: a negative click at (0, 0), as the reference protocol does.
    assert evaluation_click(gt[0].numpy(), gt[0].numpy()) == (0, 0, 0)
    # Ignored pixels are never clicked.
    ignore = torch.zeros_like(gt)
    ignore[0, 20:35, 20:30] = True
    x, y, label = evaluation_click(gt[0].numpy(), pred[0].numpy(), ignore[0].numpy())
    assert label == 1 and (x, y) == (12, 7)


def test_center_error_click_batched_equals_single() -> None:
    gts = ellipse_masks(5, seed=11)
    preds = ellipse_masks(5, seed=12)
    points, labels = sample_center_error_click(gts[:, None], preds[:, None])
    for i in range(5):
        x, y, label = evaluation_click(gts[i].numpy(), preds[i].numpy())
        assert (x, y, label) == (int(points[i, 0, 0]), int(points[i, 0, 1]), int(labels[i, 0]))


def test_round_schedule() -> None:
    sched = round_schedule(ClickConfig(), _gen(0))
    assert len(sched) == 10 and sum(sched) == 8 and sched[-1] is False
    assert round_schedule(ClickConfig(), _gen(0)) == sched
    placements = {tuple(round_schedule(ClickConfig(), _gen(s))) for s in range(30)}
    assert len(placements) > 1
    assert round_schedule(ClickConfig(num_rounds_without_click=0)) == [True] * 8
    assert round_schedule(ClickConfig(num_correction_rounds=0, num_rounds_without_click=1)) == [
        False
    ]


def test_correction_click_follows_the_config() -> None:
    gt, pred = _fn_fp_case()
    centre = sample_correction_click(gt, pred, config=ClickConfig(correction_method="center"))
    assert torch.equal(centre[0], sample_center_error_click(gt, pred)[0])
    uniform = sample_correction_click(gt, pred, config=ClickConfig(), generator=_gen(5))
    assert torch.equal(uniform[0], sample_error_click(gt, pred, generator=_gen(5))[0])
