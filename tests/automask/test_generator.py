"""AutoMaskGenerator vs the official SAM2AutomaticMaskGenerator's algorithm on the same logits.

Both generators run on one stand-in predictor that returns deterministic blob-shaped logits
(with noise that makes holes and specks, and values quantised so that many pixels sit
exactly on a threshold). Given equal logits, every record must be equal: same masks in the
same order, same boxes, scores and points, bit for bit. The model itself is tested
elsewhere; a slow test at the end runs both on a real (random-weight) model.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from samkit.automask import AutoMaskConfig, AutoMaskGenerator
from samkit.errors import ConfigError
from samkit.image_predictor import CoordTransforms

amg_mod = pytest.importorskip("sam2.automatic_mask_generator")


class BlobPredictor:
    """Stands in for :class:`~samkit.image_predictor.ImagePredictor`: low-res logits are
    blobs of three sizes around each point plus a noise field that depends on the image."""

    def __init__(self, low_res: int = 256, max_hole_area: float = 0.0) -> None:
        self._transforms = CoordTransforms(1024, 0.0, max_hole_area, max_hole_area)
        self.mask_threshold = 0.0
        self.device = torch.device("cpu")
        self.low = low_res
        self.calls = 0

    def set_image(self, image: np.ndarray) -> None:
        self._orig_hw = [tuple(image.shape[:2])]
        seed = int(image.astype(np.int64).sum()) % (2**31)
        g = torch.Generator().manual_seed(seed)
        coarse = torch.randn(1, 1, self.low // 16, self.low // 16, generator=g) * 4
        self._field = F.interpolate(coarse, size=(self.low, self.low), mode="bilinear", align_corners=False)[0, 0]
        self._field += (torch.rand(self.low, self.low, generator=g) < 0.002) * 15.0  # specks

    def reset_predictor(self) -> None:
        pass

    def predict_low_res(self, point_coords, point_labels, boxes=None, mask_input=None, multimask_output=True,
                        img_idx=-1):
        self.calls += 1
        p = point_coords[:, 0, :] * (self.low / 1024)  # B x 2 (x, y) in low-res pixels
        ys = torch.arange(self.low, dtype=torch.float32)
        d2 = (ys[None, None, :] - p[:, 0, None, None]) ** 2 + (ys[None, :, None] - p[:, 1, None, None]) ** 2
        wobble = 1 + 0.5 * torch.frac(p[:, 0] * 0.37 + p[:, 1] * 0.11)
        radii = torch.tensor([6.0, 16.0, 40.0])[None, :] * wobble[:, None]  # B x 3
        steep = torch.tensor([50.0, 50.0, 12.0])[None, :, None, None]  # the largest blob is soft
        logits = (steep * (1 - d2[:, None] / radii[:, :, None, None] ** 2)).clamp(-20, 25) + self._field
        quantised = (torch.arange(len(p)) % 2 == 0)[:, None, None, None]
        logits = torch.where(quantised, torch.round(logits * 4) / 4, logits)
        k = torch.arange(3, dtype=torch.float32)
        iou = 0.5 + 0.5 * torch.sin(p[:, :1] * 0.7 + p[:, 1:] * 1.3 + k)
        if mask_input is not None:
            logits = 0.5 * logits[:, 1:2] + 0.5 * mask_input
            iou = iou[:, 1:2] * 0.9 + 0.1
        elif not multimask_output:
            logits, iou = logits[:, 1:2], iou[:, 1:2]
        return logits.contiguous(), iou.contiguous()

    def _predict(self, point_coords, point_labels, boxes=None, mask_input=None, multimask_output=True,
                 return_logits=False, img_idx=-1):
        low, iou = self.predict_low_res(point_coords, point_labels, boxes, mask_input, multimask_output, img_idx)
        masks = self._transforms.postprocess_masks(low, self._orig_hw[img_idx])
        if not return_logits:
            masks = masks > self.mask_threshold
        return masks, iou, low.clamp(-32.0, 32.0)


def _image(h: int = 300, w: int = 420) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _oracle_records(image: np.ndarray, **kwargs) -> list[dict]:
    area = kwargs.get("min_mask_region_area", 0)
    gen = amg_mod.SAM2AutomaticMaskGenerator(types.SimpleNamespace(image_size=1024), **kwargs)
    gen.predictor = BlobPredictor(max_hole_area=area)
    return gen.generate(image)


def _assert_same_records(ours: list[dict], ref: list[dict]) -> None:
    assert len(ours) == len(ref)
    for i, (a, b) in enumerate(zip(ours, ref)):
        assert set(a) == set(b)
        for key in b:
            if isinstance(b[key], np.ndarray):
                assert np.array_equal(a[key], b[key]), (i, key)
            else:
                assert a[key] == b[key], (i, key, a[key], b[key])


BASE = dict(points_per_side=8, pred_iou_thresh=0.6, stability_score_thresh=0.85, stability_score_offset=1.0)

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
    image = _image()
    ref = _oracle_records(image, **kwargs)
    gen = AutoMaskGenerator(BlobPredictor(), **kwargs)
    ours = gen.generate(image)
    assert len(ref) > (0 if case in ("point_grids", "default_thresholds") else 2)
    _assert_same_records(ours, ref)


def test_large_image_upsampling_exact():
    """A bigger image: many full-size pixels per low-res pixel."""
    kwargs = dict(BASE, points_per_side=5)
    image = _image(760, 1010)
    _assert_same_records(AutoMaskGenerator(BlobPredictor(), **kwargs).generate(image),
                         _oracle_records(image, **kwargs))


def test_records_fields_and_types():
    image = _image()
    recs = AutoMaskGenerator(BlobPredictor(), **BASE).generate(image)
    assert recs
    r = recs[0]
    assert r["segmentation"].shape == image.shape[:2] and r["segmentation"].dtype == bool
    assert isinstance(r["area"], int) and r["area"] == int(r["segmentation"].sum())
    assert len(r["bbox"]) == 4 and all(isinstance(v, float) for v in r["bbox"])
    assert r["crop_box"] == [0.0, 0.0, float(image.shape[1]), float(image.shape[0])]
    assert len(r["point_coords"]) == 1 and len(r["point_coords"][0]) == 2


def test_no_mask_survives():
    out = AutoMaskGenerator(BlobPredictor(), points_per_side=4, pred_iou_thresh=1.0).generate(_image())
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
    image = _image(200, 260)
    # random weights give weak, low-contrast logits: thresholds to match
    kwargs = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.2, stability_score_offset=0.02,
                  box_nms_thresh=0.99, mask_threshold=0.1)
    predictor = ImagePredictor(model)
    ref_gen = amg_mod.SAM2AutomaticMaskGenerator(types.SimpleNamespace(image_size=1024), **kwargs)
    ref_gen.predictor = predictor
    ref = ref_gen.generate(image)
    assert len(ref) >= 1
    _assert_same_records(AutoMaskGenerator(predictor, **kwargs).generate(image), ref)


def test_iou_first_path_gives_the_records_of_the_full_path(monkeypatch):
    """With an IoU threshold, samkit asks the predictor for the masks of points that have a
    candidate above it only; the records equal those of decoding every mask."""
    samkit = pytest.importorskip("samkit")
    from samkit.image_predictor import ImagePredictor
    from tests.test_image_predictor import SMALL

    torch.manual_seed(0)
    predictor = ImagePredictor(samkit.build_model(SMALL))
    image = _image(180, 240)
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
    _assert_same_records(fast, full)
