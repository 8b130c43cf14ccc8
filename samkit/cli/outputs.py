"""Output folders checked before a command starts its work, so that a long run never ends on a
folder it cannot write."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from samkit.errors import OutputPathError

__all__ = ["check_out_dir"]


def check_out_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """``path`` as a folder this process can write in, or a clear error; creates nothing.

    ``path`` may be missing (the command creates it): then its nearest existing parent must be a
    folder this process can write in. The check writes and removes one empty temporary file, so
    the permission bits, ACLs, read-only mounts and root's rights all have their say.

    Raises:
        OutputPathError: ``path`` (or a parent) is a file, or the folder cannot be written; the
            message names ``option`` and the path.
    """
    out = Path(path)
    existing = out
    try:
        if out.exists() and not out.is_dir():
            raise OutputPathError(f"{option} '{out}' is a file where a folder is needed; choose another path or "
                                  "move the file")
        while not existing.exists():  # the nearest parent that exists ('.' for a relative path)
            existing = existing.parent
        if not existing.is_dir():
            raise OutputPathError(f"{option} '{out}' cannot be created: '{existing}' is a file; choose another "
                                  "path")
        fd, probe = tempfile.mkstemp(prefix=".samkit-write-check.", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OutputPathError:
        raise
    except OSError as exc:
        reasons = {errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                   errno.EROFS: "read-only file system"}
        reason = reasons.get(exc.errno, exc.strerror or str(exc))
        raise OutputPathError(f"{option} '{out}': cannot write in '{existing}' ({reason}); choose a folder you "
                              "may write in") from None
    return out
