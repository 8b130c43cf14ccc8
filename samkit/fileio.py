"""Atomic writes: results and checkpoints appear whole or not at all."""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

from PIL import Image


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    """Call ``write(f)`` on a temp file in the target folder, fsync, then rename it over
    ``path``. A crash leaves either the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def _json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, inf) replaced by None: JSON has no NaN."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = None) -> Path:
    """Write ``obj`` as strict JSON, atomically; NaN and infinite floats become ``null``."""
    return write_bytes(path, json.dumps(_json_safe(obj), indent=indent, allow_nan=False).encode())


def write_image(path: str | os.PathLike, image: Image.Image) -> Path:
    """Save a PIL image atomically; the format follows the file extension."""
    path = Path(path)
    buf = io.BytesIO()
    fmt = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    image.save(buf, format=fmt)
    return write_bytes(path, buf.getvalue())
