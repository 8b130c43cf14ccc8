"""A stand-in image predictor for generator tests: deterministic blob-shaped logits."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from samkit.image_predictor import CoordTransforms


# generator settings that keep a few dozen of the stand-in's masks
BASE = dict(points_per_side=8, pred_iou_thresh=0.6, stability_score_thresh=0.85, stability_score_offset=1.0)


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


def random_image(h: int = 300, w: int = 420) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def assert_same_records(ours: list[dict], ref: list[dict]) -> None:
    """Two generators' records are equal: same masks in the same order, bit for bit."""
    assert len(ours) == len(ref)
    for i, (a, b) in enumerate(zip(ours, ref)):
        assert set(a) == set(b)
        for key in b:
            if isinstance(b[key], np.ndarray):
                assert np.array_equal(a[key], b[key]), (i, key)
            else:
                assert a[key] == b[key], (i, key, a[key], b[key])
