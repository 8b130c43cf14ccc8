"""Automatic mask generation: a grid of point prompts -> every mask in an image.

:class:`AutoMaskGenerator` is the generator; :mod:`samkit.automask.masks` holds the mask,
box and run-length helpers it (and the data engine) is built from.
"""

from samkit.automask.generator import AutoMaskConfig, AutoMaskGenerator

__all__ = ["AutoMaskGenerator", "AutoMaskConfig"]
