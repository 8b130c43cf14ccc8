"""Atomic writes: results and checkpoints appear whole or not at all.

Permissions: a new file gets the mode ``open(path, "w")`` would give it (``0o666`` less the
umask, e.g. 0644 under umask 022, 0600 under 077), so labmates on a shared server can read
outputs as they read any other file you make. A file that is replaced keeps its permission
bits (as ``open(path, "w")`` keeps them), so a file someone made private stays private when a
job rewrites it; owner and group become the writer's, as with any newly created file.
"""

from __future__ import annotations

import io
import json
import math
import os
import secrets
import stat
from pathlib import Path
from typing import Any, BinaryIO, Callable

from PIL import Image

_TEMP_ATTEMPTS = 100  # names tried before giving up (37**8 names: collisions are rare)
_TEMP_LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789_"  # tempfile's alphabet; samkit.cli relies on it


def _create_temp(folder: Path, name: str) -> tuple[int, Path]:
    """Create a new, empty temp file ``.NAME.XXXXXXXX.tmp`` in ``folder``; ``(fd, path)``.

    Like :func:`tempfile.mkstemp` (``O_EXCL``: never follows or reuses an existing name) but
    with mode ``0o666``, so the kernel applies the umask (and any default ACL of the folder)
    exactly as for a file made by ``open(path, "w")``; ``mkstemp`` would make it 0600.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(_TEMP_ATTEMPTS):
        tmp = folder / f".{name}.{''.join(secrets.choice(_TEMP_LETTERS) for _ in range(8))}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temp file in {str(folder)!r} after {_TEMP_ATTEMPTS} tries")


def _kept_mode(path: Path) -> int | None:
    """Permission bits of the file ``path`` replaces (None if there is none). The set-id and
    sticky bits are not carried over."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return stat.S_IMODE(info.st_mode) & 0o777 if stat.S_ISREG(info.st_mode) else None


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    """Call ``write(f)`` on a temp file in the target folder, fsync, then rename it over
    ``path``. A crash leaves either the old file or the new one, never half of one.

    The result has the mode ``open(path, "w")`` would give: a new file ``0o666`` less the
    umask, a replaced file its old permission bits (see the module docstring).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path.parent, path.name)
    try:
        with os.fdopen(fd, "wb") as f:
            keep = _kept_mode(path)
            if keep is not None:
                os.chmod(f.fileno() if os.chmod in os.supports_fd else tmp, keep)
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
