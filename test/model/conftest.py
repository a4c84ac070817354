"""Fixtures of the model room (tiny_model, shared with other rooms, is in test/conftest.py)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def patches() -> torch.Tensor:
    """Two random 64x64 RGB patches, float 0..255."""
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 255
