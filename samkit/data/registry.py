"""Dataset formats by name: ``open_dataset(format, data, split, ...)`` for the command line and configs.

A format is one entry of :data:`DATASET_FORMATS`: a function that takes the format's
:class:`DatasetSpec` and returns a ``Sequence[Sample]``. To add a format, write its reader
(a :class:`~samkit.data.sample.LazyDataset`) and register an opener here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from samkit.data.coco import CocoDataset
from samkit.data.folder import MaskFolderDataset
from samkit.data.labpics import LabPicsDataset
from samkit.data.sa1b import SA1BDataset
from samkit.data.sample import Sample
from samkit.data.synthetic.scenes import SyntheticSceneDataset
from samkit.data.synthetic.textures import dependency_photos
from samkit.errors import ConfigError

__all__ = ["DatasetSpec", "DATASET_FORMATS", "open_dataset"]


@dataclass(frozen=True)
class DatasetSpec:
    """What the command line says about a dataset; each format reads the fields it needs."""

    data: Optional[str]  # the LabPicsV1 folder, the COCO JSON, the folder with images/ and masks/, the SA-1B folder
    split: str = "Train"  # LabPics split; synthetic: Train and Test use different seeds
    layout: str = "Simple"  # LabPics layout: Simple or Complex
    images: Optional[str] = None  # coco: folder of the images (default: the JSON's folder); sa1b: required
    sources: Optional[tuple[str, ...]] = None  # sa1b: keep annotations of these sources ("manual", "auto"); None: all
    synthetic_count: int = 200  # synthetic: number of scenes
    synthetic_size: int = 256  # synthetic: side in pixels
    seed: int = 0  # synthetic: base seed
    synthetic_photos: bool = False  # synthetic: scikit-image photo backgrounds and textures
    synthetic_objects: tuple[int, int] = (4, 12)  # synthetic: range of top-level objects per scene

    def require_data(self, fmt: str) -> str:
        if not self.data:
            raise ConfigError(f"--data is needed for the {fmt!r} format")
        return self.data


def _synthetic(spec: DatasetSpec) -> Sequence[Sample]:
    offset = 0 if spec.split.lower() == "train" else 1_000_003
    photos = dependency_photos() if spec.synthetic_photos else None
    return SyntheticSceneDataset(spec.synthetic_count, size=(spec.synthetic_size, spec.synthetic_size),
                                 seed=spec.seed + offset, photos=photos, num_objects=tuple(spec.synthetic_objects))


def _labpics(spec: DatasetSpec) -> Sequence[Sample]:
    return LabPicsDataset(spec.require_data("labpics"), spec.split, spec.layout)


def _coco(spec: DatasetSpec) -> Sequence[Sample]:
    data = spec.require_data("coco")
    return CocoDataset(data, spec.images if spec.images else Path(data).parent)


def _folder(spec: DatasetSpec) -> Sequence[Sample]:
    return MaskFolderDataset(spec.require_data("folder"))


def _sa1b(spec: DatasetSpec) -> Sequence[Sample]:
    data = spec.require_data("sa1b")
    if not spec.images:
        raise ConfigError("--images is needed for the 'sa1b' format: the folder the JSON's file_name paths are "
                          "relative to (the IMAGES_DIR given to samkit annotate or samkit studio)")
    return SA1BDataset(data, spec.images, sources=spec.sources)


DATASET_FORMATS: dict[str, Callable[[DatasetSpec], Sequence[Sample]]] = {
    "labpics": _labpics,
    "coco": _coco,
    "folder": _folder,
    "sa1b": _sa1b,
    "synthetic": _synthetic,
}


def open_dataset(fmt: str, data: Optional[str] = None, split: str = "Train", **options) -> Sequence[Sample]:
    """A dataset (``Sequence[Sample]``) of a registered format.

    ``fmt``: ``labpics`` (``LabPicsDataset(data, split, layout)``), ``coco``
    (``CocoDataset(data, images or data's folder)``), ``folder`` (``MaskFolderDataset(data)``),
    ``sa1b`` (``SA1BDataset(data, images, sources=sources)``: ``data`` the folder of SA-1B JSON,
    ``images`` required) or ``synthetic`` (``SyntheticSceneDataset``; the ``Test`` split uses
    another seed than ``Train``). ``options`` are the other fields of :class:`DatasetSpec`.
    """
    opener = DATASET_FORMATS.get(fmt)
    if opener is None:
        raise ConfigError(f"unknown dataset format {fmt!r}; choose from {', '.join(DATASET_FORMATS)}")
    try:
        spec = DatasetSpec(data=data, split=split, **options)
    except TypeError as exc:
        raise ConfigError(f"open_dataset: {exc}") from None
    return opener(spec)
