"""Loading and saving checkpoints.

Formats: the official ``.pt`` (``{"model": state_dict}``, read with ``weights_only=True``
so that no code in a file can run) and ``.safetensors`` (read and written here without
the safetensors package). samkit's own files also record their :class:`ModelConfig`, so
custom models rebuild without naming a config. Writes are atomic (temp file + rename).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import torch

from samkit.configs import REGISTRY, ModelConfig, list_models
from samkit.fileio import atomic_write
from samkit.errors import CheckpointError, CheckpointNotFoundError, UnsafeCheckpointError
from samkit.model.hiera import HieraConfig
from samkit.model.memory import MemoryConfig
from samkit.model.neck import NeckConfig

CONFIG_KEY = "samkit_config"

# --------------------------------------------------------------------------- safetensors
_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
_NAMES = {v: k for k, v in _DTYPES.items()}


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    data = path.read_bytes()
    if len(data) < 8:
        raise CheckpointError(f"{path} is truncated (only {len(data)} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise CheckpointError(f"{path} is truncated or not a safetensors file (header says {n} bytes)")
    try:
        header = json.loads(data[8:8 + n])
    except ValueError as exc:
        raise CheckpointError(f"{path} is not a valid safetensors file: bad header ({exc})") from None
    meta = header.pop("__metadata__", {}) or {}
    body = memoryview(data)[8 + n:]
    out: dict[str, torch.Tensor] = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        if end > len(body):
            raise CheckpointError(f"{path} is truncated: tensor {name!r} runs past the end of the file")
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise CheckpointError(f"{path}: unsupported dtype {info['dtype']} for {name!r}")
        t = torch.frombuffer(bytearray(body[start:end]), dtype=dtype) if end > start else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info["shape"])
    return out, meta


def _write_safetensors(tensors: dict[str, torch.Tensor], path: Path, meta: dict[str, str]) -> None:
    header: dict[str, Any] = {"__metadata__": meta}
    blobs, offset = [], 0
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        raw = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * ((-len(head)) % 8)
    atomic_write(path, lambda f: (f.write(struct.pack("<Q", len(head))), f.write(head), [f.write(b) for b in blobs]))


# --------------------------------------------------------------------------- configs as data
def config_to_dict(cfg: ModelConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def config_from_dict(d: dict[str, Any]) -> ModelConfig:
    d = dict(d)
    tup = lambda x: tuple(tuple(v) if isinstance(v, list) else v for v in x) if isinstance(x, (list, tuple)) else x
    hiera = HieraConfig(**{k: tup(v) for k, v in d.pop("hiera").items()})
    neck = NeckConfig(**{k: tup(v) for k, v in d.pop("neck").items()})
    memory = MemoryConfig(**{k: tup(v) for k, v in d.pop("memory").items()})
    return ModelConfig(hiera=hiera, neck=neck, memory=memory, **d)


# --------------------------------------------------------------------------- reading
def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], ModelConfig | None]:
    """Read a checkpoint file: ``(state_dict, config or None)``. Never runs code from the file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    with open(path, "rb") as f:
        head = f.read(16)
    cfg = None
    if path.suffix == ".safetensors" or (len(head) >= 9 and head[8:9] == b"{"):
        sd, meta = _read_safetensors(path)
        if CONFIG_KEY in meta:
            cfg = config_from_dict(json.loads(meta[CONFIG_KEY]))
        return sd, cfg
    if not head:
        raise CheckpointError(f"{path} is empty, not a checkpoint")
    is_zip = head[:2] == b"PK"
    is_pickle = head[:1] == b"\x80"
    if not (is_zip or is_pickle):
        raise CheckpointError(f"{path} is not a checkpoint: expected a PyTorch .pt file or a .safetensors file")
    if is_zip and not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is truncated or corrupt (the .pt archive is incomplete); download or save it again")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(
            f"refused to load {path}: it contains Python objects other than tensors and plain data "
            f"({str(exc).splitlines()[0][:200]}). Loading it could run code; nothing was run. "
            "Re-save the state dict with torch.save({'model': model.state_dict()}, path).") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is truncated or corrupt and cannot be read ({str(exc).splitlines()[0][:200]})") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        sd = obj["model"]
        if isinstance(obj.get(CONFIG_KEY), dict):
            cfg = config_from_dict(obj[CONFIG_KEY])
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        sd = obj
    else:
        raise CheckpointError(f"{path} holds no model weights: expected {{'model': state_dict}} or a state dict")
    return sd, cfg


# --------------------------------------------------------------------------- variant detection
def _state_signature(sd: dict[str, torch.Tensor]) -> tuple:
    """What identifies a variant from its keys and shapes."""
    pos = sd["image_encoder.trunk.pos_embed"]
    widths = []
    i = 0
    while f"image_encoder.trunk.blocks.{i}.norm2.weight" in sd:
        widths.append(sd[f"image_encoder.trunk.blocks.{i}.norm2.weight"].shape[0])
        i += 1
    stages = _runs(widths)
    v21 = "no_obj_embed_spatial" in sd
    return int(pos.shape[1]), tuple(pos.shape[2:]), stages, v21


def _config_signature(cfg: ModelConfig) -> tuple:
    h = cfg.hiera
    return h.embed_dim, tuple(h.window_pos_embed_bkg_spatial_size), tuple(h.stages), cfg.no_obj_embed_spatial


def _runs(values: list[int]) -> tuple[int, ...]:
    runs: list[int] = []
    for j, v in enumerate(values):
        if j and v == values[j - 1]:
            runs[-1] += 1
        else:
            runs.append(1)
    return tuple(runs)


def _looks_like_sam1(sd: dict[str, torch.Tensor]) -> bool:
    return any(k.startswith(("mask_decoder.", "prompt_encoder.")) for k in sd) or \
        "image_encoder.patch_embed.proj.weight" in sd and "image_encoder.trunk.pos_embed" not in sd


def detect_variant(sd: dict[str, torch.Tensor]) -> str | None:
    """The registered name whose keys and shapes match ``sd``, or None."""
    if _looks_like_sam1(sd):
        raise CheckpointError("this is a SAM 1 (segment-anything) checkpoint; samkit runs SAM 2 and SAM 2.1 "
                              "checkpoints (e.g. sam2.1_hiera_tiny.pt)")
    if "image_encoder.trunk.pos_embed" not in sd:
        raise CheckpointError("this file holds weights, but not of a SAM 2 model "
                              "(no image_encoder.trunk.* keys)")
    sig = _state_signature(sd)
    for name in list_models():
        if _config_signature(REGISTRY[name]()) == sig:
            return name
    return None


def check_matches(sd: dict[str, torch.Tensor], cfg: ModelConfig, path: str | os.PathLike) -> None:
    """Raise a clear error when ``sd`` was saved from another variant than ``cfg``."""
    if _looks_like_sam1(sd):
        detect_variant(sd)
    if "image_encoder.trunk.pos_embed" in sd and _state_signature(sd) != _config_signature(cfg):
        found = detect_variant(sd)
        what = f"a {found} checkpoint" if found else "a checkpoint of another (custom) variant"
        raise CheckpointError(f"{path} is {what}, but the model {cfg.name!r} was requested; "
                              f"pass name={found!r} or leave the name out to detect it" if found else
                              f"{path} is {what}, not {cfg.name!r}")


def load_into(model: torch.nn.Module, sd: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """``load_state_dict(strict=True)`` with an error that lists what did not match."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    bad_shape = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in own
                 if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or bad_shape:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", bad_shape)):
            if items:
                parts.append(f"{len(items)} {label} (e.g. {', '.join(items[:3])})")
        raise CheckpointError(f"{path} does not fit the model: " + "; ".join(parts))
    model.load_state_dict(sd, strict=True)


# --------------------------------------------------------------------------- writing
def save_checkpoint(model: torch.nn.Module, path: str | os.PathLike, *, extra: dict[str, Any] | None = None) -> Path:
    """Save ``model`` atomically: ``.safetensors`` by extension, otherwise the official
    ``{"model": state_dict}`` ``.pt`` layout (which the official code loads), plus our config."""
    path = Path(path)
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    cfg = getattr(model, "cfg", None)
    if path.suffix == ".safetensors":
        meta = {CONFIG_KEY: json.dumps(config_to_dict(cfg))} if cfg is not None else {}
        _write_safetensors(sd, path, meta)
        return path
    payload: dict[str, Any] = {"model": sd}
    if cfg is not None:
        payload[CONFIG_KEY] = config_to_dict(cfg)
    if extra:
        payload.update(extra)
    atomic_write(path, lambda f: torch.save(payload, f))
    return path
