"""Position encodings: 2-D sine grids, 1-D sine vectors and random Fourier features."""

from __future__ import annotations

import math

import torch
from torch import nn


def _sine_frequencies(num_feats: int, temperature: float, device: torch.device) -> torch.Tensor:
    """Divisors ``temperature ** (2 * (i // 2) / num_feats)`` for ``i < num_feats``."""
    i = torch.arange(num_feats, dtype=torch.float32, device=device)
    return temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / num_feats)


class SineGridEncoding(nn.Module):
    """The 2-D sine/cosine encoding of a feature map's pixel grid (DETR style).

    ``forward(x)`` with ``x`` of shape ``B x C x H x W`` returns ``B x num_pos_feats x H x W``:
    the first half of the channels encode y, the second half x, each interleaving sin and cos.
    The encoding depends only on ``H`` and ``W``; it is cached per size and device.
    It has no parameters.
    """

    def __init__(self, num_pos_feats: int, temperature: float = 10000.0, normalize: bool = True,
                 scale: float | None = None) -> None:
        super().__init__()
        if num_pos_feats % 2:
            raise ValueError("num_pos_feats must be even")
        self.half = num_pos_feats // 2
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale
        self._cache: dict[tuple[int, int, str], torch.Tensor] = {}

    def grid(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        """The encoding of an ``h x w`` grid, shape ``num_pos_feats x h x w``."""
        key = (h, w, str(device))
        if key not in self._cache:
            ys = torch.arange(1, h + 1, dtype=torch.float32, device=device)
            xs = torch.arange(1, w + 1, dtype=torch.float32, device=device)
            if self.normalize:
                ys = ys / (h + 1e-6) * self.scale
                xs = xs / (w + 1e-6) * self.scale
            freq = _sine_frequencies(self.half, self.temperature, device)
            ey = _interleave_sin_cos(ys[:, None] / freq)  # h x half
            ex = _interleave_sin_cos(xs[:, None] / freq)  # w x half
            pos = torch.cat([ey[:, None, :].expand(h, w, -1), ex[None, :, :].expand(h, w, -1)], -1)
            self._cache[key] = pos.permute(2, 0, 1).contiguous()
        return self._cache[key]

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pos = self.grid(x.shape[-2], x.shape[-1], x.device)
        return pos[None].expand(x.shape[0], -1, -1, -1).to(x.dtype)


def _interleave_sin_cos(t: torch.Tensor) -> torch.Tensor:
    """``N x F`` angles -> ``N x F``: sin of the even columns and cos of the odd, interleaved."""
    return torch.stack([t[:, 0::2].sin(), t[:, 1::2].cos()], dim=2).flatten(1)


def sine_1d(positions: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """1-D sine encoding of (possibly fractional) positions: ``N`` -> ``N x dim``.

    The first half of the channels are sines, the second half cosines.
    """
    half = dim // 2
    freq = _sine_frequencies(half, temperature, positions.device)
    angles = positions.float().unsqueeze(-1) / freq
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class RandomFourierEncoding(nn.Module):
    """Random spatial frequencies (the prompt encoder's point encoding).

    The frequency matrix ``2 x num_pos_feats`` is a buffer saved in checkpoints under
    ``positional_encoding_gaussian_matrix``.
    """

    def __init__(self, num_pos_feats: int = 64, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn(2, num_pos_feats))

    def encode(self, coords01: torch.Tensor) -> torch.Tensor:
        """Coordinates in ``[0, 1]`` of shape ``... x 2`` (x, y) -> ``... x 2*num_pos_feats``."""
        proj = (2 * coords01 - 1) @ self.positional_encoding_gaussian_matrix
        proj = 2 * math.pi * proj
        return torch.cat([proj.sin(), proj.cos()], dim=-1)

    def grid(self, h: int, w: int) -> torch.Tensor:
        """Encoding of the centres of an ``h x w`` grid: ``C x h x w``."""
        dev = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(h, dtype=torch.float32, device=dev) + 0.5) / h
        xs = (torch.arange(w, dtype=torch.float32, device=dev) + 0.5) / w
        xy = torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)], dim=-1)
        return self.encode(xy).permute(2, 0, 1)

    def points(self, coords: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
        """Pixel coordinates ``B x N x 2`` (x, y) in an image of size ``image_hw`` -> ``B x N x C``."""
        size = coords.new_tensor([float(image_hw[1]), float(image_hw[0])], dtype=torch.float32)
        return self.encode(coords.float() / size)
