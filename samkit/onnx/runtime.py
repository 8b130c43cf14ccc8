"""An exported folder (``samkit export onnx``) opened with ONNX Runtime; numpy only, no torch.

The folder holds one ``.onnx`` file per graph and ``config.json``, which names the files and
records the model's configuration (what the predictors need to prepare inputs and choose
outputs). :class:`OnnxModel` reads the config and opens a graph's session when it is first run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, Sequence

import numpy as np

from samkit.errors import CheckpointError, CheckpointNotFoundError, ConfigError, MissingDependencyError

__all__ = ["CONFIG_FILE", "FORMAT", "FORMAT_VERSION", "GRAPHS", "QUANTIZED_DECODER", "OnnxModel",
           "require_onnxruntime"]

CONFIG_FILE = "config.json"
FORMAT = "samkit-onnx"
FORMAT_VERSION = 1
# graph name -> file name in an export folder
GRAPHS = {
    "image_encoder": "image_encoder.onnx",
    "mask_decoder": "mask_decoder.onnx",
    "memory_attention": "memory_attention.onnx",
    "memory_encoder": "memory_encoder.onnx",
}
# the int8 dynamically quantized decoder (``samkit export onnx --quantize-decoder``)
QUANTIZED_DECODER = "mask_decoder_int8"


def require_onnxruntime() -> ModuleType:
    """The ``onnxruntime`` module, or :class:`MissingDependencyError` saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError('running exported ONNX graphs needs onnxruntime: pip install "samkit[onnx]" '
                                     '(or pip install onnxruntime)') from None
    return onnxruntime


class OnnxModel:
    """The graphs of one export folder.

    Args:
        folder: what ``samkit export onnx --out DIR`` wrote (``config.json`` and the ``.onnx`` files).
        providers: ONNX Runtime execution providers (default: the CPU one).
        num_threads: intra-op threads of every session (default: ONNX Runtime's choice).
        quantized_decoder: run the int8 decoder (exported with ``--quantize-decoder``) instead of
            the float32 one.

    Raises:
        CheckpointNotFoundError: the folder or its config does not exist.
        CheckpointError: the config is not one samkit wrote, or names a file that is missing.
        MissingDependencyError: onnxruntime is not installed.
    """

    def __init__(self, folder: str | os.PathLike, *, providers: Sequence[str] | None = None,
                 num_threads: int | None = None, quantized_decoder: bool = False) -> None:
        self._ort = require_onnxruntime()
        self.folder = Path(folder)
        self.config = read_config(self.folder)
        self.model_cfg = SimpleNamespace(**self.config["model"])  # the ModelConfig's fields as attributes
        self.providers = list(providers) if providers is not None else ["CPUExecutionProvider"]
        self.num_threads = num_threads
        graphs = dict(self.config["graphs"])
        if quantized_decoder:
            if QUANTIZED_DECODER not in graphs:
                raise ConfigError(f"{self.folder} has no int8 decoder: export it with samkit export onnx "
                                  "--quantize-decoder, or leave quantized_decoder off")
            graphs["mask_decoder"] = graphs[QUANTIZED_DECODER]
        self._files = graphs
        self._sessions: dict[str, Any] = {}

    # ------------------------------------------------------------------ sizes
    @property
    def image_size(self) -> int:
        """Side of the square model input."""
        return int(self.model_cfg.image_size)

    @property
    def embedding_size(self) -> int:
        """Side of the image embedding grid (``image_size / backbone_stride``)."""
        return int(self.config["embedding_size"])

    @property
    def mask_input_size(self) -> tuple[int, int]:
        """Size of a mask prompt and of the decoder's low-resolution logits: ``(4h, 4w)``."""
        return (4 * self.embedding_size, 4 * self.embedding_size)

    def has_graph(self, name: str) -> bool:
        return name in self._files

    # ------------------------------------------------------------------ running
    def session(self, name: str) -> Any:
        """The ONNX Runtime session of graph ``name`` (see :data:`GRAPHS`), opened on first use."""
        if name not in self._sessions:
            if name not in self._files:
                raise ConfigError(f"{self.folder} has no {name} graph (it has {', '.join(sorted(self._files))}); "
                                  "export it again with samkit export onnx")
            options = self._ort.SessionOptions()
            if self.num_threads is not None:
                options.intra_op_num_threads = int(self.num_threads)
            self._sessions[name] = self._ort.InferenceSession(str(self.folder / self._files[name]), options,
                                                              providers=self.providers)
        return self._sessions[name]

    def run(self, name: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run graph ``name`` on ``feeds`` (input name -> array); its outputs in order."""
        return self.session(name).run(None, feeds)


def read_config(folder: Path) -> dict[str, Any]:
    """``folder/config.json``, checked to be an export of this format whose files exist."""
    path = folder / CONFIG_FILE
    if not folder.is_dir():
        raise CheckpointNotFoundError(f"ONNX folder {str(folder)!r} does not exist; write one with samkit export onnx "
                                      "--out DIR")
    if not path.is_file():
        raise CheckpointNotFoundError(f"{str(folder)!r} has no {CONFIG_FILE}: it is not a folder written by samkit "
                                      "export onnx --out DIR")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}; export the model again") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a samkit ONNX config (no \"format\": \"{FORMAT}\"); give the folder "
                              "that samkit export onnx --out DIR wrote")
    if config.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {config.get('version')!r}; this samkit reads version "
                              f"{FORMAT_VERSION}: export the model again with this samkit")
    missing = [f for f in config["graphs"].values() if not (folder / f).is_file()]
    if missing:
        raise CheckpointError(f"{folder} lacks {', '.join(missing)} named in its {CONFIG_FILE}; export the model "
                              "again")
    return config
