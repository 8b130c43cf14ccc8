"""SA-1B JSON folders: what ``samkit annotate`` and ``samkit studio`` write, read back for training.

A folder of annotations holds one JSON per image (``<relative image path without suffix>.json``,
in subfolders as the images are):

    {"image": {"image_id", "file_name", "height", "width"},
     "annotations": [{"segmentation": {"size": [H, W], "counts": ...}, "source": "manual"|"auto", ...}]}

``counts`` is COCO's compressed string or an uncompressed list of run lengths. An annotation
without ``source`` was written by ``samkit annotate`` and counts as ``"auto"``.

:func:`read_sa1b_folder` finds and reads every SA-1B JSON below a folder (the one place that
decides which files are SA-1B: the reader here and ``samkit export`` both use it);
:class:`SA1BDataset` is the training and evaluation reader.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Optional

import numpy as np

from samkit.data.files import PathLike, read_image, require_dir, stack_masks
from samkit.data.sample import LazyDataset, Sample
from samkit.errors import ConfigError, DatasetError
from samkit.masks.rle import decode_rle_counts

__all__ = ["SA1BDataset", "SA1B_SOURCES", "is_sa1b_record", "find_sa1b_files", "read_sa1b_json",
           "read_sa1b_folder", "check_sa1b_record", "annotation_source", "decode_sa1b_mask", "sa1b_image_path"]

# the values of an annotation's "source" that samkit writes (studio: clicked "manual", accepted
# proposals "auto"; samkit annotate writes no source, read as "auto")
SA1B_SOURCES: tuple[str, ...] = ("manual", "auto")


def is_sa1b_record(data: Any) -> bool:
    """Whether parsed JSON is an SA-1B record: an ``"image"`` object with a ``"file_name"`` and an
    ``"annotations"`` list (``summary.json`` and other JSON files are not)."""
    return (isinstance(data, dict) and isinstance(data.get("image"), dict) and "file_name" in data["image"]
            and isinstance(data.get("annotations"), list))


def find_sa1b_files(annotations_dir: PathLike) -> list[Path]:
    """Every ``*.json`` below ``annotations_dir`` (recursive; hidden files and folders such as
    ``.studio/`` left out, symbolic links to folders not followed), as sorted relative paths.
    Whether each one is SA-1B is decided when it is read (:func:`read_sa1b_json`).

    Raises:
        DatasetError: ``annotations_dir`` is not a folder, or a folder below it cannot be listed
            (its annotations would be left out unseen).
    """
    root = Path(annotations_dir)
    require_dir(root, "SA-1B annotations")

    def unreadable(exc: OSError) -> None:
        raise DatasetError(f"cannot list the annotations folder {str(exc.filename)!r} "
                           f"({exc.strerror or exc}); fix its permissions or move it out of {str(root)!r}")

    found: list[Path] = []
    for folder, dirs, files in os.walk(root, onerror=unreadable):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel_dir = Path(folder).relative_to(root)
        found += [rel_dir / f for f in files if not f.startswith(".") and f.lower().endswith(".json")]
    return sorted(found, key=lambda p: p.as_posix())


def read_sa1b_json(path: PathLike) -> Optional[dict[str, Any]]:
    """The SA-1B record in the JSON file ``path``, or None when the file holds other JSON.

    Raises:
        DatasetError: the file cannot be read or is not JSON.
    """
    try:
        with open(path, "r", encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:  # ValueError: JSONDecodeError, UnicodeDecodeError
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DatasetError(f"cannot read annotation file {str(path)!r} ({reason}); fix or remove it") from None
    return data if is_sa1b_record(data) else None


def read_sa1b_folder(annotations_dir: PathLike) -> Iterator[tuple[Path, dict[str, Any]]]:
    """``(relative JSON path, record)`` for every SA-1B JSON below ``annotations_dir``, in sorted
    path order, read one at a time; other JSON files (``summary.json``) are skipped.

    Raises:
        DatasetError: ``annotations_dir`` is not a folder, or a JSON file cannot be read.
    """
    root = Path(annotations_dir)
    for rel in find_sa1b_files(root):
        record = read_sa1b_json(root / rel)
        if record is not None:
            yield rel, record


def _positive_int(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and float(value).is_integer() and value > 0


def check_sa1b_record(record: dict[str, Any], where: str) -> tuple[int, int]:
    """Check what samkit reads from an SA-1B record (``is_sa1b_record`` already true): the image's
    ``height`` and ``width``, and every annotation's ``segmentation`` (an RLE of that size with
    ``counts`` a string or a list). Returns ``(height, width)``.

    Raises:
        DatasetError: the first problem, naming ``where`` (the file) and the annotation.
    """
    info = record["image"]
    if not isinstance(info["file_name"], str) or not info["file_name"]:
        raise DatasetError(f"{where}: image.file_name must be a non-empty string (the image's path relative to the "
                           f"images folder), got {info['file_name']!r}")
    if not (_positive_int(info.get("height")) and _positive_int(info.get("width"))):
        raise DatasetError(f"{where}: image.height and image.width must be positive integers, got "
                           f"{info.get('height')!r} x {info.get('width')!r}; SA-1B JSON records the image size")
    h, w = int(info["height"]), int(info["width"])
    for k, ann in enumerate(record["annotations"]):
        seg = ann.get("segmentation") if isinstance(ann, dict) else None
        if not isinstance(seg, dict) or not isinstance(seg.get("counts"), (str, list)) or \
                not isinstance(seg.get("size"), (list, tuple)) or len(seg["size"]) != 2:
            raise DatasetError(f"{where}: annotations[{k}] needs a 'segmentation' RLE {{'size': [H, W], 'counts': "
                               f"...}}, got {type(seg).__name__ if not isinstance(seg, dict) else sorted(seg)}")
        size = [int(v) if _positive_int(v) else v for v in seg["size"]]
        if size != [h, w]:
            raise DatasetError(f"{where}: annotations[{k}] has a mask of size {seg['size'][0]} x {seg['size'][1]} but "
                               f"the image is {h} x {w}; re-annotate the image or remove that annotation")
    return h, w


def annotation_source(annotation: dict[str, Any]) -> str:
    """Who made an annotation: its ``"source"``, or ``"auto"`` without one (``samkit annotate``)."""
    source = annotation.get("source")
    return source if isinstance(source, str) and source else "auto"


def decode_sa1b_mask(annotation: dict[str, Any], where: str = "an SA-1B annotation") -> np.ndarray:
    """An annotation's mask, ``H x W`` bool, from its COCO RLE (compressed string or list of runs).

    Raises:
        DatasetError: counts that are not an RLE of that size, naming ``where``.
    """
    seg = annotation["segmentation"]
    h, w = (int(v) for v in seg["size"])
    try:
        return decode_rle_counts(seg["counts"], h, w)
    except DatasetError as exc:
        raise DatasetError(f"{where}: the mask cannot be decoded: {exc}; re-annotate the image or remove that "
                           "annotation") from None


def sa1b_image_path(images_dir: PathLike, file_name: str, where: str) -> Path:
    """``images_dir / file_name``; a ``file_name`` that would leave ``images_dir`` (absolute, a
    drive, ``..``) is refused.

    Raises:
        DatasetError: such a ``file_name``, naming ``where`` (the JSON file).
    """
    posix, windows = PurePosixPath(file_name), PureWindowsPath(file_name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or ".." in posix.parts or ".." in windows.parts:
        raise DatasetError(f"{where}: image.file_name {file_name!r} points outside the images folder; it must be "
                           "a path relative to --images, without '..' (fix the JSON, or remove it)")
    return Path(images_dir) / posix


class SA1BDataset(LazyDataset):
    """Images and masks from a folder of SA-1B JSON (``samkit annotate --out`` or
    ``samkit studio --out``).

    Every SA-1B JSON below ``annotations_dir`` (see :func:`read_sa1b_folder`) is one image,
    ``images_dir / image.file_name``; its kept annotations, in file order, are its masks
    (``N x H x W`` bool). Images without a kept annotation are left out. The JSON files are read
    once here (to check them and find the images) and again when a sample is indexed, so a
    sample shows the file as it is then.

    Args:
        annotations_dir: the folder of SA-1B JSON (searched recursively).
        images_dir: the folder the JSON's ``file_name`` paths are relative to.
        sources: keep only annotations whose source (:func:`annotation_source`) is one of these,
            e.g. ``{"manual"}`` (a single string is one source); ``None`` keeps all.

    Raises:
        DatasetError: a missing folder, no SA-1B JSON, a JSON that cannot be read or whose
            ``file_name`` leaves ``images_dir``, images that are missing, masks whose size is not
            the image's, or no annotation kept at all.
        ConfigError: an empty ``sources``.
    """

    def __init__(self, annotations_dir: PathLike, images_dir: PathLike, *,
                 sources: Optional[Collection[str]] = None) -> None:
        self.annotations_dir = Path(annotations_dir)
        self.images_dir = Path(images_dir)
        if sources is not None:
            sources = {sources} if isinstance(sources, str) else {str(s) for s in sources}
            if not sources:
                raise ConfigError(f"sources must name at least one source (e.g. {', '.join(SA1B_SOURCES)}), or be "
                                  "None for all")
        self.sources: Optional[frozenset[str]] = None if sources is None else frozenset(sources)
        require_dir(self.annotations_dir, "SA-1B annotations")
        require_dir(self.images_dir, "SA-1B images")

        self._entries: list[tuple[Path, Path]] = []  # (JSON path relative to annotations_dir, image path)
        missing: list[str] = []
        records = 0
        found: dict[str, int] = {}  # annotations per source, for the message when none is kept
        for rel, record in read_sa1b_folder(self.annotations_dir):
            records += 1
            where = str(self.annotations_dir / rel)
            check_sa1b_record(record, where)
            image_path = sa1b_image_path(self.images_dir, record["image"]["file_name"], where)
            for ann in record["annotations"]:
                found[annotation_source(ann)] = found.get(annotation_source(ann), 0) + 1
            if not self._kept(record):
                continue
            if not image_path.is_file():
                missing.append(f"{where!r} -> {str(image_path)!r}")
                continue
            self._entries.append((rel, image_path))
        if not records:
            raise DatasetError(f"no SA-1B JSON found below {str(self.annotations_dir)!r}; give the folder that "
                               "samkit annotate --out or samkit studio --out wrote (--data), and the images folder "
                               "as --images")
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise DatasetError(f"{len(missing)} annotated images are missing: " + ", ".join(missing[:5]) + more +
                               "; give as --images the folder the images were annotated from")
        if not self._entries:
            counts = ", ".join(f"{s} {n}" for s, n in sorted(found.items())) or "none"
            kept = "" if self.sources is None else f" from sources {sorted(self.sources)}"
            raise DatasetError(f"no annotation{kept} in the {records} SA-1B JSON below "
                               f"{str(self.annotations_dir)!r} (annotations by source: {counts})")

    def _kept(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        """The annotations of ``record`` that ``sources`` keeps, in file order."""
        anns = record["annotations"]
        return anns if self.sources is None else [a for a in anns if annotation_source(a) in self.sources]

    def _name(self, entry: tuple[Path, Path]) -> str:
        return entry[0].with_suffix("").as_posix()

    def _load(self, entry: tuple[Path, Path]) -> Sample:
        rel, image_path = entry
        path = self.annotations_dir / rel
        record = read_sa1b_json(path)
        if record is None:
            raise DatasetError(f"annotation file {str(path)!r} is no longer SA-1B JSON (it changed after the dataset "
                               "was opened); open the dataset again")
        h, w = check_sa1b_record(record, str(path))
        image = read_image(image_path, (h, w))
        masks = [decode_sa1b_mask(a, f"{path}: annotation {a.get('id', '?')}") for a in self._kept(record)]
        return Sample(image=image, masks=stack_masks(masks, (h, w)), ignore=None, name=self._name(entry))
