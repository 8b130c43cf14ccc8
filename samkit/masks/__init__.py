"""Binary-mask building blocks shared by every feature: boxes and NMS, run-length encoding,
connected components, IoU.

Masks are ``N x H x W`` tensors (bool, or logits thresholded by the caller), boxes ``N x 4``
XYXY, RLEs COCO's uncompressed layout (``{"size": [h, w], "counts": [...]}``).
"""

from samkit.masks.boxes import batched_nms, box_area, box_xyxy_to_xywh, masks_to_boxes, nms
from samkit.masks.components import (connected_component_areas, connected_components, fill_holes_and_sprinkles,
                                     remove_small_regions)
from samkit.masks.iou import mask_iou
from samkit.masks.rle import coco_to_rle, mask_to_rle, require_pycocotools, rle_area, rle_to_coco, rle_to_mask

__all__ = ["batched_nms", "box_area", "box_xyxy_to_xywh", "masks_to_boxes", "nms", "connected_component_areas",
           "coco_to_rle", "connected_components", "fill_holes_and_sprinkles", "remove_small_regions", "mask_iou", "mask_to_rle",
           "require_pycocotools", "rle_area", "rle_to_coco", "rle_to_mask"]
