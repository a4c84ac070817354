"""The executor against a straightforward reference, on edge-case frames, and its memory."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from uhr_seg_ros.backends.eager import EagerBackend
from uhr_seg_ros.tiling import MemoryModel, TiledExecutor, buffer_bytes, calibrate, plan_tiles
from uhr_seg_ros.tiling.memory_model import cpu_peak_bytes

MB = 2**20


def reference_logits(
    model, image: np.ndarray, patch: int, overlap: int, blend: np.ndarray | None = None
) -> torch.Tensor:
    """The textbook slide inference: mirror-pad bottom/right to a patch where the frame is
    shorter, slide (last window flush with the border), weighted average. Full-frame float
    buffers (what the executor must avoid), written independently of uhr_seg_ros.tiling."""
    height, width = image.shape[:2]
    padded_image = np.pad(
        image,
        ((0, max(patch - height, 0)), (0, max(patch - width, 0)), (0, 0)),
        mode="reflect" if min(height, width) > 1 else "edge",
    )
    padded = torch.from_numpy(padded_image).permute(2, 0, 1).float()
    pad_h, pad_w = padded.shape[1:]
    stride = patch - overlap
    rows = max(math.ceil((pad_h - patch) / stride), 0) + 1
    cols = max(math.ceil((pad_w - patch) / stride), 0) + 1
    weight = (
        torch.ones(patch, patch)
        if blend is None
        else torch.outer(torch.from_numpy(blend), torch.from_numpy(blend))
    )
    total = torch.zeros(model.config.num_classes, pad_h, pad_w)
    count = torch.zeros(1, pad_h, pad_w)
    with torch.no_grad():
        for i in range(rows):
            for j in range(cols):
                y, x = min(i * stride, pad_h - patch), min(j * stride, pad_w - patch)
                total[:, y : y + patch, x : x + patch] += (
                    weight * model(padded[None, :, y : y + patch, x : x + patch])[0]
                )
                count[:, y : y + patch, x : x + patch] += weight
    return (total / count)[:, :height, :width]


def run_plan(
    model, image, patch, overlap, batch, *, confidence=False, resident=True, blend="uniform"
):
    backend = EagerBackend(model, "cpu", max_batch=4)
    memory = MemoryModel("stub", "cpu", "cpu", "fp32", fixed_bytes=0, bytes_per_pixel=100.0)
    plan = plan_tiles(
        *image.shape[:2],
        cap_bytes=1 << 40,
        memory_model=memory,
        num_classes=model.config.num_classes,
        device=backend.device,
        input_dtype=torch.float32,
        max_batch=4,
        patch_size=patch,
        overlap=overlap,
        batch_size=batch,
        with_confidence=confidence,
        blend=blend,
    )
    executor = TiledExecutor(backend)
    executor.prepare(dataclasses.replace(plan, frame_resident=resident), confidence)
    frame = torch.from_numpy(image if image.ndim == 3 else image[:, :, None])[..., :3]
    return executor, executor.run(frame)


@pytest.mark.parametrize(
    "shape,patch,overlap,batch",
    [
        ((96, 96, 3), 32, 8, 3),  # batches span rows of windows
        ((100, 75, 3), 32, 12, 4),  # non-multiple sizes: last windows pulled back
        ((20, 50, 3), 32, 8, 2),  # shorter than a patch: padded windows
        ((7, 300, 3), 64, 16, 4),  # very thin
        ((64, 64, 3), 64, 0, 1),  # exactly one window
        ((90, 130, 3), 64, 40, 4),  # overlap over half a patch: ring rows wrap
    ],
)
def test_mask_equals_reference(stub_model, shape, patch, overlap, batch):
    image = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    expected = reference_logits(stub_model, image, patch, overlap).argmax(0).numpy()
    _, (mask, confidence, timings) = run_plan(stub_model, image, patch, overlap, batch)
    assert mask.shape == shape[:2] and mask.dtype == np.uint8 and confidence is None
    np.testing.assert_array_equal(mask, expected)
    assert {"gather", "infer", "merge"} <= set(timings)


def test_confidence_is_max_softmax_of_averaged_logits(stub_model):
    image = np.random.default_rng(1).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    logits = reference_logits(stub_model, image, 32, 12)
    _, (mask, confidence, _) = run_plan(stub_model, image, 32, 12, 4, confidence=True)
    assert confidence.dtype == np.float16 and confidence.shape == mask.shape
    expected = logits.softmax(0).max(0).values.numpy()
    np.testing.assert_allclose(confidence.astype(np.float32), expected, atol=2e-3)


def test_streamed_frame_equals_resident(stub_model):
    image = np.random.default_rng(2).integers(0, 256, (100, 120, 3), dtype=np.uint8)
    _, (resident, _, _) = run_plan(stub_model, image, 32, 8, 4)
    executor, (streamed, _, _) = run_plan(stub_model, image, 32, 8, 4, resident=False)
    np.testing.assert_array_equal(streamed, resident)
    assert "frame_rows" in executor.buffers  # the band buffer was used, not the frame


@pytest.mark.parametrize("channels", [None, 1, 4])
def test_gray_and_rgba_frames(stub_model, channels):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    if channels is None:  # H×W gray: same as the gray value in all three channels
        image, as_rgb = rgb[..., 0], np.repeat(rgb[..., :1], 3, axis=2)
    elif channels == 1:
        image, as_rgb = rgb[..., :1], np.repeat(rgb[..., :1], 3, axis=2)
    else:  # alpha is ignored
        image, as_rgb = np.dstack([rgb, rng.integers(0, 256, (50, 70), dtype=np.uint8)]), rgb
    _, (mask, _, _) = run_plan(stub_model, image, 32, 8, 2)
    np.testing.assert_array_equal(mask, reference_logits(stub_model, as_rgb, 32, 8).argmax(0))


def test_buffers_are_reused_across_frames(stub_model):
    image = np.random.default_rng(4).integers(0, 256, (80, 80, 3), dtype=np.uint8)
    executor, (first, _, _) = run_plan(stub_model, image, 32, 8, 4)
    pointers = {name: t.data_ptr() for name, t in executor.buffers.items()}
    second, _, _ = executor.run(torch.from_numpy(image))
    np.testing.assert_array_equal(first, second)  # ring rows were zeroed after use
    executor.prepare(executor.plan)  # same plan: nothing reallocated
    assert pointers == {name: t.data_ptr() for name, t in executor.buffers.items()}
    with pytest.raises(ValueError, match="prepared for"):
        executor.run(torch.zeros(81, 80, 3, dtype=torch.uint8))


@pytest.mark.slow
@pytest.mark.parametrize("side", [2448, 5000, 10000])
def test_executor_memory_is_bounded_by_the_plan(pixel_stub_model, side):
    """Tracked buffers match the plan and do not grow with the frame height; while a frame
    runs, torch allocates nothing beyond one forward pass (profiler memory events)."""
    backend = EagerBackend(pixel_stub_model, "cpu", max_batch=2)
    memory = calibrate(backend, "stub", "fp32", points=((1, 256), (2, 256)))
    settings = {
        "cap_bytes": 600 * MB,
        "memory_model": memory,
        "num_classes": 2,
        "device": backend.device,
        "input_dtype": torch.float32,
        "max_batch": 2,
        "patch_size": 1024,
        "overlap": 128,
    }
    plan = plan_tiles(side, side, **settings)
    executor = TiledExecutor(backend)
    executor.prepare(plan)
    assert executor.buffer_bytes == plan.buffer_bytes
    assert plan.predicted_peak_bytes <= plan.budget_bytes
    one_patch_high = dataclasses.replace(plan, height=plan.patch).grid
    assert plan.buffer_bytes == buffer_bytes(
        one_patch_high,
        plan.batch,
        2,
        backend.device,
        torch.float32,
        frame_resident=True,
        with_confidence=False,
    )
    # Run the full width over three rows of windows (the height does not change any buffer).
    height = min(side, 3 * plan.stride + plan.overlap)
    executor.prepare(plan_tiles(height, side, **settings))
    frame = torch.zeros(height, side, 3, dtype=torch.uint8)
    frame[::7, ::3] = 200
    peak = cpu_peak_bytes(lambda: executor.run(frame))
    assert peak <= memory.predict(plan.batch, plan.patch) + MB


def test_sghrq_mask_equals_reference():
    """The real network (tiny, random init) through batched, overlapping, padded windows."""
    from uhr_seg_ros.model import SGHRQConfig, build_model

    torch.manual_seed(0)
    model = build_model(SGHRQConfig.tiny(3)).eval()
    image = np.random.default_rng(5).integers(0, 256, (90, 100, 3), dtype=np.uint8)
    expected = reference_logits(model, image, 64, 16).argmax(0).numpy()
    _, (mask, _, _) = run_plan(model, image, 64, 16, 4)
    np.testing.assert_array_equal(mask, expected)


@pytest.mark.parametrize("shape,patch,overlap", [((100, 75, 3), 32, 12), ((20, 50, 3), 32, 8)])
def test_hann_blend_equals_weighted_reference(stub_model, shape, patch, overlap):
    from uhr_seg_ros.tiling import blend_profile

    image = np.random.default_rng(6).integers(0, 256, shape, dtype=np.uint8)
    profile = blend_profile(patch, "hann")
    logits = reference_logits(stub_model, image, patch, overlap, blend=profile)
    _, (mask, confidence, _) = run_plan(
        stub_model, image, patch, overlap, 4, confidence=True, blend="hann"
    )
    np.testing.assert_array_equal(mask, logits.argmax(0).numpy())
    np.testing.assert_allclose(
        confidence.astype(np.float32), logits.softmax(0).max(0).values.numpy(), atol=2e-3
    )
    uniform, _, _ = run_plan(stub_model, image, patch, overlap, 4)[1]
    assert (uniform != mask).any()  # the weights did change something


def test_short_frames_are_mirrored_not_zero_padded(stub_model):
    """A frame shorter than the patch: the window beyond it is the frame's reflection."""
    image = np.random.default_rng(7).integers(0, 256, (20, 50, 3), dtype=np.uint8)
    executor, _ = run_plan(stub_model, image, 32, 8, 1)
    window = executor.buffers["batch"][0].permute(1, 2, 0).numpy()  # last window's pixels
    x = executor.plan.grid.col_starts[-1]
    expected = np.pad(image[:, x : x + 32], ((0, 12), (0, 0), (0, 0)), mode="reflect")
    np.testing.assert_array_equal(window, expected.astype(np.float32))
