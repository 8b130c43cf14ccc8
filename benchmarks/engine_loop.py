"""The data engine's loop, measured: annotate a new domain in the studio, fine-tune on it, measure.

    python benchmarks/engine_loop.py [--out /tmp/engine_loop] [--images 120] [--held-out 30]
        [--steps 300] [--lr 3e-4] [--train-parts image_encoder,mask_decoder,prompt_encoder] ...

1. **A new domain: sepia-toned scenes.** Generated scenes
   (:class:`~samkit.data.synthetic.scenes.SyntheticSceneDataset`, with the nano recipe's photo
   backgrounds and textures) turned into sepia prints (:func:`sepia`: the luminance, tinted brown),
   with 2-6 top-level objects (training: 1-4) and seeds far from the training (1, 1001) and
   evaluation (1_000_003) seeds. ``samkit_nano`` only ever saw colour, and it leans on colour: on
   the same scenes in colour it needs about half the clicks. ``--images`` scenes to annotate and
   ``--held-out`` others, written as PNG into two folders.
2. **Annotation through the studio.** ``samkit.studio.create_app`` with the shipped model, driven
   in process with Starlette's ``TestClient`` by a simulated annotator (:func:`annotate_in_studio`):
   for each of the first ``--objects`` ground-truth objects of at least ``--min-area`` pixels, the
   interactive protocol's centre-of-error click (:func:`samkit.prompts.sample_center_error_click`,
   computed from the mask the API returns) until the mask's IoU with the truth reaches
   ``--iou-target`` or ``--max-clicks`` clicks, then ``POST /accept``. What the studio writes (the
   model's masks, not the truth) is the training set.
3. **Fine-tuning** through the command line, ``samkit train --format sa1b --data STUDIO_OUT
   --images IMAGES ...`` (run in this process), from the shipped weights.
4. **Before / after** on the held-out scenes: :func:`~samkit.evaluate.evaluate_interactive`
   (NoC@85, NoC@90, mIoU@1, mIoU@3, mIoU@5; ``--eval-clicks`` clicks per object, the objects the
   annotator takes), and the held-out scenes annotated through the studio with each model
   (prompts per mask: the clicks the next round of annotators needs; it equals NoC@85 with the
   annotator's click budget, which the summary also gives from the evaluation, as a cross-check).
5. A table on stdout, ``loop.json`` and ``loop.png`` (mean IoU per click, before and after).

Everything runs on the CPU with one torch thread (``--threads``). The defaults took 16.4 minutes
on this project's shared 2-core machine under a load of about 7 (training 7.1 of them); the
run's figures are docs/studio/loop.json and docs/studio/loop.png. Under ``--out``::

    images/annotate/*.png, images/held_out/*.png   the generated scenes (ground truth: regenerated
                                                   from the seeds, see DomainSpec)
    studio/annotate/*.json                         SA-1B JSON the studio wrote (shipped model)
    studio/held_out_before/*.json, studio/held_out_after/*.json   the held-out scenes annotated with
                                                   the shipped and the fine-tuned model
    train/                                         the samkit train run (final.pt, metrics.csv, ...)
    eval/                                          evaluate_interactive's reports (CSV, JSON, PNG)
    annotator_<round>.csv                          one row per annotated object: clicks, IoU, ...
    loop.json, loop.png                            the summary and the IoU-per-click plot
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from samkit.builder import load_model  # noqa: E402
from samkit.cli.main import main as samkit_cli  # noqa: E402
from samkit.data.sample import LazyDataset, Sample  # noqa: E402
from samkit.data.synthetic.scenes import SyntheticSceneDataset  # noqa: E402
from samkit.data.synthetic.textures import dependency_photos  # noqa: E402
from samkit.evaluate import (evaluate_interactive, number_of_clicks, plot_iou_curves,  # noqa: E402
                             write_interactive_report)
from samkit.masks.rle import rle_to_mask  # noqa: E402
from samkit.model.sam2 import SAM2Model  # noqa: E402
from samkit.prompts import sample_center_error_click  # noqa: E402

ANNOTATOR = {"X-Studio-Client": "simulated-annotator"}


# --------------------------------------------------------------------------- the new domain
SEPIA = np.array([1.07, 0.74, 0.43], dtype=np.float32)  # the tint of a luminance image
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601


def sepia(image: np.ndarray) -> np.ndarray:
    """An ``H x W x 3`` uint8 RGB image as a sepia-toned print: its luminance, tinted brown
    (every colour difference is gone; only brightness differences are left)."""
    luma = image.astype(np.float32) @ LUMA
    return np.clip(luma[..., None] * SEPIA + 20.0, 0, 255).astype(np.uint8)


class SepiaScenes(LazyDataset):
    """The samples of ``scenes`` with :func:`sepia` images (masks unchanged)."""

    def __init__(self, scenes: Sequence[Sample]) -> None:
        self.scenes = scenes
        self._entries = range(len(scenes))

    def _name(self, i: int) -> str:
        return self.scenes[i].name

    def _load(self, i: int) -> Sample:
        sample = self.scenes[i]
        return Sample(image=sepia(sample.image), masks=sample.masks, ignore=sample.ignore, name=sample.name)


@dataclass(frozen=True)
class DomainSpec:
    """Generated scenes of the new domain. Scene ``i`` of a set is ``SyntheticSceneDataset``'s
    sample ``i`` for the set's seed (scikit-image photos as in the nano recipe), sepia-toned, so
    the ground truth is regenerated exactly from these fields."""

    size: int = 256  # side in pixels (the model's input size: no resizing)
    num_objects: tuple[int, int] = (2, 6)  # top-level objects per scene (training: 1-4)
    photo_prob: float = 0.5  # share of backgrounds that are photo crops (as in training)
    tone: str = "sepia"  # "sepia" or "colour" (the scenes as generated)
    annotate_seed: int = 424_242
    held_out_seed: int = 525_252

    def dataset(self, count: int, seed: int) -> Sequence[Sample]:
        scenes = SyntheticSceneDataset(count, size=(self.size, self.size), seed=seed, num_objects=self.num_objects,
                                       photos=dependency_photos(), photo_prob=self.photo_prob)
        return SepiaScenes(scenes) if self.tone == "sepia" else scenes


def write_images(samples: Sequence[Sample], folder: Path) -> list[str]:
    """Each sample's image as ``folder/<name>.png``; returns the file names in order."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for sample in samples:
        name = f"{sample.name}.png"
        Image.fromarray(sample.image).save(folder / name)
        names.append(name)
    return names


def pick_objects(masks: np.ndarray, max_objects: int, min_area: int) -> list[int]:
    """The first ``max_objects`` ground-truth objects with at least ``min_area`` pixels (the
    objects :func:`evaluate_interactive` takes with ``max_objects`` and ``min_area``)."""
    areas = masks.reshape(len(masks), -1).sum(1) if len(masks) else np.zeros(0)
    return [j for j, a in enumerate(areas) if a >= max(1, min_area)][:max_objects]


# --------------------------------------------------------------------------- the simulated annotator
@dataclass
class AnnotatedObject:
    """One object the simulated annotator made in the studio."""

    image: str  # the image's name in the studio
    index: int  # the object's index among the image's ground-truth masks
    clicks: int  # clicks the annotator sent
    iou: float  # IoU of the accepted mask with the ground truth
    reached: bool  # iou >= the target
    num_prompts: int  # what the studio recorded for the annotation
    seconds: Optional[float]  # what the studio recorded (first prompt to accept)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def annotate_in_studio(client: Any, targets: Mapping[str, Sequence[np.ndarray]], *, iou_target: float = 0.85,
                       max_clicks: int = 10, headers: Mapping[str, str] = ANNOTATOR) -> list[AnnotatedObject]:
    """Annotate objects through the studio's HTTP API as the interactive protocol's annotator.

    ``client``: a ``starlette.testclient.TestClient`` (or anything with ``get``/``post`` like it)
    on ``create_app``; ``targets``: image name (as ``GET /api/images`` lists it) -> the ``H x W``
    bool ground-truth masks to annotate on it. For each object: click at the centre of the larger
    error region of the mask the API returned (the first click at the object's centre), until the
    mask's IoU with the truth reaches ``iou_target`` or ``max_clicks`` clicks were sent; then
    accept the mask. Each image is marked done after its objects. Returns one
    :class:`AnnotatedObject` per object, in order.
    """
    def call(method: str, url: str, **kw: Any) -> dict[str, Any]:
        response = getattr(client, method)(url, headers=dict(headers), **kw)
        if response.status_code != 200:
            raise RuntimeError(f"{method.upper()} {url}: {response.status_code} {response.text}")
        return response.json()

    ids = {row["name"]: row["id"] for row in call("get", "/api/images")["images"]}
    done: list[AnnotatedObject] = []
    for name, masks in targets.items():
        image_id = ids[name]
        call("get", f"/api/images/{image_id}")  # opens the image (its embedding, the next one's ahead)
        for index, target in enumerate(masks):
            target_t = torch.from_numpy(np.ascontiguousarray(target))[None]
            pred: Optional[torch.Tensor] = None
            clicks, iou = 0, 0.0
            while clicks < max_clicks and iou < iou_target:
                points, labels = sample_center_error_click(target_t, pred)
                x, y = (float(v) for v in points[0, 0])
                current = call("post", f"/api/images/{image_id}/prompt",
                               json={"type": "point", "x": x, "y": y, "label": int(labels[0, 0])})
                clicks += 1
                mask = rle_to_mask(current["mask"])
                pred = torch.from_numpy(np.ascontiguousarray(mask))[None]
                iou = _iou(mask, target)
            ann = call("post", f"/api/images/{image_id}/accept", json={})["annotation"]
            done.append(AnnotatedObject(image=name, index=index, clicks=clicks, iou=iou, reached=iou >= iou_target,
                                        num_prompts=int(ann["num_prompts"]), seconds=ann["seconds"]))
        call("post", f"/api/images/{image_id}/done", json={"done": True})
    return done


@dataclass
class StudioRound:
    """One pass of the simulated annotator over a folder of images."""

    name: str
    objects: list[AnnotatedObject]
    stats: dict[str, Any]  # GET /api/stats at the end
    seconds: float

    def summary(self) -> dict[str, Any]:
        clicks = np.array([o.clicks for o in self.objects], dtype=float)
        return {"images": len({o.image for o in self.objects}), "masks": len(self.objects),
                "clicks_per_mask": _round(clicks.mean()),
                "studio_prompts_per_mask": _round(self.stats["prompts_per_mask"]),
                "reached_target": int(sum(o.reached for o in self.objects)),
                "mean_iou_of_accepted_masks": _round(np.mean([o.iou for o in self.objects])),
                "studio_seconds_per_mask": _round(self.stats["seconds_per_mask"], 3),
                "wall_seconds": _round(self.seconds, 1)}


def studio_round(name: str, model: SAM2Model, images_dir: Path, out_dir: Path,
                 targets: Mapping[str, Sequence[np.ndarray]], *, iou_target: float, max_clicks: int) -> StudioRound:
    """A fresh studio on ``images_dir`` writing to ``out_dir`` (emptied first), annotated by
    :func:`annotate_in_studio`."""
    from starlette.testclient import TestClient

    from samkit.studio import StudioConfig, create_app

    if out_dir.exists():
        shutil.rmtree(out_dir)
    t0 = time.perf_counter()
    app = create_app(StudioConfig(images_dir, out_dir), model=model)
    with TestClient(app) as client:
        objects = annotate_in_studio(client, targets, iou_target=iou_target, max_clicks=max_clicks)
        stats = client.get("/api/stats").json()
    return StudioRound(name, objects, stats, time.perf_counter() - t0)


def write_objects_csv(objects: Sequence[AnnotatedObject], path: Path) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(asdict(objects[0])))
        writer.writeheader()
        writer.writerows(asdict(o) for o in objects)


# --------------------------------------------------------------------------- fine-tuning
@dataclass
class TrainSettings:
    """The ``samkit train`` options of the fine-tuning (see ``samkit train --help``).

    The defaults are the ones measured to pay here (docs/studio/loop.json): the image encoder
    trains with the decoder (the new domain changes what the image looks like, so a decoder
    alone gained next to nothing), the nano recipe's loss and optimiser settings rather than
    SAM's (focal 20 : dice 1, gradient clip 0.1 and weight decay 0.1 are meant for official
    weights), and cheap steps (one correction round, 4 objects per image) so that 300 steps fit
    in about five minutes of one CPU thread. More steps on 40 images overfitted the studio's
    masks; more images helped."""

    steps: int = 300
    batch_size: int = 4
    max_objects: int = 4
    lr: float = 3e-4
    warmup: int = 20
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    train_parts: str = "image_encoder,mask_decoder,prompt_encoder"  # "" with lora_rank: adapters only
    part_lr: str = ""
    lora_rank: int = 0
    loss_weights: str = "1,1,1,1"
    loss_resolution: str = "low"
    correction_rounds: int = 1
    rounds_without_click: int = 0
    prob_box: float = 0.3
    seed: int = 0
    extra: list[str] = field(default_factory=list)  # more samkit train arguments, as given

    def argv(self, data: Path, images: Path, run_dir: Path) -> list[str]:
        args = ["train", "--format", "sa1b", "--data", str(data), "--images", str(images), "--out", str(run_dir),
                "--steps", str(self.steps), "--batch-size", str(self.batch_size),
                "--max-objects", str(self.max_objects), "--lr", str(self.lr), "--warmup", str(self.warmup),
                "--weight-decay", str(self.weight_decay), "--grad-clip", str(self.grad_clip),
                "--loss-weights", self.loss_weights, "--loss-resolution", self.loss_resolution,
                "--correction-rounds", str(self.correction_rounds),
                "--rounds-without-click", str(self.rounds_without_click), "--prob-box", str(self.prob_box),
                "--seed", str(self.seed), "--log-every", "25", "--tensorboard", "off", "--no-progress"]
        if self.train_parts:
            args += ["--train-parts", self.train_parts]
        if self.part_lr:
            args += ["--part-lr", self.part_lr]
        if self.lora_rank:
            args += ["--lora-rank", str(self.lora_rank)]
        return args + list(self.extra)


def fine_tune(settings: TrainSettings, data: Path, images: Path, run_dir: Path) -> tuple[Path, float]:
    """``samkit train`` in this process (it inherits the torch thread count); returns the
    final checkpoint and the seconds taken."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    argv = settings.argv(data, images, run_dir)
    print("samkit " + " ".join(argv), flush=True)
    t0 = time.perf_counter()
    rc = samkit_cli(argv)
    if rc != 0:
        raise SystemExit(f"samkit train failed with exit code {rc}")
    return run_dir / "final.pt", time.perf_counter() - t0


# --------------------------------------------------------------------------- evaluation
METRICS = ("NoC@85", "NoC@90", "NoF@85", "mIoU@1", "mIoU@3", "mIoU@5")


def evaluate(model: SAM2Model, data: Sequence[Sample], *, max_objects: int, min_area: int, max_clicks: int,
             label: str) -> dict[str, Any]:
    """:func:`evaluate_interactive` on the held-out scenes."""
    return evaluate_interactive(model, data, max_clicks=max_clicks, max_objects=max_objects, min_area=min_area,
                                label=label, progress=False)


def _round(v: Any, n: int = 4) -> Any:
    """A number for the JSON summary: ints stay ints, NaN (a click count past the budget) is None."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    return int(v) if isinstance(v, (int, np.integer)) else round(float(v), n)


# --------------------------------------------------------------------------- the run
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("/tmp/engine_loop"), help="folder for everything written")
    ap.add_argument("--images", type=int, default=120, help="scenes annotated in the studio (the training set)")
    ap.add_argument("--held-out", type=int, default=30, help="held-out scenes (evaluation)")
    ap.add_argument("--objects", type=int, default=6, help="objects annotated / evaluated per scene")
    ap.add_argument("--min-area", type=int, default=400, help="smallest object annotated / evaluated, pixels")
    ap.add_argument("--iou-target", type=float, default=0.85, help="the annotator accepts at this IoU ...")
    ap.add_argument("--max-clicks", type=int, default=10, help="... or after this many clicks")
    ap.add_argument("--eval-clicks", type=int, default=20, help="clicks per object in evaluate_interactive")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    d = TrainSettings()
    g = ap.add_argument_group("fine-tuning (samkit train options)")
    g.add_argument("--steps", type=int, default=d.steps)
    g.add_argument("--batch-size", type=int, default=d.batch_size)
    g.add_argument("--max-objects", type=int, default=d.max_objects)
    g.add_argument("--lr", type=float, default=d.lr)
    g.add_argument("--warmup", type=int, default=d.warmup)
    g.add_argument("--weight-decay", type=float, default=d.weight_decay)
    g.add_argument("--grad-clip", type=float, default=d.grad_clip)
    g.add_argument("--train-parts", default=d.train_parts, help="comma-separated parts; '' with --lora-rank")
    g.add_argument("--part-lr", default=d.part_lr, help="PART=FACTOR,... ('' for none)")
    g.add_argument("--lora-rank", type=int, default=d.lora_rank)
    g.add_argument("--loss-weights", default=d.loss_weights, help="focal,dice,iou,object")
    g.add_argument("--loss-resolution", default=d.loss_resolution, choices=("image", "low"))
    g.add_argument("--correction-rounds", type=int, default=d.correction_rounds)
    g.add_argument("--rounds-without-click", type=int, default=d.rounds_without_click)
    g.add_argument("--prob-box", type=float, default=d.prob_box)
    g.add_argument("--train-seed", type=int, default=d.seed)
    g.add_argument("--train-arg", action="append", default=[], metavar="ARG",
                   help="one more samkit train argument, passed as given (repeatable)")
    return ap.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    seconds: dict[str, float] = {}

    # 1. the new domain
    t0 = time.perf_counter()
    domain = DomainSpec()
    sets = {"annotate": domain.dataset(args.images, domain.annotate_seed),
            "held_out": domain.dataset(args.held_out, domain.held_out_seed)}
    samples = {k: [ds[i] for i in range(len(ds))] for k, ds in sets.items()}
    folders = {k: out / "images" / k for k in sets}
    targets: dict[str, dict[str, list[np.ndarray]]] = {}
    for key, rows in samples.items():
        if folders[key].exists():
            shutil.rmtree(folders[key])
        names = write_images(rows, folders[key])
        targets[key] = {n: [s.masks[j] for j in pick_objects(s.masks, args.objects, args.min_area)]
                        for n, s in zip(names, rows)}
        targets[key] = {n: m for n, m in targets[key].items() if m}
    seconds["generate"] = time.perf_counter() - t0

    shipped, description = load_model()
    print(f"model: {description}")
    studio_kw = dict(iou_target=args.iou_target, max_clicks=args.max_clicks)

    # 2. annotation of the new images through the studio, shipped model
    rounds: dict[str, StudioRound] = {}
    rounds["annotate"] = studio_round("annotate", shipped, folders["annotate"], out / "studio" / "annotate",
                                      targets["annotate"], **studio_kw)
    rounds["held_out_before"] = studio_round("held_out_before", shipped, folders["held_out"],
                                             out / "studio" / "held_out_before", targets["held_out"], **studio_kw)
    seconds["studio_shipped"] = rounds["annotate"].seconds + rounds["held_out_before"].seconds

    # 3. fine-tuning on what the studio wrote
    settings = TrainSettings(steps=args.steps, batch_size=args.batch_size, max_objects=args.max_objects, lr=args.lr,
                             warmup=args.warmup, weight_decay=args.weight_decay, grad_clip=args.grad_clip,
                             train_parts=args.train_parts, part_lr=args.part_lr, lora_rank=args.lora_rank,
                             loss_weights=args.loss_weights, loss_resolution=args.loss_resolution,
                             correction_rounds=args.correction_rounds, rounds_without_click=args.rounds_without_click,
                             prob_box=args.prob_box, seed=args.train_seed, extra=list(args.train_arg))
    checkpoint, seconds["train"] = fine_tune(settings, out / "studio" / "annotate", folders["annotate"], out / "train")
    tuned, _ = load_model(checkpoint=checkpoint)

    # 4. before / after on the held-out scenes
    t0 = time.perf_counter()
    eval_kw = dict(max_objects=args.objects, min_area=args.min_area, max_clicks=args.eval_clicks)
    results = {"before": evaluate(shipped, samples["held_out"], label="before", **eval_kw),
               "after": evaluate(tuned, samples["held_out"], label="after", **eval_kw)}
    # the reference: the same held-out scenes in colour, the shipped model (what it does at home)
    colour = DomainSpec(tone="colour").dataset(args.held_out, domain.held_out_seed)
    results["colour_reference"] = evaluate(shipped, colour, label="colour_reference", **eval_kw)
    write_interactive_report(results, out / "eval", "held_out")
    seconds["evaluate"] = time.perf_counter() - t0
    rounds["held_out_after"] = studio_round("held_out_after", tuned, folders["held_out"],
                                            out / "studio" / "held_out_after", targets["held_out"], **studio_kw)
    seconds["studio_tuned"] = rounds["held_out_after"].seconds
    for r in rounds.values():
        write_objects_csv(r.objects, out / f"annotator_{r.name}.csv")

    # 5. the summary
    seconds["total"] = time.perf_counter() - t_start
    models = {}
    for label, res in results.items():
        metrics = {k: _round(res[k]) for k in METRICS}
        metrics[f"NoC@{round(args.iou_target * 100)} ({args.max_clicks}-click budget)"] = _round(
            number_of_clicks(res["ious"], args.iou_target, args.max_clicks).mean())
        models[label] = {**metrics, "objects": res["num_objects"], "curve": [round(v, 4) for v in res["curve"]]}
    summary = {
        "what": "samkit_nano annotates a new domain in the studio (simulated annotator), is fine-tuned on the "
                "studio's output with samkit train --format sa1b, and is measured before/after on held-out scenes",
        "domain": {**asdict(domain), "annotate_images": args.images, "held_out_images": args.held_out,
                   "objects_per_image": args.objects, "min_area": args.min_area,
                   "why": "samkit_nano was trained on colour scenes of 1-4 top-level objects; these are the same "
                          "kind of scenes as sepia prints (luminance only, tinted), with 2-6 objects, other seeds"},
        "annotator": {"protocol": "centre of the larger error region (RITM), from the mask the studio returns",
                      "iou_target": args.iou_target, "max_clicks": args.max_clicks},
        "train": {"settings": asdict(settings),
                  "command": "samkit " + " ".join(settings.argv(Path("STUDIO_OUT"), Path("IMAGES"), Path("RUN"))),
                  "training_masks": len(rounds["annotate"].objects)},
        "studio": {name: r.summary() for name, r in rounds.items()},
        "held_out": {"eval_clicks": args.eval_clicks, "models": models,
                     "note": "before / after: the sepia held-out scenes; colour_reference: the same scenes in "
                             "colour with the shipped model"},
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "threads": args.threads,
    }
    (out / "loop.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_iou_curves({"shipped samkit_nano": results["before"]["ious"],
                     f"fine-tuned on {len(rounds['annotate'].objects)} studio masks": results["after"]["ious"],
                     "shipped, the same scenes in colour": results["colour_reference"]["ious"]},
                    out / "loop.png", title="held-out scenes of the new domain: mean IoU vs clicks")
    print_table(summary)
    return summary


def print_table(summary: Mapping[str, Any]) -> None:
    """Before / after, one row per figure."""
    models = summary["held_out"]["models"]
    before, after, colour = models["before"], models["after"], models["colour_reference"]
    studio = summary["studio"]
    rows: list[tuple[str, Any, Any, Any]] = [
        ("studio prompts per mask", studio["held_out_before"]["studio_prompts_per_mask"],
         studio["held_out_after"]["studio_prompts_per_mask"], None),
        ("studio masks reaching the IoU target", studio["held_out_before"]["reached_target"],
         studio["held_out_after"]["reached_target"], None)]
    rows += [(k, before[k], after[k], colour[k]) for k in before if k not in ("objects", "curve")]
    width = max(len(r[0]) for r in rows)
    print(f"\n{'held-out scenes':<{width}}  {'shipped':>8}  {'tuned':>8}  {'colour ref':>10}")
    for name, *values in rows:
        cells = ["" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v) for v in values]
        print(f"{name:<{width}}  {cells[0]:>8}  {cells[1]:>8}  {cells[2]:>10}")
    print(f"annotation round: {studio['annotate']['masks']} masks, {studio['annotate']['studio_prompts_per_mask']:.2f} "
          f"prompts per mask; time {summary['seconds']}")


if __name__ == "__main__":
    main()
