"""What the training loop iterates: weighted random crops per epoch, resumable mid-epoch.

Crops depend only on (seed, epoch, index), so a resumed run draws the same crops as an
uninterrupted one.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, Dataset, DistributedSampler

from uhr_seg_ros.data.datasets import SegmentationDataset, build_dataset
from uhr_seg_ros.data.palettes import IGNORE_INDEX
from uhr_seg_ros.data.transforms import TrainingCrops
from uhr_seg_ros.model import SGHRQ
from uhr_seg_ros.training.config import TrainConfig


class EpochCrops(Dataset):
    """Training crops addressed by ``(epoch, index)``.

    The epoch travels with the index, so persistent DataLoader workers (and the decoded frames
    they cache) serve every epoch; ``TrainingCrops.set_epoch`` in the main process would not
    reach a worker's copy.
    """

    def __init__(self, crops: ConcatDataset) -> None:
        self.crops = crops

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = key
        for part in self.crops.datasets:
            part.set_epoch(epoch)
        return self.crops[index]


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` yielding ``(epoch, index)`` keys for :class:`EpochCrops` that can
    start mid-epoch (exact resume); used in single processes too (``num_replicas=1``) so both
    paths shuffle identically."""

    def __init__(self, dataset: EpochCrops, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed,
                         drop_last=True)
        self.start = 0

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.epoch, i) for i in itertools.islice(super().__iter__(), self.start, None))

    def __len__(self) -> int:
        return super().__len__() - self.start


def _open_dataset(spec: str, split: str, class_names: tuple[str, ...]) -> SegmentationDataset:
    """``build_dataset`` (``~`` and ``$VARS`` expanded) that refuses a class list mismatch."""
    dataset = build_dataset(os.path.expandvars(os.path.expanduser(spec)), split)
    if tuple(dataset.classes) != tuple(class_names):
        raise ValueError(f"{spec} has classes {list(dataset.classes)} but the model is "
                         f"configured with {list(class_names)}; set model.class_names to match")
    return dataset


def training_crops(cfg: TrainConfig, class_names: tuple[str, ...]) -> ConcatDataset:
    """One ``TrainingCrops`` per source, sized by weight, concatenated (one epoch of crops)."""
    total = cfg.schedule.epoch_iterations * cfg.schedule.batch_size
    weight_sum = sum(s.weight for s in cfg.data.train)
    parts = []
    remaining = total
    for i, source in enumerate(cfg.data.train):
        dataset = _open_dataset(source.spec, "train", class_names)
        last = i == len(cfg.data.train) - 1
        count = remaining if last else max(1, round(total * source.weight / weight_sum))
        remaining -= count
        if count < 1:
            raise ValueError(f"data.train weights leave no crops for {source.spec}; "
                             "raise schedule.epoch_iterations or its weight")
        parts.append(TrainingCrops(dataset, cfg.data.crop_size, count, seed=cfg.run.seed + i,
                                   scale_range=cfg.data.scale_range, cache_mb=cfg.data.cache_mb))
    return ConcatDataset(parts)


def validation_crops(cfg: TrainConfig, class_names: tuple[str, ...]) -> ConcatDataset | None:
    parts = []
    for spec in cfg.data.val:
        parts.append(TrainingCrops(_open_dataset(spec, "val", class_names),
                                   cfg.data.val_crop_size, cfg.data.val_crops,
                                   seed=cfg.run.seed + 1000, scale_range=(1.0, 1.0),
                                   cache_mb=cfg.data.cache_mb))
    return ConcatDataset(parts) if parts else None


def pad_to_divisor(images: torch.Tensor, labels: torch.Tensor,
                   divisor: int = SGHRQ.size_divisor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad ``(B,3,H,W)`` images (0) and ``(B,H,W)`` labels (ignore) right/bottom so that
    ``H`` and ``W`` are multiples of ``divisor``; the padding never counts in any loss."""
    pad_h = -images.shape[-2] % divisor
    pad_w = -images.shape[-1] % divisor
    if pad_h or pad_w:
        images = F.pad(images, (0, pad_w, 0, pad_h), value=0.0)
        labels = F.pad(labels, (0, pad_w, 0, pad_h), value=IGNORE_INDEX)
    return images, labels
