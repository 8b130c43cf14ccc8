"""Video annotation files in the SA-V layout: the ``video.json`` that ``samkit studio`` writes for a video
(docs/studio/API.md, "Videos", "On disk"), read back for exports (and later, training).

For a video ``<rel>`` (its path below the images folder, without suffix) the studio writes
``ANNOTATIONS_DIR/<rel>/video.json``:

    {"video": {"file_name", "height", "width", "num_frames", "fps"},
     "objects": [{"id": int, "name": str|null}],
     "prompts": [...],
     "masklet_id": [obj, ...], "masklet_frames": [t, ...],
     "masklet": [[{"size": [H, W], "counts": ...} | null for each obj of masklet_id] for each t of masklet_frames]}

``masklet[i][j]`` is object ``masklet_id[j]`` on frame ``masklet_frames[i]``; ``counts`` is COCO's
compressed string or an uncompressed list of run lengths; null (or a mask with no pixel) means the
object has no mask on that frame.

:func:`read_video_folder` finds and reads every ``video.json`` below a folder (hidden folders such
as ``.studio/`` left out), :func:`check_video_record` checks one, :func:`video_masklets` gives each
object's masks by frame.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

from samkit.data.files import PathLike, require_dir
from samkit.errors import DatasetError

__all__ = ["VIDEO_JSON", "is_video_record", "find_video_files", "read_video_json", "read_video_folder",
           "check_video_record", "video_masklets", "video_object_names"]

# the name of a video's annotation file, in the folder of its label PNGs
VIDEO_JSON = "video.json"


def is_video_record(data: Any) -> bool:
    """Whether parsed JSON is an SA-V video record: a ``"video"`` object and a ``"masklet"`` list."""
    return isinstance(data, dict) and isinstance(data.get("video"), dict) and isinstance(data.get("masklet"), list)


def find_video_files(annotations_dir: PathLike) -> list[Path]:
    """Every ``video.json`` below ``annotations_dir`` (recursive; hidden folders left out, symbolic
    links to folders not followed), as sorted paths relative to it.

    Raises:
        DatasetError: ``annotations_dir`` is not a folder, or a folder below it cannot be listed.
    """
    root = Path(annotations_dir)
    require_dir(root, "annotations")

    def unreadable(exc: OSError) -> None:
        raise DatasetError(f"cannot list the annotations folder {str(exc.filename)!r} "
                           f"({exc.strerror or exc}); fix its permissions or move it out of {str(root)!r}")

    found: list[Path] = []
    for folder, dirs, files in os.walk(root, onerror=unreadable):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if VIDEO_JSON in files:
            found.append(Path(folder).relative_to(root) / VIDEO_JSON)
    return sorted(found, key=lambda p: p.as_posix())


def read_video_json(path: PathLike) -> Optional[dict[str, Any]]:
    """The video record in ``path``, or None when the file holds other JSON.

    Raises:
        DatasetError: the file cannot be read or is not JSON.
    """
    try:
        with open(path, "r", encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:  # ValueError: JSONDecodeError, UnicodeDecodeError
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DatasetError(f"cannot read video annotation file {str(path)!r} ({reason}); fix or remove it") from None
    return data if is_video_record(data) else None


def _whole(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and float(value).is_integer()


def check_video_record(record: dict[str, Any], where: str) -> tuple[int, int, int]:
    """Check what samkit reads from a video record (``is_video_record`` already true): the video's
    ``file_name``, ``height``, ``width`` and ``num_frames``; ``objects``; ``masklet_id`` (object ids
    >= 1, no repeats), ``masklet_frames`` (frames of the video, no repeats) and ``masklet`` (a row per
    frame, an entry per object: null or an RLE of the video's size). Returns ``(height, width,
    num_frames)``.

    Raises:
        DatasetError: the first problem, naming ``where`` (the file) and the field.
    """
    info = record["video"]
    if not isinstance(info.get("file_name"), str) or not info["file_name"]:
        raise DatasetError(f"{where}: video.file_name must be a non-empty string (the video's path relative to the "
                           f"images folder), got {info.get('file_name')!r}")
    sizes = [info.get(k) for k in ("height", "width", "num_frames")]
    if not all(_whole(v) and v > 0 for v in sizes):
        raise DatasetError(f"{where}: video.height, video.width and video.num_frames must be positive integers, got "
                           f"{sizes}")
    h, w, n = (int(v) for v in sizes)
    objects = record.get("objects", [])
    if not isinstance(objects, list) or not all(isinstance(o, dict) and _whole(o.get("id")) for o in objects):
        raise DatasetError(f"{where}: objects must be a list of {{'id': int, 'name': str|null}}")
    ids, frames = record.get("masklet_id"), record.get("masklet_frames")
    if not isinstance(ids, list) or not all(_whole(i) and i >= 1 for i in ids) or len(set(ids)) != len(ids):
        raise DatasetError(f"{where}: masklet_id must be a list of distinct object ids (integers from 1), got {ids!r}")
    if not isinstance(frames, list) or not all(_whole(t) and 0 <= t < n for t in frames) or \
            len(set(frames)) != len(frames):
        raise DatasetError(f"{where}: masklet_frames must be a list of distinct frame numbers in 0..{n - 1}, got "
                           f"{frames!r}")
    rows = record["masklet"]
    if len(rows) != len(frames):
        raise DatasetError(f"{where}: masklet has {len(rows)} rows but masklet_frames names {len(frames)} frames; "
                           "they must match (one row per frame)")
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(ids):
            raise DatasetError(f"{where}: masklet[{i}] (frame {frames[i]}) must be a list of {len(ids)} entries, one "
                               "per object of masklet_id")
        for j, rle in enumerate(row):
            if rle is None:
                continue
            if not isinstance(rle, dict) or not isinstance(rle.get("counts"), (str, list)) or \
                    not isinstance(rle.get("size"), (list, tuple)) or len(rle["size"]) != 2:
                raise DatasetError(f"{where}: masklet[{i}][{j}] (object {ids[j]}, frame {frames[i]}) must be null or "
                                   "an RLE {'size': [H, W], 'counts': ...}")
            if [int(v) if _whole(v) else v for v in rle["size"]] != [h, w]:
                raise DatasetError(f"{where}: object {ids[j]} on frame {frames[i]} has a mask of size "
                                   f"{rle['size'][0]} x {rle['size'][1]} but the video is {h} x {w}; fix or remove it")
    return h, w, n


def video_object_names(record: dict[str, Any]) -> dict[int, Optional[str]]:
    """Object id -> name (None when it has none) of every object the record lists (``objects``, then
    any id of ``masklet_id`` that ``objects`` leaves out), sorted by id."""
    names: dict[int, Optional[str]] = {int(i): None for i in record.get("masklet_id", [])}
    for obj in record.get("objects", []):
        name = obj.get("name")
        names[int(obj["id"])] = name if isinstance(name, str) and name.strip() else None
    return dict(sorted(names.items()))


def video_masklets(record: dict[str, Any]) -> dict[int, dict[int, dict[str, Any]]]:
    """Object id -> {frame: RLE} of a checked record: the non-null entries of ``masklet``, frames
    sorted. Objects without any mask are left out."""
    ids = [int(i) for i in record["masklet_id"]]
    out: dict[int, dict[int, dict[str, Any]]] = {}
    for t, row in sorted(zip((int(t) for t in record["masklet_frames"]), record["masklet"])):
        for obj, rle in zip(ids, row):
            if rle is not None:
                out.setdefault(obj, {})[t] = rle
    return dict(sorted(out.items()))


def read_video_folder(annotations_dir: PathLike) -> Iterator[tuple[Path, dict[str, Any]]]:
    """``(the video's folder relative to annotations_dir, checked record)`` for every ``video.json``
    below ``annotations_dir``, in sorted path order; a ``video.json`` holding other JSON is skipped.

    Raises:
        DatasetError: ``annotations_dir`` is not a folder; a ``video.json`` cannot be read or fails
            :func:`check_video_record`.
    """
    root = Path(annotations_dir)
    for rel in find_video_files(root):
        record = read_video_json(root / rel)
        if record is not None:
            check_video_record(record, str(root / rel))
            yield rel.parent, record
