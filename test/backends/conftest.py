"""Fixtures of the backends room: a tiny SGHRQ network and a small batch of patches."""

from __future__ import annotations

import pytest
import torch

from uhr_seg_ros.model import SGHRQ, SGHRQConfig, build_model

PATCH = 64


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
    """Three 64x64 RGB patches, float 0..255: smooth colour fields plus noise, so that logits
    have spatial structure (argmax parity is meaningless on pure noise)."""
    generator = torch.Generator().manual_seed(1)
    coarse = torch.rand(3, 3, 4, 4, generator=generator)
    smooth = torch.nn.functional.interpolate(coarse, size=(PATCH, PATCH), mode="bilinear",
                                             align_corners=False)
    noise = torch.rand(3, 3, PATCH, PATCH, generator=generator)
    return (0.85 * smooth + 0.15 * noise) * 255
