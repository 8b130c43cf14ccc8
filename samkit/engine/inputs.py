"""What the data engine reads: a folder tree, a text file of image paths, or a glob.

Each comes back as an :class:`ImageScan`: a ``root`` folder and the images' paths relative to it,
so that the outputs mirror the tree below ``root`` and every image keeps the same relative name
(its ``file_name`` in the SA-1B JSON, its shard) however it was listed:

* a folder: every file below it with an image suffix (:data:`samkit.imageio.IMAGE_EXTENSIONS`),
  recursively, hidden files and folders, links to folders and the output folder left out
  (:func:`scan_images`); ``root`` is the folder;
* a text file: one path a line (blank lines and lines starting with ``#`` ignored, relative paths
  relative to the text file's folder), every line kept whatever its suffix (a file that is not an
  image becomes an error row of the run); ``root`` is the deepest folder holding them all;
* a glob (``photos/**/*.jpg``, ``**`` matching any depth): the matching files with an image
  suffix; ``root`` is the pattern's leading folders without a wildcard (``photos``).
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from samkit.errors import DatasetError
from samkit.imageio import IMAGE_EXTENSIONS

__all__ = ["ImageScan", "list_inputs", "scan_images", "list_images", "read_path_list", "match_glob"]

_WILDCARD = re.compile(r"[*?[]")


@dataclass
class ImageScan:
    """The images to annotate, relative to ``root``, and the folders that could not be listed."""

    files: list[Path]                                                       # relative to root, sorted
    folders_not_read: list[dict[str, str]] = field(default_factory=list)   # {"folder", "error"}
    root: Path = Path(".")                                                  # the folder files are relative to


def _inside(path: Path, folder: Path | None) -> bool:
    """Whether ``path`` lies below ``folder`` (both made absolute, links resolved)."""
    if folder is None:
        return False
    try:
        path.resolve().relative_to(folder)
        return True
    except ValueError:
        return False


def scan_images(root: str | os.PathLike, extensions: Sequence[str] = IMAGE_EXTENSIONS, *,
                skip: str | os.PathLike | None = None) -> ImageScan:
    """Image files below ``root`` (recursive; hidden files and folders, symbolic links to folders
    and the folder ``skip`` left out), and the subfolders that could not be listed.

    Raises:
        DatasetError: ``root`` is not a folder, or cannot be listed.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"images folder '{root}' " + ("is a file, not a folder" if root.exists()
                                                          else "does not exist"))
    skip_rel = None
    if skip is not None:
        try:
            skip_rel = Path(skip).resolve().relative_to(root.resolve())
        except ValueError:
            skip_rel = None  # not below root
    exts = {e.lower() for e in extensions}
    files: list[Path] = []
    not_read: list[dict[str, str]] = []
    stack = [Path()]
    while stack:
        rel_dir = stack.pop()
        try:
            with os.scandir(root / rel_dir) as it:
                entries = list(it)
        except OSError as exc:
            if rel_dir == Path():
                raise DatasetError(f"cannot list the images folder '{root}': {exc.strerror or exc}") from None
            not_read.append({"folder": rel_dir.as_posix(), "error": exc.strerror or str(exc)})
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            rel = rel_dir / entry.name
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir:
                if rel != skip_rel:
                    stack.append(rel)
            elif Path(entry.name).suffix.lower() in exts:
                files.append(rel)  # a file that turns out unreadable becomes an error row
    files.sort(key=lambda p: p.as_posix())
    not_read.sort(key=lambda d: d["folder"])
    return ImageScan(files, not_read, root)


def list_images(root: str | os.PathLike, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files below ``root`` (recursive, hidden files skipped), as sorted relative paths;
    :func:`scan_images` also says which folders could not be listed."""
    return scan_images(root, extensions).files


def _relative_to_common_root(paths: Sequence[Path], fallback: Path) -> ImageScan:
    """``paths`` (absolute, without duplicates) as paths relative to the deepest folder above them all."""
    if not paths:
        return ImageScan([], [], fallback)
    root = Path(os.path.commonpath([p.parent for p in paths]))
    files = sorted((p.relative_to(root) for p in paths), key=lambda p: p.as_posix())
    return ImageScan(files, [], root)


def read_path_list(list_file: str | os.PathLike, *, skip: str | os.PathLike | None = None) -> ImageScan:
    """The images a text file names, one path a line (see the module docstring); paths below
    ``skip`` (the output folder) are left out.

    Raises:
        DatasetError: the file cannot be read as text.
    """
    list_file = Path(list_file)
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read the list of images '{list_file}' ({exc}); give a folder, a glob, or a "
                           "UTF-8 text file with one image path a line") from None
    base = list_file.absolute().parent
    skip_dir = Path(skip).resolve() if skip is not None else None
    paths: dict[Path, None] = {}
    for line in lines:
        text = line.strip()
        if text and not text.startswith("#"):
            path = Path(os.path.normpath(base / text))  # an absolute line stays as it is
            if not _inside(path, skip_dir):
                paths.setdefault(path)
    return _relative_to_common_root(list(paths), base)


def match_glob(pattern: str, extensions: Sequence[str] = IMAGE_EXTENSIONS, *,
               skip: str | os.PathLike | None = None) -> ImageScan:
    """The files with an image suffix that ``pattern`` matches (``**``: any depth; hidden files
    only where the pattern names them), relative to its leading folders without a wildcard;
    files below ``skip`` (the output folder) are left out."""
    parts = Path(pattern).parts
    fixed = next((i for i, part in enumerate(parts) if _WILDCARD.search(part)), len(parts))
    root = Path(*parts[:fixed]) if fixed else Path(".")
    exts = {e.lower() for e in extensions}
    skip_dir = Path(skip).resolve() if skip is not None else None
    files = {Path(os.path.normpath(m)) for m in glob.glob(pattern, recursive=True)}
    keep = [p for p in files if p.suffix.lower() in exts and p.is_file() and not _inside(p, skip_dir)]
    rels = sorted((Path(os.path.relpath(p, root)) for p in keep), key=lambda p: p.as_posix())
    return ImageScan(rels, [], root)


def list_inputs(source: str | os.PathLike, extensions: Sequence[str] = IMAGE_EXTENSIONS, *,
                skip: str | os.PathLike | None = None) -> ImageScan:
    """The images of ``source``: a folder (:func:`scan_images`), a text file of paths
    (:func:`read_path_list`) or a glob (:func:`match_glob`); see the module docstring.

    Raises:
        DatasetError: ``source`` is an image file (annotate it with ``samkit auto``), none of the
            three, or a folder or text file that cannot be read.
    """
    path = Path(source)
    if path.is_dir():
        return scan_images(path, extensions, skip=skip)
    if path.is_file():
        if path.suffix.lower() in {e.lower() for e in extensions}:
            raise DatasetError(f"'{path}' is one image; annotate it with `samkit auto {path} --out DIR`, or give "
                               "its folder, a text file of image paths, or a glob")
        return read_path_list(path, skip=skip)
    if _WILDCARD.search(os.fspath(source)):
        return match_glob(os.fspath(source), extensions, skip=skip)
    raise DatasetError(f"images folder '{path}' does not exist (give a folder, a text file of image paths, or a "
                       "glob such as 'photos/**/*.jpg')")
