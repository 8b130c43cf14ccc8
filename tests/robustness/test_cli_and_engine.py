"""Bad inputs at the command line's edges and in the data engine: each a clear one-line error (exit
code 2, no traceback) or a row of the engine's summary, and no output silently lost.

The command-line cases run ``python -m samkit.cli`` in a subprocess. Root ignores file permissions,
so the read-only and unreadable-folder cases run in a child that drops to ``nobody`` once its
imports are loaded (the interpreter itself lies below /root, which ``nobody`` cannot read).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch
from PIL import Image

from samkit.cli.main import describe_os_error, main
from samkit.data.coco import CocoDataset
from samkit.engine import AnnotateWorker, SA1BWriter, annotate_folder
from samkit.errors import ConfigError, DatasetError, ImageError, PromptError
from tests.test_engine import SquaresGenerator, make_images

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534


# ----------------------------------------------------------------------------- helpers
def samkit_cli(*args: Any, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -m samkit.cli ARGS`` from the checkout."""
    return subprocess.run([sys.executable, "-m", "samkit.cli", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


UNPRIVILEGED = """
import os, sys
sys.path.insert(0, {root!r})
import PIL.Image
PIL.Image.init()  # the image plugins, imported while the interpreter's files are readable
from samkit.cli.main import main
{prelude}
if os.geteuid() == 0:
    os.setgroups([])
    os.setgid({uid})
    os.setuid({uid})
{body}
"""


def run_unprivileged(body: str, prelude: str = "", timeout: int = 600) -> subprocess.CompletedProcess:
    """Python code run as ``nobody`` (when the tests run as root) after ``prelude``'s imports."""
    code = UNPRIVILEGED.format(root=str(ROOT), uid=NOBODY, prelude=prelude, body=body)
    env = dict(os.environ, HOME=tempfile.gettempdir())
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=env)


def unprivileged_cli(*args: Any, load_model: bool = False) -> subprocess.CompletedProcess:
    """``samkit ARGS`` as ``nobody``; ``load_model``: build the default model first, so that
    torch's lazy imports happen before the privileges are dropped."""
    prelude = "import samkit\nsamkit.build_model()" if load_model else ""
    return run_unprivileged(f"sys.exit(main({[str(a) for a in args]!r}))", prelude)


def error_line(r: subprocess.CompletedProcess, command: str) -> str:
    """The one-line error of a failed command: exit code 2, no traceback, ``samkit CMD: error: ...``
    as the last line of stderr."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith(f"samkit {command}: error: "), r.stderr
    assert sum(": error: " in line for line in lines) == 1, r.stderr
    return lines[-1]


@pytest.fixture()
def shared_dir() -> Iterator[Path]:
    """A folder that ``nobody`` may enter and read (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="samkit-robustness-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for p in [path, *path.rglob("*")]:
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o755)
        shutil.rmtree(path, ignore_errors=True)


def writable_by_all(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


def read_only_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o555)
    return path


def small_image(path: Path, size: tuple[int, int] = (48, 64)) -> Path:
    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)
    path.chmod(0o644)
    return path


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` pixels (a decompression bomb)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


# ----------------------------------------------------------------------------- the CLI's OS errors
def test_out_in_a_read_only_folder_is_refused_before_the_work(shared_dir):
    ro = read_only_dir(shared_dir / "ro")
    line = error_line(unprivileged_cli("eval-track", "--out", ro / "report", "--clips", "1", "--frames", "2"),
                      "eval-track")
    assert "--out" in line and str(ro / "report") in line and "permission denied" in line
    line = error_line(unprivileged_cli("make-synthetic-labpics", ro / "data", "--train", "1", "--test", "1"),
                      "make-synthetic-labpics")
    assert str(ro / "data") in line and "permission denied" in line
    assert list(ro.iterdir()) == []


def test_out_in_a_read_only_folder_fails_cleanly_when_first_written(shared_dir):
    ro = read_only_dir(shared_dir / "ro")
    image = small_image(shared_dir / "images" / "a.png")
    line = error_line(unprivileged_cli("annotate", image.parent, "--out", ro / "annotations", "--points-per-side",
                                       "2", load_model=True), "annotate")
    assert "permission denied" in line and str(ro / "annotations") in line
    # the atomic write's temporary file is shown as the file asked for
    line = error_line(unprivileged_cli("segment", image, "--point", "10,10", "--out", ro / "mask.png",
                                       load_model=True), "segment")
    assert "permission denied" in line and f"'{ro / 'mask.png'}'" in line
    assert list(ro.iterdir()) == []


def test_out_that_is_a_folder_where_a_file_is_needed(tmp_path):
    image = small_image(tmp_path / "a.png")
    (tmp_path / "mask.png").mkdir()
    line = error_line(samkit_cli("segment", image, "--point", "10,10", "--out", tmp_path / "mask.png"), "segment")
    assert f"'{tmp_path / 'mask.png'}' is a folder where a file is needed" in line
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temp file left behind


def test_out_that_is_a_file_where_a_folder_is_needed(tmp_path):
    image = small_image(tmp_path / "images" / "a.png")
    file = tmp_path / "taken.txt"
    file.write_text("not a folder")
    line = error_line(samkit_cli("eval-track", "--out", file, "--clips", "1", "--frames", "2"), "eval-track")
    assert f"--out '{file}' is a file where a folder is needed" in line
    line = error_line(samkit_cli("train", "--format", "synthetic", "--steps", "1", "--out", file / "run"), "train")
    assert f"'{file}' is a file" in line
    line = error_line(samkit_cli("auto", image, "--out", file, "--points-per-side", "2"), "auto")
    assert f"'{file}' is a file where a folder is needed" in line
    line = error_line(samkit_cli("annotate", image.parent, "--out", file, "--points-per-side", "2"), "annotate")
    assert f"'{file}' is a file where a folder is needed" in line
    assert file.read_text() == "not a folder"


def test_unknown_or_missing_devices(tmp_path):
    image = small_image(tmp_path / "a.png")
    line = error_line(samkit_cli("segment", image, "--point", "10,10", "--out", tmp_path / "m.png", "--device",
                                 "gpu9"), "segment")
    assert "unknown device 'gpu9'" in line and "cpu" in line
    line = error_line(samkit_cli("eval-track", "--out", tmp_path / "r", "--device", "cuda:99"), "eval-track")
    assert "'cuda:99'" in line and ("CUDA is not available" in line or "CUDA device(s)" in line)
    if not torch.cuda.is_available():
        line = error_line(samkit_cli("segment", image, "--point", "10,10", "--out", tmp_path / "m.png", "--device",
                                     "cuda"), "segment")
        assert "CUDA is not available" in line and "--device cpu" in line
    assert not (tmp_path / "m.png").exists()


def test_describe_os_error_names_the_path_and_the_problem(tmp_path):
    assert describe_os_error(OSError("a library's own OSError, no errno")) is None  # a bug: traceback
    full = describe_os_error(OSError(28, "No space left on device", str(tmp_path / "x.json")))
    assert full is not None and "no space left" in full and str(tmp_path / "x.json") in full
    ro = describe_os_error(OSError(30, "Read-only file system", "/mnt/ro/out"))
    assert ro is not None and "read-only" in ro and "/mnt/ro/out" in ro


# ----------------------------------------------------------------------------- bugs stay loud
BUG_SCRIPT = """
import sys
import samkit.cli.image as image
def broken(args):
    raise {exc}
image.cmd_models = broken
from samkit.cli.main import main
sys.exit(main(["models"]))
"""


@pytest.mark.parametrize("exc", ["RuntimeError('a bug')", "OSError('a library OSError without errno')"])
def test_a_bug_shows_its_traceback(exc):
    r = subprocess.run([sys.executable, "-c", BUG_SCRIPT.format(exc=exc)], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1 and "Traceback" in r.stderr and exc.split("(")[0] in r.stderr


def test_ctrl_c_exits_130(monkeypatch, capsys):
    import samkit.cli.image as image

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(image, "cmd_models", interrupted)
    assert main(["models"]) == 130
    assert "interrupted" in capsys.readouterr().err


# ----------------------------------------------------------------------------- COCO JSON structure
def _coco(images: Any = None, annotations: Any = None, **extra: Any) -> dict[str, Any]:
    data = {"images": [{"id": 1, "file_name": "a.png", "height": 48, "width": 64}] if images is None else images,
            "annotations": [{"id": 1, "image_id": 1, "segmentation": [[1, 1, 20, 1, 20, 20, 1, 20]],
                             "iscrowd": 0, "category_id": 1}] if annotations is None else annotations}
    data.update(extra)
    return data


BAD_COCO = {
    "a list at the top": ([], "top level is a list"),
    "no images": ({"annotations": []}, "no 'images' list"),
    "no annotations": ({"images": []}, "no 'annotations' list"),
    "images not a list": (_coco(images={"id": 1}), "'images' must be a list"),
    "image without file_name": (_coco(images=[{"id": 1, "height": 4, "width": 4}]), "images[0] has no 'file_name'"),
    "image without height": (_coco(images=[{"id": 1, "file_name": "a.png", "width": 4}]), "images[0] has no 'height'"),
    "image id a string": (_coco(images=[{"id": "one", "file_name": "a.png", "height": 4, "width": 4}]),
                          "images[0]['id'] must be an integer"),
    "negative width": (_coco(images=[{"id": 1, "file_name": "a.png", "height": 4, "width": -4}]),
                       "images[0]['width'] must be a positive integer"),
    "annotation without image_id": (_coco(annotations=[{"id": 1, "segmentation": []}]),
                                    "annotations[0] has no 'image_id'"),
    "segmentation a number": (_coco(annotations=[{"id": 1, "image_id": 1, "segmentation": 7}]),
                              "annotations[0]['segmentation'] must be a list of polygons or an RLE"),
    "polygon of numbers": (_coco(annotations=[{"id": 1, "image_id": 1, "segmentation": [1, 2, 3, 4, 5, 6]}]),
                           "annotations[0]['segmentation'] must be a list of polygons"),
    "iscrowd a string": (_coco(annotations=[{"id": 1, "image_id": 1, "segmentation": [], "iscrowd": "no"}]),
                         "annotations[0]['iscrowd'] must be an integer"),
    "category without id": (_coco(categories=[{"name": "cat"}]), "categories[0] must be an object with an integer"),
}


@pytest.mark.parametrize("case", sorted(BAD_COCO))
def test_coco_json_structure_errors_name_the_key(tmp_path, case):
    data, expected = BAD_COCO[case]
    small_image(tmp_path / "a.png")
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError) as info:
        CocoDataset(path, tmp_path)
    assert expected in str(info.value) and str(path) in str(info.value)


def test_a_good_coco_json_still_reads(tmp_path):
    small_image(tmp_path / "a.png")
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(_coco(categories=[{"id": 1, "name": "thing"}])))
    sample = CocoDataset(path, tmp_path)[0]
    assert sample.masks.shape == (1, 48, 64) and sample.masks.sum() > 0


def test_eval_with_a_broken_coco_json_is_one_line(tmp_path):
    small_image(tmp_path / "a.png")
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(_coco(images=[{"id": 1, "height": 48, "width": 64}])))
    line = error_line(samkit_cli("eval", "--format", "coco", "--data", path, "--out", tmp_path / "report",
                                 "--no-progress"), "eval")
    assert "images[0] has no 'file_name'" in line


# ----------------------------------------------------------------------------- engine: output names
def _files(out: Path) -> set[str]:
    return {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}


def test_images_with_the_same_stem_are_all_annotated(tmp_path):
    make_images(tmp_path / "in", 2)  # a/img1.png, b/c/img0.jpg
    src = np.zeros((40, 100, 3), np.uint8)
    src[10:30, 2:18] = 255
    Image.fromarray(src).save(tmp_path / "in" / "a" / "img1.jpg")       # collides with a/img1.png
    Image.fromarray(src).save(tmp_path / "in" / "summary.png")          # would be the run's summary.json
    s = annotate_folder(SquaresGenerator(), tmp_path / "in", tmp_path / "out", progress=False, overlays=True)
    assert s.annotated == 4 and not s.failed
    files = _files(tmp_path / "out")
    assert {"a/img1.jpg.json", "a/img1.png.json", "b/c/img0.json", "summary.png.json", "summary.json"} <= files
    assert {"a/img1.jpg.overlay.png", "a/img1.png.overlay.png"} <= files and "a/img1.json" not in files
    for name in ("a/img1.jpg", "a/img1.png", "summary.png"):
        rec = json.loads((tmp_path / "out" / f"{name}.json").read_text())
        assert rec["image"]["file_name"] == name
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["images_done"] == 4
    assert summary["outputs_named_with_image_suffix"] == ["a/img1.jpg", "a/img1.png", "summary.png"]
    gen = SquaresGenerator()
    assert annotate_folder(gen, tmp_path / "in", tmp_path / "out", progress=False).skipped_existing == 4
    assert gen.calls == 0


def test_an_output_named_by_the_stem_is_resumed_when_a_namesake_appears(tmp_path):
    src = np.zeros((40, 100, 3), np.uint8)
    src[10:30, 2:18] = 255
    (tmp_path / "in").mkdir()
    Image.fromarray(src).save(tmp_path / "in" / "a.jpg")
    annotate_folder(SquaresGenerator(), tmp_path / "in", tmp_path / "out", progress=False)
    assert (tmp_path / "out" / "a.json").is_file()  # unambiguous: the SA-1B name
    Image.fromarray(src).save(tmp_path / "in" / "a.png")
    gen = SquaresGenerator()
    s = annotate_folder(gen, tmp_path / "in", tmp_path / "out", progress=False)
    assert gen.calls == 1 and s.skipped_existing == 1 and s.annotated == 1  # only a.png is new
    assert json.loads((tmp_path / "out" / "a.json").read_text())["image"]["file_name"] == "a.jpg"
    assert json.loads((tmp_path / "out" / "a.png.json").read_text())["image"]["file_name"] == "a.png"


def test_another_images_output_is_never_replaced(tmp_path):
    src = np.zeros((40, 100, 3), np.uint8)
    src[10:30, 2:18] = 255
    (tmp_path / "in").mkdir()
    Image.fromarray(src).save(tmp_path / "in" / "a.jpg")
    annotate_folder(SquaresGenerator(), tmp_path / "in", tmp_path / "out", progress=False)
    (tmp_path / "in" / "a.jpg").unlink()  # moved away; a namesake arrives
    Image.fromarray(src).save(tmp_path / "in" / "a.png")
    assert annotate_folder(SquaresGenerator(), tmp_path / "in", tmp_path / "out", progress=False).annotated == 1
    assert json.loads((tmp_path / "out" / "a.json").read_text())["image"]["file_name"] == "a.jpg"  # kept
    assert json.loads((tmp_path / "out" / "a.png.json").read_text())["image"]["file_name"] == "a.png"
    gen = SquaresGenerator()  # and the next run finds a.png's output under its other name
    assert annotate_folder(gen, tmp_path / "in", tmp_path / "out", progress=False).skipped_existing == 1
    assert gen.calls == 0
    # one image at a time (samkit auto: no plan) keeps other images' outputs too
    writer = SA1BWriter(tmp_path / "one")
    worker = AnnotateWorker(SquaresGenerator(), writer, tmp_path / "in")
    worker.annotate(Path("b.jpg"), src)
    worker.annotate(Path("b.png"), src)
    assert writer.json_path(Path("b.png")) == tmp_path / "one" / "b.png.json"
    assert {p.name for p in (tmp_path / "one").iterdir()} == {"b.json", "b.png.json"}


# ----------------------------------------------------------------------------- engine: the scan
def test_out_inside_the_images_folder_is_not_read_as_images(tmp_path):
    make_images(tmp_path / "in", 4)
    out = tmp_path / "in" / "annotations"
    first = annotate_folder(SquaresGenerator(), tmp_path / "in", out, overlays=True, progress=False)
    assert first.annotated == 4 and (out / "masks_per_image.png").is_file()
    gen = SquaresGenerator()
    again = annotate_folder(gen, tmp_path / "in", out, overlays=True, progress=False)
    assert gen.calls == 0 and again.images_total == 4 and again.skipped_existing == 4
    with pytest.raises(ConfigError, match="images folder itself"):
        annotate_folder(SquaresGenerator(), tmp_path / "in", tmp_path / "in", progress=False)


def test_an_unreadable_subfolder_is_listed_as_not_read(shared_dir):
    make_images(shared_dir / "in", 4)
    secret = shared_dir / "in" / "secret"
    small_image(secret / "hidden.png")
    secret.chmod(0)
    out = writable_by_all(shared_dir / "rw") / "out"
    r = run_unprivileged(
        f"s = annotate_folder(SquaresGenerator(), {str(shared_dir / 'in')!r}, {str(out)!r}, progress=False)",
        prelude="from tests.test_engine import SquaresGenerator\nfrom samkit.engine import annotate_folder")
    assert r.returncode == 0, r.stderr
    assert "skipped folder secret" in r.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images_done"] == 4 and summary["folders_not_read"] == [
        {"folder": "secret", "error": "Permission denied"}]


# ----------------------------------------------------------------------------- engine: settings
@dataclass
class Settings:
    threshold: int = 128      # a pixel is bright above this
    points_per_batch: int = 64  # batching only: a rerun may change it


class SettingsGenerator(SquaresGenerator):
    """:class:`SquaresGenerator` with a settings dataclass, as AutoMaskGenerator has one."""

    def __init__(self, **settings: Any) -> None:
        super().__init__()
        self.config = Settings(**settings)


def test_a_rerun_with_other_settings_is_refused_and_redone_with_overwrite(tmp_path):
    make_images(tmp_path / "in", 4)
    out = tmp_path / "out"
    annotate_folder(SettingsGenerator(threshold=128), tmp_path / "in", out, progress=False)
    rec = json.loads((out / "a" / "img1.json").read_text())
    assert rec["samkit"] == {"generator": "SettingsGenerator", "model": None,
                             "settings": {"threshold": 128, "points_per_batch": 64}}
    before = {p: p.read_bytes() for p in out.rglob("img*.json")}
    gen = SettingsGenerator(threshold=100)
    with pytest.raises(ConfigError) as info:
        annotate_folder(gen, tmp_path / "in", out, progress=False)
    message = str(info.value)
    assert "--overwrite" in message and "4 output(s) made with other settings" in message
    assert "threshold 128 -> 100" in message
    assert gen.calls == 0 and {p: p.read_bytes() for p in out.rglob("img*.json")} == before  # nothing written
    s = annotate_folder(gen, tmp_path / "in", out, progress=False, overwrite=True)
    assert gen.calls == 4 and s.replaced == 4
    assert json.loads((out / "a" / "img1.json").read_text())["samkit"]["settings"]["threshold"] == 100
    assert json.loads((out / "summary.json").read_text())["samkit"]["settings"]["threshold"] == 100
    same = SettingsGenerator(threshold=100, points_per_batch=8)  # only the batching differs: resumed
    assert annotate_folder(same, tmp_path / "in", out, progress=False).skipped_existing == 4 and same.calls == 0


def test_outputs_without_recorded_settings_are_kept_unless_overwritten(tmp_path):
    make_images(tmp_path / "in", 3)
    out = tmp_path / "out"
    annotate_folder(SquaresGenerator(), tmp_path / "in", out, progress=False)
    for p in out.rglob("img*.json"):  # as an earlier samkit wrote them
        rec = json.loads(p.read_text())
        del rec["samkit"]
        p.write_text(json.dumps(rec))
    gen = SettingsGenerator(threshold=100)
    s = annotate_folder(gen, tmp_path / "in", out, progress=False)
    assert gen.calls == 0 and s.kept_unrecorded == 3
    assert json.loads((out / "summary.json").read_text())["kept_without_recorded_settings"] == 3
    s = annotate_folder(gen, tmp_path / "in", out, progress=False, overwrite=True)
    assert gen.calls == 3 and s.replaced == 3


def test_annotate_command_records_settings_and_refuses_other_ones(tmp_path):
    make_images(tmp_path / "in", 2)
    out = tmp_path / "out"
    base = ["annotate", tmp_path / "in", "--out", out, "--points-per-side", "2"]
    r = samkit_cli(*base)
    assert r.returncode == 0, r.stderr
    rec = json.loads(next(out.rglob("img*.json")).read_text())
    assert rec["samkit"]["model"]["name"] == "samkit_nano" and len(rec["samkit"]["model"]["weights_sha256"]) == 64
    assert rec["samkit"]["settings"]["points_per_side"] == 2
    line = error_line(samkit_cli(*base, "--pred-iou-thresh", "0.3"), "annotate")
    assert "--overwrite" in line and "pred_iou_thresh" in line
    r = samkit_cli(*base, "--pred-iou-thresh", "0.3", "--overwrite")
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["replaced_other_settings"] == 2 and summary["samkit"]["settings"]["pred_iou_thresh"] == 0.3
    r = samkit_cli(*base, "--pred-iou-thresh", "0.3", "--points-per-batch", "3")
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "summary.json").read_text())["skipped_existing"] == 2


# ----------------------------------------------------------------------------- engine: bad images
class PickyGenerator(SquaresGenerator):
    """Refuses some images with a samkit error, as a generator does with an image it cannot use."""

    def generate(self, image):
        if image[0, 0, 1] == 1:
            raise ImageError("this image is refused (stand-in)")
        if image[0, 0, 1] == 2:
            raise PromptError("no usable prompt in this image (stand-in)")
        return super().generate(image)


def test_bad_images_are_error_rows_and_the_rest_is_done(tmp_path):
    make_images(tmp_path / "in", 4)
    (tmp_path / "in" / "bomb.png").write_bytes(png_claiming(30_000, 30_000))
    for name, marker in (("refused.png", 1), ("no_prompt.png", 2)):
        img = np.zeros((40, 100, 3), np.uint8)
        img[0, 0, 1] = marker
        Image.fromarray(img).save(tmp_path / "in" / name)
    s = annotate_folder(PickyGenerator(), tmp_path / "in", tmp_path / "out", progress=False)
    assert s.annotated == 4
    errors = {f["file"]: f["error"] for f in s.failed}
    assert sorted(errors) == ["bomb.png", "no_prompt.png", "refused.png"]
    assert "too large" in errors["bomb.png"] and "refused" in errors["refused.png"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["images_done"] == 4 and len(summary["failed"]) == 3


class BuggyGenerator(SquaresGenerator):
    def generate(self, image):
        if self.calls >= 1:
            raise RuntimeError("a bug in the generator")
        return super().generate(image)


def test_a_bug_stops_the_run(tmp_path):
    make_images(tmp_path / "in", 3)
    with pytest.raises(RuntimeError, match="a bug"):
        annotate_folder(BuggyGenerator(), tmp_path / "in", tmp_path / "out", progress=False)
    done = list((tmp_path / "out").rglob("img*.json"))
    assert len(done) == 1 and json.loads(done[0].read_text())["annotations"]  # finished outputs are whole
    assert not (tmp_path / "out" / "summary.json").exists()

