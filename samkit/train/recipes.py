"""Training recipes, of two kinds, both chosen with ``samkit train --recipe NAME``:

* a :class:`Recipe` is a whole run with its own model, data and stages: the exact, reproducible
  run that produces one of samkit's own models (``nano``);
* a :class:`FineTuning` is a named set of settings for fine-tuning trained weights on your data
  (``finetune``): ``samkit train --recipe finetune --format F --data D`` trains the model it is
  given (the default model unless ``--model`` / ``--checkpoint``) with those settings, and every
  option given on the command line replaces the setting it names.

``samkit train --recipe nano --out DIR`` runs :data:`NANO`: the ``samkit_nano`` model from
random weights, on generated data only, images first and video last (as SAM 2 itself was
trained):

1. ``decoder``: the prompt encoder and mask decoder learn to answer prompts on the frozen,
   randomly initialised image encoder; then ``shapes``, ``images``, ``corrections``:
   interactive training of the image encoder, prompt encoder and mask decoder on generated
   scenes (:func:`~samkit.data.synthetic.scenes.make_scene`: textured shapes, occlusions, nested and
   touching objects; backgrounds and some textures are crops of the photos scikit-image ships,
   except the two the demo uses), with more correction clicks per step from stage to stage.
2. ``clips``, then ``tracking`` (the same at a constant, lower lr): the whole model, memory
   modules included, on generated clips of moving objects (:mod:`samkit.data.synthetic.clips`): the
   first frame is prompted, the rest are tracked with memory and supervised, interleaved with
   image steps so the single-image skills stay.

Each stage is a :class:`~samkit.train.trainer.Trainer` run in ``DIR/<n>_<stage>`` (resumable:
rerunning the command continues where a killed run stopped), and the result is exported to
``DIR/samkit_nano.safetensors``. Everything is seeded; on the same machine and torch build the
run is repeatable.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

import samkit.train.initialization as initialization  # called through the module, which tests can patch
from samkit.builder import build_model
from samkit.checkpoint import save_checkpoint
from samkit.configs import ModelConfig, get_config
from samkit.data import SyntheticClipDataset
from samkit.data.synthetic.scenes import SyntheticSceneDataset
from samkit.data.synthetic.textures import dependency_photos
from samkit.errors import ConfigError, MissingDependencyError
from samkit.evaluate.plots import plot_training_curves
from samkit.fileio import write_bytes, write_json
from samkit.prompts import ClickConfig
from samkit.train.config import TrainConfig
from samkit.train.losses import LossWeights
from samkit.train.trainer import Trainer

__all__ = ["Stage", "Recipe", "FineTuning", "NANO", "FINETUNE", "RECIPES", "get_recipe", "run_recipe"]

PathLike = str | os.PathLike


@dataclass(frozen=True)
class Stage:
    """One stage of a recipe: a training configuration and the data it uses."""

    name: str
    train: TrainConfig
    scenes: int = 20000  # generated training scenes (drawn on demand)
    scene_size: int = 256  # side of a generated scene, pixels
    num_objects: tuple[int, int] = (4, 12)  # top-level objects per generated scene
    clips: int = 0  # generated training clips (0: an image-only stage; else set train.clip_every)
    clip_frames: int = 8  # frames per training clip
    val_scenes: int = 24  # held-out scenes (other seeds, same number of objects) validated during training


@dataclass(frozen=True)
class Recipe:
    """A named, reproducible training run: a model config name and its stages."""

    name: str
    model: str | ModelConfig  # a registered model name, or a config
    stages: tuple[Stage, ...]
    seed: int = 0
    description: str = ""
    scene_seed: int = 1  # seed of the training scenes; held-out data use other seeds
    photo_prob: float = 0.5  # share of scene backgrounds that are real photos
    attention_init_gain: float = 3.0  # align_prompt_attention on the random start (0: leave the init alone)


@dataclass(frozen=True)
class FineTuning:
    """Settings for fine-tuning trained weights on your own data: the :class:`TrainConfig` of
    ``samkit train --recipe NAME --format F --data D`` before the options given on the command
    line replace what they name. It has no model or data of its own (unlike a :class:`Recipe`)."""

    name: str
    train: TrainConfig
    description: str = ""


_ONE_ROUND = ClickConfig(num_correction_rounds=0, num_rounds_without_click=0, prob_box=0.3)
_ONE_CORRECTION = ClickConfig(num_correction_rounds=1, num_rounds_without_click=0, prob_box=0.3)
_CORRECTIONS = ClickConfig(num_correction_rounds=3, num_rounds_without_click=1, prob_box=0.3)
_LOSS = LossWeights(focal=1.0, dice=1.0, iou=1.0, object_score=1.0, feature_scale=1.0)
_IMAGE_PARTS = ("image_encoder", "prompt_encoder", "mask_decoder")
_LOGGING = dict(log_every=25, val_every=1000, val_samples=24, val_max_clicks=10, ckpt_every=100, keep_checkpoints=2)


def _train(**kw: Any) -> TrainConfig:
    base = dict(batch_size=4, max_objects=4, weight_decay=0.01, grad_clip=1.0, train_parts=_IMAGE_PARTS,
                loss_weights=_LOSS, loss_resolution="low", seed=0, **_LOGGING)
    base.update(kw)
    return TrainConfig(**base)


# Why the stages look like this (measurements: docs/nano/NOTES.md): from random weights the decoder
# first learns on the frozen random image encoder, where its steps are cheaper and it learns faster;
# cheap one-round steps help most per CPU second; scenes of 1-4 objects with objects of at least
# 400 px are learned where crowded ones were not; tracking needs many clip steps at a high lr.
_EASY = dict(num_objects=(1, 4))
_DECODER_PARTS = ("prompt_encoder", "mask_decoder")


def _clip_stage(name: str, **kw: Any) -> Stage:
    """A stage that trains everything, memory included: every other step an 8-frame generated
    clip, the other steps images with correction clicks; ``kw``: the schedule."""
    return Stage(name, _train(min_object_area=400, clip_every=2, clicks=_CORRECTIONS,
                              train_parts=_IMAGE_PARTS + ("memory",), **kw),
                 clips=5000, clip_frames=8, **_EASY)



NANO = Recipe(
    name="nano",
    model="samkit_nano",
    description="samkit_nano from random weights: decoder on the frozen random encoder, then everything "
                "on generated scenes (one round, then corrections), then clips and images interleaved",
    stages=(
        Stage("decoder", _train(steps=3000, lr=1e-3, warmup_steps=50, min_object_area=400, clicks=_ONE_ROUND,
                                train_parts=_DECODER_PARTS), **_EASY),
        Stage("shapes", _train(steps=3000, lr=3e-4, warmup_steps=200, min_object_area=400, clicks=_ONE_ROUND),
              **_EASY),
        Stage("images", _train(steps=600, lr=4e-4, warmup_steps=50, min_object_area=400,
                               clicks=_ONE_CORRECTION), **_EASY),
        Stage("corrections", _train(steps=300, lr=3e-4, warmup_steps=20, min_object_area=400,
                                    clicks=_CORRECTIONS), **_EASY),
        _clip_stage("clips", steps=2200, lr=3e-4, warmup_steps=20, min_lr_ratio=0.3),
        _clip_stage("tracking", steps=450, lr=1e-4, warmup_steps=10, min_lr_ratio=1.0),
    ),
)

# Fine-tuning trained weights on a new domain; chosen on the shipped samkit_nano and the generated
# LabPics-layout set (docs/training/FINETUNE.md): SAM's own settings (20:1 focal:dice on the full-size
# masks, 8 correction rounds, the decoder alone, gradients clipped at 0.1) gave no clear gain in 200
# steps. What trains here is the whole image path; the losses are weighted 1:1:1:1 on the decoder's
# output; each session is a first prompt (a click, near the object's centre half of the time, or a
# box) and one correction click, so a step costs two decoder runs and the first prompt gets half of
# the loss.
FINETUNE = FineTuning(
    name="finetune",
    description="fine-tune trained weights on your data (image encoder, prompt encoder, mask decoder; "
                "loss 1:1:1:1 at the decoder's resolution; a click or a box, then one correction click; lr 3e-4; "
                "300 steps), validating the starting weights too",
    train=TrainConfig(
        steps=300, batch_size=4, max_objects=4, train_parts=_IMAGE_PARTS, lr=3e-4, warmup_steps=20,
        weight_decay=0.01, grad_clip=1.0, loss_weights=LossWeights(focal=1.0, dice=1.0, iou=1.0, object_score=1.0),
        loss_resolution="low", clicks=ClickConfig(num_correction_rounds=1, num_rounds_without_click=0, prob_box=0.3,
                           prob_center_point=0.5, center_fraction=0.5),
        log_every=10, val_every=150, val_samples=50, val_max_clicks=20, val_at_start=True, seed=0),
)

RECIPES: dict[str, Recipe | FineTuning] = {"nano": NANO, "finetune": FINETUNE}


def describe_recipes() -> str:
    """One line per registered recipe: its name, kind and description (for ``--help`` and errors)."""
    kinds = {Recipe: "a whole run", FineTuning: "settings for --format/--data"}
    return "; ".join(f"{name} ({kinds[type(r)]}): {r.description}" for name, r in sorted(RECIPES.items()))


def get_recipe(name: str) -> Recipe | FineTuning:
    """The recipe registered under ``name``: a :class:`Recipe` (a whole run) or a
    :class:`FineTuning` (settings for your data)."""
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; known recipes: {', '.join(sorted(RECIPES))} "
                          f"({describe_recipes()})")
    return RECIPES[name]


def _scene_data(recipe: Recipe, stage: Stage, photos: list) -> tuple[Any, Any]:
    size = (stage.scene_size, stage.scene_size)
    train = SyntheticSceneDataset(stage.scenes, size=size, seed=recipe.scene_seed, photos=photos,
                                  photo_prob=recipe.photo_prob, num_objects=stage.num_objects)
    val = SyntheticSceneDataset(stage.val_scenes, size=size, seed=recipe.scene_seed + 1000, photos=photos,
                                photo_prob=recipe.photo_prob, num_objects=stage.num_objects)
    return train, val


def run_recipe(recipe: Recipe | str, out_dir: PathLike, *, device: str = "cpu", progress: bool = True,
               only_stages: Optional[tuple[str, ...]] = None,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) every stage of ``recipe`` in ``out_dir`` and export the final model.

    Returns ``{"checkpoint": path of <model>.safetensors, "stages": {name: Trainer.train() result},
    "seconds": {name: wall time}}``.
    """
    recipe = get_recipe(recipe) if isinstance(recipe, str) else recipe
    if isinstance(recipe, FineTuning):
        raise ConfigError(f"recipe {recipe.name!r} holds settings for your data, not a whole run: use samkit train "
                          f"--recipe {recipe.name} --format FORMAT --data DIR (in Python: Trainer(model, data, "
                          f"get_recipe({recipe.name!r}).train))")
    cfg = recipe.model if isinstance(recipe.model, ModelConfig) else get_config(recipe.model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    photos = dependency_photos()
    torch.manual_seed(recipe.seed)
    model = build_model(cfg, device=device, pretrained=False)
    if recipe.attention_init_gain > 0:
        initialization.align_prompt_attention(model, recipe.attention_init_gain)
    results: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for i, stage in enumerate(recipe.stages):
        if only_stages is not None and stage.name not in only_stages:
            continue
        stage_dir = out / f"{i + 1}_{stage.name}"
        if i > 0:  # start from the previous stage's result
            prev = out / f"{i}_{recipe.stages[i - 1].name}" / "final.pt"
            model = build_model(cfg, prev, device=device)
        train, val = _scene_data(recipe, stage, photos)
        clip_data = None
        if stage.clips:
            clip_data = SyntheticClipDataset(stage.clips, num_frames=stage.clip_frames,
                                             size=stage.scene_size, seed=recipe.scene_seed)
        done = stage_dir / "stage_done.json"
        if done.is_file():  # finished by an earlier run of the recipe
            info = json.loads(done.read_text())
            results[stage.name], seconds[stage.name] = info["result"], info["seconds"]
            log(f"recipe {recipe.name}: stage {i + 1}/{len(recipe.stages)} '{stage.name}' already done")
            continue
        log(f"recipe {recipe.name}: stage {i + 1}/{len(recipe.stages)} '{stage.name}' -> {stage_dir}")
        t0 = time.perf_counter()
        trainer = Trainer(model, train, stage.train, out_dir=stage_dir, val_data=val, resume=True,
                          progress=progress, clip_data=clip_data)
        result = trainer.train()
        results[stage.name] = {k: (str(v) if isinstance(v, Path) else v) for k, v in result.items()}
        seconds[stage.name] = time.perf_counter() - t0
        write_json(done, {"result": results[stage.name], "seconds": seconds[stage.name]}, indent=2)
    final = out / f"{cfg.name}.safetensors"
    last = out / f"{len(recipe.stages)}_{recipe.stages[-1].name}" / "final.pt"
    if last.is_file():
        save_checkpoint(build_model(cfg, last), final)
    combine_logs(recipe, out)
    write_json(out / "recipe_summary.json", {"recipe": recipe.name, "model": cfg.name, "seconds": seconds,
                                             "minutes_total": sum(seconds.values()) / 60, "stages": results},
               indent=2)
    return {"checkpoint": final if final.is_file() else None, "stages": results, "seconds": seconds}


def combine_logs(recipe: Recipe, out_dir: PathLike) -> Path | None:
    """Join the stages' ``metrics.csv`` into ``out_dir/metrics.csv`` (steps counted across the
    whole recipe, a ``stage`` column) and draw ``out_dir/training_curves.png``. Returns the
    plot's path, or None when no stage has a log yet or matplotlib is missing."""
    out = Path(out_dir)
    rows: list[dict[str, str]] = []
    offset = 0
    for i, stage in enumerate(recipe.stages):
        path = out / f"{i + 1}_{stage.name}" / "metrics.csv"
        if path.is_file():
            with path.open(newline="") as fh:
                for r in csv.DictReader(fh):
                    r = {k: v for k, v in r.items() if k}
                    r["step"] = str(offset + int(r["step"]))
                    r["stage"] = str(i + 1)
                    rows.append(r)
        offset += stage.train.steps
    if not rows:
        return None
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    write_bytes(out / "metrics.csv", text.getvalue().encode())
    try:
        wanted = ["loss", "iou_first", "iou_last", "clip_iou", "val_mIoU@1", "val_NoC@85"]
        return plot_training_curves(out / "metrics.csv", out / "training_curves.png",
                                    columns=[c for c in wanted if c in columns],
                                    title=f"recipe {recipe.name}: {', '.join(s.name for s in recipe.stages)}")
    except MissingDependencyError:
        return None
