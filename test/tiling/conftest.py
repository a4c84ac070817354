"""Fixtures for the tiling tests: a stub network that is fast and position-sensitive."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from uhr_seg_ros.backends.eager import EagerBackend
from uhr_seg_ros.model.contract import SegmentationModel


class StubSegNet(SegmentationModel):
    """Two 3×3 convolutions: logits depend on neighbours and on the zero padding at window
    borders, so a misplaced or mis-averaged window changes the mask."""

    def __init__(self, num_classes: int = 4, seed: int = 0) -> None:
        super().__init__()
        self.config = SimpleNamespace(num_classes=num_classes, class_names=())
        self.meta = {}
        generator = torch.Generator().manual_seed(seed)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, num_classes, 3, padding=1)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=generator) * 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(torch.relu(self.conv1(x / 255.0 - 0.5)))


class PixelStubNet(SegmentationModel):
    """The cheapest possible network (logits = a colour channel per class), for timing-free
    memory tests on very large frames."""

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.config = SimpleNamespace(num_classes=num_classes, class_names=())
        self.meta = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, : self.config.num_classes] * (1.0 / 255.0)


@pytest.fixture
def pixel_stub_model() -> PixelStubNet:
    return PixelStubNet().eval()


@pytest.fixture
def make_stub_model():
    """``make_stub_model(**kwargs)`` -> an eval-mode :class:`StubSegNet`."""
    return lambda **kwargs: StubSegNet(**kwargs).eval()


@pytest.fixture
def stub_model() -> StubSegNet:
    return StubSegNet().eval()


@pytest.fixture
def stub_backend(stub_model: StubSegNet) -> EagerBackend:
    return EagerBackend(stub_model, device="cpu", precision="fp32", max_batch=4)
