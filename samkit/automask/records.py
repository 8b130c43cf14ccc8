"""The generator's working set: row-aligned data of candidate masks."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Sequence

import torch

__all__ = ["MaskRecords"]



@dataclass
class MaskRecords:
    """Row-aligned data of ``N`` candidate masks, the generator's working set.

    A full-resolution mask is never stored: ``low_res_logits`` keeps the decoder's logits,
    and full masks are rebuilt (upsampled to the crop, thresholded, placed in the image) only
    for the records that survive every filter.
    """

    low_res_logits: torch.Tensor  # N x h x w float32 mask logits in the crop's model frame
    iou_preds: torch.Tensor  # N float32, the decoder's predicted IoU
    points: torch.Tensor  # N x 2 float32 (x, y) prompt point, image pixels
    stability_score: torch.Tensor  # N float32
    boxes: torch.Tensor  # N x 4 int64 XYXY (inclusive) box of the full mask, image frame
    crop_boxes: torch.Tensor  # N x 4 int64 XYXY crop the mask was predicted in

    def __len__(self) -> int:
        return int(self.iou_preds.shape[0])

    def select(self, keep: torch.Tensor) -> "MaskRecords":
        """The rows picked by a boolean mask or an index tensor (in that order)."""
        return replace(self, **{f.name: getattr(self, f.name)[keep] for f in fields(self)})

    @classmethod
    def cat(cls, parts: Sequence["MaskRecords"]) -> "MaskRecords":
        """All rows of ``parts``, in order (``parts`` must not be empty)."""
        if not parts:
            raise ValueError("MaskRecords.cat needs at least one part")
        return cls(**{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(cls)})

    @classmethod
    def empty(cls, low_res_hw: tuple[int, int], device: torch.device | str = "cpu") -> "MaskRecords":
        """No rows, with the right trailing shapes and dtypes."""
        f32 = dict(dtype=torch.float32, device=device)
        i64 = dict(dtype=torch.int64, device=device)
        return cls(low_res_logits=torch.zeros(0, *low_res_hw, **f32), iou_preds=torch.zeros(0, **f32),
                   points=torch.zeros(0, 2, **f32), stability_score=torch.zeros(0, **f32),
                   boxes=torch.zeros(0, 4, **i64), crop_boxes=torch.zeros(0, 4, **i64))
