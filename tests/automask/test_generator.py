"""AutoMaskGenerator vs the official SAM2AutomaticMaskGenerator's algorithm on the same logits.

Both generators run on one stand-in predictor that returns deterministic blob-shaped logits
(with noise that makes holes and specks, and values quantised so that many pixels sit
exactly on a threshold). Given equal logits, every record must be equal: same masks in the
same order, same boxes, scores and points, bit for bit. The model itself is tested
elsewhere; a slow test at the end runs both on a real (random-weight) model.
"""

from __future__ import annotations


import numpy as np
import pytest
import torch

from samkit.automask import AutoMaskConfig, AutoMaskGenerator
from samkit.errors import ConfigError
from tests.automask.stand_ins import BASE, BlobPredictor, assert_same_records, random_image


def test_records_fields_and_types():
    image = random_image()
    recs = AutoMaskGenerator(BlobPredictor(), **BASE).generate(image)
    assert recs
    r = recs[0]
    assert r["segmentation"].shape == image.shape[:2] and r["segmentation"].dtype == bool
    assert isinstance(r["area"], int) and r["area"] == int(r["segmentation"].sum())
    assert len(r["bbox"]) == 4 and all(isinstance(v, float) for v in r["bbox"])
    assert r["crop_box"] == [0.0, 0.0, float(image.shape[1]), float(image.shape[0])]
    assert len(r["point_coords"]) == 1 and len(r["point_coords"][0]) == 2


def test_no_mask_survives():
    out = AutoMaskGenerator(BlobPredictor(), points_per_side=4, pred_iou_thresh=1.0).generate(random_image())
    assert out == []


def test_config_errors_and_attributes():
    with pytest.raises(ConfigError):
        AutoMaskGenerator(BlobPredictor(), points_per_side=None)
    with pytest.raises(ConfigError):
        AutoMaskGenerator(BlobPredictor(), point_grids=[np.zeros((1, 2))])
    with pytest.raises(ConfigError):
        AutoMaskGenerator(BlobPredictor(), output_mode="png")
    with pytest.raises(ConfigError):
        AutoMaskGenerator(BlobPredictor(), points_per_sid=4)  # typo
    gen = AutoMaskGenerator(BlobPredictor(), points_per_side=4, device="cpu")
    assert gen.pred_iou_thresh == 0.8 and gen.box_nms_thresh == 0.7
    assert len(gen.point_grids) == 1 and gen.point_grids[0].shape == (16, 2)
    gen.pred_iou_thresh = 0.5
    assert gen.config.pred_iou_thresh == 0.5
    defaults = AutoMaskConfig()
    assert (defaults.points_per_side, defaults.points_per_batch, defaults.crop_overlap_ratio) == (32, 64, 512 / 1500)


def test_iou_first_path_gives_the_records_of_the_full_path(monkeypatch):
    """With an IoU threshold, samkit asks the predictor for the masks of points that have a
    candidate above it only; the records equal those of decoding every mask."""
    samkit = pytest.importorskip("samkit")
    from samkit.image_predictor import ImagePredictor
    from tests.test_image_predictor import SMALL

    torch.manual_seed(0)
    predictor = ImagePredictor(samkit.build_model(SMALL))
    image = random_image(180, 240)
    predictor.set_image(image)
    grid = torch.as_tensor(AutoMaskConfig(points_per_side=6).grids()[0] * 256, dtype=torch.float32)
    _, iou = predictor.predict_low_res(grid[:, None], torch.ones(len(grid), 1, dtype=torch.int))
    best = iou.max(dim=1).values
    thresh = float(best.median())  # about half of the points have a candidate above it
    # random weights: candidates overlap heavily, so NMS keeps all (threshold 1)
    kwargs = dict(points_per_side=6, pred_iou_thresh=thresh, stability_score_thresh=0.0, box_nms_thresh=1.0)
    calls = []
    real = ImagePredictor.predict_low_res_selected

    def spy(self, *args, **kw):
        out = real(self, *args, **kw)
        calls.append((len(out[2]), out[1].shape[0]))
        return out

    monkeypatch.setattr(ImagePredictor, "predict_low_res_selected", spy)
    fast = AutoMaskGenerator(predictor, **kwargs).generate(image)
    assert calls and 0 < sum(c[0] for c in calls) < sum(c[1] for c in calls)  # some points skipped
    monkeypatch.delattr(ImagePredictor, "predict_low_res_selected")
    full = AutoMaskGenerator(predictor, **kwargs).generate(image)
    assert len(full) >= 3
    assert_same_records(fast, full)
