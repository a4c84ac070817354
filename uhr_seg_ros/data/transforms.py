"""Random training crops from whole UHR frames (torch ``Dataset``), deterministic per seed."""

from __future__ import annotations

import logging
from collections import OrderedDict

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from uhr_seg_ros.data.datasets import BadSampleError, Sample, SegmentationDataset
from uhr_seg_ros.data.palettes import IGNORE_INDEX

log = logging.getLogger(__name__)


class TrainingCrops(Dataset):
    """``samples_per_epoch`` random ``crop_size``² crops of a :class:`SegmentationDataset`.

    Crop ``i`` of epoch ``e`` depends only on ``(seed, e, i)``: a frame drawn uniformly, a scale
    from ``scale_range`` (>1 zooms in), a random window (frames smaller than the window are
    padded: image 0, label 255) and one of the 8 flips/rotations (aerial views have no "up").
    Returns ``(image, label)``: float32 ``3×c×c`` RGB 0..255 and int64 ``c×c`` (255 = ignore).

    ``gsd_ratio`` (the source's GSD over the model's, e.g. 2.39 for 1.2 m quadrants trained at
    0.5 m) multiplies the zoom, so every source reaches the model at one ground resolution.
    ``color_jitter`` > 0 applies random photometric changes of that strength (brightness,
    contrast, saturation, white balance, gamma, and sometimes blur or sensor noise), because
    users' cameras differ from DigitalGlobe's. ``coarse_sensor_factor`` > 1 resamples half the
    crops down by a random factor up to it and back up: the same ground seen by a coarser sensor
    or from higher up. It also keeps sharpness from telling sources apart, where some sources
    were upsampled to the model's GSD (the 1.2 m quadrants) and others are native.

    Decoded frames are kept in an LRU cache of ``cache_mb`` (a 2448² DeepGlobe tile is ~24 MB
    decoded and slow to decode); each DataLoader worker holds its own cache. A sample that turns
    out bad is skipped with a warning naming its file and never drawn again.
    """

    def __init__(
        self,
        dataset: SegmentationDataset,
        crop_size: int,
        samples_per_epoch: int,
        seed: int = 0,
        scale_range: tuple[float, float] = (0.75, 1.25),
        cache_mb: float = 2048.0,
        gsd_ratio: float = 1.0,
        color_jitter: float = 0.0,
        coarse_sensor_factor: float = 1.0,
    ) -> None:
        if len(dataset) == 0:
            raise ValueError("cannot crop from an empty data set (check the path and split)")
        if crop_size < 1 or samples_per_epoch < 1:
            raise ValueError(
                f"crop_size and samples_per_epoch must be >= 1, got {crop_size}, "
                f"{samples_per_epoch}"
            )
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be 0 < low <= high, got {scale_range}")
        self.dataset = dataset
        self.crop_size = crop_size
        self.samples_per_epoch = samples_per_epoch
        self.seed = seed
        self.scale_range = scale_range
        if gsd_ratio <= 0 or not 0 <= color_jitter < 1:
            raise ValueError(
                f"need gsd_ratio > 0 and 0 <= color_jitter < 1, got {gsd_ratio}, {color_jitter}"
            )
        if coarse_sensor_factor < 1:
            raise ValueError(f"coarse_sensor_factor must be >= 1, got {coarse_sensor_factor}")
        self.gsd_ratio = gsd_ratio
        self.color_jitter = color_jitter
        self.coarse_sensor_factor = coarse_sensor_factor
        self.epoch = 0
        self._cache_budget = int(cache_mb * 2**20)
        self._cache: OrderedDict[int, Sample] = OrderedDict()
        self._cache_bytes = 0
        self._bad: set[int] = set()

    def set_epoch(self, epoch: int) -> None:
        """Draw a fresh set of crops (call once per epoch, like ``DistributedSampler``)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        sample = self._draw_sample(rng)
        image, label = self._random_window(sample, rng)
        flip = int(rng.integers(8))
        image, label = _dihedral(image, flip), _dihedral(label, flip)
        if self.coarse_sensor_factor > 1 and rng.random() < 0.5:
            image = coarser_sensor(image, rng.uniform(1.0, self.coarse_sensor_factor))
        if self.color_jitter > 0:
            image = photometric_jitter(image, self.color_jitter, rng)
        return (
            torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float(),
            torch.from_numpy(np.ascontiguousarray(label)).long(),
        )

    def _draw_sample(self, rng: np.random.Generator) -> Sample:
        while True:
            good = [i for i in range(len(self.dataset)) if i not in self._bad]
            if not good:
                raise RuntimeError(
                    "every sample of the data set is bad; run validate() on it "
                    "and fix the files it names"
                )
            index = good[rng.integers(len(good))]
            try:
                return self._load(index)
            except BadSampleError as exc:
                log.warning("skipping bad sample: %s", exc)
                self._bad.add(index)

    def _load(self, index: int) -> Sample:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        sample = self.dataset[index]
        size = sample.image.nbytes + sample.label.nbytes
        while self._cache and self._cache_bytes + size > self._cache_budget:
            _, evicted = self._cache.popitem(last=False)
            self._cache_bytes -= evicted.image.nbytes + evicted.label.nbytes
        if size <= self._cache_budget:
            self._cache[index] = sample
            self._cache_bytes += size
        return sample

    def _random_window(self, sample: Sample, rng: np.random.Generator):
        """A square window of side crop/scale at a random place, resized to crop_size."""
        crop = self.crop_size
        scale = rng.uniform(*self.scale_range) * self.gsd_ratio
        side = max(1, round(crop / scale))
        height, width = sample.label.shape
        top = _window_start(height, side, rng)
        left = _window_start(width, side, rng)
        image = np.zeros((side, side, 3), np.uint8)
        label = np.full((side, side), IGNORE_INDEX, np.uint8)
        src_y, src_x = (
            slice(max(top, 0), min(top + side, height)),
            slice(max(left, 0), min(left + side, width)),
        )
        dst_y = slice(src_y.start - top, src_y.stop - top)
        dst_x = slice(src_x.start - left, src_x.stop - left)
        image[dst_y, dst_x] = sample.image[src_y, src_x]
        label[dst_y, dst_x] = sample.label[src_y, src_x]
        if side != crop:
            shrink = side > crop
            image = np.asarray(
                cv2.resize(
                    image,
                    (crop, crop),
                    interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR,
                )
            )
            label = np.asarray(cv2.resize(label, (crop, crop), interpolation=cv2.INTER_NEAREST))
        return image, label


def _window_start(extent: int, side: int, rng: np.random.Generator) -> int:
    """Top/left of a window: inside the frame if it fits, else the frame lands inside it."""
    if extent >= side:
        return int(rng.integers(extent - side + 1))
    return -int(rng.integers(side - extent + 1))


def _dihedral(array: np.ndarray, which: int) -> np.ndarray:
    """One of the 8 flips/right-angle rotations of an H×W[×C] array (``which`` in 0..7)."""
    if which & 4:
        array = array.swapaxes(0, 1)
    if which & 2:
        array = array[::-1]
    if which & 1:
        array = array[:, ::-1]
    return array


def coarser_sensor(image: np.ndarray, factor: float) -> np.ndarray:
    """``image`` (H×W×3 uint8) as a sensor ``factor`` times coarser would record it, at the
    same pixel size: area-downsampled, then bilinearly upsampled back."""
    height, width = image.shape[:2]
    small = (max(1, round(width / factor)), max(1, round(height / factor)))
    coarse = cv2.resize(image, small, interpolation=cv2.INTER_AREA)
    return np.asarray(cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR))


def photometric_jitter(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Random camera-like colour change of an H×W×3 uint8 RGB crop (``strength`` in [0, 1)).

    Brightness, contrast and saturation factors in ``1 ± strength``, per-channel gains (white
    balance) in ``1 ± strength/2``, gamma in ``1 ± strength``; with probability 0.2 each a
    Gaussian blur (defocus, coarser sensors) and Gaussian noise.
    """
    x = image.astype(np.float32) / 255.0
    x = x * rng.uniform(1 - strength / 2, 1 + strength / 2, size=3).astype(np.float32)
    x = x * rng.uniform(1 - strength, 1 + strength)
    mean = x.mean()
    x = (x - mean) * rng.uniform(1 - strength, 1 + strength) + mean
    grey = x.mean(axis=-1, keepdims=True)
    x = (x - grey) * rng.uniform(1 - strength, 1 + strength) + grey
    x = np.clip(x, 0.0, 1.0) ** rng.uniform(1 - strength, 1 + strength)
    if rng.random() < 0.2:
        x = cv2.GaussianBlur(x, (0, 0), sigmaX=float(rng.uniform(0.5, 1.5)))
    if rng.random() < 0.2:
        x = x + rng.normal(0.0, 0.03 * strength / 0.3, size=x.shape).astype(np.float32)
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
