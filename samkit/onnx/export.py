"""Export a :class:`~samkit.model.sam2.SAM2Model` to ONNX graphs (``samkit export onnx``).

:func:`export_onnx` writes, into one folder, ``image_encoder.onnx``, ``mask_decoder.onnx``,
``memory_attention.onnx``, ``memory_encoder.onnx`` (the modules of :mod:`samkit.onnx.graphs`,
float32, exported with ``torch.onnx.export(..., dynamo=True)`` and checked with
``onnx.checker``) and ``config.json`` (the files, the model's configuration and the predictor
settings the runtime side needs). ``quantize_decoder=True`` adds ``mask_decoder_int8.onnx``,
the decoder with int8 weights (``onnxruntime.quantization.quantize_dynamic``).

Dynamic axes: the decoder's number of prompts ``B`` and of points ``N`` (``N`` may be 0: a
mask prompt alone), the memory graphs' batch ``B``, number of memory frames ``K`` and of
object pointers ``P``. The image encoder takes one ``1 x 3 x S x S`` image.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import warnings
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from samkit import __version__
from samkit.checkpoint import config_to_dict
from samkit.errors import ConfigError, MissingDependencyError
from samkit.fileio import write_bytes, write_json
from samkit.model.sam2 import SAM2Model
from samkit.onnx.graphs import ImageEncoderGraph, MaskDecoderGraph, MemoryAttentionGraph, MemoryEncoderGraph
from samkit.onnx.runtime import CONFIG_FILE, FORMAT, FORMAT_VERSION, GRAPHS, QUANTIZED_DECODER, require_onnxruntime
from samkit.prompts import FEEDBACK_CLAMP

__all__ = ["DEFAULT_OPSET", "GraphSpec", "ExportResult", "export_onnx", "graph_specs", "quantize_decoder",
           "verify_export"]

DEFAULT_OPSET = 18
MIN_OPSET = 17  # LayerNormalization


@dataclass
class GraphSpec:
    """One graph to export: its module, example inputs, input and output names, and the dynamic
    axes of each input (``{axis: name}``; inputs not listed have fixed shapes)."""

    module: nn.Module
    example: tuple[torch.Tensor, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dynamic: dict[str, dict[int, str]]


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote: the folder, the file of each graph and the config."""

    folder: Path
    files: dict[str, Path]
    config: dict[str, Any]


def graph_specs(model: SAM2Model) -> dict[str, GraphSpec]:
    """The four graphs of ``model`` with example inputs of the right shapes (random values)."""
    cfg = model.cfg
    s, e = cfg.image_size, cfg.embedding_size
    c, cm = model.hidden_dim, model.mem_dim
    g = torch.Generator().manual_seed(0)
    enc = ImageEncoderGraph(model)
    with torch.no_grad():
        embed, hr0, hr1, vision = enc(torch.randn(1, 3, s, s, generator=g))
    b, n, k, p = 2, 3, 2, 3
    return {
        "image_encoder": GraphSpec(enc, (torch.randn(1, 3, s, s, generator=g),), ("image",),
                                   ("image_embed", "high_res_0", "high_res_1", "vision_features"), {}),
        "mask_decoder": GraphSpec(
            MaskDecoderGraph(model),
            (embed, hr0, hr1, torch.rand(b, n, 2, generator=g) * s, torch.tensor([[1.0, 0.0, -1.0], [2.0, 3.0, -1.0]]),
             torch.randn(b, 1, 4 * e, 4 * e, generator=g), torch.tensor([0.0, 1.0])),
            ("image_embed", "high_res_0", "high_res_1", "point_coords", "point_labels", "mask_input", "has_mask_input"),
            ("low_res_masks", "iou_predictions", "object_score_logits", "obj_ptr"),
            {"point_coords": {0: "B", 1: "N"}, "point_labels": {0: "B", 1: "N"}, "mask_input": {0: "B"},
             "has_mask_input": {0: "B"}}),
        "memory_attention": GraphSpec(
            MemoryAttentionGraph(model),
            (vision.expand(b, -1, -1, -1).contiguous(), torch.randn(k, b, cm, e, e, generator=g),
             torch.tensor([0, cfg.num_maskmem - 1]), torch.randn(p, b, c, generator=g), torch.tensor([0.1, 0.2, 0.3])),
            ("vision_features", "memory", "memory_tpos", "obj_ptrs", "obj_ptr_offsets"), ("conditioned",),
            {"vision_features": {0: "B"}, "memory": {0: "K", 1: "B"}, "memory_tpos": {0: "K"},
             "obj_ptrs": {0: "P", 1: "B"}, "obj_ptr_offsets": {0: "P"}}),
        "memory_encoder": GraphSpec(
            MemoryEncoderGraph(model),
            (vision.expand(b, -1, -1, -1).contiguous(), torch.randn(b, 1, 4 * e, 4 * e, generator=g),
             torch.tensor([[1.0], [-1.0]]), torch.ones(1)),
            ("vision_features", "mask_logits", "object_score", "binarize"), ("maskmem_features",),
            {"vision_features": {0: "B"}, "mask_logits": {0: "B"}, "object_score": {0: "B"}}),
    }


def _require_exporter() -> Any:
    """The ``onnx`` module (the exporter also needs onnxscript), or a MissingDependencyError."""
    try:
        import onnx
        import onnxscript  # noqa: F401 - torch.onnx.export(dynamo=True) needs it
    except ImportError as exc:
        raise MissingDependencyError(f'ONNX export needs onnx and onnxscript ({exc.name} is missing): pip install '
                                     '"samkit[onnx]"') from None
    return onnx


def _dynamic_shapes(spec: GraphSpec) -> dict[str, dict[int, Any] | None]:
    """``torch.export`` dimensions for the named axes; ``N`` and ``P`` may be 0."""
    dims: dict[str, Any] = {}
    out: dict[str, dict[int, Any] | None] = {}
    for name in spec.inputs:
        axes = spec.dynamic.get(name)
        if not axes:
            out[name] = None
            continue
        out[name] = {}
        for axis, dim in axes.items():
            if dim not in dims:
                dims[dim] = torch.export.Dim(dim, min=0 if dim in ("N", "P") else 1)
            out[name][axis] = dims[dim]
    return out


def export_graph(spec: GraphSpec, opset: int = DEFAULT_OPSET) -> Any:
    """One graph as a checked ``onnx.ModelProto``."""
    onnx = _require_exporter()
    with torch.no_grad(), warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals
        program = torch.onnx.export(spec.module.eval(), spec.example, None, input_names=list(spec.inputs),
                                    output_names=list(spec.outputs), dynamic_shapes=_dynamic_shapes(spec),
                                    opset_version=opset, dynamo=True, verbose=False)
    proto = program.model_proto
    onnx.checker.check_model(proto, full_check=True)
    return proto


# the prompt encoder's point encoding: quantizing its input (pixel coordinates) moves the points
_KEEP_FLOAT = "positional_encoding_gaussian_matrix"


def quantize_decoder(decoder: Path, out: Path) -> Path:
    """``decoder`` (a float32 ``.onnx`` file) with int8 weights and dynamically quantized
    activations (``onnxruntime.quantization.quantize_dynamic`` of its linear layers, MatMul and Gemm
    nodes, but the point encoding), written atomically to ``out``."""
    onnx = _require_exporter()
    require_onnxruntime()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    keep = [n.name for n in onnx.load(decoder).graph.node if any(_KEEP_FLOAT in i for i in n.input)]
    root = logging.getLogger()
    level = root.level
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        path = Path(tmp) / out.name
        root.setLevel(logging.ERROR)  # its advice to pre-process first changes nothing here (measured)
        try:
            quantize_dynamic(decoder, path, op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=keep,
                             weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
        return write_bytes(out, path.read_bytes())


def export_onnx(model: SAM2Model, out_dir: str | os.PathLike, *, opset: int = DEFAULT_OPSET,
                quantize: bool = False) -> ExportResult:
    """Export every graph of ``model`` (float32, on the CPU) and ``config.json`` into ``out_dir``.

    Args:
        model: a float32 model (see :func:`samkit.build_model`); it is not changed.
        out_dir: the folder to write (created if needed; files of an earlier export are replaced).
        opset: the ONNX opset, at least 17.
        quantize: also write ``mask_decoder_int8.onnx`` (int8 weights; docs/onnx/NOTES.md has its
            measured accuracy).

    Raises:
        ConfigError: an opset below 17, or a model that is not float32 on the CPU.
        MissingDependencyError: onnx / onnxscript (or onnxruntime, to quantize) not installed.
    """
    if opset < MIN_OPSET:
        raise ConfigError(f"opset must be at least {MIN_OPSET} (LayerNormalization), got {opset}")
    other = sorted({f"{p.dtype} on {p.device}" for p in model.parameters()} - {"torch.float32 on cpu"})
    if other:
        raise ConfigError(f"export a float32 model on the CPU (this one has weights in {', '.join(other)}); build it "
                          "with samkit.build_model(..., device='cpu') and no compute_dtype")
    _require_exporter()
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        files = {}
        for name, spec in graph_specs(model).items():
            files[name] = write_bytes(folder / GRAPHS[name], export_graph(spec, opset).SerializeToString())
        if quantize:
            files[QUANTIZED_DECODER] = quantize_decoder(files["mask_decoder"], folder / f"{QUANTIZED_DECODER}.onnx")
    finally:
        model.train(was_training)
    config = {
        "format": FORMAT, "version": FORMAT_VERSION, "exported_by": f"samkit {__version__}, torch {torch.__version__}",
        "opset": opset, "graphs": {name: path.name for name, path in files.items()},
        "model": config_to_dict(model.cfg), "embedding_size": model.cfg.embedding_size,
        "hidden_dim": model.hidden_dim, "mem_dim": model.mem_dim, "feedback_clamp": FEEDBACK_CLAMP,
    }
    write_json(folder / CONFIG_FILE, config, indent=1)
    return ExportResult(folder, files, config)


def verify_export(result: ExportResult, model: SAM2Model) -> dict[str, float]:
    """Run each float32 graph of ``result`` with ONNX Runtime on its example inputs and compare with
    the PyTorch module: the largest absolute difference of any output, per graph; empty when
    onnxruntime is not installed."""
    try:
        ort = require_onnxruntime()
    except MissingDependencyError:
        return {}
    diffs = {}
    for name, spec in graph_specs(model).items():
        session = ort.InferenceSession(str(result.files[name]), providers=["CPUExecutionProvider"])
        got = session.run(None, {n: t.numpy() for n, t in zip(spec.inputs, spec.example)})
        with torch.no_grad():
            want = spec.module(*spec.example)
        want = want if isinstance(want, tuple) else (want,)
        diffs[name] = max(float((w - torch.from_numpy(g)).abs().max()) for w, g in zip(want, got))
    return diffs
