"""The data engine: SA-1B output, resume after a kill, corrupt images, shards."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import samkit
from samkit.cli.main import main
from samkit.engine import SA1B_BINS, annotate_folder, in_shard, list_images, mask_count_histogram, parse_shard
from samkit.errors import SamkitError
from tests.test_cli import SMALL

mask_api = pytest.importorskip("pycocotools.mask")


class SquaresGenerator:
    """A stand-in generator: one mask per bright square of the image (known answers)."""

    def __init__(self, delay: float = 0.0):
        self.calls = 0
        self.delay = delay

    def generate(self, image):
        self.calls += 1
        time.sleep(self.delay)
        bright = image[..., 0] > 128
        out = []
        for x0 in range(0, image.shape[1], 20):
            m = np.zeros(bright.shape, bool)
            m[:, x0:x0 + 20] = bright[:, x0:x0 + 20]
            if m.any():
                ys, xs = np.nonzero(m)
                rle = mask_api.encode(np.asfortranarray(m.astype(np.uint8)))
                rle["counts"] = rle["counts"].decode()
                out.append({"segmentation": rle, "area": int(m.sum()),
                            "bbox": [int(xs.min()), int(ys.min()), int(np.ptp(xs) + 1), int(np.ptp(ys) + 1)],
                            "predicted_iou": 0.9, "point_coords": [[float(xs.mean()), float(ys.mean())]],
                            "stability_score": 0.97, "crop_box": [0, 0, image.shape[1], image.shape[0]]})
        return out


def make_images(root: Path, n: int = 6) -> list[Path]:
    paths = []
    for i in range(n):
        img = np.zeros((40, 100, 3), np.uint8)
        for k in range(i % 4 + 1):  # image i has (i % 4) + 1 bright squares
            img[10:30, 20 * k + 2:20 * k + 18] = 255
        sub = root / ("a" if i % 2 else "b/c")
        sub.mkdir(parents=True, exist_ok=True)
        p = sub / f"img{i}.{'png' if i % 3 else 'jpg'}"
        Image.fromarray(img).save(p)
        paths.append(p)
    return paths


def test_sa1b_output(tmp_path):
    make_images(tmp_path / "in")
    s = annotate_folder(SquaresGenerator(), tmp_path / "in", tmp_path / "out", overlays=True, progress=False)
    assert s.annotated == 6 and not s.failed
    rec = json.loads((tmp_path / "out" / "a" / "img1.json").read_text())
    assert rec["image"]["file_name"] == "a/img1.png" and rec["image"]["height"] == 40 and rec["image"]["width"] == 100
    assert len(rec["annotations"]) == 2
    m = mask_api.decode({"size": rec["annotations"][0]["segmentation"]["size"],
                         "counts": rec["annotations"][0]["segmentation"]["counts"].encode()})
    assert m.shape == (40, 100) and m.sum() == rec["annotations"][0]["area"] == 20 * 16
    assert (tmp_path / "out" / "a" / "img1.overlay.png").exists()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["images_done"] == 6 and summary["masks_total"] == sum(i % 4 + 1 for i in range(6))
    assert summary["masks_per_image_histogram"]["<50"] == 6
    assert Image.open(tmp_path / "out" / "masks_per_image.png").size[0] > 100


def test_rerun_skips_finished_images(tmp_path):
    make_images(tmp_path / "in")
    annotate_folder(SquaresGenerator(), tmp_path / "in", tmp_path / "out", progress=False)
    gen = SquaresGenerator()
    s = annotate_folder(gen, tmp_path / "in", tmp_path / "out", progress=False)
    assert gen.calls == 0 and s.skipped_existing == 6


def test_corrupt_image_is_skipped_and_listed(tmp_path):
    make_images(tmp_path / "in", 3)
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    good = tmp_path / "in" / "a" / "img1.png"
    (tmp_path / "in" / "truncated.png").write_bytes(good.read_bytes()[:60])
    s = annotate_folder(SquaresGenerator(), tmp_path / "in", tmp_path / "out", progress=False)
    assert s.annotated == 3
    assert sorted(f["file"] for f in s.failed) == ["broken.jpg", "truncated.png"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert len(summary["failed"]) == 2 and "broken.jpg" in summary["failed"][0]["file"] + summary["failed"][1]["file"]


def test_shards_partition_the_images(tmp_path):
    make_images(tmp_path / "in", 12)
    rels = list_images(tmp_path / "in")
    n = 3
    parts = [[r for r in rels if in_shard(r, (i, n))] for i in range(n)]
    assert sorted(sum(parts, []), key=str) == sorted(rels, key=str)
    assert sum(len(p) for p in parts) == len(rels)
    for i in range(n):
        annotate_folder(SquaresGenerator(), tmp_path / "in", tmp_path / "out", shard=(i, n), progress=False)
    assert len(list((tmp_path / "out").rglob("img*.json"))) == 12
    assert (tmp_path / "out" / "summary-shard2of3.json").exists()
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "x", "1/0"):
        with pytest.raises(SamkitError):
            parse_shard(bad)


def test_histogram_bins():
    h = mask_count_histogram([0, 49, 50, 99, 100, 250, 499, 500, 10_000])
    assert list(h) == [b[0] for b in SA1B_BINS]
    assert h == {"<50": 2, "50-100": 2, "100-200": 1, "200-300": 1, "300-400": 0, "400-500": 1, ">500": 2}


KILL_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
from tests.test_engine import SquaresGenerator
from samkit.engine import annotate_folder
annotate_folder(SquaresGenerator(delay=0.4), {inp!r}, {out!r}, progress=False)
"""


def test_killed_run_leaves_no_partial_json_and_resumes(tmp_path):
    make_images(tmp_path / "in", 8)
    out = tmp_path / "out"
    root = str(Path(__file__).resolve().parents[1])
    script = KILL_SCRIPT.format(root=root, inp=str(tmp_path / "in"), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 60
    while time.time() < deadline and len(list(out.rglob("img*.json"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = list(out.rglob("img*.json"))
    assert 3 <= len(done) < 8
    for p in done:  # every file present is complete
        json.loads(p.read_text())
    gen = SquaresGenerator()
    s = annotate_folder(gen, tmp_path / "in", out, progress=False)
    assert gen.calls == 8 - len(done) and s.skipped_existing == len(done)
    assert len(list(out.rglob("img*.json"))) == 8


def test_auto_and_annotate_commands_with_a_real_model(tmp_path):
    torch.manual_seed(0)
    ckpt = samkit.save_checkpoint(samkit.build_model(SMALL), tmp_path / "small.pt")
    make_images(tmp_path / "in", 2)
    img = tmp_path / "in" / "a" / "img1.png"
    loose = ["--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]
    assert main(["auto", str(img), "--checkpoint", str(ckpt), "--out", str(tmp_path / "one")] + loose) == 0
    rec = json.loads((tmp_path / "one" / "img1.json").read_text())
    assert rec["image"]["width"] == 100 and isinstance(rec["annotations"], list)
    assert (tmp_path / "one" / "img1.overlay.png").exists()
    assert main(["annotate", str(tmp_path / "in"), "--checkpoint", str(ckpt), "--out", str(tmp_path / "all"),
                 "--overlays"] + loose) == 0
    assert json.loads((tmp_path / "all" / "summary.json").read_text())["images_done"] == 2


def test_a_text_file_of_paths_and_a_glob_give_the_folders_names(tmp_path):
    make_images(tmp_path / "in", 6)  # a/img1.png a/img3.jpg a/img5.png, b/c/img0.jpg b/c/img2.png b/c/img4.png
    annotate_folder(SquaresGenerator(), tmp_path / "in", tmp_path / "folder", progress=False)
    listing = tmp_path / "lists" / "todo.txt"
    listing.parent.mkdir()
    listing.write_text("# relative lines start at this file's folder\n../in/a/img1.png\n\n"
                       f"{tmp_path / 'in' / 'b' / 'c' / 'img2.png'}\n../in/a/img1.png\n../in/a/gone.png\n")
    s = annotate_folder(SquaresGenerator(), listing, tmp_path / "listed", progress=False)
    assert s.images_total == 3 and s.annotated == 2  # the duplicate line counted once
    assert [f["file"] for f in s.failed] == ["a/gone.png"] and "gone.png" in s.failed[0]["error"]
    for name in ("a/img1.json", "b/c/img2.json"):  # named below the common folder, as from the folder
        assert (tmp_path / "listed" / name).read_bytes() == (tmp_path / "folder" / name).read_bytes()
    out = tmp_path / "in" / "ann"  # inside the tree: its overlays are not images to annotate
    s = annotate_folder(SquaresGenerator(), str(tmp_path / "in" / "**" / "*.png"), out, overlays=True,
                        progress=False)
    assert s.annotated == 4 and not s.failed
    assert (out / "b" / "c" / "img4.json").read_bytes() == (tmp_path / "folder" / "b" / "c" / "img4.json").read_bytes()
    gen = SquaresGenerator()
    again = annotate_folder(gen, str(tmp_path / "in" / "**" / "*.png"), out, overlays=True, progress=False)
    assert gen.calls == 0 and again.skipped_existing == 4 and again.images_total == 4
    with pytest.raises(SamkitError, match="samkit auto"):
        annotate_folder(SquaresGenerator(), tmp_path / "in" / "a" / "img1.png", tmp_path / "one", progress=False)
    with pytest.raises(SamkitError, match="does not exist"):
        annotate_folder(SquaresGenerator(), tmp_path / "nowhere", tmp_path / "none", progress=False)
