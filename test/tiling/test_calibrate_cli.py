"""``uhr-seg calibrate`` writes a memory model that a Segmenter accepts (tiny model, CPU)."""

import json

import pytest
import torch

from uhr_seg_ros.cli import main
from uhr_seg_ros.model import SGHRQConfig, build_model, save_checkpoint
from uhr_seg_ros.pipeline import Segmenter, SegmenterSettings
from uhr_seg_ros.tiling import MemoryModel


def test_calibrate_then_segment_with_the_stored_model(tmp_path, monkeypatch):
    import uhr_seg_ros.tiling.memory_model as memory_model

    # small timed shapes (the shipped list goes up to 2464 px, seconds each on a CPU)
    monkeypatch.setattr(memory_model, "CPU_TIME_POINTS", ((1, 64), (1, 128), (2, 128)))
    torch.manual_seed(0)
    checkpoint = tmp_path / "tiny.pt"
    save_checkpoint(checkpoint, build_model(SGHRQConfig.tiny(3)))
    out = tmp_path / "mm.json"
    assert (
        main(
            [
                "calibrate",
                "--device",
                "cpu",
                "--model",
                str(checkpoint),
                "--repeats",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    stored = MemoryModel.load(out)
    assert stored.backend == "cpu" and len(stored.points) == 5
    assert all(measured <= stored.predict(b, p) for b, p, measured in stored.points)
    assert [(b, p) for b, p, _ in stored.time_points] == [(1, 64), (1, 128), (2, 128)]
    assert all(seconds > 0 for _, _, seconds in stored.time_points)
    plan = Segmenter.from_settings(
        SegmenterSettings(
            model_path=str(checkpoint), backend_order=("cpu",), memory_model_path=str(out)
        ),
    ).plan_for(300, 300)
    assert plan.predicted_seconds is not None and "predicted" in plan.describe()

    settings = SegmenterSettings(
        model_path=str(checkpoint), backend_order=("cpu",), memory_model_path=str(out)
    )
    assert Segmenter.from_settings(settings).memory_model == stored

    foreign = json.loads(out.read_text()) | {"model_id": "SGHRQ-other"}
    out.write_text(json.dumps(foreign))
    with pytest.raises(ValueError, match="re-run `uhr-seg calibrate`"):
        Segmenter.from_settings(settings)


def test_calibrate_measures_no_batch_above_max_batch(tmp_path):
    checkpoint = tmp_path / "tiny.pt"
    save_checkpoint(checkpoint, build_model(SGHRQConfig.tiny(3)))
    out = tmp_path / "mm.json"
    assert (
        main(
            [
                "calibrate",
                "--device",
                "cpu",
                "--model",
                str(checkpoint),
                "--max-batch",
                "1",
                "--no-time",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    batches = [batch for batch, _, _ in MemoryModel.load(out).points]
    assert batches and max(batches) == 1


def test_calibrate_builds_the_tensorrt_patch_sizes_it_will_measure(tmp_path, monkeypatch):
    import uhr_seg_ros.backends as backends
    from uhr_seg_ros.backends.base import BackendUnavailable
    from uhr_seg_ros.pipeline import TENSORRT_PATCH_SIZES

    checkpoint = tmp_path / "tiny.pt"
    save_checkpoint(checkpoint, build_model(SGHRQConfig.tiny(3)))
    seen = {}

    def spy(model, order, **options):
        seen.update(options, order=order)
        raise BackendUnavailable("spy")

    monkeypatch.setattr(backends, "create_backend", spy)
    assert main(["calibrate", "--device", "tensorrt", "--model", str(checkpoint)]) == 1
    assert seen["order"] == ("tensorrt",)
    assert tuple(seen["patch_sizes"]) == TENSORRT_PATCH_SIZES
