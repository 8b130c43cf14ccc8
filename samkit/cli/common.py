"""What several commands share: the model arguments and loading, prompt and dataset arguments."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import Any, Optional

from samkit.builder import load_model
from samkit.data import DATASET_FORMATS, SA1B_SOURCES, Sample, open_dataset
from samkit.errors import ConfigError, PromptError
from samkit.image_predictor import check_box_order
from samkit.model.sam2 import SAM2Model

__all__ = ["HelpFormatter", "ArgumentParser", "show_default", "add_model_args", "model_from_args", "point_arg",
           "box_arg", "int_range_arg", "sources_arg", "add_data_args", "dataset_from_args"]


def show_default(value: object) -> str:
    """A default as ``--help`` shows it: floats as typed (``0.1``, ``0.0001``), sequences comma-separated."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return ",".join(show_default(v) for v in value)
    return str(value)


class HelpFormatter(argparse.HelpFormatter):
    """``--help`` with every option's default: `` (default: X)`` ends the help of an option whose
    default is a value (not None, False or empty) unless the help already says "default" (then
    it gives the default in words, e.g. "default: the model's"). Options without a value default
    say in their help what happens when they are not given."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        value = action.default
        if not action.option_strings or value is None or value is False or value is argparse.SUPPRESS \
                or value in ((), []) or "default" in text.lower():
            return text
        return f"{text} (default: {show_default(value).replace('%', '%%')})"


class ArgumentParser(argparse.ArgumentParser):
    """The parser of ``samkit`` and of each subcommand: :class:`HelpFormatter` unless told otherwise."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def add_model_args(p: argparse.ArgumentParser) -> None:
    """``--model NAME [--pretrained] | --checkpoint FILE``, ``--device``, ``--dtype`` and ``--compile``."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--model", help="registered model name or Hugging Face id (see `samkit models`); default, "
                                   "with no --checkpoint either: samkit_nano, the default model, with the weights "
                                   "that ship with samkit")
    g.add_argument("--checkpoint", help="checkpoint file (.pt or .safetensors) instead of --model; the variant is "
                                        "detected from it")
    p.add_argument("--pretrained", action="store_true",
                   help="with --model: Meta's official weights, downloaded once into the cache (see `samkit "
                        "download`); without it an official variant has random weights")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--compile", action="store_true",
                   help="compile the mask decoder (torch.compile; needs a C++ compiler on the CPU, else a warning "
                        "and the eager path): faster for many prompts per image (auto, annotate) after about a "
                        "minute of compiling at the first image")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32",
                   help="fp32: exact; bf16: the fast mode (image encoder, memory attention and memory encoder in "
                        "bfloat16, the decoder in float32; masks close to fp32, not equal; see README, Speed)")


def model_from_args(args: argparse.Namespace) -> SAM2Model:
    """The model of ``--model/--checkpoint/--pretrained/--device/--dtype/--compile``; prints which weights it has."""
    model, description = load_model(args.model, args.checkpoint, args.device, pretrained=args.pretrained or None,
                                    compile=getattr(args, "compile", False),
                                    compute_dtype=getattr(args, "dtype", "fp32"))
    print(f"model: {description}")
    return model


def _floats(text: str, n_min: int, n_max: int, what: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} must be comma-separated numbers, got {text!r}") from None
    if not n_min <= len(vals) <= n_max:
        raise argparse.ArgumentTypeError(f"{what} takes {n_min}-{n_max} numbers, got {text!r}")
    if not all(math.isfinite(v) for v in vals):
        raise argparse.ArgumentTypeError(f"{what} must be finite numbers (no nan or inf), got {text!r}")
    return vals


def point_arg(text: str) -> list[float]:
    """``"X,Y[,LABEL]"`` -> ``[x, y, label]`` (label 1 when not given; only 0 and 1 are accepted)."""
    v = _floats(text, 2, 3, "--point X,Y[,LABEL]")
    if len(v) == 3 and v[2] not in (0.0, 1.0):
        raise argparse.ArgumentTypeError(f"--point X,Y,LABEL: LABEL must be 1 (object) or 0 (background), got "
                                         f"{text.split(',')[2].strip()!r} in {text!r}")
    return v if len(v) == 3 else v + [1.0]


def box_arg(text: str) -> list[float]:
    """``"X0,Y0,X1,Y1"`` -> ``[x0, y0, x1, y1]`` with ``x0 <= x1`` and ``y0 <= y1``."""
    v = _floats(text, 4, 4, "--box X0,Y0,X1,Y1")
    try:
        check_box_order(v, "--box")
    except PromptError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return v


def int_range_arg(text: str) -> tuple[int, int]:
    """``"MIN,MAX"`` -> ``(min, max)`` with ``1 <= min <= max``."""
    try:
        lo, hi = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX (two integers), got {text!r}") from None
    if not 1 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"need 1 <= MIN <= MAX, got {text!r}")
    return lo, hi


def sources_arg(text: str) -> tuple[str, ...]:
    """``"manual[,auto]"`` -> ``("manual", "auto")``: annotation sources, comma-separated."""
    names = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    if not names:
        raise argparse.ArgumentTypeError(f"--sources takes source names separated by commas "
                                         f"({','.join(SA1B_SOURCES)}), got {text!r}")
    return names


def add_data_args(p: argparse.ArgumentParser, *, data_required: bool = False, format_required: bool = True) -> None:
    """``--data/--format/--split/--layout/--images/--sources`` and the synthetic-data options (train, eval);
    :func:`dataset_from_args` opens the dataset they name."""
    p.add_argument("--data", required=data_required,
                   help="dataset: the LabPicsV1 folder (labpics), the annotation JSON (coco), the folder with "
                        "images/ and masks/ (folder), the folder of SA-1B JSON that samkit annotate or samkit studio "
                        "wrote (sa1b, searched recursively); not needed for synthetic")
    p.add_argument("--format", required=format_required, choices=tuple(DATASET_FORMATS), help="dataset layout")
    p.add_argument("--split", default=None, help="LabPics split (Train/Test); default Train for training, Test "
                                                 "for evaluation")
    p.add_argument("--layout", default="Simple", help="LabPics layout: Simple or Complex")
    p.add_argument("--images", help="coco: the folder of the images (default: the JSON's folder); sa1b (required): "
                                    "the folder the JSON's file_name paths are relative to, i.e. the IMAGES_DIR given "
                                    "to samkit annotate or samkit studio")
    p.add_argument("--sources", type=sources_arg, default=None, metavar="SOURCE[,SOURCE]",
                   help="sa1b: keep only annotations from these sources: manual (drawn in samkit studio) and/or auto "
                        "(proposals accepted in the studio, and everything samkit annotate wrote); default all")
    p.add_argument("--synthetic-count", type=int, default=200, help="synthetic: number of random scenes")
    p.add_argument("--synthetic-size", type=int, default=256, help="synthetic: side of the scenes in pixels")
    p.add_argument("--synthetic-objects", type=int_range_arg, default=(4, 12), metavar="MIN,MAX",
                   help="synthetic: range of top-level objects per scene (the nano recipe trains on 1,4)")
    p.add_argument("--synthetic-photos", action="store_true",
                   help="synthetic: backgrounds and some textures from scikit-image's photos, as in the nano "
                        "recipe's training scenes")


def dataset_from_args(args: argparse.Namespace, split: str, *, data: Optional[str] = None,
                      synthetic_count: Optional[int] = None) -> Sequence[Sample]:
    """The dataset of :func:`add_data_args`' options (and ``--seed``) for ``split``; ``data`` and
    ``synthetic_count`` replace ``--data`` and ``--synthetic-count`` (a validation set).

    Raises:
        ConfigError: ``--sources`` with another format than sa1b; see also :func:`open_dataset`.
    """
    if args.sources is not None and args.format != "sa1b":
        raise ConfigError(f"--sources selects annotations of --format sa1b; drop it for --format {args.format}")
    return open_dataset(args.format, data if data is not None else args.data, split, layout=args.layout,
                        images=args.images, sources=args.sources,
                        synthetic_count=args.synthetic_count if synthetic_count is None else synthetic_count,
                        synthetic_size=args.synthetic_size, seed=args.seed, synthetic_photos=args.synthetic_photos,
                        synthetic_objects=args.synthetic_objects)
