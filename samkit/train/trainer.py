"""Interactive fine-tuning of SAM 2 on images.

Each optimizer step follows the interactive training algorithm of Segment Anything:

1. every image of the batch goes through the image encoder once;
2. up to ``max_objects`` of its instances are drawn at random;
3. each object gets a first prompt (a click in the mask, or its box with noise,
   :func:`~samkit.train.prompts.sample_first_prompt`), decoded with three candidate masks
   when the prompt is a click (ambiguous) and one when it is a box;
4. then ``num_correction_rounds`` rounds each add one click drawn from the error region of
   the previous prediction (:func:`~samkit.train.prompts.sample_correction_click`) and
   ``num_rounds_without_click`` rounds add none; every round feeds the previous round's
   low-resolution logits (detached) back as the mask prompt (8 + 2 rounds by default: 11
   decoder runs per object);
5. every decoder run is scored with :func:`~samkit.train.losses.sam_loss` (focal : dice :
   IoU : object score = 20 : 1 : 1 : 1; of several candidate masks only the best one's
   mask terms count, while the predicted IoU of every candidate is regressed, as in
   SAM 2.1, so that the IoU head can pick among them at inference), and the losses of all
   runs are summed.

What trains is chosen with :attr:`TrainConfig.train_parts` and/or LoRA adapters on the
image encoder's attention (:mod:`samkit.train.lora`). Optimisation: AdamW without weight
decay on biases and norms, linear warm-up then cosine decay, gradient clipping, gradient
accumulation, bf16 autocast on CUDA.

A run folder holds::

    config.json                 the TrainConfig, model config and data description
    metrics.csv                 one row per logged step (always)
    tensorboard/                the same scalars, when the tensorboard package is installed
    checkpoints/step_0000100.pt official-layout checkpoints ({"model": state_dict}), adapters merged
    train_state.pt              everything needed to continue exactly: full weights (adapters
                                unmerged), optimizer, scheduler, RNG states, step, data order
    final.pt                    the last weights, official layout
    training_curves.png         the metrics.csv columns, when matplotlib is installed

Resuming (``Trainer(..., resume=True)``) reloads ``train_state.pt`` and continues so that
the final weights are bitwise identical to those of an uninterrupted run on the same
machine, device and number of processes (on CUDA, only as far as its kernels are
deterministic).

Several processes (``torchrun --nproc_per_node N``) train data-parallel: each process
takes its own slice of every global batch, and the gradients are averaged over processes
with one all-reduce per optimizer step (what ``DistributedDataParallel`` does, without
requiring the whole step to be a single ``forward`` call); every process therefore applies
the same update and the weights stay identical.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import random
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from samkit.checkpoint import save_checkpoint
from samkit.errors import ConfigError, MissingDependencyError
from samkit.fileio import atomic_write, write_json
from samkit.imageio import preprocess
from samkit.model.sam2 import SAM2Model
from samkit.train.clips import ClipSample, clip_loss
from samkit.train.datasets import Sample
from samkit.train.lora import LoRAConfig, apply_lora, lora_state_dict, merged_copy
from samkit.train.losses import LossWeights, feature_scale_penalty, mask_iou, sam_loss
from samkit.train.prompts import ClickConfig, round_schedule, sample_correction_click, sample_first_prompt

__all__ = [
    "TRAIN_PARTS",
    "TrainConfig",
    "Trainer",
    "parameter_part",
    "init_distributed",
    "STATE_FILE",
]

PathLike = Union[str, os.PathLike]

TRAIN_PARTS: tuple[str, ...] = ("image_encoder", "prompt_encoder", "mask_decoder", "memory")
STATE_FILE = "train_state.pt"
_STATE_FORMAT = "samkit-train-state/1"

# Fields that may differ between a run and its resumption without changing the result.
_RUNTIME_FIELDS = ("log_every", "val_every", "val_samples", "val_max_clicks", "ckpt_every",
                   "keep_checkpoints", "tensorboard")


def parameter_part(name: str) -> str:
    """Which of :data:`TRAIN_PARTS` a parameter of :class:`SAM2Model` belongs to.

    ``image_encoder.*`` -> image_encoder (trunk and neck), ``sam_prompt_encoder.*`` ->
    prompt_encoder, ``sam_mask_decoder.*`` -> mask_decoder (including the projections of
    the high-resolution features), everything else -> memory (memory attention, memory
    encoder, object pointers and the learned embeddings of the video model, among them
    ``no_mem_embed``, which single images also use).
    """
    if name.startswith("image_encoder."):
        return "image_encoder"
    if name.startswith("sam_prompt_encoder."):
        return "prompt_encoder"
    if name.startswith("sam_mask_decoder."):
        return "mask_decoder"
    return "memory"


@dataclass
class TrainConfig:
    """Everything that defines a training run (the model and data come separately)."""

    # --- length and batch
    steps: int = 1000  # optimizer steps
    batch_size: int = 4  # images per micro-batch and process
    accum_steps: int = 1  # micro-batches whose gradients are summed per optimizer step
    max_objects: int = 8  # objects drawn per image
    min_object_area: int = 4  # objects smaller than this (model-input pixels, not ignored) are skipped
    # --- what trains
    train_parts: tuple[str, ...] = ("mask_decoder", "prompt_encoder")  # subset of TRAIN_PARTS
    lora: Optional[LoRAConfig] = None  # adapters on the image encoder's attention, or None
    # --- optimizer and schedule
    lr: float = 1e-4  # peak learning rate
    part_lr_scale: tuple[tuple[str, float], ...] = ()  # (part, factor): that part's peak lr is lr * factor
    weight_decay: float = 0.1  # AdamW decay (not on biases, norms, 1-d parameters)
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 50  # linear warm-up from 0 to lr
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio
    grad_clip: float = 0.1  # max global gradient norm (SAM 2's setting); 0 disables
    # --- interactive simulation and loss
    clicks: ClickConfig = field(default_factory=ClickConfig)
    loss_weights: LossWeights = field(default_factory=LossWeights)
    iou_loss: Literal["mse", "l1"] = "mse"  # regression of the predicted IoU
    supervise_all_iou: bool = True  # regress the IoU of every candidate mask (SAM 2.1), not only the best one's
    loss_resolution: Literal["image", "low"] = "image"  # masks compared at the model input size or at 4h x 4w
    hflip: float = 0.5  # probability of a horizontal flip of each image
    clip_every: int = 0  # with clip data: every n-th optimizer step trains on clips instead of images (0: never)
    # --- precision and randomness
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 autocast on CUDA, fp32 elsewhere
    seed: int = 0
    # --- logging, validation, checkpoints
    log_every: int = 10  # steps between metrics.csv rows
    val_every: int = 0  # steps between interactive validations (0: only at the end, when val data is given)
    val_samples: int = 0  # validation images used (0: all)
    val_max_clicks: int = 20  # clicks per object in validation
    ckpt_every: int = 0  # steps between checkpoints (0: only at the end)
    keep_checkpoints: int = 0  # how many step checkpoints to keep (0: all)
    tensorboard: Optional[bool] = None  # None: when installed; True: required; False: off

    def __post_init__(self) -> None:
        self.train_parts = tuple(self.train_parts)
        self.part_lr_scale = tuple((str(k), float(v)) for k, v in self.part_lr_scale)
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        unknown = [p for p in self.train_parts if p not in TRAIN_PARTS]
        if unknown:
            raise ConfigError(f"unknown train part(s) {unknown}; choose from {list(TRAIN_PARTS)}")
        if not self.train_parts and self.lora is None:
            raise ConfigError("nothing to train: give train_parts and/or a LoRA config")
        for name in ("steps", "batch_size", "accum_steps", "max_objects", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "val_every", "val_samples", "ckpt_every", "keep_checkpoints",
                     "min_object_area", "clip_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}")
        bad = [k for k, v in self.part_lr_scale if k not in TRAIN_PARTS or v <= 0]
        if bad:
            raise ConfigError(f"TrainConfig.part_lr_scale: {bad} must be parts of {list(TRAIN_PARTS)} with a "
                              "factor > 0")
        if self.lr <= 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise ConfigError("TrainConfig: lr must be > 0, weight_decay and grad_clip >= 0")
        if not 0.0 <= self.min_lr_ratio <= 1.0 or not 0.0 <= self.hflip <= 1.0:
            raise ConfigError("TrainConfig: min_lr_ratio and hflip must lie in [0, 1]")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"TrainConfig.precision must be 'auto', 'bf16' or 'fp32', got {self.precision!r}")
        if self.loss_resolution not in ("image", "low"):
            raise ConfigError(f"TrainConfig.loss_resolution must be 'image' or 'low', got {self.loss_resolution!r}")
        if self.iou_loss not in ("mse", "l1"):
            raise ConfigError(f"TrainConfig.iou_loss must be 'mse' or 'l1', got {self.iou_loss!r}")
        if self.val_max_clicks < 1:
            raise ConfigError(f"TrainConfig.val_max_clicks must be >= 1, got {self.val_max_clicks}")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """The inverse of :meth:`to_dict`; unknown keys are an error."""
        d = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown TrainConfig field(s): {unknown}")
        if isinstance(d.get("clicks"), dict):
            d["clicks"] = ClickConfig(**d["clicks"])
        if isinstance(d.get("loss_weights"), dict):
            d["loss_weights"] = LossWeights(**d["loss_weights"])
        if isinstance(d.get("lora"), dict):
            lora = dict(d["lora"])
            lora["targets"] = tuple(lora.get("targets", ("qkv", "proj")))
            d["lora"] = LoRAConfig(**lora)
        return cls(**d)


# --------------------------------------------------------------------------- distributed


def init_distributed(device: str | torch.device = "cpu") -> tuple[int, int]:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    Uses NCCL for CUDA devices and gloo otherwise. Returns ``(rank, world_size)``;
    ``(0, 1)`` when not launched by torchrun (nothing is initialised then).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# --------------------------------------------------------------------------- small helpers


def _resize_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``K x H x W`` bool -> ``K x h x w`` bool (area-weighted resampling, then > 0.5)."""
    if masks.shape[0] == 0:
        return torch.zeros((0, *size), dtype=torch.bool, device=masks.device)
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks.bool()
    x = F.interpolate(masks[:, None].float(), size=size, mode="bilinear", align_corners=False, antialias=True)
    return x[:, 0] > 0.5


@dataclass
class _Batch:
    """One micro-batch ready for the model."""

    images: torch.Tensor  # B x 3 x S x S normalised
    targets: torch.Tensor  # O x S x S bool, the objects of all images
    ignore: Optional[torch.Tensor]  # O x S x S bool, or None
    image_of: torch.Tensor  # O long, index of each object's image


@dataclass
class _StepStats:
    """Sums over the micro-batches of one step (divided by their count when logged)."""

    loss: float = 0.0
    focal: float = 0.0
    dice: float = 0.0
    iou: float = 0.0
    object: float = 0.0
    iou_first: float = 0.0
    iou_last: float = 0.0
    objects: int = 0
    micro: int = 0


class _CsvLog:
    """``metrics.csv``: a header and one row per logged step, appended and flushed."""

    def __init__(self, path: Path, columns: list[str], resume_step: Optional[int]) -> None:
        self.path = path
        self.columns = columns
        rows: list[dict[str, str]] = []
        if resume_step is not None and path.is_file():
            with path.open(newline="") as fh:
                for row in csv.DictReader(fh):
                    try:
                        if int(float(row.get("step") or "nan")) <= resume_step:
                            rows.append(row)
                    except ValueError:
                        continue
        # (Re)write the file whole: the rows of steps after the resumed state are dropped.
        text = _csv_text(columns, rows).encode()
        atomic_write(path, lambda fh: fh.write(text))

    def append(self, row: dict[str, Any]) -> None:
        with self.path.open("a", newline="") as fh:
            fh.write(_csv_text(self.columns, [row], header=False))
            fh.flush()


def _csv_text(columns: list[str], rows: list[dict[str, Any]], header: bool = True) -> str:
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    if header:
        w.writeheader()
    for row in rows:
        w.writerow({k: _fmt(v) for k, v in row.items()})
    return buf.getvalue()


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return str(v)


# --------------------------------------------------------------------------- the trainer


class Trainer:
    """Fine-tunes a :class:`SAM2Model` with simulated interactive prompts.

    ``Trainer(model, train_data, config, out_dir=..., val_data=...)``, then :meth:`train`.
    ``train_data`` / ``val_data`` are sequences of :class:`~samkit.train.datasets.Sample`
    (any samkit dataset). The model is trained in place on its own device; LoRA adapters,
    when configured, are added to it here. Without ``out_dir`` nothing is written.

    Args:
        model: the network to train (random or pretrained weights).
        train_data: the training images.
        config: the run settings.
        out_dir: the run folder (see the module docstring), or None.
        val_data: images for the interactive validation, or None.
        resume: continue from ``out_dir/train_state.pt`` when it exists.
        progress: show a tqdm progress bar (first process only).
    """

    def __init__(self, model: SAM2Model, train_data: Sequence[Sample], config: Optional[TrainConfig] = None,
                 *, out_dir: Optional[PathLike] = None, val_data: Optional[Sequence[Sample]] = None,
                 resume: bool = False, progress: bool = True,
                 clip_data: Optional[Sequence[ClipSample]] = None) -> None:
        self.cfg = config if config is not None else TrainConfig()
        if len(train_data) == 0:
            raise ConfigError("the training dataset is empty")
        if clip_data is not None and (len(clip_data) == 0 or not self.cfg.clip_every):
            raise ConfigError("clip_data needs at least one clip and TrainConfig.clip_every >= 1")
        if self.cfg.clip_every and clip_data is None:
            raise ConfigError("TrainConfig.clip_every is set but no clip_data was given")
        self.clip_data = clip_data
        if resume and out_dir is None:
            raise ConfigError("resume=True needs the run folder (out_dir) to resume from")
        self.model = model
        self.train_data = train_data
        self.val_data = val_data
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress = progress
        self.rank, self.world_size = _dist_info()
        self.device = model.device
        self.image_size = model.image_size

        self.lora_layers: list[str] = apply_lora(model, self.cfg.lora) if self.cfg.lora is not None else []
        self._select_trainable()
        if self.world_size > 1:
            self._broadcast_weights()
        self.optimizer = self._make_optimizer()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.data_generator = torch.Generator().manual_seed(self._rank_seed(1))
        self.prompt_generator = torch.Generator(device=self.device).manual_seed(self._rank_seed(2))

        self.step = 0  # optimizer steps done
        self.epoch = 0  # pass over the data in progress
        self.position = 0  # next index into that pass's order
        self._order = self._epoch_order(0)
        self.last_validation: dict[str, Any] = {}
        self._last_saved_step: Optional[int] = None

        resumed = False
        if resume:
            resumed = self._load_state()
        if not resumed:
            random.seed(self._rank_seed(3))
            np.random.seed(self._rank_seed(4) % (2 ** 32))
            torch.manual_seed(self._rank_seed(5))
        self._csv: Optional[_CsvLog] = None
        self._tb: Any = None
        if self.out_dir is not None and self.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._write_run_config()
            self._csv = _CsvLog(self.out_dir / "metrics.csv", self._csv_columns(),
                                self.step if resumed else None)
            self._tb = self._open_tensorboard(purge_step=self.step if resumed else None)

    # ------------------------------------------------------------------ set-up
    def _rank_seed(self, stream: int) -> int:
        """A distinct seed per purpose and process, from the run's seed."""
        return (self.cfg.seed * 1_000_003 + stream * 7_919 + self.rank * 104_729) % (2 ** 63)

    def _select_trainable(self) -> None:
        parts = set(self.cfg.train_parts)
        for name, p in self.model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("lora_a", "lora_b"):
                p.requires_grad_(True)
            else:
                p.requires_grad_(parameter_part(name) in parts)
        self.trainable: list[tuple[str, nn.Parameter]] = [
            (n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        if not self.trainable:
            raise ConfigError(f"train_parts {list(self.cfg.train_parts)} select no parameter of this model")
        if "memory" in parts and self.rank == 0 and not self.cfg.clip_every:
            warnings.warn("train_parts includes 'memory': single-image training gives the memory modules no "
                          "gradient (they are used on video), so only no_mem_embed changes", stacklevel=3)
        self.encoder_trains = "image_encoder" in parts or bool(self.lora_layers)

    def _broadcast_weights(self) -> None:
        """Every process starts from the first process's weights."""
        with torch.no_grad():
            for t in list(self.model.parameters()) + list(self.model.buffers()):
                dist.broadcast(t.data, src=0)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        """AdamW with one parameter group per (lr factor, weight decay or not): no decay on
        biases, norms and position embeddings; ``part_lr_scale`` scales a part's peak lr."""
        scale = dict(self.cfg.part_lr_scale)
        groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
        for name, p in self.trainable:
            no_decay = p.ndim <= 1 or name.endswith(("pos_embed", "pos_embed_window"))
            groups.setdefault((scale.get(parameter_part(name), 1.0), no_decay), []).append(p)
        return torch.optim.AdamW(
            [{"params": ps, "lr": self.cfg.lr * f, "weight_decay": 0.0 if nd else self.cfg.weight_decay}
             for (f, nd), ps in sorted(groups.items(), key=lambda kv: kv[0])], lr=self.cfg.lr, betas=self.cfg.betas)

    def _lr_factor(self, step: int) -> float:
        """Multiplier of the peak lr at ``step``: linear warm-up, then cosine to ``min_lr_ratio``."""
        cfg = self.cfg
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        span = max(1, cfg.steps - cfg.warmup_steps)
        t = min(1.0, (step - cfg.warmup_steps) / span)
        return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))

    def _rng_fence(self) -> contextlib.AbstractContextManager:
        """Whatever runs inside leaves torch's global RNG as it found it (saving and
        validating must not change what training draws next)."""
        devices = [self.device] if self.device.type == "cuda" else []
        return torch.random.fork_rng(devices=devices)

    def _autocast(self) -> contextlib.AbstractContextManager:
        p = self.cfg.precision
        use_bf16 = p == "bf16" or (p == "auto" and self.device.type == "cuda" and torch.cuda.is_bf16_supported())
        if not use_bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    # ------------------------------------------------------------------ data
    def _epoch_order(self, epoch: int) -> np.ndarray:
        """The shuffled sample order of one pass over the data (the same in every process)."""
        return np.random.default_rng([self.cfg.seed, epoch]).permutation(len(self.train_data))

    def _next_indices(self) -> list[int]:
        """This process's slice of the next global batch (``world_size * batch_size`` samples)."""
        need = self.world_size * self.cfg.batch_size
        out: list[int] = []
        while len(out) < need:
            if self.position >= len(self._order):
                self.epoch += 1
                self.position = 0
                self._order = self._epoch_order(self.epoch)
            take = min(need - len(out), len(self._order) - self.position)
            out.extend(int(i) for i in self._order[self.position:self.position + take])
            self.position += take
        b = self.cfg.batch_size
        return out[self.rank * b:(self.rank + 1) * b]

    def _prepare(self, samples: list[Sample]) -> Optional[_Batch]:
        """Images to model input, objects drawn and resized; None when no image has an object."""
        s = self.image_size
        images, targets, ignores, image_of = [], [], [], []
        any_ignore = False
        for sample in samples:
            flip = self.cfg.hflip > 0 and float(torch.rand((), generator=self.data_generator)) < self.cfg.hflip
            image = preprocess(sample.image, s, self.device)  # 1 x 3 x S x S
            masks = torch.from_numpy(np.ascontiguousarray(sample.masks))
            ignore = None if sample.ignore is None else torch.from_numpy(np.ascontiguousarray(sample.ignore))
            ign_s = _resize_masks(ignore[None], (s, s))[0] if ignore is not None else None
            resized: dict[int, torch.Tensor] = {}

            def area(k: int) -> int:
                resized[k] = _resize_masks(masks[k:k + 1], (s, s))[0]
                return int((resized[k] if ign_s is None else resized[k] & ~ign_s).sum())

            chosen = [resized[k] for k in self._pick_objects(masks.shape[0], area)]
            if not chosen:
                continue
            t = torch.stack(chosen)
            ig = ign_s
            if flip:
                image = image.flip(-1)
                t = t.flip(-1)
                ig = ig.flip(-1) if ig is not None else None
            idx = len(images)
            images.append(image)
            targets.append(t)
            ignores.append(ig)
            any_ignore = any_ignore or ig is not None
            image_of.extend([idx] * t.shape[0])
        if not images:
            return None
        ignore_t = None
        if any_ignore:
            ignore_t = torch.cat([(ig if ig is not None else torch.zeros(s, s, dtype=torch.bool))[None]
                                  .expand(t.shape[0], s, s) for ig, t in zip(ignores, targets)])
            ignore_t = ignore_t.to(self.device)
        return _Batch(images=torch.cat(images), targets=torch.cat(targets).to(self.device),
                      ignore=ignore_t, image_of=torch.tensor(image_of, device=self.device))

    def _pick_objects(self, count: int, area: Callable[[int], int]) -> list[int]:
        """Indices of up to ``max_objects`` of ``count`` objects, drawn in a random order (the
        data generator's), keeping those whose ``area(index)`` (model-input pixels) is at
        least ``min_object_area``."""
        order = torch.randperm(count, generator=self.data_generator).tolist() if count else []
        keep: list[int] = []
        for k in order:
            if area(k) >= max(1, self.cfg.min_object_area):
                keep.append(k)
                if len(keep) == self.cfg.max_objects:
                    break
        return keep

    def _next_clip(self, micro: int) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        """The clip of this process's ``micro``-th micro-batch of the current step, ready for
        :func:`~samkit.train.clips.clip_loss`: ``(frames T x 3 x S x S, targets O x T x S x S)``,
        or None when no object is big enough on the first frame. The clip is a function of
        (seed, rank, step, micro), so resumed runs draw the same clips."""
        assert self.clip_data is not None
        s = self.image_size
        pick = np.random.default_rng([self.cfg.seed, 11, self.rank, self.step, micro])
        clip = self.clip_data[int(pick.integers(0, len(self.clip_data)))]
        frames = torch.cat([preprocess(f, s, self.device) for f in clip.frames])  # T x 3 x S x S
        k, t = clip.masks.shape[:2]
        masks = _resize_masks(torch.from_numpy(np.ascontiguousarray(clip.masks)).flatten(0, 1), (s, s))
        masks = masks.view(k, t, s, s)
        first_area = masks[:, 0].flatten(1).sum(dim=1)
        keep = self._pick_objects(k, lambda i: int(first_area[i]))
        if not keep:
            return None
        targets = masks[keep].to(self.device)
        if self.cfg.hflip > 0 and float(torch.rand((), generator=self.data_generator)) < self.cfg.hflip:
            frames, targets = frames.flip(-1), targets.flip(-1)
        return frames, targets

    def _clip_step_now(self) -> bool:
        """Whether the current optimizer step trains on clips."""
        every = self.cfg.clip_every
        return self.clip_data is not None and every > 0 and (self.step + 1) % every == 0

    # ------------------------------------------------------------------ one step
    def _interactive_loss(self, batch: _Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Image encoder once, then the click rounds on all objects; the summed loss."""
        model, cfg = self.model, self.cfg
        s = self.image_size
        with self._autocast():
            if self.encoder_trains:
                bb = model.forward_image(batch.images)
            else:
                with torch.no_grad():
                    bb = model.forward_image(batch.images)
            embed, high_res = model.image_embeddings(bb)
        embed = embed[batch.image_of]  # O x C x h x w
        high_res = [f[batch.image_of] for f in high_res] if high_res else None
        targets, ignore = batch.targets, batch.ignore  # O x S x S
        n_obj = targets.shape[0]
        low_size = tuple(model.sam_prompt_encoder.mask_input_size)
        if cfg.loss_resolution == "low":
            loss_targets = _resize_masks(targets, low_size)
            loss_ignore = _resize_masks(ignore, low_size) if ignore is not None else None
        else:
            loss_targets, loss_ignore = targets, ignore

        prompt = sample_first_prompt(targets, cfg.clicks, self.prompt_generator)
        points, labels = prompt.points, prompt.labels
        multimask = not prompt.is_box  # a single click is ambiguous; a box is not
        schedule = round_schedule(cfg.clicks, self.data_generator)
        rows = torch.arange(n_obj, device=targets.device)
        prev_low: Optional[torch.Tensor] = None  # O x 1 x 4h x 4w, detached
        prev_full: Optional[torch.Tensor] = None  # O x S x S bool
        total = torch.zeros((), device=targets.device)
        sums = dict(focal=0.0, dice=0.0, iou=0.0, object=0.0)
        first_iou = last_iou = 0.0
        for r in range(1 + len(schedule)):
            if r > 0 and schedule[r - 1]:
                p, lab = sample_correction_click(targets, prev_full, ignore, cfg.clicks, self.prompt_generator)
                points = torch.cat([points, p], dim=1)
                labels = torch.cat([labels, lab], dim=1)
            with self._autocast():
                out = model.decode(embed, high_res, (points, labels), None, prev_low,
                                   multimask_output=multimask and r == 0)
            logits = out.masks.float()  # O x M x 4h x 4w
            full = F.interpolate(logits, size=(s, s), mode="bilinear", align_corners=False)
            terms = sam_loss(full if cfg.loss_resolution == "image" else logits, out.iou.float(),
                             loss_targets[:, None], out.object_score.float(), loss_ignore, cfg.loss_weights,
                             iou_kind=cfg.iou_loss, supervise_all_iou=cfg.supervise_all_iou)
            total = total + terms.total
            for k in sums:
                sums[k] += float(getattr(terms, "object_score" if k == "object" else k).detach())
            best = out.iou.detach().argmax(dim=1) if logits.shape[1] > 1 else torch.zeros_like(rows)
            prev_low = logits[rows, best][:, None].detach()
            prev_full = full[rows, best].detach() > 0
            if r == 0 or r == len(schedule):
                iou = float(mask_iou(full[rows, best][:, None], targets[:, None],
                                     ignore[:, None] if ignore is not None else None).mean())
                if r == 0:
                    first_iou = iou
                last_iou = iou
        if self.encoder_trains and cfg.loss_weights.feature_scale > 0:
            total = total + cfg.loss_weights.feature_scale * feature_scale_penalty(bb.features)
        n_runs = 1 + len(schedule)
        stats = {k: v / n_runs for k, v in sums.items()}
        stats.update(iou_first=first_iou, iou_last=last_iou, objects=float(n_obj))
        return total, stats

    def _reduce_gradients(self) -> None:
        """Average the gradients over the processes (one flat all-reduce)."""
        params = [p for _, p in self.trainable]
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.int64, device=self.device)
        dist.all_reduce(has)
        used = [p for p, h in zip(params, has.tolist()) if h > 0]
        if not used:
            return
        for p in used:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in used])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for p in used:
            n = p.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
            offset += n

    def train_step(self) -> dict[str, float]:
        """One optimizer step (``accum_steps`` micro-batches). Returns its metrics: the loss
        (sum over the decoder runs), the mean terms per run, the mean IoU after the first
        and the last run, the gradient norm (before clipping) and the learning rate."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        acc = _StepStats()
        clip_step = self._clip_step_now()
        clip_ious: list[float] = []
        for micro in range(self.cfg.accum_steps):
            if clip_step:
                clip = self._next_clip(micro)
                if clip is None:
                    continue
                res = clip_loss(self.model, clip[0], clip[1], clicks=self.cfg.clicks, weights=self.cfg.loss_weights,
                                generator=self.prompt_generator, encoder_trains=self.encoder_trains,
                                supervise_all_iou=self.cfg.supervise_all_iou, iou_kind=self.cfg.iou_loss,
                                autocast=self._autocast)
                loss = res.total
                stats = {"focal": res.focal, "dice": res.dice, "iou": res.iou, "object": res.object,
                         "iou_first": res.iou_first, "iou_last": res.iou_tracked, "objects": float(clip[1].shape[0])}
                clip_ious.append(res.iou_tracked)
            else:
                samples = [self.train_data[i] for i in self._next_indices()]
                batch = self._prepare(samples)
                if batch is None:
                    continue
                loss, stats = self._interactive_loss(batch)
            (loss / self.cfg.accum_steps).backward()
            acc.loss += float(loss.detach())
            acc.focal += stats["focal"]
            acc.dice += stats["dice"]
            acc.iou += stats["iou"]
            acc.object += stats["object"]
            acc.iou_first += stats["iou_first"]
            acc.iou_last += stats["iou_last"]
            acc.objects += int(stats["objects"])
            acc.micro += 1
        if self.world_size > 1:
            self._reduce_gradients()
        params = [p for _, p in self.trainable]
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm)) if acc.micro or self.world_size > 1 else 0.0
        lr = self.cfg.lr * self._lr_factor(self.step)  # the base lr (parts may scale it)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        m = max(acc.micro, 1)
        out = {"loss": acc.loss / m, "focal": acc.focal / m, "dice": acc.dice / m, "iou_loss": acc.iou / m,
               "object_loss": acc.object / m, "iou_first": acc.iou_first / m, "iou_last": acc.iou_last / m,
               "objects": float(acc.objects), "grad_norm": grad_norm, "lr": lr,
               "sec_per_step": time.perf_counter() - t0}
        if self.clip_data is not None:
            # clip steps: iou_first is the prompted frame's IoU, iou_last the tracked frames' mean;
            # clip_iou repeats the latter and is NaN on image steps
            good = [v for v in clip_ious if not math.isnan(v)]
            out["clip_iou"] = float(np.mean(good)) if good else float("nan")
        return out

    # ------------------------------------------------------------------ validation
    def validate(self) -> dict[str, Any]:
        """Interactive evaluation on the validation data (first process only; the others
        wait). Returns :func:`~samkit.evaluate.interactive.evaluate_interactive`'s dict, or
        ``{}`` without validation data or on the other processes."""
        if self.val_data is None or len(self.val_data) == 0:
            return {}
        from samkit.evaluate.interactive import evaluate_interactive

        result: dict[str, Any] = {}
        if self.rank == 0:
            data = self.val_data
            if self.cfg.val_samples:
                data = [self.val_data[i] for i in range(min(self.cfg.val_samples, len(self.val_data)))]
            with self._rng_fence(), self._autocast():
                result = evaluate_interactive(self.model, data, max_clicks=self.cfg.val_max_clicks,
                                              progress=False)
            self.last_validation = result
        if self.world_size > 1:
            dist.barrier()
        return result

    # ------------------------------------------------------------------ the loop
    def train(self, *, stop_at: Optional[int] = None) -> dict[str, Any]:
        """Train until ``config.steps`` optimizer steps are done.

        Args:
            stop_at: return right after this step, writing nothing more, as a killed run
                would (for tests of resumption).

        Returns:
            ``{"step", "loss", "iou_last", "validation", "checkpoint", "run_dir"}``: the last
            logged averages, the last validation dict, and the final checkpoint path (None
            without a run folder).
        """
        from tqdm.auto import tqdm

        cfg = self.cfg
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train", unit="step",
                   disable=not (self.progress and self.rank == 0), dynamic_ncols=True, file=sys.stderr)
        window: list[dict[str, float]] = []
        last_row: dict[str, float] = {}
        try:
            while self.step < cfg.steps:
                stats = self.train_step()
                window.append(stats)
                bar.update(1)
                bar.set_postfix(loss=f"{stats['loss']:.3f}", iou=f"{stats['iou_last']:.3f}")
                if stop_at is not None and self.step >= stop_at:
                    return {"step": self.step, "stopped": True}
                row: dict[str, Any] = {}
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    row.update({k: _nanmean([w[k] for w in window]) for k in window[0]})
                    row["lr"] = stats["lr"]
                    last_row = dict(row)
                    window = []
                val_now = self.val_data is not None and (
                    (cfg.val_every and self.step % cfg.val_every == 0) or self.step == cfg.steps)
                if val_now:
                    res = self.validate()
                    row.update({f"val_{k}": res[k] for k in _metric_keys() if k in res})
                if row:
                    self._log(row)
                if self.out_dir is not None and (
                        (cfg.ckpt_every and self.step % cfg.ckpt_every == 0) or self.step == cfg.steps):
                    self.save()
        finally:
            bar.close()
        final = None
        if self.out_dir is not None:
            if self._last_saved_step != self.step:
                self.save()
            final = self._finish()
        return {"step": self.step, "loss": last_row.get("loss"), "iou_last": last_row.get("iou_last"),
                "validation": {k: self.last_validation[k] for k in _metric_keys() if k in self.last_validation},
                "checkpoint": final, "run_dir": self.out_dir}

    def _log(self, row: dict[str, Any]) -> None:
        if self.rank != 0:
            return
        row = {"step": self.step, **row}
        if self._csv is not None:
            self._csv.append(row)
        if self._tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)) and not math.isnan(float(v)):
                    self._tb.add_scalar(k.replace("@", "_at_"), float(v), self.step)
            self._tb.flush()

    def _csv_columns(self) -> list[str]:
        cols = ["step", "loss", "focal", "dice", "iou_loss", "object_loss", "iou_first", "iou_last",
                "objects", "grad_norm", "lr", "sec_per_step"]
        if self.clip_data is not None:
            cols.append("clip_iou")
        if self.val_data is not None:
            cols += [f"val_{k}" for k in _metric_keys()]
        return cols

    def _open_tensorboard(self, purge_step: Optional[int]) -> Any:
        if self.cfg.tensorboard is False:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            if self.cfg.tensorboard:
                raise MissingDependencyError(
                    "TensorBoard logging needs the tensorboard package: pip install 'samkit[tensorboard]' "
                    "(or pip install tensorboard); metrics.csv is written either way") from exc
            return None
        return SummaryWriter(log_dir=str(self.out_dir / "tensorboard"), purge_step=purge_step)

    def _write_run_config(self) -> None:
        from samkit.checkpoint import config_to_dict

        info = {"train": self.cfg.to_dict(), "model": config_to_dict(self.model.cfg),
                "train_samples": len(self.train_data),
                "val_samples": None if self.val_data is None else len(self.val_data),
                "world_size": self.world_size, "lora_layers": self.lora_layers,
                "trainable_parameters": int(sum(p.numel() for _, p in self.trainable))}
        write_json(self.out_dir / "config.json", info, indent=2)

    # ------------------------------------------------------------------ saving and resuming
    def export_model(self) -> SAM2Model:
        """The model as a plain network: adapters merged into a copy (the model itself when
        there are none). Its state-dict keys are those of the base model."""
        return merged_copy(self.model) if self.lora_layers else self.model

    def save(self) -> Optional[Path]:
        """Write an official-layout checkpoint of the current step and the training state
        (first process; the others only contribute their RNG states). Returns the
        checkpoint path (None on the other processes)."""
        rng = self._rng_state()
        if self.world_size > 1:
            gathered: list[Any] = [None] * self.world_size
            dist.all_gather_object(gathered, rng)
        else:
            gathered = [rng]
        path = None
        if self.rank == 0 and self.out_dir is not None:
            ckpt_dir = self.out_dir / "checkpoints"
            with self._rng_fence():
                path = save_checkpoint(self.export_model(), ckpt_dir / f"step_{self.step:07d}.pt")
            state = {
                "format": _STATE_FORMAT,
                "step": self.step,
                "epoch": self.epoch,
                "position": self.position,
                "order": torch.from_numpy(self._order.astype(np.int64)),
                "world_size": self.world_size,
                "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": gathered,
                "config": json.dumps(self.cfg.to_dict()),
                "checkpoint": str(path.relative_to(self.out_dir)),
            }
            atomic_write(self.out_dir / STATE_FILE, lambda f: torch.save(state, f))
            self._prune_checkpoints(ckpt_dir)
        if self.world_size > 1:
            dist.barrier()
        self._last_saved_step = self.step
        return path

    def _prune_checkpoints(self, ckpt_dir: Path) -> None:
        keep = self.cfg.keep_checkpoints
        if not keep:
            return
        files = sorted(ckpt_dir.glob("step_*.pt"))
        for old in files[:-keep]:
            old.unlink(missing_ok=True)

    def _rng_state(self) -> dict[str, Any]:
        np_state = np.random.get_state()
        state = {
            "python": random.getstate(),
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
            "torch": torch.get_rng_state(),
            "data": self.data_generator.get_state(),
            "prompt": self.prompt_generator.get_state().cpu(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def _set_rng_state(self, state: dict[str, Any]) -> None:
        random.setstate(_as_tuples(state["python"]))
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
        torch.set_rng_state(state["torch"])
        self.data_generator.set_state(state["data"])
        self.prompt_generator.set_state(state["prompt"].to(self.prompt_generator.get_state().device))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])

    def _load_state(self) -> bool:
        path = self.out_dir / STATE_FILE
        if not path.is_file():
            if self.rank == 0:
                print(f"no training state in {self.out_dir}; starting a new run", file=sys.stderr)
            return False
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - reported as a user error
            raise ConfigError(f"cannot read the training state {path}: {exc}") from None
        if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
            raise ConfigError(f"{path} is not a samkit training state")
        if state["world_size"] != self.world_size:
            raise ConfigError(f"{path} was written by {state['world_size']} process(es); resume with the same "
                              f"number (now {self.world_size}) to continue exactly")
        self._check_resumed_config(TrainConfig.from_dict(json.loads(state["config"])))
        missing, unexpected = self.model.load_state_dict(state["model"], strict=False)
        if missing or unexpected:
            raise ConfigError(f"{path} does not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]} "
                              "(resume with the same model and LoRA settings)")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self._order = state["order"].numpy().astype(np.int64)
        self._set_rng_state(state["rng"][self.rank])
        self._last_saved_step = self.step
        if self.rank == 0:
            print(f"resumed from {path} at step {self.step}", file=sys.stderr)
        return True

    def _check_resumed_config(self, saved: TrainConfig) -> None:
        now, before = self.cfg.to_dict(), saved.to_dict()
        diff = [k for k in now if k not in _RUNTIME_FIELDS and k != "steps" and now[k] != before[k]]
        if diff:
            raise ConfigError("the run was started with other settings; resuming would not continue it: "
                              + ", ".join(f"{k}: {before[k]!r} -> {now[k]!r}" for k in diff))
        if now["steps"] != before["steps"] and self.rank == 0:
            warnings.warn(f"steps changed from {before['steps']} to {now['steps']}: the learning-rate schedule "
                          "changes with it", stacklevel=3)

    def _finish(self) -> Optional[Path]:
        """Final checkpoint, adapters file and training-curve plot (first process)."""
        if self.rank != 0 or self.out_dir is None:
            return None
        final = save_checkpoint(self.export_model(), self.out_dir / "final.pt")
        if self.lora_layers:
            payload = {"lora": lora_state_dict(self.model), "config": dataclasses.asdict(self.cfg.lora)}
            atomic_write(self.out_dir / "lora_adapters.pt", lambda f: torch.save(payload, f))
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        try:
            from samkit.evaluate.plots import plot_training_curves

            cols = [c for c in ("loss", "iou_first", "iou_last", "clip_iou", "grad_norm", "lr", "val_mIoU@1",
                                  "val_NoC@85")]
            from samkit.evaluate.plots import read_metrics_csv

            present = [c for c in cols if c in read_metrics_csv(self.out_dir / "metrics.csv")]
            if present:
                plot_training_curves(self.out_dir / "metrics.csv", self.out_dir / "training_curves.png",
                                     columns=present, title="samkit training")
        except MissingDependencyError as exc:
            print(f"training_curves.png not written: {exc}", file=sys.stderr)
        return final


def _nanmean(values: list[float]) -> float:
    """Mean of the non-NaN values (NaN when there are none)."""
    good = [v for v in values if not math.isnan(v)]
    return float(np.mean(good)) if good else float("nan")


def _metric_keys() -> list[str]:
    from samkit.evaluate.metrics import MIOU_CLICKS, NOC_THRESHOLDS, NOF_THRESHOLDS

    return ([f"NoC@{round(t * 100)}" for t in NOC_THRESHOLDS] + [f"NoF@{round(t * 100)}" for t in NOF_THRESHOLDS]
            + [f"mIoU@{k}" for k in MIOU_CLICKS])


def _as_tuples(x: Any) -> Any:
    """Lists back to tuples (``random.setstate`` wants the exact nesting it produced)."""
    if isinstance(x, (list, tuple)):
        return tuple(_as_tuples(v) for v in x)
    return x
