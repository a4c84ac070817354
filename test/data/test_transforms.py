"""TrainingCrops: shapes/dtypes, determinism per seed and epoch, padding, bad-sample skipping."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from uhr_seg_ros.data.datasets import BadSampleError, Sample, SegmentationDataset
from uhr_seg_ros.data.transforms import TrainingCrops, coarser_sensor, photometric_jitter


class _Frames(SegmentationDataset):
    """In-memory frames; frame ``i`` has label ``i`` everywhere; names in ``bad`` fail to load."""

    classes = ("a", "b", "c")
    palette = ((0, 0, 0), (1, 1, 1), (2, 2, 2))

    def __init__(self, sizes: list[tuple[int, int]], bad: tuple[int, ...] = ()) -> None:
        self.sizes, self.bad, self.loads = sizes, bad, 0

    @property
    def names(self) -> list[str]:
        return [f"frame{i}.png" for i in range(len(self.sizes))]

    def __getitem__(self, index: int) -> Sample:
        self.loads += 1
        if index in self.bad:
            raise BadSampleError(f"{self.names[index]}: mask missing")
        height, width = self.sizes[index]
        image = np.arange(height * width * 3, dtype=np.uint8).reshape(height, width, 3)
        return Sample(image, np.full((height, width), index, np.uint8), self.names[index])


def test_crops_have_contract_shapes_and_dtypes() -> None:
    crops = TrainingCrops(_Frames([(64, 80), (70, 70)]), crop_size=32, samples_per_epoch=5)
    assert len(crops) == 5
    image, label = crops[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert label.shape == (32, 32) and label.dtype == torch.int64
    assert image.min() >= 0 and image.max() <= 255
    assert set(label.unique().tolist()) <= {0, 1}


def test_crops_are_deterministic_per_seed_and_epoch() -> None:
    frames = _Frames([(64, 64)] * 3)
    first = TrainingCrops(frames, 24, 8, seed=1)
    again = TrainingCrops(frames, 24, 8, seed=1)
    other = TrainingCrops(frames, 24, 8, seed=2)
    assert all(torch.equal(first[i][0], again[i][0]) for i in range(8))
    assert not all(torch.equal(first[i][0], other[i][0]) for i in range(8))
    before = [first[i][0] for i in range(8)]
    first.set_epoch(1)
    assert not all(torch.equal(before[i], first[i][0]) for i in range(8))


def test_small_frames_are_padded_with_ignore() -> None:
    crops = TrainingCrops(
        _Frames([(10, 12)]), crop_size=32, samples_per_epoch=4, scale_range=(1.0, 1.0)
    )
    for index in range(4):
        image, label = crops[index]
        assert (label == 0).sum() == 10 * 12  # the frame (label 0)
        assert (label == 255).sum() == 32 * 32 - 10 * 12  # padding is ignored
        assert (image[:, label == 255] == 0).all()


def test_scale_jitter_resizes_to_crop_size() -> None:
    crops = TrainingCrops(
        _Frames([(200, 200)]), crop_size=40, samples_per_epoch=6, scale_range=(0.5, 2.0)
    )
    assert all(crops[i][0].shape == (3, 40, 40) for i in range(6))


def test_bad_samples_are_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    frames = _Frames([(32, 32)] * 3, bad=(1,))
    crops = TrainingCrops(frames, 16, 30, seed=0)
    with caplog.at_level(logging.WARNING):
        labels = {int(crops[i][1][0, 0]) for i in range(30)}
    assert labels == {0, 2}
    warnings = [r for r in caplog.records if "frame1.png" in r.getMessage()]
    assert len(warnings) == 1  # never drawn again once known bad


def test_all_bad_raises_a_clear_error() -> None:
    crops = TrainingCrops(_Frames([(8, 8)], bad=(0,)), 4, 1)
    with pytest.raises(RuntimeError, match="validate"):
        crops[0]


def test_decoded_frames_are_cached() -> None:
    frames = _Frames([(32, 32)] * 2)
    crops = TrainingCrops(frames, 8, 20)
    for index in range(20):
        crops[index]
    assert frames.loads == 2
    tiny_cache = TrainingCrops(frames, 8, 20, cache_mb=0.0)
    frames.loads = 0
    for index in range(20):
        tiny_cache[index]
    assert frames.loads == 20


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="scale_range"):
        TrainingCrops(_Frames([(8, 8)]), 4, 1, scale_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="empty"):
        TrainingCrops(_Frames([]), 4, 1)


def test_gsd_ratio_zooms_coarse_sources_to_the_model_resolution() -> None:
    frames = _Frames([(64, 64)])
    native = TrainingCrops(frames, crop_size=32, samples_per_epoch=1, scale_range=(1.0, 1.0))
    coarse = TrainingCrops(
        frames, crop_size=32, samples_per_epoch=1, scale_range=(1.0, 1.0), gsd_ratio=2.0
    )
    # a 2x coarser source: the 32 px crop covers a 16 px window, upsampled
    assert native._random_window(frames[0], np.random.default_rng(0))[0].shape == (32, 32, 3)
    window = coarse._random_window(frames[0], np.random.default_rng(0))[0]
    assert window.shape == (32, 32, 3)
    assert len(np.unique(window[::2, ::2].reshape(-1, 3), axis=0)) <= 16 * 16
    with pytest.raises(ValueError, match="gsd_ratio"):
        TrainingCrops(frames, crop_size=32, samples_per_epoch=1, gsd_ratio=0.0)


def test_photometric_jitter_changes_colours_but_not_shape_and_is_seeded() -> None:
    image = np.random.default_rng(1).integers(30, 220, (16, 16, 3), dtype=np.uint8)
    first = photometric_jitter(image, 0.3, np.random.default_rng(5))
    again = photometric_jitter(image, 0.3, np.random.default_rng(5))
    assert first.shape == image.shape and first.dtype == np.uint8
    np.testing.assert_array_equal(first, again)
    assert np.abs(first.astype(int) - image).mean() > 1.0
    crops = TrainingCrops(_Frames([(40, 40)]), crop_size=16, samples_per_epoch=2, color_jitter=0.3)
    plain = TrainingCrops(_Frames([(40, 40)]), crop_size=16, samples_per_epoch=2)
    assert not torch.equal(crops[0][0], plain[0][0])
    torch.testing.assert_close(crops[0][1], plain[0][1])  # labels untouched


def test_coarser_sensor_removes_detail_but_keeps_size_and_mean() -> None:
    image = np.random.default_rng(2).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    coarse = coarser_sensor(image, 2.5)
    assert coarse.shape == image.shape and coarse.dtype == np.uint8
    assert coarse.std() < 0.6 * image.std()  # fine texture averaged away
    assert abs(float(coarse.mean()) - float(image.mean())) < 3.0  # brightness kept
    np.testing.assert_array_equal(coarser_sensor(image, 1.0), image)


def test_coarse_sensor_factor_degrades_some_crops_and_leaves_labels() -> None:
    def crops(factor: float) -> TrainingCrops:
        frames = _Frames([(64, 64)])
        return TrainingCrops(
            frames, crop_size=32, samples_per_epoch=16, coarse_sensor_factor=factor
        )

    plain, coarse = crops(1.0), crops(2.5)
    changed = [not torch.equal(plain[i][0], coarse[i][0]) for i in range(16)]
    assert 2 <= sum(changed) <= 14  # about half the crops, chosen per crop
    for i in range(16):
        torch.testing.assert_close(plain[i][1], coarse[i][1])
    with pytest.raises(ValueError, match="coarse_sensor_factor"):
        crops(0.5)
