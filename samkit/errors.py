"""One exception hierarchy for samkit.

Every error a user can trigger is a :class:`SamkitError`. Each subclass also derives from
the closest builtin (``ValueError``, ``FileNotFoundError``, ...) so that code written
against the official SAM 2 classes, which raise builtins, keeps working.

Messages say what was wrong and what to do about it.
"""

from __future__ import annotations


class SamkitError(Exception):
    """Base class of every samkit error."""


class ConfigError(SamkitError, ValueError):
    """An unknown model name or an inconsistent configuration."""


class CheckpointError(SamkitError, ValueError):
    """A checkpoint file that cannot be used: not a checkpoint, truncated, wrong variant."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint path does not exist."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint that would run code when unpickled; it was refused and nothing ran."""


class ImageError(SamkitError, ValueError):
    """An image that cannot be used (wrong shape, dtype, channels, unreadable file)."""


class PromptError(SamkitError, ValueError):
    """Prompts (points, labels, boxes, masks) of the wrong shape or with invalid values."""


class StateError(SamkitError, RuntimeError):
    """A call made in the wrong order, e.g. ``predict`` before ``set_image``."""


class VideoError(SamkitError, ValueError):
    """A video source that cannot be read, or a frame index out of range."""


class DatasetError(SamkitError, ValueError):
    """A dataset folder or annotation file that does not have the expected layout."""


class MissingDependencyError(SamkitError, ImportError):
    """An optional package that a feature needs is not installed; the message names the extra."""


class DownloadError(SamkitError, OSError):
    """Official weights that could not be downloaded (offline, HTTP error, truncated or wrong file);
    the message names the file, the URL and where to put the file by hand."""


class OutputPathError(SamkitError, OSError):
    """An output path that cannot be used: a read-only folder, a file where a folder is needed (or
    the reverse); the message names the path and the option it came from."""
