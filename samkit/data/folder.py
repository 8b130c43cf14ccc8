"""A plain folder of images and instance PNGs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from samkit.data.files import (IMAGE_EXTENSIONS, PathLike, checked_mask, image_files, missing_error, open_array,
                               read_image, require_dir, stack_masks)
from samkit.data.sample import LazyDataset, Sample
from samkit.errors import DatasetError

__all__ = ["MaskFolderDataset"]


class MaskFolderDataset(LazyDataset):
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
        require_dir(self.root, "dataset root")
        image_dir, mask_dir = self.root / "images", self.root / "masks"
        require_dir(image_dir, "images")
        require_dir(mask_dir, "masks")
        self._entries = []
        missing = []
        for stem, path in image_files(image_dir).items():
            as_file, as_dir = mask_dir / f"{stem}.png", mask_dir / stem
            if as_file.is_file():
                self._entries.append((stem, path, as_file))
            elif as_dir.is_dir():
                self._entries.append((stem, path, as_dir))
            else:
                missing.append(stem)
        if missing:
            raise missing_error("mask (<name>.png or <name>/)", missing, mask_dir)
        if not self._entries:
            raise DatasetError(f"no image found in {str(image_dir)!r} (suffixes {IMAGE_EXTENSIONS})")

    def _name(self, entry: tuple[str, Path, Path]) -> str:
        return entry[0]

    def _load(self, entry: tuple[str, Path, Path]) -> Sample:
        name, image_path, ann = entry
        if ann.is_dir():
            return self._load_folder(name, image_path, ann)
        ids = open_array(ann)
        if ids.ndim == 3:  # RGB colours -> one integer per colour
            ids = (
                (ids[..., 0].astype(np.int64) << 16)
                | (ids[..., 1].astype(np.int64) << 8)
                | ids[..., 2]
            )
            ignore_id = None if self.ignore_value is None else int(self.ignore_value) * 0x010101
        else:
            ignore_id = self.ignore_value
        image = read_image(image_path, ids.shape[:2])
        ignore = None
        if ignore_id is not None:
            ignore = ids == ignore_id
        values = [v for v in np.unique(ids) if v != 0 and (ignore_id is None or v != ignore_id)]
        masks = stack_masks([ids == v for v in values], ids.shape[:2])
        return Sample(image=image, masks=masks, ignore=ignore, name=name)

    def _load_folder(self, name: str, image_path: Path, folder: Path) -> Sample:
        image = read_image(image_path)
        shape = image.shape[:2]
        masks: list[np.ndarray] = []
        ignore = None
        for png in sorted(folder.glob("*.png")):
            arr = open_array(png)
            mask = checked_mask(arr.any(axis=2) if arr.ndim == 3 else arr != 0, shape, png)
            if png.name.lower() == "ignore.png":
                ignore = mask
            else:
                masks.append(mask)
        return Sample(image=image, masks=stack_masks(masks, shape), ignore=ignore, name=name)
