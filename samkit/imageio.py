"""Loading images and turning them into model input.

This is the one place where user-facing images (numpy arrays, PIL images, files) become
``H x W x 3`` uint8 RGB arrays, and where those become the normalised tensors the image
encoder reads. The image predictor and the video frame sources both go through here.

Accepted images (:func:`to_rgb_uint8`):

- numpy ``H x W x 3`` (RGB), ``H x W x 4`` (RGBA, alpha dropped), ``H x W`` or ``H x W x 1``
  (grayscale, repeated to three channels);
- dtype uint8 (used as is), uint16 (16-bit, scaled to 8 bit by ``/ 257`` and rounded),
  other integer dtypes whose values lie in ``0..255``, float in ``[0, 1]`` (scaled by 255
  and rounded);
- PIL images of any mode.

Boolean arrays are refused: they are almost always a mask passed where an image was meant.

Image files (:func:`load_image`, :func:`open_image`) larger than :data:`MAX_IMAGE_PIXELS`
pixels are refused from their header, before any pixel is decoded: a small file can claim a
huge size (a "decompression bomb") and would otherwise exhaust memory. Raise the limit for one
call with ``max_pixels=...``, or for a whole run with the environment variable
``SAMKIT_MAX_IMAGE_PIXELS``. PIL's own guard (``PIL.Image.MAX_IMAGE_PIXELS``, which samkit
never changes) still applies on top; its refusals become the same :class:`ImageError`.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from samkit.errors import ConfigError, ImageError

if TYPE_CHECKING:  # the functions that make tensors import torch: reading images needs none
    import torch

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_IMAGE_PIXELS",
    "MAX_IMAGE_PIXELS_ENV",
    "image_pixel_limit",
    "open_image",
    "describe_access_error",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageLike",
    "to_rgb_uint8",
    "load_image",
    "preprocess",
    "preprocess_video_frame",
    "normalize",
]

# file endings read as images by every folder reader (lower case; matched case-insensitively)
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

MAX_IMAGE_PIXELS: int = 178_956_970
"""Largest image file (width x height) that :func:`load_image` reads by default.

It is the size at which PIL's own decompression-bomb guard raises an error with its default
settings (``2 * PIL.Image.MAX_IMAGE_PIXELS`` = ``2 * 89_478_485``, about 13,377 x 13,377), so
every image PIL read before is still read. Such an image takes ~0.5 GB as RGB uint8 and ~2 GB
as the float32 copy the image predictor makes; anything larger is almost always a damaged or
hostile file. Override: ``max_pixels=`` or the ``SAMKIT_MAX_IMAGE_PIXELS`` environment variable.
(PIL itself still warns, ``DecompressionBombWarning``, about images over 89,478,485 pixels.)
"""

MAX_IMAGE_PIXELS_ENV = "SAMKIT_MAX_IMAGE_PIXELS"
"""Environment variable that replaces :data:`MAX_IMAGE_PIXELS` (a positive whole number)."""

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
"""Per-channel mean (RGB, in ``[0, 1]`` units) subtracted before the image encoder."""

IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
"""Per-channel standard deviation (RGB) the image is divided by before the image encoder."""

ImageLike = Union[np.ndarray, Image.Image]
"""What :func:`to_rgb_uint8` accepts: a numpy array or a PIL image."""

_ACCEPTED = (
    "accepted: a PIL image, or a numpy array of shape HxWx3 (RGB), HxWx4 (RGBA), HxW or "
    "HxWx1 (grayscale) with dtype uint8, uint16, another integer dtype with values in "
    "0..255, or float with values in [0, 1]"
)


def _is_tensor(obj: object) -> bool:
    """Whether ``obj`` is a torch tensor (none can exist while torch is not imported)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def _describe(image: object) -> str:
    """A short description of what was received, for error messages."""
    if isinstance(image, np.ndarray):
        return f"a numpy array of shape {tuple(image.shape)} and dtype {image.dtype}"
    if _is_tensor(image):
        return f"a torch.Tensor of shape {tuple(image.shape)} and dtype {image.dtype}"
    if isinstance(image, Image.Image):
        return f"a PIL image of mode {image.mode!r} and size {image.size}"
    return f"an object of type {type(image).__name__}"


def _pil_to_array(image: Image.Image) -> np.ndarray:
    """Pixels of a PIL image, keeping 16-bit and float precision where the mode has it."""
    mode = image.mode
    if mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16)  # H x W, big or little endian -> native
    if mode == "I":
        # 32-bit integer mode: 8-bit or 16-bit data stored wide (e.g. some 16-bit PNGs).
        arr = np.asarray(image)
        top = int(arr.max()) if arr.size else 0
        if int(arr.min() if arr.size else 0) < 0 or top > 65535:
            raise ImageError(
                f"received a PIL image of mode 'I' with values in [{int(arr.min())}, {top}], "
                "which is neither 8-bit nor 16-bit data; " + _ACCEPTED
            )
        return arr.astype(np.uint8 if top <= 255 else np.uint16)
    if mode == "F":
        return np.asarray(image)  # float32 H x W, must be in [0, 1]
    if mode in ("RGB", "L"):
        return np.asarray(image)
    # Palette, RGBA, LA, CMYK, YCbCr, 1-bit, ...: PIL knows how to make RGB of them.
    return np.asarray(image.convert("RGB"))


def to_rgb_uint8(image: ImageLike) -> np.ndarray:
    """Convert an image to an ``H x W x 3`` uint8 RGB numpy array.

    Args:
        image: a numpy array or PIL image; see the module docstring for what is accepted.

    Returns:
        ``H x W x 3`` uint8 array. An input that is already a C-contiguous ``H x W x 3``
        uint8 array is returned as is (no copy).

    Raises:
        ImageError: for anything else, with a message saying what was received.
    """
    if isinstance(image, Image.Image):
        arr = _pil_to_array(image)
    elif isinstance(image, np.ndarray):
        arr = image
    else:
        hint = ""
        if _is_tensor(image):
            hint = " (convert a C x H x W tensor with tensor.permute(1, 2, 0).cpu().numpy())"
        raise ImageError(f"received {_describe(image)}{hint}; {_ACCEPTED}")

    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ImageError(f"received {_describe(image)}; {_ACCEPTED}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(f"received an empty image, {_describe(image)}; {_ACCEPTED}")

    arr = _to_uint8(arr, image)
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        arr = arr[:, :, :3]
    return np.ascontiguousarray(arr)


def _to_uint8(arr: np.ndarray, original: object) -> np.ndarray:
    """Scale the values of an ``H x W x C`` array to uint8 according to its dtype."""
    dtype = arr.dtype
    if dtype == np.uint8:
        return arr
    if dtype == np.bool_:
        raise ImageError(
            f"received {_describe(original)}: a boolean array looks like a mask, not an image; "
            "convert it explicitly, e.g. mask.astype(np.uint8) * 255; " + _ACCEPTED
        )
    if dtype == np.uint16:
        # 65535 / 257 == 255 exactly, so the full 16-bit range maps onto the 8-bit range.
        return np.rint(arr.astype(np.float32) / 257.0).astype(np.uint8)
    if np.issubdtype(dtype, np.integer):
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise ImageError(
                f"received {_describe(original)} with values in [{lo}, {hi}]; integer images "
                "other than uint16 must have values in 0..255; " + _ACCEPTED
            )
        return arr.astype(np.uint8)
    if np.issubdtype(dtype, np.floating):
        if np.isnan(arr).any():
            raise ImageError(f"received {_describe(original)} containing NaN; {_ACCEPTED}")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise ImageError(
                f"received {_describe(original)} with values in [{lo:g}, {hi:g}]; float images "
                "must have values in [0, 1] (divide 0..255 data by 255); " + _ACCEPTED
            )
        return np.rint(arr.astype(np.float64) * 255.0).astype(np.uint8)
    raise ImageError(f"received {_describe(original)}; {_ACCEPTED}")


def image_pixel_limit(max_pixels: int | None = None) -> int:
    """The pixel limit in force: ``max_pixels`` if given, else ``$SAMKIT_MAX_IMAGE_PIXELS``,
    else :data:`MAX_IMAGE_PIXELS`. The environment is read on each call (no import-time state).

    Raises:
        ConfigError: ``max_pixels`` or the environment variable is not a positive whole number.
    """
    if max_pixels is not None:
        if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels <= 0:
            raise ConfigError(
                f"max_pixels must be a positive whole number of pixels, got {max_pixels!r} "
                f"(the default is {MAX_IMAGE_PIXELS:,})"
            )
        return max_pixels
    raw = os.environ.get(MAX_IMAGE_PIXELS_ENV, "").strip()
    if not raw:
        return MAX_IMAGE_PIXELS
    try:
        value = int(raw)  # accepts 400_000_000
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(
            f"the environment variable {MAX_IMAGE_PIXELS_ENV}={raw!r} is not a positive whole "
            f"number of pixels; set it to e.g. 400000000, or unset it for the default "
            f"({MAX_IMAGE_PIXELS:,})"
        )
    return value


_EFFECTIVE = os.access in os.supports_effective_ids  # check as the effective user where possible


def describe_access_error(path: str | os.PathLike[str]) -> str:
    """Why ``path`` cannot be read by this user (permission denied), for error messages.

    Names the first folder on the path that this user cannot enter, if there is one;
    otherwise the file itself is not readable.
    """
    target = Path(os.path.abspath(os.fspath(path)))
    for folder in reversed(target.parents):  # from the root down
        try:
            if not os.access(folder, os.X_OK, effective_ids=_EFFECTIVE):
                return (
                    f"permission denied: this user cannot enter the folder {str(folder)!r}; "
                    "ask its owner for access (e.g. chmod o+rx on the folder) or copy the "
                    "file somewhere you can read"
                )
        except OSError:  # pragma: no cover - access() does not raise on Linux
            break
    return (
        "permission denied: the file is not readable by this user; ask its owner for read "
        "access (e.g. chmod o+r) or copy it somewhere you can read"
    )


_PIL_BOMB_PIXELS = re.compile(r"Image size \((\d+) pixels\)")


def _too_large(name: str, size: str, pixels: int, limit: int) -> ImageError:
    """The error for an image over samkit's limit, saying how to read it anyway."""
    pil_limit = Image.MAX_IMAGE_PIXELS
    also_pil = ""
    if pil_limit is not None and pixels > 2 * pil_limit:
        also_pil = (
            f", and (in Python) PIL.Image.MAX_IMAGE_PIXELS to at least {(pixels + 1) // 2} "
            "(PIL's own guard, which samkit leaves alone)"
        )
    return ImageError(
        f"image file {name!r} is too large: {size}, over the limit of {limit:,} pixels (a guard "
        "against decompression bombs, small files that claim a huge size); if the image is "
        "genuine, downscale it, or raise the limit with the environment variable "
        f"{MAX_IMAGE_PIXELS_ENV}={pixels} (or max_pixels={pixels}){also_pil}"
    )


def _pil_bomb_error(name: str, exc: Exception, limit: int) -> ImageError:
    """An :class:`ImageError` for PIL's DecompressionBombError, or its DecompressionBombWarning
    where a warnings filter turns warnings into errors."""
    found = _PIL_BOMB_PIXELS.search(str(exc))
    if found is None:  # pragma: no cover - PIL's message names the size
        return ImageError(
            f"image file {name!r} was refused by PIL as a possible decompression bomb ({exc}); "
            "if the image is genuine, downscale it or raise PIL.Image.MAX_IMAGE_PIXELS"
        )
    pixels = int(found.group(1))
    if pixels > limit:
        return _too_large(name, f"its header claims {pixels:,} pixels", pixels, limit)
    if isinstance(exc, Image.DecompressionBombWarning):
        why = (
            f"PIL warns about images over PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS:,} "
            "pixels and this program's warnings filter turns that warning into an error"
        )
    else:
        why = "PIL's own decompression-bomb guard (PIL.Image.MAX_IMAGE_PIXELS) refuses it"
    return ImageError(
        f"image file {name!r} claims {pixels:,} pixels: within samkit's limit of {limit:,}, but "
        f"{why}; if the image is genuine, downscale it, or (in Python) raise "
        f"PIL.Image.MAX_IMAGE_PIXELS to at least {(pixels + 1) // 2} (samkit leaves it alone)"
    )


_BOMBS = (Image.DecompressionBombError, Image.DecompressionBombWarning)
# What PIL raises for a damaged file (besides OSError "truncated"): plugins also fail with
# SyntaxError, struct.error, IndexError, EOFError on malformed headers and chunks.
_UNREADABLE = (
    UnidentifiedImageError, OSError, SyntaxError, ValueError, IndexError, EOFError, struct.error,
)


def open_image(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> Image.Image:
    """Open an image file lazily (only its header is read) after checking that it is usable.

    Use the result in a ``with`` block; call ``.load()`` to decode the pixels.

    Args:
        path: an image file PIL can read.
        max_pixels: refuse images with more pixels than this (default
            :func:`image_pixel_limit`: ``$SAMKIT_MAX_IMAGE_PIXELS`` or :data:`MAX_IMAGE_PIXELS`).

    Raises:
        ImageError: the file is missing, not readable (permission), a folder, not an image,
            or larger than the limit (checked from the header, before decoding).
        ConfigError: the limit itself is invalid.
    """
    name = os.fspath(path)
    limit = image_pixel_limit(max_pixels)
    try:
        info = os.stat(name)
    except PermissionError:
        raise ImageError(f"cannot read image file {name!r}: {describe_access_error(name)}") from None
    except (FileNotFoundError, NotADirectoryError):
        raise ImageError(f"image file {name!r} does not exist") from None
    except (OSError, ValueError) as exc:  # e.g. a name too long, or with a NUL byte
        raise ImageError(f"cannot read image file {name!r}: {exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageError(f"{name!r} is a folder, not an image file")
    try:
        img = Image.open(name)
    except PermissionError:
        raise ImageError(f"cannot read image file {name!r}: {describe_access_error(name)}") from None
    except _BOMBS as exc:
        raise _pil_bomb_error(name, exc, limit) from None
    except _UNREADABLE as exc:
        raise ImageError(f"cannot read image file {name!r}: {exc}") from exc
    width, height = img.size
    if width * height > limit:
        img.close()
        raise _too_large(name, f"{width} x {height} = {width * height:,} pixels", width * height, limit)
    return img


def load_image(
    path: str | os.PathLike[str], *, exif_transpose: bool = True, max_pixels: int | None = None
) -> np.ndarray:
    """Read an image file as an ``H x W x 3`` uint8 RGB array.

    Args:
        path: an image file PIL can read (JPEG, PNG, BMP, TIFF, WebP, ...).
        exif_transpose: rotate/flip the pixels as the file's EXIF orientation tag says, as
            photo viewers (and OpenCV's ``imread``) do. ``False`` keeps the stored layout.
        max_pixels: refuse images with more pixels than this, from the header, before
            decoding (default ``$SAMKIT_MAX_IMAGE_PIXELS`` or :data:`MAX_IMAGE_PIXELS`).

    Returns:
        ``H x W x 3`` uint8 RGB array (16-bit files are scaled to 8 bit, alpha is dropped).

    Raises:
        ImageError: the file is missing, not readable, not an image, truncated/corrupt, or
            larger than the pixel limit.
    """
    name = os.fspath(path)
    limit = image_pixel_limit(max_pixels)
    with open_image(name, max_pixels=limit) as img:
        try:
            img.load()  # decode now, inside the try, so truncated files fail here
            if exif_transpose:
                img = ImageOps.exif_transpose(img)
            return to_rgb_uint8(img)
        except ImageError as exc:
            raise ImageError(f"image file {name!r}: {exc}") from exc
        except _BOMBS as exc:  # e.g. a GIF frame or TIFF tile larger than the header said
            raise _pil_bomb_error(name, exc, limit) from None
        except _UNREADABLE as exc:
            raise ImageError(f"cannot read image file {name!r}: {exc}") from exc


def normalize(x: torch.Tensor) -> torch.Tensor:
    """Subtract the ImageNet mean and divide by the std, channel-wise.

    Args:
        x: ``... x 3 x H x W`` float tensor with values in ``[0, 1]``.

    Returns:
        A new tensor of the same shape, dtype and device.
    """
    import torch

    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device)[:, None, None]
    return (x - mean) / std


def preprocess(
    image: ImageLike, size: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Turn an image into the image encoder's input, as the official image predictor does.

    Steps: scale to float in ``[0, 1]``; resize to ``size x size`` ignoring the aspect ratio,
    bilinear with antialiasing (``align_corners=False``); normalise with the ImageNet
    mean/std.

    Args:
        image: ``H x W x 3`` uint8 RGB array (anything :func:`to_rgb_uint8` accepts is
            converted first).
        size: side of the square model input, e.g. 1024.
        device: where the work is done and the result lives.

    Returns:
        ``1 x 3 x size x size`` float32 tensor on ``device``.
    """
    import torch
    import torch.nn.functional as F

    if size <= 0:
        raise ImageError(f"size must be a positive number of pixels, got {size}")
    rgb = to_rgb_uint8(image)
    if not rgb.flags.writeable:  # torch warns on read-only arrays; copying is cheap here
        rgb = rgb.copy()
    x = torch.from_numpy(rgb).to(device)  # H x W x 3 uint8
    x = x.permute(2, 0, 1).contiguous().to(torch.float32).div(255.0)  # 3 x H x W
    x = F.interpolate(
        x[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )  # 1 x 3 x S x S
    return normalize(x)


def preprocess_video_frame(frame: ImageLike, size: int) -> torch.Tensor:
    """Turn a video frame into the image encoder's input, as the official video loader does.

    The official loader of a folder of JPEG frames resizes with PIL (``resize((S, S))``,
    bicubic, ignoring the aspect ratio), divides by 255 and normalises with the ImageNet
    mean/std; this function reproduces that bit for bit. It differs slightly from
    :func:`preprocess` (bilinear with antialiasing), which is what the image predictor uses.

    Args:
        frame: ``H x W x 3`` uint8 RGB array (anything :func:`to_rgb_uint8` accepts).
        size: side of the square model input, e.g. 1024.

    Returns:
        ``3 x size x size`` float32 CPU tensor.
    """
    import torch

    if size <= 0:
        raise ImageError(f"size must be a positive number of pixels, got {size}")
    rgb = to_rgb_uint8(frame)
    resized = Image.fromarray(rgb).resize((size, size), Image.Resampling.BICUBIC)
    pixels = np.array(resized)  # S x S x 3 uint8, a fresh writable copy
    # Divide in float64 then round to float32, the order the official loader uses.
    x = torch.from_numpy(pixels).permute(2, 0, 1).to(torch.float64).div(255.0)
    return normalize(x.to(torch.float32))  # 3 x S x S
