"""Annotating folders of images: listing, shards, resume, the loop and its summary.

``annotate_folder(generator, IMAGES, OUT_DIR)`` annotates a whole folder tree (or the images a
text file or a glob names, :mod:`samkit.engine.inputs`), resumably:

* every image (the suffixes of :data:`samkit.imageio.IMAGE_EXTENSIONS`, recursive, hidden files
  and the output folder skipped) goes through one :class:`AnnotateWorker`, whose writer (by
  default :class:`~samkit.engine.writers.SA1BWriter`: ``OUT_DIR/<relative path>.json``, with the
  image's suffix kept where two images' names would collide) writes atomically, so a killed run
  leaves no half-written output, and a rerun skips images already done;
* every output records the settings that made it (generator arguments, model name and a hash of
  its weights, :func:`describe_generator`); a rerun with other settings is refused, naming
  ``overwrite=True`` (``--overwrite``), which redoes those outputs;
* an image that fails (unreadable, too large, refused with a :class:`~samkit.errors.SamkitError`)
  is an error row of the summary and never stops the run; a folder that cannot be listed is
  listed in the summary; any other exception is a bug and stops the run;
* ``shard=(I, N)`` takes a deterministic share of the images (by a hash of the relative path),
  so N processes or machines can split the work without talking to each other;
* ``summary.json`` and ``masks_per_image.png`` give the masks-per-image histogram in the SA-1B bins.

The driver's part of a run (listing, skipping finished images, the summary) is :func:`prepare_run`
and :class:`RunPlan`; the local loop here and the Ray backend (:mod:`samkit.engine.ray_backend`)
share it and the one :class:`AnnotateWorker`, and differ only in who runs the workers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm import tqdm

from samkit.automask.generator import AutoMaskGenerator
from samkit.builder import load_model
from samkit.engine.inputs import ImageScan, list_images, list_inputs, scan_images
from samkit.engine.writers import PriorOutput, SA1BWriter, Writer, sa1b_record, summary_stem
from samkit.errors import ConfigError, SamkitError
from samkit.fileio import write_image, write_json
from samkit.imageio import IMAGE_EXTENSIONS, load_image

__all__ = ["SA1B_BINS", "MaskGenerator", "GeneratorSpec", "ImageStatus", "AnnotateWorker", "Summary", "ImageScan",
           "RunPlan", "mask_count_histogram", "scan_images", "list_images", "list_inputs", "parse_shard", "in_shard",
           "describe_generator", "same_settings", "settings_diff", "prepare_run", "annotate_image", "annotate_folder",
           "histogram_png"]

# SA-1B's masks-per-image bins: (label, lower bound inclusive, upper bound exclusive)
SA1B_BINS = (("<50", 0, 50), ("50-100", 50, 100), ("100-200", 100, 200), ("200-300", 200, 300),
             ("300-400", 300, 400), ("400-500", 400, 500), (">500", 500, None))

# generator settings that change how the work is batched, not the masks: a rerun may change them
RESULT_NEUTRAL_SETTINGS = frozenset({"points_per_batch"})


class MaskGenerator(Protocol):
    """What the engine needs: ``generate(image) -> list of records`` with COCO RLE masks.

    A generator's settings are read, for the outputs' record, from a dataclass ``config`` and the
    model from ``predictor.model`` or ``model`` when it has them (as :class:`AutoMaskGenerator`
    does); see :func:`describe_generator`.
    """

    def generate(self, image: np.ndarray) -> list[dict[str, Any]]: ...


@dataclass
class GeneratorSpec:
    """An :class:`~samkit.automask.generator.AutoMaskGenerator` as data: calling the spec builds
    it. A distributed backend sends the spec (a few hundred bytes) to each worker, which builds
    the model once; the model itself never travels."""

    model: str | None = None        # registered name or Hugging Face id; None (and no checkpoint): the default model
    checkpoint: str | None = None   # a checkpoint file instead of a name (at the same path on every machine)
    pretrained: bool | None = None  # as in samkit.builder.load_model: True needs trained weights, False random ones
    device: str = "cpu"             # where the model runs, e.g. "cuda" (in a Ray worker: the GPU it was given)
    compile: bool = False           # compile the mask decoder (torch.compile)
    options: dict[str, Any] = field(default_factory=dict)  # AutoMaskGenerator keyword arguments

    def build(self) -> tuple[AutoMaskGenerator, str]:
        """The generator, and the line naming its weights (:func:`samkit.builder.load_model`)."""
        model, description = load_model(self.model, self.checkpoint, self.device, pretrained=self.pretrained,
                                        compile=self.compile)
        return AutoMaskGenerator(model, **self.options), description

    def __call__(self) -> AutoMaskGenerator:
        return self.build()[0]

    def on_cpu(self) -> GeneratorSpec:
        """This spec on the CPU, uncompiled: the same settings and weights, so the same
        :func:`describe_generator` (what a distributed run's driver builds to record them)."""
        return dataclasses.replace(self, device="cpu", compile=False)


def _jsonable(value: Any) -> Any:
    """A setting as JSON: numbers, strings and lists as they are, arrays by shape and SHA-256."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value)
        return {"shape": list(arr.shape), "sha256": hashlib.sha256(arr.tobytes()).hexdigest()}
    return repr(value)


def weights_sha256(model: torch.nn.Module) -> str:
    """SHA-256 of a model's state dict (names, dtypes, shapes and bytes, in key order): the same
    weights give the same hash wherever their checkpoint file lies."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.view(torch.uint8).numpy())
    return h.hexdigest()


def describe_generator(generator: Any) -> dict[str, Any]:
    """What decides the masks of ``generator``, as JSON (recorded in every output and the summary):
    ``{"generator": class name, "settings": {config fields}, "model": {"name", "dtype",
    "weights_sha256"} or None}``."""
    config = getattr(generator, "config", None)
    settings = ({f.name: _jsonable(getattr(config, f.name)) for f in dataclasses.fields(config)}
                if dataclasses.is_dataclass(config) and not isinstance(config, type) else {})
    model = getattr(getattr(generator, "predictor", None), "model", None)
    model = model if model is not None else getattr(generator, "model", None)
    described = None
    if isinstance(model, torch.nn.Module):
        name = getattr(getattr(model, "cfg", None), "name", None) or type(model).__name__
        dtype = next((str(p.dtype) for p in model.parameters()), None)
        described = {"name": str(name), "dtype": dtype, "weights_sha256": weights_sha256(model)}
    return {"generator": type(generator).__name__, "settings": settings, "model": described}


def _comparable(provenance: dict[str, Any]) -> dict[str, Any]:
    """A provenance record as JSON round-trips it, without the settings that do not change masks."""
    p = json.loads(json.dumps(provenance))
    if isinstance(p.get("settings"), dict):
        p["settings"] = {k: v for k, v in p["settings"].items() if k not in RESULT_NEUTRAL_SETTINGS}
    return p


def same_settings(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two provenance records (:func:`describe_generator`) make the same masks."""
    return _comparable(a) == _comparable(b)


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}." if isinstance(v, dict) else f"{prefix}{k}"))
    return out


def settings_diff(old: dict[str, Any], new: dict[str, Any], limit: int = 4) -> str:
    """``"settings.pred_iou_thresh 0.8 -> 0.5, ..."``: what differs between two provenance records."""
    a, b = _flat(_comparable(old)), _flat(_comparable(new))
    keys = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]

    def short(v: Any) -> str:
        text = json.dumps(v)
        return text[:12] + "..." if isinstance(v, str) and len(v) == 64 else text  # a hash: its start

    items = [f"{k.removeprefix('settings.')} {short(a.get(k))} -> {short(b.get(k))}" for k in keys[:limit]]
    return ", ".join(items) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


@dataclass
class ImageStatus:
    """What the worker did with one image (one row of a run's report)."""

    file: str                    # the image's path relative to the images folder
    masks: int | None = None     # masks written; None when the image failed
    seconds: float = 0.0         # reading, generating and writing
    error: str | None = None     # why the image failed (unreadable, too large, refused by the generator)


class AnnotateWorker:
    """Annotates single images: holds the mask generator (built once) and the output writer.

    ``run(rel)`` reads ``images_dir / rel``, generates its masks and writes them; an image that
    fails with a :class:`~samkit.errors.SamkitError` (unreadable, too large, ...) gives an error
    row; any other exception is a bug and propagates. The local loop (:func:`annotate_folder`) uses
    one worker; the Ray backend gives each of its worker processes its own.

    ``provenance`` is recorded in every output (default :func:`describe_generator` of ``generator``).
    """

    def __init__(self, generator: MaskGenerator, writer: Writer, images_dir: str | os.PathLike,
                 provenance: dict[str, Any] | None = None) -> None:
        self.generator = generator
        self.writer = writer
        self.images_dir = Path(images_dir)
        self.provenance = describe_generator(generator) if provenance is None else provenance

    def run(self, rel: Path, *, skip_finished: bool = False) -> ImageStatus:
        """Annotate the image at ``images_dir / rel``.

        With ``skip_finished``, an image whose output records this worker's settings already
        (written by a worker that then died, before its row reached the driver) is not done
        again: its row gives the masks of that output.
        """
        t0 = time.perf_counter()
        if skip_finished:
            prior = self.writer.done(rel)
            if prior is not None and prior.provenance is not None and same_settings(prior.provenance,
                                                                                    self.provenance):
                return ImageStatus(rel.as_posix(), prior.masks, time.perf_counter() - t0)
        try:
            return self.annotate(rel, load_image(self.images_dir / rel), t0)
        except SamkitError as exc:
            return ImageStatus(rel.as_posix(), None, time.perf_counter() - t0, str(exc))

    def annotate(self, rel: Path, image: np.ndarray, t0: float | None = None) -> ImageStatus:
        """Annotate an image already read (``H x W x 3`` uint8), named ``rel`` in the output;
        ``t0`` is when the work on it began (default: now)."""
        t0 = time.perf_counter() if t0 is None else t0
        image_id = zlib.crc32(rel.as_posix().encode())
        count = self.writer.write(rel, image, self.generator.generate(image), image_id, self.provenance)
        return ImageStatus(rel.as_posix(), count, time.perf_counter() - t0)


@dataclass
class Summary:
    """What an annotate run did (also written as ``summary.json``)."""

    images_total: int = 0            # images in this shard
    annotated: int = 0               # annotated in this run
    skipped_existing: int = 0        # already done by an earlier run with the same settings
    replaced: int = 0                # of the annotated: outputs of other settings redone (overwrite)
    kept_unrecorded: int = 0         # of the skipped: outputs of an earlier samkit, settings not recorded
    failed: list[dict[str, str]] = field(default_factory=list)   # {"file", "error"}
    folders_not_read: list[dict[str, str]] = field(default_factory=list)  # {"folder", "error"}
    named_with_suffix: list[str] = field(default_factory=list)  # images whose outputs keep the suffix
    masks_per_image: dict[str, int] = field(default_factory=dict)  # relative path -> count
    provenance: dict[str, Any] = field(default_factory=dict)  # the settings of this run
    seconds: float = 0.0

    def add(self, status: ImageStatus) -> None:
        """Count one worker row."""
        if status.error is not None:
            self.failed.append({"file": status.file, "error": status.error})
        else:
            self.annotated += 1
            self.masks_per_image[status.file] = int(status.masks or 0)

    def histogram(self) -> dict[str, int]:
        return mask_count_histogram(list(self.masks_per_image.values()))

    def to_json(self) -> dict[str, Any]:
        counts = list(self.masks_per_image.values())
        return {
            "images_total": self.images_total, "annotated_this_run": self.annotated,
            "skipped_existing": self.skipped_existing, "images_done": len(counts),
            "failed": self.failed, "masks_total": int(sum(counts)),
            "masks_per_image_mean": float(np.mean(counts)) if counts else 0.0,
            "masks_per_image_histogram": self.histogram(), "seconds": round(self.seconds, 2),
            "replaced_other_settings": self.replaced, "kept_without_recorded_settings": self.kept_unrecorded,
            "folders_not_read": self.folders_not_read, "outputs_named_with_image_suffix": self.named_with_suffix,
            "samkit": self.provenance,
        }


def mask_count_histogram(counts: Sequence[int]) -> dict[str, int]:
    """Number of images per SA-1B bin of masks-per-image."""
    out = {label: 0 for label, _, _ in SA1B_BINS}
    for c in counts:
        for label, lo, hi in SA1B_BINS:
            if c >= lo and (hi is None or c < hi):
                out[label] += 1
                break
    return out


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N``."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise SamkitError(f"--shard must look like I/N (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise SamkitError(f"--shard I/N needs 0 <= I < N, got {text!r}")
    return i, n


def in_shard(rel: Path, shard: tuple[int, int]) -> bool:
    """Deterministic membership by CRC32 of the relative path (the same on every machine)."""
    i, n = shard
    return zlib.crc32(rel.as_posix().encode()) % n == i


def annotate_image(generator: MaskGenerator, image: np.ndarray, file_name: str, image_id: int = 0) -> dict[str, Any]:
    """The SA-1B record of one image (nothing written)."""
    records = generator.generate(image)
    return sa1b_record(records, file_name, image_id, image.shape[:2])


@dataclass
class RunPlan:
    """What a run does, decided before any image is annotated (:func:`prepare_run`), and what it
    has done so far: the images to annotate, the outputs they replace, the summary."""

    root: Path                   # the folder the images' relative paths start from
    out_dir: Path                # where summary.json and the histogram go
    shard: tuple[int, int]       # (I, N)
    todo: list[Path]             # the images to annotate in this run, in order
    redo: set[Path]              # of todo: images whose outputs of other (or unrecorded) settings are replaced
    summary: Summary             # so far: the images skipped (finished by an earlier run)

    def record(self, status: ImageStatus, bar: tqdm | None = None) -> None:
        """Count one worker row, and show it on the progress bar (an error row on its own line)."""
        self.summary.add(status)
        if status.error is not None:
            tqdm.write(f"skipped image {status.file}: {status.error}")
        else:
            self.summary.replaced += int(Path(status.file) in self.redo)
        if bar is not None:
            bar.update(1)
            if status.error is None:
                bar.set_postfix(masks=status.masks)

    def progress_bar(self, progress: bool = True) -> tqdm:
        """The run's progress bar over the shard's images, the skipped ones already counted."""
        return tqdm(total=self.summary.images_total, initial=self.summary.skipped_existing, desc="annotate",
                    unit="img", disable=not progress)

    def finish(self, seconds: float) -> Summary:
        """Write ``summary.json`` and ``masks_per_image.png`` (named for the shard); the summary."""
        summary = self.summary
        summary.seconds = seconds
        order = {rel.as_posix(): k for k, rel in enumerate(self.todo)}  # rows come in any order from workers
        summary.failed.sort(key=lambda row: order.get(row["file"], len(order)))
        stem = summary_stem(self.shard)
        write_json(self.out_dir / f"{stem}.json", summary.to_json(), indent=2)
        write_image(self.out_dir / f"masks_per_image{stem.removeprefix('summary')}.png",
                    histogram_png(summary.histogram()))
        return summary


def prepare_run(images: str | os.PathLike, out_dir: str | os.PathLike, writer: Writer, provenance: dict[str, Any], *,
                shard: tuple[int, int] = (0, 1), extensions: Sequence[str] = IMAGE_EXTENSIONS,
                overwrite: bool = False) -> RunPlan:
    """The driver's part of a run before any image is annotated: list the images
    (:func:`~samkit.engine.inputs.list_inputs`), plan the writer's names, take the shard, skip the
    images finished with the same settings, and refuse (or, with ``overwrite``, plan to redo)
    outputs made with other settings. Makes ``out_dir``.

    Raises:
        ConfigError: ``out_dir`` is the images' root folder itself, or holds outputs made with
            other settings and ``overwrite`` is False (nothing is written then).
        DatasetError: ``images`` is not a readable folder, list of images or glob.
    """
    out_dir = Path(out_dir)
    scan = list_inputs(images, extensions, skip=out_dir)
    if out_dir.resolve() == scan.root.resolve():
        raise ConfigError(f"--out '{out_dir}' is the images folder itself: a rerun would read the overlays and "
                          "the histogram as images; give a subfolder (skipped when scanning) or another folder")
    writer.plan(scan.files)
    shard_files = [p for p in scan.files if in_shard(p, shard)]
    summary = Summary(images_total=len(shard_files), folders_not_read=scan.folders_not_read, provenance=provenance)
    keeps_suffix = getattr(writer, "keeps_suffix", None)  # SA1BWriter's naming of colliding stems
    summary.named_with_suffix = [p.as_posix() for p in shard_files if keeps_suffix is not None and keeps_suffix(p)]
    for entry in scan.folders_not_read:
        tqdm.write(f"skipped folder {entry['folder']} (not read: {entry['error']})")

    priors: dict[Path, PriorOutput] = {}
    for rel in shard_files:
        prior = writer.done(rel)
        if prior is not None:
            priors[rel] = prior
    other = [rel for rel, p in priors.items()
             if p.provenance is not None and not same_settings(p.provenance, provenance)]
    unrecorded = [rel for rel, p in priors.items() if p.provenance is None]
    if other and not overwrite:
        first = priors[other[0]]
        raise ConfigError(
            f"--out '{out_dir}' holds {len(other)} output(s) made with other settings than this run's "
            f"({settings_diff(first.provenance or {}, provenance)}), e.g. {first.path}; rerun with "
            "--overwrite (overwrite=True) to redo them with these settings, or choose another --out")
    redo = set(other) | (set(unrecorded) if overwrite else set())
    if redo:
        tqdm.write(f"redoing {len(redo)} output(s) made with other or unrecorded settings (overwrite)")
    elif unrecorded:
        tqdm.write(f"kept {len(unrecorded)} output(s) of an earlier samkit that recorded no settings; --overwrite "
                   "redoes them")

    todo: list[Path] = []
    for rel in shard_files:
        prior = priors.get(rel)
        if prior is not None and rel not in redo:
            summary.skipped_existing += 1
            summary.kept_unrecorded += int(prior.provenance is None)
            summary.masks_per_image[rel.as_posix()] = prior.masks
        else:
            todo.append(rel)
    out_dir.mkdir(parents=True, exist_ok=True)
    return RunPlan(scan.root, out_dir, shard, todo, redo, summary)


def annotate_folder(generator: MaskGenerator, images_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                    overlays: bool = False, shard: tuple[int, int] = (0, 1), progress: bool = True,
                    extensions: Sequence[str] = IMAGE_EXTENSIONS, writer: Writer | None = None,
                    overwrite: bool = False, provenance: dict[str, Any] | None = None) -> Summary:
    """Annotate every image of ``images_dir`` into ``out_dir`` (see the module docstring), in this
    process, one image after another.

    Args:
        generator: makes the masks of an image (e.g. ``AutoMaskGenerator(output_mode="coco_rle")``).
        images_dir: a folder tree, a text file of image paths (one a line) or a glob
            (:func:`~samkit.engine.inputs.list_inputs`); the outputs mirror the tree.
        overlays: with the default writer, also write an overlay PNG per image.
        shard: ``(I, N)``: only the I-th of N deterministic shares of the images.
        writer: the output format (default :class:`~samkit.engine.writers.SA1BWriter` into ``out_dir``).
        overwrite: redo the outputs made with other settings than this run's (and those of an
            earlier samkit that recorded none); outputs made with the same settings are kept, so an
            interrupted overwriting run resumes too.
        provenance: the settings recorded in every output (default :func:`describe_generator`).

    Raises:
        ConfigError: ``out_dir`` is ``images_dir`` itself, or holds outputs made with other
            settings and ``overwrite`` is False (nothing is written then).
        DatasetError: ``images_dir`` is not a readable folder, list of images or glob.
    """
    provenance = describe_generator(generator) if provenance is None else provenance
    writer = writer or SA1BWriter(out_dir, overlays=overlays)
    plan = prepare_run(images_dir, out_dir, writer, provenance, shard=shard, extensions=extensions,
                       overwrite=overwrite)
    worker = AnnotateWorker(generator, writer, plan.root, provenance)
    t0 = time.perf_counter()
    with plan.progress_bar(progress) as bar:
        for rel in plan.todo:
            plan.record(worker.run(rel), bar)
    return plan.finish(time.perf_counter() - t0)


def histogram_png(hist: dict[str, int], size: tuple[int, int] = (560, 320)) -> Image.Image:
    """A bar chart of images per masks-per-image bin (drawn with PIL, no plotting package)."""
    w, h = size
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    d.text((10, 8), "images per number of masks (SA-1B bins)", fill="black")
    n = len(hist)
    top = max(hist.values(), default=0) or 1
    left, bottom, bar_w = 40, h - 30, (w - 60) // n
    d.line([(left, 30), (left, bottom), (w - 10, bottom)], fill="black")
    for k, (label, count) in enumerate(hist.items()):
        x0 = left + 5 + k * bar_w
        y0 = bottom - int((bottom - 40) * count / top)
        d.rectangle([x0, y0, x0 + bar_w - 10, bottom], fill=(70, 130, 200))
        d.text((x0, bottom + 5), label, fill="black")
        d.text((x0, y0 - 14), str(count), fill="black")
    return img
