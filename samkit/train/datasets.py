"""Instance-segmentation datasets for training and evaluation.

Every dataset is a ``Sequence[Sample]``: its length and file list are known at
construction, and each sample is read from disk only when indexed. A :class:`Sample` holds
the image (``H x W x 3`` uint8 RGB), one boolean mask per instance (``N x H x W``, possibly
``N = 0``), an optional ignore mask (pixels left out of losses and never clicked), and a
name.

Readers:

- :class:`LabPicsDataset`: LabPics V1 (chemistry / lab images), ``Simple`` and ``Complex``
  layouts.
- :class:`CocoDataset`: COCO instance JSON (polygons, compressed and uncompressed RLE);
  crowd regions become the ignore mask. Uses pycocotools when installed (the ``coco``
  extra), else samkit's own decoders.
- :class:`MaskFolderDataset`: a plain folder of images and instance PNGs.
"""

from __future__ import annotations

import json
import operator
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Optional, Union, overload

import numpy as np
from PIL import Image

from samkit.automask.masks import rle_to_mask
from samkit.errors import ConfigError, DatasetError, MissingDependencyError
from samkit.imageio import load_image

__all__ = [
    "Sample",
    "LabPicsDataset",
    "CocoDataset",
    "MaskFolderDataset",
    "labpics_simple_masks",
    "decode_coco_segmentation",
    "decode_rle_counts",
    "rasterize_polygons",
]

PathLike = Union[str, os.PathLike]

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

LABPICS_IGNORE: int = 254  # value of unannotated pixels in LabPics instance maps

LABPICS_COMPLEX_GROUPS: tuple[str, ...] = ("Vessel", "Material", "Parts", "EmptyRegions")


@dataclass
class Sample:
    """One image with its instance masks."""

    image: np.ndarray  # H x W x 3 uint8 RGB
    masks: np.ndarray  # N x H x W bool, one mask per instance (N may be 0)
    ignore: Optional[np.ndarray]  # H x W bool: pixels left out of losses and clicks, or None
    name: str  # identifier (file stem or folder name)

    def __post_init__(self) -> None:
        img, masks = self.image, self.masks
        if not (
            isinstance(img, np.ndarray)
            and img.ndim == 3
            and img.shape[2] == 3
            and img.dtype == np.uint8
        ):
            shape = getattr(img, "shape", None)
            raise DatasetError(
                f"sample {self.name!r}: image must be an H x W x 3 uint8 array, got shape {shape}"
            )
        h, w = img.shape[:2]
        if not (isinstance(masks, np.ndarray) and masks.ndim == 3 and masks.shape[1:] == (h, w)):
            raise DatasetError(
                f"sample {self.name!r}: masks must be N x {h} x {w}, got shape "
                f"{getattr(masks, 'shape', None)}"
            )
        if masks.dtype != np.bool_:
            self.masks = masks != 0
        if self.ignore is not None:
            if not (isinstance(self.ignore, np.ndarray) and self.ignore.shape == (h, w)):
                raise DatasetError(
                    f"sample {self.name!r}: ignore must be {h} x {w}, got shape "
                    f"{getattr(self.ignore, 'shape', None)}"
                )
            if self.ignore.dtype != np.bool_:
                self.ignore = self.ignore != 0


class _LazyDataset(Sequence):
    """A ``Sequence[Sample]`` over a list of entries, each loaded by :meth:`_load`."""

    _entries: list[Any]

    def __len__(self) -> int:
        return len(self._entries)

    @overload
    def __getitem__(self, index: int) -> Sample: ...

    @overload
    def __getitem__(self, index: slice) -> list[Sample]: ...

    def __getitem__(self, index: Union[int, slice]) -> Union[Sample, list[Sample]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = operator.index(index)
        n = len(self._entries)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} samples")
        return self._load(self._entries[i])

    def _load(self, entry: Any) -> Sample:
        raise NotImplementedError

    @property
    def names(self) -> list[str]:
        """The sample names, in index order."""
        return [self._name(e) for e in self._entries]

    def _name(self, entry: Any) -> str:
        raise NotImplementedError


# --------------------------------------------------------------------------- file helpers


def _require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        parent = path.parent
        inside = sorted(p.name for p in parent.iterdir())[:12] if parent.is_dir() else None
        hint = f"; {str(parent)!r} contains {inside}" if inside is not None else ""
        raise DatasetError(f"{what} folder {str(path)!r} does not exist{hint}")


def _read_image(path: Path, shape: Optional[tuple[int, int]] = None) -> np.ndarray:
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


def _open_array(path: Path) -> np.ndarray:
    """Pixels of a label PNG as stored (palette indices, grey, 16-bit, or RGB(A))."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("1", "L", "P", "I", "F") or img.mode.startswith("I;16"):
                arr = np.asarray(img)
            elif img.mode == "LA":
                arr = np.asarray(img)[..., 0]
            elif img.mode in ("RGB", "RGBA"):
                arr = np.asarray(img)[..., :3]
            else:
                arr = np.asarray(img.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"cannot read label file {str(path)!r}: {exc}") from exc
    return arr.astype(np.int64) if arr.dtype == np.bool_ else arr


def _opencv_rgb(path: Path) -> np.ndarray:
    """``H x W x 3`` uint8 in PIL's RGB order, as OpenCV's colour read sees the pixels
    (palette colours expanded, grey repeated); reverse the last axis for OpenCV's BGR."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("RGB",):
                return np.asarray(img)
            return np.asarray(img.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"cannot read label file {str(path)!r}: {exc}") from exc


def _opencv_channel0(path: Path) -> np.ndarray:
    """``H x W`` first channel of a label PNG in OpenCV's order (blue, or the grey value)."""
    arr = _open_array(path)
    if arr.ndim == 2:
        with Image.open(path) as img:
            if img.mode == "P":  # palette: OpenCV reads the colour, not the index
                return _opencv_rgb(path)[..., 2]
        return arr
    return arr[..., 2]


def _list_images(folder: Path) -> dict[str, Path]:
    """``stem -> path`` for the image files of a folder (first suffix in IMAGE_SUFFIXES wins)."""
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and p.stem not in found:
            found[p.stem] = p
    return found


def _missing_error(what: str, names: list[str], where: Path) -> DatasetError:
    shown = ", ".join(repr(n) for n in names[:5])
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return DatasetError(f"{len(names)} images have no {what} in {str(where)!r}: {shown}{more}")


def _stack(masks: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    if not masks:
        return np.zeros((0, *shape), dtype=bool)
    return np.stack(masks).astype(bool, copy=False)


# --------------------------------------------------------------------------- LabPics


def labpics_simple_masks(instance_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masks and ignore map of a LabPics ``Simple`` instance map.

    Args:
        instance_rgb: ``H x W x 3`` uint8 instance map in PIL's RGB order, i.e. OpenCV's
            channels reversed: ``[..., 2]`` (OpenCV channel 0) material ids, ``[..., 1]``
            vessel-part ids, ``[..., 0]`` (OpenCV channel 2) vessel ids. 0 is background,
            254 unannotated.

    Returns:
        ``(masks, ignore)``: ``N x H x W`` bool, one per id of every channel (materials,
        then parts, then vessels, ids ascending; a pixel may belong to one mask of each
        channel), and ``H x W`` bool, pixels equal to 254 in any channel.
    """
    if instance_rgb.ndim != 3 or instance_rgb.shape[2] != 3:
        raise DatasetError(f"a LabPics instance map must be H x W x 3, got {instance_rgb.shape}")
    masks: list[np.ndarray] = []
    for channel in (2, 1, 0):  # OpenCV channels 0 (material), 1 (parts), 2 (vessel)
        plane = instance_rgb[..., channel]
        for value in np.unique(plane):
            if value == 0 or value == LABPICS_IGNORE:
                continue
            masks.append(plane == value)
    ignore = (instance_rgb == LABPICS_IGNORE).any(axis=2)
    return _stack(masks, instance_rgb.shape[:2]), ignore


class LabPicsDataset(_LazyDataset):
    """LabPics V1, as distributed (``LabPicsV1/Simple`` and ``LabPicsV1/Complex``).

    ``Simple`` layout: ``root/Simple/{Train,Test}/Image/<name>.jpg`` and
    ``root/Simple/{Train,Test}/Instance/<name>.png``. The instance PNG's channels, in the
    order OpenCV reads them (B, G, R), hold material instance ids, vessel-part ids and
    vessel instance ids; 0 is background and 254 unannotated. Every id of every channel
    becomes one mask (see :func:`labpics_simple_masks`); 254 in any channel is ignored.

    ``Complex`` layout: ``root/Complex/{Train,Test}/<sample>/`` with ``Image.png`` (or
    ``Image.jpg``), one PNG per instance in the sub-folders ``Vessel/``, ``Material/``,
    ``Parts/`` and ``EmptyRegions/``, and ``Ignore.png``. The instance is where the PNG's
    first channel in OpenCV's order (blue, or the grey value) is non-zero, and likewise for
    ``Ignore.png``. (Assumed from public readers of the dataset; the ``Semantic/`` folder
    and the JSON metadata are not used.) Masks come group by group in the order of
    ``groups``, files sorted by name.

    Args:
        root: the ``LabPicsV1`` folder (holding ``Simple/`` and/or ``Complex/``).
        split: ``"Train"`` or ``"Test"`` (case-insensitive).
        layout: ``"Simple"`` or ``"Complex"`` (case-insensitive).
        groups: ``Complex`` only: the instance sub-folders read.

    Raises:
        DatasetError: a missing folder, an image without annotation, or no sample at all.
    """

    def __init__(
        self,
        root: PathLike,
        split: str = "Train",
        layout: str = "Simple",
        groups: Sequence[str] = LABPICS_COMPLEX_GROUPS,
    ) -> None:
        self.root = Path(root)
        self.split = _canonical(split, ("Train", "Test"), "split")
        self.layout = _canonical(layout, ("Simple", "Complex"), "layout")
        self.groups = tuple(groups)
        _require_dir(self.root, "LabPics root")
        _require_dir(self.root / self.layout, f"LabPics {self.layout}")
        base = self.root / self.layout / self.split
        _require_dir(base, f"LabPics {self.layout} {self.split}")
        self._entries = (
            self._scan_simple(base) if self.layout == "Simple" else self._scan_complex(base)
        )
        if not self._entries:
            raise DatasetError(f"no LabPics sample found in {str(base)!r}")

    @staticmethod
    def _scan_simple(base: Path) -> list[tuple[str, Path, Path]]:
        image_dir, inst_dir = base / "Image", base / "Instance"
        _require_dir(image_dir, "LabPics image")
        _require_dir(inst_dir, "LabPics instance")
        images = _list_images(image_dir)
        entries, missing = [], []
        for stem, path in images.items():
            inst = inst_dir / f"{stem}.png"
            if inst.is_file():
                entries.append((stem, path, inst))
            else:
                missing.append(stem)
        if missing:
            raise _missing_error("instance map (.png)", missing, inst_dir)
        return entries

    def _scan_complex(self, base: Path) -> list[tuple[str, Path, Path]]:
        entries, no_image, no_ann = [], [], []
        for folder in sorted(p for p in base.iterdir() if p.is_dir()):
            image = next(
                (
                    folder / f"Image{s}"
                    for s in (".png", ".jpg", ".jpeg")
                    if (folder / f"Image{s}").is_file()
                ),
                None,
            )
            if image is None:
                no_image.append(folder.name)
                continue
            if not any((folder / g).is_dir() for g in self.groups):
                no_ann.append(folder.name)
                continue
            entries.append((folder.name, image, folder))
        if no_image:
            raise DatasetError(
                f"{len(no_image)} sample folders in {str(base)!r} have no Image.png/Image.jpg: "
                + ", ".join(repr(n) for n in no_image[:5])
            )
        if no_ann:
            raise _missing_error(f"instance folder ({', '.join(self.groups)})", no_ann, base)
        return entries

    def _name(self, entry: tuple[str, Path, Path]) -> str:
        return entry[0]

    def _load(self, entry: tuple[str, Path, Path]) -> Sample:
        name, image_path, ann = entry
        if self.layout == "Simple":
            inst = _opencv_rgb(ann)
            masks, ignore = labpics_simple_masks(inst)
            image = _read_image(image_path, inst.shape[:2])
            return Sample(image=image, masks=masks, ignore=ignore, name=name)
        image = _read_image(image_path)
        shape = image.shape[:2]
        masks = []
        for group in self.groups:
            folder = ann / group
            if not folder.is_dir():
                continue
            for png in sorted(folder.glob("*.png")):
                masks.append(_checked(_opencv_channel0(png) > 0, shape, png))
        ignore_path = ann / "Ignore.png"
        ignore = (
            _checked(_opencv_channel0(ignore_path) > 0, shape, ignore_path)
            if ignore_path.is_file()
            else np.zeros(shape, dtype=bool)
        )
        return Sample(image=image, masks=_stack(masks, shape), ignore=ignore, name=name)


def _canonical(value: str, choices: tuple[str, ...], what: str) -> str:
    for c in choices:
        if value.lower() == c.lower():
            return c
    raise ConfigError(f"{what} must be one of {choices}, got {value!r}")


def _checked(mask: np.ndarray, shape: tuple[int, ...], path: Path) -> np.ndarray:
    if mask.shape != tuple(shape):
        raise DatasetError(
            f"mask {str(path)!r} is {mask.shape[0]} x {mask.shape[1]} but its image is "
            f"{shape[0]} x {shape[1]}"
        )
    return mask


# --------------------------------------------------------------------------- COCO


def rasterize_polygons(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """Fill COCO polygons (``[x0, y0, x1, y1, ...]`` each) into an ``H x W`` bool mask.

    Gives the same pixels as pycocotools (``frPyObjects`` + ``merge`` + ``decode``): each
    polygon is traced on a 5x finer grid, the points where its outline crosses the pixel
    columns' centres are snapped to the coarse grid, and each column is filled between
    them (even-odd rule); the polygons' masks are then united. Polygons with fewer than 3
    points are skipped.
    """
    out = np.zeros((height, width), dtype=bool)
    for poly in polygons:
        pts = np.asarray(poly, dtype=np.float64).reshape(-1)
        if pts.size < 6:
            continue
        out |= _rasterize_one_polygon(pts[: pts.size // 2 * 2].reshape(-1, 2), height, width)
    return out


def _rasterize_one_polygon(xy: np.ndarray, h: int, w: int, scale: float = 5.0) -> np.ndarray:
    """One closed polygon (``K x 2`` float x, y) -> ``H x W`` bool; see rasterize_polygons."""
    k = xy.shape[0]
    # Vertices on the fine grid (C-style truncation, as integer casts do).
    x = np.trunc(scale * xy[:, 0] + 0.5).astype(np.int64)
    y = np.trunc(scale * xy[:, 1] + 0.5).astype(np.int64)
    x_next, y_next = np.roll(x, -1), np.roll(y, -1)
    dx, dy = np.abs(x_next - x), np.abs(y_next - y)
    # Step one fine pixel at a time along the longer axis of each edge, always walking in the
    # increasing direction of that axis (so the traced points do not depend on the edge's
    # orientation), but list the points in the polygon's own order.
    major_x = dx >= dy
    flip = np.where(major_x, x > x_next, y > y_next)
    x0, x1 = np.where(flip, x_next, x), np.where(flip, x, x_next)
    y0, y1 = np.where(flip, y_next, y), np.where(flip, y, y_next)
    span = np.maximum(dx, dy)
    safe = np.where(span == 0, 1, span)
    slope = np.where(major_x, (y1 - y0) / safe, (x1 - x0) / safe)
    counts = span + 1
    edge = np.repeat(np.arange(k), counts)
    step = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    t = np.where(flip[edge], span[edge] - step, step)
    minor = np.where(
        major_x[edge], y0[edge] + slope[edge] * t + 0.5, x0[edge] + slope[edge] * t + 0.5
    )
    minor = np.trunc(minor).astype(np.int64)
    u = np.where(major_x[edge], x0[edge] + t, minor)  # fine x of every traced point
    v = np.where(major_x[edge], minor, y0[edge] + t)  # fine y
    # Where consecutive points change fine column, see whether that column is the centre
    # of a coarse pixel column; if so, the outline crosses it at the (snapped) row below.
    u_cur, u_prev, v_cur, v_prev = u[1:], u[:-1], v[1:], v[:-1]
    col = np.where(u_cur < u_prev, u_cur, u_cur - 1).astype(np.float64)
    col = (col + 0.5) / scale - 0.5
    keep = (u_cur != u_prev) & (np.floor(col) == col) & (col >= 0) & (col <= w - 1)
    row = (np.minimum(v_cur, v_prev).astype(np.float64) + 0.5) / scale - 0.5
    row = np.ceil(np.clip(row, 0, h))
    # Each crossing toggles inside/outside from there on, in column-major pixel order.
    flat_pos = col[keep].astype(np.int64) * h + row[keep].astype(np.int64)
    toggles = (np.bincount(flat_pos, minlength=h * w + 1)[: h * w] & 1).astype(np.uint8)
    inside = np.cumsum(toggles, dtype=np.uint8) & 1  # parity survives uint8 wrap-around
    return inside.view(bool).reshape(w, h).T


def decode_rle_counts(
    counts: Union[str, bytes, Sequence[int]], height: int, width: int
) -> np.ndarray:
    """Decode COCO run-length counts into an ``H x W`` bool mask.

    Args:
        counts: uncompressed (a list of run lengths) or compressed (COCO's string).
        height, width: the mask size (the RLE's ``size`` is ``[height, width]``).

    Runs alternate between 0 and 1, starting with 0, over the pixels in column-major order.
    """
    if isinstance(counts, (str, bytes)):
        runs = _decode_rle_string(counts.encode() if isinstance(counts, str) else counts)
    else:
        runs = [int(c) for c in counts]
    return np.ascontiguousarray(rle_to_mask({"size": [height, width], "counts": runs}))


def _decode_rle_string(data: bytes) -> list[int]:
    """COCO's compressed RLE: 5-bit groups, 6 bits per char (offset 48), deltas from
    the count two back from the third count on."""
    runs: list[int] = []
    p = 0
    while p < len(data):
        value = 0
        shift = 0
        while True:
            c = data[p] - 48
            p += 1
            value |= (c & 0x1F) << shift
            shift += 5
            if not c & 0x20:
                if c & 0x10:  # sign bit of the last group
                    value -= 1 << shift
                break
            if p >= len(data):
                raise DatasetError("truncated compressed RLE string")
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def _pycocotools_mask() -> Any:
    try:
        from pycocotools import mask as mask_utils
    except ImportError as exc:
        raise MissingDependencyError(
            "use_pycocotools=True needs pycocotools, which is not installed; install it with "
            "pip install 'samkit[coco]' (or pip install pycocotools), or pass "
            "use_pycocotools=None to use samkit's own decoder"
        ) from exc
    return mask_utils


def decode_coco_segmentation(
    segmentation: Union[list, dict], height: int, width: int, use_pycocotools: Optional[bool] = None
) -> np.ndarray:
    """An annotation's ``segmentation`` (polygons, or RLE with compressed or uncompressed
    counts) as an ``H x W`` bool mask.

    Args:
        segmentation: the COCO field.
        height, width: the image size.
        use_pycocotools: ``True``: use pycocotools (``coco`` extra, error if missing);
            ``False``: samkit's decoders; ``None``: pycocotools when importable.
    """
    mask_utils = None
    if use_pycocotools is None:
        try:
            from pycocotools import mask as mask_utils
        except ImportError:
            mask_utils = None
    elif use_pycocotools:
        mask_utils = _pycocotools_mask()

    if isinstance(segmentation, list):
        if mask_utils is not None:
            polys = [p for p in segmentation if len(p) >= 6]
            if not polys:
                return np.zeros((height, width), dtype=bool)
            rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
            return mask_utils.decode(rle).astype(bool)
        return rasterize_polygons(segmentation, height, width)
    if isinstance(segmentation, dict) and "counts" in segmentation:
        size = segmentation.get("size", [height, width])
        h, w = int(size[0]), int(size[1])
        counts = segmentation["counts"]
        if mask_utils is not None:
            rle = (
                mask_utils.frPyObjects(segmentation, h, w)
                if isinstance(counts, list)
                else {"size": [h, w], "counts": counts}
            )
            mask = mask_utils.decode(rle).astype(bool)
        else:
            mask = decode_rle_counts(counts, h, w)
        if mask.shape != (height, width):
            raise DatasetError(
                f"RLE of size {h} x {w} does not match the image size {height} x {width}"
            )
        return mask
    raise DatasetError(
        "a COCO segmentation must be a list of polygons or an RLE dict with 'counts' and "
        f"'size', got {type(segmentation).__name__}"
    )


class CocoDataset(_LazyDataset):
    """Images and instance masks from a COCO-style instance annotation JSON.

    Each image's non-crowd annotations become its masks (in annotation order); crowd
    annotations (``iscrowd: 1``) become the ignore mask (``None`` when the image has none),
    or are dropped with ``crowd_as_ignore=False``.

    Args:
        annotation_json: path to the JSON (``images``, ``annotations``, optional
            ``categories``).
        images_dir: folder holding the images' ``file_name`` paths.
        category_ids: keep only annotations of these categories (``None``: all).
        skip_empty: leave out images with no non-crowd annotation.
        crowd_as_ignore: crowd regions become ignored pixels.
        use_pycocotools: see :func:`decode_coco_segmentation`.

    Raises:
        DatasetError: an unreadable JSON, missing images, or no image left.
    """

    def __init__(
        self,
        annotation_json: PathLike,
        images_dir: PathLike,
        *,
        category_ids: Optional[Collection[int]] = None,
        skip_empty: bool = True,
        crowd_as_ignore: bool = True,
        use_pycocotools: Optional[bool] = None,
    ) -> None:
        self.annotation_json = Path(annotation_json)
        self.images_dir = Path(images_dir)
        self.crowd_as_ignore = crowd_as_ignore
        self.use_pycocotools = use_pycocotools
        if use_pycocotools:
            _pycocotools_mask()  # fail now, not at the first sample
        if not self.annotation_json.is_file():
            raise DatasetError(f"COCO annotation file {str(self.annotation_json)!r} does not exist")
        _require_dir(self.images_dir, "COCO images")
        try:
            with self.annotation_json.open("r", encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DatasetError(
                f"cannot read COCO JSON {str(self.annotation_json)!r}: {exc}"
            ) from exc
        if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
            raise DatasetError(
                f"{str(self.annotation_json)!r} is not a COCO instance file (needs 'images' and "
                "'annotations')"
            )
        self.categories: dict[int, str] = {
            int(c["id"]): str(c.get("name", c["id"])) for c in data.get("categories", [])
        }
        wanted = None if category_ids is None else {int(c) for c in category_ids}
        by_image: dict[int, list[dict]] = {}
        for ann in data["annotations"]:
            if wanted is not None and int(ann.get("category_id", -1)) not in wanted:
                continue
            if "segmentation" not in ann:
                continue
            by_image.setdefault(int(ann["image_id"]), []).append(ann)

        self._entries = []
        missing: list[str] = []
        present = {p.name for p in self.images_dir.iterdir()}
        for info in data["images"]:
            anns = by_image.get(int(info["id"]), [])
            if skip_empty and not any(not a.get("iscrowd", 0) for a in anns):
                continue
            file_name = str(info["file_name"])
            if file_name not in present and not (self.images_dir / file_name).is_file():
                missing.append(file_name)
                continue
            self._entries.append((info, anns))
        if missing:
            raise DatasetError(
                f"{len(missing)} images listed in {str(self.annotation_json)!r} are missing from "
                f"{str(self.images_dir)!r}: " + ", ".join(repr(n) for n in missing[:5])
            )
        if not self._entries:
            raise DatasetError(
                f"no usable image in {str(self.annotation_json)!r}"
                + (" (skip_empty=True left out images without annotations)" if skip_empty else "")
            )

    def _name(self, entry: tuple[dict, list[dict]]) -> str:
        return Path(str(entry[0]["file_name"])).stem

    def _load(self, entry: tuple[dict, list[dict]]) -> Sample:
        info, anns = entry
        h, w = int(info["height"]), int(info["width"])
        image = _read_image(self.images_dir / str(info["file_name"]), (h, w))
        masks: list[np.ndarray] = []
        ignore: Optional[np.ndarray] = None
        for ann in anns:
            mask = decode_coco_segmentation(ann["segmentation"], h, w, self.use_pycocotools)
            if ann.get("iscrowd", 0):
                if self.crowd_as_ignore:
                    ignore = mask if ignore is None else ignore | mask
            else:
                masks.append(mask)
        return Sample(
            image=image, masks=_stack(masks, (h, w)), ignore=ignore, name=self._name(entry)
        )


# --------------------------------------------------------------------------- mask folder


class MaskFolderDataset(_LazyDataset):
    """A folder of images with instance annotations as PNG files.

    Layout: ``root/images/<name>.<jpg|jpeg|png|bmp|tif|tiff|webp>`` and, per image, either

    - ``root/masks/<name>.png``: an instance map; each distinct non-zero value is one
      instance (grey, palette index, or 16-bit value; for RGB files each distinct colour),
      and ``ignore_value`` (default 255, the "void" of Pascal VOC; white in RGB files)
      marks ignored pixels; or
    - ``root/masks/<name>/*.png``: one PNG per instance (non-zero pixels, any channel),
      in file-name order, with an optional ``ignore.png`` for the ignored pixels.

    Args:
        root: the dataset folder.
        ignore_value: the instance-map value of ignored pixels, or ``None`` for none.

    Raises:
        DatasetError: a missing folder, images without masks, or no image.
    """

    def __init__(self, root: PathLike, *, ignore_value: Optional[int] = 255) -> None:
        self.root = Path(root)
        self.ignore_value = ignore_value
        _require_dir(self.root, "dataset root")
        image_dir, mask_dir = self.root / "images", self.root / "masks"
        _require_dir(image_dir, "images")
        _require_dir(mask_dir, "masks")
        self._entries = []
        missing = []
        for stem, path in _list_images(image_dir).items():
            as_file, as_dir = mask_dir / f"{stem}.png", mask_dir / stem
            if as_file.is_file():
                self._entries.append((stem, path, as_file))
            elif as_dir.is_dir():
                self._entries.append((stem, path, as_dir))
            else:
                missing.append(stem)
        if missing:
            raise _missing_error("mask (<name>.png or <name>/)", missing, mask_dir)
        if not self._entries:
            raise DatasetError(f"no image found in {str(image_dir)!r} (suffixes {IMAGE_SUFFIXES})")

    def _name(self, entry: tuple[str, Path, Path]) -> str:
        return entry[0]

    def _load(self, entry: tuple[str, Path, Path]) -> Sample:
        name, image_path, ann = entry
        if ann.is_dir():
            return self._load_folder(name, image_path, ann)
        ids = _open_array(ann)
        if ids.ndim == 3:  # RGB colours -> one integer per colour
            ids = (
                (ids[..., 0].astype(np.int64) << 16)
                | (ids[..., 1].astype(np.int64) << 8)
                | ids[..., 2]
            )
            ignore_id = None if self.ignore_value is None else int(self.ignore_value) * 0x010101
        else:
            ignore_id = self.ignore_value
        image = _read_image(image_path, ids.shape[:2])
        ignore = None
        if ignore_id is not None:
            ignore = ids == ignore_id
        values = [v for v in np.unique(ids) if v != 0 and (ignore_id is None or v != ignore_id)]
        masks = _stack([ids == v for v in values], ids.shape[:2])
        return Sample(image=image, masks=masks, ignore=ignore, name=name)

    def _load_folder(self, name: str, image_path: Path, folder: Path) -> Sample:
        image = _read_image(image_path)
        shape = image.shape[:2]
        masks: list[np.ndarray] = []
        ignore = None
        for png in sorted(folder.glob("*.png")):
            arr = _open_array(png)
            mask = _checked(arr.any(axis=2) if arr.ndim == 3 else arr != 0, shape, png)
            if png.name.lower() == "ignore.png":
                ignore = mask
            else:
                masks.append(mask)
        return Sample(image=image, masks=_stack(masks, shape), ignore=ignore, name=name)
