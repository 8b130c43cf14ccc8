"""Weights that ship inside the package.

Only samkit's own models are here (pretrained SAM 2 weights are Meta's, and are loaded from a
file the user has: ``build_model(checkpoint="sam2.1_hiera_tiny.pt")``).

``samkit_nano.safetensors`` holds the default model, produced by ``samkit train --recipe nano``
(see :mod:`samkit.train.recipes`) on generated scenes and clips only; its measured quality is in
the README (*The default model*). A build of the package without the file falls back to random
weights with a warning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

__all__ = ["BUNDLED", "bundled_checkpoint"]

# model name -> file in this folder
BUNDLED: dict[str, str] = {"samkit_nano": "samkit_nano.safetensors"}


def bundled_checkpoint(name: str) -> Optional[Path]:
    """The shipped weights of model ``name``, or None when the package has none for it."""
    file = BUNDLED.get(name)
    if file is None:
        return None
    path = Path(__file__).resolve().parent / file
    return path if path.is_file() else None
