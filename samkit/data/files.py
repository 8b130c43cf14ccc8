"""File helpers shared by the dataset readers: folder checks, image and PNG reading, clear errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import numpy as np
from PIL import Image

from samkit.errors import ConfigError, DatasetError, ImageError
from samkit.imageio import IMAGE_EXTENSIONS, load_image, open_image

PathLike = Union[str, os.PathLike]


def require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        parent = path.parent
        inside = sorted(p.name for p in parent.iterdir())[:12] if parent.is_dir() else None
        hint = f"; {str(parent)!r} contains {inside}" if inside is not None else ""
        raise DatasetError(f"{what} folder {str(path)!r} does not exist{hint}")


def read_image(path: Path, shape: Optional[tuple[int, int]] = None) -> np.ndarray:
    """``H x W x 3`` uint8 RGB; when ``shape`` is given the image must have it.

    The stored pixel layout is used first (annotations are drawn on it); if it does not
    match ``shape`` but the EXIF-rotated one does, the rotated one is used.
    """
    image = load_image(path, exif_transpose=False)
    if shape is None or image.shape[:2] == tuple(shape):
        return image
    rotated = load_image(path, exif_transpose=True)
    if rotated.shape[:2] == tuple(shape):
        return rotated
    raise DatasetError(
        f"image {str(path)!r} is {image.shape[0]} x {image.shape[1]} but its annotation is "
        f"{shape[0]} x {shape[1]}"
    )


def open_array(path: Path) -> np.ndarray:
    """Pixels of a label PNG as stored (palette indices, grey, 16-bit, or RGB(A))."""
    try:
        with open_image(path) as img:
            img.load()
            if img.mode in ("1", "L", "P", "I", "F") or img.mode.startswith("I;16"):
                arr = np.asarray(img)
            elif img.mode == "LA":
                arr = np.asarray(img)[..., 0]
            elif img.mode in ("RGB", "RGBA"):
                arr = np.asarray(img)[..., :3]
            else:
                arr = np.asarray(img.convert("RGB"))
    except ImageError as exc:  # missing, unreadable, too large (checked before decoding)
        raise DatasetError(f"label file: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"cannot read label file {str(path)!r}: {exc}") from exc
    return arr.astype(np.int64) if arr.dtype == np.bool_ else arr


def opencv_rgb(path: Path) -> np.ndarray:
    """``H x W x 3`` uint8 in PIL's RGB order, as OpenCV's colour read sees the pixels
    (palette colours expanded, grey repeated); reverse the last axis for OpenCV's BGR."""
    try:
        with open_image(path) as img:
            img.load()
            if img.mode in ("RGB",):
                return np.asarray(img)
            return np.asarray(img.convert("RGB"))
    except ImageError as exc:  # missing, unreadable, too large (checked before decoding)
        raise DatasetError(f"label file: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"cannot read label file {str(path)!r}: {exc}") from exc


def opencv_channel0(path: Path) -> np.ndarray:
    """``H x W`` first channel of a label PNG in OpenCV's order (blue, or the grey value)."""
    arr = open_array(path)
    if arr.ndim == 2:
        with Image.open(path) as img:
            if img.mode == "P":  # palette: OpenCV reads the colour, not the index
                return opencv_rgb(path)[..., 2]
        return arr
    return arr[..., 2]


def image_files(folder: Path) -> dict[str, Path]:
    """``stem -> path`` for the image files of a folder (first suffix in IMAGE_EXTENSIONS wins)."""
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and p.stem not in found:
            found[p.stem] = p
    return found


def missing_error(what: str, names: list[str], where: Path) -> DatasetError:
    shown = ", ".join(repr(n) for n in names[:5])
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return DatasetError(f"{len(names)} images have no {what} in {str(where)!r}: {shown}{more}")


def stack_masks(masks: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    if not masks:
        return np.zeros((0, *shape), dtype=bool)
    return np.stack(masks).astype(bool, copy=False)


def canonical_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    for c in choices:
        if value.lower() == c.lower():
            return c
    raise ConfigError(f"{what} must be one of {choices}, got {value!r}")


def checked_mask(mask: np.ndarray, shape: tuple[int, ...], path: Path) -> np.ndarray:
    if mask.shape != tuple(shape):
        raise DatasetError(
            f"mask {str(path)!r} is {mask.shape[0]} x {mask.shape[1]} but its image is "
            f"{shape[0]} x {shape[1]}"
        )
    return mask
