"""``build_model``: a model from a name, a config, a checkpoint, or all of them; ``load_model``:
the same for the front ends, with a line saying which weights the model has."""

from __future__ import annotations

import os
import shutil
import warnings

import torch

from samkit.checkpoint import check_matches, detect_variant, load_into, read_checkpoint
from samkit.configs import ModelConfig, get_config
from samkit.errors import CheckpointError, CheckpointNotFoundError, ConfigError
from samkit.model.sam2 import SAM2Model
from samkit.model.precision import parse_dtype, set_compute_dtype
from samkit.weights import BUNDLED, bundled_checkpoint, download_checkpoint, is_official, resolve_name

# The model used when none is named: samkit's own small model, whose trained weights ship with the
# package (samkit/weights/samkit_nano.safetensors). A build of the package without that file gives
# random weights and a warning.
DEFAULT_MODEL = "samkit_nano"


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a :class:`torch.device`, once this machine is known to have it.

    Raises:
        ConfigError: a string torch does not parse (``"gpu9"``), or a device this machine lacks
            (``"cuda"`` without a usable GPU, ``"cuda:3"`` with two GPUs, ``"mps"`` off Apple
            silicon). Without this check torch fails later, deep inside, with a RuntimeError.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ConfigError(f"unknown device {str(device)!r} ({exc}); use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no GPU or driver found"
            raise ConfigError(f"device {str(device)!r}: CUDA is not available on this machine ({why}); "
                              "use device cpu (--device cpu)")
        if dev.index is not None and dev.index >= count:
            raise ConfigError(f"device {str(device)!r}: this machine has {count} CUDA device(s), "
                              f"cuda:0 to cuda:{count - 1}")
        return dev
    if dev.type == "mps":
        available = torch.backends.mps.is_available()
    else:  # xpu and other backends torch knows, each with its is_available()
        is_available = getattr(getattr(torch, dev.type, None), "is_available", None)
        available = bool(is_available()) if callable(is_available) else False
    if not available:
        raise ConfigError(f"device {str(device)!r} is not available on this machine; use cpu (--device cpu) "
                          "or cuda")
    return dev


def cpp_compiler() -> str | None:
    """The C++ compiler torch.compile's CPU backend would use (``$CXX``, else ``c++``, ``g++``
    or ``clang++`` on the PATH), or None when there is none."""
    for name in filter(None, (os.environ.get("CXX"), "c++", "g++", "clang++")):
        if shutil.which(name):
            return name
    return None


def compile_decoder(model: SAM2Model) -> bool:
    """Compile the per-prompt part of the mask decoder's inference path (``torch.compile``;
    see :meth:`samkit.model.mask_decoder.MaskDecoder.compile_fast_path`). The work happens at the
    first predictions (about a minute on a small CPU, again for new prompt-batch shapes);
    masks equal the eager ones to float32 rounding.

    Returns False, after one warning, where it cannot work: on the CPU without a C++ compiler,
    or with a torch lacking ``torch.compile``. A compilation that fails later falls back to
    eager with a warning as well. Either way the model keeps working, eagerly.
    """
    if not hasattr(torch, "compile"):
        warnings.warn("compile=True needs torch >= 2.0 (torch.compile); the decoder runs eagerly", RuntimeWarning,
                      stacklevel=2)
        return False
    if model.device.type == "cpu" and cpp_compiler() is None:
        warnings.warn("compile=True: torch.compile needs a C++ compiler on the CPU (g++ or clang++; none found on the "
                      "PATH, nor $CXX); the decoder runs eagerly (the same masks, slower). Install one, e.g. "
                      "`apt-get install g++`", RuntimeWarning, stacklevel=2)
        return False
    model.sam_mask_decoder.compile_fast_path()
    return True


def build_model(name: str | ModelConfig | None = None, checkpoint: str | os.PathLike | None = None,
                device: str | torch.device = "cpu", *, eval_mode: bool = True,
                pretrained: bool | None = None, compile: bool = False,
                compute_dtype: str | torch.dtype | None = None) -> SAM2Model:
    """Build a SAM 2 model.

    * ``build_model()``: the default model (``samkit_nano``) with the weights that ship with samkit
      (random weights and a warning in a build of the package without the weights file).
    * ``build_model(checkpoint="sam2.1_hiera_tiny.pt")``: variant detected from the file (the
      official SAM 2 / 2.1 checkpoints, ``.pt`` or ``.safetensors``).
    * ``build_model("sam2.1_hiera_tiny", "file.pt")``: checked to match, then loaded strictly.
    * ``build_model("sam2.1_hiera_t")``: random weights of a registered variant (no SAM 2
      weights ship with samkit; ``build_model("samkit_nano")`` loads its shipped weights).
    * ``build_model("sam2.1_hiera_tiny", pretrained=True)``: Meta's official weights, downloaded
      once into the cache (:func:`samkit.weights.download_checkpoint`); Hugging Face ids such as
      ``"facebook/sam2.1-hiera-tiny"`` name the same variants.
    * ``build_model(ModelConfig(...))``: a custom configuration, random weights.

    Args:
        pretrained: for a registered name (or none) without ``checkpoint``: load the weights
            that ship with samkit for it. ``None``: when there are some (never the network);
            ``True``: required: shipped ones, else the official checkpoint from the cache or
            downloaded (an error if there is neither); ``False``: random weights.
        compile: compile the mask decoder's inference path (:func:`compile_decoder`): opt-in,
            faster for many prompts per image (the automatic mask generator) after a slow first
            call; without a C++ compiler a warning and the eager path.
        compute_dtype: ``torch.bfloat16`` (or ``"bf16"``): the bf16 fast mode
            (:func:`samkit.model.precision.set_compute_dtype`: the image encoder, memory
            attention and memory encoder in bfloat16, the rest float32); None / float32: exact
            float32 (default). Every predictor, the generator, the video predictor and the studio
            run the model in the mode it was built in.
    """
    dtype = parse_dtype(compute_dtype)  # a bad dtype fails before any file is read
    device = check_device(device)
    cfg: ModelConfig | None = None
    if isinstance(name, ModelConfig):
        cfg = name
        if pretrained:
            raise ConfigError("pretrained=True needs a registered model name, not a ModelConfig")
    elif name is not None or checkpoint is None:
        key = resolve_name(name if name is not None else DEFAULT_MODEL)
        cfg = get_config(key)
        if checkpoint is None and pretrained is not False:
            checkpoint = bundled_checkpoint(key)
            if checkpoint is None and pretrained and is_official(key):
                checkpoint = download_checkpoint(name if name is not None else key)
            if checkpoint is None and name is None and pretrained is None:
                warnings.warn(f"no trained weights ship with samkit for the default model {key!r} yet: it has "
                              "random weights. Pass checkpoint=PATH (e.g. an official SAM 2.1 checkpoint) for "
                              "real masks", stacklevel=2)
            if checkpoint is None and pretrained:
                ships = ", ".join(sorted(BUNDLED)) or "none"
                raise CheckpointNotFoundError(
                    f"no weights ship with samkit for {key!r} and it has no official checkpoint to download "
                    f"(models with shipped weights: {ships}); pass checkpoint=PATH to load a file")
    sd = None
    if checkpoint is not None:
        sd, saved_cfg = read_checkpoint(checkpoint)
        if cfg is None:
            if saved_cfg is not None:
                cfg = saved_cfg
            else:
                found = detect_variant(sd)
                if found is None:
                    raise CheckpointError(f"{checkpoint}: could not tell which SAM 2 variant this is from its "
                                          "keys and shapes; pass the model name or a ModelConfig")
                cfg = get_config(found)
        else:
            check_matches(sd, cfg, checkpoint)
    if not isinstance(cfg, ModelConfig):
        raise ConfigError(f"expected a model name or ModelConfig, got {type(cfg).__name__}")
    model = SAM2Model(cfg)
    if sd is not None:
        load_into(model, sd, checkpoint)
    model = model.to(device)
    set_compute_dtype(model, dtype)
    if compile:
        compile_decoder(model)
    return model.eval() if eval_mode else model


def load_model(name: str | None = None, checkpoint: str | os.PathLike | None = None,
               device: str | torch.device = "cpu", *, pretrained: bool | None = None,
               compile: bool = False, compute_dtype: str | torch.dtype | None = None) -> tuple[SAM2Model, str]:
    """The model a user asked for, and one line saying exactly which weights it has.

    * ``checkpoint``: the file's weights (the variant detected from it, or checked against
      ``name`` when both are given); the line names the variant and the file.
    * a registered ``name`` (or none: :data:`DEFAULT_MODEL`): its shipped trained weights when
      samkit ships some for it (the line names the file), else RANDOM weights, said plainly.
    * ``pretrained=True``: trained weights required: the shipped ones, else Meta's official
      checkpoint from the cache, downloaded the first time (``--pretrained`` on the command line).
      ``False``: random weights.
    * ``compile``: as in :func:`build_model`; the description then ends with whether the
      decoder is compiled.
    * ``compute_dtype``: as in :func:`build_model`; the description then says bf16.

    Returns:
        ``(model in eval mode on device, description)``, e.g. ``"sam2.1_hiera_tiny from
        sam2.1_hiera_tiny.pt"`` or ``"sam2.1_hiera_tiny with RANDOM weights (none ship for it): ..."``.
    """
    dtype = parse_dtype(compute_dtype)
    model, description = _load_model(name, checkpoint, device, pretrained)
    if dtype != torch.float32:
        set_compute_dtype(model, dtype)
        description += "; bf16 fast mode (image encoder and memory modules in bfloat16, decoder float32)"
    if compile:
        done = compile_decoder(model)
        description += ("; decoder compiled (torch.compile: the first predictions take a minute)" if done
                        else "; decoder NOT compiled (see the warning), running eagerly")
    return model, description


def _load_model(name: str | None, checkpoint: str | os.PathLike | None, device: str | torch.device,
                pretrained: bool | None) -> tuple[SAM2Model, str]:
    device = check_device(device)  # before a download
    if checkpoint is not None:
        if pretrained:
            raise ConfigError("pass either a checkpoint file or pretrained=True (--pretrained) with a model name, "
                              "not both")
        model = build_model(name, checkpoint, device=device)
        return model, f"{model.cfg.name} from {checkpoint}"
    key = resolve_name(name if name is not None else DEFAULT_MODEL)
    shipped = bundled_checkpoint(key) if pretrained is not False else None
    if shipped is None and pretrained and is_official(key):
        path = download_checkpoint(name if name is not None else key)
        return build_model(key, path, device=device), f"{key} from {path} (Meta's official weights, cached)"
    model = build_model(key, device=device, pretrained=True if pretrained else shipped is not None)
    if shipped is not None:
        return model, (f"{key} (weights shipped with samkit: {shipped.name}, trained on generated scenes and "
                       "clips; for SAM 2.1 quality pass --model sam2.1_hiera_tiny --pretrained)")
    if pretrained is False:
        return model, f"{key} with RANDOM weights (pretrained=False): masks are not meaningful."
    hint = " or --pretrained (downloads Meta's weights once)" if is_official(key) else ""
    return model, (f"{key} with RANDOM weights (none ship for it): masks are not meaningful. "
                   f"Pass --checkpoint FILE{hint} for real results.")
