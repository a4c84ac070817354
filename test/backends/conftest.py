"""Fixtures of the backends room: a small batch of patches (tiny_model is in test/conftest.py)."""

from __future__ import annotations

import pytest
import torch

PATCH = 64


@pytest.fixture
def patches() -> torch.Tensor:
    """Three 64x64 RGB patches, float 0..255: smooth colour fields plus noise, so that logits
    have spatial structure (argmax parity is meaningless on pure noise)."""
    generator = torch.Generator().manual_seed(1)
    coarse = torch.rand(3, 3, 4, 4, generator=generator)
    smooth = torch.nn.functional.interpolate(
        coarse, size=(PATCH, PATCH), mode="bilinear", align_corners=False
    )
    noise = torch.rand(3, 3, PATCH, PATCH, generator=generator)
    return (0.85 * smooth + 0.15 * noise) * 255
