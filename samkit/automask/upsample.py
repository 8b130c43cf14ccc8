"""Exact facts about bilinearly upsampled logits (counts above thresholds, boxes, masks)
without making the full-size maps."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from samkit.automask.stability import count_above
from samkit.masks.boxes import first_true_index, masks_to_boxes

__all__ = ["UpsamplePlan", "ARITHMETICS", "LazyUpsample", "upsample_logits", "upsample_masks"]

# exact facts about upsampled logits, without making the full-size maps
#
# The official generator upsamples every candidate's 256 x 256 logits to the image size
# (``F.interpolate``, bilinear, ``align_corners=False``) and thresholds them. Along each
# axis an output sample is a weighted sum of one or two neighbouring inputs, so an output
# pixel lies between the min and the max of (at most) a 2 x 2 block of inputs. Outputs that
# share the same input block form a rectangle, so whole rectangles can be decided from the
# low-resolution logits; only rectangles that straddle a threshold are evaluated pixel by
# pixel, with float32 arithmetic replicating the kernel bit for bit where it matters.


def _fma32(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Correctly rounded float32 ``a * b + c`` (a fused multiply-add) from float32 inputs.

    The product is exact in float64 and the sum is split into ``s + e`` exactly; rounding
    ``s`` to float32 is right except when ``s`` sits exactly between two floats, where the
    sign of ``e`` decides.
    """
    p = a.double() * b.double()
    cd = c.double()
    s = p + cd
    back = s - p
    e = (p - (s - back)) + (cd - back)
    r = s.float()
    rd = r.double()
    away = torch.where(s > rd, math.inf, -math.inf).to(r.dtype)
    other = torch.nextafter(r, away)
    halfway = (rd + other.double() == 2 * s) & (s != rd) & (e != 0)
    return torch.where(halfway & ((e > 0) == (other > r)), other, r)


@dataclass(frozen=True)
class _Axis:
    """Bilinear (``align_corners=False``) resampling of ``n_in`` samples to ``n_out`` along one axis.

    Outputs come in ``S`` segments of consecutive outputs that read the same one or two inputs;
    segment ``S`` (the last entry) is an empty placeholder. Inputs are grouped in tiles of
    ``tile`` samples, and a segment belongs to the tile of its first input.
    """

    src0: torch.Tensor  # n_out int64, first input sample of each output
    src1: torch.Tensor  # n_out int64, second input sample (== src0 at the far edge)
    w0: torch.Tensor  # n_out float32 weight of src0
    w1: torch.Tensor  # n_out float32 weight of src1
    seg_start: torch.Tensor  # S+1 int64 first output of each segment
    seg_len: torch.Tensor  # S+1 int64 outputs in it (0 for the placeholder)
    seg_lo: torch.Tensor  # S+1 int64 the inputs it reads: seg_lo..seg_hi (seg_hi - seg_lo <= 1)
    seg_hi: torch.Tensor  # S+1 int64
    tile_segs: torch.Tensor  # T x M int64 segments of each tile, padded with the placeholder S
    tile_start: torch.Tensor  # T int64 first output of each tile
    tile_len: torch.Tensor  # T int64 outputs of each tile

    @classmethod
    def build(cls, n_in: int, n_out: int, fused: bool, tile: int, device: torch.device) -> "_Axis":
        # which inputs each output really reads: resample one-hot signals with the kernel itself
        probe = torch.eye(n_in, device=device).view(n_in, 1, n_in, 1)
        weights = F.interpolate(probe, size=(n_out, 1), mode="bilinear", align_corners=False)[:, 0, :, 0]
        used = (weights != 0).to(torch.uint8)  # n_in x n_out
        lo = used.argmax(0)
        hi = n_in - 1 - used.flip(0).argmax(0)
        _, seg_len = torch.unique_consecutive(lo * (n_in + 1) + hi, return_counts=True)
        seg_start = torch.cumsum(seg_len, 0) - seg_len
        seg_lo, seg_hi = lo[seg_start], hi[seg_start]
        n_seg = seg_len.numel()
        owner = torch.div(seg_lo, tile, rounding_mode="floor")
        n_tiles = -(-n_in // tile)
        per_tile = torch.bincount(owner, minlength=n_tiles)
        first = torch.cumsum(per_tile, 0) - per_tile
        tile_segs = torch.full((n_tiles, max(1, int(per_tile.max()))), n_seg, dtype=torch.int64, device=device)
        tile_segs[owner, torch.arange(n_seg, device=device) - first[owner]] = torch.arange(n_seg, device=device)
        tile_len = torch.zeros(n_tiles, dtype=torch.int64, device=device).index_add_(0, owner, seg_len)
        tile_start = torch.where(per_tile > 0, seg_start[first.clamp(max=n_seg - 1)], 0)
        zero = torch.zeros(1, dtype=torch.int64, device=device)
        # the kernel's own indices and weights (source position = scale * (i + 0.5) - 0.5)
        scale = torch.full((n_out,), float(np.float32(n_in) / np.float32(n_out)), device=device)
        centre = torch.arange(n_out, dtype=torch.float32, device=device) + 0.5
        if fused:
            src = _fma32(scale, centre, torch.full_like(scale, -0.5))
        else:
            src = scale * centre - 0.5
        src = src.clamp(min=0)
        src0 = src.floor().long().clamp(max=n_in - 1)
        lam = (src - src0.float()).clamp(0, 1)
        src1 = torch.where(src0 < n_in - 1, src0 + 1, src0)
        return cls(src0, src1, 1 - lam, lam, torch.cat([seg_start, zero]), torch.cat([seg_len, zero]),
                   torch.cat([seg_lo, zero]), torch.cat([seg_hi, zero]), tile_segs, tile_start, tile_len)


@dataclass(frozen=True)
class UpsamplePlan:
    """How ``F.interpolate(x, out_hw, mode="bilinear", align_corners=False)`` maps ``h x w``
    maps to ``H x W`` on this machine, built with :meth:`build`.

    The kernel's float32 arithmetic is not the same everywhere: it may use fused
    multiply-adds, and may sum the four weighted inputs in a different order depending on
    the number of channels of the tensor and of threads. ``channels`` is the channel count
    of the calls being reproduced (maps are upsampled in groups of that many);
    ``arithmetic`` names the replica that matched the kernel bit for bit on this machine
    (:data:`ARITHMETICS`), or is ``None`` when none did: exact per-pixel values are then
    unavailable and callers fall back to full-size upsampling.
    """

    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    rows: _Axis
    cols: _Axis
    arithmetic: str | None
    channels: int = 1
    tile: int = 8  # input samples per tile side in LazyUpsample's coarse pass

    @classmethod
    def build(cls, in_hw: tuple[int, int], out_hw: tuple[int, int], device: torch.device | str = "cpu",
              channels: int = 1, tile: int = 8) -> "UpsamplePlan":
        """Build the plan and check the replicas against the kernel, called on
        ``B x channels x h x w`` tensors with the current number of threads (once per size)."""
        device = torch.device(device)
        in_hw = (int(in_hw[0]), int(in_hw[1]))
        out_hw = (int(out_hw[0]), int(out_hw[1]))
        gen = torch.Generator().manual_seed(0)
        test = (torch.randn(2 * channels, *in_hw, generator=gen) * 8).to(device)
        test[-1, ::3] = torch.randint(-2, 3, (in_hw[1],), generator=gen).float().to(device)
        reference = upsample_logits(test, out_hw, channels)
        index, ys, xs = _check_pixels(out_hw, gen, device)
        index = index * (2 * channels - 1)  # the first and the last map
        expected = reference[index, ys, xs]
        plan, axes = None, {}
        for arithmetic in ARITHMETICS:
            fused = arithmetic.startswith("fused")
            if fused not in axes:
                axes[fused] = (_Axis.build(in_hw[0], out_hw[0], fused, tile, device),
                               _Axis.build(in_hw[1], out_hw[1], fused, tile, device))
            plan = cls(in_hw, out_hw, *axes[fused], arithmetic, channels, tile)
            if torch.equal(plan.values_at(test, index, ys, xs), expected):
                return plan
        return replace(plan, arithmetic=None)

    def values_at(self, logits: torch.Tensor, index: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor,
                  arithmetic: str | None = None) -> torch.Tensor:
        """Upsampled values at ``P`` pixels: ``logits`` ``N x h x w``; ``index``, ``ys``, ``xs``
        ``P`` (which map, output row, output column) -> ``P`` float32.

        With the plan's verified arithmetic the values equal the kernel's bit for bit;
        ``arithmetic="plain"`` is cheaper and within a few float32 roundings of them.
        """
        arithmetic = arithmetic or self.arithmetic or "plain"
        h, w = self.in_hw
        flat = logits.reshape(-1)
        base = index * (h * w)
        top = base + self.rows.src0[ys] * w
        bottom = base + self.rows.src1[ys] * w
        left, right = self.cols.src0[xs], self.cols.src1[xs]
        wx0, wx1 = self.cols.w0[xs], self.cols.w1[xs]
        wy0, wy1 = self.rows.w0[ys], self.rows.w1[ys]
        a, b = flat[top + left], flat[top + right]
        c, d = flat[bottom + left], flat[bottom + right]
        if arithmetic == "fused":  # rows first, then columns, one product of each pair fused
            return _fma32(_fma32(a, wx0, b * wx1), wy0, _fma32(c, wx0, d * wx1) * wy1)
        if arithmetic == "fused4":  # four weights (row weight x column weight) accumulated in turn
            return _fma32(d, wy1 * wx1, _fma32(c, wy1 * wx0, _fma32(a, wy0 * wx0, b * (wy0 * wx1))))
        if arithmetic == "plain4":
            return ((b * (wy0 * wx1) + a * (wy0 * wx0)) + c * (wy1 * wx0)) + d * (wy1 * wx1)
        return (a * wx0 + b * wx1) * wy0 + (c * wx0 + d * wx1) * wy1


def _check_pixels(out_hw: tuple[int, int], gen: torch.Generator,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixels of two ``H x W`` maps to compare the replica with the kernel on: every column of
    a few rows, every row of a few columns (so each weight is used), and random pixels."""
    h, w = out_hw
    some_rows = torch.tensor(sorted({0, 1, 2, h // 3, h // 2, h - 3, h - 2, h - 1} & set(range(h))))
    some_cols = torch.tensor(sorted({0, 1, 2, w // 3, w // 2, w - 3, w - 2, w - 1} & set(range(w))))
    ry, rx = torch.meshgrid(some_rows, torch.arange(w), indexing="ij")
    cy, cx = torch.meshgrid(torch.arange(h), some_cols, indexing="ij")
    n_random = 20000
    ys = torch.cat([ry.reshape(-1), cy.reshape(-1), torch.randint(0, h, (n_random,), generator=gen)])
    xs = torch.cat([rx.reshape(-1), cx.reshape(-1), torch.randint(0, w, (n_random,), generator=gen)])
    index = torch.arange(ys.numel()) % 2
    return index.to(device), ys.to(device), xs.to(device)


# replicas of the kernel's arithmetic tried by UpsamplePlan.build, in order
ARITHMETICS = ("fused", "fused4", "plain", "plain4")


def upsample_logits(logits: torch.Tensor, out_hw: tuple[int, int], channels: int = 1) -> torch.Tensor:
    """``N x h x w`` -> ``N x H x W`` bilinear (``align_corners=False``), as the predictors do.

    The maps go through ``F.interpolate`` in groups of ``channels`` (a ``B x channels x h x w``
    tensor, zero-padded), because the kernel's rounding can depend on the channel count: to
    reproduce a predictor's ``B x 3 x h x w`` call bit for bit, pass ``channels=3``.
    """
    n = logits.shape[0]
    groups = -(-n // channels)
    if groups * channels != n:
        logits = torch.cat([logits, logits.new_zeros(groups * channels - n, *logits.shape[1:])])
    out = F.interpolate(logits.reshape(groups, channels, *logits.shape[1:]), size=tuple(out_hw),
                        mode="bilinear", align_corners=False)
    return out.flatten(0, 1)[:n]


class LazyUpsample:
    """Exact threshold statistics of ``upsample_logits(logits, plan.out_hw)`` computed from the
    low-resolution logits, touching full-size pixels only where a threshold crosses them.

    ``logits``: ``N x h x w`` float32 (finite). Decisions go coarse to fine: tiles of
    ``plan.tile`` x ``plan.tile`` inputs, then the 2 x 2 input blocks inside undecided tiles,
    then the pixels of undecided blocks. Every result equals what thresholding the full
    upsampled maps gives; where the plan has no verified arithmetic the full maps are made (in
    chunks) instead.
    """

    def __init__(self, logits: torch.Tensor, plan: UpsamplePlan) -> None:
        self.logits = logits
        self.plan = plan
        t = plan.tile
        n_rows, n_cols = plan.rows.tile_len.numel(), plan.cols.tile_len.numel()
        h, w = logits.shape[-2:]
        self.padded = F.pad(logits[:, None], (0, n_cols * t + 1 - w, 0, n_rows * t + 1 - h), mode="replicate")[:, 0]
        patches = self._patches()
        self.tile_max = patches.amax((-2, -1))  # N x TR x TC
        self.tile_min = patches.amin((-2, -1))
        # bound on float32 rounding in the kernel (a few ulps of the largest magnitude), generously
        self.slack = (logits.abs().flatten(1).amax(1) + 1) * 1e-5  # N

    def _patches(self) -> torch.Tensor:
        """``N x TR x TC x (t+1) x (t+1)`` view: the inputs each tile's outputs can read."""
        t = self.plan.tile
        return self.padded.unfold(1, t + 1, t).unfold(2, t + 1, t)

    def __len__(self) -> int:
        return int(self.logits.shape[0])

    def select(self, keep: torch.Tensor) -> "LazyUpsample":
        """The maps picked by a boolean mask or an index tensor."""
        out = object.__new__(LazyUpsample)
        out.plan = self.plan
        for name in ("logits", "padded", "tile_max", "tile_min", "slack"):
            setattr(out, name, getattr(self, name)[keep])
        return out

    def _tile_area(self) -> torch.Tensor:
        return self.plan.rows.tile_len[:, None] * self.plan.cols.tile_len[None, :]

    def _decide(self, low: torch.Tensor, high: torch.Tensor, slack: torch.Tensor,
                level: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(all_above, maybe_above)`` for ``value > level`` of regions whose values lie in
        ``[low, high]`` up to rounding; ``slack`` broadcasts against them."""
        slack = slack + abs(level) * 1e-6
        return low > level + slack, high > level - slack

    def _blocks(self, index: torch.Tensor, tile_r: torch.Tensor,
                tile_c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The 2 x 2-input blocks of ``K`` tiles: ``(min, max, area K x Mr x Mc, segments
        rows K x Mr, segments cols K x Mc)``; padding blocks have area 0."""
        rows, cols, t = self.plan.rows, self.plan.cols, self.plan.tile
        patch = self._patches()[index, tile_r, tile_c]  # K x (t+1) x (t+1)
        seg_r, seg_c = rows.tile_segs[tile_r], cols.tile_segs[tile_c]
        r0 = (rows.seg_lo[seg_r] - tile_r[:, None] * t).clamp(0, t)[:, :, None].expand(-1, -1, t + 1)
        r1 = (rows.seg_hi[seg_r] - tile_r[:, None] * t).clamp(0, t)[:, :, None].expand(-1, -1, t + 1)
        top, bottom = patch.gather(1, r0), patch.gather(1, r1)  # K x Mr x (t+1)
        m = seg_r.shape[1]
        c0 = (cols.seg_lo[seg_c] - tile_c[:, None] * t).clamp(0, t)[:, None, :].expand(-1, m, -1)
        c1 = (cols.seg_hi[seg_c] - tile_c[:, None] * t).clamp(0, t)[:, None, :].expand(-1, m, -1)
        hi_rows, lo_rows = torch.maximum(top, bottom), torch.minimum(top, bottom)
        block_max = torch.maximum(hi_rows.gather(2, c0), hi_rows.gather(2, c1))
        block_min = torch.minimum(lo_rows.gather(2, c0), lo_rows.gather(2, c1))
        area = rows.seg_len[seg_r][:, :, None] * cols.seg_len[seg_c][:, None, :]
        return block_min, block_max, area, seg_r, seg_c

    def count_bounds(self, level: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Lower and upper bounds (``N`` int64 each) on the number of upsampled pixels
        ``> level``, from the low-resolution logits alone."""
        sure, maybe = self._decide(self.tile_min, self.tile_max, self.slack[:, None, None], level)
        lower = (sure * self._tile_area()).sum((1, 2))
        upper = lower.clone()
        index, tile_r, tile_c = (maybe & ~sure).nonzero(as_tuple=True)
        block_min, block_max, area, _, _ = self._blocks(index, tile_r, tile_c)
        sure_b, maybe_b = self._decide(block_min, block_max, self.slack[index][:, None, None], level)
        lower.index_add_(0, index, (sure_b * area).sum((1, 2)))
        upper.index_add_(0, index, (maybe_b * area).sum((1, 2)))
        return lower, upper

    def counts_and_boxes(self, thresholds: Sequence[float], box_threshold: float, chunk_pixels: int = 1 << 21,
                         dense_fraction: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact ``(counts N x T int64, boxes N x 4 int64)``: pixels ``> thresholds[t]`` in each
        upsampled map, and the XYXY box of its pixels ``> box_threshold`` (zeros if none).

        Maps whose undecided pixels exceed ``dense_fraction`` of the full size (noise-like
        logits with boundaries everywhere) are upsampled in full instead, which is then cheaper.
        """
        if self.plan.arithmetic is None:
            return _dense_counts_and_boxes(self.logits, self.plan.out_hw, thresholds, box_threshold,
                                           self.plan.channels)
        rows, cols = self.plan.rows, self.plan.cols
        levels = list(thresholds) + [box_threshold]
        n = len(self)
        extent_lo = torch.tensor(self.plan.out_hw, device=self.logits.device).repeat(n, 1)  # N x 2 (y, x)
        extent_hi = torch.full_like(extent_lo, -1)
        # 1. tiles
        slack = self.slack[:, None, None]
        tiles = [self._decide(self.tile_min, self.tile_max, slack, t) for t in levels]
        open_tiles = torch.zeros_like(tiles[0][0])
        for sure, maybe in tiles:
            open_tiles |= maybe & ~sure
        area = self._tile_area()
        full_size = self.plan.out_hw[0] * self.plan.out_hw[1]
        dense = (open_tiles * area).sum((1, 2)) > 3 * dense_fraction * full_size  # hopeless already
        open_tiles &= ~dense[:, None, None]
        counts = torch.stack([((sure & ~open_tiles) * area).sum((1, 2)) for sure, _ in tiles[:-1]], 1)
        idx, tr, tc = (tiles[-1][0] & ~open_tiles & (area > 0)).nonzero(as_tuple=True)
        _merge_extents(extent_lo, extent_hi, idx, rows.tile_start[tr], rows.tile_len[tr],
                       cols.tile_start[tc], cols.tile_len[tc])
        # 2. blocks of the undecided tiles
        index, tile_r, tile_c = open_tiles.nonzero(as_tuple=True)
        block_min, block_max, area, seg_r, seg_c = self._blocks(index, tile_r, tile_c)
        slack = self.slack[index][:, None, None]
        blocks = [self._decide(block_min, block_max, slack, t) for t in levels]
        open_blocks = torch.zeros_like(blocks[0][0])
        for sure, maybe in blocks:
            open_blocks |= maybe & ~sure
        open_blocks &= area > 0
        undecided = torch.zeros(n, dtype=torch.int64, device=index.device)
        undecided.index_add_(0, index, (open_blocks * area).sum((1, 2)))
        dense |= undecided > dense_fraction * full_size
        open_blocks &= ~dense[index][:, None, None]
        for k, (sure, _) in enumerate(blocks[:-1]):
            counts[:, k].index_add_(0, index, ((sure & ~open_blocks) * area).sum((1, 2)))
        k, i, j = (blocks[-1][0] & ~open_blocks & (area > 0)).nonzero(as_tuple=True)
        r, c = seg_r[k, i], seg_c[k, j]
        _merge_extents(extent_lo, extent_hi, index[k], rows.seg_start[r], rows.seg_len[r],
                       cols.seg_start[c], cols.seg_len[c])
        # 3. rows of the undecided blocks, then pixels of the rows that a level crosses too closely
        k, i, j = open_blocks.nonzero(as_tuple=True)
        index, seg_r, seg_c = index[k], seg_r[k, i], seg_c[k, j]
        per_chunk = max(1, chunk_pixels // (4 * int(rows.seg_len.max())))  # blocks: their rows x levels
        for part in range(0, index.numel(), per_chunk):
            i, r, c = (v[part:part + per_chunk] for v in (index, seg_r, seg_c))
            self._count_rows(i, r, c, thresholds, box_threshold, counts, extent_lo, extent_hi)
        boxes = torch.stack([extent_lo[:, 1], extent_lo[:, 0], extent_hi[:, 1], extent_hi[:, 0]], 1)
        boxes = boxes * (extent_hi[:, :1] >= 0)
        if bool(dense.any()):
            counts[dense], boxes[dense] = _dense_counts_and_boxes(self.logits[dense], self.plan.out_hw, thresholds,
                                                                  box_threshold, self.plan.channels)
        return counts, boxes

    def _count_rows(self, index: torch.Tensor, seg_r: torch.Tensor, seg_c: torch.Tensor,
                    thresholds: Sequence[float], box_threshold: float, counts: torch.Tensor,
                    extent_lo: torch.Tensor, extent_hi: torch.Tensor) -> None:
        """Add the exact counts and box extents of ``K`` undecided 2 x 2-input blocks (maps
        ``index``, row and column segments ``seg_r``, ``seg_c``, all ``K``) to ``counts``
        ``N x T`` and ``extent_lo`` / ``extent_hi``.

        Along one output row of a block the upsampled value is linear in the column weight, so
        the pixels above a level are a prefix or a suffix of the row, found by a binary search
        over the block's column weights. A row is trusted when the pixels on both sides of each
        crossing lie clearly (twice the rounding slack) on their sides; the other rows (a level
        too close to a pixel's value, a nearly flat row) are evaluated pixel by pixel.
        """
        rows, cols = self.plan.rows, self.plan.cols
        x, device = self.logits, index.device
        levels = list(thresholds) + [box_threshold]
        n_levels = len(levels)
        dy = torch.arange(int(rows.seg_len.max()), device=device)
        dx = torch.arange(int(cols.seg_len.max()), device=device)
        bh = dy.numel()
        # blocks along the last axis throughout (reductions over rows and levels vectorise)
        height, width = rows.seg_len[seg_r], cols.seg_len[seg_c]  # K
        ys = (rows.seg_start[seg_r][None] + dy[:, None]).clamp(max=self.plan.out_hw[0] - 1)  # bh x K
        xs = (cols.seg_start[seg_c][None] + dx[:, None]).clamp(max=self.plan.out_hw[1] - 1)  # bw x K
        row_ok = dy[:, None] < height  # bh x K
        top, bottom = rows.seg_lo[seg_r], rows.seg_hi[seg_r]
        left, right = cols.seg_lo[seg_c], cols.seg_hi[seg_c]
        wy0, wy1 = rows.w0[ys], rows.w1[ys]  # bh x K
        # each row's values at the block's left and right input columns (value = lv * wx0 + rv * wx1),
        # repeated for each level: (levels * bh) x K, level-major
        lv = (x[index, top, left] * wy0 + x[index, bottom, left] * wy1).repeat(n_levels, 1)
        rv = (x[index, top, right] * wy0 + x[index, bottom, right] * wy1).repeat(n_levels, 1)
        t = torch.tensor(levels, dtype=lv.dtype, device=device).repeat_interleave(bh)[:, None]  # (levels * bh) x 1
        wx1 = cols.w1[xs]  # bw x K, non-decreasing along a segment
        w = width[None]
        span = rv - lv
        rising = span >= 0
        u = torch.where(span != 0, (t - lv) / span, torch.where(lv > t, -math.inf, math.inf).to(lv.dtype))
        # pixels with weight <= u: below t on a rising row, above it on a falling one (a pixel
        # exactly at u is within the slack of t, so its row goes pixel by pixel)
        weights = wx1.masked_fill(dx[:, None] >= w, math.inf)
        cut = torch.searchsorted(weights.T.contiguous(), u.T.contiguous(), right=True).T.minimum(w)
        lo = torch.where(rising, cut, 0)
        hi = torch.where(rising, w, cut)  # the pixels above t: [lo, hi)
        above = torch.where(rising, lo, hi - 1)  # the pixels next to the crossing
        below = torch.where(rising, lo - 1, hi)
        has_above = hi > lo
        has_below = torch.where(rising, lo > 0, hi < w)
        margin = 2 * (self.slack[index][None] + t.abs() * 1e-6)
        last = w - 1

        def value(p: torch.Tensor) -> torch.Tensor:  # within rounding of the kernel's value, as lv * wx0 + rv * wx1
            return lv + span * wx1.gather(0, p.clamp(min=0).minimum(last))

        clear = (~has_above | (value(above) > t + margin)) & (~has_below | (value(below) < t - margin))
        trusted = row_ok & clear.view(n_levels, bh, -1).all(0)  # bh x K
        per_level = ((hi - lo).view(n_levels, bh, -1) * trusted).sum(1)  # levels x K
        for q in range(len(thresholds)):
            counts[:, q].index_add_(0, index, per_level[q])
        # the box level's extents, block by block (its rows are the last bh)
        lo, hi = lo[-bh:], hi[-bh:]
        hit = trusted & (hi > lo)
        some = hit.any(0)
        if bool(some.any()):
            # float reductions: the integer ones are not vectorised
            row = dy[:, None].to(lv.dtype)
            y_first = row.expand_as(hit).masked_fill(~hit, math.inf).amin(0).long()
            y_last = row.expand_as(hit).masked_fill(~hit, -math.inf).amax(0).long()
            x_first = lo.to(lv.dtype).masked_fill_(~hit, math.inf).amin(0).long()
            x_last = hi.to(lv.dtype).masked_fill_(~hit, -math.inf).amax(0).long() - 1
            k = some.nonzero().flatten()
            _merge_extents(extent_lo, extent_hi, index[k], rows.seg_start[seg_r][k] + y_first[k],
                           (y_last - y_first + 1)[k], cols.seg_start[seg_c][k] + x_first[k], (x_last - x_first + 1)[k])
        # the rows left: pixel by pixel
        i, k = (row_ok & ~trusted).nonzero(as_tuple=True)
        if k.numel() == 0:
            return
        index, seg_r, seg_c, ys, xs = index[k], seg_r[k], seg_c[k], ys[i, k][:, None], xs[:, k].T
        inside = (dx < width[k][:, None])[:, None, :]  # K' x 1 x bw
        values = self._block_values(index, seg_r, seg_c, ys, xs, levels).masked_fill_(~inside, -math.inf)
        for q, t in enumerate(thresholds):
            counts[:, q].index_add_(0, index, (values > t).sum((1, 2)))
        hit = (values > box_threshold)[:, 0]  # K' x bw
        some = hit.any(1)
        x_first = first_true_index(hit)
        x_last = dx.numel() - 1 - first_true_index(hit.flip(1))
        start_x = cols.seg_start[seg_c]
        _merge_extents(extent_lo, extent_hi, index[some], ys[some, 0], torch.ones_like(x_first[some]),
                       (start_x + x_first)[some], (x_last - x_first + 1)[some])

    def _block_values(self, index: torch.Tensor, seg_r: torch.Tensor, seg_c: torch.Tensor, ys: torch.Tensor,
                      xs: torch.Tensor, levels: Sequence[float]) -> torch.Tensor:
        """Upsampled values on ``K`` blocks (``ys`` ``K x bh``, ``xs`` ``K x bw`` their pixels):
        ``K x bh x bw``. Cheap separable float32 values, replaced by the kernel's exact ones
        wherever a value is close enough to a level for rounding to matter."""
        rows, cols = self.plan.rows, self.plan.cols
        x = self.logits
        top, bottom = rows.seg_lo[seg_r], rows.seg_hi[seg_r]
        left, right = cols.seg_lo[seg_c], cols.seg_hi[seg_c]
        # every pixel of a block reads the same (up to) 2 x 2 inputs
        a, b = x[index, top, left][:, None], x[index, top, right][:, None]
        c, d = x[index, bottom, left][:, None], x[index, bottom, right][:, None]
        wx0, wx1 = cols.w0[xs], cols.w1[xs]
        upper = a * wx0 + b * wx1  # K x bw
        lower = c * wx0 + d * wx1
        values = upper[:, None, :] * rows.w0[ys][:, :, None] + lower[:, None, :] * rows.w1[ys][:, :, None]
        slack = self.slack[index][:, None, None]
        near = torch.zeros_like(values, dtype=torch.bool)
        for t in levels:
            near |= (values - t).abs() <= slack + abs(t) * 1e-6
        if bool(near.any()):
            k, yy, xx = near.nonzero(as_tuple=True)
            values[k, yy, xx] = self.plan.values_at(x, index[k], ys[k, yy], xs[k, xx])
        return values


def _merge_extents(lo: torch.Tensor, hi: torch.Tensor, index: torch.Tensor, y0: torch.Tensor, height: torch.Tensor,
                   x0: torch.Tensor, width: torch.Tensor) -> None:
    """Widen the pixel extents ``lo``/``hi`` (``N x 2`` (y, x) minima / maxima) in place to cover
    rectangles ``[y0, y0 + height) x [x0, x0 + width)`` of maps ``index`` (all ``M``)."""
    where = index[:, None].expand(-1, 2)
    lo.scatter_reduce_(0, where, torch.stack([y0, x0], 1), reduce="amin")
    hi.scatter_reduce_(0, where, torch.stack([y0 + height - 1, x0 + width - 1], 1), reduce="amax")


def _dense_counts_and_boxes(logits: torch.Tensor, out_hw: tuple[int, int], thresholds: Sequence[float],
                            box_threshold: float, channels: int = 1,
                            chunk_pixels: int = 1 << 25) -> tuple[torch.Tensor, torch.Tensor]:
    """:meth:`LazyUpsample.counts_and_boxes` by making the full-size maps, a chunk at a time."""
    per_chunk = max(1, chunk_pixels // max(1, out_hw[0] * out_hw[1]))
    counts, boxes = [], []
    for part in logits.split(per_chunk):
        full = upsample_logits(part, out_hw, channels)
        counts.append(torch.stack([count_above(full, t) for t in thresholds], 1))
        boxes.append(masks_to_boxes(full > box_threshold))
    if not counts:
        return (torch.zeros(0, len(thresholds), dtype=torch.int64, device=logits.device),
                torch.zeros(0, 4, dtype=torch.int64, device=logits.device))
    return torch.cat(counts), torch.cat(boxes)


def upsample_masks(logits: torch.Tensor, out_hw: tuple[int, int], threshold: float,
                   channels: int = 1) -> torch.Tensor:
    """``N x h x w`` logits -> ``N x H x W`` bool masks ``upsample_logits(...) > threshold``."""
    return upsample_logits(logits, out_hw, channels) > threshold
