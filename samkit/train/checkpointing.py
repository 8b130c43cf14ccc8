"""The training state of a run folder (``train_state.pt``): what it holds, writing, reading, checks.

A :class:`RunState` is everything needed to continue a run exactly: the full weights
(LoRA adapters unmerged), optimizer and scheduler states, every process's RNG states, the
step and the data order, and the :class:`~samkit.train.config.TrainConfig`. It is written
atomically (:func:`samkit.fileio.atomic_write`: a crash leaves the previous file whole) and
read with ``torch.load(weights_only=True)``, so it holds only tensors and plain data.
The official-layout step checkpoints (``checkpoints/step_*.pt``) are written by the trainer
next to it; :func:`prune_checkpoints` keeps the newest of them.
"""

from __future__ import annotations

import json
import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from samkit.errors import ConfigError
from samkit.fileio import atomic_write
from samkit.train.config import RUNTIME_FIELDS, TrainConfig

__all__ = ["STATE_FILE", "STATE_FORMAT", "RunState", "save_run_state", "load_run_state", "capture_rng",
           "restore_rng", "check_resumable", "prune_checkpoints"]

STATE_FILE = "train_state.pt"
STATE_FORMAT = "samkit-train-state/1"


@dataclass
class RunState:
    """What ``train_state.pt`` holds (a dict with these keys plus ``"format"`` on disk)."""

    step: int  # optimizer steps done
    epoch: int  # pass over the data in progress
    position: int  # next index into that pass's order
    order: torch.Tensor  # N int64, that pass's sample order
    world_size: int  # processes that trained
    model: dict[str, torch.Tensor]  # the full state dict, on the CPU (adapters unmerged)
    optimizer: dict[str, Any]  # optimizer.state_dict()
    scheduler: dict[str, Any]  # scheduler.state_dict()
    rng: list[dict[str, Any]]  # capture_rng() of every process, by rank
    config: TrainConfig  # the run's settings
    checkpoint: str  # the official checkpoint of this step, relative to the run folder

    def to_dict(self) -> dict[str, Any]:
        """The payload written to ``train_state.pt`` (the config as a JSON string)."""
        return {
            "format": STATE_FORMAT,
            "step": self.step,
            "epoch": self.epoch,
            "position": self.position,
            "order": self.order,
            "world_size": self.world_size,
            "model": self.model,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "rng": self.rng,
            "config": json.dumps(self.config.to_dict()),
            "checkpoint": self.checkpoint,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunState":
        """The inverse of :meth:`to_dict`."""
        return cls(step=int(d["step"]), epoch=int(d["epoch"]), position=int(d["position"]), order=d["order"],
                   world_size=int(d["world_size"]), model=d["model"], optimizer=d["optimizer"],
                   scheduler=d["scheduler"], rng=d["rng"], config=TrainConfig.from_dict(json.loads(d["config"])),
                   checkpoint=d["checkpoint"])


def save_run_state(path: Path, state: RunState) -> None:
    """Write ``state`` to ``path`` atomically."""
    payload = state.to_dict()
    atomic_write(path, lambda f: torch.save(payload, f))


def load_run_state(path: Path) -> RunState:
    """Read a ``train_state.pt``; a file that is not one is a :class:`~samkit.errors.ConfigError`."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - reported as a user error
        raise ConfigError(f"cannot read the training state {path}: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
        raise ConfigError(f"{path} is not a samkit training state")
    return RunState.from_dict(payload)


def check_resumable(state: RunState, config: TrainConfig, *, world_size: int, path: Path, warn: bool) -> None:
    """Refuse to resume ``state`` with another number of processes or other settings than
    the :data:`~samkit.train.config.RUNTIME_FIELDS`; a changed ``steps`` only warns (when
    ``warn``), since it changes the learning-rate schedule."""
    if state.world_size != world_size:
        raise ConfigError(f"{path} was written by {state.world_size} process(es); resume with the same "
                          f"number (now {world_size}) to continue exactly")
    now, before = config.to_dict(), state.config.to_dict()
    diff = [k for k in now if k not in RUNTIME_FIELDS and k != "steps" and now[k] != before[k]]
    if diff:
        raise ConfigError("the run was started with other settings; resuming would not continue it: "
                          + ", ".join(f"{k}: {before[k]!r} -> {now[k]!r}" for k in diff))
    if now["steps"] != before["steps"] and warn:
        # stacklevel 3: reported at Trainer.__init__ (check_resumable <- Trainer._load_state <- __init__)
        warnings.warn(f"steps changed from {before['steps']} to {now['steps']}: the learning-rate schedule "
                      "changes with it", stacklevel=3)


def capture_rng(data_generator: torch.Generator, prompt_generator: torch.Generator) -> dict[str, Any]:
    """This process's RNG states: Python's, numpy's, torch's (CPU and, once initialised, CUDA)
    and the trainer's two generators, as tensors and plain data."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
        "data": data_generator.get_state(),
        "prompt": prompt_generator.get_state().cpu(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], data_generator: torch.Generator, prompt_generator: torch.Generator) -> None:
    """Set every RNG back to what :func:`capture_rng` returned."""
    random.setstate(_as_tuples(state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    data_generator.set_state(state["data"])
    prompt_generator.set_state(state["prompt"].to(prompt_generator.get_state().device))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def prune_checkpoints(ckpt_dir: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest ``step_*.pt`` in ``ckpt_dir`` (``keep=0``: keep them all)."""
    if not keep:
        return
    files = sorted(ckpt_dir.glob("step_*.pt"))
    for old in files[:-keep]:
        old.unlink(missing_ok=True)


def _as_tuples(x: Any) -> Any:
    """Lists back to tuples (``random.setstate`` wants the exact nesting it produced)."""
    if isinstance(x, (list, tuple)):
        return tuple(_as_tuples(v) for v in x)
    return x
