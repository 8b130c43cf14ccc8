"""ImagePredictor behaviour: input conversion, shapes, batching and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import samkit
from samkit.configs import ModelConfig
from samkit.errors import ImageError, PromptError, SamkitError, StateError
from samkit.image_predictor import ImagePredictor
from samkit.model.hiera import HieraConfig
from samkit.model.memory import MemoryConfig

SMALL = ModelConfig(name="test_small", image_size=256,
                    hiera=HieraConfig(embed_dim=32, num_heads=1, stages=(1, 1, 2, 1), global_att_blocks=(3,),
                                      window_pos_embed_bkg_spatial_size=(4, 4)),
                    memory=MemoryConfig(num_layers=1, dim_feedforward=128))


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    return ImagePredictor(samkit.build_model(SMALL))


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=(120, 200, 3), dtype=np.uint8)


def test_shapes(predictor, image):
    predictor.set_image(image)
    masks, scores, low = predictor.predict(point_coords=[[50, 60]], point_labels=[1])
    assert masks.shape == (3, 120, 200) and scores.shape == (3,) and low.shape == (3, 64, 64)
    assert masks.dtype == np.float32 and set(np.unique(masks)) <= {0.0, 1.0}
    masks, scores, low = predictor.predict(box=[10, 10, 100, 90], multimask_output=False)
    assert masks.shape == (1, 120, 200) and scores.shape == (1,)
    emb = predictor.get_image_embedding()
    assert tuple(emb.shape) == (1, 256, 16, 16)


def test_many_boxes_in_one_decoder_pass(predictor, image, monkeypatch):
    predictor.set_image(image)
    rng = np.random.default_rng(1)
    xy = rng.integers(0, 100, size=(100, 2))
    boxes = np.concatenate([xy, xy + 50], axis=1)
    calls = []
    real = predictor.model.sam_mask_decoder.forward

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(predictor.model.sam_mask_decoder, "forward", spy)
    masks, scores, low = predictor.predict(box=boxes, multimask_output=False)
    assert len(calls) == 1
    assert masks.shape == (100, 1, 120, 200) and scores.shape == (100, 1) and low.shape == (100, 1, 64, 64)
    # each batched result equals the same box predicted alone
    single = predictor.predict(box=boxes[7], multimask_output=False)
    assert np.abs(single[2] - low[7]).max() < 1e-4


def test_input_conversions(predictor, image):
    predictor.set_image(image)
    ref = predictor.get_image_embedding().clone()
    predictor.set_image(Image.fromarray(image))
    assert torch.allclose(predictor.get_image_embedding(), ref)
    rgba = np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], axis=2)
    predictor.set_image(rgba)
    assert torch.allclose(predictor.get_image_embedding(), ref)
    predictor.set_image((image.astype(np.uint16) * 257))
    assert torch.allclose(predictor.get_image_embedding(), ref, atol=1e-5)
    gray = image[..., 0]
    predictor.set_image(gray)
    predictor.set_image(np.stack([gray] * 3, -1))
    ref_gray = predictor.get_image_embedding().clone()
    predictor.set_image(gray)
    assert torch.allclose(predictor.get_image_embedding(), ref_gray)


@pytest.mark.parametrize("bad", [np.zeros((10, 10, 2), np.uint8), np.zeros((2, 3, 10, 10), np.uint8),
                                 np.zeros((0, 10, 3), np.uint8), "not an image", None])
def test_bad_images(predictor, bad):
    with pytest.raises(ImageError):
        predictor.set_image(bad)


def test_predict_before_set_image():
    p = ImagePredictor(samkit.build_model(SMALL))
    with pytest.raises(StateError, match="set_image"):
        p.predict(point_coords=[[1, 1]], point_labels=[1])
    with pytest.raises(RuntimeError):  # official code catches RuntimeError
        p.get_image_embedding()


@pytest.mark.parametrize("kwargs,match", [
    (dict(point_coords=[[1, 2]]), "together"),
    (dict(point_coords=[[1, 2, 3]], point_labels=[1]), "N x 2"),
    (dict(point_coords=[[1, 2], [3, 4]], point_labels=[1]), "one label per point"),
    (dict(point_coords=[[1, 2]], point_labels=[7]), r"\{-1, 0, 1, 2, 3\}"),
    (dict(point_coords=[[np.nan, 2]], point_labels=[1]), "NaN"),
    (dict(box=[1, 2, 3]), "box must have shape"),
    (dict(box=[0, 0, np.inf, 5]), "NaN or infinite"),
    (dict(point_coords=[[1, 2]], point_labels=[1], mask_input=np.zeros((1, 32, 32))), "mask_input must have shape"),
    (dict(box=[[0, 0, 5, 5], [1, 1, 6, 6]], point_coords=[[[1, 2]]] * 3, point_labels=[[1]] * 3), "disagree"),
])
def test_bad_prompts(predictor, image, kwargs, match):
    predictor.set_image(image)
    with pytest.raises(PromptError, match=match) as info:
        predictor.predict(**kwargs)
    assert isinstance(info.value, (SamkitError, ValueError))


def test_batch_api(predictor, image):
    predictor.set_image_batch([image, image[:80]])
    masks, scores, low = predictor.predict_batch(point_coords_batch=[[[5, 5]], [[10, 10]]],
                                                 point_labels_batch=[[1], [1]])
    assert masks[0].shape == (3, 120, 200) and masks[1].shape == (3, 80, 200)
    with pytest.raises(StateError, match="predict_batch"):
        predictor.predict(point_coords=[[1, 1]], point_labels=[1])
    with pytest.raises(PromptError, match="2 images"):
        predictor.predict_batch(point_coords_batch=[[[5, 5]]], point_labels_batch=[[1]])
    predictor.reset_predictor()
    with pytest.raises(StateError):
        predictor.predict_batch(point_coords_batch=[[[5, 5]]], point_labels_batch=[[1]])


def test_hole_and_speck_removal_on_cpu():
    from samkit.image_predictor import CoordTransforms

    logits = torch.full((1, 1, 32, 32), -5.0)
    logits[..., 4:20, 4:20] = 5.0
    logits[..., 10:12, 10:12] = -5.0   # a 4-pixel hole
    logits[..., 28:30, 28:30] = 5.0    # a 4-pixel speck
    plain = CoordTransforms(32).postprocess_masks(logits, (32, 32)) > 0
    assert not plain[0, 0, 10, 10] and plain[0, 0, 28, 28]
    cleaned = CoordTransforms(32, max_hole_area=4, max_sprinkle_area=4).postprocess_masks(logits, (32, 32)) > 0
    assert cleaned[0, 0, 10, 10] and not cleaned[0, 0, 28, 28]
    assert cleaned[0, 0, 4:20, 4:20].all() and cleaned.sum() == 16 * 16
    small = CoordTransforms(32, max_hole_area=3, max_sprinkle_area=3).postprocess_masks(logits, (32, 32)) > 0
    assert not small[0, 0, 10, 10] and small[0, 0, 28, 28]


def test_masks_of_selected_prompts_only(predictor, image):
    """predict_low_res_selected: the IoUs of every prompt, the masks of the selected ones,
    equal to a full decoder run's."""
    predictor.set_image(image)
    rng = np.random.default_rng(2)
    coords = torch.as_tensor(rng.uniform(0, 256, size=(24, 1, 2)), dtype=torch.float32)
    labels = torch.ones(24, 1, dtype=torch.int)
    full_low, full_iou = predictor.predict_low_res(coords, labels, multimask_output=True)
    wanted = full_iou.max(dim=1).values > full_iou.max(dim=1).values.median()  # about half
    seen = []

    def select(iou):
        seen.append(iou.clone())
        return iou.max(dim=1).values > iou.max(dim=1).values.median()

    low, iou, rows = predictor.predict_low_res_selected(coords, labels, select)
    assert torch.equal(seen[0], full_iou) and torch.equal(iou, full_iou)
    assert rows.tolist() == torch.nonzero(wanted).flatten().tolist() and 0 < len(rows) < 24
    assert low.shape == (len(rows), 3, 64, 64)
    assert (low - full_low[rows]).abs().max() < 1e-5
    # nothing selected: no masks, still every IoU
    low, iou, rows = predictor.predict_low_res_selected(coords, labels, lambda i: torch.zeros(len(i), dtype=torch.bool))
    assert low.shape == (0, 3, 64, 64) and rows.numel() == 0 and torch.equal(iou, full_iou)
    with pytest.raises(ValueError, match="multimask_output=True"):
        predictor.model.decode(predictor._features["image_embed"][-1][None],
                               [f[-1][None] for f in predictor._features["high_res_feats"]],
                               (coords, labels), multimask_output=False, select=lambda i: i[:, 0] > 0)
