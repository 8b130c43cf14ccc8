"""``AutoMaskGenerator``: every mask in an image, from a grid of point prompts.

A drop-in for the official ``SAM2AutomaticMaskGenerator``: the same constructor arguments
and defaults, and ``generate(image)`` returns the same records (``segmentation``, ``area``,
``bbox`` XYWH, ``predicted_iou``, ``point_coords``, ``stability_score``, ``crop_box`` XYWH)
with the same masks, decided by the same rules.

What differs is where the work happens. The official generator upsamples every candidate's
logits to the image size, then filters. Here every decision is taken on the decoder's
low-resolution logits whenever that is exact:

1. the predicted-IoU filter needs no mask at all;
2. bounds on the full-size stability score, computed from 2 x 2 blocks of low-res logits,
   reject the candidates that cannot pass;
3. the exact stability score and box of the rest are counted from the low-res logits,
   evaluating full-size pixels only where a threshold crosses them
   (:class:`~samkit.automask.upsample.LazyUpsample`);
4. only the masks that survive both NMS passes are upsampled, and run-length encoded in one
   vectorised pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

# the settings' names stay importable from here (``from samkit.automask.generator import AutoMaskConfig``)
from samkit.automask.config import (MAX_CROP_N_LAYERS, MAX_POINTS_PER_SIDE, OFFICIAL_PRED_IOU_THRESH,  # noqa: F401
                                    OFFICIAL_STABILITY_SCORE_THRESH, OUTPUT_MODES, THRESHOLD_FIELDS, AutoMaskConfig,
                                    AutoMaskSettings, GenerateStats)
from samkit.automask.grid import (check_crop_boxes, generate_crop_boxes, is_box_near_crop_edge, uncrop_boxes_xyxy,
                                  uncrop_points)
from samkit.automask.records import MaskRecords
from samkit.automask.stability import stability_from_counts
from samkit.automask.upsample import LazyUpsample, UpsamplePlan, upsample_masks
from samkit.image_predictor import ImagePredictor
from samkit.masks import batched_nms, box_area, box_xyxy_to_xywh, fill_holes_and_sprinkles
from samkit.masks.rle import encode_segmentations
from samkit.prompts import FEEDBACK_CLAMP


def _is_predictor(obj: Any) -> bool:
    """Whether ``obj`` is an image predictor (rather than a model) to work through."""
    return all(hasattr(obj, name) for name in ("set_image", "predict_low_res", "reset_predictor", "_transforms"))


class AutoMaskGenerator(AutoMaskSettings):
    """Generate masks for a whole image from a grid of point prompts.

    ``AutoMaskGenerator(model, points_per_side=32, ...)`` takes the official
    ``SAM2AutomaticMaskGenerator`` arguments (see :class:`AutoMaskConfig`);
    ``generate(image)`` returns one record per mask. ``model`` is a SAM 2 model, or an
    :class:`~samkit.image_predictor.ImagePredictor` to work through. The settings, their checks
    and attribute access are :class:`~samkit.automask.config.AutoMaskSettings`' (shared with
    :class:`~samkit.onnx.automask.OnnxAutoMaskGenerator`).

    ``pred_iou_thresh`` and ``stability_score_thresh`` left out (None) are the model's:
    ``model.cfg.automask_pred_iou_thresh`` / ``automask_stability_score_thresh`` (the official
    0.8 / 0.95 for the official variants, 0.6 / 0.8 for ``samkit_nano``, whose masks rarely reach
    the official ones), and the official values for a predictor without a model config.
    ``threshold_sources`` says where each came from; after :meth:`generate`, ``last_stats``
    (:class:`GenerateStats`) says how many candidates passed each filter, and
    ``last_stats.explain()`` which threshold to lower when nothing survived.

    ``min_mask_region_area > 0`` fills holes and removes specks of at most that many pixels in
    the low-resolution logits before anything else, as the official predictor does when its
    CUDA extension is available (without it the official code skips this step with a warning).
    """

    def _attach(self, model: Any) -> None:
        # hole filling is done here at low resolution, so the predictor itself does none
        self.predictor = model if _is_predictor(model) else ImagePredictor(model)
        self._plans: dict[tuple, UpsamplePlan] = {}

    def _model_config(self) -> Any:
        return getattr(getattr(self.predictor, "model", None), "cfg", None)

    @classmethod
    def from_pretrained(cls, name_or_checkpoint: str, **kwargs: Any) -> "AutoMaskGenerator":
        """A generator around :meth:`ImagePredictor.from_pretrained` (a checkpoint file, or a model
        name or Hugging Face id with trained weights, downloaded once for the official ones);
        ``device=`` and the generator's own arguments may be given."""
        predictor = ImagePredictor.from_pretrained(name_or_checkpoint, device=kwargs.pop("device", "cpu"))
        return cls(predictor.model, **kwargs)

    @torch.inference_mode()
    def _generate(self, rgb: np.ndarray) -> list[dict[str, Any]]:
        records, channels = self._generate_records(rgb)
        return self._to_annotations(records, rgb.shape[:2], channels)

    # ------------------------------------------------------------------ stages
    def _generate_records(self, rgb: np.ndarray) -> tuple[MaskRecords, int]:
        """All kept masks of the image, and the channel count of the decoder calls that made
        them (masks are upsampled in groups of that size, as the official predictor does)."""
        cfg = self.config
        orig_hw = rgb.shape[:2]
        crop_boxes, layers = generate_crop_boxes(orig_hw, cfg.crop_n_layers, cfg.crop_overlap_ratio)
        check_crop_boxes(orig_hw, crop_boxes, layers)  # an image too small for its crops, before any work
        grids = cfg.grids()
        found = [self._process_crop(rgb, box, grids[layer], orig_hw) for box, layer in zip(crop_boxes, layers)]
        channels = found[0][1]
        parts = [p for p, _ in found if len(p)]
        if not parts:
            return MaskRecords.empty((0, 0), self.predictor.device), channels
        records = MaskRecords.cat(parts)
        if len(crop_boxes) > 1:
            # duplicates between crops: prefer the mask from the smaller crop
            keep = batched_nms(records.boxes.float(), 1 / box_area(records.crop_boxes),
                               torch.zeros_like(records.boxes[:, 0]), cfg.crop_nms_thresh)
            records = records.select(keep)
        return records, channels

    def _process_crop(self, rgb: np.ndarray, crop_box: list[int], grid: np.ndarray,
                      orig_hw: tuple[int, int]) -> tuple[MaskRecords, int]:
        cfg = self.config
        x0, y0, x1, y1 = crop_box
        crop = rgb[y0:y1, x0:x1]
        crop_hw = crop.shape[:2]
        self.predictor.set_image(crop)
        points = grid * np.array([[crop_hw[1], crop_hw[0]]])  # n x 2 pixels (x, y)
        found = [self._process_batch(points[i:i + cfg.points_per_batch], crop_hw, crop_box, orig_hw)
                 for i in range(0, len(points), cfg.points_per_batch)]
        self.predictor.reset_predictor()
        channels = found[0][1] if found else 1
        parts = [p for p, _ in found if len(p)]
        if not parts:
            return MaskRecords.empty((0, 0), self.predictor.device), channels
        records = MaskRecords.cat(parts)
        keep = batched_nms(records.boxes.float(), records.iou_preds, torch.zeros_like(records.boxes[:, 0]),
                           cfg.box_nms_thresh)
        records = records.select(keep)
        records.boxes = uncrop_boxes_xyxy(records.boxes, crop_box)
        records.points = uncrop_points(records.points, crop_box)
        records.crop_boxes = torch.tensor([crop_box], dtype=torch.int64,
                                          device=records.boxes.device).expand(len(records), 4).clone()
        return records, channels

    def _decode(self, points: torch.Tensor, crop_hw: tuple[int, int],
                mask_input: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Point prompts in crop pixels ``B x 2`` -> ``(low-res logits B x M x h x w, iou B x M)``."""
        coords = self.predictor._transforms.transform_coords(points, normalize=True, orig_hw=crop_hw)
        labels = torch.ones(coords.shape[0], dtype=torch.int, device=coords.device)
        multimask = self.config.multimask_output if mask_input is None else False
        return self.predictor.predict_low_res(coords[:, None, :], labels[:, None], mask_input=mask_input,
                                              multimask_output=multimask)

    def _process_batch(self, points: np.ndarray, crop_hw: tuple[int, int], crop_box: list[int],
                       orig_hw: tuple[int, int]) -> tuple[MaskRecords, int]:
        """The masks of one batch of points that pass the per-mask filters, and the channel
        count of the decoder call that made them."""
        cfg = self.config
        pts = torch.as_tensor(points, dtype=torch.float32, device=self.predictor.device)
        iou_first = (cfg.pred_iou_thresh > 0.0 and cfg.multimask_output and not cfg.use_m2m
                     and hasattr(self.predictor, "predict_low_res_selected"))
        if iou_first:
            # the IoU filter needs no mask: make masks only for points with a candidate that passes it
            coords = self.predictor._transforms.transform_coords(pts, normalize=True, orig_hw=crop_hw)
            labels = torch.ones(coords.shape[0], 1, dtype=torch.int, device=coords.device)
            low, iou_all, rows = self.predictor.predict_low_res_selected(
                coords[:, None, :], labels, lambda iou: (iou > cfg.pred_iou_thresh).any(dim=1))
            channels = iou_all.shape[1]
            self.last_stats.add_iou(iou_all, int((iou_all > cfg.pred_iou_thresh).sum()))
            keep = (iou_all[rows] > cfg.pred_iou_thresh).flatten()
            low, iou = low.flatten(0, 1)[keep], iou_all[rows].flatten()[keep]
            pts = pts[rows].repeat_interleave(channels, dim=0)[keep]
        else:
            low, iou = self._decode(pts, crop_hw)
            channels = low.shape[1]  # masks per point
            low, iou = low.flatten(0, 1), iou.flatten(0, 1)  # K x h x w, K
            pts = pts.repeat_interleave(channels, dim=0)  # K x 2
            if cfg.use_m2m:
                low, iou = self._refine(pts, low, crop_hw)
                channels = 1
            passed = iou > cfg.pred_iou_thresh if cfg.pred_iou_thresh > 0.0 else torch.ones_like(iou, dtype=torch.bool)
            self.last_stats.add_iou(iou, int(passed.sum()))
            if cfg.pred_iou_thresh > 0.0:
                low, iou, pts = low[passed], iou[passed], pts[passed]
        if cfg.min_mask_region_area > 0:
            area = cfg.min_mask_region_area
            low = fill_holes_and_sprinkles(low, area, area, threshold=self.predictor.mask_threshold)
        stability, boxes, keep = self._stability_and_boxes(low, crop_hw, channels)
        low, iou, pts = low[keep], iou[keep], pts[keep]
        # drop masks that touch a crop edge which is not an image edge
        keep = ~is_box_near_crop_edge(boxes, crop_box, [0, 0, orig_hw[1], orig_hw[0]])
        records = MaskRecords(low_res_logits=low[keep], iou_preds=iou[keep], points=pts[keep],
                              stability_score=stability[keep], boxes=boxes[keep],
                              crop_boxes=torch.zeros(int(keep.sum()), 4, dtype=torch.int64, device=low.device))
        return records, channels

    def _refine(self, pts: torch.Tensor, low: torch.Tensor,
                crop_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """One more decoder pass per mask with its own (clamped) logits as the mask prompt."""
        prompts = low.clamp(-FEEDBACK_CLAMP, FEEDBACK_CLAMP)[:, None]
        step = self.config.points_per_batch
        refined = [self._decode(pts[i:i + step], crop_hw, mask_input=prompts[i:i + step])
                   for i in range(0, pts.shape[0], step)]
        return (torch.cat([r[0][:, 0] for r in refined]), torch.cat([r[1][:, 0] for r in refined]))

    def _plan(self, in_hw: tuple[int, int], out_hw: tuple[int, int], channels: int,
              device: torch.device) -> UpsamplePlan:
        # the kernel's rounding may change with the thread count, so that is part of the key
        key = (tuple(in_hw), tuple(out_hw), channels, torch.get_num_threads(), str(device))
        if key not in self._plans:
            self._plans[key] = UpsamplePlan.build(in_hw, out_hw, device, channels=channels)
        return self._plans[key]

    def _stability_and_boxes(self, low: torch.Tensor, crop_hw: tuple[int, int], channels: int,
                             chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Full-size stability scores and boxes of the candidates that pass the stability filter.

        ``low`` ``K x h x w`` -> ``(stability P, boxes P x 4 int64 crop frame, keep K bool)`` for
        the ``P`` kept candidates, exactly as thresholding the upsampled logits would give.
        """
        cfg = self.config
        inner_t = cfg.mask_threshold + cfg.stability_score_offset
        outer_t = cfg.mask_threshold - cfg.stability_score_offset
        plan = self._plan(tuple(low.shape[-2:]), crop_hw, channels, low.device)
        keep = torch.zeros(low.shape[0], dtype=torch.bool, device=low.device)
        scores, boxes = [], []
        for start in range(0, low.shape[0], chunk):
            lazy = LazyUpsample(low[start:start + chunk], plan)
            alive = torch.ones(len(lazy), dtype=torch.bool, device=low.device)
            bound = torch.zeros(0, device=low.device)  # upper bounds of the rejected candidates' scores
            if cfg.stability_score_thresh > 0.0:
                # reject what cannot reach the threshold: most inner pixels over fewest outer ones
                _, inner_most = lazy.count_bounds(inner_t)
                outer_least, _ = lazy.count_bounds(outer_t)
                best = stability_from_counts(inner_most, outer_least)
                alive = (outer_least == 0) | (best >= cfg.stability_score_thresh)
                bound = best[~alive]
                lazy = lazy.select(alive)
            counts, box = lazy.counts_and_boxes([inner_t, outer_t], cfg.mask_threshold)
            score = stability_from_counts(counts[:, 0], counts[:, 1])
            passed = score >= cfg.stability_score_thresh if cfg.stability_score_thresh > 0.0 else \
                torch.ones_like(score, dtype=torch.bool)
            idx = alive.nonzero().flatten()[passed] + start
            keep[idx] = True
            self.last_stats.add_stability(torch.cat([bound, score]), int(passed.sum()))
            scores.append(score[passed])
            boxes.append(box[passed])
        if not scores:
            return (torch.zeros(0, device=low.device), torch.zeros(0, 4, dtype=torch.int64, device=low.device),
                    keep)
        return torch.cat(scores), torch.cat(boxes), keep

    # ------------------------------------------------------------------ output
    def _full_masks(self, records: MaskRecords, rows: torch.Tensor, orig_hw: tuple[int, int],
                    channels: int) -> torch.Tensor:
        """Full-image boolean masks of the given rows (all from one crop): ``n x H x W``."""
        x0, y0, x1, y1 = records.crop_boxes[rows[0]].tolist()
        crop = upsample_masks(records.low_res_logits[rows], (y1 - y0, x1 - x0), self.config.mask_threshold,
                              channels)
        if (x0, y0, x1, y1) == (0, 0, orig_hw[1], orig_hw[0]):
            return crop
        full = torch.zeros(len(rows), *orig_hw, dtype=torch.bool, device=crop.device)
        full[:, y0:y1, x0:x1] = crop
        return full

    def _to_annotations(self, records: MaskRecords, orig_hw: tuple[int, int], channels: int,
                        chunk_pixels: int = 1 << 25) -> list[dict[str, Any]]:
        n = len(records)
        if n == 0:
            return []
        mode = self.config.output_mode
        segmentations: list[Any] = [None] * n
        areas: list[int] = [0] * n
        per_chunk = max(1, chunk_pixels // (orig_hw[0] * orig_hw[1]))
        crops, which = torch.unique(records.crop_boxes, dim=0, return_inverse=True)
        for c in range(crops.shape[0]):
            members = (which == c).nonzero().flatten()
            for rows in members.split(per_chunk):
                masks = self._full_masks(records, rows, orig_hw, channels)
                # one 1-D reduction per mask: a row-wise sum of a bool matrix first casts all of it
                counts = [int(row.sum(dtype=torch.int64)) for row in masks.flatten(1)]
                for r, seg, area in zip(rows.tolist(), encode_segmentations(masks, mode), counts):
                    segmentations[r] = seg
                    areas[r] = int(area)
        bboxes = box_xyxy_to_xywh(records.boxes.float()).tolist()
        crop_boxes = box_xyxy_to_xywh(records.crop_boxes.float()).tolist()
        ious = records.iou_preds.float().tolist()
        points = records.points.float().tolist()
        stability = records.stability_score.float().tolist()
        return [{"segmentation": segmentations[i], "area": areas[i], "bbox": bboxes[i],
                 "predicted_iou": ious[i], "point_coords": [points[i]], "stability_score": stability[i],
                 "crop_box": crop_boxes[i]} for i in range(n)]
