"""The generator's own parts: stability counts, the exact lazy upsampling (bit-for-bit against
``F.interpolate``), candidate records."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from samkit.automask import records, stability, upsample
from samkit.masks import masks_to_boxes


def test_count_above_chunks_agree():
    x = torch.randn(5, 2, 30, 20)
    whole = stability.count_above(x, 0.3)
    assert whole.shape == (5, 2) and whole.dtype == torch.int64
    assert torch.equal(stability.count_above(x, 0.3, chunk_elems=700), whole)
    assert torch.equal(whole, (x > 0.3).sum((-1, -2)))


# ------------------------------------------------------------------------------ exact upsampling
def test_fma32_is_correctly_rounded():
    from fractions import Fraction

    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(2000, generator=g) * 10 for _ in range(3))
    # a product just below a rounding tie of c: float64-then-float32 rounds the wrong way
    a = torch.cat([a, torch.tensor([2.0**-24 * (1 + 2.0**-23)])])
    b = torch.cat([b, torch.tensor([1 - 2.0**-23])])
    c = torch.cat([c, torch.tensor([1 + 2.0**-23])])
    got = upsample._fma32(a, b, c)
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
    plan = upsample.UpsamplePlan.build((256, 256), out_hw, channels=channels)
    assert plan.arithmetic in upsample.ARITHMETICS  # the CPU kernels known so far are all replicated
    x = _smooth_logits(6)
    x[0] = torch.randn(256, 256) * 9
    n, ys, xs = (t.reshape(-1) for t in torch.meshgrid(torch.arange(6), torch.arange(out_hw[0]),
                                                        torch.arange(out_hw[1]), indexing="ij"))
    full = upsample.upsample_logits(x, out_hw, channels)
    assert torch.equal(full, F.interpolate(x.view(-1, channels, 256, 256), out_hw, mode="bilinear",
                                           align_corners=False).flatten(0, 1))
    assert torch.equal(plan.values_at(x, n, ys, xs).view(6, *out_hw), full)


def test_upsample_logits_pads_groups():
    x = _smooth_logits(5)
    assert torch.equal(upsample.upsample_logits(x, (90, 70), channels=3)[3:], upsample.upsample_logits(x[3:], (90, 70), channels=3))


@pytest.mark.parametrize("out_hw,channels", [((300, 420), 1), ((100, 77), 3), ((333, 700), 3)])
def test_lazy_upsample_equals_full_size(out_hw, channels):
    x = _smooth_logits(10, seed=out_hw[0])
    plan = upsample.UpsamplePlan.build((256, 256), out_hw, channels=channels)
    lazy = upsample.LazyUpsample(x, plan)
    levels = [1.0, -1.0]
    counts, boxes = lazy.counts_and_boxes(levels, 0.0)
    full = upsample.upsample_logits(x, out_hw, channels)
    ref_counts = torch.stack([stability.count_above(full, t) for t in levels], 1)
    assert torch.equal(counts, ref_counts)
    assert torch.equal(boxes, masks_to_boxes(full > 0.0))
    torch.testing.assert_close(stability.stability_from_counts(counts[:, 0], counts[:, 1]), stability.stability_score(full, 0.0, 1.0),
                               rtol=0, atol=0, equal_nan=True)
    for t in levels + [0.0, 3.0]:
        lower, upper = lazy.count_bounds(t)
        exact = stability.count_above(full, t)
        assert (lower <= exact).all() and (exact <= upper).all()
    # maps with thresholds crossing everywhere, kept on the pixel-by-pixel path
    c_all, b_all = lazy.counts_and_boxes(levels, 0.0, dense_fraction=math.inf)
    assert torch.equal(c_all, counts) and torch.equal(b_all, boxes)
    # a subset, and the path without a verified replica, agree too
    picked = lazy.select(torch.tensor([3, 1, 4]))
    c2, b2 = picked.counts_and_boxes(levels, 0.0)
    assert torch.equal(c2, counts[[3, 1, 4]]) and torch.equal(b2, boxes[[3, 1, 4]])
    unverified = upsample.LazyUpsample(x, dataclasses.replace(plan, arithmetic=None))
    c3, b3 = unverified.counts_and_boxes(levels, 0.0)
    assert torch.equal(c3, counts) and torch.equal(b3, boxes)


@pytest.mark.parametrize("in_hw,out_hw,channels", [((64, 64), (534, 800), 3), ((64, 64), (1200, 1800), 3),
                                                     ((256, 256), (1200, 1800), 1)])
def test_lazy_upsample_exact_at_large_factors(in_hw, out_hw, channels, monkeypatch):
    """Blocks of many pixels (the default model's 64 x 64 logits on a photo): the row-wise
    counts equal the full-size ones, and both the row-wise and the pixel-by-pixel fallback ran."""
    x = _smooth_logits(8, *in_hw, seed=out_hw[1])
    x[3] = torch.linspace(-3, 3, in_hw[1]).expand(in_hw)  # rows crossing every level, nearly everywhere
    x[4, : in_hw[0] // 2] = 1.0  # flat rows exactly on a level, next to sloped ones
    plan = upsample.UpsamplePlan.build(in_hw, out_hw, channels=channels)
    assert plan.arithmetic is not None
    fallback = []
    original = upsample.LazyUpsample._block_values
    monkeypatch.setattr(upsample.LazyUpsample, "_block_values",
                        lambda self, *a: fallback.append(a[0].numel()) or original(self, *a))
    levels = [1.0, -1.0]
    counts, boxes = upsample.LazyUpsample(x, plan).counts_and_boxes(levels, 0.0)
    full = upsample.upsample_logits(x, out_hw, channels)
    assert torch.equal(counts, torch.stack([stability.count_above(full, t) for t in levels], 1))
    assert torch.equal(boxes, masks_to_boxes(full > 0.0))
    assert sum(fallback) > 0  # some rows went pixel by pixel (the flat and integer maps)


# ------------------------------------------------------------------------------ records
def test_mask_records_select_and_cat():
    def rows(n: int, start: int) -> records.MaskRecords:
        ar = torch.arange(start, start + n)
        return records.MaskRecords(low_res_logits=ar.float()[:, None, None].expand(n, 4, 4).clone(),
                             iou_preds=ar.float(), points=ar.float()[:, None].repeat(1, 2),
                             stability_score=ar.float() / 10, boxes=ar[:, None].repeat(1, 4),
                             crop_boxes=torch.zeros(n, 4, dtype=torch.int64))

    both = records.MaskRecords.cat([rows(3, 0), rows(2, 3)])
    assert len(both) == 5
    assert both.iou_preds.tolist() == [0, 1, 2, 3, 4]
    picked = both.select(torch.tensor([4, 0]))
    assert picked.boxes[:, 0].tolist() == [4, 0] and picked.low_res_logits.shape == (2, 4, 4)
    masked = both.select(both.iou_preds > 2)
    assert masked.points[:, 0].tolist() == [3, 4]
    empty = records.MaskRecords.empty((4, 4))
    assert len(empty) == 0 and len(records.MaskRecords.cat([empty, rows(1, 0)])) == 1
    with pytest.raises(ValueError):
        records.MaskRecords.cat([])
    assert math.isclose(float(both.stability_score[2]), 0.2, rel_tol=1e-6)
