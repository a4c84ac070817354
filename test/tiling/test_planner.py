import dataclasses

import pytest
import torch

from uhr_seg_ros.tiling import (
    MemoryModel,
    PlanError,
    buffer_bytes,
    plan_tiles,
    round_up,
    tile_starts,
)
from uhr_seg_ros.tiling.planner import fitted_windows

MB = 2**20
CPU, CUDA = torch.device("cpu"), torch.device("cuda")
# A made-up but realistically shaped model: 50 MB fixed + 400 bytes per input pixel.
MODEL = MemoryModel(
    model_id="m",
    backend="cuda",
    device="cuda:test",
    precision="fp16",
    fixed_bytes=50 * MB,
    bytes_per_pixel=400.0,
)


def plan(height, width, cap_mb, device=CUDA, **kwargs):
    kwargs.setdefault("held_bytes", 100 * MB)
    return plan_tiles(
        height,
        width,
        cap_bytes=int(cap_mb * MB),
        memory_model=MODEL,
        num_classes=6,
        device=device,
        input_dtype=torch.float32,
        max_batch=4,
        **kwargs,
    )


def test_fit_bounds_every_measured_point():
    points = [(1, 256, 30 * MB), (1, 512, 110 * MB), (2, 512, 205 * MB), (4, 512, 420 * MB)]
    fitted = MemoryModel.fit(points, model_id="m", backend="cpu", device="cpu", precision="fp32")
    for batch, patch, measured in points:
        assert measured <= fitted.predict(batch, patch) <= measured * 1.15
    with pytest.raises(ValueError, match="two"):
        MemoryModel.fit(points[:1], model_id="m", backend="cpu", device="cpu", precision="fp32")


def test_memory_model_roundtrip(tmp_path):
    path = MODEL.save(tmp_path / "mm.json")
    assert MemoryModel.load(path) == MODEL
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="uhr-seg calibrate"):
        MemoryModel.load(tmp_path / "bad.json")


@pytest.mark.parametrize("cap_mb", [1000, 1500, 3000])
@pytest.mark.parametrize("size", [(2448, 2448), (5000, 5000), (20000, 20000), (120, 9000)])
def test_plan_stays_under_the_budget(cap_mb, size):
    p = plan(*size, cap_mb)
    assert p.predicted_peak_bytes <= p.budget_bytes == int(cap_mb * MB * 0.9)
    assert p.patch % 32 == 0 and 0 <= p.overlap < p.patch and 1 <= p.batch <= 4
    assert p.buffer_bytes == buffer_bytes(
        p.grid,
        p.batch,
        6,
        CUDA,
        torch.float32,
        frame_resident=p.frame_resident,
        with_confidence=False,
    )


def test_larger_cap_never_gives_a_smaller_patch():
    patches = [plan(5000, 5000, cap).patch for cap in (1000, 1500, 3000, 8000)]
    assert patches == sorted(patches) and patches[0] < patches[-1]


def test_huge_frame_streams_from_host():
    # 20000² uint8 RGB alone is 1.1 GB: it cannot be resident under a 1000 MB cap.
    assert not plan(20000, 20000, 1000).frame_resident
    assert plan(2448, 2448, 1000).frame_resident


def test_small_and_thin_frames_get_small_patches():
    assert plan(100, 130, 1500).patch == 160  # no window larger than the frame
    assert plan(40, 5000, 1500).patch == 256  # thin: context floor, not 40 px
    assert plan(40, 5000, 1500).grid.tile_height == 40


def test_refuses_a_cap_nothing_fits_with_an_actionable_message():
    with pytest.raises(PlanError, match=r"Raise the cap to at least \d+ MB"):
        plan(2448, 2448, 150)


def test_overrides_are_honoured_or_refused():
    p = plan(2448, 2448, 3000, patch_size=512, overlap=64, batch_size=2)
    assert (p.patch, p.overlap, p.batch) == (512, 64, 2)
    with pytest.raises(PlanError, match="multiple of 32"):
        plan(2448, 2448, 3000, patch_size=500)
    with pytest.raises(PlanError, match="overlap"):
        plan(2448, 2448, 3000, patch_size=512, overlap=512)
    with pytest.raises(PlanError, match="batch_size"):
        plan(2448, 2448, 3000, batch_size=9)
    with pytest.raises(PlanError, match="backend was built for"):
        plan(2448, 2448, 3000, patch_size=768, allowed_patches=(512, 1024))
    assert plan(2448, 2448, 3000, allowed_patches=(512, 1024)).patch in (512, 1024)


def test_held_bytes_and_margin_count_against_the_cap():
    roomy = plan(5000, 5000, 1500, held_bytes=0)
    crowded = plan(5000, 5000, 1500, held_bytes=600 * MB)
    assert crowded.predicted_peak_bytes - 600 * MB < roomy.predicted_peak_bytes
    with pytest.raises(PlanError, match="safety_margin"):
        plan(5000, 5000, 1500, safety_margin=1.0)


def test_cpu_plans_never_stream():
    assert plan(20000, 20000, 1000, device=CPU).frame_resident


def timed(seconds_per_pixel_by_patch, batch_penalty=1.0):
    """MODEL plus a fake time model: per-pixel seconds per patch side at batch 1, and batch 2
    forwards ``batch_penalty`` times slower per pixel (a CPU where batching does not pay)."""
    points = [[1, p, rate * p * p] for p, rate in seconds_per_pixel_by_patch.items()]
    points += [
        [2, p, 2 * batch_penalty * rate * p * p] for p, rate in seconds_per_pixel_by_patch.items()
    ]
    return dataclasses.replace(MODEL, time_points=points)


def plan_timed(height, width, cap_mb, model, **kwargs):
    return plan_tiles(
        height,
        width,
        cap_bytes=int(cap_mb * MB),
        memory_model=model,
        num_classes=6,
        device=CPU,
        input_dtype=torch.float32,
        max_batch=2,
        held_bytes=0,
        **kwargs,
    )


def test_time_model_interpolates_per_pixel_cost():
    model = timed({512: 1e-7, 1024: 2e-7})
    assert model.predict_seconds(1, 512) == pytest.approx(1e-7 * 512**2)
    assert model.predict_seconds(1, 768) == pytest.approx(1.5e-7 * 768**2)
    assert model.predict_seconds(1, 4096) == pytest.approx(2e-7 * 4096**2)  # clamped
    assert model.predict_seconds(3, 512) == pytest.approx(3e-7 * 512**2)  # nearest batch 2
    assert MODEL.predict_seconds(1, 512) is None and not MODEL.has_time


def test_time_model_uses_a_timed_patch_own_measurement():
    """A patch timed at batch 1 only keeps its own per-pixel cost at batch 4, instead of the
    batch-4 rate of some other patch side (on a CPU batching pays at 512 px, not at 1280)."""
    points = [[1, 512, 2e-7 * 512**2], [4, 512, 4 * 1e-7 * 512**2], [1, 1280, 3e-7 * 1280**2]]
    model = dataclasses.replace(MODEL, time_points=points)
    assert model.predict_seconds(4, 512) == pytest.approx(4 * 1e-7 * 512**2)  # measured
    assert model.predict_seconds(4, 1280) == pytest.approx(4 * 3e-7 * 1280**2)  # not 1e-7
    assert model.predict_seconds(4, 1024) == pytest.approx(4 * 1e-7 * 1024**2)  # untimed side


def test_planner_picks_the_fastest_plan_and_says_so():
    # Large windows cost more per pixel than small ones (caches): fewest windows is not fastest.
    slow_big = timed({256: 1e-7, 1024: 1e-7, 2048: 4e-7}, batch_penalty=1.3)
    p = plan_timed(2448, 2448, 8000, slow_big)
    assert p.batch == 1 and p.patch < 2048  # batching penalised, big patch slow
    expected = p.grid.num_tiles * slow_big.predict_seconds(1, p.patch)
    assert p.predicted_seconds == pytest.approx(expected)
    assert f"predicted {p.predicted_seconds:.2g} s" in p.describe()
    # It is the minimum over every plan the cap allows (a brute force over pinned plans).
    for patch in (256, 512, 1024, 1280, 2048, 2464):
        for batch in (1, 2):
            other = plan_timed(2448, 2448, 8000, slow_big, patch_size=patch, batch_size=batch)
            assert p.predicted_seconds <= other.predicted_seconds + 1e-12
    # Uniform per-pixel cost: the least recomputed overlap wins, i.e. ~the frame's own pixels.
    flat = plan_timed(2448, 2448, 8000, timed({256: 1e-7, 2048: 1e-7}))
    assert flat.grid.num_tiles * flat.patch**2 <= 1.1 * round_up(2448, 32) ** 2


def test_pinned_plan_wins_over_the_time_model():
    model = timed({256: 1e-7, 2048: 1e-7})
    p = plan_timed(2448, 2448, 8000, model, patch_size=512, overlap=64, batch_size=2)
    assert (p.patch, p.overlap, p.batch) == (512, 64, 2)
    pairs, single = divmod(p.grid.num_tiles, 2)
    assert p.predicted_seconds == pytest.approx(
        pairs * model.predict_seconds(2, 512) + single * model.predict_seconds(1, 512)
    )


def test_time_model_plans_stay_under_the_cap():
    model = timed({256: 1e-7, 1024: 1e-7, 2048: 1e-7})
    p = plan_timed(5000, 5000, 600, model)
    assert p.predicted_peak_bytes <= p.budget_bytes


def test_fitted_windows_cover_with_little_overlap():
    patch, overlap = fitted_windows(2448, 2, 32)
    assert patch % 32 == 0 and patch < 2448 and overlap >= patch / 16
    assert tile_starts(2448, patch, patch - overlap) == [0, 2448 - patch]
    assert fitted_windows(2448, 1, 32) is None


def test_memory_model_file_keeps_the_time_points(tmp_path):
    model = timed({512: 1e-7})
    assert MemoryModel.load(model.save(tmp_path / "t.json")) == model
