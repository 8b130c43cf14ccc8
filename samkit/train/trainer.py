"""Interactive fine-tuning of SAM 2 on images (and clips): the :class:`Trainer` and its loop.

Each optimizer step sums the gradients of ``accum_steps`` micro-batches. A micro-batch is
``batch_size`` images with up to ``max_objects`` objects each, trained with simulated clicks
(:func:`~samkit.train.step.image_loss`), or, every ``clip_every``-th step when clip data is
given, one clip prompted on its first frame and tracked (:func:`~samkit.train.step.clip_loss`).

What trains is chosen with :attr:`TrainConfig.train_parts` and/or LoRA adapters on the
image encoder's attention (:mod:`samkit.train.lora`). Optimisation: AdamW without weight
decay on biases and norms, linear warm-up then cosine decay, gradient clipping, gradient
accumulation, bf16 autocast on CUDA.

A run folder holds::

    config.json                 the TrainConfig, model config and data description
    metrics.csv                 one row per logged step (always; columns: samkit.train.logging), and a
                                row 0 with the starting weights' validation when val_at_start is set
    tensorboard/                the same scalars, when the tensorboard package is installed
    checkpoints/step_0000100.pt official-layout checkpoints ({"model": state_dict}), adapters merged
    train_state.pt              everything needed to continue exactly (samkit.train.checkpointing.RunState):
                                full weights (adapters unmerged), optimizer, scheduler, RNG states, step,
                                data order
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
import dataclasses
import math
import os
import random
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from samkit.checkpoint import config_to_dict, save_checkpoint
from samkit.data import ClipSample, Sample
from samkit.errors import ConfigError, MissingDependencyError
from samkit.evaluate.interactive import evaluate_interactive
from samkit.evaluate.plots import plot_training_curves, read_metrics_csv
from samkit.fileio import atomic_write, write_json
from samkit.imageio import preprocess
from samkit.model.sam2 import SAM2Model
from samkit.train.checkpointing import (STATE_FILE, RunState, capture_rng, check_resumable, load_run_state,
                                        prune_checkpoints, restore_rng, save_run_state)
from samkit.train.config import TrainConfig, parameter_part
from samkit.train.logging import RunLog, metric_columns, validation_keys
from samkit.train.lora import apply_lora, lora_state_dict, merged_copy
from samkit.train.step import ImageBatch, StepTerms, average_terms, clip_loss, image_loss, resize_masks

__all__ = ["Trainer", "init_distributed"]

PathLike = Union[str, os.PathLike]

# metrics.csv columns drawn in training_curves.png, when the run has them
_PLOTTED = ("loss", "iou_first", "iou_last", "clip_iou", "grad_norm", "lr", "val_mIoU@1", "val_NoC@85")


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


# --------------------------------------------------------------------------- the trainer


class Trainer:
    """Fine-tunes a :class:`SAM2Model` with simulated interactive prompts.

    ``Trainer(model, train_data, config, out_dir=..., val_data=...)``, then :meth:`train`.
    ``train_data`` / ``val_data`` are sequences of :class:`~samkit.data.Sample`
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
        clip_data: clips for the clip steps (needs ``config.clip_every >= 1``), or None.
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
        self.start_validation: dict[str, Any] = {}  # the starting weights' validation (val_at_start)
        self._last_saved_step: Optional[int] = None

        resumed = False
        if resume:
            resumed = self._load_state()
        if not resumed:
            random.seed(self._rank_seed(3))
            np.random.seed(self._rank_seed(4) % (2 ** 32))
            torch.manual_seed(self._rank_seed(5))
        self._log: Optional[RunLog] = None
        if self.out_dir is not None and self.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._write_run_config()
            columns = metric_columns(clips=self.clip_data is not None, validation=self.val_data is not None)
            self._log = RunLog(self.out_dir, columns, resume_step=self.step if resumed else None,
                               tensorboard=self.cfg.tensorboard)

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
        """bf16 autocast when ``precision`` asks for it (``auto``: on CUDA with bf16), else nothing."""
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

    def _prepare(self, samples: list[Sample]) -> Optional[ImageBatch]:
        """Images to model input, objects drawn and resized; None when no image has an object."""
        s = self.image_size
        images, targets, ignores, image_of = [], [], [], []
        any_ignore = False
        for sample in samples:
            flip = self.cfg.hflip > 0 and float(torch.rand((), generator=self.data_generator)) < self.cfg.hflip
            image = preprocess(sample.image, s, self.device)  # 1 x 3 x S x S
            masks = torch.from_numpy(np.ascontiguousarray(sample.masks))  # K x H x W
            ignore = None if sample.ignore is None else torch.from_numpy(np.ascontiguousarray(sample.ignore))
            ign_s = resize_masks(ignore[None], (s, s))[0] if ignore is not None else None
            resized: dict[int, torch.Tensor] = {}

            def area(k: int) -> int:
                resized[k] = resize_masks(masks[k:k + 1], (s, s))[0]
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
        return ImageBatch(images=torch.cat(images), targets=torch.cat(targets).to(self.device),
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
        :func:`~samkit.train.step.clip_loss`: ``(frames T x 3 x S x S, targets O x T x S x S)``,
        or None when no object is big enough on the first frame. The clip is a function of
        (seed, rank, step, micro), so resumed runs draw the same clips."""
        assert self.clip_data is not None
        s = self.image_size
        pick = np.random.default_rng([self.cfg.seed, 11, self.rank, self.step, micro])
        clip = self.clip_data[int(pick.integers(0, len(self.clip_data)))]
        frames = torch.cat([preprocess(f, s, self.device) for f in clip.frames])  # T x 3 x S x S
        k, t = clip.masks.shape[:2]
        masks = resize_masks(torch.from_numpy(np.ascontiguousarray(clip.masks)).flatten(0, 1), (s, s))
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
    def _image_terms(self, batch: ImageBatch) -> StepTerms:
        """:func:`~samkit.train.step.image_loss` of ``batch`` with this run's settings and generators."""
        cfg = self.cfg
        return image_loss(self.model, batch, clicks=cfg.clicks, weights=cfg.loss_weights,
                          data_generator=self.data_generator, prompt_generator=self.prompt_generator,
                          loss_resolution=cfg.loss_resolution, iou_kind=cfg.iou_loss,
                          supervise_all_iou=cfg.supervise_all_iou, encoder_trains=self.encoder_trains,
                          autocast=self._autocast)

    def _clip_terms(self, frames: torch.Tensor, targets: torch.Tensor) -> StepTerms:
        """:func:`~samkit.train.step.clip_loss` of one clip with this run's settings."""
        cfg = self.cfg
        return clip_loss(self.model, frames, targets, clicks=cfg.clicks, weights=cfg.loss_weights,
                         generator=self.prompt_generator, encoder_trains=self.encoder_trains,
                         supervise_all_iou=cfg.supervise_all_iou, iou_kind=cfg.iou_loss, autocast=self._autocast)

    def _next_terms(self, micro: int, clip_step: bool) -> Optional[StepTerms]:
        """The loss of the ``micro``-th micro-batch of this step (None when it has no object)."""
        if clip_step:
            clip = self._next_clip(micro)
            return None if clip is None else self._clip_terms(*clip)
        batch = self._prepare([self.train_data[i] for i in self._next_indices()])
        return None if batch is None else self._image_terms(batch)

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
        """One optimizer step (``accum_steps`` micro-batches). Returns its ``metrics.csv`` row:
        the :class:`~samkit.train.step.StepTerms` averaged over the micro-batches (the loss is
        the sum over the decoder runs; ``objects`` a sum), the gradient norm (before
        clipping), the base learning rate and the seconds taken; with clip data also
        ``clip_iou``, the tracked frames' mean IoU on clip steps and NaN on image steps."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        clip_step = self._clip_step_now()
        done: list[StepTerms] = []
        for micro in range(self.cfg.accum_steps):
            terms = self._next_terms(micro, clip_step)
            if terms is None:
                continue
            (terms.loss / self.cfg.accum_steps).backward()
            done.append(terms)
        if self.world_size > 1:
            self._reduce_gradients()
        params = [p for _, p in self.trainable]
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm)) if done or self.world_size > 1 else 0.0
        lr = self.cfg.lr * self._lr_factor(self.step)  # the base lr (parts may scale it)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        out = average_terms(done)
        out.update(grad_norm=grad_norm, lr=lr, sec_per_step=time.perf_counter() - t0)
        if self.clip_data is not None:
            # on clip steps iou_last is the tracked frames' mean IoU; clip_iou repeats it (NaN-free
            # mean over the micro-batches) and is NaN on image steps
            out["clip_iou"] = _nanmean([t.iou_last for t in done] if clip_step else [])
        return out

    # ------------------------------------------------------------------ validation
    def validate(self) -> dict[str, Any]:
        """Interactive evaluation on the validation data (first process only; the others
        wait). Returns :func:`~samkit.evaluate.interactive.evaluate_interactive`'s dict, or
        ``{}`` without validation data or on the other processes."""
        if self.val_data is None or len(self.val_data) == 0:
            return {}
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

        With ``config.val_at_start`` and validation data, a run that starts at step 0 first
        validates the starting weights and logs them as step 0, so that ``metrics.csv`` and
        ``training_curves.png`` show the change from them.

        Returns:
            ``{"step", "loss", "iou_last", "validation", "start_validation", "checkpoint",
            "run_dir"}``: the last logged averages, the last validation dict, the starting
            weights' validation (``{}`` without ``val_at_start`` or when resumed), and the final
            checkpoint path (None without a run folder).
        """
        cfg = self.cfg
        if cfg.val_at_start and self.val_data is not None and self.step == 0:
            res = self.validate()
            self.start_validation = {k: res[k] for k in validation_keys() if k in res}
            if self._log is not None:
                self._log.write(0, {f"val_{k}": v for k, v in self.start_validation.items()})
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train", unit="step",
                   disable=not (self.progress and self.rank == 0), dynamic_ncols=True, file=sys.stderr)
        window: list[dict[str, float]] = []  # the rows of the steps since the last logged one
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
                    row.update({f"val_{k}": res[k] for k in validation_keys() if k in res})
                if row and self._log is not None:
                    self._log.write(self.step, row)
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
                "validation": {k: self.last_validation[k] for k in validation_keys() if k in self.last_validation},
                "start_validation": dict(self.start_validation), "checkpoint": final, "run_dir": self.out_dir}

    def _write_run_config(self) -> None:
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
        rng = capture_rng(self.data_generator, self.prompt_generator)
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
            state = RunState(
                step=self.step, epoch=self.epoch, position=self.position,
                order=torch.from_numpy(self._order.astype(np.int64)), world_size=self.world_size,
                model={k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(), rng=gathered,
                config=self.cfg, checkpoint=str(path.relative_to(self.out_dir)))
            save_run_state(self.out_dir / STATE_FILE, state)
            prune_checkpoints(ckpt_dir, self.cfg.keep_checkpoints)
        if self.world_size > 1:
            dist.barrier()
        self._last_saved_step = self.step
        return path

    def _load_state(self) -> bool:
        """Continue from ``out_dir/train_state.pt``; False (a new run) when there is none."""
        path = self.out_dir / STATE_FILE
        if not path.is_file():
            if self.rank == 0:
                print(f"no training state in {self.out_dir}; starting a new run", file=sys.stderr)
            return False
        state = load_run_state(path)
        check_resumable(state, self.cfg, world_size=self.world_size, path=path, warn=self.rank == 0)
        missing, unexpected = self.model.load_state_dict(state.model, strict=False)
        if missing or unexpected:
            raise ConfigError(f"{path} does not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]} "
                              "(resume with the same model and LoRA settings)")
        self.optimizer.load_state_dict(state.optimizer)
        self.scheduler.load_state_dict(state.scheduler)
        self.step = state.step
        self.epoch = state.epoch
        self.position = state.position
        self._order = state.order.numpy().astype(np.int64)
        restore_rng(state.rng[self.rank], self.data_generator, self.prompt_generator)
        self._last_saved_step = self.step
        if self.rank == 0:
            print(f"resumed from {path} at step {self.step}", file=sys.stderr)
        return True

    def _finish(self) -> Optional[Path]:
        """Final checkpoint, adapters file and training-curve plot (first process)."""
        if self.rank != 0 or self.out_dir is None:
            return None
        final = save_checkpoint(self.export_model(), self.out_dir / "final.pt")
        if self.lora_layers:
            payload = {"lora": lora_state_dict(self.model), "config": dataclasses.asdict(self.cfg.lora)}
            atomic_write(self.out_dir / "lora_adapters.pt", lambda f: torch.save(payload, f))
        if self._log is not None:
            self._log.close()
        try:
            present = [c for c in _PLOTTED if c in read_metrics_csv(self.out_dir / "metrics.csv")]
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
