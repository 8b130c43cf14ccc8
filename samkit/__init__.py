"""samkit: Segment Anything 2 end to end in plain PyTorch.

The public names below load on first use, so that importing a part of the package that needs no
torch (``samkit.onnx``'s predictor, ``samkit.imageio``) does not import torch.
"""

from importlib import import_module
from typing import Any

# public name -> the module that defines it
_EXPORTS = {
    "errors": "samkit.errors",
    "AutoMaskGenerator": "samkit.automask.generator",
    "build_model": "samkit.builder",
    "save_checkpoint": "samkit.checkpoint",
    "ModelConfig": "samkit.configs",
    "list_models": "samkit.configs",
    "ImagePredictor": "samkit.image_predictor",
    "ImageSession": "samkit.session",
    "VideoPredictor": "samkit.video.predictor",
    "StreamingTracker": "samkit.video.streaming",
    "download_checkpoint": "samkit.weights",
}

__all__ = ["build_model", "list_models", "save_checkpoint", "ModelConfig", "ImagePredictor", "ImageSession",
           "AutoMaskGenerator", "VideoPredictor", "StreamingTracker", "errors", "download_checkpoint"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """The public names, and the subpackages the names' modules bring (``samkit.model.sam2``), as
    an eager ``import samkit`` gave them: the first access imports every public module."""
    for module in dict.fromkeys(_EXPORTS.values()):
        import_module(module)
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name) if name != "errors" else import_module("samkit.errors")
        globals()[name] = value
        return value
    if name in globals():
        return globals()[name]
    raise AttributeError(f"module 'samkit' has no attribute {name!r}")
