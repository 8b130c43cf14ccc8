"""Build the official SAM 2 package (the oracle) with random weights, for parity tests."""

from __future__ import annotations

import torch

HYDRA_CONFIGS = {
    "sam2_hiera_tiny": "configs/sam2/sam2_hiera_t.yaml",
    "sam2_hiera_small": "configs/sam2/sam2_hiera_s.yaml",
    "sam2_hiera_base_plus": "configs/sam2/sam2_hiera_b+.yaml",
    "sam2_hiera_large": "configs/sam2/sam2_hiera_l.yaml",
    "sam2.1_hiera_tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_large": "configs/sam2.1/sam2.1_hiera_l.yaml",
}


def randomize_(module: torch.nn.Module, seed: int = 0, std: float = 0.02) -> None:
    """Perturb every parameter and buffer so that none keeps a constant init (zeros/ones):
    a test then fails if any weight is wired to the wrong place."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)


def build_oracle(name: str, seed: int = 0, video: bool = False, **kwargs):
    """The official model for ``name`` on the CPU, random weights perturbed with ``seed``."""
    from sam2.build_sam import build_sam2, build_sam2_video_predictor

    torch.manual_seed(seed)
    builder = build_sam2_video_predictor if video else build_sam2
    model = builder(HYDRA_CONFIGS[name], ckpt_path=None, device="cpu", **kwargs)
    randomize_(model, seed)
    return model.eval()
