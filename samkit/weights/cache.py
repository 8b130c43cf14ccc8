"""Official checkpoints by name: downloaded once, verified, kept in a cache folder.

``download_checkpoint("sam2.1_hiera_tiny")`` returns the path of the cached file, downloading it
first when it is not there. A download goes to a ``*.part`` file in the cache folder, is checked
(the whole Content-Length arrived, the SHA-256 when :data:`~samkit.weights.official.OFFICIAL`
has one, and a strict load as the named variant) and only then renamed into place, so a file
under a checkpoint's name is always a whole, loadable one; a killed download leaves only the
``.part`` file, which the next call deletes and starts again. ``manifest.json`` in the folder
records each file's variant, URL, size and SHA-256, and every later use hashes the file again, so
a corrupted file is an error that says to download it again, never a silently wrong model.

Environment:

* ``SAMKIT_HOME``: the cache folder (default ``$XDG_CACHE_HOME/samkit``, else ``~/.cache/samkit``).
* ``SAMKIT_WEIGHTS_URL``: a mirror; it replaces Meta's address up to the file name
  (``$SAMKIT_WEIGHTS_URL/sam2.1_hiera_tiny.pt``), so the mirror holds the files in one folder.
* ``SAMKIT_DOWNLOAD_TIMEOUT``: seconds to wait for a connection or for the next bytes (default 30).

A Hugging Face id (``facebook/sam2.1-hiera-tiny``) is fetched with ``huggingface_hub`` when it is
installed (into the Hub's own cache, shared with the official package) and from Meta's address
otherwise. Nothing here touches the network or the disk at import.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from samkit.checkpoint import check_matches, load_into, read_checkpoint
from samkit.configs import get_config
from samkit.errors import CheckpointError, DownloadError
from samkit.fileio import write_json
from samkit.model.sam2 import SAM2Model
from samkit.weights.official import OfficialCheckpoint, is_hub_id, official_checkpoint

__all__ = ["ENV_HOME", "ENV_URL", "ENV_TIMEOUT", "DEFAULT_TIMEOUT", "CachedFile", "cache_dir", "cache_path",
           "checkpoint_url", "read_manifest", "cached_file", "cached_checkpoint", "download_checkpoint",
           "sha256_of"]

ENV_HOME = "SAMKIT_HOME"
ENV_URL = "SAMKIT_WEIGHTS_URL"
ENV_TIMEOUT = "SAMKIT_DOWNLOAD_TIMEOUT"
DEFAULT_TIMEOUT = 30.0  # seconds to connect, and to wait for each next block of bytes
MANIFEST = "manifest.json"
_MANIFEST_FORMAT = "samkit-weights/1"
_CHUNK = 1 << 20


@dataclass
class CachedFile:
    """One row of the manifest: a verified checkpoint file."""

    variant: str  # registered variant name, e.g. "sam2.1_hiera_tiny"
    path: str  # the file: relative to the cache folder, or absolute (the Hugging Face cache)
    url: str  # where it came from
    size: int  # bytes
    sha256: str  # hex digest of the whole file, taken when it was verified
    source: str  # "url", "huggingface" or "local" (a file put into the cache folder by hand)
    verified_at: str  # UTC time of the strict load, ISO 8601

    def resolved(self) -> Path:
        """The file's absolute path."""
        p = Path(self.path)
        return p if p.is_absolute() else cache_dir() / p


# --------------------------------------------------------------------------- places
def cache_dir() -> Path:
    """The cache folder (not created here): ``$SAMKIT_HOME``, else ``$XDG_CACHE_HOME/samkit``,
    else ``~/.cache/samkit``."""
    home = os.environ.get(ENV_HOME)
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "samkit"


def cache_path(name: str) -> Path:
    """Where the official checkpoint of ``name`` lives in the cache folder (it may not be there)."""
    return cache_dir() / official_checkpoint(name).file_name


def checkpoint_url(entry: OfficialCheckpoint) -> str:
    """The address to download ``entry`` from: Meta's, or ``$SAMKIT_WEIGHTS_URL/<file name>``."""
    mirror = os.environ.get(ENV_URL)
    return f"{mirror.rstrip('/')}/{entry.file_name}" if mirror else entry.url


def _timeout(timeout: float | None) -> float:
    if timeout is not None:
        return float(timeout)
    text = os.environ.get(ENV_TIMEOUT)
    if not text:
        return DEFAULT_TIMEOUT
    try:
        return float(text)
    except ValueError:
        raise DownloadError(f"{ENV_TIMEOUT}={text!r} is not a number of seconds") from None


# --------------------------------------------------------------------------- the manifest
def read_manifest() -> dict[str, CachedFile]:
    """The manifest's rows by file name; empty when there is none (or it is unreadable: then
    every file in the folder is verified again on its next use)."""
    try:
        data = json.loads((cache_dir() / MANIFEST).read_text())
        return {name: CachedFile(**row) for name, row in data["files"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _write_manifest(rows: dict[str, CachedFile]) -> None:
    write_json(cache_dir() / MANIFEST, {"format": _MANIFEST_FORMAT,
                                        "files": {k: asdict(v) for k, v in sorted(rows.items())}}, indent=1)


def _record(file_name: str, row: CachedFile | None) -> None:
    rows = read_manifest()
    if row is None:
        if rows.pop(file_name, None) is not None:
            _write_manifest(rows)
        return
    rows[file_name] = row
    _write_manifest(rows)


# --------------------------------------------------------------------------- verification
def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _verify(path: Path, entry: OfficialCheckpoint, origin: str, digest: str) -> None:
    """Raise :class:`DownloadError` unless ``path`` has the table's digest (where it has one)
    and loads strictly as ``entry.variant``."""
    if entry.sha256 is not None and digest != entry.sha256.lower():
        raise DownloadError(f"{origin}: the file's SHA-256 is {digest}, but {entry.variant}'s official "
                            f"checkpoint has {entry.sha256}: it is not that file")
    try:
        sd, _ = read_checkpoint(path)
        cfg = get_config(entry.variant)
        check_matches(sd, cfg, origin)
        load_into(SAM2Model(cfg), sd, origin)  # the strict load the file will get when used
    except CheckpointError as exc:
        raise DownloadError(f"{origin} did not give a usable {entry.variant} checkpoint: {exc}") from None


def _row(entry: OfficialCheckpoint, path: Path, url: str, digest: str, source: str) -> CachedFile:
    home = cache_dir()
    stored = path.name if path.parent == home else str(path)
    return CachedFile(variant=entry.variant, path=stored, url=url, size=path.stat().st_size, sha256=digest,
                      source=source, verified_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def _redownload(entry: OfficialCheckpoint) -> str:
    return f"delete it and download it again: samkit download {entry.variant} --force"


# --------------------------------------------------------------------------- the cache
def cached_file(name: str) -> CachedFile | None:
    """The manifest row of ``name``'s official checkpoint when its file is there with the recorded
    size (no hashing: for listings; :func:`cached_checkpoint` checks the contents)."""
    entry = official_checkpoint(name)
    row = read_manifest().get(entry.file_name)
    if row is None:
        return None
    path = row.resolved()
    return row if path.is_file() and path.stat().st_size == row.size else None


def cached_checkpoint(name: str) -> Path | None:
    """The verified cached checkpoint of ``name`` (a variant name, alias or Hugging Face id), or
    None when it is not in the cache. The file is hashed again and compared with the manifest: a
    changed file raises :class:`CheckpointError` saying to download it again. A file put into the
    cache folder by hand (under its official name) is verified by a strict load and recorded."""
    entry = official_checkpoint(name)
    row = read_manifest().get(entry.file_name)
    if row is None:
        path = cache_dir() / entry.file_name
        if not path.is_file():
            return None
        digest = sha256_of(path)
        try:
            _verify(path, entry, str(path), digest)
        except DownloadError as exc:
            raise CheckpointError(f"{path} is in samkit's weights cache but is not a usable {entry.variant} "
                                  f"checkpoint ({exc}); {_redownload(entry)}") from None
        _record(entry.file_name, _row(entry, path, entry.url, digest, "local"))
        return path
    path = row.resolved()
    if not path.is_file():  # deleted by hand (or the Hugging Face cache was cleared): not cached
        _record(entry.file_name, None)
        return None
    size = path.stat().st_size
    if size != row.size:
        raise CheckpointError(f"the cached checkpoint {path} is corrupt: {size} bytes, but {row.size} were "
                              f"downloaded from {row.url}; {_redownload(entry)}")
    digest = sha256_of(path)
    if digest != row.sha256:
        raise CheckpointError(f"the cached checkpoint {path} is corrupt: its SHA-256 is {digest}, but it was "
                              f"{row.sha256} when downloaded from {row.url}; {_redownload(entry)}")
    if entry.sha256 is not None and digest != entry.sha256.lower():
        raise CheckpointError(f"the cached checkpoint {path} (from {row.url}) is not {entry.variant}'s official file: "
                              f"its SHA-256 is {digest}, the official one's {entry.sha256}; {_redownload(entry)}")
    return path


def _instructions(entry: OfficialCheckpoint, url: str) -> str:
    where = url if url == entry.url else f"{url} (or Meta's {entry.url})"
    return (f"To get it another way, download {where} yourself and put it at {cache_dir() / entry.file_name} "
            f"(or pass checkpoint=PATH / --checkpoint PATH); a mirror can be set with {ENV_URL}=BASE_URL")


def _fetch(entry: OfficialCheckpoint, url: str, progress: bool, timeout: float) -> Path:
    """Download ``url`` to ``<file>.part``, check it, rename it into place; the final path."""
    home = cache_dir()
    home.mkdir(parents=True, exist_ok=True)
    final = home / entry.file_name
    part = home / f"{entry.file_name}.part"
    part.unlink(missing_ok=True)  # what a killed earlier download left: start again
    what = f"could not download {entry.variant} from {url}"
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "samkit"})
        with urllib.request.urlopen(request, timeout=timeout) as response, open(part, "wb") as f:
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            h, got = hashlib.sha256(), 0
            with tqdm(total=expected, unit="B", unit_scale=True, unit_divisor=1024, desc=entry.file_name,
                      disable=not progress, leave=False) as bar:
                while block := response.read(_CHUNK):
                    f.write(block)
                    h.update(block)
                    got += len(block)
                    bar.update(len(block))
            f.flush()
            os.fsync(f.fileno())
        if expected is not None and got != expected:
            raise DownloadError(f"{what}: the transfer stopped after {got} of {expected} bytes (truncated)")
        digest = h.hexdigest()
        _verify(part, entry, url, digest)
        os.replace(part, final)
    except DownloadError as exc:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{exc}. Nothing was kept in the cache. {_instructions(entry, url)}") from None
    except BaseException as exc:
        part.unlink(missing_ok=True)
        if isinstance(exc, urllib.error.HTTPError):
            exc.close()
        if isinstance(exc, Exception):
            raise DownloadError(f"{what}: {_reason(exc, timeout)}. {_instructions(entry, url)}") from None
        raise
    _record(entry.file_name, _row(entry, final, url, digest, "url"))
    return final


def _reason(exc: BaseException, timeout: float) -> str:
    """What went wrong, in words, for the errors of a download."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"the server answered HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"no answer within {timeout:g} s (timed out; offline or the server is unreachable)"
    if isinstance(exc, socket.gaierror):
        return f"the host name could not be resolved ({exc.strerror or exc}): are you offline?"
    if isinstance(exc, ConnectionRefusedError):
        return "the connection was refused (offline, or the server is unreachable)"
    if isinstance(exc, http.client.IncompleteRead):
        return f"the transfer stopped after {len(exc.partial)} bytes (truncated)"
    if isinstance(exc, ValueError):
        return f"{exc} (is {ENV_URL} a full URL such as https://host/folder?)"
    return f"{type(exc).__name__}: {exc}"


def _hub_fetch(entry: OfficialCheckpoint, force: bool) -> Path:
    """Fetch with ``huggingface_hub`` (into its cache), verify, record; ImportError without it."""
    from huggingface_hub import hf_hub_download  # optional: the direct URL is the fallback

    origin = f"huggingface.co/{entry.hf_repo} ({entry.file_name})"
    again = {"force_download": True} if force else {}
    try:
        path = Path(hf_hub_download(repo_id=entry.hf_repo, filename=entry.file_name, **again))
    except Exception as exc:  # the Hub's many error types (offline, HTTP, auth): reported, then the URL is tried
        raise DownloadError(f"could not download {origin}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                            ) from None
    digest = sha256_of(path)
    try:
        _verify(path, entry, origin, digest)
    except DownloadError as exc:
        raise DownloadError(f"{exc}; delete {path} from the Hugging Face cache") from None
    _record(entry.file_name, _row(entry, path, f"https://huggingface.co/{entry.hf_repo}", digest, "huggingface"))
    return path


def download_checkpoint(name: str, *, force: bool = False, progress: bool = True,
                        timeout: float | None = None) -> Path:
    """The path of the official checkpoint of ``name``, downloaded first when it is not cached.

    Args:
        name: a variant name or alias (``sam2.1_hiera_tiny``, ``sam2.1_hiera_t``) or a Hugging Face
            id (``facebook/sam2.1-hiera-tiny``: fetched with ``huggingface_hub`` when installed,
            else from Meta's address).
        force: download again even when the file is cached (a corrupt cached file needs it).
        progress: show a progress bar (on stderr).
        timeout: seconds to wait for the connection and for each next block of bytes (default
            ``$SAMKIT_DOWNLOAD_TIMEOUT``, else 30).

    Raises:
        DownloadError: offline, unreachable, an HTTP error, a truncated transfer, a wrong digest or
            a file that does not load strictly as the variant; nothing is left in the cache then,
            and the message says where to download the file by hand and where to put it.
        CheckpointError: the cached file changed since it was downloaded (without ``force``).
    """
    entry = official_checkpoint(name)
    if not force:
        path = cached_checkpoint(name)
        if path is not None:
            return path
    hub_failure = None
    if is_hub_id(name):
        try:
            return _hub_fetch(entry, force)
        except ImportError:
            hub_failure = "huggingface_hub is not installed (pip install huggingface_hub)"
        except DownloadError as exc:
            hub_failure = str(exc)
    try:
        return _fetch(entry, checkpoint_url(entry), progress, _timeout(timeout))
    except DownloadError as exc:
        if hub_failure is None:
            raise
        raise DownloadError(f"{name}: {hub_failure}; the direct download did not work either: {exc}") from None
