"""ASPP head of the semantic branch: global context of the downscaled patch."""

from __future__ import annotations

import torch
from torch import nn

from .backbones import ConvBNReLU


class ASPPHead(nn.Module):
    """Atrous spatial pyramid pooling with an image-pooling branch.

    ``forward`` maps ResNet layer 4 ``(B, in_ch, h, w)`` to ``(logits, embedding)``:
    ASPP logits ``(B, num_classes, h, w)`` (deep supervision) and the query module's latent
    embedding ``(B, query_channels, h, w)`` (1x1 reduction of the branch concat).
    """

    def __init__(
        self,
        in_ch: int,
        channels: int,
        dilations: tuple[int, ...],
        bottleneck: int,
        query_channels: int,
        num_classes: int,
        dropout: float,
    ) -> None:
        super().__init__()
        # No BN on the pooled 1x1 map: its batch statistics would need a batch > 1 per process.
        self.image_pool = nn.Sequential(nn.Conv2d(in_ch, channels, 1), nn.ReLU(inplace=True))
        self.branches = nn.ModuleList(
            ConvBNReLU(in_ch, channels, kernel=1 if d == 1 else 3, dilation=d) for d in dilations
        )
        concat = channels * (len(dilations) + 1)
        self.bottleneck = ConvBNReLU(concat, bottleneck, 3)
        self.classifier = nn.Sequential(
            nn.Dropout2d(dropout), nn.Conv2d(bottleneck, num_classes, 1)
        )
        self.to_embedding = ConvBNReLU(concat, query_channels, kernel=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Mean over H, W (not AdaptiveAvgPool2d) keeps the graph trivially exportable.
        pooled = self.image_pool(x.mean(dim=(2, 3), keepdim=True)).expand(-1, -1, *x.shape[2:])
        concat = torch.cat([pooled] + [branch(x) for branch in self.branches], dim=1)
        return self.classifier(self.bottleneck(concat)), self.to_embedding(concat)
