"""The in-graph input blur (SGHRQConfig.input_blur_sigma): what it computes, and that it
survives checkpoints and torch.export like the rest of the graph."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from uhr_seg_ros.backends.export import export_program
from uhr_seg_ros.model import SGHRQConfig, build_model, load_checkpoint, save_checkpoint
from uhr_seg_ros.model.sghrq import gaussian_kernel
from uhr_seg_ros.tiling.memory_model import model_identity


def _pair(sigma: float) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A tiny model with the blur and the same weights without it."""
    torch.manual_seed(0)
    sharp = build_model(SGHRQConfig.tiny(), training_heads=False).eval()
    blurred = build_model(
        dataclasses.replace(SGHRQConfig.tiny(), input_blur_sigma=sigma), training_heads=False
    ).eval()
    blurred.load_state_dict(sharp.state_dict())
    return sharp, blurred


def test_kernel_is_a_normalised_gaussian_and_zero_is_identity():
    kernel = gaussian_kernel(1.2)
    assert kernel.shape == (1, 1, 9, 9)
    assert float(kernel.sum()) == pytest.approx(1.0)
    assert float(kernel[0, 0, 4, 4]) == float(kernel.max())
    assert gaussian_kernel(0.0).flatten().tolist() == [1.0]


def test_the_blurred_model_is_the_sharp_model_on_a_blurred_input():
    sharp, blurred = _pair(1.5)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3)) * 255
    kernel = gaussian_kernel(1.5)
    pad = kernel.shape[-1] // 2
    soft = F.conv2d(F.pad(x, (pad,) * 4, mode="reflect"), kernel.expand(3, 1, -1, -1), groups=3)
    with torch.inference_mode():
        torch.testing.assert_close(blurred(x), sharp(soft), atol=1e-4, rtol=1e-4)
        assert not torch.allclose(blurred(x), sharp(x), atol=1e-3)


def test_blur_survives_a_checkpoint_changes_the_identity_and_exports(tmp_path: Path):
    sharp, blurred = _pair(1.0)
    assert model_identity(sharp) != model_identity(blurred)  # its own memory model / engines
    loaded = load_checkpoint(save_checkpoint(tmp_path / "m.pt", blurred, half=True))
    assert loaded.config.input_blur_sigma == 1.0
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4)) * 255
    program = export_program(loaded, 64, max_batch=2)
    with torch.inference_mode():
        torch.testing.assert_close(program.module()(x), loaded(x), atol=1e-4, rtol=1e-4)
