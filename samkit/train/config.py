"""The settings of a training run (:class:`TrainConfig`) and the parts of the model it can train.

A :class:`TrainConfig` is plain data: it is validated when built, written to the run folder's
``config.json`` and ``train_state.pt`` with :meth:`TrainConfig.to_dict`, and read back with
:meth:`TrainConfig.from_dict`. A resumed run must have the same settings except the
:data:`RUNTIME_FIELDS` (and ``steps``, which changes the schedule and only warns; see
:func:`samkit.train.checkpointing.check_resumable`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from samkit.errors import ConfigError
from samkit.prompts import ClickConfig
from samkit.train.lora import LoRAConfig
from samkit.train.losses import LossWeights

__all__ = ["TRAIN_PARTS", "RUNTIME_FIELDS", "TrainConfig", "parameter_part"]

TRAIN_PARTS: tuple[str, ...] = ("image_encoder", "prompt_encoder", "mask_decoder", "memory")

# Fields that may differ between a run and its resumption without changing the result.
RUNTIME_FIELDS: tuple[str, ...] = ("log_every", "val_every", "val_samples", "val_max_clicks", "val_at_start",
                                   "ckpt_every", "keep_checkpoints", "tensorboard")


def parameter_part(name: str) -> str:
    """Which of :data:`TRAIN_PARTS` a parameter of :class:`~samkit.model.sam2.SAM2Model` belongs to.

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
    val_at_start: bool = False  # also validate the starting weights: metrics.csv row 0, the curves' first point
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
