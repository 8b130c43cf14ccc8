"""Tests of samkit.imageio: image conversion, loading and the image predictor's transform."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from samkit.errors import ImageError, SamkitError
from samkit.imageio import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    load_image,
    normalize,
    preprocess,
    to_rgb_uint8,
)
from tests.helpers import random_rgb


# --------------------------------------------------------------------- to_rgb_uint8
def test_uint8_rgb_is_returned_without_copy() -> None:
    img = random_rgb()
    out = to_rgb_uint8(img)
    assert out is img


def test_non_contiguous_uint8_becomes_contiguous() -> None:
    img = random_rgb()[:, ::2]
    out = to_rgb_uint8(img)
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize("shape", [(12, 17), (12, 17, 1)])
def test_grayscale_repeated_to_three_channels(shape: tuple[int, ...]) -> None:
    gray = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    out = to_rgb_uint8(gray)
    assert out.shape == (12, 17, 3) and out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray.reshape(12, 17))


def test_rgba_drops_alpha() -> None:
    rgba = np.random.default_rng(2).integers(0, 256, size=(5, 6, 4), dtype=np.uint8)
    np.testing.assert_array_equal(to_rgb_uint8(rgba), rgba[..., :3])


def test_uint16_scaled_by_257_and_rounded() -> None:
    img = np.zeros((2, 3, 3), dtype=np.uint16)
    img[0, :, 0] = [0, 257, 65535]
    img[1, :, 0] = [128, 129, 385]  # 0.498 -> 0, 0.502 -> 1, 1.498 -> 1
    out = to_rgb_uint8(img)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 255])
    np.testing.assert_array_equal(out[1, :, 0], [0, 1, 1])


def test_float_scaled_by_255_and_rounded() -> None:
    img = np.array([[[0.0, 0.5, 1.0], [0.1, 0.002, 0.998]]], dtype=np.float32)
    out = to_rgb_uint8(img)
    np.testing.assert_array_equal(out, [[[0, 128, 255], [26, 1, 254]]])


def test_other_integer_dtypes_in_range_accepted() -> None:
    img = random_rgb().astype(np.int64)
    np.testing.assert_array_equal(to_rgb_uint8(img), img.astype(np.uint8))


@pytest.mark.parametrize(
    "image, words",
    [
        (np.full((4, 4, 3), 1.5, dtype=np.float32), "[0, 1]"),
        (np.full((4, 4, 3), -0.1, dtype=np.float64), "[0, 1]"),
        (np.full((4, 4, 3), np.nan, dtype=np.float32), "NaN"),
        (np.full((4, 4, 3), 300, dtype=np.int32), "0..255"),
        (np.full((4, 4, 3), -1, dtype=np.int16), "0..255"),
        (np.zeros((4, 4), dtype=bool), "mask"),
        (np.zeros((4, 4, 2), dtype=np.uint8), "(4, 4, 2)"),
        (np.zeros((4, 4, 5), dtype=np.uint8), "(4, 4, 5)"),
        (np.zeros((2, 4, 4, 3), dtype=np.uint8), "(2, 4, 4, 3)"),
        (np.zeros((4,), dtype=np.uint8), "(4,)"),
        (np.zeros((0, 4, 3), dtype=np.uint8), "empty"),
        (np.zeros((4, 4, 3), dtype=np.complex64), "complex64"),
        ([[1, 2, 3]], "list"),
        (None, "NoneType"),
        (torch.zeros(3, 4, 4), "permute"),
    ],
)
def test_rejected_images_say_what_was_received(image: object, words: str) -> None:
    with pytest.raises(ImageError) as info:
        to_rgb_uint8(image)  # type: ignore[arg-type]
    message = str(info.value)
    assert words in message
    assert "accepted" in message
    assert isinstance(info.value, SamkitError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "LA", "P", "CMYK", "1", "YCbCr"])
def test_pil_modes_match_pil_rgb_conversion(mode: str) -> None:
    base = Image.fromarray(random_rgb(20, 30))
    img = base.convert(mode)
    out = to_rgb_uint8(img)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.asarray(img.convert("RGB")))


def test_pil_16_bit_is_scaled() -> None:
    arr = np.array([[0, 257, 65535, 25700]], dtype=np.uint16)
    img = Image.fromarray(arr)
    assert img.mode.startswith("I;16")
    out = to_rgb_uint8(img)
    np.testing.assert_array_equal(out[..., 0], [[0, 1, 255, 100]])
    np.testing.assert_array_equal(out[..., 2], out[..., 0])


def test_pil_int32_and_float_modes() -> None:
    eight = Image.fromarray(np.array([[0, 10, 255]], dtype=np.int32))
    assert eight.mode == "I"
    np.testing.assert_array_equal(to_rgb_uint8(eight)[..., 1], [[0, 10, 255]])
    sixteen = Image.fromarray(np.array([[0, 514, 65535]], dtype=np.int32))
    np.testing.assert_array_equal(to_rgb_uint8(sixteen)[..., 1], [[0, 2, 255]])
    as_float = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert as_float.mode == "F"
    np.testing.assert_array_equal(to_rgb_uint8(as_float)[..., 0], [[0, 128, 255]])
    with pytest.raises(ImageError, match=r"\[0, 1\]"):
        to_rgb_uint8(Image.fromarray(np.array([[0.0, 7.0]], dtype=np.float32)))


# --------------------------------------------------------------------- load_image
def test_load_png_round_trip(tmp_path: Path) -> None:
    img = random_rgb(9, 11)
    path = tmp_path / "a.png"
    Image.fromarray(img).save(path)
    np.testing.assert_array_equal(load_image(path), img)
    np.testing.assert_array_equal(load_image(str(path)), img)


def test_load_rgba_and_grayscale_png(tmp_path: Path) -> None:
    rgba = np.random.default_rng(3).integers(0, 256, size=(6, 7, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(load_image(tmp_path / "rgba.png"), rgba[..., :3])
    gray = rgba[..., 0]
    Image.fromarray(gray).save(tmp_path / "gray.png")
    assert load_image(tmp_path / "gray.png").shape == (6, 7, 3)


def test_load_applies_exif_orientation(tmp_path: Path) -> None:
    img = random_rgb(4, 8)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs a 90 degree clockwise turn
    path = tmp_path / "rot.png"
    Image.fromarray(img).save(path, exif=exif)
    assert load_image(path).shape == (8, 4, 3)
    np.testing.assert_array_equal(load_image(path, exif_transpose=False), img)


@pytest.mark.parametrize(
    "content", [b"", b"not an image at all", b"\xff\xd8\xff\xe0" + b"\x00" * 20]
)
def test_load_corrupt_file_names_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError, match="broken.jpg"):
        load_image(path)


def test_load_truncated_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "full.jpg"
    Image.fromarray(random_rgb(64, 64)).save(path, quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ImageError, match="cut.jpg"):
        load_image(cut)


def test_load_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="does not exist"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


# --------------------------------------------------------------------- preprocess
def test_normalize_uses_imagenet_statistics() -> None:
    x = torch.rand(2, 3, 4, 5)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    torch.testing.assert_close(normalize(x), (x - mean) / std, rtol=0, atol=0)


def test_preprocess_shape_dtype_and_manual_reference() -> None:
    img = random_rgb(30, 50)
    out = preprocess(img, 64)
    assert out.shape == (1, 3, 64, 64) and out.dtype == torch.float32
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    x = torch.nn.functional.interpolate(
        x, (64, 64), mode="bilinear", align_corners=False, antialias=True
    )
    torch.testing.assert_close(out, normalize(x), rtol=0, atol=1e-6)


def test_preprocess_accepts_any_image_and_rejects_bad_size() -> None:
    img = random_rgb(20, 20)
    torch.testing.assert_close(preprocess(Image.fromarray(img), 32), preprocess(img, 32))
    with pytest.raises(ImageError):
        preprocess(img, 0)
