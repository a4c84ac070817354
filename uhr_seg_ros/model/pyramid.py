"""Laplacian-pyramid input of the shallow branch (RGB + two band-pass residuals)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: 1-D binomial filter of the classic 5-tap Gaussian pyramid (Burt & Adelson), sums to 1.
_BINOMIAL5 = (1.0, 4.0, 6.0, 4.0, 1.0)


class LaplacianInput(nn.Module):
    """Stack an image with its first two Laplacian-pyramid residual levels.

    For ``x`` ``(B, 3, H, W)`` (normalised), with ``down`` = 5x5 Gaussian blur then stride 2 and
    ``up`` = bilinear resize (``align_corners=False``):
    ``g1 = down(x)``, ``g2 = down(g1)``, ``lap1 = x - up(g1)``, ``lap2 = g1 - up(g2)``.
    Returns ``cat([x, lap1, up(lap2)])`` ``(B, 9, H, W)``: edges and fine texture made explicit
    for a branch too shallow to find them itself.
    """

    kernel: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        taps = torch.tensor(_BINOMIAL5)
        kernel = torch.outer(taps, taps) / taps.sum() ** 2
        self.register_buffer("kernel", kernel.expand(3, 1, 5, 5).clone(), persistent=False)

    def down(self, x: torch.Tensor) -> torch.Tensor:
        """Gaussian blur (reflect padding) and stride 2: ``(B, 3, H, W) -> (B, 3, H/2, W/2)``."""
        return F.conv2d(
            F.pad(x, (2, 2, 2, 2), mode="reflect"), self.kernel.to(x.dtype), stride=2, groups=3
        )

    @staticmethod
    def up(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[-2], x.shape[-1])
        g1 = self.down(x)
        g2 = self.down(g1)
        lap1 = x - self.up(g1, size)
        lap2 = g1 - self.up(g2, (g1.shape[-2], g1.shape[-1]))
        return torch.cat([x, lap1, self.up(lap2, size)], dim=1)
