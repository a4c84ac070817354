import pytest
import torch

from uhr_seg_ros.tiling import MemoryModel, PlanError, buffer_bytes, plan_tiles

MB = 2**20
CPU, CUDA = torch.device("cpu"), torch.device("cuda")
# A made-up but realistically shaped model: 50 MB fixed + 400 bytes per input pixel.
MODEL = MemoryModel(model_id="m", backend="cuda", device="cuda:test", precision="fp16",
                    fixed_bytes=50 * MB, bytes_per_pixel=400.0)


def plan(height, width, cap_mb, device=CUDA, **kwargs):
    kwargs.setdefault("held_bytes", 100 * MB)
    return plan_tiles(height, width, cap_bytes=int(cap_mb * MB), memory_model=MODEL,
                      num_classes=6, device=device, input_dtype=torch.float32, max_batch=4,
                      **kwargs)


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
    assert p.buffer_bytes == buffer_bytes(p.grid, p.batch, 6, CUDA, torch.float32,
                                          frame_resident=p.frame_resident, with_confidence=False)


def test_larger_cap_never_gives_a_smaller_patch():
    patches = [plan(5000, 5000, cap).patch for cap in (1000, 1500, 3000, 8000)]
    assert patches == sorted(patches) and patches[0] < patches[-1]


def test_huge_frame_streams_from_host():
    # 20000² uint8 RGB alone is 1.1 GB: it cannot be resident under a 1000 MB cap.
    assert not plan(20000, 20000, 1000).frame_resident
    assert plan(2448, 2448, 1000).frame_resident


def test_small_and_thin_frames_get_small_patches():
    assert plan(100, 130, 1500).patch == 160          # no window larger than the frame
    assert plan(40, 5000, 1500).patch == 256          # thin: context floor, not 40 px
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
