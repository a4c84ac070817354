"""Fixtures of the model room: tiny SGHRQ networks (milliseconds per forward on CPU)."""

from __future__ import annotations

import pytest
import torch

from uhr_seg_ros.model import SGHRQ, SGHRQConfig, build_model


@pytest.fixture
def tiny_model() -> SGHRQ:
    """A tiny 3-class network in eval mode with a non-trivial memory bank."""
    torch.manual_seed(0)
    model = build_model(SGHRQConfig.tiny(num_classes=3))
    model.memory.prototypes.normal_()
    model.memory.initialised.fill_(True)
    return model.eval()


@pytest.fixture
def patches() -> torch.Tensor:
    """Two random 64x64 RGB patches, float 0..255."""
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 255
