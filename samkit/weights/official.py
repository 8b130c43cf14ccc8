"""The official SAM 2 / SAM 2.1 checkpoints: where Meta publishes each one, and its name on the
Hugging Face Hub (the ids the official package and transformers take, ``facebook/sam2.1-hiera-tiny``).

This table is the one place that knows these files; :mod:`samkit.weights.cache` downloads from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from samkit.configs import canonical_name
from samkit.errors import ConfigError

__all__ = ["OfficialCheckpoint", "OFFICIAL", "official_checkpoint", "is_official", "is_hub_id", "resolve_name"]

_BASE = "https://dl.fbaipublicfiles.com/segment_anything_2"
# the folder of each release on Meta's server (the dates of the releases)
_RELEASES = {"sam2": "072824", "sam2.1": "092824"}
_SIZES = ("tiny", "small", "base_plus", "large")


@dataclass(frozen=True)
class OfficialCheckpoint:
    """One official checkpoint file."""

    variant: str  # its registered name in samkit.configs, e.g. "sam2.1_hiera_tiny"
    url: str  # Meta's download address; its last part is file_name
    file_name: str  # e.g. "sam2.1_hiera_tiny.pt": the name on Meta's server, in the Hub repo and in the cache
    hf_repo: str  # Hugging Face Hub repo id, e.g. "facebook/sam2.1-hiera-tiny"
    sha256: str | None = None  # expected SHA-256 (hex) of the file; None where not known (then not checked)


def _entry(version: str, size: str) -> OfficialCheckpoint:
    variant = f"{version}_hiera_{size}"
    file_name = f"{variant}.pt"
    return OfficialCheckpoint(variant=variant, url=f"{_BASE}/{_RELEASES[version]}/{file_name}", file_name=file_name,
                              hf_repo=f"facebook/{version}-hiera-{size.replace('_', '-')}")


# variant name -> its official checkpoint; the digests are not known here (no network where this
# table was written): fill a sha256 and every download of that file is checked against it
OFFICIAL: dict[str, OfficialCheckpoint] = {
    e.variant: e for e in (_entry(v, s) for v in _RELEASES for s in _SIZES)
}


def is_hub_id(name: str) -> bool:
    """Whether ``name`` is written as a Hugging Face Hub id (``owner/repo``)."""
    return "/" in name.strip() and not name.strip().startswith(("/", "."))


def resolve_name(name: str) -> str:
    """The registered variant name of ``name``: a Hub id of an official checkpoint
    (``facebook/sam2.1-hiera-tiny`` -> ``sam2.1_hiera_tiny``), else any name or alias that
    :func:`samkit.configs.canonical_name` accepts. Raises :class:`ConfigError` for an unknown one."""
    if is_hub_id(name):
        repo = name.strip().lower()
        for entry in OFFICIAL.values():
            if entry.hf_repo.lower() == repo:
                return entry.variant
        known = ", ".join(e.hf_repo for e in OFFICIAL.values())
        raise ConfigError(f"unknown Hugging Face model id {name!r}; samkit knows the official SAM 2 / 2.1 "
                          f"checkpoints: {known}")
    return canonical_name(name)


def is_official(name: str) -> bool:
    """Whether ``name`` (a variant name, alias or Hub id) has an official checkpoint to download."""
    try:
        return resolve_name(name) in OFFICIAL
    except ConfigError:
        return False


def official_checkpoint(name: str) -> OfficialCheckpoint:
    """The table row of ``name`` (a variant name, alias, file name or Hub id); a
    :class:`ConfigError` naming the downloadable variants when it has none."""
    key = resolve_name(name)
    entry = OFFICIAL.get(key)
    if entry is None:
        raise ConfigError(f"{key!r} has no official checkpoint to download; the official ones are "
                          f"{', '.join(OFFICIAL)} (or their Hugging Face ids, e.g. facebook/sam2.1-hiera-tiny)")
    return entry
