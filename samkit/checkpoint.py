"""Loading and saving checkpoints.

Formats: the official ``.pt`` (``{"model": state_dict}``, read with ``weights_only=True``
so that no code in a file can run) and ``.safetensors`` (read and written here without
the safetensors package). samkit's own files also record their :class:`ModelConfig`, so
custom models rebuild without naming a config. Writes are atomic (temp file + rename).

Reading checks everything it reads: a damaged, truncated or foreign file (a pickle that is
not a checkpoint, a safetensors header that does not describe its bytes, a saved config with
unknown fields) is a :class:`CheckpointError` naming the file and what was wrong, never an
error from torch, pickle or json.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import pickle
import re
import stat
import struct
import zipfile
from pathlib import Path
from typing import Any

import torch

from samkit.configs import REGISTRY, ModelConfig, list_models
from samkit.fileio import atomic_write
from samkit.errors import CheckpointError, CheckpointNotFoundError, ConfigError, UnsafeCheckpointError

CONFIG_KEY = "samkit_config"

# --------------------------------------------------------------------------- safetensors
_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
_NAMES = {v: k for k, v in _DTYPES.items()}


_DAMAGED = "the file is damaged or is not a SAM 2 / samkit checkpoint: download or save it again"
_AGAIN = "download or save it again"


def _a(word: str) -> str:
    """``word`` with its indefinite article: "an int", "a str"."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def _short(reason: str, limit: int = 160) -> str:
    """The first sentence of a library's error text, at most ``limit`` characters."""
    first = reason.split(". ")[0]
    return first if len(first) <= limit else first[: limit - 3] + "..."


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file, every header entry checked against the bytes."""
    data = path.read_bytes()
    if not data:
        raise CheckpointError(f"{path} is empty (0 bytes), not a checkpoint; {_AGAIN}")
    if len(data) < 8:
        raise CheckpointError(f"{path} is truncated (only {len(data)} bytes); {_DAMAGED}")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise CheckpointError(f"{path} is truncated or not a safetensors file (header says {n} bytes); {_DAMAGED}")
    try:
        header = json.loads(data[8:8 + n])
    except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8; absurdly deep nesting
        raise CheckpointError(f"{path} is not a valid safetensors file: bad header ({exc}); {_DAMAGED}") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is not a valid safetensors file: its header is a JSON "
                              f"{type(header).__name__}, not an object; {_DAMAGED}")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise CheckpointError(f"{path}: the safetensors metadata is not a table of strings; {_DAMAGED}")
    body = memoryview(data)[8 + n:]
    out: dict[str, torch.Tensor] = {}
    for name, info in header.items():
        dtype, shape, (start, end) = _check_entry(path, name, info, len(body))
        t = torch.frombuffer(bytearray(body[start:end]), dtype=dtype) if end > start else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(shape)
    return out, meta


def _check_entry(path: Path, name: str, info: Any, body_len: int) -> tuple[torch.dtype, list[int], tuple[int, int]]:
    """``(dtype, shape, (start, end))`` of one safetensors header entry, or a CheckpointError."""
    where = f"{path}: tensor {name!r}"
    if not isinstance(info, dict):
        raise CheckpointError(f"{where} is described by {_a('JSON ' + type(info).__name__)}, not an object; "
                              f"{_DAMAGED}")
    missing = [k for k in ("dtype", "shape", "data_offsets") if k not in info]
    if missing:
        raise CheckpointError(f"{where} has no {' or '.join(missing)} in the header; {_DAMAGED}")
    dtype = _DTYPES.get(info["dtype"]) if isinstance(info["dtype"], str) else None
    if dtype is None:
        raise CheckpointError(f"{where} has unsupported dtype {info['dtype']!r} (samkit reads "
                              f"{', '.join(_DTYPES)})")
    shape, offsets = info["shape"], info["data_offsets"]
    if not isinstance(shape, list) or not all(_is_count(v) for v in shape):
        raise CheckpointError(f"{where} has an invalid shape {shape!r} (expected a list of sizes >= 0); {_DAMAGED}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(v) for v in offsets)
            and offsets[0] <= offsets[1]):
        raise CheckpointError(f"{where} has invalid data_offsets {offsets!r} (expected [start, end] with "
                              f"0 <= start <= end); {_DAMAGED}")
    start, end = offsets
    if end > body_len:
        raise CheckpointError(f"{path} is truncated: tensor {name!r} runs past the end of the file; {_DAMAGED}")
    itemsize = torch.empty(0, dtype=dtype).element_size()
    if (end - start) % itemsize:
        raise CheckpointError(f"{where} has {end - start} bytes, not a whole number of {info['dtype']} "
                              f"values ({itemsize} bytes each); {_DAMAGED}")
    if (end - start) != math.prod(shape) * itemsize:
        raise CheckpointError(f"{where} has shape {shape} ({math.prod(shape)} values of {info['dtype']}) but "
                              f"{end - start} bytes of data; {_DAMAGED}")
    return dtype, shape, (start, end)


def _is_count(value: Any) -> bool:
    """A JSON number that can be a size or an offset: an int >= 0 (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


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
    """The :class:`ModelConfig` that :func:`config_to_dict` wrote (lists become tuples).

    Fields left out take their defaults (files from older samkit versions keep loading), except
    that a top-level field left out of a registered variant's config (a file saved before the
    field existed, e.g. ``automask_pred_iou_thresh``) takes that variant's value; unknown fields
    and values of the wrong type are refused.

    Raises:
        ConfigError: not a config dict, a required field missing, an unknown field, or a value
            of the wrong type; the message names the field.
    """
    cfg = _dataclass_from_dict(ModelConfig, d, "config")
    missing = [f.name for f in dataclasses.fields(ModelConfig) if f.name not in d]
    registered = REGISTRY.get(cfg.name)
    if missing and registered is not None:
        ref = registered()
        cfg = dataclasses.replace(cfg, **{name: getattr(ref, name) for name in missing})
    return cfg


def _dataclass_from_dict(cls: type, d: Any, where: str) -> Any:
    """``cls(**d)`` with nested config dataclasses, each value checked against its field."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where} must be a JSON object / dict, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields), key=str)
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), list(fields), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{where} has unknown field(s) {', '.join(map(repr, unknown))} for {cls.__name__}{hint}: "
                          "remove them, or use the samkit version that wrote the config")
    required = [name for name, f in fields.items() if name not in d
                and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if required:
        raise ConfigError(f"{where} is missing the required field(s) {', '.join(required)} of {cls.__name__}")
    values: dict[str, Any] = {}
    for name, value in d.items():
        f = fields[name]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            values[name] = _dataclass_from_dict(type(default), value, f"{where}.{name}")
        else:
            values[name] = _checked_value(value, default, f"{where}.{name}")
    return cls(**values)


def _checked_value(value: Any, default: Any, where: str) -> Any:
    """``value`` if it has the kind of ``default`` (JSON lists become tuples), else ConfigError."""
    number = (int, float)
    if isinstance(default, tuple):
        ok = isinstance(value, (list, tuple)) and all(
            isinstance(v, number) and not isinstance(v, bool) for v in value)
        value = tuple(value) if ok else value
    elif isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, number):
        ok = isinstance(value, int if isinstance(default, int) else number) and not isinstance(value, bool)
    elif isinstance(default, str) or default is dataclasses.MISSING:  # only ``name`` has no default
        ok = isinstance(value, str)
    else:  # pragma: no cover - every config field is one of the kinds above
        ok = True
    if not ok:
        kind = type(default).__name__ if default is not dataclasses.MISSING else "str"
        raise ConfigError(f"{where} must be {_a(kind)}, got {value!r}")
    return value


# --------------------------------------------------------------------------- reading
def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], ModelConfig | None]:
    """Read a checkpoint file: ``(state_dict, config or None)``. Never runs code from the file.

    Raises:
        CheckpointNotFoundError: no such file.
        UnsafeCheckpointError: a pickle that would build Python objects (run code); refused.
        CheckpointError: anything else that makes the file unusable (permission denied, a
            folder, empty, truncated, damaged, not a checkpoint, a state dict of non-tensors,
            an invalid saved config); the message names the file and the problem.
    """
    path = Path(path)
    try:
        if stat.S_ISDIR(os.stat(path).st_mode):
            raise IsADirectoryError(path)
        with open(path, "rb") as f:
            head = f.read(16)
    except (FileNotFoundError, NotADirectoryError):
        raise CheckpointNotFoundError(f"checkpoint not found: {path}") from None
    except PermissionError:
        raise CheckpointError(f"cannot read checkpoint {path}: permission denied (the file, or a folder on "
                              "its path, is not readable by this user); ask its owner for access or copy "
                              "the file somewhere you can read") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path} is a folder, not a checkpoint file") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    cfg = None
    if path.suffix == ".safetensors" or (len(head) >= 9 and head[8:9] == b"{"):
        sd, meta = _read_safetensors(path)
        if CONFIG_KEY in meta:
            try:
                saved = json.loads(meta[CONFIG_KEY])
            except (ValueError, RecursionError) as exc:
                raise CheckpointError(f"{path}: its saved model config ({CONFIG_KEY!r} metadata) is not valid "
                                      f"JSON ({exc}); {_DAMAGED}") from None
            cfg = _saved_config(saved, path)
        return _checked_state_dict(sd, path), cfg
    if not head:
        raise CheckpointError(f"{path} is empty (0 bytes), not a checkpoint; {_AGAIN}")
    is_zip = head[:2] == b"PK"
    is_pickle = head[:1] == b"\x80"
    if not (is_zip or is_pickle):
        raise CheckpointError(f"{path} is not a checkpoint: expected a PyTorch .pt file or a .safetensors file")
    if is_zip:
        _check_torch_zip(path)
    obj = _torch_load(path)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        sd = obj["model"]
        if CONFIG_KEY in obj:
            cfg = _saved_config(obj[CONFIG_KEY], path)
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        sd = obj
    else:
        raise CheckpointError(f"{path} holds no model weights: expected {{'model': state_dict}} or a state dict, "
                              f"found {_describe(obj)}; is it a SAM 2 / samkit checkpoint?")
    return _checked_state_dict(sd, path), cfg


def _check_torch_zip(path: Path) -> None:
    """Refuse a zip file that is incomplete or is not a PyTorch archive (no ``data.pkl``)."""
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is truncated or corrupt (the .pt archive is incomplete); download or save it again")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CheckpointError(f"{path} is a damaged zip archive ({exc}); {_DAMAGED}") from None
    if not any(name.endswith("/data.pkl") for name in names):
        shown = ", ".join(names[:3]) + (" ..." if len(names) > 3 else "") if names else "nothing"
        raise CheckpointError(f"{path} is a zip archive but not a PyTorch checkpoint (no data.pkl; it holds "
                              f"{shown}); is it a SAM 2 / samkit checkpoint?")


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with every failure turned into a CheckpointError."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _torch_reason(exc)
        if _is_unsafe(reason):
            raise UnsafeCheckpointError(
                f"refused to load {path}: it contains Python objects other than tensors and plain data "
                f"({_short(reason)}). Loading it could run code; nothing was run. "
                "Re-save the state dict with torch.save({'model': model.state_dict()}, path).") from None
        # e.g. an unknown opcode: garbage, or a pickle protocol the safe loader does not read
        raise CheckpointError(f"{path} is damaged or not a PyTorch checkpoint: its pickle data cannot be read "
                              f"safely ({_short(reason)}); nothing was run; {_AGAIN}") from None
    except Exception as exc:  # noqa: BLE001 - whatever torch.load trips over is a property of the file
        raise CheckpointError(f"{path} is truncated or corrupt and cannot be read ({_short(_torch_reason(exc))}); "
                              f"{_AGAIN}") from None


# torch's weights_only refusals that mean "this pickle would build objects / call functions";
# any other unpickling failure (an unknown opcode, a string too long) is a damaged file.
_UNSAFE_WORDS = ("GLOBAL", "reduce for", "allowlist", "must be imported", "new object", "BUILD")
_TORCH_BOILERPLATE = ("Weights only load failed", "Please file an issue", "Check the documentation",
                      "(1) ", "(2) ")
_GLOBAL_NAME = re.compile(r"GLOBAL (\S+)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _is_unsafe(reason: str) -> bool:
    """Whether torch's refusal ``reason`` is about code (not about damage)."""
    if not any(word in reason for word in _UNSAFE_WORDS):
        return False
    name = _GLOBAL_NAME.search(reason)
    # a name cut short ("collectio.") is a pickle truncated in the middle of a GLOBAL opcode
    return name is None or not name.group(1).endswith(".")


def _torch_reason(exc: BaseException) -> str:
    """The part of a torch.load error that says what was wrong (not torch's advice)."""
    lines = [_ANSI.sub("", line).strip() for line in str(exc).splitlines()]
    lines = [line for line in lines if line]
    for i, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            rest = line.split("WeightsUnpickler error:", 1)[1].strip()
            if rest:
                return rest
            if i + 1 < len(lines):
                return lines[i + 1]
    useful = [line for line in lines if not line.startswith(_TORCH_BOILERPLATE)]
    if useful:
        return useful[0]
    return lines[0] if lines else type(exc).__name__


def _describe(obj: Any) -> str:
    """What a checkpoint held, for error messages."""
    if isinstance(obj, dict):
        keys = ", ".join(repr(k) for k in list(obj)[:5])
        return f"a dict with keys {keys}" + (" ..." if len(obj) > 5 else "") if obj else "an empty dict"
    return _a(type(obj).__name__)


def _saved_config(saved: Any, path: Path) -> ModelConfig:
    """The ModelConfig saved in a checkpoint, or a CheckpointError naming the file."""
    try:
        return config_from_dict(saved)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: its saved model config ({CONFIG_KEY!r}) is invalid: {exc}. The file is "
                              "damaged or was written by another samkit version: upgrade samkit, or download "
                              "or save it again") from None


def _checked_state_dict(sd: Any, path: Path) -> dict[str, torch.Tensor]:
    """``sd`` if it maps names to tensors, else a CheckpointError naming the first bad entry."""
    if not sd:
        raise CheckpointError(f"{path} holds an empty state dict (no weights); {_DAMAGED}")
    for key, value in sd.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{path}: the state dict has a key {key!r} that is not a parameter name; {_DAMAGED}")
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: the state dict entry {key!r} is {_a(type(value).__name__)}, not a "
                                  f"tensor; {_DAMAGED}")
    return sd


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
