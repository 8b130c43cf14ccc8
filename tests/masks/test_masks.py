"""samkit.masks: NMS vs torchvision's, connected components vs scipy's labelling, RLE round trips,
coco RLE without pycocotools, hole filling, IoU conventions."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from samkit import masks as M
from samkit.errors import DatasetError, MissingDependencyError
from tests.helpers import blob_masks


def _random_boxes(n: int, seed: int, integer: bool) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 100
    wh = torch.rand(n, 2, generator=g) * 40
    boxes = torch.cat([xy, xy + wh], 1)
    if integer:
        boxes = boxes.round()  # many identical and zero-area boxes
    scores = torch.rand(n, generator=g)
    if seed % 2 == 0:
        scores = (scores * 8).round() / 8  # many tied scores
    return boxes, scores


@pytest.mark.parametrize("n", [0, 1, 2, 50, 999, 1000, 1001, 1500])
@pytest.mark.parametrize("seed", [0, 1])
def test_batched_nms_equals_torchvision(n, seed):
    tv = pytest.importorskip("torchvision.ops")
    boxes, scores = _random_boxes(n, seed, integer=seed == 0)
    g = torch.Generator().manual_seed(seed + 10)
    for thr in [0.0, 0.5, 0.7, 1.0]:
        for n_classes in [1, 3]:
            idxs = torch.randint(0, n_classes, (n,), generator=g)
            assert torch.equal(M.batched_nms(boxes, scores, idxs, thr), tv.batched_nms(boxes, scores, idxs, thr))
        assert torch.equal(M.nms(boxes, scores, thr), tv.nms(boxes, scores, thr))


def test_nms_threshold_compared_in_double():
    """IoU exactly equal to the float32 rounding of the threshold: kept by torchvision
    (float IoU compared with the double threshold), so kept by us."""
    tv = pytest.importorskip("torchvision.ops")
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 7.0]])  # IoU 0.7 in float32
    scores = torch.tensor([0.9, 0.8])
    for thr in [0.7, float(np.float32(0.7)), 0.69999999, 0.70000001]:
        assert torch.equal(M.nms(boxes, scores, thr), tv.nms(boxes, scores, thr))


def test_rle_round_trip_random():
    g = torch.Generator().manual_seed(3)
    m = torch.rand(6, 17, 9, generator=g) < 0.5
    for rle, mask in zip(M.mask_to_rle(m), m.numpy()):
        assert sum(rle["counts"]) == 17 * 9
        np.testing.assert_array_equal(M.rle_to_mask(rle), mask)


def test_rle_to_mask_rejects_bad_counts():
    with pytest.raises(DatasetError):
        M.rle_to_mask({"size": [2, 3], "counts": [1, 2]})
    with pytest.raises(DatasetError):
        M.rle_to_mask({"size": [2, 2], "counts": [5, -1]})


def test_coco_rle_without_pycocotools_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    with pytest.raises(MissingDependencyError, match=r"samkit\[coco\]"):
        M.rle_to_coco({"size": [1, 1], "counts": [1]})
    with pytest.raises(ImportError):  # still an ImportError for code that catches that
        M.require_pycocotools()


# ------------------------------------------------------------------------------ components
def _scipy_label(mask: np.ndarray) -> np.ndarray:
    ndimage = pytest.importorskip("scipy.ndimage")
    return ndimage.label(mask, structure=np.ones((3, 3)))[0]


@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 0.6, 0.8, 1.0])
def test_connected_components_equal_scipy(p):
    rng = np.random.default_rng(int(p * 10))
    masks = rng.random((5, 41, 57)) < p
    masks[0] = blob_masks(3, 41, 57, seed=1)[2].numpy()
    labels = M.connected_components(torch.from_numpy(masks)).numpy()
    areas = M.connected_component_areas(torch.from_numpy(masks)).numpy()
    for lab, area, mask in zip(labels, areas, masks):
        ref = _scipy_label(mask)
        fg = ref > 0
        np.testing.assert_array_equal(lab > 0, fg)
        # same partition, and each label is 1 + the flat index of the component's first pixel
        assert len(set(zip(lab[fg].tolist(), ref[fg].tolist()))) == len(np.unique(ref[fg]))
        for value in np.unique(lab[fg]):
            assert np.flatnonzero(lab == value)[0] == value - 1
        sizes = np.bincount(ref.ravel())
        np.testing.assert_array_equal(area, np.where(fg, sizes[ref], 0))


def test_connected_components_shapes_and_spiral():
    assert M.connected_components(torch.zeros(2, 0, 5, dtype=torch.bool)).shape == (2, 0, 5)
    assert M.connected_component_areas(torch.ones(3, 1, 1, dtype=torch.bool)).tolist() == [[[1]], [[1]], [[1]]]
    # a one-pixel-wide spiral: one component whose path is as long as it gets
    n = 61
    spiral = np.zeros((n, n), dtype=bool)
    lo, hi = 0, n - 1
    while lo <= hi:
        spiral[lo, lo:hi + 1] = spiral[lo:hi + 1, hi] = spiral[hi, lo:hi + 1] = True
        spiral[lo + 2:hi + 1, lo] = True
        if lo + 2 <= hi:
            spiral[lo + 2, lo:hi - 1] = True
        lo, hi = lo + 2, hi - 2
    lab = M.connected_components(torch.from_numpy(spiral)).numpy()
    ref = _scipy_label(spiral)
    assert len(np.unique(lab[lab > 0])) == len(np.unique(ref[ref > 0]))
    # diagonal neighbours join (8-connectivity)
    diag = torch.tensor([[1, 0], [0, 1]], dtype=torch.bool)
    assert M.connected_components(diag).tolist() == [[1, 0], [0, 1]]


def test_remove_small_regions_bad_mode():
    with pytest.raises(ValueError):
        M.remove_small_regions(np.zeros((3, 3), bool), 5, "specks")


def _official_fill(logits: torch.Tensor, max_hole: float, max_sprinkle: float) -> torch.Tensor:
    """SAM 2's low-res hole / sprinkle filling (its CUDA kernel's semantics) with scipy labels."""
    out = logits.clone()
    for i in range(out.shape[0]):
        # both component sets come from the input logits
        for fill, bad, area_max in ((10.0, logits[i] <= 0, max_hole), (-10.0, logits[i] > 0, max_sprinkle)):
            if area_max <= 0:
                continue
            lab = _scipy_label(bad.numpy())
            sizes = np.bincount(lab.ravel())
            small = torch.from_numpy((lab > 0) & (sizes[lab] <= area_max))
            out[i] = torch.where(small, fill, out[i])
    return out


def test_fill_holes_and_sprinkles_equals_reference():
    g = torch.Generator().manual_seed(0)
    coarse = torch.randn(6, 1, 8, 8, generator=g) * 4
    logits = F.interpolate(coarse, size=(64, 64), mode="bilinear", align_corners=False)[:, 0]
    logits += (torch.rand(6, 64, 64, generator=g) < 0.01) * 20 - (torch.rand(6, 64, 64, generator=g) < 0.01) * 20
    # a 5-pixel speck around a 1-pixel hole: the hole is filled and the speck (judged without
    # it) removed, leaving the filled pixel alone
    logits[0, 30:33, 30:33] = torch.tensor([[5.0, 5.0, 5.0], [5.0, -5.0, -50.0], [-50.0, -50.0, -50.0]])
    logits[0, 29, 29:34] = -50.0
    logits[0, 30:33, 29] = -50.0
    logits[0, 30:33, 33] = -50.0
    for hole, sprinkle in [(30, 30), (30, 0), (0, 12), (0, 0), (1000, 1), (1, 4)]:
        ours = M.fill_holes_and_sprinkles(logits, hole, sprinkle)
        assert torch.equal(ours, _official_fill(logits, hole, sprinkle))
    assert M.fill_holes_and_sprinkles(logits, 0, 0) is not logits


# ------------------------------------------------------------------------------ IoU
def test_mask_iou_known_values_and_empty_convention():
    a = torch.zeros(2, 4, 4, dtype=torch.bool)
    b = torch.zeros(2, 4, 4, dtype=torch.bool)
    a[0, :2] = True  # 8 pixels
    b[0, 1:3] = True  # 8 pixels, 4 shared -> 4 / 12
    iou = M.mask_iou(a, b, empty=1.0)
    assert iou.dtype == torch.float64 and iou.shape == (2,)
    assert iou[0].item() == pytest.approx(4 / 12)
    assert iou[1].item() == 1.0  # both empty: the caller's convention
    assert M.mask_iou(a, b, empty=0.0)[1].item() == 0.0
    assert M.mask_iou(a[1], a[0], empty=1.0).item() == 0.0  # one empty, one not


def test_mask_iou_broadcasts_ignores_and_takes_arrays():
    pred = np.zeros((3, 5, 5), dtype=bool)
    pred[0, :, :2] = True
    pred[1, :, :3] = True
    target = np.zeros((1, 5, 5), dtype=np.uint8)
    target[0, :, :2] = 1
    ignore = np.zeros((5, 5), dtype=bool)
    ignore[:, 2] = True  # the extra column of pred[1] is ignored
    got = M.mask_iou(pred, target, ignore=ignore, empty=1.0)
    np.testing.assert_allclose(got.numpy(), [1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="mask sizes differ"):
        M.mask_iou(pred, np.zeros((5, 4), dtype=bool), empty=1.0)


def test_mask_iou_of_arrays_over_kept_pixels():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2] = True
    b[:, :2] = True
    assert M.mask_iou(a, b, empty=1.0).item() == pytest.approx(4 / 12)
    ignore = np.zeros((4, 4), bool)
    ignore[2:] = True
    assert M.mask_iou(a, b, ignore=ignore, empty=1.0).item() == pytest.approx(4 / 8)
    assert M.mask_iou(np.zeros((2, 2)), np.zeros((2, 2)), empty=1.0).item() == 1.0
