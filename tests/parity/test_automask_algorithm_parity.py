"""AutoMaskGenerator vs the official SAM2AutomaticMaskGenerator's algorithm on the same logits.

Both generators run on one stand-in predictor that returns deterministic blob-shaped logits
(with noise that makes holes and specks, and values quantised so that many pixels sit
exactly on a threshold). Given equal logits, every record must be equal: same masks in the
same order, same boxes, scores and points, bit for bit. A slow test runs both on a real
(random-weight) model."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from samkit.automask import AutoMaskGenerator
from tests.automask.stand_ins import BASE, BlobPredictor, assert_same_records, random_image


amg_mod = pytest.importorskip("sam2.automatic_mask_generator")


def _oracle_records(image: np.ndarray, **kwargs) -> list[dict]:
    area = kwargs.get("min_mask_region_area", 0)
    gen = amg_mod.SAM2AutomaticMaskGenerator(types.SimpleNamespace(image_size=1024), **kwargs)
    gen.predictor = BlobPredictor(max_hole_area=area)
    return gen.generate(image)


CASES = {
    "default_thresholds": dict(points_per_side=8),
    "binary": BASE,
    "uncompressed_rle": dict(BASE, output_mode="uncompressed_rle"),
    "coco_rle": dict(BASE, output_mode="coco_rle"),
    "single_mask": dict(BASE, multimask_output=False, points_per_batch=7),
    "no_filters": dict(points_per_side=5, pred_iou_thresh=0.0, stability_score_thresh=0.0),
    "mask_threshold": dict(BASE, mask_threshold=2.5, stability_score_offset=0.5),
    "m2m": dict(BASE, points_per_side=6, use_m2m=True, points_per_batch=16),
    "holes": dict(BASE, min_mask_region_area=40),
    "crops": dict(BASE, points_per_side=6, crop_n_layers=1, crop_n_points_downscale_factor=2),
    "two_crop_layers": dict(BASE, points_per_side=4, crop_n_layers=2, crop_overlap_ratio=0.2),
    "point_grids": dict(BASE, points_per_side=None,
                        point_grids=[np.array([[0.5, 0.5], [0.1, 0.9], [0.25, 0.3], [0.8, 0.2], [0.6, 0.61]])]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_generate_equals_official_algorithm(case):
    if case == "coco_rle":
        pytest.importorskip("pycocotools")
    kwargs = CASES[case]
    image = random_image()
    ref = _oracle_records(image, **kwargs)
    gen = AutoMaskGenerator(BlobPredictor(), **kwargs)
    ours = gen.generate(image)
    assert len(ref) > (0 if case in ("point_grids", "default_thresholds") else 2)
    assert_same_records(ours, ref)


def test_large_image_upsampling_exact():
    """A bigger image: many full-size pixels per low-res pixel."""
    kwargs = dict(BASE, points_per_side=5)
    image = random_image(760, 1010)
    assert_same_records(AutoMaskGenerator(BlobPredictor(), **kwargs).generate(image),
                         _oracle_records(image, **kwargs))


@pytest.mark.slow
@pytest.mark.parity
def test_real_model_same_records_as_official_algorithm():
    """The official algorithm fed by samkit's predictor gives the same records as ours."""
    samkit = pytest.importorskip("samkit")
    from samkit.image_predictor import ImagePredictor

    model = samkit.build_model("sam2.1_hiera_tiny")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    image = random_image(200, 260)
    # random weights give weak, low-contrast logits: thresholds to match
    kwargs = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.2, stability_score_offset=0.02,
                  box_nms_thresh=0.99, mask_threshold=0.1)
    predictor = ImagePredictor(model)
    ref_gen = amg_mod.SAM2AutomaticMaskGenerator(types.SimpleNamespace(image_size=1024), **kwargs)
    ref_gen.predictor = predictor
    ref = ref_gen.generate(image)
    assert len(ref) >= 1
    assert_same_records(AutoMaskGenerator(predictor, **kwargs).generate(image), ref)
