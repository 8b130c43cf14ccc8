"""samkit.imageio's transforms vs the official image transform and video frame loader."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from samkit.imageio import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    load_image,
    preprocess,
    preprocess_video_frame,
)
from tests.helpers import random_rgb


@pytest.mark.parity
@pytest.mark.parametrize("name", ["astronaut", "chelsea"])
def test_preprocess_matches_official_image_transform(name: str) -> None:
    transforms = pytest.importorskip("sam2.utils.transforms")
    skdata = pytest.importorskip("skimage.data")
    image = getattr(skdata, name)()
    expected = transforms.SAM2Transforms(resolution=1024, mask_threshold=0.0)(image)  # 3 x S x S
    got = preprocess(image, 1024)
    assert got.shape == (1, 3, 1024, 1024)
    assert (got[0] - expected).abs().max().item() <= 1e-5


@pytest.mark.parity
def test_preprocess_video_frame_matches_official_jpeg_loader(tmp_path: Path) -> None:
    misc = pytest.importorskip("sam2.utils.misc")
    path = tmp_path / "0.jpg"
    Image.fromarray(random_rgb(37, 53)).save(path)
    expected, _, _ = misc._load_img_as_tensor(str(path), 96)  # 3 x S x S float64 in [0, 1]
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    expected = (expected.float() - mean) / std
    got = preprocess_video_frame(load_image(path), 96)
    assert got.shape == (3, 96, 96) and got.dtype == torch.float32
    assert torch.equal(got, expected)
