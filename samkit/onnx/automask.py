"""``OnnxAutoMaskGenerator``: segment everything with the network run by ONNX Runtime.

It is :class:`samkit.automask.generator.AutoMaskGenerator` (the same arguments, records and
rules; one code path) working through an :class:`~samkit.onnx.predictor.OnnxImagePredictor`:
the image encoder and the mask decoder are the exported graphs, and the generator's filtering,
NMS and run-length encoding are samkit's torch tensor operations, so torch must be installed
(the weights and model code are not needed: the export folder is enough).
"""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import torch

from samkit.automask.generator import AutoMaskGenerator
from samkit.image_predictor import CoordTransforms
from samkit.onnx.predictor import OnnxImagePredictor
from samkit.onnx.prompts import Prompts
from samkit.onnx.runtime import OnnxModel

__all__ = ["OnnxAutoMaskGenerator", "GeneratorPredictor"]


class GeneratorPredictor:
    """The predictor interface :class:`AutoMaskGenerator` works through (torch tensors in the
    model-input frame), over an :class:`OnnxImagePredictor`."""

    def __init__(self, predictor: OnnxImagePredictor) -> None:
        self.onnx = predictor
        self.model = SimpleNamespace(cfg=predictor.model.model_cfg)  # the generator reads its thresholds
        self._transforms = CoordTransforms(predictor.image_size, predictor.mask_threshold)
        self.device = torch.device("cpu")

    @property
    def mask_threshold(self) -> float:
        return self.onnx.mask_threshold

    def set_image(self, image: Any) -> None:
        self.onnx.set_image(image)

    def reset_predictor(self) -> None:
        self.onnx.reset_predictor()

    def predict_low_res(self, point_coords: torch.Tensor | None, point_labels: torch.Tensor | None,
                        boxes: torch.Tensor | None = None, mask_input: torch.Tensor | None = None,
                        multimask_output: bool = True, img_idx: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`samkit.image_predictor.ImagePredictor.predict_low_res` on the graphs."""
        arrays = [None if t is None else t.detach().cpu().numpy() for t in (point_coords, point_labels, boxes,
                                                                             mask_input)]
        low, iou = self.onnx.predict_low_res(*arrays, multimask_output=multimask_output, img_idx=img_idx)
        return torch.from_numpy(np.ascontiguousarray(low)), torch.from_numpy(np.ascontiguousarray(iou))

    def predict_low_res_selected(self, point_coords: torch.Tensor, point_labels: torch.Tensor,
                                 select: Callable[[torch.Tensor], torch.Tensor],
                                 img_idx: int = -1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`samkit.image_predictor.ImagePredictor.predict_low_res_selected`: the graph makes
        every mask; those of the prompts ``select`` keeps are returned."""
        out = self.onnx.decode(Prompts(coords=point_coords.numpy(), labels=point_labels.numpy().astype(np.int64)),
                               img_idx)
        iou = torch.from_numpy(out.iou[:, 1:].copy())
        rows = torch.nonzero(select(iou)).flatten()
        return torch.from_numpy(out.masks[rows.numpy(), 1:]), iou, rows


class OnnxAutoMaskGenerator(AutoMaskGenerator):
    """:class:`AutoMaskGenerator` on an export folder, an :class:`OnnxModel` or an
    :class:`OnnxImagePredictor`; every other argument is the generator's (thresholds left out
    are the exported model's, from its config)."""

    def __init__(self, model: str | os.PathLike | OnnxModel | OnnxImagePredictor, **kwargs: Any) -> None:
        predictor = model if isinstance(model, OnnxImagePredictor) else OnnxImagePredictor(model)
        super().__init__(GeneratorPredictor(predictor), **kwargs)

    @classmethod
    def from_pretrained(cls, name_or_checkpoint: str, **kwargs: Any) -> "OnnxAutoMaskGenerator":
        """The generator of an export folder (the official ``from_pretrained`` name)."""
        return cls(name_or_checkpoint, **kwargs)
