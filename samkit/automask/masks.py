"""The names this module held before the mask library moved to :mod:`samkit.masks` and the
generator's parts to :mod:`samkit.automask.grid`, ``stability``, ``upsample`` and ``records``.

Kept so that ``from samkit.automask.masks import ...`` keeps working; new code imports from
the modules named above.
"""

from samkit.automask.grid import (build_all_layer_point_grids, build_point_grid, generate_crop_boxes,
                                  is_box_near_crop_edge, uncrop_boxes_xyxy, uncrop_masks, uncrop_points)
from samkit.automask.records import MaskRecords
from samkit.automask.stability import count_above, stability_from_counts, stability_score
from samkit.automask.upsample import ARITHMETICS, LazyUpsample, UpsamplePlan, upsample_logits, upsample_masks
from samkit.masks.boxes import batched_nms, box_area, box_xyxy_to_xywh, masks_to_boxes, nms
from samkit.masks.components import (connected_component_areas, connected_components, fill_holes_and_sprinkles,
                                     remove_small_regions)
from samkit.masks.rle import mask_to_rle, require_pycocotools, rle_area, rle_to_coco, rle_to_mask

__all__ = ["build_point_grid", "build_all_layer_point_grids", "generate_crop_boxes", "count_above", "stability_score",
           "stability_from_counts", "masks_to_boxes", "box_xyxy_to_xywh", "box_area", "nms", "batched_nms",
           "is_box_near_crop_edge", "uncrop_boxes_xyxy", "uncrop_points", "uncrop_masks", "mask_to_rle", "rle_to_mask",
           "rle_area", "rle_to_coco", "require_pycocotools", "connected_components", "connected_component_areas",
           "remove_small_regions", "fill_holes_and_sprinkles", "UpsamplePlan", "ARITHMETICS", "LazyUpsample",
           "upsample_logits", "upsample_masks", "MaskRecords"]
