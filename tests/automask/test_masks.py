"""samkit.automask.masks vs the official helpers (sam2.utils.amg), torchvision's NMS,
scipy's labelling and pycocotools, on random and structured inputs.

Wherever the reference is deterministic the comparison is exact.
"""

from __future__ import annotations

import dataclasses
import math
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from samkit.automask import masks as M
from samkit.errors import DatasetError, MissingDependencyError

amg = pytest.importorskip("sam2.utils.amg")


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _blobs(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """``n x h x w`` bool masks made of a few discs and rectangles (some empty, one full)."""
    rng = _rng(seed)
    yy, xx = np.mgrid[:h, :w]
    out = np.zeros((n, h, w), dtype=bool)
    for i in range(2, n):
        for _ in range(rng.integers(1, 4)):
            cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(1, max(h, w) / 3)
            out[i] |= (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        if i % 3 == 0:
            y0, x0 = rng.integers(0, h), rng.integers(0, w)
            out[i, y0:y0 + rng.integers(1, h), x0:x0 + rng.integers(1, w)] ^= True
    out[1] = True  # full; out[0] stays empty
    return torch.from_numpy(out)


# ------------------------------------------------------------------------------ grids and crops
@pytest.mark.parametrize("n", [1, 2, 3, 7, 16, 32, 33, 64])
def test_point_grid_equals_official(n):
    ours = M.build_point_grid(n)
    assert ours.shape == (n * n, 2)
    np.testing.assert_array_equal(ours, amg.build_point_grid(n))


@pytest.mark.parametrize("args", [(32, 0, 1), (32, 2, 2), (16, 3, 2), (33, 2, 3), (8, 1, 1)])
def test_all_layer_point_grids_equal_official(args):
    ours, ref = M.build_all_layer_point_grids(*args), amg.build_all_layer_point_grids(*args)
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("size", [(1200, 1800), (534, 800), (1500, 2250), (7, 13), (1000, 1000), (1800, 1200)])
@pytest.mark.parametrize("layers", [0, 1, 2, 3])
@pytest.mark.parametrize("ratio", [512 / 1500, 0.0, 0.5, 0.1])
def test_crop_boxes_equal_official(size, layers, ratio):
    assert M.generate_crop_boxes(size, layers, ratio) == amg.generate_crop_boxes(size, layers, ratio)


# ------------------------------------------------------------------------------ stability
def test_stability_score_equals_official():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, 40, 50, generator=g) * 3
    logits[0, 0] = -5.0  # both masks empty: NaN in both
    logits[0, 1] = torch.randint(-2, 3, (40, 50), generator=g).float()  # values on the thresholds
    for thr, off in [(0.0, 1.0), (0.5, 0.25), (-1.0, 2.0), (0.0, 0.0)]:
        ours = M.stability_score(logits, thr, off)
        ref = amg.calculate_stability_score(logits, thr, off)
        assert ours.dtype == ref.dtype and ours.shape == ref.shape
        torch.testing.assert_close(ours, ref, rtol=0, atol=0, equal_nan=True)


def test_count_above_chunks_agree():
    x = torch.randn(5, 2, 30, 20)
    whole = M.count_above(x, 0.3)
    assert whole.shape == (5, 2) and whole.dtype == torch.int64
    assert torch.equal(M.count_above(x, 0.3, chunk_elems=700), whole)
    assert torch.equal(whole, (x > 0.3).sum((-1, -2)))


# ------------------------------------------------------------------------------ boxes
def test_masks_to_boxes_equal_official():
    m = _blobs(12, 37, 53)
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


def test_box_near_crop_edge_equals_official():
    g = torch.Generator().manual_seed(0)
    boxes = torch.randint(0, 300, (200, 2), generator=g)
    boxes = torch.cat([boxes, boxes + torch.randint(0, 200, (200, 2), generator=g)], 1)
    for crop in ([0, 0, 400, 300], [100, 50, 350, 300], [0, 100, 200, 300]):
        orig = [0, 0, 400, 300]
        assert torch.equal(M.is_box_near_crop_edge(boxes, crop, orig), amg.is_box_near_crop_edge(boxes, crop, orig))


def test_uncrop_equals_official():
    g = torch.Generator().manual_seed(0)
    boxes = torch.randint(0, 50, (6, 4), generator=g)
    points = torch.rand(6, 2, generator=g) * 50
    crop = [10, 20, 60, 90]
    assert torch.equal(M.uncrop_boxes_xyxy(boxes, crop), amg.uncrop_boxes_xyxy(boxes, crop))
    assert torch.equal(M.uncrop_boxes_xyxy(boxes.view(2, 3, 4), crop), amg.uncrop_boxes_xyxy(boxes.view(2, 3, 4), crop))
    assert torch.equal(M.uncrop_points(points, crop), amg.uncrop_points(points, crop))
    masks = _blobs(4, 70, 50)
    assert torch.equal(M.uncrop_masks(masks, crop, 120, 80), amg.uncrop_masks(masks, crop, 120, 80))
    assert M.uncrop_masks(masks, [0, 0, 50, 70], 70, 50) is masks


# ------------------------------------------------------------------------------ RLE
def test_rle_equals_official():
    m = _blobs(10, 23, 31)
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


def test_coco_rle_equals_official_and_decodes():
    coco = pytest.importorskip("pycocotools.mask")
    m = _blobs(6, 40, 33)
    for rle, mask in zip(M.mask_to_rle(m), m.numpy()):
        ours = M.rle_to_coco(rle)
        assert ours == amg.coco_encode_rle(rle)
        assert isinstance(ours["counts"], str)
        np.testing.assert_array_equal(coco.decode({"size": ours["size"], "counts": ours["counts"].encode()}), mask)
        assert int(coco.area({"size": ours["size"], "counts": ours["counts"].encode()})) == M.rle_area(rle)


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
    rng = _rng(int(p * 10))
    masks = rng.random((5, 41, 57)) < p
    masks[0] = _blobs(3, 41, 57, seed=1)[2].numpy()
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


@pytest.mark.parametrize("seed", range(2))
def test_remove_small_regions_equals_official(seed):
    pytest.importorskip("cv2")
    rng = _rng(seed)
    for trial in range(50):
        h, w = rng.integers(1, 50, 2)
        mask = rng.random((h, w)) < rng.uniform(0.05, 0.9)
        for thresh in (1, 3, 10, 10_000):
            for mode in ("holes", "islands"):
                ours, changed = M.remove_small_regions(mask, thresh, mode)
                ref, ref_changed = amg.remove_small_regions(mask, thresh, mode)
                assert changed == ref_changed, (trial, thresh, mode)
                np.testing.assert_array_equal(ours, ref)


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


# ------------------------------------------------------------------------------ exact upsampling
def test_fma32_is_correctly_rounded():
    from fractions import Fraction

    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(2000, generator=g) * 10 for _ in range(3))
    # a product just below a rounding tie of c: float64-then-float32 rounds the wrong way
    a = torch.cat([a, torch.tensor([2.0**-24 * (1 + 2.0**-23)])])
    b = torch.cat([b, torch.tensor([1 - 2.0**-23])])
    c = torch.cat([c, torch.tensor([1 + 2.0**-23])])
    got = M._fma32(a, b, c)
    assert got[-1].item() == 1 + 2.0**-23
    for x, y, z, r in zip(a.tolist(), b.tolist(), c.tolist(), got.tolist()):
        exact = Fraction(x) * Fraction(y) + Fraction(z)
        candidates = [float(np.float32(float(exact)))]
        f = np.float32(candidates[0])
        for other in (np.nextafter(f, np.float32(np.inf)), np.nextafter(f, np.float32(-np.inf))):
            candidates.append(float(other))
        best = min(candidates, key=lambda v: (abs(Fraction(v) - exact), int(np.float32(v).view(np.int32)) & 1))
        assert r == best


def _smooth_logits(n: int, h: int = 256, w: int = 256, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, 1, 6, 6, generator=g) * 12 + 2
    out = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)[:, 0]
    out[0] = 0.0  # every pixel exactly on the mask threshold
    out[1] = torch.randint(-2, 3, (h, w), generator=g).float()  # integer logits: many exact ties
    if n > 2:
        out[2] = -7.0  # empty mask
    return out.contiguous()


@pytest.mark.parametrize("out_hw", [(300, 420), (100, 77), (256, 256), (700, 190)])
@pytest.mark.parametrize("channels", [1, 3])
def test_plan_replicates_interpolate_bit_for_bit(out_hw, channels):
    plan = M.UpsamplePlan.build((256, 256), out_hw, channels=channels)
    assert plan.arithmetic in M.ARITHMETICS  # the CPU kernels known so far are all replicated
    x = _smooth_logits(6)
    x[0] = torch.randn(256, 256) * 9
    n, ys, xs = (t.reshape(-1) for t in torch.meshgrid(torch.arange(6), torch.arange(out_hw[0]),
                                                        torch.arange(out_hw[1]), indexing="ij"))
    full = M.upsample_logits(x, out_hw, channels)
    assert torch.equal(full, F.interpolate(x.view(-1, channels, 256, 256), out_hw, mode="bilinear",
                                           align_corners=False).flatten(0, 1))
    assert torch.equal(plan.values_at(x, n, ys, xs).view(6, *out_hw), full)


def test_upsample_logits_pads_groups():
    x = _smooth_logits(5)
    assert torch.equal(M.upsample_logits(x, (90, 70), channels=3)[3:], M.upsample_logits(x[3:], (90, 70), channels=3))


@pytest.mark.parametrize("out_hw,channels", [((300, 420), 1), ((100, 77), 3), ((333, 700), 3)])
def test_lazy_upsample_equals_full_size(out_hw, channels):
    x = _smooth_logits(10, seed=out_hw[0])
    plan = M.UpsamplePlan.build((256, 256), out_hw, channels=channels)
    lazy = M.LazyUpsample(x, plan)
    levels = [1.0, -1.0]
    counts, boxes = lazy.counts_and_boxes(levels, 0.0)
    full = M.upsample_logits(x, out_hw, channels)
    ref_counts = torch.stack([M.count_above(full, t) for t in levels], 1)
    assert torch.equal(counts, ref_counts)
    assert torch.equal(boxes, M.masks_to_boxes(full > 0.0))
    torch.testing.assert_close(M.stability_from_counts(counts[:, 0], counts[:, 1]), M.stability_score(full, 0.0, 1.0),
                               rtol=0, atol=0, equal_nan=True)
    for t in levels + [0.0, 3.0]:
        lower, upper = lazy.count_bounds(t)
        exact = M.count_above(full, t)
        assert (lower <= exact).all() and (exact <= upper).all()
    # maps with thresholds crossing everywhere, kept on the pixel-by-pixel path
    c_all, b_all = lazy.counts_and_boxes(levels, 0.0, dense_fraction=math.inf)
    assert torch.equal(c_all, counts) and torch.equal(b_all, boxes)
    # a subset, and the path without a verified replica, agree too
    picked = lazy.select(torch.tensor([3, 1, 4]))
    c2, b2 = picked.counts_and_boxes(levels, 0.0)
    assert torch.equal(c2, counts[[3, 1, 4]]) and torch.equal(b2, boxes[[3, 1, 4]])
    unverified = M.LazyUpsample(x, dataclasses.replace(plan, arithmetic=None))
    c3, b3 = unverified.counts_and_boxes(levels, 0.0)
    assert torch.equal(c3, counts) and torch.equal(b3, boxes)


# ------------------------------------------------------------------------------ records
def test_mask_records_select_and_cat():
    def rows(n: int, start: int) -> M.MaskRecords:
        ar = torch.arange(start, start + n)
        return M.MaskRecords(low_res_logits=ar.float()[:, None, None].expand(n, 4, 4).clone(),
                             iou_preds=ar.float(), points=ar.float()[:, None].repeat(1, 2),
                             stability_score=ar.float() / 10, boxes=ar[:, None].repeat(1, 4),
                             crop_boxes=torch.zeros(n, 4, dtype=torch.int64))

    both = M.MaskRecords.cat([rows(3, 0), rows(2, 3)])
    assert len(both) == 5
    assert both.iou_preds.tolist() == [0, 1, 2, 3, 4]
    picked = both.select(torch.tensor([4, 0]))
    assert picked.boxes[:, 0].tolist() == [4, 0] and picked.low_res_logits.shape == (2, 4, 4)
    masked = both.select(both.iou_preds > 2)
    assert masked.points[:, 0].tolist() == [3, 4]
    empty = M.MaskRecords.empty((4, 4))
    assert len(empty) == 0 and len(M.MaskRecords.cat([empty, rows(1, 0)])) == 1
    with pytest.raises(ValueError):
        M.MaskRecords.cat([])
    assert math.isclose(float(both.stability_score[2]), 0.2, rel_tol=1e-6)
