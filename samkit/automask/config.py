"""The settings of the automatic mask generators, without torch.

What :class:`~samkit.automask.generator.AutoMaskGenerator` (torch) and
:class:`~samkit.onnx.automask.OnnxAutoMaskGenerator` (numpy and ONNX Runtime) share:
:class:`AutoMaskConfig` (the official generator's arguments, defaults and range checks),
:class:`GenerateStats` (what one ``generate`` call saw) and :class:`AutoMaskSettings`, the base
class that turns constructor arguments into a validated config, takes the thresholds left out
from the model's config, and gives attribute access to the settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from samkit.automask.grid import build_all_layer_point_grids
from samkit.errors import ConfigError
from samkit.imageio import to_rgb_uint8
from samkit.masks.rle import SEGMENTATION_MODES, require_pycocotools

__all__ = ["AutoMaskConfig", "AutoMaskSettings", "GenerateStats", "OUTPUT_MODES", "MAX_CROP_N_LAYERS",
           "MAX_POINTS_PER_SIDE", "OFFICIAL_PRED_IOU_THRESH", "OFFICIAL_STABILITY_SCORE_THRESH", "THRESHOLD_FIELDS",
           "BUILDER_KEYWORDS"]

OUTPUT_MODES = SEGMENTATION_MODES

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
BUILDER_KEYWORDS = frozenset({"device", "mode", "hydra_overrides_extra", "apply_postprocessing",
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
    """What one ``generate`` call saw: how many candidate masks passed
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

    def add_iou(self, iou: Any, passed: int) -> None:
        """Count a batch of candidates' predicted IoUs (a numpy array or torch tensor, any shape),
        ``passed`` of them above the threshold."""
        values = _as_numpy(iou)
        self.candidates += values.size
        self.passed_iou += passed
        if values.size:
            best = float(values.max())
            self.best_iou = best if self.best_iou is None else max(self.best_iou, best)

    def add_stability(self, best: Any, passed: int) -> None:
        """Count stability scores (or their upper bounds) of candidates (a numpy array or torch
        tensor), ``passed`` of them kept."""
        self.passed_stability += passed
        values = _as_numpy(best)
        finite = values[np.isfinite(values)]
        if finite.size:
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



def _as_numpy(values: Any) -> np.ndarray:
    """Scores as a numpy array: a numpy array, or a torch tensor of any float dtype (bfloat16
    included) on any device, as float32."""
    if hasattr(values, "detach"):  # a torch tensor (torch itself is not imported here)
        values = values.detach().cpu().float().numpy()
    return np.asarray(values)


def model_thresholds(model_cfg: Any) -> tuple[float, float, str] | None:
    """The segment-everything thresholds of a model config (a ``ModelConfig``, or the model
    section of an ONNX export's ``config.json``): ``(pred_iou_thresh, stability_score_thresh,
    where from)``, or None when there is no config or it has none."""
    if model_cfg is None or not hasattr(model_cfg, "automask_pred_iou_thresh"):
        return None
    return (model_cfg.automask_pred_iou_thresh, model_cfg.automask_stability_score_thresh,
            f"{getattr(model_cfg, 'name', 'the model')}'s config")


class AutoMaskSettings:
    """The settings half of an automatic mask generator, shared by the torch and the ONNX one.

    The constructor takes the official ``SAM2AutomaticMaskGenerator`` arguments (see
    :class:`AutoMaskConfig`). ``pred_iou_thresh`` and ``stability_score_thresh`` left out (None)
    are the model's (``automask_pred_iou_thresh`` / ``automask_stability_score_thresh`` of its
    config), else the official 0.8 / 0.95; ``threshold_sources`` says where each came from.
    Settings read and write as attributes (``gen.pred_iou_thresh = 0.5``); ``generate`` checks
    them again. After :meth:`generate`, ``last_stats`` (:class:`GenerateStats`) says how many
    candidates passed each filter, and ``last_stats.explain()`` which threshold to lower when
    nothing survived.

    A subclass gives :meth:`_attach` (set ``self.predictor`` from the ``model`` argument),
    :meth:`_model_config` (the config whose thresholds fill in the missing ones) and
    :meth:`_generate` (the records of one RGB image).
    """

    def __init__(self, model: Any, points_per_side: int | None = 32, points_per_batch: int = 64,
                 pred_iou_thresh: float | None = None, stability_score_thresh: float | None = None,
                 stability_score_offset: float = 1.0, mask_threshold: float = 0.0,
                 box_nms_thresh: float = 0.7, crop_n_layers: int = 0, crop_nms_thresh: float = 0.7,
                 crop_overlap_ratio: float = 512 / 1500, crop_n_points_downscale_factor: int = 1,
                 point_grids: list[np.ndarray] | None = None, min_mask_region_area: int = 0,
                 output_mode: str = "binary_mask", use_m2m: bool = False, multimask_output: bool = True,
                 **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - BUILDER_KEYWORDS)
        if unknown:
            raise ConfigError(f"{type(self).__name__} got unexpected keyword argument(s) {unknown}")
        self._attach(model)
        # thresholds not given: the model config's, else the official generator's
        from_model = model_thresholds(self._model_config())
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

    # ------------------------------------------------------------------ what a subclass gives
    def _attach(self, model: Any) -> None:
        """Set ``self.predictor``, the predictor that ``model`` (the first argument) stands for."""
        raise NotImplementedError

    def _model_config(self) -> Any:
        """The config whose ``automask_*`` thresholds fill in the missing ones, or None."""
        raise NotImplementedError

    def _generate(self, rgb: np.ndarray) -> list[dict[str, Any]]:
        """The records of an ``H x W x 3`` uint8 RGB image (:meth:`generate` without the checks)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ settings as attributes
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
    def generate(self, image: Any) -> list[dict[str, Any]]:
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
        records = self._generate(rgb)
        self.last_stats.kept = len(records)
        return records
