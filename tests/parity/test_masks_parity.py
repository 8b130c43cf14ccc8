"""The mask, box, grid and RLE helpers vs the official ones (sam2.utils.amg), exact wherever the
reference is deterministic."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from samkit import masks as M
from samkit.automask import grid, stability
from tests.helpers import blob_masks


amg = pytest.importorskip("sam2.utils.amg")


# ------------------------------------------------------------------------------ grids and crops
@pytest.mark.parametrize("n", [1, 2, 3, 7, 16, 32, 33, 64])
def test_point_grid_equals_official(n):
    ours = grid.build_point_grid(n)
    assert ours.shape == (n * n, 2)
    np.testing.assert_array_equal(ours, amg.build_point_grid(n))


@pytest.mark.parametrize("args", [(32, 0, 1), (32, 2, 2), (16, 3, 2), (33, 2, 3), (8, 1, 1)])
def test_all_layer_point_grids_equal_official(args):
    ours, ref = grid.build_all_layer_point_grids(*args), amg.build_all_layer_point_grids(*args)
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("size", [(1200, 1800), (534, 800), (1500, 2250), (7, 13), (1000, 1000), (1800, 1200)])
@pytest.mark.parametrize("layers", [0, 1, 2, 3])
@pytest.mark.parametrize("ratio", [512 / 1500, 0.0, 0.5, 0.1])
def test_crop_boxes_equal_official(size, layers, ratio):
    assert grid.generate_crop_boxes(size, layers, ratio) == amg.generate_crop_boxes(size, layers, ratio)


# ------------------------------------------------------------------------------ stability
def test_stability_score_equals_official():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, 40, 50, generator=g) * 3
    logits[0, 0] = -5.0  # both masks empty: NaN in both
    logits[0, 1] = torch.randint(-2, 3, (40, 50), generator=g).float()  # values on the thresholds
    for thr, off in [(0.0, 1.0), (0.5, 0.25), (-1.0, 2.0), (0.0, 0.0)]:
        ours = stability.stability_score(logits, thr, off)
        ref = amg.calculate_stability_score(logits, thr, off)
        assert ours.dtype == ref.dtype and ours.shape == ref.shape
        torch.testing.assert_close(ours, ref, rtol=0, atol=0, equal_nan=True)


# ------------------------------------------------------------------------------ boxes
def test_masks_to_boxes_equal_official():
    m = blob_masks(12, 37, 53)
    assert torch.equal(M.masks_to_boxes(m), amg.batched_mask_to_box(m))
    assert torch.equal(M.masks_to_boxes(m.view(3, 4, 37, 53)), amg.batched_mask_to_box(m.view(3, 4, 37, 53)))
    assert torch.equal(M.masks_to_boxes(m[5]), amg.batched_mask_to_box(m[5]))
    single = torch.zeros(1, 9, 9, dtype=torch.bool)
    single[0, 4, 7] = True
    assert M.masks_to_boxes(single).tolist() == [[7, 4, 7, 4]]
    assert M.masks_to_boxes(torch.zeros(0, 5, 5, dtype=torch.bool)).shape == (0, 4)


def test_box_xyxy_to_xywh_equals_official_per_box():
    boxes = torch.tensor([[1.0, 2.0, 5.0, 9.0], [0.0, 0.0, 0.0, 0.0], [3.5, 1.0, 10.0, 4.0]])
    ours = M.box_xyxy_to_xywh(boxes)
    for row, ref_box in zip(ours, boxes):
        assert torch.equal(row, amg.box_xyxy_to_xywh(ref_box))
    assert torch.equal(boxes, torch.tensor([[1.0, 2.0, 5.0, 9.0], [0.0, 0.0, 0.0, 0.0], [3.5, 1.0, 10.0, 4.0]]))


def test_box_near_crop_edge_equals_official():
    g = torch.Generator().manual_seed(0)
    boxes = torch.randint(0, 300, (200, 2), generator=g)
    boxes = torch.cat([boxes, boxes + torch.randint(0, 200, (200, 2), generator=g)], 1)
    for crop in ([0, 0, 400, 300], [100, 50, 350, 300], [0, 100, 200, 300]):
        orig = [0, 0, 400, 300]
        assert torch.equal(grid.is_box_near_crop_edge(boxes, crop, orig), amg.is_box_near_crop_edge(boxes, crop, orig))


def test_uncrop_equals_official():
    g = torch.Generator().manual_seed(0)
    boxes = torch.randint(0, 50, (6, 4), generator=g)
    points = torch.rand(6, 2, generator=g) * 50
    crop = [10, 20, 60, 90]
    assert torch.equal(grid.uncrop_boxes_xyxy(boxes, crop), amg.uncrop_boxes_xyxy(boxes, crop))
    assert torch.equal(grid.uncrop_boxes_xyxy(boxes.view(2, 3, 4), crop), amg.uncrop_boxes_xyxy(boxes.view(2, 3, 4), crop))
    assert torch.equal(grid.uncrop_points(points, crop), amg.uncrop_points(points, crop))
    masks = blob_masks(4, 70, 50)
    assert torch.equal(grid.uncrop_masks(masks, crop, 120, 80), amg.uncrop_masks(masks, crop, 120, 80))
    assert grid.uncrop_masks(masks, [0, 0, 50, 70], 70, 50) is masks


# ------------------------------------------------------------------------------ RLE
def test_rle_equals_official():
    m = blob_masks(10, 23, 31)
    m[3] = False
    m[3, 0, 0] = True  # first pixel set: counts open with a 0-run
    m[4] = False
    m[4, -1, -1] = True  # last pixel only
    ours = M.mask_to_rle(m)
    assert ours == amg.mask_to_rle_pytorch(m)
    for rle, mask in zip(ours, m.numpy()):
        np.testing.assert_array_equal(M.rle_to_mask(rle), mask)
        np.testing.assert_array_equal(M.rle_to_mask(rle), amg.rle_to_mask(rle))
        assert M.rle_area(rle) == amg.area_from_rle(rle) == int(mask.sum())
    assert M.mask_to_rle(m[:0]) == []


def test_coco_rle_equals_official_and_decodes():
    coco = pytest.importorskip("pycocotools.mask")
    m = blob_masks(6, 40, 33)
    for rle, mask in zip(M.mask_to_rle(m), m.numpy()):
        ours = M.rle_to_coco(rle)
        assert ours == amg.coco_encode_rle(rle)
        assert isinstance(ours["counts"], str)
        np.testing.assert_array_equal(coco.decode({"size": ours["size"], "counts": ours["counts"].encode()}), mask)
        assert int(coco.area({"size": ours["size"], "counts": ours["counts"].encode()})) == M.rle_area(rle)


@pytest.mark.parametrize("seed", range(2))
def test_remove_small_regions_equals_official(seed):
    pytest.importorskip("cv2")
    rng = np.random.default_rng(seed)
    for trial in range(50):
        h, w = rng.integers(1, 50, 2)
        mask = rng.random((h, w)) < rng.uniform(0.05, 0.9)
        for thresh in (1, 3, 10, 10_000):
            for mode in ("holes", "islands"):
                ours, changed = M.remove_small_regions(mask, thresh, mode)
                ref, ref_changed = amg.remove_small_regions(mask, thresh, mode)
                assert changed == ref_changed, (trial, thresh, mode)
                np.testing.assert_array_equal(ours, ref)
