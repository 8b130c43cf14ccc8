"""Automatic mask generation: a grid of point prompts -> every mask in an image.

:class:`AutoMaskGenerator` is the generator, built from the settings of
:mod:`~samkit.automask.config` (shared with :class:`samkit.onnx.OnnxAutoMaskGenerator`), the
point grids and crops of :mod:`~samkit.automask.grid`, the exact lazy upsampling of
:mod:`~samkit.automask.upsample`, the stability scores of :mod:`~samkit.automask.stability`, the
candidate rows of :mod:`~samkit.automask.records`, and the shared mask library :mod:`samkit.masks`.

``config`` and ``grid`` need no torch; :class:`AutoMaskGenerator` loads on first use, so that
importing them imports no torch.
"""

from typing import Any

from samkit.automask.config import AutoMaskConfig, GenerateStats

__all__ = ["AutoMaskGenerator", "AutoMaskConfig", "GenerateStats"]


def __getattr__(name: str) -> Any:
    if name != "AutoMaskGenerator":
        raise AttributeError(f"module 'samkit.automask' has no attribute {name!r}")
    from samkit.automask.generator import AutoMaskGenerator

    globals()[name] = AutoMaskGenerator
    return AutoMaskGenerator
