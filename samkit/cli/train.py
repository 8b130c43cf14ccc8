"""``samkit train`` and ``samkit make-synthetic-labpics``: fine-tuning, and a small dataset to try it on.

``samkit train`` runs on one process, or data-parallel under
``torchrun --nproc_per_node N -m samkit.cli train ...`` (gloo on CPU, NCCL on CUDA).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist

from samkit.builder import build_model, load_model
from samkit.checkpoint import config_from_dict
from samkit.cli.common import add_data_args, dataset_from_args, show_default
from samkit.cli.outputs import check_out_dir
from samkit.data import write_synthetic_labpics
from samkit.errors import ConfigError
from samkit.model.sam2 import SAM2Model
from samkit.train import TRAIN_PARTS, LoRAConfig, TrainConfig, Trainer, init_distributed
from samkit.train.recipes import RECIPES, FineTuning, Recipe, describe_recipes, get_recipe, run_recipe

__all__ = ["register"]


def _parts(text: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [p for p in parts if p not in TRAIN_PARTS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown part(s) {bad}; choose from {','.join(TRAIN_PARTS)}")
    return parts


def _part_lr(text: str) -> tuple[tuple[str, float], ...]:
    out = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        part, _, factor = item.partition("=")
        try:
            value = float(factor)
        except ValueError:
            value = -1.0
        if part not in TRAIN_PARTS or value <= 0:
            raise argparse.ArgumentTypeError(
                f"--part-lr takes PART=FACTOR[,PART=FACTOR] with PART one of {','.join(TRAIN_PARTS)} and FACTOR > 0, "
                f"got {text!r}")
        out.append((part, value))
    return tuple(out)


def _loss_weights(text: str) -> tuple[float, float, float, float]:
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 4 or min(vals) < 0:
        raise argparse.ArgumentTypeError(f"--loss-weights takes FOCAL,DICE,IOU,OBJECT (4 numbers >= 0), got {text!r}")
    return vals  # type: ignore[return-value]


def start_model(args: argparse.Namespace, device: str, seed: int) -> tuple[SAM2Model, str]:
    """The model training starts from (in train mode), and the line saying which weights it has:
    --config JSON (random weights, or --checkpoint's loaded into it), --checkpoint, or --model
    (with --pretrained: Meta's weights; default: samkit_nano with its shipped weights)."""
    torch.manual_seed(seed)  # random initialisation is part of the run's seed
    if args.config:
        if args.pretrained:
            raise ConfigError("--pretrained names the weights of a registered --model; with --config give "
                              "--checkpoint FILE to load trained weights into the custom model")
        try:
            cfg = config_from_dict(json.loads(Path(args.config).read_text()))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"cannot read the model config {args.config!r}: {exc}") from None
        model = build_model(cfg, args.checkpoint, device=device, eval_mode=False)
        what = (f"with the weights of {args.checkpoint}" if args.checkpoint else
                "with random weights (a new model; --checkpoint FILE loads trained weights into it)")
        return model.train(), f"{cfg.name} (config {args.config}) {what}"
    model, description = load_model(args.model, args.checkpoint, device, pretrained=args.pretrained or None)
    return model.train(), description


# --- the training options: each fills one TrainConfig setting; not given, the setting is the recipe's
# (--recipe finetune) or TrainConfig's default (plain samkit train). Option dest -> how to read the
# setting from a TrainConfig (the defaults --help shows).
_SETTINGS: dict[str, Callable[[TrainConfig], Any]] = {
    "steps": lambda c: c.steps,
    "batch_size": lambda c: c.batch_size,
    "accum": lambda c: c.accum_steps,
    "max_objects": lambda c: c.max_objects,
    "lr": lambda c: c.lr,
    "part_lr": lambda c: c.part_lr_scale,
    "weight_decay": lambda c: c.weight_decay,
    "warmup": lambda c: c.warmup_steps,
    "grad_clip": lambda c: c.grad_clip,
    "train_parts": lambda c: c.train_parts,
    "correction_rounds": lambda c: c.clicks.num_correction_rounds,
    "rounds_without_click": lambda c: c.clicks.num_rounds_without_click,
    "prob_box": lambda c: c.clicks.prob_box,
    "loss_weights": lambda c: (c.loss_weights.focal, c.loss_weights.dice, c.loss_weights.iou,
                               c.loss_weights.object_score),
    "loss_resolution": lambda c: c.loss_resolution,
    "val_every": lambda c: c.val_every,
    "val_samples": lambda c: c.val_samples,
    "val_clicks": lambda c: c.val_max_clicks,
    "val_at_start": lambda c: c.val_at_start,
    "ckpt_every": lambda c: c.ckpt_every,
    "keep_checkpoints": lambda c: c.keep_checkpoints,
    "log_every": lambda c: c.log_every,
    "seed": lambda c: c.seed,
}
# option dest -> the TrainConfig field it sets directly (the others: clicks, loss_weights, train_parts)
_FIELDS = {"steps": "steps", "batch_size": "batch_size", "accum": "accum_steps", "max_objects": "max_objects",
           "lr": "lr", "part_lr": "part_lr_scale", "weight_decay": "weight_decay", "warmup": "warmup_steps",
           "grad_clip": "grad_clip", "loss_resolution": "loss_resolution", "val_every": "val_every",
           "val_samples": "val_samples", "val_clicks": "val_max_clicks", "val_at_start": "val_at_start",
           "ckpt_every": "ckpt_every", "keep_checkpoints": "keep_checkpoints", "log_every": "log_every",
           "seed": "seed"}
_CLICK_FIELDS = {"correction_rounds": "num_correction_rounds", "rounds_without_click": "num_rounds_without_click",
                 "prob_box": "prob_box"}
_FINETUNING = {name: r for name, r in RECIPES.items() if isinstance(r, FineTuning)}


def _setting_help(text: str, dest: str) -> str:
    """``text`` and the setting's default: TrainConfig's, and each fine-tuning recipe's where it differs."""
    def shown(value: Any) -> str:
        if isinstance(value, bool):
            return "on" if value else "off"
        return show_default(value) if value not in ((), None) else "none"

    plain = _SETTINGS[dest](TrainConfig())
    extra = "".join(f"; --recipe {name}: {shown(_SETTINGS[dest](r.train))}" for name, r in _FINETUNING.items()
                    if _SETTINGS[dest](r.train) != plain)
    return f"{text} (default: {shown(plain)}{extra})".replace("%", "%%")


def given_settings(args: argparse.Namespace) -> list[str]:
    """The training options given on the command line, as their flags (``--steps``, ...)."""
    names = list(_SETTINGS) + ["lora_rank", "lora_alpha"]
    return ["--" + n.replace("_", "-") for n in names if getattr(args, n, None) is not None]


def train_config(args: argparse.Namespace, base: TrainConfig) -> TrainConfig:
    """``base`` (a fine-tuning recipe's settings, or ``TrainConfig()``) with every training option
    given on the command line in place of the setting it names."""
    def given(dest: str) -> bool:
        return getattr(args, dest) is not None

    fields: dict[str, Any] = {field: getattr(args, dest) for dest, field in _FIELDS.items() if given(dest)}
    fields["clicks"] = dataclasses.replace(base.clicks, **{f: getattr(args, d) for d, f in _CLICK_FIELDS.items()
                                                           if given(d)})
    if given("loss_weights"):
        focal, dice, iou, obj = args.loss_weights
        fields["loss_weights"] = dataclasses.replace(base.loss_weights, focal=focal, dice=dice, iou=iou,
                                                     object_score=obj)
    if args.lora_rank:
        fields["lora"] = LoRAConfig(rank=args.lora_rank, alpha=args.lora_alpha or 2.0 * args.lora_rank)
    elif given("lora_rank"):  # --lora-rank 0: no adapters, whatever the recipe says
        fields["lora"] = None
    if given("train_parts"):
        fields["train_parts"] = args.train_parts
    elif args.lora_rank:  # adapters alone unless --train-parts says more
        fields["train_parts"] = ()
    fields["precision"] = args.precision
    fields["tensorboard"] = None if args.tensorboard == "auto" else args.tensorboard == "on"
    return dataclasses.replace(base, **fields)


def _metrics_line(before: dict[str, Any], after: dict[str, Any]) -> str:
    """``mIoU@1 0.619 -> 0.700, ...`` (or the after values alone without ``before``)."""
    cells = []
    for k in ("mIoU@1", "mIoU@5", "NoC@85", "NoC@90"):
        v = after.get(k)
        if v is None or not math.isfinite(float(v)):
            continue
        b = before.get(k)
        cells.append(f"{k} {b:.3f} -> {v:.3f}" if b is not None and math.isfinite(float(b)) else f"{k} {v:.3f}")
    return ", ".join(cells)


def cmd_recipe(args: argparse.Namespace, recipe: Recipe) -> int:
    """``samkit train --recipe NAME --out DIR``: a registered whole run (model, data and stages of its
    own), resumable."""
    extra = [flag for flag, value in (("--format", args.format), ("--data", args.data), ("--model", args.model),
                                      ("--checkpoint", args.checkpoint), ("--config", args.config),
                                      ("--pretrained", args.pretrained)) if value]
    extra += given_settings(args)
    if extra:
        others = ", ".join(n for n, r in sorted(RECIPES.items()) if isinstance(r, FineTuning))
        raise ConfigError(f"--recipe {recipe.name} is a whole run with its own model, data and settings; it takes only "
                          f"--out, --device and --no-progress, not {', '.join(extra)}. To train on your data with a "
                          f"recipe's settings: --recipe {others or 'NAME'} --format FORMAT --data DIR")
    check_out_dir(args.out)
    print(f"recipe {recipe.name}: {recipe.description}; {len(recipe.stages)} stages -> {args.out}")
    result = run_recipe(recipe, args.out, device=args.device, progress=not args.no_progress)
    for name, sec in result["seconds"].items():
        val = (result["stages"][name] or {}).get("validation") or {}
        extra = ", ".join(f"{k} {val[k]:.3f}" for k in ("mIoU@1", "NoC@85") if k in val)
        print(f"stage {name}: {sec / 60:.1f} min" + (f"; validation {extra}" if extra else ""))
    print(f"wrote {result['checkpoint']}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Interactive fine-tuning on one process or under torchrun (see the module docstring)."""
    recipe = get_recipe(args.recipe) if args.recipe else None
    if isinstance(recipe, Recipe):
        return cmd_recipe(args, recipe)
    if not args.format:
        raise ConfigError("samkit train needs --format (and --data) to train on your data, or --recipe NAME: "
                          + describe_recipes())
    cfg = train_config(args, recipe.train if recipe is not None else TrainConfig())
    check_out_dir(args.out)  # before the data, the model and the training

    device = args.device
    if device.startswith("cuda") and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    rank, world = init_distributed(device)
    try:
        split = args.split or "Train"
        train_data = dataset_from_args(args, split)
        val_data = None
        if args.val_data or args.val_split:
            val_data = dataset_from_args(args, args.val_split or "Test", data=args.val_data or args.data,
                                         synthetic_count=max(1, args.val_samples or 20))
        model, description = start_model(args, device, cfg.seed)
        if rank == 0:
            print(f"model: {description}")
            given = given_settings(args)
            if recipe is not None:
                print(f"settings: recipe {recipe.name} ({recipe.description})"
                      + (f"; replaced from the command line: {', '.join(given)}" if given else ""))
            else:
                print("settings: samkit train's defaults (SAM's, meant for official weights)"
                      + (f" and {', '.join(given)}" if given else "")
                      + f"; --recipe {next(iter(_FINETUNING), 'NAME')} fine-tunes the shipped model with a measured gain")
            print(f"data: {len(train_data)} training images" +
                  (f", {len(val_data)} validation images" if val_data is not None else "") +
                  (f"; {world} processes" if world > 1 else ""))
            if cfg.val_at_start and val_data is None:
                print("no validation data (--val-split or --val-data): the starting weights are not measured")
        trainer = Trainer(model, train_data, cfg, out_dir=args.out, val_data=val_data, resume=args.resume,
                          progress=not args.no_progress)
        if rank == 0:
            n_train = sum(p.numel() for _, p in trainer.trainable)
            lora = cfg.lora
            print(f"training {n_train:,} parameters ({', '.join(cfg.train_parts) or 'none'}"
                  f"{'; LoRA rank %d on %d layers' % (lora.rank, len(trainer.lora_layers)) if lora else ''})"
                  f" for {cfg.steps} steps")
        result = trainer.train()
        if rank == 0:
            if result.get("loss") is not None:
                print(f"step {result['step']}: loss {result['loss']:.4f}, IoU after the last round "
                      f"{result['iou_last']:.3f}")
            val, start = result.get("validation") or {}, result.get("start_validation") or {}
            if val:
                print(f"validation{' (step 0 -> %d)' % result['step'] if start else ''}: {_metrics_line(start, val)}")
            print(f"wrote {result['checkpoint']} (and {Path(args.out) / 'metrics.csv'})")
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    return 0


def cmd_make_synthetic_labpics(args: argparse.Namespace) -> int:
    """Write generated scenes in the LabPics layout (Train and Test splits)."""
    check_out_dir(args.out, "OUT")
    root = write_synthetic_labpics(args.out, args.train, args.test, size=(args.height, args.width), seed=args.seed)
    print(f"wrote {args.train} training and {args.test} test images to {root}/Simple "
          f"(read with --format labpics --data {root})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``train`` and ``make-synthetic-labpics``."""
    p = sub.add_parser("train", help="fine-tune a model with simulated interactive clicks",
                       description="Interactive fine-tuning (SAM's click simulation: first prompt, correction "
                                   "clicks from the error region, rounds without clicks). Writes checkpoints in "
                                   "the official layout, metrics.csv and training_curves.png to --out; --resume "
                                   "continues a run exactly. The settings are SAM's own unless --recipe finetune "
                                   "(settings that fine-tune the shipped model on a new domain with a measured "
                                   "gain); the options below replace single settings.")
    add_data_args(p, format_required=False)
    p.add_argument("--recipe", metavar="NAME",
                   help="a registered recipe. A whole run (nano: retrains samkit_nano from random weights on "
                        "generated data; only --out, --device and --no-progress apply; rerun to resume) or settings "
                        "for your data (finetune: with --format and --data, fine-tunes the model named by "
                        "--model/--checkpoint, default the shipped samkit_nano, with the settings shown as "
                        "'--recipe finetune: ...' below; any option given replaces its setting). Without it, the "
                        "settings are SAM's own: the first default shown for each option")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--model", help="registered model to start from: its shipped trained weights when samkit ships "
                                   "some (samkit_nano), with --pretrained Meta's official weights, else random "
                                   "weights (see `samkit models`); default, with no --checkpoint either: samkit_nano "
                                   "with its shipped weights. The first line printed says which weights it has")
    g.add_argument("--checkpoint", help="checkpoint to start from (.pt or .safetensors): its weights, the variant "
                                        "detected from the file")
    p.add_argument("--pretrained", action="store_true",
                   help="with --model: start from Meta's official weights, downloaded once into the cache (see "
                        "`samkit download`)")
    p.add_argument("--config", help="model config JSON (ModelConfig fields, as checkpoints record them) for a "
                                    "custom model with random weights; with --checkpoint its weights are loaded "
                                    "into it")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    p.add_argument("--out", required=True, help="run folder (checkpoints, metrics.csv, training_curves.png, "
                                                "train_state.pt)")
    p.add_argument("--steps", type=int, help=_setting_help("optimizer steps", "steps"))
    p.add_argument("--batch-size", type=int, help=_setting_help("images per micro-batch and process", "batch_size"))
    p.add_argument("--accum", type=int, help=_setting_help("micro-batches per optimizer step", "accum"))
    p.add_argument("--max-objects", type=int, help=_setting_help("objects drawn per image", "max_objects"))
    p.add_argument("--lr", type=float, help=_setting_help("peak learning rate (AdamW; linear warm-up, then cosine "
                                                          "decay)", "lr"))
    p.add_argument("--part-lr", type=_part_lr, metavar="PART=FACTOR,...",
                   help=_setting_help("scale the lr of some parts, e.g. image_encoder=0.1 (the encoder learns 10x "
                                      "slower)", "part_lr"))
    p.add_argument("--weight-decay", type=float, help=_setting_help("AdamW weight decay (not on biases and norms)",
                                                                    "weight_decay"))
    p.add_argument("--warmup", type=int, help=_setting_help("linear warm-up steps", "warmup"))
    p.add_argument("--grad-clip", type=float, help=_setting_help("max gradient norm (0: off)", "grad_clip"))
    p.add_argument("--train-parts", type=_parts,
                   help=_setting_help("comma-separated subset of image_encoder,prompt_encoder,mask_decoder,memory "
                                      "(none with --lora-rank unless given)", "train_parts"))
    p.add_argument("--lora-rank", type=int, help="LoRA adapters of this rank on the image encoder's attention "
                                                 "(default: 0, none)")
    p.add_argument("--lora-alpha", type=float, default=None, help="LoRA scale numerator (default 2 * rank)")
    p.add_argument("--correction-rounds", type=int, help=_setting_help("rounds adding a correction click",
                                                                       "correction_rounds"))
    p.add_argument("--rounds-without-click", type=int, help=_setting_help("rounds feeding the mask back only",
                                                                          "rounds_without_click"))
    p.add_argument("--prob-box", type=float, help=_setting_help("probability that the first prompt is a noisy box "
                                                                "rather than a click", "prob_box"))
    p.add_argument("--loss-weights", type=_loss_weights, metavar="F,D,I,O",
                   help=_setting_help("weights of the focal, dice, IoU and object-score losses",
                                      "loss_weights"))
    p.add_argument("--loss-resolution", choices=("image", "low"),
                   help=_setting_help("compare masks at the model input size (image) or at the decoder's 4x smaller "
                                      "output (low)", "loss_resolution"))
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"),
                   help="auto: bf16 autocast on CUDA, fp32 on CPU")
    p.add_argument("--val-split", help="validation split of the same data (e.g. Test; default: no validation)")
    p.add_argument("--val-data", help="validation dataset path (same format; sa1b: another annotations folder, "
                                      "images from the same --images), instead of a split")
    p.add_argument("--val-every", type=int, help=_setting_help("steps between validations (0: at the end only)",
                                                               "val_every"))
    p.add_argument("--val-samples", type=int, help=_setting_help("validation images used, the first N (0: all)",
                                                                 "val_samples"))
    p.add_argument("--val-clicks", type=int, help=_setting_help("clicks per object in validation", "val_clicks"))
    p.add_argument("--val-at-start", action=argparse.BooleanOptionalAction,
                   help=_setting_help("also validate the starting weights, as step 0 of metrics.csv and "
                                      "training_curves.png", "val_at_start"))
    p.add_argument("--ckpt-every", type=int, help=_setting_help("steps between checkpoints (0: at the end only)",
                                                                "ckpt_every"))
    p.add_argument("--keep-checkpoints", type=int, help=_setting_help("step checkpoints kept (0: all)",
                                                                      "keep_checkpoints"))
    p.add_argument("--log-every", type=int, help=_setting_help("steps between metrics.csv rows", "log_every"))
    p.add_argument("--tensorboard", default="auto", choices=("auto", "on", "off"),
                   help="TensorBoard logs (auto: when the tensorboard package is installed)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its train_state.pt")
    p.add_argument("--seed", type=int, help=_setting_help("seed of the random initialisation, the data order and "
                                                          "the simulated clicks", "seed"))
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("make-synthetic-labpics", help="write a small synthetic dataset in the LabPics layout")
    p.add_argument("out", help="folder to write (read it back with --format labpics --data OUT)")
    p.add_argument("--train", type=int, default=100, help="training images")
    p.add_argument("--test", type=int, default=20, help="test images")
    p.add_argument("--height", type=int, default=192, help="image height in pixels")
    p.add_argument("--width", type=int, default=256, help="image width in pixels")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated scenes")
    p.set_defaults(func=cmd_make_synthetic_labpics)
