"""Weights: the ones that ship inside the package, and the official ones by name.

* Shipped: only samkit's own models. ``samkit_nano.safetensors`` holds the default model, produced
  by ``samkit train --recipe nano`` (see :mod:`samkit.train.recipes`) on generated scenes and clips
  only; its measured quality is in the README (*The default model*). A build of the package without
  the file falls back to random weights with a warning.
* Official (Meta's SAM 2 / 2.1 checkpoints): :mod:`samkit.weights.official` is the table of the
  eight files (URL, file name, Hugging Face id), :mod:`samkit.weights.cache` downloads, verifies
  and caches them (``download_checkpoint("sam2.1_hiera_tiny")``, ``samkit download NAME``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from samkit.weights.cache import cache_dir, cached_checkpoint, cached_file, download_checkpoint
from samkit.weights.official import OFFICIAL, OfficialCheckpoint, is_official, official_checkpoint, resolve_name

__all__ = ["BUNDLED", "bundled_checkpoint", "OFFICIAL", "OfficialCheckpoint", "official_checkpoint", "is_official",
           "resolve_name", "cache_dir", "cached_file", "cached_checkpoint", "download_checkpoint"]

# model name -> file in this folder
BUNDLED: dict[str, str] = {"samkit_nano": "samkit_nano.safetensors"}


def bundled_checkpoint(name: str) -> Optional[Path]:
    """The shipped weights of model ``name``, or None when the package has none for it."""
    file = BUNDLED.get(name)
    if file is None:
        return None
    path = Path(__file__).resolve().parent / file
    return path if path.is_file() else None
