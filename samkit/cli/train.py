"""``samkit train`` and ``samkit make-synthetic-labpics``: fine-tuning, and a small dataset to try it on.

``samkit train`` runs on one process, or data-parallel under
``torchrun --nproc_per_node N -m samkit.cli train ...`` (gloo on CPU, NCCL on CUDA).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
import torch.distributed as dist

from samkit.builder import build_model, load_model
from samkit.checkpoint import config_from_dict
from samkit.cli.common import add_data_args, dataset_from_args
from samkit.cli.outputs import check_out_dir
from samkit.data import write_synthetic_labpics
from samkit.errors import ConfigError
from samkit.model.sam2 import SAM2Model
from samkit.prompts import ClickConfig
from samkit.train import TRAIN_PARTS, LoRAConfig, LossWeights, TrainConfig, Trainer, init_distributed
from samkit.train.recipes import get_recipe, run_recipe

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


def _start_model(args: argparse.Namespace, device: str, verbose: bool = True) -> SAM2Model:
    """The model training starts from (in train mode): --config JSON and/or --checkpoint, or --model."""
    torch.manual_seed(args.seed)  # random initialisation is part of the run's seed
    if args.config:
        try:
            cfg = config_from_dict(json.loads(Path(args.config).read_text()))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"cannot read the model config {args.config!r}: {exc}") from None
        model = build_model(cfg, args.checkpoint, device=device, eval_mode=False)
        what = f"from {args.checkpoint}" if args.checkpoint else "with random weights"
        description = f"{cfg.name} ({args.config}) {what}"
    else:
        model, description = load_model(args.model, args.checkpoint, device)
    if verbose:
        print(f"model: {description}")
    return model.train()


def cmd_recipe(args: argparse.Namespace) -> int:
    """``samkit train --recipe NAME --out DIR``: a registered training recipe, resumable."""
    recipe = get_recipe(args.recipe)
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
    if args.recipe:
        return cmd_recipe(args)
    if not args.format:
        raise ConfigError("samkit train needs --format (and --data), or --recipe NAME")
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
        lora = LoRAConfig(rank=args.lora_rank, alpha=args.lora_alpha or 2.0 * args.lora_rank) \
            if args.lora_rank else None
        parts = args.train_parts if args.train_parts is not None else (() if lora else ("mask_decoder", "prompt_encoder"))
        cfg = TrainConfig(
            steps=args.steps, batch_size=args.batch_size, accum_steps=args.accum, max_objects=args.max_objects,
            train_parts=parts, lora=lora, lr=args.lr, part_lr_scale=args.part_lr, weight_decay=args.weight_decay,
            warmup_steps=args.warmup, grad_clip=args.grad_clip,
            clicks=ClickConfig(num_correction_rounds=args.correction_rounds,
                               num_rounds_without_click=args.rounds_without_click, prob_box=args.prob_box),
            loss_weights=LossWeights(*args.loss_weights), loss_resolution=args.loss_resolution,
            precision=args.precision, seed=args.seed, log_every=args.log_every, val_every=args.val_every,
            val_samples=args.val_samples, val_max_clicks=args.val_clicks, ckpt_every=args.ckpt_every,
            keep_checkpoints=args.keep_checkpoints,
            tensorboard=None if args.tensorboard == "auto" else args.tensorboard == "on",
        )
        model = _start_model(args, device, verbose=rank == 0)
        if rank == 0:
            print(f"data: {len(train_data)} training images" +
                  (f", {len(val_data)} validation images" if val_data is not None else "") +
                  (f"; {world} processes" if world > 1 else ""))
        trainer = Trainer(model, train_data, cfg, out_dir=args.out, val_data=val_data, resume=args.resume,
                          progress=not args.no_progress)
        if rank == 0:
            n_train = sum(p.numel() for _, p in trainer.trainable)
            print(f"training {n_train:,} parameters ({', '.join(cfg.train_parts) or 'none'}"
                  f"{'; LoRA rank %d on %d layers' % (lora.rank, len(trainer.lora_layers)) if lora else ''})")
        result = trainer.train()
        if rank == 0:
            if result.get("loss") is not None:
                print(f"step {result['step']}: loss {result['loss']:.4f}, IoU after the last round "
                      f"{result['iou_last']:.3f}")
            val = result.get("validation") or {}
            if val:
                print("validation: " + ", ".join(f"{k} {val[k]:.3f}" for k in ("mIoU@1", "mIoU@5", "NoC@85", "NoC@90")
                                                 if k in val))
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
                                   "the official layout to RUN_DIR; --resume continues a run exactly.")
    add_data_args(p, format_required=False)
    p.add_argument("--recipe", help="run a registered training recipe instead (e.g. nano: samkit's default model "
                                    "from scratch); only --out, --device and --no-progress apply; rerun to resume")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--model", help="registered model to start from: its shipped weights when samkit ships some, "
                                   "else random weights (see `samkit models`); default, with no --checkpoint "
                                   "either: samkit_nano with its shipped weights")
    g.add_argument("--checkpoint", help="checkpoint to start from (.pt or .safetensors)")
    p.add_argument("--config", help="model config JSON (ModelConfig fields, as checkpoints record them) for a "
                                    "custom model; with --checkpoint its weights are loaded into it")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    p.add_argument("--out", required=True, help="run folder (checkpoints, metrics.csv, train_state.pt)")
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=4, help="images per micro-batch and process")
    p.add_argument("--accum", type=int, default=1, help="micro-batches per optimizer step")
    p.add_argument("--max-objects", type=int, default=8, help="objects drawn per image")
    p.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (AdamW; linear warm-up, then cosine "
                                                           "decay)")
    p.add_argument("--part-lr", type=_part_lr, default=(), metavar="PART=FACTOR,...",
                   help="scale the lr of some parts, e.g. image_encoder=0.1 (the encoder learns 10x slower)")
    p.add_argument("--weight-decay", type=float, default=0.1, help="AdamW weight decay (not on biases and norms)")
    p.add_argument("--warmup", type=int, default=50, help="linear warm-up steps")
    p.add_argument("--grad-clip", type=float, default=0.1, help="max gradient norm (0: off)")
    p.add_argument("--train-parts", type=_parts, default=None,
                   help="comma-separated subset of image_encoder,prompt_encoder,mask_decoder,memory "
                        "(default mask_decoder,prompt_encoder; none with --lora-rank)")
    p.add_argument("--lora-rank", type=int, default=0, help="LoRA adapters of this rank on the image encoder's "
                                                            "attention (0: none)")
    p.add_argument("--lora-alpha", type=float, default=None, help="LoRA scale numerator (default 2 * rank)")
    p.add_argument("--correction-rounds", type=int, default=8, help="rounds adding a correction click")
    p.add_argument("--rounds-without-click", type=int, default=2, help="rounds feeding the mask back only")
    p.add_argument("--prob-box", type=float, default=0.5, help="probability that the first prompt is a noisy box "
                                                              "rather than a click")
    p.add_argument("--loss-weights", type=_loss_weights, default=(20.0, 1.0, 1.0, 1.0), metavar="F,D,I,O",
                   help="weights of the focal, dice, IoU and object-score losses (default SAM's 20,1,1,1)")
    p.add_argument("--loss-resolution", default="image", choices=("image", "low"),
                   help="compare masks at the model input size (image) or at the decoder's 4x smaller output (low)")
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"),
                   help="auto: bf16 autocast on CUDA, fp32 on CPU")
    p.add_argument("--val-split", help="validation split of the same data (e.g. Test)")
    p.add_argument("--val-data", help="validation dataset path (same format; sa1b: another annotations folder, "
                                      "images from the same --images), instead of a split")
    p.add_argument("--val-every", type=int, default=0, help="steps between validations (0: at the end)")
    p.add_argument("--val-samples", type=int, default=0, help="validation images used (0: all)")
    p.add_argument("--val-clicks", type=int, default=20, help="clicks per object in validation")
    p.add_argument("--ckpt-every", type=int, default=0, help="steps between checkpoints (0: at the end)")
    p.add_argument("--keep-checkpoints", type=int, default=0, help="step checkpoints kept (0: all)")
    p.add_argument("--log-every", type=int, default=10, help="steps between metrics.csv rows")
    p.add_argument("--tensorboard", default="auto", choices=("auto", "on", "off"),
                   help="TensorBoard logs (auto: when the tensorboard package is installed)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its train_state.pt")
    p.add_argument("--seed", type=int, default=0, help="seed of the random initialisation, the data order and the "
                                                       "simulated clicks")
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
