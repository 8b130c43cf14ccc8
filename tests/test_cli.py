"""The command line: real runs on small inputs, and the errors a user sees."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import samkit
from samkit.builder import load_model
from samkit.cli.main import main
from samkit.configs import ModelConfig
from samkit.model.hiera import HieraConfig
from samkit.model.memory import MemoryConfig

SMALL = ModelConfig(name="cli_small", image_size=256,
                    hiera=HieraConfig(embed_dim=32, num_heads=1, stages=(1, 1, 2, 1), global_att_blocks=(3,),
                                      window_pos_embed_bkg_spatial_size=(4, 4)),
                    memory=MemoryConfig(num_layers=1, dim_feedforward=128))
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    return samkit.save_checkpoint(samkit.build_model(SMALL), tmp_path_factory.mktemp("c") / "small.pt")


@pytest.fixture()
def photo(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 255, (90, 140, 3), dtype=np.uint8)).save(path)
    return path


def test_models_lists_every_variant(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in samkit.list_models():
        assert name in out


def test_segment_writes_mask_and_overlay(tmp_path, photo, ckpt, capsys):
    out, ov = tmp_path / "mask.png", tmp_path / "overlay.png"
    rc = main(["segment", str(photo), "--checkpoint", str(ckpt), "--point", "40,30", "--point", "100,60,0",
               "--box", "10,10,120,80", "--out", str(out), "--overlay", str(ov)])
    assert rc == 0
    mask = np.array(Image.open(out))
    assert mask.shape == (90, 140) and set(np.unique(mask)) <= {0, 255}
    assert Image.open(ov).size == (140, 90)
    assert "cli_small" in capsys.readouterr().out


def test_segment_errors(tmp_path, photo, ckpt, capsys):
    assert main(["segment", str(tmp_path / "missing.jpg"), "--checkpoint", str(ckpt), "--point", "1,1",
                 "--out", str(tmp_path / "m.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["segment", str(photo), "--checkpoint", str(ckpt), "--out", str(tmp_path / "m.png")]) == 2
    assert "--point" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["segment", str(photo), "--point", "1", "--out", "x.png"])
    assert "X,Y" in capsys.readouterr().err
    assert main(["segment", str(photo), "--checkpoint", str(tmp_path / "no.pt"), "--point", "1,1",
                 "--out", str(tmp_path / "m.png")]) == 2
    assert "not found" in capsys.readouterr().err


def test_segment_with_the_default_model_and_all_candidates(tmp_path, photo, capsys):
    """No --model, no --checkpoint: the shipped default model; --all-candidates: the three side by side."""
    out, sheet = tmp_path / "mask.png", tmp_path / "candidates.png"
    assert main(["segment", str(photo), "--point", "70,45", "--out", str(out), "--all-candidates", str(sheet)]) == 0
    text = capsys.readouterr().out
    assert "model: samkit_nano (weights shipped with samkit" in text and "the 3 candidates, predicted IoU" in text
    assert Image.open(sheet).size == (3 * 140 + 2 * 4, 90)  # three overlays, 4 px apart
    # a box gives one mask; the sheet still shows the three candidates of the multimask output
    assert main(["segment", str(photo), "--box", "10,10,120,80", "--out", str(out), "--all-candidates",
                 str(sheet)]) == 0
    assert "the 3 candidates" in capsys.readouterr().out and Image.open(sheet).size == (428, 90)


def _subcommand_parsers() -> dict:
    import argparse

    from samkit.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_option_has_help_and_shows_its_default(capsys):
    """Every argument of every subcommand has a line of help, and every option whose default is a
    value shows it in --help (``(default: X)``, or the help's own words naming the value)."""
    import argparse

    from samkit.cli.common import show_default

    parsers = _subcommand_parsers()
    assert set(COMMANDS) <= set(parsers)
    missing, undocumented = [], []
    for name, parser in parsers.items():
        parser.print_help()
        shown = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            flag = action.option_strings[0] if action.option_strings else action.dest
            if not (action.help or "").strip():
                missing.append(f"{name} {flag}")
            value = action.default
            if action.option_strings and value not in (None, False, argparse.SUPPRESS) and value not in ((), []):
                if f"default: {show_default(value)}" not in shown and show_default(value) not in (action.help or ""):
                    undocumented.append(f"{name} {flag} (default {show_default(value)})")
    assert not missing, f"arguments without help: {missing}"
    assert not undocumented, f"options whose --help does not show the default: {undocumented}"


COMMANDS = ("models", "download", "segment", "demo", "auto", "annotate", "studio", "export", "track", "train",
            "make-synthetic-labpics",
            "eval", "eval-track")


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    listed = out.split("positional arguments:")[1]
    for command in COMMANDS:
        assert f"\n    {command} " in listed or f"\n    {command}\n" in listed, command


BROKEN_IMPORT = """
import sys
from importlib.abc import MetaPathFinder


class Broken(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "samkit.cli.video":
            raise ImportError("simulated broken import in samkit.cli.video")
        return None


sys.meta_path.insert(0, Broken())
from samkit.cli.main import main

main(["--help"])
"""


def test_a_command_module_that_fails_to_import_fails_the_command_line():
    r = subprocess.run([sys.executable, "-c", BROKEN_IMPORT], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert "ImportError: simulated broken import in samkit.cli.video" in r.stderr
    assert "usage:" not in r.stdout  # no parser without the command


MISSING_OPTIONALS = """
import sys

for name in ("cv2", "matplotlib", "pycocotools", "tensorboard", "torch.utils.tensorboard"):
    sys.modules[name] = None  # `import name` raises ImportError, as when it is not installed
from samkit.cli.main import build_parser, main

build_parser()
print("parser built")
sys.exit(main(sys.argv[1:]))
"""


def test_missing_optional_packages_fail_only_the_command_that_needs_them(tmp_path, photo, ckpt):
    r = subprocess.run([sys.executable, "-c", MISSING_OPTIONALS, "auto", str(photo), "--checkpoint", str(ckpt),
                        "--out", str(tmp_path / "auto")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "parser built" in r.stdout, r.stderr
    assert r.returncode == 2, r.stderr
    assert "samkit auto: error:" in r.stderr and "pycocotools" in r.stderr and "pip install" in r.stderr


def test_load_model_names_the_weights(ckpt):
    model, text = load_model()
    assert model.cfg.name == "samkit_nano" and not model.training
    assert text.startswith("samkit_nano (weights shipped with samkit") and "samkit_nano.safetensors" in text
    assert "trained" in text and "RANDOM" not in text
    model, text = load_model("sam2.1_hiera_t")
    assert model.cfg.name == "sam2.1_hiera_tiny"
    assert text.startswith("sam2.1_hiera_tiny with RANDOM weights")
    model, text = load_model(checkpoint=str(ckpt))
    assert model.cfg == SMALL
    assert text == f"cli_small from {ckpt}"
