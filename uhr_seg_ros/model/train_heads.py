"""Training-only heads: extra supervision that shapes the features, absent from inference.

:class:`~uhr_seg_ros.model.SGHRQ.forward` never calls these modules and
:meth:`~uhr_seg_ros.model.SGHRQ.inference_state_dict` drops their weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import ConvBNReLU
from .config import SGHRQConfig


class SRDecoder(nn.Module):
    """Super-resolution decoder on the shallow branch: reconstruct the (normalised) patch at half
    resolution from feat8 + feat16, forcing the shallow features to keep fine detail.

    ``(feat8 (B, C8, H/8, W/8), feat16 (B, C16, H/16, W/16)) -> (B, 3, H/2, W/2)``.
    """

    def __init__(self, feat8_ch: int, feat16_ch: int, channels: int) -> None:
        super().__init__()
        self.lateral8 = ConvBNReLU(feat8_ch, channels, kernel=1)
        self.lateral16 = ConvBNReLU(feat16_ch, channels, kernel=1)
        half, quarter = max(channels // 2, 1), max(channels // 4, 1)
        self.refine = ConvBNReLU(channels, channels)
        # Two x2 steps: stride 8 -> 4 -> 2, halving the width each time.
        self.up = nn.ModuleList([ConvBNReLU(channels, half), ConvBNReLU(half, quarter)])
        self.to_rgb = nn.Conv2d(quarter, 3, 3, padding=1)

    def forward(self, feat8: torch.Tensor, feat16: torch.Tensor) -> torch.Tensor:
        x = self.lateral8(feat8) + F.interpolate(
            self.lateral16(feat16), size=feat8.shape[-2:], mode="bilinear", align_corners=False
        )
        x = self.refine(x)
        for conv in self.up:
            x = conv(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))
        return self.to_rgb(x)


class FCNAuxHead(nn.Module):
    """FCN auxiliary classifier on ResNet layer 3 (deep supervision of the semantic encoder)."""

    def __init__(self, in_ch: int, channels: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            ConvBNReLU(in_ch, channels, 3),
            nn.Dropout2d(dropout),
            nn.Conv2d(channels, num_classes, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class TrainingHeads(nn.Module):
    """SR decoder, FCN aux head and the two projections of the feature-affinity loss.

    The affinity projections map the shallow feat16 and the semantic latent embedding to a
    common width; the loss compares their pixel-to-pixel cosine-similarity matrices so the shallow
    branch learns which pixels belong together from the semantic branch.
    """

    def __init__(self, config: SGHRQConfig) -> None:
        super().__init__()
        c = config
        self.sr_decoder = SRDecoder(c.stdc_widths[2], c.stdc_widths[3], c.sr_channels)
        self.fcn = FCNAuxHead(c.resnet_widths[2], c.fcn_channels, c.num_classes, c.dropout)
        self.affinity_shallow = nn.Conv2d(c.stdc_widths[3], c.affinity_channels, 1)
        self.affinity_semantic = nn.Conv2d(c.query_channels, c.affinity_channels, 1)

    def forward(
        self,
        image: torch.Tensor,
        layer3: torch.Tensor,
        embedding: torch.Tensor,
        feat8: torch.Tensor,
        feat16: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """``image``: the normalised patch ``(B, 3, H, W)``; the rest as produced by the branches.

        Returns ``fcn`` logits (stride 32 of the patch), ``sr`` and ``sr_target``
        ``(B, 3, H/2, W/2)``, ``affinity_shallow`` and ``affinity_semantic``
        ``(B, A, H/32, W/32)``.
        """
        shallow = F.adaptive_avg_pool2d(
            self.affinity_shallow(feat16), (embedding.shape[-2], embedding.shape[-1])
        )
        return {
            "fcn": self.fcn(layer3),
            "sr": self.sr_decoder(feat8, feat16),
            "sr_target": F.avg_pool2d(image, 2),
            "affinity_shallow": shallow,
            "affinity_semantic": self.affinity_semantic(embedding),
        }
