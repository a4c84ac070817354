"""Encoders of the two image branches: ResNet-18 V1c (semantic), STDC1's early stages (shallow)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNReLU(nn.Sequential):
    """``kxk conv (no bias) -> BatchNorm -> ReLU``, padding keeps the size at stride 1."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int = 3,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        relu: bool = True,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_ch,
                out_ch,
                kernel,
                stride,
                padding=dilation * (kernel // 2),
                dilation=dilation,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_ch),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs) with optional dilation and a projected shortcut."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        stride: int = 1,
        dilation: int = 1,
        first_dilation: int | None = None,
    ) -> None:
        super().__init__()
        first_dilation = first_dilation or dilation
        self.conv1 = ConvBNReLU(in_ch, out_ch, 3, stride, dilation=first_dilation)
        self.conv2 = ConvBNReLU(out_ch, out_ch, 3, 1, dilation=dilation, relu=False)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = ConvBNReLU(in_ch, out_ch, 1, stride, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.shortcut(x), inplace=True)


class ResNetV1c(nn.Module):
    """ResNet-18 with the V1c deep stem at output stride 8.

    Stages 1-4 use strides 1, 2, 1, 1 and dilations 1, 1, 2, 4 (first block of a dilated stage
    at half the dilation, "contract dilation"), so layer 3 and layer 4 stay at stride 8.
    ``forward`` returns ``(layer3, layer4)``: ``(B, widths[2], H/8, W/8)`` and
    ``(B, widths[3], H/8, W/8)`` for an input ``(B, 3, H, W)``.
    """

    STRIDES = (1, 2, 1, 1)
    DILATIONS = (1, 1, 2, 4)
    BLOCKS = (2, 2, 2, 2)

    def __init__(
        self, stem_widths: tuple[int, int, int], widths: tuple[int, int, int, int]
    ) -> None:
        super().__init__()
        s1, s2, s3 = stem_widths
        self.stem = nn.Sequential(
            ConvBNReLU(3, s1, 3, stride=2),
            ConvBNReLU(s1, s2),
            ConvBNReLU(s2, s3),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages = []
        in_ch = s3
        for width, stride, dilation, blocks in zip(
            widths, self.STRIDES, self.DILATIONS, self.BLOCKS, strict=True
        ):
            first = BasicBlock(in_ch, width, stride, dilation, first_dilation=max(1, dilation // 2))
            rest = [BasicBlock(width, width, 1, dilation) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(first, *rest))
            in_ch = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, layer3, layer4 = self.features(x)
        return layer3, layer4

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(layer1, layer3, layer4)``: layer 1 at stride 4 (the low-level features a
        DeepLabV3+ decoder reads) besides the two stride-8 outputs of :meth:`forward`."""
        layer1 = self.layer1(self.stem(x))
        layer3 = self.layer3(self.layer2(layer1))
        return layer1, layer3, self.layer4(layer3)


class STDCBlock(nn.Module):
    """Short-Term Dense Concatenate block (4 convs of width 1/2, 1/4, 1/8, 1/8 of ``out_ch``).

    At stride 2 the first output is downsampled by a depthwise 3x3 conv before the next convs and
    by 3x3 average pooling for the concatenation, as in STDC.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        parts = (out_ch // 2, out_ch // 4, out_ch // 8, out_ch // 8)
        self.convs = nn.ModuleList([ConvBNReLU(in_ch, parts[0], kernel=1)])
        for i in range(1, 4):
            self.convs.append(ConvBNReLU(parts[i - 1], parts[i]))
        self.down: nn.Module = nn.Identity()
        self.skip: nn.Module = nn.Identity()
        if stride == 2:
            self.down = ConvBNReLU(parts[0], parts[0], 3, stride=2, groups=parts[0], relu=False)
            self.skip = nn.AvgPool2d(3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.convs[0](x)
        outs = [self.skip(first)]
        y = self.down(first)
        for conv in self.convs[1:]:
            y = conv(y)
            outs.append(y)
        return torch.cat(outs, dim=1)


class STDCShallow(nn.Module):
    """The first stages of STDC1 on the 9-channel full-resolution input.

    ``forward`` maps ``(B, in_ch, H, W)`` to ``(feat8, feat16)``:
    ``(B, widths[2], H/8, W/8)`` and ``(B, widths[3], H/16, W/16)``.
    """

    def __init__(
        self, in_ch: int, widths: tuple[int, int, int, int], blocks: tuple[int, int]
    ) -> None:
        super().__init__()
        w1, w2, w8, w16 = widths
        self.stem = nn.Sequential(
            ConvBNReLU(in_ch, w1, 3, stride=2), ConvBNReLU(w1, w2, 3, stride=2)
        )
        self.stage8 = self._stage(w2, w8, blocks[0])
        self.stage16 = self._stage(w8, w16, blocks[1])

    @staticmethod
    def _stage(in_ch: int, out_ch: int, blocks: int) -> nn.Sequential:
        return nn.Sequential(
            STDCBlock(in_ch, out_ch, 2), *[STDCBlock(out_ch, out_ch, 1) for _ in range(blocks - 1)]
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat8 = self.stage8(self.stem(x))
        return feat8, self.stage16(feat8)
