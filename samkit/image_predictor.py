"""``ImagePredictor``: prompt-based segmentation of single images.

A drop-in for the official ``SAM2ImagePredictor``: the same methods, arguments and return
shapes (masks as float32 0/1 arrays unless ``return_logits``), with input checks that say
what was wrong. It wraps a :class:`~samkit.model.sam2.SAM2Model`; it is not one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from samkit.builder import load_model
from samkit.errors import PromptError, StateError
from samkit.imageio import preprocess, to_rgb_uint8
from samkit.masks.components import fill_holes_and_sprinkles
from samkit.model.sam2 import SAM2Model
from samkit.prompts import FEEDBACK_CLAMP

VALID_LABELS = (-1, 0, 1, 2, 3)


@dataclass
class CoordTransforms:
    """Maps prompts and masks between the user's image and the square model input."""

    resolution: int
    mask_threshold: float = 0.0
    max_hole_area: float = 0.0
    max_sprinkle_area: float = 0.0

    def transform_coords(self, coords: torch.Tensor, normalize: bool = False,
                         orig_hw: tuple[int, int] | None = None) -> torch.Tensor:
        """``... x 2`` (x, y) -> model-input pixels. With ``normalize`` the coordinates are
        pixels of an image of size ``orig_hw``; otherwise they are already in ``[0, 1]``."""
        if normalize:
            if orig_hw is None:
                raise ValueError("orig_hw is needed to normalize coordinates")
            h, w = orig_hw
            coords = coords / coords.new_tensor([float(w), float(h)])
        return coords * self.resolution

    def transform_boxes(self, boxes: torch.Tensor, normalize: bool = False,
                        orig_hw: tuple[int, int] | None = None) -> torch.Tensor:
        """``B x 4`` XYXY -> ``B x 2 x 2`` corners in model-input pixels."""
        return self.transform_coords(boxes.reshape(-1, 2, 2), normalize, orig_hw)

    def postprocess_masks(self, masks: torch.Tensor, orig_hw: tuple[int, int]) -> torch.Tensor:
        """``B x C x h x w`` logits -> ``B x C x H x W`` logits at the image size, optionally
        filling small holes / removing small specks (connected components, on the CPU)."""
        masks = masks.float()
        if self.max_hole_area > 0 or self.max_sprinkle_area > 0:
            masks = fill_holes_and_sprinkles(masks, self.max_hole_area, self.max_sprinkle_area, self.mask_threshold)
        return F.interpolate(masks, tuple(orig_hw), mode="bilinear", align_corners=False)


def _as_float_tensor(x: Any, what: str, device: torch.device) -> torch.Tensor:
    try:
        t = torch.as_tensor(np.asarray(x, dtype=np.float32), device=device)
    except (TypeError, ValueError) as exc:
        raise PromptError(f"{what} must be numeric, got {type(x).__name__} ({exc})") from None
    if not torch.isfinite(t).all():
        raise PromptError(f"{what} contains NaN or infinite values")
    return t


def check_box_order(boxes: np.ndarray | torch.Tensor, what: str = "box") -> None:
    """Raise :class:`PromptError` for a box ``... x 4`` whose corners are in the wrong order.

    Boxes are ``x0, y0, x1, y1`` (top-left corner, then bottom-right) with ``x0 <= x1`` and
    ``y0 <= y1``; a box of zero width or height is accepted.
    """
    b = torch.as_tensor(boxes).detach().reshape(-1, 4)
    bad = (b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        x0, y0, x1, y1 = (float(v) for v in b[i].tolist())
        which = f" {i}" if b.shape[0] > 1 else ""
        wrong = f"x1 ({x1:g}) < x0 ({x0:g})" if x1 < x0 else f"y1 ({y1:g}) < y0 ({y0:g})"
        raise PromptError(f"{what}{which} [{x0:g}, {y0:g}, {x1:g}, {y1:g}] has {wrong}: boxes are x0,y0,x1,y1 "
                          "(top-left corner, then bottom-right) with x0 <= x1 and y0 <= y1")


def check_prompt_extent(coords: np.ndarray | torch.Tensor, orig_hw: tuple[int, int], normalized: bool = True,
                        what: str = "point_coords") -> None:
    """Raise :class:`PromptError` for coordinates ``... x 2`` (x, y) more than one image size
    outside the image: ``x`` outside ``[-W, 2W]`` or ``y`` outside ``[-H, 2H]`` in pixels (with
    ``normalized=False``, fractions of the size: outside ``[-1, 2]``).

    Such a point is almost surely in another frame (pixels of another image, or pixels passed
    as fractions). Points and boxes outside the image within that margin are encoded as given,
    without clamping, as the official predictor does.
    """
    c = torch.as_tensor(coords).detach().reshape(-1, 2).double()
    h, w = (float(v) for v in orig_hw)
    size = c.new_tensor([w, h]) if normalized else c.new_tensor([1.0, 1.0])
    bad = ((c < -size) | (c > 2 * size)).any(dim=1)
    if not bool(bad.any()):
        return
    x, y = c[int(bad.nonzero()[0, 0])].tolist()
    if normalized:
        frame = (f"pixels of the {int(h)} x {int(w)} image (H x W), x across and y down; accepted: x in "
                 f"[{-w:g}, {2 * w:g}], y in [{-h:g}, {2 * h:g}] (at most one image size outside the image)")
    else:
        frame = ("fractions of the image's width and height with normalize_coords=False; accepted: [-1, 2] "
                 "(pixels? then leave normalize_coords=True)")
    raise PromptError(f"{what} has a point (x={x:g}, y={y:g}) far outside the image: coordinates are {frame}")


class ImagePredictor:
    """Predict masks for prompts on an image, from a model's image embedding.

    ``ImagePredictor(model)``; ``set_image(img)``; ``masks, scores, logits = predict(...)``.
    """

    def __init__(self, sam_model: SAM2Model, mask_threshold: float = 0.0, max_hole_area: float = 0.0,
                 max_sprinkle_area: float = 0.0, **kwargs: Any) -> None:
        self.model = sam_model
        self.mask_threshold = mask_threshold
        self._transforms = CoordTransforms(sam_model.image_size, mask_threshold, max_hole_area, max_sprinkle_area)
        e = sam_model.cfg.embedding_size
        self._bb_feat_sizes = [(4 * e, 4 * e), (2 * e, 2 * e), (e, e)]
        self.reset_predictor()

    @classmethod
    def from_pretrained(cls, name_or_checkpoint: str, device: str = "cpu", **kwargs: Any) -> "ImagePredictor":
        """A predictor around :func:`~samkit.builder.load_model` with trained weights: a file
        ending in ``.pt``, ``.pth`` or ``.safetensors`` is a checkpoint; a name is a model with
        trained weights: ``samkit_nano`` (shipped) or an official variant or Hugging Face id
        (``"sam2.1_hiera_tiny"``, ``"facebook/sam2.1-hiera-tiny"``), whose checkpoint is
        downloaded once and cached (:func:`samkit.weights.download_checkpoint`)."""
        if Path(name_or_checkpoint).suffix in (".pt", ".pth", ".safetensors"):
            model, _ = load_model(checkpoint=name_or_checkpoint, device=device)
        else:
            model, _ = load_model(name_or_checkpoint, device=device, pretrained=True)
        return cls(model, **kwargs)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def reset_predictor(self) -> None:
        """Forget the current image(s)."""
        self._is_image_set = False
        self._features: dict[str, Any] | None = None
        self._orig_hw: list[tuple[int, int]] | None = None
        self._is_batch = False

    # ------------------------------------------------------------------ images
    @torch.inference_mode()
    def set_image(self, image: np.ndarray | Any) -> None:
        """Compute the embedding of one image (``H x W x 3`` uint8 RGB array or PIL image;
        grayscale, RGBA, 16-bit and [0, 1] float arrays are converted)."""
        self.reset_predictor()
        rgb = to_rgb_uint8(image)
        self._orig_hw = [tuple(rgb.shape[:2])]
        self._embed(preprocess(rgb, self.model.image_size, self.device))

    @torch.inference_mode()
    def set_image_batch(self, image_list: Sequence[np.ndarray]) -> None:
        """Compute the embeddings of several images, for :meth:`predict_batch`."""
        if not isinstance(image_list, (list, tuple)) or not image_list:
            raise PromptError("set_image_batch expects a non-empty list of images")
        self.reset_predictor()
        rgbs = [to_rgb_uint8(im) for im in image_list]
        self._orig_hw = [tuple(r.shape[:2]) for r in rgbs]
        batch = torch.cat([preprocess(r, self.model.image_size, self.device) for r in rgbs])
        self._embed(batch)
        self._is_batch = True

    def _embed(self, batch: torch.Tensor) -> None:
        bb = self.model.forward_image(batch.to(self.model.dtype))
        embed, high_res = self.model.image_embeddings(bb)
        self._features = {"image_embed": embed, "high_res_feats": high_res or []}
        self._is_image_set = True

    def get_image_embedding(self) -> torch.Tensor:
        """The current image embedding, ``1 x C x h x w`` (``B x ...`` after set_image_batch)."""
        self._require_image("get_image_embedding")
        return self._features["image_embed"]

    def _require_image(self, what: str) -> None:
        if not self._is_image_set:
            raise StateError(f"{what} needs an image: call set_image(image) (or set_image_batch) first")

    # ------------------------------------------------------------------ prompts
    def _prep_prompts(self, point_coords: Any, point_labels: Any, box: Any, mask_logits: Any,
                      normalize_coords: bool, img_idx: int = -1):
        """Validate and move prompts to the model input frame:
        ``(mask_input B x 1 x 4h x 4w, coords B x N x 2, labels B x N, boxes B x 2 x 2)``."""
        dev = self.device
        coords = labels = boxes = mask_input = None
        orig_hw = self._orig_hw[img_idx]
        if point_coords is None and point_labels is None and box is None and mask_logits is None:
            where = f"predict_batch: image {img_idx}" if img_idx >= 0 else "predict"
            raise PromptError(f"{where} has no prompt: give point_coords with point_labels, a box (x0, y0, x1, "
                              "y1), or a mask_input (the low-res logits of an earlier predict)")
        if point_coords is not None or point_labels is not None:
            if point_coords is None or point_labels is None:
                raise PromptError("point_coords and point_labels must be given together")
            pc = _as_float_tensor(point_coords, "point_coords", dev)
            try:
                lab_np = np.asarray(point_labels)
            except (TypeError, ValueError):
                lab_np = np.asarray(None)
            if lab_np.dtype.kind not in "biuf":
                raise PromptError(f"point_labels must be an array of integers, got {type(point_labels).__name__}")
            if lab_np.dtype.kind == "f" and not np.isfinite(lab_np).all():
                raise PromptError("point_labels contains NaN or infinite values")
            as_int = lab_np.astype(np.int64)
            if lab_np.dtype.kind == "f" and not np.array_equal(lab_np, as_int):
                raise PromptError(f"point_labels must be integers (1 foreground, 0 background, -1 padding, 2/3 box "
                                  f"corners), got {sorted(set(lab_np[lab_np != as_int].tolist()))}")
            pl = torch.as_tensor(as_int, device=dev)
            if pc.ndim == 2:
                pc, pl = pc[None], pl[None] if pl.ndim == 1 else pl
            if pc.ndim != 3 or pc.shape[-1] != 2:
                raise PromptError(f"point_coords must have shape N x 2 or B x N x 2 (x, y), got {tuple(pc.shape)}")
            if tuple(pl.shape) != tuple(pc.shape[:2]):
                raise PromptError(f"point_labels shape {tuple(pl.shape)} does not match point_coords "
                                  f"{tuple(pc.shape)}: one label per point is needed")
            check_prompt_extent(pc, orig_hw, normalize_coords, "point_coords")
            bad = ~torch.isin(pl, torch.tensor(VALID_LABELS, device=dev))
            if bad.any():
                raise PromptError(f"point_labels must be in {{-1, 0, 1, 2, 3}} (1 foreground, 0 background, "
                                  f"-1 padding, 2/3 box corners), got {sorted(set(pl[bad].tolist()))}")
            coords = self._transforms.transform_coords(pc, normalize=normalize_coords, orig_hw=orig_hw)
            labels = pl.int()
        if box is not None:
            bx = _as_float_tensor(box, "box", dev)
            if bx.shape[-1:] != (4,) or bx.ndim > 2:
                raise PromptError(f"box must have shape 4 or B x 4 (x0, y0, x1, y1), got {tuple(bx.shape)}")
            check_box_order(bx, "box")
            check_prompt_extent(bx, orig_hw, normalize_coords, "box")
            boxes = self._transforms.transform_boxes(bx.reshape(-1, 4), normalize=normalize_coords, orig_hw=orig_hw)
        if mask_logits is not None:
            mi = _as_float_tensor(mask_logits, "mask_input", dev)
            if mi.ndim == 3:
                mi = mi[None]
            size = tuple(self.model.sam_prompt_encoder.mask_input_size)
            if mi.ndim != 4 or mi.shape[1] != 1 or tuple(mi.shape[-2:]) != size:
                raise PromptError(f"mask_input must have shape 1 x {size[0]} x {size[1]} or B x 1 x {size[0]} x "
                                  f"{size[1]} (low-res logits from a previous predict), got {tuple(mi.shape)}")
            mask_input = mi
        sizes = {t.shape[0] for t in (coords, boxes, mask_input) if t is not None}
        if len(sizes - {1}) > 1:
            raise PromptError(f"prompt batch sizes disagree: points {None if coords is None else coords.shape[0]}, "
                              f"boxes {None if boxes is None else boxes.shape[0]}, "
                              f"masks {None if mask_input is None else mask_input.shape[0]}")
        return mask_input, coords, labels, boxes

    # ------------------------------------------------------------------ prediction
    def predict(self, point_coords: Any = None, point_labels: Any = None, box: Any = None,
                mask_input: Any = None, multimask_output: bool = True, return_logits: bool = False,
                normalize_coords: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for the prompts on the current image.

        ``point_coords`` ``N x 2`` (or ``B x N x 2`` for B prompts at once) in pixels;
        ``point_labels`` ``N`` (``B x N``); ``box`` ``4`` or ``B x 4`` XYXY; ``mask_input``
        ``1 x 256 x 256`` low-res logits. Returns ``(masks C x H x W, scores C,
        low-res logits C x 256 x 256)``, with a leading ``B`` when several prompts are given;
        C = 3 with ``multimask_output`` else 1.
        """
        self._require_image("predict")
        if self._is_batch and len(self._orig_hw) > 1:
            raise StateError("several images are set: use predict_batch, or set_image for one image")
        prompts = self._prep_prompts(point_coords, point_labels, box, mask_input, normalize_coords)
        masks, ious, low = self._predict(prompts[1], prompts[2], prompts[3], prompts[0], multimask_output,
                                         return_logits=return_logits)
        return (masks.squeeze(0).float().cpu().numpy(), ious.squeeze(0).float().cpu().numpy(),
                low.squeeze(0).float().cpu().numpy())

    def predict_batch(self, point_coords_batch: Sequence[Any] | None = None,
                      point_labels_batch: Sequence[Any] | None = None, box_batch: Sequence[Any] | None = None,
                      mask_input_batch: Sequence[Any] | None = None, multimask_output: bool = True,
                      return_logits: bool = False, normalize_coords: bool = True):
        """:meth:`predict` for each image set by :meth:`set_image_batch`; lists of results."""
        self._require_image("predict_batch")
        if not self._is_batch:
            raise StateError("predict_batch needs images set with set_image_batch(list_of_images)")
        n = len(self._orig_hw)
        for what, seq in (("point_coords_batch", point_coords_batch), ("point_labels_batch", point_labels_batch),
                          ("box_batch", box_batch), ("mask_input_batch", mask_input_batch)):
            if seq is not None and len(seq) != n:
                raise PromptError(f"{what} has {len(seq)} entries for {n} images")
        pick = lambda seq, i: None if seq is None else seq[i]
        out_m, out_i, out_l = [], [], []
        for i in range(n):
            mi, pc, pl, bx = self._prep_prompts(pick(point_coords_batch, i), pick(point_labels_batch, i),
                                                pick(box_batch, i), pick(mask_input_batch, i), normalize_coords, i)
            masks, ious, low = self._predict(pc, pl, bx, mi, multimask_output, return_logits=return_logits, img_idx=i)
            out_m.append(masks.squeeze(0).float().cpu().numpy())
            out_i.append(ious.squeeze(0).float().cpu().numpy())
            out_l.append(low.squeeze(0).float().cpu().numpy())
        return out_m, out_i, out_l

    @torch.inference_mode()
    def predict_low_res(self, point_coords: torch.Tensor | None, point_labels: torch.Tensor | None,
                        boxes: torch.Tensor | None = None, mask_input: torch.Tensor | None = None,
                        multimask_output: bool = True, img_idx: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder only, no upsampling: prompts already in the model input frame
        (``B x N x 2``, ``B x N``, ``B x 4`` or ``B x 2 x 2``, ``B x 1 x 4h x 4w``) ->
        ``(low-res logits B x C x 4h x 4w, predicted IoU B x C)``."""
        self._require_image("predict_low_res")
        points = (point_coords, point_labels) if point_coords is not None else None
        if boxes is not None:
            boxes = boxes.reshape(-1, 4)
        b = max(t.shape[0] for t in (point_coords, boxes, mask_input) if t is not None) if \
            any(t is not None for t in (point_coords, boxes, mask_input)) else 1
        embed = self._features["image_embed"][img_idx].unsqueeze(0)
        high = [f[img_idx].unsqueeze(0) for f in self._features["high_res_feats"]] or None
        out = self.model.decode(embed, high, points, boxes, mask_input, multimask_output, repeat_image=b > 1)
        return out.masks, out.iou

    @torch.inference_mode()
    def predict_low_res_selected(self, point_coords: torch.Tensor, point_labels: torch.Tensor,
                                 select: Callable[[torch.Tensor], torch.Tensor],
                                 img_idx: int = -1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`predict_low_res` with multimask output, making masks only where needed:
        ``select`` gets the predicted IoUs ``B x 3`` and returns a ``B`` boolean tensor of the
        prompts whose masks are wanted, deciding each prompt on its own row (it may be called on
        groups of prompts in turn). Returns ``(low-res logits B' x 3 x 4h x 4w of the
        selected prompts, iou B x 3 of all, rows B' their sorted indices)``. The logits are
        those :meth:`predict_low_res` gives; skipping the others saves most of the decoder's
        time when few prompts pass (the automatic mask generator's IoU filter)."""
        self._require_image("predict_low_res_selected")
        embed = self._features["image_embed"][img_idx].unsqueeze(0)
        high = [f[img_idx].unsqueeze(0) for f in self._features["high_res_feats"]] or None
        out = self.model.decode(embed, high, (point_coords, point_labels), None, None, True,
                                repeat_image=point_coords.shape[0] > 1, select=select)
        return out.masks, out.iou, out.rows

    def _predict(self, point_coords: torch.Tensor | None, point_labels: torch.Tensor | None,
                 boxes: torch.Tensor | None = None, mask_input: torch.Tensor | None = None,
                 multimask_output: bool = True, return_logits: bool = False, img_idx: int = -1):
        """Prompts in the model input frame -> ``(masks B x C x H x W, iou B x C,
        low-res logits B x C x 4h x 4w clamped to ±32)``."""
        low, iou = self.predict_low_res(point_coords, point_labels, boxes, mask_input, multimask_output, img_idx)
        with torch.inference_mode():
            masks = self._transforms.postprocess_masks(low, self._orig_hw[img_idx])
            low = low.clamp(-FEEDBACK_CLAMP, FEEDBACK_CLAMP)
            if not return_logits:
                masks = masks > self.mask_threshold
        return masks, iou, low
