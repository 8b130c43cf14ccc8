"""Automatic mask generation: a grid of point prompts -> every mask in an image.

:class:`AutoMaskGenerator` is the generator, built from the point grids and crops of
:mod:`~samkit.automask.grid`, the exact lazy upsampling of :mod:`~samkit.automask.upsample`, the
stability scores of :mod:`~samkit.automask.stability`, the candidate rows of
:mod:`~samkit.automask.records`, and the shared mask library :mod:`samkit.masks`.
"""

from samkit.automask.generator import AutoMaskConfig, AutoMaskGenerator, GenerateStats

__all__ = ["AutoMaskGenerator", "AutoMaskConfig", "GenerateStats"]
