"""The data engine on Ray Data: :func:`~samkit.engine.annotate.annotate_folder`'s run, its images annotated by a pool of
Ray actors, on this machine or on a cluster (``samkit annotate ... --backend ray``).

The driver (this process) does what the local loop does before and after the images
(:func:`~samkit.engine.annotate.prepare_run`: listing, skipping finished images, the settings
check; :meth:`~samkit.engine.annotate.RunPlan.finish`: ``summary.json`` and the histogram). The
images to annotate become a Ray dataset, one image a block (at most :data:`MAX_BLOCKS` blocks),
mapped by a fixed-size actor pool. Each actor builds the generator once, from a picklable factory
(:class:`~samkit.engine.annotate.GeneratorSpec`: the model travels as a name, not as weights),
and holds one :class:`~samkit.engine.annotate.AnnotateWorker`, the local loop's, which writes
each image's outputs atomically itself. A row per image (file, masks, seconds, error) streams back
to the driver's progress bar and summary. The driver hands the images over itself, so no Ray read
task competes with the actors for CPUs.

What survives what:

* a bad image (unreadable, too large, refused) is an error row, caught in the worker per image;
* a worker process that dies (killed, out of memory) is replaced by Ray Data (actors restart,
  their unfinished blocks are retried); an image the dead worker had already written is not done
  again (``skip_finished``: its output records this run's settings), and the driver counts every
  image once, so each image ends with one output and one row;
* a bug (any other exception) stops the run, as it stops the local loop, and so does a worker
  that cannot build the generator the driver recorded (a checkpoint missing or different on its
  machine): both come back as rows, and the driver raises them.

Every machine must see the images and the output folder at the same paths (a shared file
system) and have samkit installed. Ray is imported only when a run starts (the ``distributed``
extra: ``pip install "samkit[distributed]"``).
"""

from __future__ import annotations

import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm

from samkit.engine.annotate import (AnnotateWorker, GeneratorSpec, ImageStatus, MaskGenerator, RunPlan, Summary,
                                    describe_generator, prepare_run, same_settings, settings_diff)
from samkit.engine.writers import SA1BWriter, Writer
from samkit.errors import ConfigError, MissingDependencyError, SamkitError
from samkit.imageio import IMAGE_EXTENSIONS

__all__ = ["RayOptions", "MAX_BLOCKS", "import_ray", "pool_size", "check_pool_fits", "annotate_folder_ray"]

# The most blocks a run's images are split into: one image a block below it (a dead worker's
# retried block redoes only its own image, and the progress bar moves per image); above it the
# images are shared evenly, which keeps Ray's bookkeeping per block bounded for huge folders.
MAX_BLOCKS = 10_000


def import_ray() -> ModuleType:
    """``ray`` with Ray Data, or a :class:`~samkit.errors.MissingDependencyError` saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 (Ray Data, the pool and the dataset)
    except ImportError as exc:
        raise MissingDependencyError(f"the Ray backend (--backend ray) needs Ray Data, which is not installed "
                                     f"({exc}); install it with: pip install \"samkit[distributed]\"") from None
    return ray


@dataclass
class RayOptions:
    """Where the Ray backend runs, and how wide."""

    address: str | None = None     # a running cluster ("auto": the one `ray start` made here; "ray://HOST:10001");
    #                                None: the Ray this process joined already, else a local one for the run
    workers: int | None = None     # actors in the pool; None: as many as the cluster's GPUs (with gpus_per_worker)
    #                                or CPUs hold, at most one per image
    cpus_per_worker: float = 1.0   # CPUs each actor reserves; also its torch threads (at least 1)
    gpus_per_worker: float = 0.0   # GPUs each actor reserves (the generator then runs on "cuda": its GPU)

    def validate(self) -> None:
        """Raises :class:`~samkit.errors.ConfigError` for a pool that cannot exist."""
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")
        if not self.cpus_per_worker > 0:
            raise ConfigError(f"--cpus-per-worker must be above 0 (e.g. 0.5 or 1), got {self.cpus_per_worker}")
        if not self.gpus_per_worker >= 0:
            raise ConfigError(f"--gpus-per-worker must be 0 or more, got {self.gpus_per_worker}")

    def check_device(self, device: str) -> None:
        """Raises :class:`~samkit.errors.ConfigError` where the workers' device and GPUs disagree: a
        worker sees only the GPUs it reserves."""
        on_gpu = str(device).split(":")[0] == "cuda"
        if self.gpus_per_worker > 0 and not on_gpu:
            raise ConfigError(f"--gpus-per-worker {self.gpus_per_worker:g} gives each worker a GPU, but the model "
                              f"runs on --device {device}; add --device cuda")
        if on_gpu and self.gpus_per_worker == 0:
            raise ConfigError(f"--device {device} on the Ray backend needs a GPU per worker: add --gpus-per-worker 1 "
                              "(or a fraction such as 0.5 to share one)")


def pool_size(options: RayOptions, resources: dict[str, float], images: int) -> int:
    """The actors to start for ``images`` images on a cluster with ``resources``
    (``ray.cluster_resources()``: ``{"CPU": 16.0, "GPU": 2.0, ...}``).

    Raises:
        ConfigError: GPUs are asked for and the cluster has none.
    """
    if options.workers is not None:
        n = options.workers
    elif options.gpus_per_worker > 0:
        n = int(resources.get("GPU", 0.0) // options.gpus_per_worker)
        if n < 1:
            raise ConfigError(f"--gpus-per-worker {options.gpus_per_worker:g}: the Ray cluster has no GPU "
                              f"({resources.get('GPU', 0.0):g}); drop the option to run on CPUs, or join a "
                              "cluster with GPUs (--address)")
    else:
        n = int(resources.get("CPU", 1.0) // options.cpus_per_worker)
    return max(1, min(n, images))


def check_pool_fits(options: RayOptions, workers: int, resources: dict[str, float], can_grow: bool) -> None:
    """A pool larger than the cluster waits for nodes: an error on a Ray started for this run (it
    never grows), a warning on a cluster (an autoscaler may add them)."""
    short = [f"{need:g} {kind} ({workers} x {per:g}; it has {resources.get(kind, 0.0):g})"
             for kind, per in (("CPU", options.cpus_per_worker), ("GPU", options.gpus_per_worker))
             if per > 0 and (need := workers * per) > resources.get(kind, 0.0) + 1e-9]
    if not short:
        return
    text = f"{workers} worker(s) need " + " and ".join(short)
    if not can_grow:
        raise ConfigError(f"{text}: fewer --workers, or a smaller --cpus-per-worker / --gpus-per-worker (fractions "
                          "such as 0.5 share a CPU or GPU)")
    tqdm.write(f"warning: {text}; the pool waits until the cluster has them", file=sys.stderr)


class _Annotator:
    """One actor of the pool: builds the generator once, then annotates each batch's images.

    What would stop the run comes back as a row too (its ``stop`` column), so that the driver
    raises it as the local loop would, and not as a Ray error around it: ``"refused"`` when this
    worker could not build the generator the driver recorded (a checkpoint missing or different
    on its machine), ``"bug"`` for an exception that is not a samkit error (with its traceback).
    """

    def __init__(self, make_generator: Callable[[], MaskGenerator], writer: Writer, images_root: str,
                 provenance: dict[str, Any], threads: int) -> None:
        torch.set_num_threads(threads)
        self.refusal: str | None = None
        self.worker: AnnotateWorker | None = None
        try:
            generator = make_generator()
        except SamkitError as exc:
            self.refusal = f"{type(exc).__name__}: {exc}"
            return
        own = describe_generator(generator)
        if not same_settings(own, provenance):
            self.refusal = (f"its generator has other settings than the driver recorded "
                            f"({settings_diff(provenance, own)}); give every machine the same checkpoint file and "
                            "samkit version")
            return
        self.worker = AnnotateWorker(generator, writer, images_root, provenance)

    def _row(self, rel: str) -> tuple[ImageStatus, str]:
        if self.worker is None:
            host = socket.gethostname()
            return ImageStatus(rel, error=f"a worker on {host} could not start: {self.refusal}"), "refused"
        try:
            return self.worker.run(Path(rel), skip_finished=True), ""
        except Exception:  # noqa: BLE001 (a bug: reported to the driver, which stops the run)
            return ImageStatus(rel, error=traceback.format_exc()), "bug"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        rows = [self._row(str(rel)) for rel in batch["file"]]
        return {"file": [r.file for r, _ in rows], "masks": [-1 if r.masks is None else r.masks for r, _ in rows],
                "seconds": [r.seconds for r, _ in rows], "error": [r.error or "" for r, _ in rows],
                "stop": [stop for _, stop in rows]}


def _rows(ray: ModuleType, plan: RunPlan, make_generator: Callable[[], MaskGenerator], writer: Writer,
          provenance: dict[str, Any], options: RayOptions, workers: int) -> Iterator[ImageStatus]:
    """The worker rows of ``plan.todo`` from an actor pool of ``workers``, in the order they finish.

    Raises:
        ConfigError: a worker could not build the generator the driver recorded.
        RuntimeError: a worker met a bug (its traceback in the message).
    """
    items = [{"file": rel.as_posix()} for rel in plan.todo]
    args = dict(make_generator=make_generator, writer=writer, images_root=str(plan.root.absolute()),
                provenance=provenance, threads=max(1, int(options.cpus_per_worker)))
    ds = ray.data.from_items(items, override_num_blocks=min(len(items), MAX_BLOCKS)).map_batches(
        _Annotator, fn_constructor_kwargs=args, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=options.cpus_per_worker, num_gpus=options.gpus_per_worker or None,
        max_restarts=-1, max_task_retries=-1)  # a dead actor is replaced and its blocks retried (Ray Data's default)
    for row in ds.iter_rows():
        status = ImageStatus(str(row["file"]), None if int(row["masks"]) < 0 else int(row["masks"]),
                             float(row["seconds"]), str(row["error"]) or None)
        if row["stop"] == "refused":
            raise ConfigError(status.error)
        if row["stop"] == "bug":
            raise RuntimeError(f"a Ray worker failed on {status.file}; the run stops (a bug, not a bad image):\n"
                               f"{status.error}")
        yield status


def annotate_folder_ray(make_generator: Callable[[], MaskGenerator], images_dir: str | os.PathLike,
                        out_dir: str | os.PathLike, *, options: RayOptions | None = None, overlays: bool = False,
                        shard: tuple[int, int] = (0, 1), progress: bool = True,
                        extensions: Sequence[str] = IMAGE_EXTENSIONS, writer: Writer | None = None,
                        overwrite: bool = False, provenance: dict[str, Any] | None = None) -> Summary:
    """:func:`~samkit.engine.annotate.annotate_folder` on a Ray actor pool (see the module
    docstring): the same outputs, byte for byte, and the same summary.

    Args:
        make_generator: builds the generator in each worker (picklable, e.g. a
            :class:`~samkit.engine.annotate.GeneratorSpec`, or a class of an importable module).
        options: the cluster and the pool (default :class:`RayOptions`: a local Ray, a worker per CPU).
        provenance: the settings recorded in every output; default :func:`describe_generator` of
            a generator built once here (a ``GeneratorSpec`` on the CPU, uncompiled). Each worker
            checks that its own generator has these settings.
        The other arguments are :func:`~samkit.engine.annotate.annotate_folder`'s; ``writer``
        must write where every machine can reach.

    Raises:
        MissingDependencyError: Ray Data is not installed.
        ConfigError: as :func:`~samkit.engine.annotate.prepare_run`; a pool larger than a Ray
            started for the run, or GPUs asked for on a cluster without any.
    """
    ray = import_ray()
    options = options or RayOptions()
    options.validate()
    if isinstance(make_generator, GeneratorSpec):
        options.check_device(make_generator.device)
    if provenance is None:
        here = make_generator.on_cpu() if isinstance(make_generator, GeneratorSpec) else make_generator
        provenance = describe_generator(here())
    writer = writer or SA1BWriter(Path(out_dir).absolute(), overlays=overlays)
    plan = prepare_run(images_dir, out_dir, writer, provenance, shard=shard, extensions=extensions,
                       overwrite=overwrite)
    t0 = time.perf_counter()
    with plan.progress_bar(progress) as bar:
        if plan.todo:  # a rerun with nothing left to do starts no Ray
            _run_on_pool(ray, plan, make_generator, writer, provenance, options, bar)
    return plan.finish(time.perf_counter() - t0)


def _run_on_pool(ray: ModuleType, plan: RunPlan, make_generator: Callable[[], MaskGenerator], writer: Writer,
                 provenance: dict[str, Any], options: RayOptions, bar: tqdm) -> None:
    """Annotate ``plan.todo`` on an actor pool, recording each image's row once in ``plan``; joins
    (or starts, and then stops) Ray."""
    joined = ray.is_initialized()
    if not joined:
        ray.init(**({"address": options.address} if options.address else {"include_dashboard": False}))
    context = ray.data.DataContext.get_current()
    bars = context.enable_progress_bars
    context.enable_progress_bars = False  # the run's own bar counts images
    try:
        resources = ray.cluster_resources()
        workers = pool_size(options, resources, len(plan.todo))
        check_pool_fits(options, workers, resources, can_grow=joined or options.address is not None)
        seen: set[str] = set()
        for status in _rows(ray, plan, make_generator, writer, provenance, options, workers):
            if status.file not in seen:  # a retried block's row is counted once
                seen.add(status.file)
                plan.record(status, bar)
        for rel in plan.todo:
            if rel.as_posix() not in seen:
                plan.record(ImageStatus(rel.as_posix(), error="no result came back from the Ray workers; rerun "
                                                              "to annotate it"), bar)
    finally:
        context.enable_progress_bars = bars
        if not joined:
            ray.shutdown()
