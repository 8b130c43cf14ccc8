"""SAM 2 as ONNX graphs: export (``samkit export onnx``, torch) and prediction with ONNX Runtime.

* :func:`export_onnx` (:mod:`samkit.onnx.export`, needs torch, onnx and onnxscript) writes the
  image encoder, mask decoder, memory attention and memory encoder graphs and ``config.json``;
* :class:`OnnxImagePredictor` (:mod:`samkit.onnx.predictor`) has the surface of
  :class:`samkit.image_predictor.ImagePredictor` and needs only onnxruntime and numpy;
* :class:`OnnxAutoMaskGenerator` (:mod:`samkit.onnx.automask`) is the automatic mask
  generator with its network run by ONNX Runtime (its mask post-processing is samkit's torch one);
* :class:`OnnxVideoTracker` (:mod:`samkit.onnx.video`) tracks objects through a video with the
  four graphs.

Names load on first use, so ``from samkit.onnx import OnnxImagePredictor`` imports no torch.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "OnnxModel": "samkit.onnx.runtime",
    "OnnxImagePredictor": "samkit.onnx.predictor",
    "OnnxAutoMaskGenerator": "samkit.onnx.automask",
    "OnnxVideoTracker": "samkit.onnx.video",
    "export_onnx": "samkit.onnx.export",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'samkit.onnx' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
