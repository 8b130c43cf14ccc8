"""LabPics V1 (chemistry and lab images): the ``Simple`` and ``Complex`` layouts."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from samkit.data.files import (PathLike, canonical_choice, checked_mask, image_files, missing_error, opencv_channel0,
                               opencv_rgb, read_image, require_dir, stack_masks)
from samkit.data.sample import LazyDataset, Sample
from samkit.errors import DatasetError

__all__ = ["LabPicsDataset", "labpics_simple_masks", "LABPICS_IGNORE", "LABPICS_COMPLEX_GROUPS"]

LABPICS_IGNORE: int = 254  # value of unannotated pixels in LabPics instance maps

LABPICS_COMPLEX_GROUPS: tuple[str, ...] = ("Vessel", "Material", "Parts", "EmptyRegions")


# LabPics


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
    return stack_masks(masks, instance_rgb.shape[:2]), ignore


class LabPicsDataset(LazyDataset):
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
        self.split = canonical_choice(split, ("Train", "Test"), "split")
        self.layout = canonical_choice(layout, ("Simple", "Complex"), "layout")
        self.groups = tuple(groups)
        require_dir(self.root, "LabPics root")
        require_dir(self.root / self.layout, f"LabPics {self.layout}")
        base = self.root / self.layout / self.split
        require_dir(base, f"LabPics {self.layout} {self.split}")
        self._entries = (
            self._scan_simple(base) if self.layout == "Simple" else self._scan_complex(base)
        )
        if not self._entries:
            raise DatasetError(f"no LabPics sample found in {str(base)!r}")

    @staticmethod
    def _scan_simple(base: Path) -> list[tuple[str, Path, Path]]:
        image_dir, inst_dir = base / "Image", base / "Instance"
        require_dir(image_dir, "LabPics image")
        require_dir(inst_dir, "LabPics instance")
        images = image_files(image_dir)
        entries, missing = [], []
        for stem, path in images.items():
            inst = inst_dir / f"{stem}.png"
            if inst.is_file():
                entries.append((stem, path, inst))
            else:
                missing.append(stem)
        if missing:
            raise missing_error("instance map (.png)", missing, inst_dir)
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
            raise missing_error(f"instance folder ({', '.join(self.groups)})", no_ann, base)
        return entries

    def _name(self, entry: tuple[str, Path, Path]) -> str:
        return entry[0]

    def _load(self, entry: tuple[str, Path, Path]) -> Sample:
        name, image_path, ann = entry
        if self.layout == "Simple":
            inst = opencv_rgb(ann)
            masks, ignore = labpics_simple_masks(inst)
            image = read_image(image_path, inst.shape[:2])
            return Sample(image=image, masks=masks, ignore=ignore, name=name)
        image = read_image(image_path)
        shape = image.shape[:2]
        masks = []
        for group in self.groups:
            folder = ann / group
            if not folder.is_dir():
                continue
            for png in sorted(folder.glob("*.png")):
                masks.append(checked_mask(opencv_channel0(png) > 0, shape, png))
        ignore_path = ann / "Ignore.png"
        ignore = (
            checked_mask(opencv_channel0(ignore_path) > 0, shape, ignore_path)
            if ignore_path.is_file()
            else np.zeros(shape, dtype=bool)
        )
        return Sample(image=image, masks=stack_masks(masks, shape), ignore=ignore, name=name)
