"""``OnnxImagePredictor``: :class:`samkit.image_predictor.ImagePredictor` on exported graphs.

It has the same methods, arguments and return shapes, and runs with onnxruntime and numpy
only (no torch): the image goes through the image encoder graph, the prompts through the mask
decoder graph, and the resizing, normalisation, coordinate transforms, choice of the output
mask and upsampling are done here in numpy, as the torch predictor does them.

    from samkit.onnx import OnnxImagePredictor
    predictor = OnnxImagePredictor("tiny_onnx/")     # what `samkit export onnx --out tiny_onnx/` wrote
    predictor.set_image(image)
    masks, scores, logits = predictor.predict(point_coords=..., point_labels=...)
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from samkit.errors import ConfigError, PromptError, StateError
from samkit.imageio import to_rgb_uint8
from samkit.masks.numpy_ops import fill_holes_and_sprinkles, require_scipy_ndimage
from samkit.onnx.prompts import Prompts, prepare_prompts
from samkit.onnx.runtime import OnnxModel
from samkit.onnx.transforms import image_input, upsample_logits

__all__ = ["OnnxImagePredictor", "DecoderOutputs", "select_outputs", "stability_scores"]


def stability_scores(logits: np.ndarray, delta: float) -> np.ndarray:
    """IoU of the masks thresholded at ``+delta`` and ``-delta``: ``... x H x W`` -> ``...``
    (1 for an empty mask), as :func:`samkit.model.mask_decoder.stability_scores`."""
    flat = logits.reshape(*logits.shape[:-2], -1)
    inner = (flat > delta).sum(-1).astype(np.float32)
    outer = (flat > -delta).sum(-1).astype(np.float32)
    return np.where(outer > 0, inner / np.maximum(outer, 1), np.float32(1.0))


class DecoderOutputs:
    """The mask decoder graph's outputs for ``B`` prompts: ``masks`` ``B x 4 x 4h x 4w``
    (0: single-mask output, 1-3: multimask), ``iou`` ``B x 4``, ``object_score`` ``B x 1``,
    ``obj_ptr`` ``B x 4 x C``."""

    def __init__(self, masks: np.ndarray, iou: np.ndarray, object_score: np.ndarray, obj_ptr: np.ndarray) -> None:
        self.masks, self.iou, self.object_score, self.obj_ptr = masks, iou, object_score, obj_ptr


def select_outputs(out: DecoderOutputs, model_cfg: Any, multimask_output: bool) -> tuple[np.ndarray, np.ndarray]:
    """The masks the torch decoder returns: the three candidates, or the single-mask output, which
    falls back to the best candidate where it is unstable (``dynamic_multimask_via_stability``).
    Returns ``(masks B x M x 4h x 4w, iou B x M)``, M = 3 or 1."""
    if multimask_output:
        return out.masks[:, 1:], out.iou[:, 1:]
    if not model_cfg.dynamic_multimask_via_stability:
        return out.masks[:, :1], out.iou[:, :1]
    rows = np.arange(out.masks.shape[0])
    best = out.iou[:, 1:].argmax(axis=1) + 1
    stable = stability_scores(out.masks[:, 0], model_cfg.dynamic_multimask_stability_delta) >= \
        model_cfg.dynamic_multimask_stability_thresh
    pick = np.where(stable, 0, best)
    return out.masks[rows, pick][:, None], out.iou[rows, pick][:, None]


class OnnxImagePredictor:
    """Predict masks for prompts on an image, from an exported model.

    Args:
        model: an export folder (``samkit export onnx --out DIR``) or an :class:`OnnxModel`.
        mask_threshold: the logit above which a pixel is in a mask.
        max_hole_area, max_sprinkle_area: fill holes / remove specks of at most this area in the
            low-resolution logits, as :class:`~samkit.image_predictor.ImagePredictor` does (in
            numpy with scipy's connected components: scipy must be installed for it).
        num_threads, providers, quantized_decoder: see :class:`OnnxModel` (with a folder).
    """

    def __init__(self, model: str | os.PathLike | OnnxModel, mask_threshold: float = 0.0, max_hole_area: float = 0.0,
                 max_sprinkle_area: float = 0.0, *, num_threads: int | None = None,
                 providers: Sequence[str] | None = None, quantized_decoder: bool = False) -> None:
        if not isinstance(model, OnnxModel):
            model = OnnxModel(model, providers=providers, num_threads=num_threads, quantized_decoder=quantized_decoder)
        self.model = model
        self.mask_threshold = mask_threshold
        self.max_hole_area = max_hole_area
        self.max_sprinkle_area = max_sprinkle_area
        if max_hole_area > 0 or max_sprinkle_area > 0:
            require_scipy_ndimage("max_hole_area / max_sprinkle_area", "OnnxImagePredictor")  # fail now, not later
        self.feedback_clamp = float(model.config["feedback_clamp"])
        self.reset_predictor()

    @property
    def image_size(self) -> int:
        return self.model.image_size

    def reset_predictor(self) -> None:
        """Forget the current image(s)."""
        self._is_image_set = False
        self._features: list[dict[str, np.ndarray]] = []
        self._orig_hw: list[tuple[int, int]] = []
        self._is_batch = False

    # ------------------------------------------------------------------ images
    def set_image(self, image: Any) -> None:
        """Compute the embedding of one image (``H x W x 3`` uint8 RGB array or PIL image;
        grayscale, RGBA, 16-bit and [0, 1] float arrays are converted)."""
        self.reset_predictor()
        rgb = to_rgb_uint8(image)
        self._orig_hw = [tuple(rgb.shape[:2])]
        self._features = [self._embed(rgb)]
        self._is_image_set = True

    def set_image_batch(self, image_list: Sequence[Any]) -> None:
        """Compute the embeddings of several images, for :meth:`predict_batch`."""
        if not isinstance(image_list, (list, tuple)) or not image_list:
            raise PromptError("set_image_batch expects a non-empty list of images")
        self.reset_predictor()
        rgbs = [to_rgb_uint8(im) for im in image_list]
        self._orig_hw = [tuple(r.shape[:2]) for r in rgbs]
        self._features = [self._embed(r) for r in rgbs]
        self._is_image_set = True
        self._is_batch = True

    def _embed(self, rgb: np.ndarray) -> dict[str, np.ndarray]:
        embed, hr0, hr1, _ = self.model.run("image_encoder", {"image": image_input(rgb, self.image_size)})
        return {"image_embed": embed, "high_res_0": hr0, "high_res_1": hr1}

    def get_image_embedding(self) -> np.ndarray:
        """The current image embedding, ``1 x C x h x w`` (``B x ...`` after set_image_batch)."""
        self._require_image("get_image_embedding")
        return np.concatenate([f["image_embed"] for f in self._features])

    def _require_image(self, what: str) -> None:
        if not self._is_image_set:
            raise StateError(f"{what} needs an image: call set_image(image) (or set_image_batch) first")

    # ------------------------------------------------------------------ prediction
    def predict(self, point_coords: Any = None, point_labels: Any = None, box: Any = None, mask_input: Any = None,
                multimask_output: bool = True, return_logits: bool = False,
                normalize_coords: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for the prompts on the current image, as :meth:`ImagePredictor.predict`:
        ``(masks C x H x W, scores C, low-res logits C x 4h x 4w)`` float32, with a leading ``B``
        when several prompts are given; C = 3 with ``multimask_output`` else 1."""
        self._require_image("predict")
        if self._is_batch and len(self._orig_hw) > 1:
            raise StateError("several images are set: use predict_batch, or set_image for one image")
        prompts = self._prompts(point_coords, point_labels, box, mask_input, normalize_coords, 0, "predict")
        masks, ious, low = self._predict(prompts, multimask_output, return_logits, 0)
        return _squeeze0(masks), _squeeze0(ious), _squeeze0(low)

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
        pick = lambda seq, i: None if seq is None else seq[i]  # noqa: E731
        results: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
        for i in range(n):
            prompts = self._prompts(pick(point_coords_batch, i), pick(point_labels_batch, i), pick(box_batch, i),
                                    pick(mask_input_batch, i), normalize_coords, i, f"predict_batch: image {i}")
            for out, value in zip(results, self._predict(prompts, multimask_output, return_logits, i)):
                out.append(_squeeze0(value))
        return results

    def _prompts(self, point_coords: Any, point_labels: Any, box: Any, mask_input: Any, normalize_coords: bool,
                 img_idx: int, where: str) -> Prompts:
        return prepare_prompts(point_coords, point_labels, box, mask_input, orig_hw=self._orig_hw[img_idx],
                               resolution=self.image_size, mask_size=self.model.mask_input_size,
                               normalize_coords=normalize_coords, where=where)

    def decode(self, prompts: Prompts, img_idx: int = -1) -> DecoderOutputs:
        """Run the decoder graph on prompts in the model-input frame (boxes become the first two
        points, labelled 2 and 3, and a padding point follows the points); all four masks of
        every prompt."""
        self._require_image("decode")
        b = prompts.batch
        parts, labels = [], []
        if prompts.boxes is not None:
            parts.append(np.broadcast_to(prompts.boxes, (b, 2, 2)))
            labels.append(np.broadcast_to(np.array([[2, 3]], dtype=np.float32), (b, 2)))
        if prompts.coords is not None:
            n = prompts.coords.shape[1]
            parts.append(np.broadcast_to(prompts.coords, (b, n, 2)))
            labels.append(np.broadcast_to(prompts.labels.astype(np.float32), (b, n)))
        if parts:  # the padding point the torch prompt encoder appends (none for a mask prompt alone)
            parts.append(np.zeros((b, 1, 2), dtype=np.float32))
            labels.append(np.full((b, 1), -1.0, dtype=np.float32))
        else:
            parts, labels = [np.zeros((b, 0, 2), dtype=np.float32)], [np.zeros((b, 0), dtype=np.float32)]
        size = self.model.mask_input_size
        if prompts.mask_input is not None:
            mask = np.broadcast_to(prompts.mask_input, (b, 1, *size))
            has = np.ones(b, dtype=np.float32)
        else:
            mask = np.zeros((b, 1, *size), dtype=np.float32)
            has = np.zeros(b, dtype=np.float32)
        feats = self._features[img_idx]
        feeds = {"image_embed": feats["image_embed"], "high_res_0": feats["high_res_0"],
                 "high_res_1": feats["high_res_1"],
                 "point_coords": np.ascontiguousarray(np.concatenate(parts, 1), dtype=np.float32),
                 "point_labels": np.ascontiguousarray(np.concatenate(labels, 1), dtype=np.float32),
                 "mask_input": np.ascontiguousarray(mask, dtype=np.float32), "has_mask_input": has}
        return DecoderOutputs(*self.model.run("mask_decoder", feeds))

    def predict_low_res(self, point_coords: np.ndarray | None, point_labels: np.ndarray | None,
                        boxes: np.ndarray | None = None, mask_input: np.ndarray | None = None,
                        multimask_output: bool = True, img_idx: int = -1) -> tuple[np.ndarray, np.ndarray]:
        """Decoder only, no upsampling: prompts already in the model-input frame (``B x N x 2``,
        ``B x N``, ``B x 4`` or ``B x 2 x 2``, ``B x 1 x 4h x 4w``) -> ``(low-res logits B x C x 4h x
        4w, predicted IoU B x C)``, as :meth:`ImagePredictor.predict_low_res`."""
        if (point_coords is None) != (point_labels is None):
            raise PromptError("point_coords and point_labels must be given together")
        prompts = Prompts(
            coords=None if point_coords is None else np.asarray(point_coords, dtype=np.float32),
            labels=None if point_labels is None else np.asarray(point_labels, dtype=np.int64),
            boxes=None if boxes is None else np.asarray(boxes, dtype=np.float32).reshape(-1, 2, 2),
            mask_input=None if mask_input is None else np.asarray(mask_input, dtype=np.float32))
        return select_outputs(self.decode(prompts, img_idx), self.model.model_cfg, multimask_output)

    def _predict(self, prompts: Prompts, multimask_output: bool, return_logits: bool,
                 img_idx: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(masks B x C x H x W, iou B x C, low-res logits B x C x 4h x 4w clamped)``."""
        low, iou = select_outputs(self.decode(prompts, img_idx), self.model.model_cfg, multimask_output)
        filled = low
        if self.max_hole_area > 0 or self.max_sprinkle_area > 0:
            filled = _fill_holes_and_sprinkles(low, self.max_hole_area, self.max_sprinkle_area, self.mask_threshold)
        masks = upsample_logits(filled, self._orig_hw[img_idx])
        if not return_logits:
            masks = (masks > self.mask_threshold).astype(np.float32)
        return masks, iou, np.clip(low, -self.feedback_clamp, self.feedback_clamp)


def _squeeze0(x: np.ndarray) -> np.ndarray:
    return x[0] if x.shape[0] == 1 else x


def _fill_holes_and_sprinkles(low: np.ndarray, hole: float, sprinkle: float, threshold: float) -> np.ndarray:
    """:func:`samkit.masks.numpy_ops.fill_holes_and_sprinkles` on ``B x C x h x w`` logits (scipy)."""
    flat = low.reshape(-1, *low.shape[-2:])
    return fill_holes_and_sprinkles(flat, hole, sprinkle, threshold).reshape(low.shape)
