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

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from samkit.automask.grid import (build_all_layer_point_grids, check_crop_boxes, generate_crop_boxes,
                                  is_box_near_crop_edge, uncrop_boxes_xyxy, uncrop_points)
from samkit.automask.records import MaskRecords
from samkit.automask.stability import stability_from_counts
from samkit.automask.upsample import LazyUpsample, UpsamplePlan, upsample_masks
from samkit.errors import ConfigError
from samkit.image_predictor import ImagePredictor
from samkit.imageio import to_rgb_uint8
from samkit.masks import (batched_nms, box_area, box_xyxy_to_xywh, fill_holes_and_sprinkles, mask_to_rle,
                          require_pycocotools, rle_to_coco)
from samkit.prompts import FEEDBACK_CLAMP

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")

# the most crop layers accepted: layer i has 4**i crops, each embedded by the image encoder, so
# layer 4 alone is 256 embeddings (341 in all); more would run for hours or out of memory
MAX_CROP_N_LAYERS = 4
# the most grid points per side accepted: 1024 is about a million point prompts per crop
MAX_POINTS_PER_SIDE = 1024

# the official generator's thresholds: used when neither the caller nor the model's config gives any
OFFICIAL_PRED_IOU_THRESH = 0.8
OFFICIAL_STABILITY_SCORE_THRESH = 0.95
THRESHOLD_FIELDS = ("pred_iou_thresh", "stability_score_thresh")

# keywords that the official ``from_pretrained`` forwards to the constructor; they concern the
# model builder and are accepted and ignored here, as the official generator does
_BUILDER_KEYWORDS = frozenset({"device", "mode", "hydra_overrides_extra", "apply_postprocessing",
                               "config_file", "ckpt_path", "model_id"})

# the numeric settings: (low, high, high included, what the setting does), both ends finite
# unless None; the low end is always included
_NUMBER_RANGES: dict[str, tuple[float | None, float | None, bool, str]] = {
    "pred_iou_thresh": (0.0, 1.0, True, "a mask is kept when its predicted IoU is above it; 0 keeps every mask"),
    "stability_score_thresh": (0.0, 1.0, True,
                               "a mask is kept when its stability score is at least it; 0 keeps every mask"),
    "stability_score_offset": (0.0, None, False, "the logit offset of the stability score's two thresholds"),
    "mask_threshold": (None, None, False, "the logit above which a pixel is in a mask"),
    "box_nms_thresh": (0.0, 1.0, True, "the box IoU above which NMS drops a duplicate; 1 keeps every mask"),
    "crop_nms_thresh": (0.0, 1.0, True, "the box IoU above which NMS drops a duplicate between crops"),
    "crop_overlap_ratio": (0.0, 1.0, False, "the overlap of neighbouring crops, a fraction of the short side"),
    "min_mask_region_area": (0.0, None, False, "holes and specks up to this many pixels are removed; 0: none"),
}
# the integer settings: (low, high or None)
_INT_RANGES: dict[str, tuple[int, int | None]] = {
    "points_per_batch": (1, None),
    "crop_n_layers": (0, MAX_CROP_N_LAYERS),
    "crop_n_points_downscale_factor": (1, None),
}


def _range_text(low: float | None, high: float | None, high_included: bool = True) -> str:
    """``"a number in [0, 1]"``, ``"a number >= 0"``, ``"a finite number"``."""
    if low is None and high is None:
        return "a finite number"
    if high is None:
        return f"a number >= {low:g}"
    return f"a number in [{low:g}, {high:g}{']' if high_included else ')'}"


def _check_int(name: str, value: Any, low: int, high: int | None) -> None:
    """Raise :class:`ConfigError` unless ``value`` is an integer in ``low..high``."""
    span = f">= {low}" if high is None else f"in {low}..{high}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name} must be an integer {span}, got {value!r} ({type(value).__name__})")
    if value < low or (high is not None and value > high):
        raise ConfigError(f"{name} must be an integer {span}, got {value}")


def _check_number(name: str, value: Any) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a finite number in the range of ``name``."""
    low, high, high_included, meaning = _NUMBER_RANGES[name]
    span = _range_text(low, high, high_included)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{name} must be {span}, got {value!r} ({type(value).__name__}; {meaning})")
    ok = bool(np.isfinite(value)) and (low is None or value >= low) and \
        (high is None or value < high or (high_included and value == high))
    if not ok:
        raise ConfigError(f"{name} must be {span}, got {value!r} ({meaning})")


def _check_point_grids(grids: Any, crop_n_layers: int) -> None:
    """Raise :class:`ConfigError` unless ``grids`` is one ``n x 2`` array in ``[0, 1]²`` per crop layer."""
    if isinstance(grids, np.ndarray) and grids.ndim == 2:
        raise ConfigError(f"point_grids is a list of n x 2 arrays, one per crop layer; got one array of shape "
                          f"{grids.shape}: for one layer pass point_grids=[grid]")
    if isinstance(grids, (str, bytes)) or not isinstance(grids, (list, tuple, np.ndarray)):
        raise ConfigError(f"point_grids must be a list of n x 2 arrays (x, y in [0, 1]), one per crop layer, "
                          f"got {type(grids).__name__}")
    if len(grids) < crop_n_layers + 1:
        raise ConfigError(f"point_grids has {len(grids)} grids; crop_n_layers={crop_n_layers} needs one per layer "
                          f"({crop_n_layers + 1})")
    for i, grid in enumerate(grids):
        try:
            g = np.asarray(grid, dtype=np.float64)
        except (TypeError, ValueError):
            raise ConfigError(f"point_grids[{i}] must be an n x 2 array of numbers, got {type(grid).__name__}") \
                from None
        if g.ndim != 2 or g.shape[1] != 2 or g.shape[0] < 1:
            raise ConfigError(f"point_grids[{i}] must have shape n x 2 (x, y) with n >= 1, got {g.shape}")
        if not np.isfinite(g).all():
            raise ConfigError(f"point_grids[{i}] contains NaN or infinite values; points are (x, y) in [0, 1]")
        if g.min() < 0.0 or g.max() > 1.0:
            raise ConfigError(f"point_grids[{i}] has values in [{g.min():g}, {g.max():g}]; points are (x, y) "
                              "fractions of the crop's width and height, in [0, 1]")


@dataclass
class AutoMaskConfig:
    """Settings of :class:`AutoMaskGenerator` (the official generator's arguments and defaults);
    :meth:`validate` says which one is out of range."""

    points_per_side: int | None = 32  # grid points per image side (1..1024); None: use point_grids
    points_per_batch: int = 64  # points decoded together (>= 1)
    pred_iou_thresh: float = OFFICIAL_PRED_IOU_THRESH  # keep masks whose predicted IoU is > this, in [0, 1]
    stability_score_thresh: float = OFFICIAL_STABILITY_SCORE_THRESH  # keep masks whose stability is >= this
    stability_score_offset: float = 1.0  # logit offset of the stability score's two thresholds (>= 0)
    mask_threshold: float = 0.0  # logit threshold of a mask
    box_nms_thresh: float = 0.7  # box IoU above which NMS drops a duplicate within a crop, in [0, 1]
    crop_n_layers: int = 0  # extra layers of crops (layer i has 2**i x 2**i crops), 0..MAX_CROP_N_LAYERS
    crop_nms_thresh: float = 0.7  # box IoU of the NMS between crops, in [0, 1]
    crop_overlap_ratio: float = 512 / 1500  # overlap of the first crop layer, fraction of the short side, [0, 1)
    crop_n_points_downscale_factor: int = 1  # layer i has points_per_side / factor**i points per side (>= 1)
    point_grids: list[np.ndarray] | None = None  # explicit [0, 1]² grids, one n x 2 array per layer
    min_mask_region_area: int = 0  # > 0: fill holes / remove specks up to this area (low-res pixels)
    output_mode: str = "binary_mask"  # "binary_mask" | "uncompressed_rle" | "coco_rle"
    use_m2m: bool = False  # refine each mask once, feeding its logits back as a mask prompt
    multimask_output: bool = True  # three masks per point (else one)

    def validate(self) -> None:
        """Raise :class:`~samkit.errors.ConfigError`, naming the setting and its valid range,
        for any setting out of range or inconsistent with another."""
        if (self.points_per_side is None) == (self.point_grids is None):
            raise ConfigError("give exactly one of points_per_side and point_grids "
                              f"(got points_per_side={self.points_per_side!r}, "
                              f"point_grids={'None' if self.point_grids is None else 'a list'})")
        if self.output_mode not in OUTPUT_MODES:
            raise ConfigError(f"output_mode must be one of {OUTPUT_MODES}, got {self.output_mode!r}")
        for name, (low, high) in _INT_RANGES.items():
            _check_int(name, getattr(self, name), low, high)
        for name in _NUMBER_RANGES:
            _check_number(name, getattr(self, name))
        for name in ("use_m2m", "multimask_output"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.point_grids is not None:
            _check_point_grids(self.point_grids, self.crop_n_layers)
            return
        _check_int("points_per_side", self.points_per_side, 1, MAX_POINTS_PER_SIDE)
        factor = self.crop_n_points_downscale_factor
        deepest = int(self.points_per_side / factor**self.crop_n_layers)
        if deepest < 1:
            raise ConfigError(f"points_per_side={self.points_per_side} with crop_n_points_downscale_factor={factor} "
                              f"leaves no point in crop layer {self.crop_n_layers} (int({self.points_per_side} / "
                              f"{factor}**{self.crop_n_layers}) = 0); use a smaller crop_n_points_downscale_factor, "
                              "fewer crop_n_layers or a larger points_per_side")

    def grids(self) -> list[np.ndarray]:
        """The point grid of each crop layer, ``n x 2`` in ``[0, 1]²``."""
        if self.point_grids is not None:
            return [np.asarray(g, dtype=np.float64) for g in self.point_grids]
        return build_all_layer_point_grids(self.points_per_side, self.crop_n_layers,
                                           self.crop_n_points_downscale_factor)


@dataclass
class GenerateStats:
    """What one :meth:`AutoMaskGenerator.generate` call saw: how many candidate masks passed
    each filter, and the best scores, so that an empty result can say which threshold to lower.

    ``best_stability`` is the highest stability score among the candidates above the IoU
    threshold. Candidates that a fast bound proves below ``stability_score_thresh`` count with
    that bound, so it is an upper bound (exact when the best candidate's score was computed).
    """

    pred_iou_thresh: float
    stability_score_thresh: float
    candidates: int = 0  # masks the decoder proposed: points x masks per point, every crop
    passed_iou: int = 0  # of those, the ones with a predicted IoU above pred_iou_thresh
    passed_stability: int = 0  # of those, the ones with a stability score >= stability_score_thresh
    kept: int = 0  # records returned (after the crop-edge filter and both NMS passes)
    best_iou: float | None = None  # highest predicted IoU of any candidate
    best_stability: float | None = None  # highest stability score (an upper bound, see above)

    def add_iou(self, iou: torch.Tensor, passed: int) -> None:
        """Count a batch of candidates' predicted IoUs (any shape), ``passed`` of them above the threshold."""
        self.candidates += iou.numel()
        self.passed_iou += passed
        if iou.numel():
            best = float(iou.max())
            self.best_iou = best if self.best_iou is None else max(self.best_iou, best)

    def add_stability(self, best: torch.Tensor, passed: int) -> None:
        """Count stability scores (or their upper bounds) of candidates, ``passed`` of them kept."""
        self.passed_stability += passed
        finite = best[torch.isfinite(best)]
        if finite.numel():
            value = float(finite.max())
            self.best_stability = value if self.best_stability is None else max(self.best_stability, value)

    def explain(self) -> str:
        """One line: how many masks were kept, and when none, which threshold removed them all
        and how far to lower it."""
        iou_t, stab_t = self.pred_iou_thresh, self.stability_score_thresh
        if self.kept:
            return (f"{self.kept} masks kept of {self.candidates} candidates ({self.passed_iou} with a predicted IoU "
                    f"above pred_iou_thresh={iou_t:g}, {self.passed_stability} of those with a stability score >= "
                    f"stability_score_thresh={stab_t:g})")
        if self.candidates == 0:
            return "no mask kept: no point prompt was decoded"
        if self.passed_iou == 0:
            return (f"no mask kept: none of the {self.candidates} candidates has a predicted IoU above "
                    f"pred_iou_thresh={iou_t:g} (the best has {self.best_iou:.4f}); lower pred_iou_thresh to "
                    f"{_floor3(self.best_iou, strict=True):g} or less to keep some")
        if self.passed_stability == 0:
            best = "unknown" if self.best_stability is None else f"at most {self.best_stability:.4f}"
            below = "" if self.best_stability is None else f" to {_floor3(self.best_stability, strict=False):g} or less"
            return (f"no mask kept: {self.passed_iou} of {self.candidates} candidates have a predicted IoU above "
                    f"pred_iou_thresh={iou_t:g} (best {self.best_iou:.4f}), but none has a stability score >= "
                    f"stability_score_thresh={stab_t:g} (the best is {best}); lower stability_score_thresh{below}")
        return (f"no mask kept: the {self.passed_stability} candidates that passed both thresholds all touch the "
                "edge of a crop inside the image (dropped, as the official generator does); use fewer crop layers")


def _floor3(value: float, strict: bool) -> float:
    """The largest multiple of 0.001 that is <= ``value`` (< ``value`` when ``strict``): a threshold
    that ``value`` passes (``>`` for the IoU filter, ``>=`` for the stability filter)."""
    out = math.floor(value * 1000) / 1000
    return round(out - 0.001, 3) if strict and out >= value else out


def _model_thresholds(model: Any) -> tuple[float, float, str] | None:
    """The segment-everything thresholds of ``model``'s config (a model, or a predictor around
    one): ``(pred_iou_thresh, stability_score_thresh, where from)``, or None without a config."""
    net = getattr(model, "model", None) if _is_predictor(model) else model
    cfg = getattr(net, "cfg", None)
    if cfg is None or not hasattr(cfg, "automask_pred_iou_thresh"):
        return None
    return (cfg.automask_pred_iou_thresh, cfg.automask_stability_score_thresh,
            f"{getattr(cfg, 'name', 'the model')}'s config")


def _is_predictor(obj: Any) -> bool:
    """Whether ``obj`` is an image predictor (rather than a model) to work through."""
    return all(hasattr(obj, name) for name in ("set_image", "predict_low_res", "reset_predictor", "_transforms"))


class AutoMaskGenerator:
    """Generate masks for a whole image from a grid of point prompts.

    ``AutoMaskGenerator(model, points_per_side=32, ...)`` takes the official
    ``SAM2AutomaticMaskGenerator`` arguments (see :class:`AutoMaskConfig`);
    ``generate(image)`` returns one record per mask. ``model`` is a SAM 2 model, or an
    :class:`~samkit.image_predictor.ImagePredictor` to work through.

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

    def __init__(self, model: Any, points_per_side: int | None = 32, points_per_batch: int = 64,
                 pred_iou_thresh: float | None = None, stability_score_thresh: float | None = None,
                 stability_score_offset: float = 1.0, mask_threshold: float = 0.0,
                 box_nms_thresh: float = 0.7, crop_n_layers: int = 0, crop_nms_thresh: float = 0.7,
                 crop_overlap_ratio: float = 512 / 1500, crop_n_points_downscale_factor: int = 1,
                 point_grids: list[np.ndarray] | None = None, min_mask_region_area: int = 0,
                 output_mode: str = "binary_mask", use_m2m: bool = False, multimask_output: bool = True,
                 **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - _BUILDER_KEYWORDS)
        if unknown:
            raise ConfigError(f"AutoMaskGenerator got unexpected keyword argument(s) {unknown}")
        # thresholds not given: the model config's, else the official generator's
        from_model = _model_thresholds(model)
        fallback = from_model or (OFFICIAL_PRED_IOU_THRESH, OFFICIAL_STABILITY_SCORE_THRESH, "the official default")
        sources = {name: fallback[2] if value is None else "given"
                   for name, value in zip(THRESHOLD_FIELDS, (pred_iou_thresh, stability_score_thresh))}
        pred_iou_thresh = fallback[0] if pred_iou_thresh is None else pred_iou_thresh
        stability_score_thresh = fallback[1] if stability_score_thresh is None else stability_score_thresh
        self.config = AutoMaskConfig(
            points_per_side=points_per_side, points_per_batch=points_per_batch,
            pred_iou_thresh=pred_iou_thresh, stability_score_thresh=stability_score_thresh,
            stability_score_offset=stability_score_offset, mask_threshold=mask_threshold,
            box_nms_thresh=box_nms_thresh, crop_n_layers=crop_n_layers, crop_nms_thresh=crop_nms_thresh,
            crop_overlap_ratio=crop_overlap_ratio, crop_n_points_downscale_factor=crop_n_points_downscale_factor,
            point_grids=point_grids, min_mask_region_area=min_mask_region_area, output_mode=output_mode,
            use_m2m=use_m2m, multimask_output=multimask_output)
        try:
            self.config.validate()
        except ConfigError as exc:
            if from_model and any(sources[n] == from_model[2] and n in str(exc) for n in THRESHOLD_FIELDS):
                raise ConfigError(f"{exc} (from {from_model[2]})") from None
            raise
        # where each threshold came from: "given", "<model>'s config" or "the official default"
        self.threshold_sources: dict[str, str] = sources
        self.last_stats: GenerateStats | None = None  # what the last generate() saw
        if output_mode == "coco_rle":
            require_pycocotools()  # fail now, not after minutes of work
        # hole filling is done here at low resolution, so the predictor itself does none
        self.predictor = model if _is_predictor(model) else ImagePredictor(model)
        self._plans: dict[tuple, UpsamplePlan] = {}

    @classmethod
    def from_pretrained(cls, name_or_checkpoint: str, **kwargs: Any) -> "AutoMaskGenerator":
        """A generator around :meth:`ImagePredictor.from_pretrained` (a checkpoint file, or a model
        name or Hugging Face id with trained weights, downloaded once for the official ones);
        ``device=`` and the generator's own arguments may be given."""
        predictor = ImagePredictor.from_pretrained(name_or_checkpoint, device=kwargs.pop("device", "cpu"))
        return cls(predictor.model, **kwargs)

    # the official generator keeps its settings as attributes: read and write them through
    # ``config`` (``point_grids`` reads as the grids in use, one per crop layer)
    def __getattr__(self, name: str) -> Any:
        config = self.__dict__.get("config")
        if config is not None and name == "point_grids":
            return config.grids()
        if config is not None and name in AutoMaskConfig.__dataclass_fields__:
            return getattr(config, name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        config = self.__dict__.get("config")
        if config is not None and name in AutoMaskConfig.__dataclass_fields__:
            setattr(config, name, value)
            if name == "point_grids" and value is not None:
                config.points_per_side = None
            if name in THRESHOLD_FIELDS:
                self.threshold_sources[name] = "given"
        else:
            super().__setattr__(name, value)

    def describe_thresholds(self) -> str:
        """One line: the IoU and stability thresholds in use and where each came from."""
        return ", ".join(f"{name}={getattr(self.config, name):g} ({self.threshold_sources[name]})"
                         for name in THRESHOLD_FIELDS)

    # ------------------------------------------------------------------ public
    @torch.inference_mode()
    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        """All masks of ``image`` (``H x W x 3`` uint8 RGB; PIL images and other dtypes are
        converted).

        Returns a list of records, one per mask:

        * ``segmentation``: ``H x W`` bool array, or an RLE dict (``uncompressed_rle``:
          ``{"size": [H, W], "counts": [int, ...]}``; ``coco_rle``: counts as a string);
        * ``area`` (int pixels), ``bbox`` (XYWH floats), ``predicted_iou`` (float),
          ``point_coords`` (``[[x, y]]``), ``stability_score`` (float), ``crop_box`` (XYWH floats).

        An empty list is a valid result; ``last_stats.explain()`` then says which threshold
        removed every candidate.
        """
        self.config.validate()
        rgb = to_rgb_uint8(image)
        self.last_stats = GenerateStats(self.config.pred_iou_thresh, self.config.stability_score_thresh)
        records, channels = self._generate_records(rgb)
        self.last_stats.kept = len(records)
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
                counts = masks.flatten(1).sum(1).tolist()
                if mode == "binary_mask":
                    encoded = list(masks.cpu().numpy())
                else:
                    encoded = mask_to_rle(masks)
                    if mode == "coco_rle":
                        encoded = [rle_to_coco(r) for r in encoded]
                for r, seg, area in zip(rows.tolist(), encoded, counts):
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
