"""The prompt encoder: points, box corners and a dense mask to embeddings."""

from __future__ import annotations

import torch
from torch import nn

from samkit.model.layers import LayerNorm2d
from samkit.model.position import RandomFourierEncoding

# Point labels understood by the prompt encoder.
LABEL_PAD, LABEL_NEG, LABEL_POS, LABEL_BOX_TL, LABEL_BOX_BR = -1, 0, 1, 2, 3


class PromptEncoder(nn.Module):
    """Embeds prompts for the mask decoder.

    Points (and box corners, given as points labelled 2 and 3) become sparse tokens: the
    random-Fourier encoding of their position plus a learned embedding of their label;
    padding points (label -1) get the ``not_a_point_embed`` instead. A dense low-resolution
    mask (``B x 1 x 4h x 4w`` logits) goes through a small strided conv stack; without one,
    the learned ``no_mask_embed`` is broadcast over the ``h x w`` grid.
    """

    def __init__(self, *, embed_dim: int, image_embedding_size: tuple[int, int],
                 input_image_size: tuple[int, int], mask_in_chans: int = 16) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = tuple(image_embedding_size)
        self.input_image_size = tuple(input_image_size)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.pe_layer = RandomFourierEncoding(embed_dim // 2)
        # label 0 (negative), 1 (positive), 2 (box top-left), 3 (box bottom-right)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image-embedding grid: ``1 x C x h x w``."""
        return self.pe_layer.grid(*self.image_embedding_size)[None]

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """``B x N x 2`` pixel coordinates in the model input frame and ``B x N`` labels ->
        ``B x (N+pad) x C``. With ``pad`` a padding point is appended (used when no box)."""
        coords = coords.float() + 0.5  # pixel centres
        if pad:
            b = coords.shape[0]
            coords = torch.cat([coords, coords.new_zeros(b, 1, 2)], dim=1)
            labels = torch.cat([labels, labels.new_full((b, 1), LABEL_PAD)], dim=1)
        emb = self.pe_layer.points(coords, self.input_image_size)
        labels = labels[..., None]
        emb = torch.where(labels == LABEL_PAD, self.not_a_point_embed.weight.expand_as(emb), emb)
        for lab, table in enumerate(self.point_embeddings):
            emb = torch.where(labels == lab, emb + table.weight, emb)
        return emb

    def embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """``B x 4`` XYXY boxes -> ``B x 2 x C`` corner tokens."""
        corners = boxes.float().reshape(-1, 2, 2) + 0.5
        emb = self.pe_layer.points(corners, self.input_image_size)
        offset = torch.stack([self.point_embeddings[2].weight[0], self.point_embeddings[3].weight[0]])
        return emb + offset

    def forward(self, points: tuple[torch.Tensor, torch.Tensor] | None, boxes: torch.Tensor | None,
                masks: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(sparse B x N x C, dense B x C x h x w)``."""
        if points is not None:
            bs = points[0].shape[0]
        elif boxes is not None:
            bs = boxes.shape[0]
        elif masks is not None:
            bs = masks.shape[0]
        else:
            bs = 1
        device = self.no_mask_embed.weight.device
        sparse = [torch.empty(bs, 0, self.embed_dim, device=device)]
        if points is not None:
            sparse.append(self.embed_points(points[0], points[1], pad=boxes is None))
        if boxes is not None:
            sparse.append(self.embed_boxes(boxes))
        sparse_t = torch.cat(sparse, dim=1)
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            h, w = self.image_embedding_size
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(bs, -1, h, w)
        return sparse_t, dense
