"""The executor's context gather for context-squeezing networks (SCPSeg): every window sees
its mirrored neighbourhood, resident or streamed, and the planner counts the gather buffers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uhr_seg_ros.backends import create_backend
from uhr_seg_ros.model import SCPSegConfig, build_model
from uhr_seg_ros.tiling import TiledExecutor, buffer_bytes
from uhr_seg_ros.tiling.geometry import TileGrid, reflect_indices
from uhr_seg_ros.tiling.plan import TilePlan

H, W, PATCH, OVERLAP = 150, 200, 64, 16


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(SCPSegConfig.tiny(3), training_heads=False).eval()


def _reference(model: torch.nn.Module, frame: torch.Tensor) -> np.ndarray:
    """Window by window: mirror-padded neighbourhood -> forward_context -> summed logits."""
    grid = TileGrid(H, W, PATCH, PATCH - OVERLAP)
    margin = model.context.margin(PATCH)
    side = model.context.neighbourhood_side(PATCH)
    image = frame.permute(2, 0, 1).float()
    total = torch.zeros(3, H, W)
    for _, y, x in grid.tiles():
        rows = torch.from_numpy(reflect_indices(H, side, start=y - margin))
        cols = torch.from_numpy(reflect_indices(W, side, start=x - margin))
        with torch.inference_mode():
            logits = model.forward_context(image[:, rows][:, :, cols][None])[0]
        total[:, y : y + PATCH, x : x + PATCH] += logits
    return total.argmax(0).numpy()


@pytest.mark.parametrize("resident", [True, False])
def test_executor_feeds_each_window_its_squeezed_neighbourhood(model, resident):
    frame = torch.randint(
        0, 256, (H, W, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(4)
    )
    executor = TiledExecutor(create_backend(model, order=("cpu",), max_batch=4))
    plan = TilePlan(H, W, PATCH, OVERLAP, 3, resident, 1 << 30, 1 << 30, 0, 0)
    executor.prepare(plan)
    assert "context_batch" in executor.buffers
    mask, _, _ = executor.run(frame)
    np.testing.assert_array_equal(mask, _reference(model, frame))


def test_gather_buffers_count_against_the_cap(model):
    grid = TileGrid(2448, 2448, 512, 384)
    plain = buffer_bytes(
        grid, 2, 6, torch.device("cpu"), torch.float32, frame_resident=True, with_confidence=False
    )
    squeezed = buffer_bytes(
        grid,
        2,
        6,
        torch.device("cpu"),
        torch.float32,
        frame_resident=True,
        with_confidence=False,
        context=model.context,
    )
    side = model.context.neighbourhood_side(512)
    # At least the float neighbourhood batch (2 x 3 x G x G) and the mirrored row band.
    assert squeezed - plain >= 2 * 3 * side * side * 4 + side * 2448 * 3
