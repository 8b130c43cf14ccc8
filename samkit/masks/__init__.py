"""Binary-mask building blocks shared by every feature: boxes and NMS, run-length encoding,
connected components, IoU.

Masks are ``N x H x W`` tensors (bool, or logits thresholded by the caller), boxes ``N x 4``
XYXY, RLEs COCO's uncompressed layout (``{"size": [h, w], "counts": [...]}``).
:mod:`samkit.masks.rle` and :mod:`samkit.masks.numpy_ops` (boxes, NMS and hole filling on numpy
arrays) need no torch; the names below load on first use, so importing them imports no torch.
"""

from samkit.lazy import lazy_getattr

# public name -> the module that defines it
_EXPORTS = {
    **dict.fromkeys(["batched_nms", "box_area", "box_xyxy_to_xywh", "masks_to_boxes", "nms"], "samkit.masks.boxes"),
    **dict.fromkeys(["connected_component_areas", "connected_components", "fill_holes_and_sprinkles",
                     "remove_small_regions"], "samkit.masks.components"),
    "mask_iou": "samkit.masks.iou",
    **dict.fromkeys(["coco_to_rle", "mask_to_rle", "require_pycocotools", "rle_area", "rle_to_coco", "rle_to_mask"],
                    "samkit.masks.rle"),
}

__all__ = list(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())
