"""``OnnxAutoMaskGenerator``: segment everything with numpy and ONNX Runtime, no torch.

The same constructor arguments, defaults, checks, records and rules as
:class:`samkit.automask.generator.AutoMaskGenerator` (the settings are one class,
:class:`~samkit.automask.config.AutoMaskSettings`), working through an
:class:`~samkit.onnx.predictor.OnnxImagePredictor`: the image encoder and the mask decoder are
the exported graphs, and the filtering, NMS and run-length encoding are numpy.

    from samkit.onnx import OnnxAutoMaskGenerator
    masks = OnnxAutoMaskGenerator("nano_onnx/", points_per_side=32).generate(image)

Per crop (the whole image, then ``crop_n_layers`` layers of overlapping crops), per batch of
grid points: decode every point (3 candidates each, or 1), optionally refine each candidate once
with its own logits as a mask prompt (``use_m2m``), keep those whose predicted IoU is above
``pred_iou_thresh``, optionally fill small holes and remove small specks in their low-resolution
logits (``min_mask_region_area``, scipy), upsample the survivors to the crop
(:func:`~samkit.onnx.transforms.upsample_logits`, a chunk at a time) for the stability score and
the box, drop the unstable ones and those touching a crop edge inside the image; then box NMS
within the crop, and between crops preferring the smaller crop. Only the records that survive
are upsampled again for their masks. The torch generator takes the same decisions on the
low-resolution logits where that is exact; here every full-size value is computed, which gives
the same records (up to float rounding of the upsampled logits at mask boundaries: within 1e-6
of torch's, so a pixel sitting on a threshold may fall the other way).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any, Sequence

import numpy as np

from samkit.automask.config import AutoMaskSettings
from samkit.automask.grid import (check_crop_boxes, generate_crop_boxes, is_box_near_crop_edge, uncrop_boxes_xyxy,
                                  uncrop_points)
from samkit.masks.numpy_ops import fill_holes_and_sprinkles, masks_to_boxes, nms, require_scipy_ndimage
from samkit.masks.rle import encode_segmentations
from samkit.onnx.predictor import OnnxImagePredictor
from samkit.onnx.runtime import OnnxModel
from samkit.onnx.transforms import upsample_logits

__all__ = ["OnnxAutoMaskGenerator", "CandidateArrays"]

# full-size pixels upsampled at once (float32: 64 MiB a map), e.g. 7 masks of 1800 x 1200
CHUNK_PIXELS = 1 << 24


@dataclass
class CandidateArrays:
    """Row-aligned numpy data of ``N`` candidate masks (the generator's working set); full masks
    are rebuilt from ``low_res_logits`` only for the records that survive every filter."""

    low_res_logits: np.ndarray  # N x h x w float32 mask logits in the crop's model frame
    iou_preds: np.ndarray  # N float32, the decoder's predicted IoU
    points: np.ndarray  # N x 2 float32 (x, y) prompt point, crop pixels, then image pixels
    stability_score: np.ndarray  # N float32
    boxes: np.ndarray  # N x 4 int64 XYXY (inclusive) box of the full mask, crop frame, then image frame
    crop_boxes: np.ndarray  # N x 4 int64 XYXY crop the mask was predicted in

    def __len__(self) -> int:
        return int(self.iou_preds.shape[0])

    def select(self, keep: np.ndarray) -> "CandidateArrays":
        """The rows picked by a boolean mask or an index array (in that order)."""
        return replace(self, **{f.name: getattr(self, f.name)[keep] for f in fields(self)})

    @classmethod
    def cat(cls, parts: Sequence["CandidateArrays"]) -> "CandidateArrays":
        """All rows of ``parts`` (not empty), in order."""
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})


def _is_predictor(obj: Any) -> bool:
    """Whether ``obj`` is a predictor to work through (an :class:`OnnxImagePredictor`, or an
    object with its numpy ``set_image`` / ``predict_low_res`` / ``reset_predictor``)."""
    return all(hasattr(obj, name) for name in ("set_image", "predict_low_res", "reset_predictor", "image_size"))


class OnnxAutoMaskGenerator(AutoMaskSettings):
    """Every mask in an image from a grid of point prompts, on an ONNX export.

    ``model`` is an export folder (``samkit export onnx --out DIR``), an :class:`OnnxModel` or an
    :class:`OnnxImagePredictor` (e.g. ``OnnxImagePredictor(folder, num_threads=1)``); every other
    argument is :class:`~samkit.automask.generator.AutoMaskGenerator`'s, with its defaults
    (thresholds left out are the exported model's, from its config). ``generate(image)`` returns
    the same records. Needs numpy and onnxruntime; ``coco_rle`` output needs pycocotools and
    ``min_mask_region_area > 0`` needs scipy.
    """

    def _attach(self, model: str | os.PathLike | OnnxModel | OnnxImagePredictor) -> None:
        self.predictor = model if _is_predictor(model) else OnnxImagePredictor(model)

    def _model_config(self) -> Any:
        return getattr(getattr(self.predictor, "model", None), "model_cfg", None)

    @classmethod
    def from_pretrained(cls, name_or_checkpoint: str | os.PathLike, **kwargs: Any) -> "OnnxAutoMaskGenerator":
        """The generator of an export folder (the official ``from_pretrained`` name)."""
        return cls(name_or_checkpoint, **kwargs)

    # ------------------------------------------------------------------ stages
    def _generate(self, rgb: np.ndarray) -> list[dict[str, Any]]:
        cfg = self.config
        if cfg.min_mask_region_area > 0:
            require_scipy_ndimage()  # before any work
        orig_hw = rgb.shape[:2]
        crop_boxes, layers = generate_crop_boxes(orig_hw, cfg.crop_n_layers, cfg.crop_overlap_ratio)
        check_crop_boxes(orig_hw, crop_boxes, layers)  # an image too small for its crops, before any work
        grids = cfg.grids()
        parts = [self._process_crop(rgb, box, grids[layer], orig_hw) for box, layer in zip(crop_boxes, layers)]
        parts = [p for p in parts if p is not None]
        if not parts:
            return []
        records = CandidateArrays.cat(parts)
        if len(crop_boxes) > 1:
            # duplicates between crops: prefer the mask from the smaller crop
            crops = records.crop_boxes.astype(np.float32)
            smaller = np.float32(1.0) / ((crops[:, 2] - crops[:, 0]) * (crops[:, 3] - crops[:, 1]))
            records = records.select(nms(records.boxes.astype(np.float32), smaller, cfg.crop_nms_thresh))
        return self._annotations(records, orig_hw)

    def _process_crop(self, rgb: np.ndarray, crop_box: list[int], grid: np.ndarray,
                      orig_hw: tuple[int, int]) -> CandidateArrays | None:
        """The records of one crop after its NMS, in the image frame (None when there is none)."""
        cfg = self.config
        x0, y0, x1, y1 = crop_box
        crop = rgb[y0:y1, x0:x1]
        crop_hw = crop.shape[:2]
        self.predictor.set_image(crop)
        points = (grid * np.array([[crop_hw[1], crop_hw[0]]])).astype(np.float32)  # n x 2 pixels (x, y)
        parts = [self._process_batch(points[i:i + cfg.points_per_batch], crop_hw, crop_box, orig_hw)
                 for i in range(0, len(points), cfg.points_per_batch)]
        self.predictor.reset_predictor()
        parts = [p for p in parts if len(p)]
        if not parts:
            return None
        records = CandidateArrays.cat(parts)
        records = records.select(nms(records.boxes.astype(np.float32), records.iou_preds, cfg.box_nms_thresh))
        records.boxes = uncrop_boxes_xyxy(records.boxes, crop_box)
        records.points = uncrop_points(records.points, crop_box)
        records.crop_boxes = np.repeat(np.asarray([crop_box], dtype=np.int64), len(records), axis=0)
        return records

    def _decode(self, points: np.ndarray, crop_hw: tuple[int, int],
                mask_input: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Point prompts in crop pixels ``B x 2`` -> ``(low-res logits B x M x h x w, iou B x M)``."""
        h, w = crop_hw
        coords = points / np.array([w, h], dtype=np.float32) * np.float32(self.predictor.image_size)
        labels = np.ones((coords.shape[0], 1), dtype=np.int64)
        multimask = self.config.multimask_output if mask_input is None else False
        return self.predictor.predict_low_res(coords[:, None, :], labels, mask_input=mask_input,
                                              multimask_output=multimask)

    def _process_batch(self, points: np.ndarray, crop_hw: tuple[int, int], crop_box: list[int],
                       orig_hw: tuple[int, int]) -> CandidateArrays:
        """The masks of one batch of points that pass the per-mask filters (crop frame)."""
        cfg = self.config
        low, iou = self._decode(points, crop_hw)
        channels = low.shape[1]  # masks per point
        low, iou = low.reshape(-1, *low.shape[2:]), iou.reshape(-1)  # K x h x w, K
        pts = np.repeat(points, channels, axis=0)  # K x 2
        if cfg.use_m2m:
            low, iou = self._refine(pts, low, crop_hw)
        # the IoU filter needs no mask: only the candidates that pass it are upsampled
        passed = iou > cfg.pred_iou_thresh if cfg.pred_iou_thresh > 0.0 else np.ones(iou.shape, dtype=bool)
        self.last_stats.add_iou(iou, int(passed.sum()))
        low, iou, pts = low[passed], iou[passed], pts[passed]
        if cfg.min_mask_region_area > 0:
            area = cfg.min_mask_region_area
            low = fill_holes_and_sprinkles(low, area, area, threshold=self.predictor.mask_threshold)
        stability, boxes, keep = self._stability_and_boxes(low, crop_hw)
        low, iou, pts = low[keep], iou[keep], pts[keep]
        # drop masks that touch a crop edge which is not an image edge
        keep = ~is_box_near_crop_edge(boxes, crop_box, [0, 0, orig_hw[1], orig_hw[0]])
        return CandidateArrays(low_res_logits=low[keep], iou_preds=iou[keep], points=pts[keep],
                               stability_score=stability[keep], boxes=boxes[keep],
                               crop_boxes=np.zeros((int(keep.sum()), 4), dtype=np.int64))

    def _refine(self, pts: np.ndarray, low: np.ndarray, crop_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """One more decoder pass per mask with its own (clamped) logits as the mask prompt."""
        clamp = self.predictor.feedback_clamp
        prompts = np.clip(low, -clamp, clamp)[:, None]
        step = self.config.points_per_batch
        refined = [self._decode(pts[i:i + step], crop_hw, mask_input=prompts[i:i + step])
                   for i in range(0, pts.shape[0], step)]
        return np.concatenate([r[0][:, 0] for r in refined]), np.concatenate([r[1][:, 0] for r in refined])

    def _stability_and_boxes(self, low: np.ndarray,
                             crop_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Full-size stability scores and boxes of the candidates that pass the stability filter.

        ``low`` ``K x h x w`` -> ``(stability P float32, boxes P x 4 int64 crop frame, keep K bool)``
        for the ``P`` kept candidates, upsampling a chunk of candidates at a time.
        """
        cfg = self.config
        inner_t = cfg.mask_threshold + cfg.stability_score_offset
        outer_t = cfg.mask_threshold - cfg.stability_score_offset
        keep = np.zeros(low.shape[0], dtype=bool)
        scores, boxes = [np.zeros(0, dtype=np.float32)], [np.zeros((0, 4), dtype=np.int64)]
        per_chunk = max(1, CHUNK_PIXELS // max(1, crop_hw[0] * crop_hw[1]))
        for start in range(0, low.shape[0], per_chunk):
            full = upsample_logits(low[start:start + per_chunk], crop_hw)  # k x H x W
            inner = np.count_nonzero(full > inner_t, axis=(1, 2))
            outer = np.count_nonzero(full > outer_t, axis=(1, 2))
            with np.errstate(divide="ignore", invalid="ignore"):  # 0 / 0: NaN, as the torch generator
                score = inner.astype(np.float32) / outer.astype(np.float32)
            passed = score >= cfg.stability_score_thresh if cfg.stability_score_thresh > 0.0 else \
                np.ones(score.shape, dtype=bool)
            self.last_stats.add_stability(score, int(passed.sum()))
            keep[start + np.flatnonzero(passed)] = True
            scores.append(score[passed])
            boxes.append(masks_to_boxes(full[passed] > cfg.mask_threshold))
        return np.concatenate(scores), np.concatenate(boxes), keep

    # ------------------------------------------------------------------ output
    def _annotations(self, records: CandidateArrays, orig_hw: tuple[int, int]) -> list[dict[str, Any]]:
        n = len(records)
        mode = self.config.output_mode
        segmentations: list[Any] = [None] * n
        areas: list[int] = [0] * n
        per_chunk = max(1, CHUNK_PIXELS // (orig_hw[0] * orig_hw[1]))
        crops, which = np.unique(records.crop_boxes, axis=0, return_inverse=True)
        which = which.reshape(-1)
        for c, (x0, y0, x1, y1) in enumerate(crops.tolist()):
            members = np.flatnonzero(which == c)
            for start in range(0, len(members), per_chunk):
                rows = members[start:start + per_chunk]
                crop = upsample_logits(records.low_res_logits[rows], (y1 - y0, x1 - x0)) > self.config.mask_threshold
                if (x0, y0, x1, y1) == (0, 0, orig_hw[1], orig_hw[0]):
                    masks = crop
                else:
                    masks = np.zeros((len(rows), *orig_hw), dtype=bool)
                    masks[:, y0:y1, x0:x1] = crop
                counts = np.count_nonzero(crop, axis=(1, 2)).tolist()
                for r, seg, area in zip(rows.tolist(), encode_segmentations(masks, mode), counts):
                    segmentations[r] = seg
                    areas[r] = int(area)
        boxes = records.boxes.astype(np.float32)
        crop_boxes = records.crop_boxes.astype(np.float32)
        bboxes = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).tolist()  # XYWH
        crop_xywh = np.concatenate([crop_boxes[:, :2], crop_boxes[:, 2:] - crop_boxes[:, :2]], axis=1).tolist()
        ious = records.iou_preds.astype(np.float32).tolist()
        points = records.points.astype(np.float32).tolist()
        stability = records.stability_score.astype(np.float32).tolist()
        return [{"segmentation": segmentations[i], "area": areas[i], "bbox": bboxes[i],
                 "predicted_iou": ious[i], "point_coords": [points[i]], "stability_score": stability[i],
                 "crop_box": crop_xywh[i]} for i in range(n)]
