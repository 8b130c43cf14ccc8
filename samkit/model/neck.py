"""The FPN neck and the image encoder (trunk + neck)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from samkit.model.hiera import Hiera, HieraConfig
from samkit.model.position import SineGridEncoding


@dataclass(frozen=True)
class NeckConfig:
    """The feature pyramid that turns the trunk's stages into ``d_model``-wide maps."""

    d_model: int = 256
    fpn_top_down_levels: tuple[int, ...] = (2, 3)  # levels that receive the coarser level's features
    fpn_interp_model: str = "nearest"              # upsampling mode of the top-down path
    fuse_type: str = "sum"                         # "sum" or "avg"
    scalp: int = 1                                 # how many of the coarsest levels to drop


class FpnNeck(nn.Module):
    """1x1 lateral convolutions plus a top-down path on some levels, and sine position
    encodings. ``forward(stage outputs, finest first)`` returns ``(features, positions)``,
    both lists finest first of ``B x d_model x h_i x w_i``."""

    def __init__(self, d_model: int, backbone_channel_list: list[int], *,
                 fpn_top_down_levels: tuple[int, ...] = (2, 3), fpn_interp_model: str = "nearest",
                 fuse_type: str = "sum") -> None:
        super().__init__()
        if fuse_type not in ("sum", "avg"):
            raise ValueError("fuse_type must be 'sum' or 'avg'")
        self.d_model = d_model
        self.backbone_channel_list = list(backbone_channel_list)
        # convs[j] takes the j-th coarsest level (channel list is coarsest first)
        self.convs = nn.ModuleList()
        for ch in self.backbone_channel_list:
            seq = nn.Sequential()
            seq.add_module("conv", nn.Conv2d(ch, d_model, kernel_size=1))
            self.convs.append(seq)
        self.position_encoding = SineGridEncoding(d_model)
        self.top_down = set(fpn_top_down_levels)
        self.interp = fpn_interp_model
        self.fuse_type = fuse_type

    def forward(self, xs: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        n = len(xs)
        if n != len(self.convs):
            raise ValueError(f"neck expects {len(self.convs)} feature levels, got {n}")
        feats: list[torch.Tensor] = [None] * n  # type: ignore[list-item]
        prev = None
        for level in reversed(range(n)):  # coarsest first
            lateral = self.convs[n - 1 - level](xs[level])
            if prev is not None and level in self.top_down:
                up = F.interpolate(prev.float(), scale_factor=2.0, mode=self.interp,
                                   align_corners=None if self.interp == "nearest" else False)
                prev = lateral + up
                if self.fuse_type == "avg":
                    prev = prev / 2
            else:
                prev = lateral
            feats[level] = prev
        pos = [self.position_encoding(f) for f in feats]
        return feats, pos


class ImageEncoder(nn.Module):
    """Hiera trunk followed by the FPN neck.

    ``forward(images B x 3 x S x S)`` -> ``(features, positions)``, lists finest first,
    without the ``scalp`` coarsest levels: for S=1024 three maps of 256², 128² and 64².
    """

    def __init__(self, hiera: HieraConfig, neck: NeckConfig) -> None:
        super().__init__()
        self.trunk = Hiera(hiera)
        self.neck = FpnNeck(neck.d_model, hiera.channel_list, fpn_top_down_levels=neck.fpn_top_down_levels,
                            fpn_interp_model=neck.fpn_interp_model, fuse_type=neck.fuse_type)
        self.scalp = neck.scalp

    def forward(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        feats, pos = self.neck(self.trunk(images))
        if self.scalp:
            feats, pos = feats[: -self.scalp], pos[: -self.scalp]
        return feats, pos
