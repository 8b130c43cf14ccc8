"""Segment-everything cases run both in a process without torch and in the test's own process
(numpy only: this module imports no torch)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

# name -> OnnxAutoMaskGenerator arguments
CASES: dict[str, dict[str, Any]] = {
    "plain": dict(points_per_side=8),
    "rle": dict(points_per_side=8, output_mode="uncompressed_rle", min_mask_region_area=50),
}


def summary(records: list[dict[str, Any]]) -> list[Any]:
    """``[count, areas, sha256 of every segmentation]`` of a generator's records."""
    digest = hashlib.sha256()
    for r in records:
        seg = r["segmentation"]
        digest.update(np.packbits(seg).tobytes() if isinstance(seg, np.ndarray) else json.dumps(seg).encode())
    return [len(records), [r["area"] for r in records], digest.hexdigest()]
