"""The data engine's throughput: the local backend against Ray with 1 and 2 actors, on this machine.

    python benchmarks/engine.py [--images 12] [--model samkit_nano] [--points-per-side 32] [--out DIR]

The images: the real photos of ``../shared/data/images`` (when present; else generated scenes),
copied round-robin into a folder of ``--images`` files. Each backend annotates that folder into
its own output folder with the same model and settings (``samkit annotate``'s defaults):

* ``local``: :func:`~samkit.engine.annotate.annotate_folder` in this process, with 1 torch thread
  and with every CPU's thread;
* ``ray xN``: :func:`~samkit.engine.ray_backend.annotate_folder_ray`, N actors of 1 CPU (1 torch
  thread) each, on a local Ray started once before (its start-up is timed on its own).

Per row: the run's wall time and images per second, and the steady rate (images per second
between the first and the last output written: the per-image cost once the model is loaded,
without the pool's start-up, which is the rest of the wall time), and how many of its JSON files
equal, byte for byte, those of the local backend with 1 thread (the actors' thread count). The
machine's load average is printed before and after: the machine is shared, so run it when it is
idle.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from samkit.data.synthetic.scenes import SyntheticSceneDataset  # noqa: E402
from samkit.engine.annotate import GeneratorSpec, annotate_folder, describe_generator  # noqa: E402
from samkit.engine.ray_backend import RayOptions, annotate_folder_ray, import_ray  # noqa: E402

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "images"


def make_folder(folder: Path, n: int) -> str:
    """``n`` images in ``folder``: the shared photos round-robin, or generated scenes; what they are."""
    folder.mkdir(parents=True)
    photos = sorted(PHOTOS.glob("*.jpg")) if PHOTOS.is_dir() else []
    if photos:
        for k in range(n):
            src = photos[k % len(photos)]
            shutil.copyfile(src, folder / f"{k:03d}_{src.name}")
        sizes = ", ".join(f"{p.name} {Image.open(p).size[0]}x{Image.open(p).size[1]}" for p in photos)
        return f"{n} copies of the shared photos ({sizes})"
    scenes = SyntheticSceneDataset(n, size=(480, 640), seed=0)
    for k in range(n):
        Image.fromarray(scenes[k].image).save(folder / f"{k:03d}_scene.png")
    return f"{n} generated 640x480 scenes (SyntheticSceneDataset; ../shared/data/images is absent)"


def cpu_name() -> str:
    """The processor's model name (Linux), else the platform's word for it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def outputs(folder: Path) -> dict[str, bytes]:
    """The JSON of every image below ``folder`` (not the summary, which holds the run's seconds)."""
    return {p.name: p.read_bytes() for p in folder.glob("*.json") if p.name != "summary.json"}


def timed(run, out: Path, n: int) -> tuple[float, float]:
    """``run()``'s wall time, and the steady rate from the outputs' modification times."""
    t0 = time.perf_counter()
    summary = run()
    wall = time.perf_counter() - t0
    assert summary.annotated == n and not summary.failed, summary.to_json()
    stamps = sorted(p.stat().st_mtime for p in out.glob("*.json") if p.name != "summary.json")
    steady = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else 0.0
    return wall, steady


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=12, help="images in the folder")
    ap.add_argument("--model", default=None, help="model name (default: samkit_nano)")
    ap.add_argument("--points-per-side", type=int, default=32, help="the generator's grid (samkit annotate's default)")
    ap.add_argument("--actors", type=int, nargs="+", default=[1, 2], help="Ray pool sizes to run")
    ap.add_argument("--out", default=None, help="work folder (default: a temporary one, removed)")
    args = ap.parse_args()
    ray = import_ray()
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="samkit_engine_bench_"))
    images = work / "images"
    what = make_folder(images, args.images)
    spec = GeneratorSpec(model=args.model, options=dict(points_per_side=args.points_per_side, output_mode="coco_rle"))
    cpus = os.cpu_count() or 1
    load_before = os.getloadavg()
    rows = []
    for threads in sorted({1, cpus}):
        torch.set_num_threads(threads)
        out = work / f"local{threads}"
        wall, steady = timed(lambda: annotate_folder(spec(), images, out, progress=False), out, args.images)
        rows.append((f"local, {threads} thread{'s' if threads > 1 else ''}", wall, steady, out))
    t0 = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - t0
    provenance = describe_generator(spec())
    try:
        for n in args.actors:
            out = work / f"ray{n}"
            options = RayOptions(workers=n, cpus_per_worker=1)
            wall, steady = timed(lambda: annotate_folder_ray(spec, images, out, options=options, progress=False,
                                                             provenance=provenance), out, args.images)
            rows.append((f"ray, {n} actor{'s' if n > 1 else ''} x 1 CPU", wall, steady, out))
    finally:
        ray.shutdown()
    reference = outputs(work / "local1")
    same = [sum(b == reference.get(n) for n, b in outputs(out).items()) for *_, out in rows]
    load_after = os.getloadavg()

    print(f"images: {what}; model {args.model or 'samkit_nano'}, points_per_side {args.points_per_side}")
    print(f"machine: {platform.machine()}, {cpus} CPUs ({cpu_name()}), torch "
          f"{torch.__version__}, ray {ray.__version__}; load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after (1 min)")
    print(f"Ray start-up (ray.init, local, {cpus} CPUs): {ray_start:.1f} s")
    print("| backend | wall s | images/s | steady images/s | JSON equal to local, 1 thread |")
    print("|---|---|---|---|---|")
    for (name, wall, steady, _), equal in zip(rows, same):
        print(f"| {name} | {wall:.1f} | {args.images / wall:.2f} | {steady:.2f} | {equal} of {args.images} |")
    if not args.out:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
