"""A generated corpus of bad inputs: each is a clear :class:`SamkitError`, never a raw traceback.

Areas: image files (decompression bombs, truncated and damaged files, permissions) read by
``load_image`` and by video frame folders; checkpoint files (damaged pickles, malformed
safetensors, invalid saved configs, hostile pickles that must not run); the modes of files
written atomically. Every case checks the exact error class and that the message names the
file and the problem.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import stat
import struct
import subprocess
import sys
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from samkit.checkpoint import CONFIG_KEY, config_to_dict, read_checkpoint
from samkit.cli.main import main
from samkit.configs import get_config
from samkit.errors import (
    CheckpointError,
    CheckpointNotFoundError,
    ConfigError,
    ImageError,
    SamkitError,
    UnsafeCheckpointError,
    VideoError,
)
from samkit.fileio import atomic_write, write_bytes, write_json
from samkit.imageio import MAX_IMAGE_PIXELS, MAX_IMAGE_PIXELS_ENV, image_pixel_limit, load_image
from samkit.video.frames import ImageFolderSource, open_video

NOBODY = 65534  # uid / gid the permission cases drop to when the tests run as root


# ============================================================================ helpers
def raised(cls: type[BaseException], fn: Callable[[], Any], *words: str) -> BaseException:
    """Call ``fn``; it must raise exactly ``cls`` (not a subclass, not a builtin) whose
    message contains every one of ``words``. Returns the exception."""
    with pytest.raises(BaseException) as info:
        fn()
    exc = info.value
    assert type(exc) is cls, f"expected {cls.__name__}, got {type(exc).__name__}: {exc}"
    message = str(exc)
    for word in words:
        assert word in message, f"{word!r} not in the message: {message}"
    assert "Traceback" not in message
    return exc


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A valid 1 x 1 PNG whose IHDR is patched to claim ``width x height`` (CRC recomputed):
    a few dozen bytes that PIL reports as a huge image until it tries to decode it."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def real_png(path: Path, height: int = 32, width: int = 48) -> Path:
    """A small genuine RGB PNG."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def safetensors_file(path: Path, header: Any, body: bytes = b"", raw_header: bytes | None = None) -> Path:
    """A safetensors-layout file: 8-byte little-endian header length, the header, the body."""
    head = raw_header if raw_header is not None else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(head)) + head + body)
    return path


F32_2 = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}  # a valid one-tensor header


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temp folder every user may enter (pytest's tmp_path lives under a 0700 folder), for
    the cases run as an unprivileged user."""
    folder = Path(tempfile.mkdtemp(prefix="samkit-robust-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        for root, dirs, _ in os.walk(folder):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o755)
        for root, dirs, files in os.walk(folder, topdown=False):
            for f in files:
                os.unlink(os.path.join(root, f))
            for d in dirs:
                os.rmdir(os.path.join(root, d))
        os.rmdir(folder)


def unprivileged(fn: Callable[[], Any]) -> dict[str, Any]:
    """Run ``fn()`` as a user that permissions apply to, and report what it raised:
    ``{"cls": name or None, "mro": [...], "msg": str}``.

    As root (which ignores file permissions) it runs in a forked child that drops to uid/gid
    65534 first; as another user it runs here.
    """
    def outcome() -> dict[str, Any]:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - reported to the test, which checks the class
            return {"cls": type(exc).__name__, "mro": [c.__name__ for c in type(exc).__mro__],
                    "msg": str(exc)}
        return {"cls": None, "mro": [], "msg": ""}

    if os.geteuid() != 0:
        return outcome()
    if not hasattr(os, "fork"):
        pytest.skip("running as root without os.fork: cannot drop privileges to test permissions")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, run, report, leave without pytest's teardown
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.write(write_end, json.dumps(outcome()).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    if not chunks:
        pytest.skip("could not drop privileges to uid 65534 in a child process")
    return json.loads(b"".join(chunks))


def check_outcome(result: dict[str, Any], cls: type[BaseException], *words: str) -> None:
    """What :func:`unprivileged` reported is exactly ``cls`` with every one of ``words``."""
    assert result["cls"] == cls.__name__, result
    for word in words:
        assert word in result["msg"], f"{word!r} not in the message: {result['msg']}"


# ============================================================================ image files: bombs
def test_bomb_over_pils_level_is_an_image_error(tmp_path: Path) -> None:
    bomb = png_claiming(tmp_path / "bomb.png", 100_000, 100_000)
    assert bomb.stat().st_size < 100
    exc = raised(ImageError, lambda: load_image(bomb), "bomb.png", "too large", "10,000,000,000 pixels",
                 f"{MAX_IMAGE_PIXELS:,}", MAX_IMAGE_PIXELS_ENV)
    assert exc.__cause__ is None  # PIL's DecompressionBombError does not leak as the cause
    assert Image.MAX_IMAGE_PIXELS == 1024 * 1024 * 1024 // 4 // 3  # PIL's global left alone


def test_bomb_under_pils_level_is_refused_from_the_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = png_claiming(tmp_path / "wide.png", 5000, 5000)  # 25 M pixels: PIL says nothing
    decoded: list[object] = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self) or real_load(self))
    raised(ImageError, lambda: load_image(bomb, max_pixels=1_000_000), "wide.png", "5000 x 5000",
           "25,000,000 pixels", "1,000,000", "max_pixels=25000000")
    assert decoded == []  # refused before any pixel was decoded


def test_pixel_limit_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = real_png(tmp_path / "photo.png", 40, 50)  # 2000 pixels
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "1999")
    assert image_pixel_limit() == 1999
    raised(ImageError, lambda: load_image(image), "photo.png", "50 x 40", "1,999")
    assert load_image(image, max_pixels=2000).shape == (40, 50, 3)  # the keyword wins
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "2_000")
    assert load_image(image).shape == (40, 50, 3)  # exactly at the limit is allowed
    for bad in ("lots", "-5", "0", "1e9"):
        monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, bad)
        raised(ConfigError, lambda: load_image(image), MAX_IMAGE_PIXELS_ENV, repr(bad), "positive whole number")
    monkeypatch.delenv(MAX_IMAGE_PIXELS_ENV)
    assert image_pixel_limit() == MAX_IMAGE_PIXELS
    for bad_kw in (0, -1, 2.5, True):
        raised(ConfigError, lambda: load_image(image, max_pixels=bad_kw), "max_pixels", "positive whole number")


def test_pils_own_guard_refusing_within_samkits_limit(tmp_path: Path) -> None:
    bomb = png_claiming(tmp_path / "huge.png", 100_000, 100_000)
    raised(ImageError, lambda: load_image(bomb, max_pixels=10**11), "huge.png", "within samkit's limit",
           "PIL.Image.MAX_IMAGE_PIXELS", "5000000000")


def test_pils_bomb_warning_as_an_error_is_an_image_error(tmp_path: Path) -> None:
    bomb = png_claiming(tmp_path / "warned.png", 12_000, 12_000)  # 144 M: PIL warns, samkit allows
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        raised(ImageError, lambda: load_image(bomb), "warned.png", "144,000,000", "warnings filter")
        raised(ImageError, lambda: load_image(bomb, max_pixels=100_000_000), "warned.png", "too large",
               "100,000,000")
    with warnings.catch_warnings(record=True):  # default filters: PIL's warning, then samkit's error
        warnings.simplefilter("always")
        raised(ImageError, lambda: load_image(bomb, max_pixels=100_000_000), "warned.png", "12000 x 12000")
        # within the limit, the claimed size is then found to be a lie: a damaged file
        raised(ImageError, lambda: load_image(bomb), "warned.png", "cannot read")


# ============================================================================ image files: damaged
def test_truncated_and_damaged_images(tmp_path: Path) -> None:
    good = real_png(tmp_path / "good.png", 64, 64).read_bytes()
    cases = {
        "cut.png": good[: len(good) // 2],                       # truncated in the pixel data
        "header_only.png": good[:33],                            # signature + IHDR, no IDAT
        "bad_crc.png": good[:29] + b"\x00\x00\x00\x00" + good[33:],  # IHDR checksum wrong
        "noise.png": good[:41] + bytes(range(256)) * 4,          # IDAT replaced by noise
        "empty.png": b"",
        "text.png": b"hello, I am not an image\n",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        raised(ImageError, lambda: load_image(tmp_path / name), name)
    raised(ImageError, lambda: load_image(tmp_path / "missing.png"), "missing.png", "does not exist")
    raised(ImageError, lambda: load_image(tmp_path / "good.png" / "x.png"), "does not exist")
    raised(ImageError, lambda: load_image(tmp_path), "folder")


def test_image_in_an_unreadable_folder_says_permission(open_tmp: Path) -> None:
    locked = open_tmp / "locked"
    locked.mkdir()
    real_png(locked / "a.png")
    locked.chmod(0o000)
    check_outcome(unprivileged(lambda: load_image(locked / "a.png")), ImageError,
                  "a.png", "permission denied", str(locked))
    locked.chmod(0o755)
    (locked / "a.png").chmod(0o000)
    check_outcome(unprivileged(lambda: load_image(locked / "a.png")), ImageError,
                  "a.png", "permission denied", "not readable")
    # a missing file in a readable folder still says so
    check_outcome(unprivileged(lambda: load_image(locked / "b.png")), ImageError, "b.png", "does not exist")


# ============================================================================ video frame folders
def test_frame_folder_with_a_bomb(tmp_path: Path) -> None:
    first = tmp_path / "first"
    first.mkdir()
    png_claiming(first / "00000.png", 100_000, 100_000)
    raised(VideoError, lambda: open_video(first, 16), "00000.png", "too large", MAX_IMAGE_PIXELS_ENV)
    later = tmp_path / "later"
    later.mkdir()
    real_png(later / "00000.png", 8, 8)
    png_claiming(later / "00001.png", 100_000, 100_000)
    png_claiming(later / "00002.png", 3000, 3000)
    source = open_video(later, 16)
    assert source.frame(0).shape == (8, 8, 3)
    raised(VideoError, lambda: source.frame(1), "frame 1", "00001.png", "too large")
    small = ImageFolderSource(later, 16, max_pixels=1000)
    raised(VideoError, lambda: small.frame(2), "frame 2", "00002.png", "3000 x 3000", "1,000")
    raised(VideoError, lambda: ImageFolderSource(later, 16, max_pixels=10), "00000.png", "8 x 8")


def test_frame_folder_permissions(open_tmp: Path) -> None:
    frames = open_tmp / "frames"
    frames.mkdir()
    for i in range(2):
        real_png(frames / f"{i:05d}.png", 8, 8)
    frames.chmod(0o311)  # may be entered but not listed
    check_outcome(unprivileged(lambda: open_video(frames, 16)), VideoError, "frames", "permission denied")
    frames.chmod(0o000)  # may not even be entered
    check_outcome(unprivileged(lambda: open_video(frames, 16)), VideoError, "frames", "permission denied")
    check_outcome(unprivileged(lambda: ImageFolderSource(frames, 16)), VideoError, "frames",
                  "permission denied")
    frames.chmod(0o755)
    (frames / "00001.png").chmod(0o000)
    check_outcome(unprivileged(lambda: open_video(frames, 16).frame(1)), VideoError,
                  "frame 1", "00001.png", "permission denied")


def test_engine_lists_a_bomb_as_an_error_row(tmp_path: Path) -> None:
    from samkit.engine import annotate_folder

    class NoMasks:
        """A generator that finds nothing (the model is not what is tested)."""

        def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
            return []

    images = tmp_path / "images"
    images.mkdir()
    real_png(images / "good.png")
    png_claiming(images / "bomb.png", 100_000, 100_000)
    summary = annotate_folder(NoMasks(), images, tmp_path / "out", progress=False)
    assert summary.annotated == 1
    assert [row["file"] for row in summary.failed] == ["bomb.png"]
    assert "too large" in summary.failed[0]["error"]


# ============================================================================ the command line
def test_cli_segment_of_a_bomb_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bomb = png_claiming(tmp_path / "BOMB.png", 100_000, 100_000)
    out = tmp_path / "m.png"
    code = main(["segment", str(bomb), "--point", "1,1", "--out", str(out)])
    err = capsys.readouterr().err
    assert code != 0 and not out.exists()
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "BOMB.png" in err and "too large" in err and MAX_IMAGE_PIXELS_ENV in err


def test_cli_segment_with_a_damaged_checkpoint_is_one_line(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    image = real_png(tmp_path / "photo.png")
    garbage = tmp_path / "weights.pt"
    garbage.write_bytes(b"\x80\x02" + bytes(range(256)))
    code = main(["segment", str(image), "--point", "1,1", "--checkpoint", str(garbage),
                 "--out", str(tmp_path / "m.png")])
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1 and "Traceback" not in err
    assert "weights.pt" in err and "damaged" in err


def test_cli_subprocess_bomb_has_no_traceback(tmp_path: Path) -> None:
    bomb = png_claiming(tmp_path / "BOMB.png", 100_000, 100_000)
    run = subprocess.run([sys.executable, "-m", "samkit.cli.main", "segment", str(bomb), "--point", "1,1",
                          "--out", str(tmp_path / "m.png")], capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "BOMB.png" in lines[0] and "too large" in lines[0], run.stderr


# ============================================================================ checkpoints: .pt
class _Evil:
    """Unpickling this runs ``touch MARKER``: weights_only loading must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


class _EvilEval:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (eval, (f"open({str(self.marker)!r}, 'w')",))


def test_hostile_pickles_are_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    files = {}
    files["zip.pt"] = tmp_path / "zip.pt"
    torch.save({"model": {"x": torch.zeros(1)}, "payload": _Evil(marker)}, files["zip.pt"])
    files["legacy.pt"] = tmp_path / "legacy.pt"
    torch.save({"model": _Evil(marker)}, files["legacy.pt"], _use_new_zipfile_serialization=False)
    for protocol in (0, 2, 5):
        files[f"plain{protocol}.pt"] = tmp_path / f"plain{protocol}.pt"
        files[f"plain{protocol}.pt"].write_bytes(pickle.dumps({"model": _Evil(marker)}, protocol=protocol))
    files["eval.pth"] = tmp_path / "eval.pth"
    files["eval.pth"].write_bytes(pickle.dumps(_EvilEval(marker), protocol=2))
    for name, path in files.items():
        if name == "plain0.pt":  # protocol 0 has no \x80 header: not even looked at
            raised(CheckpointError, lambda: read_checkpoint(path), name, "not a checkpoint")
        elif name == "plain5.pt":  # a FRAME opcode torch's safe loader does not read: refused as damaged
            raised(CheckpointError, lambda: read_checkpoint(path), name, "cannot be read safely",
                   "nothing was run")
        else:  # the safe loader meets os.system / eval: refused as unsafe
            raised(UnsafeCheckpointError, lambda: read_checkpoint(path), name, "could run code",
                   "nothing was run")
        assert not marker.exists(), f"{name} ran code"
    import samkit

    raised(UnsafeCheckpointError, lambda: samkit.build_model(checkpoint=files["zip.pt"]), "zip.pt")
    assert not marker.exists()


def _torch_bytes(obj: Any, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, **kwargs)
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


def _without_storage(data: bytes) -> bytes:
    """A torch zip checkpoint with its tensor storages removed."""
    src = zipfile.ZipFile(io.BytesIO(data))
    return _zip({n: src.read(n) for n in src.namelist() if "/data/" not in n})


_LEGACY = _torch_bytes({"model": {"w": torch.ones(64)}}, _use_new_zipfile_serialization=False)
PT_CASES: dict[str, tuple[bytes, str]] = {
    # name: (file bytes, word the message must contain)
    "pickle_garbage.pt": (b"\x80\x02" + bytes(range(256)), "damaged"),                 # unknown opcode
    "pickle_garbage4.pt": (b"\x80\x04\x95garbage garbage", "damaged"),
    "one_byte.pt": (b"\x80", "corrupt"),                                                # IndexError
    "eof.pt": (b"\x80\x02}q\x00(X\x01\x00\x00\x00a", "corrupt"),                        # EOFError mid-dict
    "legacy_cut_eof.pt": (_LEGACY[:250], "corrupt"),                                     # EOFError
    "legacy_cut_global.pt": (_LEGACY[:300], "damaged"),                                  # "GLOBAL collectio."
    "legacy_cut_storage.pt": (_LEGACY[:-100], "corrupt"),                                # tensor bytes cut
    "zip_cut.pt": (_torch_bytes({"model": {"w": torch.ones(64)}})[:400], "truncated"),
    "zip_not_torch.pt": (_zip({"hello.txt": b"hi"}), "not a PyTorch checkpoint"),
    "zip_garbage_pkl.pt": (_zip({"archive/data.pkl": b"\x80\x02garbage"}), "corrupt"),
    "zip_no_storage.pt": (_without_storage(_torch_bytes({"model": {"w": torch.ones(64)}})), "corrupt"),
    "empty.pt": (b"", "empty"),
    "text.pt": (b"these are my notes\n", "not a checkpoint"),
    "list.pt": (_torch_bytes([1, 2, 3]), "no model weights"),
    "not_tensors.pt": (_torch_bytes({"model": {"a": 1, "b": "two"}}), "'a' is an int, not a tensor"),
    "int_keys.pt": (_torch_bytes({"model": {1: torch.zeros(1)}}), "not a parameter name"),
    "empty_sd.pt": (_torch_bytes({"model": {}}), "empty state dict"),
    "config_unknown.pt": (_torch_bytes({"model": {"w": torch.zeros(1)},
                                        CONFIG_KEY: {"name": "x", "warp_drive": 9}}), "warp_drive"),
    "config_missing.pt": (_torch_bytes({"model": {"w": torch.zeros(1)}, CONFIG_KEY: {"image_size": 512}}),
                          "missing the required field(s) name"),
    "config_type.pt": (_torch_bytes({"model": {"w": torch.zeros(1)},
                                     CONFIG_KEY: {"name": "x", "hiera": {"embed_dim": "96"}}}),
                       "config.hiera.embed_dim must be an int"),
    "config_list.pt": (_torch_bytes({"model": {"w": torch.zeros(1)}, CONFIG_KEY: [1, 2]}), "its saved model config"),
}


@pytest.mark.parametrize("name", sorted(PT_CASES))
def test_damaged_pt_files(tmp_path: Path, name: str) -> None:
    data, word = PT_CASES[name]
    path = tmp_path / name
    path.write_bytes(data)
    raised(CheckpointError, lambda: read_checkpoint(path), name, word)


def test_folders_missing_files_and_permissions(tmp_path: Path, open_tmp: Path) -> None:
    (tmp_path / "weights.pt").mkdir()
    raised(CheckpointError, lambda: read_checkpoint(tmp_path / "weights.pt"), "weights.pt", "folder")
    (tmp_path / "w.safetensors").mkdir()
    raised(CheckpointError, lambda: read_checkpoint(tmp_path / "w.safetensors"), "w.safetensors", "folder")
    raised(CheckpointNotFoundError, lambda: read_checkpoint(tmp_path / "nope.pt"), "nope.pt", "not found")
    locked = open_tmp / "locked"
    locked.mkdir()
    (locked / "m.pt").write_bytes(_torch_bytes({"model": {"w": torch.zeros(1)}}))
    (locked / "m.pt").chmod(0o000)
    check_outcome(unprivileged(lambda: read_checkpoint(locked / "m.pt")), CheckpointError,
                  "m.pt", "permission denied")
    (locked / "m.pt").chmod(0o644)
    locked.chmod(0o000)
    check_outcome(unprivileged(lambda: read_checkpoint(locked / "m.pt")), CheckpointError,
                  "m.pt", "permission denied")


# ============================================================================ checkpoints: safetensors
def _config_meta(**changes: Any) -> dict[str, str]:
    cfg = config_to_dict(get_config("sam2.1_hiera_tiny"))
    cfg.update(changes)
    return {CONFIG_KEY: json.dumps(cfg)}


ST_CASES: dict[str, tuple[Any, bytes, str]] = {
    # name: (header, body, word the message must contain)
    "list_header": ([1, 2, 3], b"", "JSON list, not an object"),
    "string_header": ("weights", b"", "JSON str"),
    "entry_not_object": ({"w": [0, 8]}, b"\0" * 8, "'w' is described by a JSON list"),
    "no_offsets": ({"w": {"dtype": "F32", "shape": [2]}}, b"\0" * 8, "no data_offsets"),
    "no_dtype": ({"w": {"shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, "no dtype"),
    "shape_vs_bytes": ({"w": {"dtype": "F32", "shape": [3, 3], "data_offsets": [0, 8]}}, b"\0" * 8,
                       "shape [3, 3] (9 values of F32) but 8 bytes"),
    "not_divisible": ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 7]}}, b"\0" * 8,
                      "7 bytes, not a whole number of F32"),
    "negative_shape": ({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8,
                       "invalid shape"),
    "shape_not_list": ({"w": {"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}}, b"\0" * 8,
                       "invalid shape"),
    "offsets_reversed": ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, b"\0" * 8,
                         "invalid data_offsets"),
    "offsets_three": ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4, 8]}}, b"\0" * 8,
                      "invalid data_offsets"),
    "past_the_end": ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8, "truncated"),
    "bad_dtype": ({"w": {"dtype": "F128", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8,
                  "unsupported dtype 'F128'"),
    "dtype_list": ({"w": {"dtype": ["F32"], "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8,
                   "unsupported dtype"),
    "meta_not_strings": ({**F32_2, "__metadata__": {"a": 1}}, b"\0" * 8, "metadata"),
    "config_not_json": ({**F32_2, "__metadata__": {CONFIG_KEY: "{not json"}}, b"\0" * 8, "not valid JSON"),
    "config_unknown": ({**F32_2, "__metadata__": _config_meta(flux_capacitor=True)}, b"\0" * 8,
                       "flux_capacitor"),
    "config_no_name": ({**F32_2, "__metadata__": {CONFIG_KEY: json.dumps({"image_size": 512})}}, b"\0" * 8,
                       "missing the required field(s) name"),
    "config_section": ({**F32_2, "__metadata__": _config_meta(hiera=7)}, b"\0" * 8,
                       "config.hiera must be a JSON object"),
    "config_bool": ({**F32_2, "__metadata__": _config_meta(pred_obj_scores="yes")}, b"\0" * 8,
                    "config.pred_obj_scores must be a bool"),
    "config_array": ({**F32_2, "__metadata__": {CONFIG_KEY: "[]"}}, b"\0" * 8, "must be a JSON object"),
    "empty_header": ({}, b"", "empty state dict"),
}


@pytest.mark.parametrize("name", sorted(ST_CASES))
def test_malformed_safetensors(tmp_path: Path, name: str) -> None:
    header, body, word = ST_CASES[name]
    path = safetensors_file(tmp_path / f"{name}.safetensors", header, body)
    raised(CheckpointError, lambda: read_checkpoint(path), f"{name}.safetensors", word)


def test_safetensors_raw_damage(tmp_path: Path) -> None:
    cases = {
        "empty.safetensors": (b"", "empty"),
        "short.safetensors": (b"\x05\x00\x00", "truncated"),
        "huge_length.safetensors": (struct.pack("<Q", 2**60) + b"{}", "truncated"),
        "not_utf8.safetensors": (struct.pack("<Q", 4) + b"\xff\xfe\xfd\xfc", "bad header"),
        "deep.safetensors": (None, "bad header"),
        "pickle.safetensors": (_torch_bytes({"model": {"w": torch.zeros(1)}}), "not a safetensors file"),
    }
    deep = b"[" * 100_000 + b"]" * 100_000
    for name, (data, word) in cases.items():
        path = tmp_path / name
        path.write_bytes(data if data is not None else struct.pack("<Q", len(deep)) + deep)
        raised(CheckpointError, lambda: read_checkpoint(path), name, word)


def test_a_valid_safetensors_file_still_loads(tmp_path: Path) -> None:
    body = struct.pack("<2f", 1.5, -2.0)
    path = safetensors_file(tmp_path / "ok.safetensors", {**F32_2, "__metadata__": _config_meta()}, body)
    sd, cfg = read_checkpoint(path)
    assert torch.equal(sd["w"], torch.tensor([1.5, -2.0])) and cfg == get_config("sam2.1_hiera_tiny")
    older = config_to_dict(get_config("sam2.1_hiera_tiny"))
    del older["image_size"], older["hiera"]["q_pool"]  # fields with defaults may be left out
    path = safetensors_file(tmp_path / "older.safetensors",
                            {**F32_2, "__metadata__": {CONFIG_KEY: json.dumps(older)}}, body)
    assert read_checkpoint(path)[1] == get_config("sam2.1_hiera_tiny")


def test_every_checkpoint_error_is_a_samkit_error() -> None:
    for cls in (CheckpointError, CheckpointNotFoundError, UnsafeCheckpointError, ImageError, VideoError,
                ConfigError):
        assert issubclass(cls, SamkitError)


# ============================================================================ file modes
@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    """Set the process umask for one test (restored afterwards)."""
    old = os.umask(0o022)
    os.umask(old)

    def set_umask(value: int) -> None:
        os.umask(value)

    try:
        yield set_umask
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_files_get_the_mode_open_would_give(tmp_path: Path, umask: Callable[[int], None],
                                                mask: int, expected: int) -> None:
    umask(mask)
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what open(path, "w") gives, for comparison
    assert _mode(plain) == expected
    written = [write_json(tmp_path / "a.json", {"a": 1}), write_bytes(tmp_path / "b.bin", b"b"),
               atomic_write(tmp_path / "sub" / "c.pt", lambda f: torch.save({"w": torch.zeros(1)}, f))]
    for path in written:
        assert _mode(path) == expected, f"{path.name}: {oct(_mode(path))} != {oct(expected)}"
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_replaced_files_keep_their_mode(tmp_path: Path, umask: Callable[[int], None]) -> None:
    umask(0o022)
    private = write_json(tmp_path / "private.json", {"v": 1})
    private.chmod(0o600)
    write_json(private, {"v": 2})
    assert _mode(private) == 0o600 and json.loads(private.read_text()) == {"v": 2}
    umask(0o077)
    shared = write_json(tmp_path / "shared.json", {"v": 1})
    shared.chmod(0o644)
    write_json(shared, {"v": 2})
    assert _mode(shared) == 0o644
    frozen = write_json(tmp_path / "frozen.json", {"v": 1})
    frozen.chmod(0o444)
    write_json(frozen, {"v": 2})  # written through the temp file's descriptor, then renamed
    assert _mode(frozen) == 0o444 and json.loads(frozen.read_text()) == {"v": 2}
    setid = write_json(tmp_path / "setid.json", {"v": 1})
    setid.chmod(0o4755)
    write_json(setid, {"v": 2})
    assert _mode(setid) == 0o755  # permission bits kept, the set-id bit not


def test_failed_write_keeps_the_old_file_and_mode(tmp_path: Path, umask: Callable[[int], None]) -> None:
    umask(0o022)
    path = write_json(tmp_path / "keep.json", {"v": 1})
    path.chmod(0o640)

    def broken(f: Any) -> None:
        f.write(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert _mode(path) == 0o640 and json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["keep.json"]
