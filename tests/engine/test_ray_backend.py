"""The data engine on Ray Data: the local backend's outputs byte for byte, resume, bad images, a
killed worker, the command line; and a clear error where Ray is not installed.

One small local Ray for the module (2 CPUs, no dashboard, a small object store), pools of two
actors at half a CPU each, the shipped default model on 20 small generated images.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from samkit.cli.main import main
from samkit.engine.annotate import AnnotateWorker, GeneratorSpec, annotate_folder, describe_generator
from samkit.engine.ray_backend import RayOptions, annotate_folder_ray, check_pool_fits, pool_size
from samkit.engine.writers import SA1BWriter
from samkit.errors import ConfigError, MissingDependencyError
from tests.test_engine import SquaresGenerator, make_images

SPEC = GeneratorSpec(options=dict(points_per_side=8, output_mode="coco_rle"))  # samkit_nano, shipped weights
POOL = RayOptions(workers=2, cpus_per_worker=0.5)
N_IMAGES = 20
RAY_TIMEOUT = 300  # seconds: a pool that never gets scheduled fails the test instead of hanging


def scenes(root: Path, n: int = N_IMAGES) -> list[Path]:
    """``n`` generated scenes (96 x 128, a few bright rectangles on a dark ground) in a small tree, and
    a corrupt ``broken.png``."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        img = np.empty((96, 128, 3), np.uint8)
        img[...] = rng.integers(0, 60, 3)
        for _ in range(3):
            y, x = rng.integers(0, 60, 2)
            img[y:y + 30, x:x + 40] = rng.integers(90, 255, 3)
        folder = root / ("a" if i % 2 else "b/c")
        folder.mkdir(parents=True, exist_ok=True)
        paths.append(folder / f"scene{i:02d}.png")
        Image.fromarray(img).save(paths[-1])
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return paths


def outputs(out: Path) -> dict[str, bytes]:
    """Every file a run wrote below ``out`` but its summary (which holds the run's seconds)."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "summary.json"}


def summary_without_seconds(out: Path) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    del summary["seconds"]
    return summary


@pytest.fixture(scope="module")
def ray_session():
    """One small local Ray for the module, always shut down."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 2 ** 20, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The images, and the local backend's outputs of them (the reference), with one torch thread
    as each actor of :data:`POOL` has: other thread counts sum in other orders, which can change
    a score's last float32 digits."""
    root = tmp_path_factory.mktemp("engine")
    scenes(root / "in")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = annotate_folder(SPEC(), root / "in", root / "local", overlays=True, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert summary.annotated == N_IMAGES and [f["file"] for f in summary.failed] == ["broken.png"]
    return root


# ----------------------------------------------------------------------------- without Ray
def test_without_ray_the_backend_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if it were not installed
    make_images(tmp_path / "in", 2)
    with pytest.raises(MissingDependencyError, match=r'pip install "samkit\[distributed\]"'):
        annotate_folder_ray(SquaresGenerator, tmp_path / "in", tmp_path / "out", progress=False)
    assert main(["annotate", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--backend", "ray"]) == 2
    shown = capsys.readouterr()
    assert 'pip install "samkit[distributed]"' in shown.err and "model:" not in shown.out  # before a model loads
    assert not (tmp_path / "out").exists()
    # the local backend needs no Ray
    assert main(["annotate", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--points-per-side", "2"]) == 0


def test_samkit_imports_ray_only_for_the_ray_backend():
    code = ("import sys, samkit, samkit.cli.main, samkit.cli.engine, samkit.engine.ray_backend; "
            "print('ray' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=Path(__file__).resolve().parents[2])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_ray_options_are_checked(tmp_path, capsys):
    make_images(tmp_path / "in", 1)
    base = ["annotate", str(tmp_path / "in"), "--out", str(tmp_path / "out")]
    assert main(base + ["--workers", "2"]) == 2
    assert "--workers is for the Ray backend: add --backend ray" in capsys.readouterr().err
    for bad, says in ((["--gpus-per-worker", "1"], "add --device cuda"),
                      (["--device", "cuda"], "add --gpus-per-worker 1"),
                      (["--workers", "0"], "--workers must be at least 1"),
                      (["--cpus-per-worker", "0"], "--cpus-per-worker must be above 0")):
        assert main(base + ["--backend", "ray"] + bad) == 2, bad
        assert says in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert pool_size(RayOptions(), {"CPU": 16.0}, 100) == 16
    assert pool_size(RayOptions(cpus_per_worker=0.5), {"CPU": 2.0}, 3) == 3  # at most one worker per image
    assert pool_size(RayOptions(gpus_per_worker=1), {"CPU": 64.0, "GPU": 8.0}, 100) == 8
    assert pool_size(RayOptions(gpus_per_worker=0.5), {"CPU": 64.0, "GPU": 2.0}, 100) == 4
    with pytest.raises(ConfigError, match="has no GPU"):
        pool_size(RayOptions(gpus_per_worker=1), {"CPU": 8.0}, 10)
    check_pool_fits(POOL, 4, {"CPU": 2.0}, can_grow=False)  # 4 x 0.5 CPU fit
    with pytest.raises(ConfigError, match=r"3 worker\(s\) need 3 CPU \(3 x 1; it has 2\)"):
        check_pool_fits(RayOptions(), 3, {"CPU": 2.0}, can_grow=False)  # a local Ray never grows: refused
    check_pool_fits(RayOptions(), 3, {"CPU": 2.0}, can_grow=True)  # a cluster may: a warning
    assert "the pool waits until the cluster has them" in capsys.readouterr().err


def test_a_finished_image_is_not_done_again_by_a_retried_worker(tmp_path):
    make_images(tmp_path / "in", 2)
    rel = Path("a/img1.png")
    writer = SA1BWriter(tmp_path / "out")
    first = AnnotateWorker(SquaresGenerator(), writer, tmp_path / "in").run(rel)
    before = (tmp_path / "out" / "a" / "img1.json").stat().st_mtime_ns
    gen = SquaresGenerator()
    again = AnnotateWorker(gen, writer, tmp_path / "in").run(rel, skip_finished=True)
    assert gen.calls == 0 and again.masks == first.masks == 2 and again.error is None
    assert (tmp_path / "out" / "a" / "img1.json").stat().st_mtime_ns == before
    other = AnnotateWorker(gen, writer, tmp_path / "in", provenance={"generator": "other"})
    assert other.run(rel, skip_finished=True).masks == 2 and gen.calls == 1  # other settings: redone
    assert AnnotateWorker(gen, writer, tmp_path / "in").run(rel).masks == 2 and gen.calls == 2  # no skip asked


# ----------------------------------------------------------------------------- on a local Ray
@pytest.mark.slow
@pytest.mark.timeout(RAY_TIMEOUT)
def test_ray_outputs_equal_the_local_backends_byte_for_byte(ray_session, local_run):
    root = local_run
    s = annotate_folder_ray(SPEC, root / "in", root / "ray", options=POOL, overlays=True, progress=False)
    assert s.annotated == N_IMAGES and s.skipped_existing == 0
    assert [f["file"] for f in s.failed] == ["broken.png"] and "broken.png" in s.failed[0]["error"]
    local, ray = outputs(root / "local"), outputs(root / "ray")
    assert sorted(ray) == sorted(local)
    assert sum(name.endswith(".json") for name in ray) == N_IMAGES
    assert sum(name.endswith(".overlay.png") for name in ray) == N_IMAGES
    differ = [name for name in local if ray[name] != local[name]]
    assert not differ, f"outputs of the Ray backend that differ from the local backend's: {differ}"
    masks = [len(json.loads(ray[n])["annotations"]) for n in ray if n.endswith(".json")]
    assert sum(masks) > N_IMAGES  # the model found objects (the comparison is not of empty files)
    assert summary_without_seconds(root / "ray") == summary_without_seconds(root / "local")

    # a rerun does no work: nothing is written but the summary, the corrupt image is tried again
    stamps = {p: p.stat().st_mtime_ns for p in (root / "ray").rglob("scene*")}
    again = annotate_folder_ray(SPEC, root / "in", root / "ray", options=POOL, overlays=True, progress=False)
    assert again.annotated == 0 and again.skipped_existing == N_IMAGES
    assert [f["file"] for f in again.failed] == ["broken.png"]
    assert {p: p.stat().st_mtime_ns for p in (root / "ray").rglob("scene*")} == stamps


@dataclass
class SlowWorkerGenerator:
    """Builds :data:`SPEC`'s generator in a Ray worker, noting the worker's process id in
    ``pid_dir``, and slowed down by ``delay`` seconds an image (a run long enough to kill a worker
    in). Its outputs equal :data:`SPEC`'s."""

    pid_dir: str
    delay: float

    def __call__(self):
        Path(self.pid_dir, str(os.getpid())).touch()
        gen = SPEC()
        generate = gen.generate

        def slow(image):
            time.sleep(self.delay)
            return generate(image)

        gen.generate = slow
        return gen


@pytest.mark.slow
@pytest.mark.timeout(RAY_TIMEOUT)
def test_a_killed_worker_is_replaced_and_every_image_is_done_once(ray_session, local_run, tmp_path):
    root, out, pids = local_run, tmp_path / "out", tmp_path / "pids"
    pids.mkdir()
    killed: dict[str, int] = {}

    def kill_a_worker() -> None:
        deadline = time.time() + RAY_TIMEOUT
        while time.time() < deadline:
            started = sorted(pids.iterdir())
            done = len(list(out.rglob("scene*.json"))) if out.is_dir() else 0
            if len(started) == 2 and done >= 4:
                killed.update(pid=int(started[0].name), done=done)
                os.kill(killed["pid"], signal.SIGKILL)
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_a_worker, daemon=True)
    killer.start()
    s = annotate_folder_ray(SlowWorkerGenerator(str(pids), 0.3), root / "in", out, options=POOL, progress=False,
                            provenance=describe_generator(SPEC()))  # as the driver would record SPEC's
    killer.join(timeout=10)
    assert killed and killed["done"] < N_IMAGES, "the worker was not killed during the run"
    assert len(list(pids.iterdir())) >= 3  # the killed worker was replaced (a new process built the model)
    assert s.annotated == N_IMAGES and [f["file"] for f in s.failed] == ["broken.png"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images_done"] == N_IMAGES and summary["annotated_this_run"] == N_IMAGES
    written = outputs(out)
    assert not [n for n in written if n.endswith(".tmp")]  # nothing half written
    local = {n: b for n, b in outputs(root / "local").items() if n.endswith(".json")}
    assert {n: b for n, b in written.items() if n.endswith(".json")} == local  # one output per image, as locally


class FailingGenerator(SquaresGenerator):
    """A bug (not a samkit error) at the second image a worker annotates."""

    def generate(self, image):
        if self.calls >= 1:
            raise RuntimeError("a bug in the generator")
        return super().generate(image)


@pytest.mark.slow
@pytest.mark.timeout(RAY_TIMEOUT)
def test_a_bug_or_a_worker_without_the_recorded_model_stops_the_run(ray_session, tmp_path):
    make_images(tmp_path / "in", 6)
    with pytest.raises(RuntimeError, match="a bug in the generator") as info:
        annotate_folder_ray(FailingGenerator, tmp_path / "in", tmp_path / "bug", options=POOL, progress=False)
    assert "Traceback" in str(info.value)  # the worker's own traceback
    assert not (tmp_path / "bug" / "summary.json").exists()  # as locally: no summary of a run that stopped
    for p in (tmp_path / "bug").rglob("*.json"):
        assert json.loads(p.read_text())["annotations"]  # what was written is whole
    elsewhere = describe_generator(SquaresGenerator())
    elsewhere["generator"] = "TheDriversGenerator"  # as if the driver's machine had another model
    with pytest.raises(ConfigError, match=r"could not start: its generator has other settings than the driver "
                                          r"recorded \(generator \"TheDriversGenerator\" -> \"SquaresGenerator\"\)"):
        annotate_folder_ray(SquaresGenerator, tmp_path / "in", tmp_path / "refused", options=POOL, progress=False,
                            provenance=elsewhere)
    assert not list((tmp_path / "refused").rglob("*.json"))


@pytest.mark.slow
@pytest.mark.timeout(RAY_TIMEOUT)
def test_annotate_command_on_ray_reads_a_list_of_images(ray_session, local_run, tmp_path, capsys):
    root = local_run
    chosen = ["b/c/scene00.png", "a/scene01.png", "a/scene03.png"]
    listing = tmp_path / "todo.txt"
    listing.write_text("# three of the scenes\n" + "".join(f"{root / 'in' / name}\n" for name in chosen))
    out = tmp_path / "out"
    assert main(["annotate", str(listing), "--out", str(out), "--points-per-side", "8", "--backend", "ray",
                 "--workers", "2", "--cpus-per-worker", "0.5"]) == 0
    assert "3 images done (3 this run, 0 already done)" in capsys.readouterr().out
    local = outputs(root / "local")
    for name in chosen:  # the list's common folder is the images folder: the same names and bytes
        json_name = name.removesuffix(".png") + ".json"
        assert (out / json_name).read_bytes() == local[json_name]
