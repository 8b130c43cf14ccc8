"""The evaluation click vs the official click sampler (sam2.modeling.sam2_utils)."""

from __future__ import annotations

import pytest
import torch

from samkit.prompts import sample_center_error_click
from tests.helpers import ellipse_masks


@pytest.mark.parity
def test_center_error_click_matches_oracle() -> None:
    pytest.importorskip("cv2")
    sam2_utils = pytest.importorskip("sam2.modeling.sam2_utils")
    gts = ellipse_masks(12, seed=21)
    preds = ellipse_masks(12, seed=22)
    preds[3] = gts[3]  # a perfect prediction
    ref_points, ref_labels = sam2_utils.sample_one_point_from_error_center(
        gts[:, None], preds[:, None]
    )
    points, labels = sample_center_error_click(gts, preds)
    assert torch.equal(points, ref_points)
    assert torch.equal(labels, ref_labels)
