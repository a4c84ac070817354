"""What the training loop iterates: weighted random crops per epoch, resumable mid-epoch.

Crops depend only on (seed, epoch, index), so a resumed run draws the same crops as an
uninterrupted one.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, Dataset, DistributedSampler

from uhr_seg_ros.data.datasets import SegmentationDataset, build_dataset, without_samples
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
            assert isinstance(part, TrainingCrops)
            part.set_epoch(epoch)
        return self.crops[index]


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` yielding ``(epoch, index)`` keys for :class:`EpochCrops` that can
    start mid-epoch (exact resume); used in single processes too (``num_replicas=1``) so both
    paths shuffle identically."""

    def __init__(self, dataset: EpochCrops, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        self.start = 0

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.epoch, i) for i in itertools.islice(super().__iter__(), self.start, None))

    def __len__(self) -> int:
        return super().__len__() - self.start


def _open_dataset(
    spec: str, split: str, class_names: tuple[str, ...], exclude: Sequence[str] = ()
) -> SegmentationDataset:
    """``build_dataset`` (``~`` and ``$VARS`` expanded) that refuses a class list mismatch,
    without the samples named in ``exclude``."""
    dataset = build_dataset(os.path.expandvars(os.path.expanduser(spec)), split)
    if tuple(dataset.classes) != tuple(class_names):
        raise ValueError(
            f"{spec} has classes {list(dataset.classes)} but the model is "
            f"configured with {list(class_names)}; set model.class_names to match"
        )
    if exclude:
        dataset = without_samples(dataset, exclude)
    return dataset


def gsd_ratio(dataset: SegmentationDataset, model_gsd_m: float | None) -> float:
    """Zoom that brings ``dataset`` to the model's GSD (1 when either is unknown)."""
    if model_gsd_m is None or dataset.gsd_m is None:
        return 1.0
    return dataset.gsd_m / model_gsd_m


def training_tile_ids(cfg: TrainConfig, class_names: tuple[str, ...]) -> list[str]:
    """``kind:name`` of every real (non-synthetic) sample the run trains on, for the
    checkpoint, so that ``uhr-seg eval`` can warn when it is asked to score training tiles."""
    ids = []
    for source in cfg.data.train:
        kind = source.spec.partition(":")[0].lower()
        if kind == "synthetic":
            continue
        dataset = _open_dataset(source.spec, source.split, class_names, source.exclude)
        ids += [f"{kind}:{name}" for name in dataset.names]
    if cfg.model.init_from:
        # Fine-tuned weights carry what the starting model saw too.
        from uhr_seg_ros.model.checkpoint import read_checkpoint

        meta = read_checkpoint(cfg.model.init_from).get("meta", {})
        ids += [i for i in meta.get("training", {}).get("training_tiles", []) if i not in ids]
    return ids


def training_crops(cfg: TrainConfig, class_names: tuple[str, ...]) -> ConcatDataset:
    """One ``TrainingCrops`` per source, sized by weight, concatenated (one epoch of crops)."""
    total = cfg.schedule.epoch_iterations * cfg.schedule.batch_size
    weight_sum = sum(s.weight for s in cfg.data.train)
    parts = []
    remaining = total
    for i, source in enumerate(cfg.data.train):
        dataset = _open_dataset(source.spec, source.split, class_names, source.exclude)
        last = i == len(cfg.data.train) - 1
        count = remaining if last else max(1, round(total * source.weight / weight_sum))
        remaining -= count
        if count < 1:
            raise ValueError(
                f"data.train weights leave no crops for {source.spec}; "
                "raise schedule.epoch_iterations or its weight"
            )
        parts.append(
            TrainingCrops(
                dataset,
                cfg.data.crop_size,
                count,
                seed=cfg.run.seed + i,
                scale_range=cfg.data.scale_range,
                cache_mb=cfg.data.cache_mb,
                gsd_ratio=gsd_ratio(dataset, cfg.data.gsd_m),
                color_jitter=cfg.data.color_jitter,
                coarse_sensor_factor=cfg.data.coarse_sensor_factor,
            )
        )
    return ConcatDataset(parts)


def validation_crops(cfg: TrainConfig, class_names: tuple[str, ...]) -> ConcatDataset | None:
    parts = []
    for spec in cfg.data.val:
        dataset = _open_dataset(spec, "val", class_names)
        parts.append(
            TrainingCrops(
                dataset,
                cfg.data.val_crop_size,
                cfg.data.val_crops,
                seed=cfg.run.seed + 1000,
                scale_range=(1.0, 1.0),
                cache_mb=cfg.data.cache_mb,
                gsd_ratio=gsd_ratio(dataset, cfg.data.gsd_m),
            )
        )
    return ConcatDataset(parts) if parts else None


def pad_to_divisor(
    images: torch.Tensor, labels: torch.Tensor, divisor: int = SGHRQ.size_divisor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad ``(B,3,H,W)`` images (0) and ``(B,H,W)`` labels (ignore) right/bottom so that
    ``H`` and ``W`` are multiples of ``divisor``; the padding never counts in any loss."""
    pad_h = -images.shape[-2] % divisor
    pad_w = -images.shape[-1] % divisor
    if pad_h or pad_w:
        images = F.pad(images, (0, pad_w, 0, pad_h), value=0.0)
        labels = F.pad(labels, (0, pad_w, 0, pad_h), value=IGNORE_INDEX)
    return images, labels
