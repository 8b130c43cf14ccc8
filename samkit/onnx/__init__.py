"""SAM 2 as ONNX graphs: export (``samkit export onnx``, torch) and prediction with ONNX Runtime.

* :func:`export_onnx` (:mod:`samkit.onnx.export`, needs torch, onnx and onnxscript) writes the
  image encoder, mask decoder, memory attention and memory encoder graphs and ``config.json``;
* :class:`OnnxImagePredictor` (:mod:`samkit.onnx.predictor`) has the surface of
  :class:`samkit.image_predictor.ImagePredictor` and needs only onnxruntime and numpy;
* :class:`OnnxAutoMaskGenerator` (:mod:`samkit.onnx.automask`) is segment-everything with
  :class:`~samkit.automask.generator.AutoMaskGenerator`'s arguments and records, on onnxruntime
  and numpy only;
* :class:`OnnxVideoTracker` (:mod:`samkit.onnx.video`) tracks objects through a video with the
  four graphs.

Names load on first use, so ``from samkit.onnx import OnnxImagePredictor`` (or
``OnnxAutoMaskGenerator``) imports no torch.
"""

from samkit.lazy import lazy_getattr

_EXPORTS = {
    "OnnxModel": "samkit.onnx.runtime",
    "OnnxImagePredictor": "samkit.onnx.predictor",
    "OnnxAutoMaskGenerator": "samkit.onnx.automask",
    "OnnxVideoTracker": "samkit.onnx.video",
    "export_onnx": "samkit.onnx.export",
}

__all__ = list(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())
