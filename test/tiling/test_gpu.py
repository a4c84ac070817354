"""CUDA checks of the executor and the cap (skipped without a GPU; none ran on CPU-only CI)."""

import dataclasses

import numpy as np
import pytest
import torch

from uhr_seg_ros.backends.eager import EagerBackend
from uhr_seg_ros.model import SGHRQConfig, build_model
from uhr_seg_ros.pipeline import Segmenter, SegmenterSettings
from uhr_seg_ros.tiling import MemoryModel, TiledExecutor, plan_tiles

pytestmark = pytest.mark.gpu


def _mask(model, device, image, resident=True):
    backend = EagerBackend(model, device, "fp32", max_batch=4, cuda_graphs=False)
    memory = MemoryModel("stub", backend.name, device, "fp32", fixed_bytes=0, bytes_per_pixel=100.0)
    plan = plan_tiles(
        *image.shape[:2],
        cap_bytes=1 << 34,
        memory_model=memory,
        num_classes=model.config.num_classes,
        device=backend.device,
        input_dtype=torch.float32,
        max_batch=4,
        patch_size=64,
        overlap=16,
    )
    executor = TiledExecutor(backend)
    executor.prepare(dataclasses.replace(plan, frame_resident=resident), True)
    return executor.run(torch.from_numpy(image))


def test_cuda_executor_matches_cpu(stub_model):
    image = np.random.default_rng(0).integers(0, 256, (200, 150, 3), dtype=np.uint8)
    cpu_mask, cpu_conf, _ = _mask(stub_model, "cpu", image)
    for resident in (True, False):
        cuda_mask, cuda_conf, timings = _mask(stub_model, "cuda", image, resident)
        assert (cuda_mask == cpu_mask).mean() > 0.999  # cuDNN vs CPU conv rounding
        np.testing.assert_allclose(
            cuda_conf.astype(np.float32), cpu_conf.astype(np.float32), atol=5e-3
        )
        assert timings["infer"] > 0


@pytest.mark.parametrize("cap_mb", [1000, 1500])
def test_measured_peak_stays_under_the_cap(cap_mb):
    torch.manual_seed(0)
    model = build_model(SGHRQConfig.lite(6))
    segmenter = Segmenter.from_settings(
        SegmenterSettings(backend_order=("cuda",), memory_cap_mb=cap_mb), model=model
    )
    try:
        for side in (2448, 5000):
            image = np.random.default_rng(side).integers(0, 256, (side, side, 3), np.uint8)
            result = segmenter.segment(image)
            assert result.mask.shape == (side, side)
            assert result.peak_memory_mb <= cap_mb, result.plan.describe()
    finally:
        segmenter.close()


def test_a_lower_cap_at_run_time_lowers_what_is_reserved_and_close_frees_it():
    torch.manual_seed(0)
    model = build_model(SGHRQConfig.lite(6))
    segmenter = Segmenter.from_settings(
        SegmenterSettings(backend_order=("cuda",), memory_cap_mb=3000), model=model
    )
    device = segmenter.backend.device
    image = np.random.default_rng(0).integers(0, 256, (5000, 5000, 3), np.uint8)
    try:
        segmenter.segment(image)
        segmenter.set_memory_cap(1000)
        assert torch.cuda.memory_reserved(device) <= 1000 * 2**20
        result = segmenter.segment(image)
        assert result.peak_memory_mb <= 1000, result.plan.describe()
    finally:
        segmenter.close()
    # only the weights (model + its BN-folded copy) stay
    assert torch.cuda.memory_reserved(device) < 200 * 2**20
