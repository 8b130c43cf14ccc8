"""Bad prompts and bad segment-everything settings: each is a clear SamkitError, never a numpy
error, a MemoryError or a silently wrong result; and the thresholds each model carries.

A generated corpus: every out-of-range argument of ``AutoMaskGenerator`` (through the API and
through ``samkit auto`` / ``annotate``), point grids of the wrong shape or with NaN, absurd crop
layers (refused at once), wrong boxes, points and labels (through ``ImagePredictor`` and
``samkit segment``), ``predict`` without a prompt, points far outside the image; then the model
thresholds (``samkit_nano`` 0.6 / 0.8, the official models 0.8 / 0.95, explicit arguments win,
checkpoints saved before the fields existed), the explanation of an empty result and the
message for an image too small for its crops.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import samkit
from samkit.automask import AutoMaskConfig, AutoMaskGenerator
from samkit.automask.generator import MAX_CROP_N_LAYERS, GenerateStats
from samkit.cli.main import main
from samkit.configs import get_config, list_models
from samkit.demo import bundled_photo
from samkit.errors import ConfigError, ImageError, PromptError
from samkit.image_predictor import ImagePredictor
from samkit.weights import bundled_checkpoint
from tests.automask.stand_ins import BASE, BlobPredictor, random_image
from tests.test_image_predictor import SMALL

ROOT = Path(__file__).resolve().parents[2]
NAN, INF = float("nan"), float("inf")
GRID = np.array([[0.25, 0.25], [0.75, 0.75]])


@pytest.fixture(scope="module")
def nano():
    """The shipped default model (samkit_nano, trained weights)."""
    return samkit.build_model()


@pytest.fixture(scope="module")
def predictor(nano):
    p = ImagePredictor(nano)
    p.set_image(np.random.default_rng(0).integers(0, 255, (120, 200, 3), dtype=np.uint8))
    return p


@pytest.fixture()
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 140, 3), dtype=np.uint8)).save(path)
    return path


# ---------------------------------------------------------------- generator arguments
# (keyword arguments, text the message must contain: the argument's name and its valid range)
BAD_GENERATOR_ARGS = [
    (dict(points_per_side=0), "points_per_side must be an integer in 1..1024, got 0"),
    (dict(points_per_side=-4), "points_per_side must be an integer in 1..1024, got -4"),
    (dict(points_per_side=100_000), "points_per_side must be an integer in 1..1024, got 100000"),
    (dict(points_per_side=2.5), "points_per_side must be an integer in 1..1024, got 2.5"),
    (dict(points_per_side=True), "points_per_side must be an integer in 1..1024, got True"),
    (dict(points_per_batch=0), "points_per_batch must be an integer >= 1, got 0"),
    (dict(points_per_batch=-64), "points_per_batch must be an integer >= 1, got -64"),
    (dict(points_per_batch=1.5), "points_per_batch must be an integer >= 1, got 1.5"),
    (dict(pred_iou_thresh=-0.1), "pred_iou_thresh must be a number in [0, 1]"),
    (dict(pred_iou_thresh=1.5), "pred_iou_thresh must be a number in [0, 1]"),
    (dict(pred_iou_thresh=NAN), "pred_iou_thresh must be a number in [0, 1]"),
    (dict(pred_iou_thresh="0.8"), "pred_iou_thresh must be a number in [0, 1]"),
    (dict(stability_score_thresh=-0.01), "stability_score_thresh must be a number in [0, 1]"),
    (dict(stability_score_thresh=1.01), "stability_score_thresh must be a number in [0, 1]"),
    (dict(stability_score_thresh=INF), "stability_score_thresh must be a number in [0, 1]"),
    (dict(stability_score_offset=-1.0), "stability_score_offset must be a number >= 0"),
    (dict(stability_score_offset=INF), "stability_score_offset must be a number >= 0"),
    (dict(mask_threshold=NAN), "mask_threshold must be a finite number, got nan"),
    (dict(box_nms_thresh=-0.1), "box_nms_thresh must be a number in [0, 1]"),
    (dict(box_nms_thresh=1.1), "box_nms_thresh must be a number in [0, 1]"),
    (dict(box_nms_thresh=NAN), "box_nms_thresh must be a number in [0, 1]"),
    (dict(crop_nms_thresh=-0.5), "crop_nms_thresh must be a number in [0, 1]"),
    (dict(crop_nms_thresh=2.0), "crop_nms_thresh must be a number in [0, 1]"),
    (dict(crop_overlap_ratio=-0.1), "crop_overlap_ratio must be a number in [0, 1)"),
    (dict(crop_overlap_ratio=1.0), "crop_overlap_ratio must be a number in [0, 1)"),
    (dict(crop_n_layers=-1), f"crop_n_layers must be an integer in 0..{MAX_CROP_N_LAYERS}, got -1"),
    (dict(crop_n_layers=MAX_CROP_N_LAYERS + 1), f"crop_n_layers must be an integer in 0..{MAX_CROP_N_LAYERS}"),
    (dict(crop_n_layers=10**6), f"crop_n_layers must be an integer in 0..{MAX_CROP_N_LAYERS}, got 1000000"),
    (dict(crop_n_layers=1.0), f"crop_n_layers must be an integer in 0..{MAX_CROP_N_LAYERS}, got 1.0"),
    (dict(crop_n_points_downscale_factor=0), "crop_n_points_downscale_factor must be an integer >= 1, got 0"),
    (dict(crop_n_points_downscale_factor=-2), "crop_n_points_downscale_factor must be an integer >= 1"),
    (dict(points_per_side=4, crop_n_layers=2, crop_n_points_downscale_factor=4),
     "crop_n_points_downscale_factor=4 leaves no point in crop layer 2"),
    (dict(min_mask_region_area=-1), "min_mask_region_area must be a number >= 0, got -1"),
    (dict(min_mask_region_area=NAN), "min_mask_region_area must be a number >= 0"),
    (dict(output_mode="png"), "output_mode must be one of ('binary_mask', 'uncompressed_rle', 'coco_rle')"),
    (dict(output_mode=None), "output_mode must be one of"),
    (dict(use_m2m="yes"), "use_m2m must be True or False, got 'yes'"),
    (dict(multimask_output=1), "multimask_output must be True or False, got 1"),
    (dict(points_per_side=None), "give exactly one of points_per_side and point_grids"),
    (dict(point_grids=[GRID]), "give exactly one of points_per_side and point_grids"),
    # point grids (points_per_side=None)
    (dict(points_per_side=None, point_grids=GRID), "for one layer pass point_grids=[grid]"),
    (dict(points_per_side=None, point_grids="grid"), "point_grids must be a list of n x 2 arrays"),
    (dict(points_per_side=None, point_grids=[np.zeros((4, 3))]),
     "point_grids[0] must have shape n x 2 (x, y) with n >= 1, got (4, 3)"),
    (dict(points_per_side=None, point_grids=[np.zeros((0, 2))]),
     "point_grids[0] must have shape n x 2 (x, y) with n >= 1, got (0, 2)"),
    (dict(points_per_side=None, point_grids=[np.zeros(5)]), "point_grids[0] must have shape n x 2"),
    (dict(points_per_side=None, point_grids=[np.full((3, 2), np.nan)]), "point_grids[0] contains NaN or infinite"),
    (dict(points_per_side=None, point_grids=[np.array([[0.5, np.inf]])]), "point_grids[0] contains NaN or infinite"),
    (dict(points_per_side=None, point_grids=[np.array([[1.5, 0.5]])]),
     "point_grids[0] has values in [0.5, 1.5]; points are (x, y) fractions"),
    (dict(points_per_side=None, point_grids=[np.array([[-0.1, 0.5]])]), "point_grids[0] has values in [-0.1, 0.5]"),
    (dict(points_per_side=None, point_grids=[GRID, [["a", "b"]]], crop_n_layers=1),
     "point_grids[1] must be an n x 2 array of numbers"),
    (dict(points_per_side=None, point_grids=[GRID], crop_n_layers=1),
     "point_grids has 1 grids; crop_n_layers=1 needs one per layer (2)"),
]


@pytest.mark.parametrize("kwargs,message", BAD_GENERATOR_ARGS, ids=[str(k) for k, _ in BAD_GENERATOR_ARGS])
def test_bad_generator_argument_is_a_config_error_naming_it(kwargs, message):
    with pytest.raises(ConfigError) as info:
        AutoMaskGenerator(BlobPredictor(), **kwargs)
    assert message in str(info.value)
    # the dataclass says the same (one home for the checks)
    with pytest.raises(ConfigError) as again:
        AutoMaskConfig(**kwargs).validate()
    assert str(again.value) == str(info.value)


def test_absurd_crop_n_layers_fails_at_once_without_work():
    predictor = BlobPredictor()
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="crop_n_layers must be an integer in 0..4, got 30"):
        AutoMaskGenerator(predictor, points_per_side=2, crop_n_layers=30).generate(random_image(64, 64))
    assert time.perf_counter() - t0 < 1.0 and predictor.calls == 0


def test_settings_changed_after_construction_are_checked_by_generate():
    predictor = BlobPredictor()
    gen = AutoMaskGenerator(predictor, points_per_side=2)
    gen.pred_iou_thresh = 2.0
    with pytest.raises(ConfigError, match=r"pred_iou_thresh must be a number in \[0, 1\]"):
        gen.generate(random_image(64, 64))
    gen.pred_iou_thresh = 0.5
    gen.point_grids = [np.array([[0.5, 1.2]])]
    with pytest.raises(ConfigError, match=r"point_grids\[0\] has values in \[0.5, 1.2\]"):
        gen.generate(random_image(64, 64))
    assert predictor.calls == 0


@pytest.mark.parametrize("kwargs", [
    dict(pred_iou_thresh=0.0, stability_score_thresh=0.0), dict(pred_iou_thresh=1.0, stability_score_thresh=1.0),
    dict(crop_n_layers=MAX_CROP_N_LAYERS, points_per_side=16, crop_n_points_downscale_factor=2),
    dict(points_per_side=np.int64(8), points_per_batch=np.int32(5), pred_iou_thresh=np.float32(0.5)),
    dict(points_per_side=None, point_grids=[np.array([[0.0, 0.0], [1.0, 1.0]])]),
    dict(points_per_side=None, point_grids=np.stack([GRID, GRID]), crop_n_layers=1),
    dict(box_nms_thresh=1.0, crop_nms_thresh=0.0, crop_overlap_ratio=0.0, stability_score_offset=0.0,
         min_mask_region_area=0, mask_threshold=-3.5, use_m2m=np.bool_(True)),
])
def test_settings_at_the_ends_of_their_ranges_are_accepted(kwargs):
    gen = AutoMaskGenerator(BlobPredictor(), **kwargs)
    gen.config.validate()


def test_one_by_one_image_with_crops_names_the_image_size_not_the_crops():
    predictor = BlobPredictor()
    with pytest.raises(ImageError) as info:
        AutoMaskGenerator(predictor, points_per_side=2, crop_n_layers=1).generate(np.zeros((1, 1, 3), np.uint8))
    text = str(info.value)
    assert "the image (1 x 1 pixels, H x W) is too small for crop_n_layers=1" in text
    assert "crop_n_layers=0 works for any image size" in text and "(0, 1, 3)" not in text
    assert predictor.calls == 0  # refused before any decoding
    with pytest.raises(ImageError, match=r"the image \(5 x 5 pixels, H x W\) is too small for crop_n_layers=2"):
        AutoMaskGenerator(predictor, points_per_side=4, crop_n_layers=2).generate(np.zeros((5, 5, 3), np.uint8))
    # without crops any size works
    assert AutoMaskGenerator(predictor, points_per_side=2, pred_iou_thresh=1.0).generate(
        np.zeros((1, 1, 3), np.uint8)) == []


# ---------------------------------------------------------------- the thresholds of each model
def test_nano_carries_its_thresholds_and_the_official_models_the_official_ones(nano):
    assert (get_config("samkit_nano").automask_pred_iou_thresh,
            get_config("samkit_nano").automask_stability_score_thresh) == (0.6, 0.8)
    for name in list_models():
        if name != "samkit_nano":
            cfg = get_config(name)
            assert (cfg.automask_pred_iou_thresh, cfg.automask_stability_score_thresh) == (0.8, 0.95), name
    gen = AutoMaskGenerator(nano)
    assert (gen.pred_iou_thresh, gen.stability_score_thresh) == (0.6, 0.8)
    assert gen.threshold_sources == {"pred_iou_thresh": "samkit_nano's config",
                                     "stability_score_thresh": "samkit_nano's config"}
    assert gen.describe_thresholds() == ("pred_iou_thresh=0.6 (samkit_nano's config), "
                                         "stability_score_thresh=0.8 (samkit_nano's config)")
    # through a predictor, the same
    assert AutoMaskGenerator(ImagePredictor(nano)).pred_iou_thresh == 0.6
    # a model with the official defaults (a custom config here: the same fields, the same defaults)
    small = AutoMaskGenerator(samkit.build_model(SMALL))
    assert (small.pred_iou_thresh, small.stability_score_thresh) == (0.8, 0.95)
    assert small.threshold_sources["pred_iou_thresh"] == "test_small's config"
    # a stand-in predictor without a model config: the official generator's defaults
    stand_in = AutoMaskGenerator(BlobPredictor())
    assert (stand_in.pred_iou_thresh, stand_in.stability_score_thresh) == (0.8, 0.95)
    assert stand_in.threshold_sources["stability_score_thresh"] == "the official default"


def test_explicit_thresholds_win(nano):
    gen = AutoMaskGenerator(nano, pred_iou_thresh=0.7)
    assert (gen.pred_iou_thresh, gen.stability_score_thresh) == (0.7, 0.8)
    assert gen.threshold_sources == {"pred_iou_thresh": "given", "stability_score_thresh": "samkit_nano's config"}
    gen.stability_score_thresh = 0.9
    assert gen.threshold_sources["stability_score_thresh"] == "given"
    assert gen.describe_thresholds() == "pred_iou_thresh=0.7 (given), stability_score_thresh=0.9 (given)"
    assert AutoMaskGenerator(nano, pred_iou_thresh=0.8, stability_score_thresh=0.95).config == \
        AutoMaskConfig(pred_iou_thresh=0.8, stability_score_thresh=0.95)


def test_a_model_config_with_a_bad_threshold_says_where_it_came_from():
    model = samkit.build_model(SMALL.with_(automask_pred_iou_thresh=1.5))
    with pytest.raises(ConfigError) as info:
        AutoMaskGenerator(model)
    assert "pred_iou_thresh must be a number in [0, 1]" in str(info.value)
    assert "(from test_small's config)" in str(info.value)
    AutoMaskGenerator(model, pred_iou_thresh=0.5)  # an explicit value replaces it


def _strip_threshold_fields(path: Path) -> None:
    """Rewrite a samkit .pt checkpoint as a samkit version before the threshold fields wrote it."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("automask_pred_iou_thresh", "automask_stability_score_thresh"):
        del payload["samkit_config"][key]
    torch.save(payload, path)


def test_checkpoints_saved_before_the_fields_existed(nano, tmp_path):
    # the shipped weights file, read alone (no model name): the nano thresholds
    shipped = samkit.build_model(checkpoint=bundled_checkpoint("samkit_nano"))
    assert (shipped.cfg.automask_pred_iou_thresh, shipped.cfg.automask_stability_score_thresh) == (0.6, 0.8)
    # an old nano file: the registered variant's values fill the missing fields
    path = samkit.save_checkpoint(nano, tmp_path / "nano.pt")
    _strip_threshold_fields(path)
    old = samkit.build_model(checkpoint=path)
    assert (old.cfg.automask_pred_iou_thresh, old.cfg.automask_stability_score_thresh) == (0.6, 0.8)
    assert old.cfg == nano.cfg
    # an old file of a custom (unregistered) model: the field defaults, the official values
    path = samkit.save_checkpoint(samkit.build_model(SMALL), tmp_path / "small.pt")
    _strip_threshold_fields(path)
    small = samkit.build_model(checkpoint=path)
    assert (small.cfg.automask_pred_iou_thresh, small.cfg.automask_stability_score_thresh) == (0.8, 0.95)
    # values that were saved are kept
    path = samkit.save_checkpoint(samkit.build_model(SMALL.with_(automask_pred_iou_thresh=0.55)), tmp_path / "c.pt")
    assert samkit.build_model(checkpoint=path).cfg.automask_pred_iou_thresh == 0.55


# ---------------------------------------------------------------- why nothing survived
def test_nothing_above_the_iou_threshold_is_explained():
    gen = AutoMaskGenerator(BlobPredictor(), points_per_side=4, pred_iou_thresh=1.0)
    assert gen.generate(random_image()) == []
    s = gen.last_stats
    assert (s.candidates, s.passed_iou, s.passed_stability, s.kept) == (48, 0, 0, 0)
    assert 0.9 < s.best_iou <= 1.0
    suggestion = math.floor(s.best_iou * 1000) / 1000
    suggestion = round(suggestion - 0.001, 3) if suggestion >= s.best_iou else suggestion
    assert suggestion < s.best_iou
    assert s.explain() == (f"no mask kept: none of the 48 candidates has a predicted IoU above pred_iou_thresh=1 "
                           f"(the best has {s.best_iou:.4f}); lower pred_iou_thresh to {suggestion:g} or less to "
                           "keep some")
    # the suggested threshold keeps a mask
    kept = AutoMaskGenerator(BlobPredictor(), points_per_side=4, pred_iou_thresh=suggestion,
                             stability_score_thresh=0.0).generate(random_image())
    assert len(kept) >= 1


def test_nothing_stable_enough_is_explained_with_an_upper_bound(nano):
    image, _ = bundled_photo()
    gen = AutoMaskGenerator(nano, points_per_side=16, pred_iou_thresh=0.8, stability_score_thresh=0.95)
    assert gen.generate(image) == []
    s = gen.last_stats
    assert s.candidates == 16 * 16 * 3 and s.passed_iou > 0 and s.passed_stability == 0 and s.kept == 0
    assert s.best_stability is not None and s.best_stability < 0.95
    text = s.explain()
    assert text.startswith(f"no mask kept: {s.passed_iou} of 768 candidates have a predicted IoU above "
                           "pred_iou_thresh=0.8")
    assert f"none has a stability score >= stability_score_thresh=0.95 (the best is at most {s.best_stability:.4f})" \
        in text and f"lower stability_score_thresh to {math.floor(s.best_stability * 1000) / 1000:g} or less" in text
    # the reported value bounds every exact stability score of the IoU survivors
    loose = AutoMaskGenerator(nano, points_per_side=16, pred_iou_thresh=0.8, stability_score_thresh=0.0,
                              box_nms_thresh=1.0)
    records = loose.generate(image)
    assert len(records) == s.passed_iou
    assert max(r["stability_score"] for r in records) <= s.best_stability + 1e-6
    assert loose.last_stats.explain().startswith(f"{len(records)} masks kept of 768 candidates")


def test_stats_of_a_run_that_keeps_masks():
    gen = AutoMaskGenerator(BlobPredictor(), **BASE)
    records = gen.generate(random_image())
    s = gen.last_stats
    assert isinstance(s, GenerateStats) and s.kept == len(records) > 0
    assert s.candidates == 8 * 8 * 3 and s.passed_stability >= s.kept and s.passed_iou >= s.passed_stability
    assert s.explain().startswith(f"{len(records)} masks kept of 192 candidates ({s.passed_iou} with a predicted IoU")


# ---------------------------------------------------------------- prompts through the API
BAD_PROMPTS = [
    (dict(box=[100, 10, 50, 90]), "box [100, 10, 50, 90] has x1 (50) < x0 (100): boxes are x0,y0,x1,y1 "
                                  "(top-left corner, then bottom-right) with x0 <= x1 and y0 <= y1"),
    (dict(box=[10, 90, 50, 10]), "box [10, 90, 50, 10] has y1 (10) < y0 (90)"),
    (dict(box=[[0, 0, 5, 5], [9, 0, 3, 5]], multimask_output=False), "box 1 [9, 0, 3, 5] has x1 (3) < x0 (9)"),
    (dict(box=[0, np.nan, 5, 5]), "box contains NaN or infinite values"),
    (dict(box=[0, 0, 5, -np.inf]), "box contains NaN or infinite values"),
    (dict(point_coords=[[np.inf, 2]], point_labels=[1]), "point_coords contains NaN or infinite values"),
    (dict(point_coords=[[1, 2]], point_labels=[np.nan]), "point_labels contains NaN or infinite values"),
    (dict(point_coords=[[1, 2]], point_labels=[0.5]), "point_labels must be integers (1 foreground, 0 background, "
                                                       "-1 padding, 2/3 box corners), got [0.5]"),
    (dict(point_coords=[[1, 2]], point_labels=["a"]), "point_labels must be an array of integers, got list"),
    (dict(), "predict has no prompt: give point_coords with point_labels, a box (x0, y0, x1, y1), or a mask_input"),
    (dict(multimask_output=False), "predict has no prompt"),
    # far outside the 120 x 200 image: more than one image size beyond an edge
    (dict(point_coords=[[-201, 50]], point_labels=[1]), "point_coords has a point (x=-201, y=50) far outside the "
                                                         "image: coordinates are pixels of the 120 x 200 image"),
    (dict(point_coords=[[401, 50]], point_labels=[1]), "accepted: x in [-200, 400], y in [-120, 240]"),
    (dict(point_coords=[[10, -121]], point_labels=[1]), "point_coords has a point (x=10, y=-121) far outside"),
    (dict(point_coords=[[[10, 10]], [[10, 9999]]], point_labels=[[1], [1]]), "(x=10, y=9999) far outside"),
    (dict(box=[0, 0, 500, 100]), "box has a point (x=500, y=100) far outside the image"),
    (dict(point_coords=[[50, 60]], point_labels=[1], normalize_coords=False),
     "fractions of the image's width and height with normalize_coords=False; accepted: [-1, 2] (pixels? then "
     "leave normalize_coords=True)"),
]


@pytest.mark.parametrize("kwargs,message", BAD_PROMPTS, ids=[str(k) for k, _ in BAD_PROMPTS])
def test_bad_prompt_is_a_prompt_error(predictor, kwargs, message):
    with pytest.raises(PromptError) as info:
        predictor.predict(**kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize("kwargs", [
    dict(box=[30, 20, 30, 20]),  # zero width and height
    dict(box=[-50, -50, 250, 150]),  # partly outside, within one image size
    dict(point_coords=[[400, 240], [-200, -120]], point_labels=[1, 0]),  # the ends of the accepted margin
    dict(point_coords=[[-0.5, 1.5]], point_labels=[1], normalize_coords=False),
    dict(mask_input=np.zeros((1, 64, 64), np.float32)),  # a mask alone is a prompt
])
def test_accepted_prompts(predictor, kwargs):
    masks, scores, low = predictor.predict(**kwargs)
    assert masks.shape[-2:] == (120, 200) and np.isfinite(scores).all()


def test_points_outside_the_image_are_encoded_as_given_not_clamped(predictor):
    outside = predictor.predict(point_coords=[[-30, 60]], point_labels=[1], multimask_output=False)[2]
    edge = predictor.predict(point_coords=[[0, 60]], point_labels=[1], multimask_output=False)[2]
    assert np.abs(outside - edge).max() > 1e-3


def test_predict_batch_refuses_an_image_without_prompt(nano):
    p = ImagePredictor(nano)
    image = np.zeros((40, 60, 3), np.uint8)
    p.set_image_batch([image, image])
    with pytest.raises(PromptError, match="predict_batch: image 1 has no prompt"):
        p.predict_batch(box_batch=[[1, 1, 20, 20], None])
    with pytest.raises(PromptError, match=r"box \[20, 1, 1, 20\] has x1 \(1\) < x0 \(20\)"):
        p.predict_batch(box_batch=[[1, 1, 20, 20], [20, 1, 1, 20]])


# ---------------------------------------------------------------- prompts through `samkit segment`
BAD_CLI_PROMPTS = [
    (["--point", "10,10,0.5"], "LABEL must be 1 (object) or 0 (background), got '0.5' in '10,10,0.5'"),
    (["--point", "10,10,2"], "LABEL must be 1 (object) or 0 (background), got '2'"),
    (["--point", "10,10,-1"], "LABEL must be 1 (object) or 0 (background), got '-1'"),
    (["--point", "nan,10"], "--point X,Y[,LABEL] must be finite numbers (no nan or inf), got 'nan,10'"),
    (["--point", "10,inf"], "must be finite numbers (no nan or inf)"),
    (["--box", "100,10,50,90"], "--box [100, 10, 50, 90] has x1 (50) < x0 (100): boxes are x0,y0,x1,y1"),
    (["--box", "10,90,50,10"], "--box [10, 90, 50, 10] has y1 (10) < y0 (90)"),
    (["--box", "1,2,nan,4"], "--box X0,Y0,X1,Y1 must be finite numbers"),
]


@pytest.mark.parametrize("args,message", BAD_CLI_PROMPTS, ids=[" ".join(a) for a, _ in BAD_CLI_PROMPTS])
def test_segment_refuses_bad_prompt_arguments(photo, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as info:  # argparse: exit 2 with usage and one error line
        main(["segment", str(photo), "--out", str(tmp_path / "m.png")] + args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"samkit segment: error: argument {args[0]}: ") and message in last
    assert "Traceback" not in err and not (tmp_path / "m.png").exists()


def test_segment_refuses_points_far_outside_before_loading_the_model(photo, tmp_path, capsys):
    for args, message in ((["--point", "1000,10"], "--point has a point (x=1000, y=10) far outside the image: "
                                                    "coordinates are pixels of the 90 x 140 image"),
                          (["--box", "0,0,10,500"], "--box has a point (x=10, y=500) far outside the image")):
        assert main(["segment", str(photo), "--out", str(tmp_path / "m.png")] + args) == 2
        out, err = capsys.readouterr()
        assert err.strip().splitlines() == [f"samkit segment: error: {err.strip()[len('samkit segment: error: '):]}"]
        assert message in err and "model:" not in out


def test_segment_accepts_labels_written_as_floats(photo, tmp_path, capsys):
    out = tmp_path / "m.png"
    assert main(["segment", str(photo), "--point", "40,30,1.0", "--point", "100,60,0", "--box", "10,10,10,80",
                 "--out", str(out)]) == 0
    assert np.array(Image.open(out)).shape == (90, 140)


def test_segment_errors_in_a_subprocess_have_no_traceback(photo, tmp_path):
    cases = [(["--point", "10,10,0.5"], "LABEL must be 1 (object) or 0 (background)"),
             (["--point=-500,10"], "--point has a point (x=-500, y=10) far outside the image")]
    for args, message in cases:
        r = subprocess.run([sys.executable, "-m", "samkit.cli.main", "segment", str(photo), "--out",
                            str(tmp_path / "m.png")] + args, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert r.returncode == 2, r.stderr
        assert "Traceback" not in r.stderr
        assert r.stderr.strip().splitlines()[-1].startswith("samkit segment: error: ") and message in r.stderr


# ---------------------------------------------------------------- generator options through the CLI
BAD_CLI_GENERATOR = [
    (["--points-per-side", "0"], "points_per_side must be an integer in 1..1024, got 0"),
    (["--points-per-side", "-3"], "points_per_side must be an integer in 1..1024, got -3"),
    (["--points-per-batch", "0"], "points_per_batch must be an integer >= 1, got 0"),
    (["--pred-iou-thresh", "-0.5"], "pred_iou_thresh must be a number in [0, 1]"),
    (["--stability-score-thresh", "1.5"], "stability_score_thresh must be a number in [0, 1]"),
    (["--box-nms-thresh", "nan"], "box_nms_thresh must be a number in [0, 1]"),
    (["--crop-n-layers", "50"], "crop_n_layers must be an integer in 0..4, got 50"),
    (["--crop-n-layers", "-1"], "crop_n_layers must be an integer in 0..4, got -1"),
    (["--min-mask-region-area", "-1"], "min_mask_region_area must be a number >= 0, got -1"),
]


@pytest.mark.parametrize("command", ["auto", "annotate"])
@pytest.mark.parametrize("args,message", BAD_CLI_GENERATOR, ids=[" ".join(a) for a, _ in BAD_CLI_GENERATOR])
def test_auto_and_annotate_refuse_bad_options_before_loading_the_model(photo, tmp_path, capsys, command, args,
                                                                       message):
    target = str(photo) if command == "auto" else str(photo.parent)
    t0 = time.perf_counter()
    assert main([command, target, "--out", str(tmp_path / "out")] + args) == 2
    out, err = capsys.readouterr()
    assert err.strip().splitlines() == [f"samkit {command}: error: {err.strip().split('error: ', 1)[1]}"]
    assert message in err and "model:" not in out and time.perf_counter() - t0 < 5.0


def test_auto_prints_its_thresholds_and_why_nothing_survived(photo, tmp_path, capsys):
    assert main(["auto", str(photo), "--out", str(tmp_path / "a"), "--points-per-side", "4"]) == 0
    out = capsys.readouterr().out
    assert "thresholds: pred_iou_thresh=0.6 (samkit_nano's config), stability_score_thresh=0.8 " \
           "(samkit_nano's config)" in out
    assert main(["auto", str(photo), "--out", str(tmp_path / "b"), "--points-per-side", "4",
                 "--pred-iou-thresh", "1"]) == 0
    out = capsys.readouterr().out
    assert "thresholds: pred_iou_thresh=1 (given), stability_score_thresh=0.8 (samkit_nano's config)" in out
    assert "0 masks in" in out
    assert "no mask kept: none of the 48 candidates has a predicted IoU above pred_iou_thresh=1 (the best has " in out
    assert "lower --pred-iou-thresh to " in out
    (tmp_path / "in").mkdir()
    Image.open(photo).save(tmp_path / "in" / "p.png")
    assert main(["annotate", str(tmp_path / "in"), "--out", str(tmp_path / "c"), "--points-per-side", "4",
                 "--pred-iou-thresh", "1"]) == 0
    assert "the last image: no mask kept: none of the 48 candidates" in capsys.readouterr().out


def test_auto_on_a_one_pixel_image_with_crops(tmp_path, capsys):
    path = tmp_path / "dot.png"
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(path)
    assert main(["auto", str(path), "--out", str(tmp_path / "o"), "--points-per-side", "2",
                 "--crop-n-layers", "1"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["samkit auto: error: the image (1 x 1 pixels, H x W) is too small for "
                                        "crop_n_layers=1: crop [0, 1, 1, 1] (x0, y0, x1, y1) of crop layer 1 is "
                                        "empty; use fewer crop layers (crop_n_layers=0 works for any image size) "
                                        "or a larger image"]
