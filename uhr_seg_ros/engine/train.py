"""SGHRQ training: the paper's recipe, resumable, single process or DDP under ``torchrun``.

Recipe (reference facts): SGD lr 0.01, momentum 0.9, weight decay 5e-4; poly decay (power 0.9)
to a floor of 1e-4; random crops; every loss of :mod:`uhr_seg_ros.engine.losses`; a memory-bank
write on every step (inside ``forward_train``, averaged across processes under DDP).

Output directory::

    last.pt          training state (model + optimizer + scheduler + RNG + iteration): --resume
    model.pt         the inference weights in fp16 (what ``load_checkpoint`` and the node use)
    train_log.csv    one row per ``run.log_every`` iterations (losses, lr, images/s)
    val_log.csv      one row per validation (mIoU and per-class IoU)
    tensorboard/     the same scalars, when the ``tensorboard`` package is installed

Resuming from ``last.pt`` reproduces the uninterrupted run exactly in a single process (same
crops, same dropout masks, same weights); crops depend only on (seed, epoch, index).
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, DistributedSampler

from uhr_seg_ros.data.datasets import SegmentationDataset, build_dataset
from uhr_seg_ros.data.palettes import DEEPGLOBE_CLASSES, IGNORE_INDEX
from uhr_seg_ros.data.transforms import TrainingCrops
from uhr_seg_ros.engine.losses import CE_HEADS, LossWeights, SGHRQLoss
from uhr_seg_ros.engine.metrics import ConfusionMatrix
from uhr_seg_ros.model import SGHRQ, SGHRQConfig, build_model, load_checkpoint, save_checkpoint
from uhr_seg_ros.model.checkpoint import (
    CheckpointError,
    checkpoint_payload,
    model_from_payload,
    read_checkpoint,
)

log = logging.getLogger(__name__)

STATE_FORMAT = "uhr_seg_ros/train_state"
PRESETS = ("paper", "lite", "tiny")
LOSS_TERMS = (*CE_HEADS, "sr", "affinity")


class TrainingError(RuntimeError):
    """Training cannot go on (diverged, incompatible resume file); the message says what to do."""


# ------------------------------------------------------------------------------------ config
@dataclass(frozen=True)
class ModelSection:
    # SGHRQConfig preset: "paper" (reference widths), "lite" (shipped default) or "tiny" (tests).
    preset: str = "lite"
    # Class names in label order; their count is the number of classes.
    class_names: tuple[str, ...] = DEEPGLOBE_CLASSES
    # Other SGHRQConfig fields to override, e.g. {memory_momentum: 0.95}.
    overrides: Mapping[str, Any] = field(default_factory=dict)
    # Start from this model checkpoint's weights (fine-tuning) instead of random ones.
    init_from: str | None = None

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"model.preset must be one of {PRESETS}, got {self.preset!r}")

    def build_config(self) -> SGHRQConfig:
        base = getattr(SGHRQConfig, self.preset)(len(self.class_names), self.class_names)
        return SGHRQConfig.from_dict({**base.to_dict(), **dict(self.overrides)})


@dataclass(frozen=True)
class DataSource:
    # Data set spec for uhr_seg_ros.data.datasets.build_dataset, e.g. "deepglobe:/data/dg".
    spec: str
    # Share of the training crops drawn from this source (relative to the other sources).
    weight: float = 1.0


@dataclass(frozen=True)
class DataSection:
    # Training sources (YAML: a list of specs or of {spec, weight}); their "train" split is used.
    train: tuple[DataSource, ...] = ()
    # Validation sources (specs); their "val" split is used. Empty: no validation.
    val: tuple[str, ...] = ()
    # Side of the square training crops (padded up to a multiple of 32 with label 255).
    crop_size: int = 1224
    # Random zoom range of the crops (>1 zooms in).
    scale_range: tuple[float, float] = (0.75, 1.25)
    # Side and number of the fixed validation crops.
    val_crop_size: int = 1024
    val_crops: int = 16
    # DataLoader worker processes per training process (0 = load in the main process).
    workers: int = 2
    # Decoded-frame cache of each worker, in MiB.
    cache_mb: float = 2048.0

    def __post_init__(self) -> None:
        sources = tuple(
            s if isinstance(s, DataSource)
            else DataSource(s) if isinstance(s, str)
            else _section(DataSource, s, "data.train")
            for s in self.train)
        object.__setattr__(self, "train", sources)
        if not sources:
            raise ValueError("data.train is empty: list at least one data set spec, e.g. "
                             "'deepglobe:/data/deepglobe' or 'synthetic:64@2048'")
        if any(s.weight <= 0 for s in sources):
            raise ValueError("every data.train weight must be > 0")
        if self.crop_size < SGHRQ.size_divisor or self.val_crop_size < SGHRQ.size_divisor:
            raise ValueError(f"crop sizes must be >= {SGHRQ.size_divisor}")


@dataclass(frozen=True)
class ScheduleSection:
    # Total optimiser steps.
    iterations: int = 80_000
    # Global batch (split evenly over DDP processes).
    batch_size: int = 8
    # "sgd" (the paper's recipe) or "adamw" (converges in far fewer steps from random init: the
    # choice for short CPU schedules without pretrained backbones; momentum is then beta1).
    optimizer: str = "sgd"
    # Poly decay: lr(t) = (lr - min_lr) * (1 - t/T)^poly_power + min_lr.
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    min_lr: float = 1e-4
    # Iterations between redraws of the crop set (an "epoch" of random crops).
    epoch_iterations: int = 1000

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.batch_size < 1 or self.epoch_iterations < 1:
            raise ValueError("schedule.iterations, batch_size and epoch_iterations must be >= 1")
        if not 0 < self.min_lr <= self.lr:
            raise ValueError(f"need 0 < schedule.min_lr <= schedule.lr, got {self.min_lr}, "
                             f"{self.lr}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"schedule.optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"schedule.momentum must be in [0, 1), got {self.momentum}")

    def lr_at(self, iteration: int) -> float:
        """Learning rate of step ``iteration`` (0-based)."""
        progress = min(iteration / self.iterations, 1.0)
        return (self.lr - self.min_lr) * (1.0 - progress) ** self.poly_power + self.min_lr


@dataclass(frozen=True)
class RunSection:
    # Seed of weights init, crops and dropout.
    seed: int = 0
    # "auto" (CUDA when available), "cpu" or "cuda".
    device: str = "auto"
    # fp16 autocast + gradient scaling on CUDA (ignored on CPU).
    amp: bool = True
    # Iterations between log rows; between validations (0 = only at the end); between saves.
    log_every: int = 20
    val_every: int = 2000
    checkpoint_every: int = 1000

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"run.device must be auto, cpu or cuda, got {self.device!r}")
        if self.log_every < 1 or self.checkpoint_every < 1 or self.val_every < 0:
            raise ValueError("run.log_every and run.checkpoint_every must be >= 1, val_every >= 0")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; YAML sections mirror the fields."""

    data: DataSection
    model: ModelSection = field(default_factory=ModelSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    loss: LossWeights = field(default_factory=LossWeights)
    run: RunSection = field(default_factory=RunSection)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML and ``weights_only`` friendly)."""
        return _plain(dataclasses.asdict(self))


_SECTIONS = {"model": ModelSection, "data": DataSection, "schedule": ScheduleSection,
             "loss": LossWeights, "run": RunSection}

#: What ``--reduced`` changes unless the YAML's own ``reduced:`` section says otherwise.
DEFAULT_REDUCED = {"data": {"crop_size": 512, "val_crop_size": 512, "val_crops": 4},
                   "schedule": {"iterations": 300, "batch_size": 2, "epoch_iterations": 100},
                   "run": {"log_every": 10, "val_every": 0, "checkpoint_every": 100}}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _section(cls: type, data: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a mapping, refusing unknown keys, lists -> tuples."""
    if not isinstance(data, Mapping):
        # ValueError, not TypeError: this is bad user input, which the CLI reports in one line.
        raise ValueError(f"{where} must be a mapping, got {type(data).__name__}")  # noqa: TRY004
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; valid keys: {sorted(known)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def train_config_from_dict(data: Mapping[str, Any], reduced: bool = False,
                           overrides: Sequence[str] = ()) -> TrainConfig:
    """Build a :class:`TrainConfig` from YAML-like data.

    ``reduced`` merges :data:`DEFAULT_REDUCED` and then the data's own ``reduced:`` section;
    ``overrides`` are ``"section.key=value"`` strings (value parsed as YAML) applied last.
    """
    data = dict(data)
    reduced_section = data.pop("reduced", {}) or {}
    if reduced:
        data = _merge(_merge(data, DEFAULT_REDUCED), reduced_section)
    for item in overrides:
        key, sep, raw = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise ValueError(f"override {item!r} must look like section.key=value, "
                             "e.g. schedule.iterations=500")
        data = _merge(data, {section: {name: yaml.safe_load(raw)}})
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise ValueError(f"unknown section(s) {unknown} in the training config; valid: "
                         f"{sorted(_SECTIONS)} and 'reduced'")
    return TrainConfig(**{name: _section(cls, data.get(name) or {}, name)
                          for name, cls in _SECTIONS.items()})


def load_train_config(path: str | os.PathLike, reduced: bool = False,
                      overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a training YAML (see ``config/train_*.yaml``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training config {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, Mapping):
        raise ValueError(f"{path} must hold a YAML mapping of sections")  # noqa: TRY004
    try:
        return train_config_from_dict(data, reduced, overrides)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


# --------------------------------------------------------------------------- data pipeline
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


def _training_crops(cfg: TrainConfig, class_names: tuple[str, ...]) -> ConcatDataset:
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


def _validation_crops(cfg: TrainConfig, class_names: tuple[str, ...]) -> ConcatDataset | None:
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


# ---------------------------------------------------------------------------- the run
class TrainStep(nn.Module):
    """``forward_train`` + loss behind one ``forward`` so that DDP can wrap the pair."""

    def __init__(self, model: SGHRQ, loss: SGHRQLoss) -> None:
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, images: torch.Tensor,
                labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.loss(self.model.forward_train(images, labels), labels)


@dataclass
class _Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_kind: str) -> _Distributed:
    """Join the ``torchrun`` process group (env ``WORLD_SIZE`` > 1), else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Distributed()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
    return _Distributed(dist.get_rank(), dist.get_world_size(),
                        int(os.environ.get("LOCAL_RANK", "0")))


def _pick_device(requested: str, local_rank: int) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("run.device is 'cuda' but torch sees no CUDA device; use 'auto' or 'cpu'")
    if requested == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


class _Logs:
    """CSV rows (+ TensorBoard scalars when available), written by the main process only."""

    TRAIN_FIELDS = ("iteration", "epoch", "lr", "loss", *LOSS_TERMS, "images_per_s", "elapsed_s")

    def __init__(self, out_dir: Path, class_names: tuple[str, ...], resume_at: int) -> None:
        self.train_csv = out_dir / "train_log.csv"
        self.val_csv = out_dir / "val_log.csv"
        self.val_fields = ("iteration", "miou", *(f"iou_{n}" for n in class_names))
        for path in (self.train_csv, self.val_csv):
            _truncate_after(path, resume_at)
        self.tensorboard = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(out_dir / "tensorboard"), purge_step=resume_at)
        except ImportError:
            log.info("tensorboard not installed: logging to CSV only")

    def _append(self, path: Path, fields: Sequence[str], row: Mapping[str, Any]) -> None:
        new = not path.exists()
        with path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            if new:
                writer.writeheader()
            writer.writerow(row)

    def train_row(self, row: Mapping[str, Any]) -> None:
        self._append(self.train_csv, self.TRAIN_FIELDS, row)
        if self.tensorboard:
            for key in ("lr", "loss", *LOSS_TERMS, "images_per_s"):
                self.tensorboard.add_scalar(f"train/{key}", row[key], row["iteration"])

    def val_row(self, iteration: int, miou: float, per_class: Sequence[float]) -> None:
        values = [iteration, miou, *per_class]
        self._append(self.val_csv, self.val_fields, dict(zip(self.val_fields, values)))
        if self.tensorboard:
            self.tensorboard.add_scalar("val/miou", miou, iteration)

    def close(self) -> None:
        if self.tensorboard:
            self.tensorboard.close()


def _truncate_after(path: Path, iteration: int) -> None:
    """Drop log rows written after ``iteration`` (by a run that died before its next save)."""
    if not path.exists():
        return
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
        fields = list(rows[0].keys()) if rows else None
    if not fields:
        return
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(r for r in rows if int(r["iteration"]) <= iteration)


@torch.no_grad()
def validate(model: SGHRQ, crops: ConcatDataset, device: torch.device,
             batch_size: int = 2) -> tuple[float, list[float]]:
    """mIoU (fraction) and per-class IoU (NaN for classes absent from truth and prediction) of
    ``model`` on fixed validation crops."""
    was_training = model.training
    model.eval()
    confusion = ConfusionMatrix(model.config.num_classes)
    loader = DataLoader(crops, batch_size=batch_size, shuffle=False, num_workers=0)
    for images, labels in loader:
        images, labels = pad_to_divisor(images.to(device), labels.to(device))
        prediction = model(images).argmax(dim=1)
        confusion.update(prediction.cpu().numpy(), labels.cpu().numpy())
    model.train(was_training)
    return confusion.miou(), list(confusion.iou())


@dataclass
class TrainResult:
    """What a finished run produced."""

    model_path: Path
    state_path: Path
    iterations: int
    final_loss: float
    val_miou: float | None


def _capture_rng(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _restore_rng(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _initial_model(cfg: TrainConfig) -> SGHRQ:
    config = cfg.model.build_config()
    model = build_model(config)
    if cfg.model.init_from:
        source = load_checkpoint(cfg.model.init_from)
        if source.config != config:
            raise ValueError(f"model.init_from {cfg.model.init_from} has a different model config "
                             "than this training config; match model.preset/class_names/overrides")
        # Missing training heads (inference-only files) keep their fresh initialisation.
        model.load_state_dict(source.state_dict(), strict=False)
        model.memory.prototypes.copy_(source.memory.prototypes)
        model.memory.initialised.copy_(source.memory.initialised)
    return model


def _load_state(path: Path, cfg: TrainConfig) -> tuple[SGHRQ, dict[str, Any]]:
    state = read_checkpoint(path)
    if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path} is not a training state file (use the last.pt that "
                              "'uhr-seg train' wrote; model files cannot be resumed)")
    model = model_from_payload(state["model"], source=str(path))
    if model.config != cfg.model.build_config():
        raise TrainingError(f"{path} was trained with another model config than this training "
                            "config describes; resume with the config it was started with")
    return model, dict(state)


def train(cfg: TrainConfig, out_dir: str | os.PathLike, resume: str | os.PathLike | None = None,
          progress: bool = True,
          validate_fn: Callable[[SGHRQ, int], tuple[float, list[float]] | None] | None = None,
          ) -> TrainResult:
    """Run (or resume) training; returns where the final weights are.

    ``validate_fn(model, iteration)`` replaces the default validation (mIoU of fixed crops of
    ``data.val``); it runs on the main process every ``run.val_every`` iterations and at the end.
    """
    out_dir = Path(out_dir)
    ctx = _init_distributed("cuda" if cfg.run.device != "cpu" and torch.cuda.is_available()
                            else "cpu")
    device = _pick_device(cfg.run.device, ctx.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if cfg.schedule.batch_size % ctx.world:
        raise ValueError(f"schedule.batch_size {cfg.schedule.batch_size} must be divisible by the "
                         f"number of processes ({ctx.world})")
    per_process_batch = cfg.schedule.batch_size // ctx.world
    use_amp = cfg.run.amp and device.type == "cuda"
    if ctx.main:
        out_dir.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(cfg.run.seed)
    start = 0
    state: dict[str, Any] | None = None
    if resume:
        model, state = _load_state(Path(resume), cfg)
        start = int(state["iteration"])
    else:
        model = _initial_model(cfg)
    class_names = model.config.class_names
    if ctx.world > 1 and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device).train()

    step_module: nn.Module = TrainStep(model, SGHRQLoss(cfg.loss))
    if ctx.world > 1:
        step_module = nn.parallel.DistributedDataParallel(
            step_module, device_ids=[device.index] if device.type == "cuda" else None)
    sched_cfg = cfg.schedule
    optimizer = _make_optimizer(model, sched_cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: sched_cfg.lr_at(it) / sched_cfg.lr)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        _restore_rng(state["rng"], device)
        if ctx.rank:  # ranks > 0 were not saved: reseed them deterministically
            torch.manual_seed(cfg.run.seed * 1_000_003 + ctx.rank * 7919 + start)
    elif ctx.rank:
        torch.manual_seed(cfg.run.seed + ctx.rank)

    crops = _training_crops(cfg, class_names)
    sampler = ResumableSampler(EpochCrops(crops), ctx.world, ctx.rank, cfg.run.seed)
    # A private generator: creating loader iterators must not consume the global RNG (dropout).
    loader = DataLoader(sampler.dataset, batch_size=per_process_batch, sampler=sampler,
                        num_workers=cfg.data.workers, persistent_workers=cfg.data.workers > 0,
                        drop_last=True, pin_memory=device.type == "cuda",
                        generator=torch.Generator().manual_seed(cfg.run.seed))
    val_crops = _validation_crops(cfg, class_names) if ctx.main and validate_fn is None else None
    if validate_fn is None and val_crops is not None:
        def validate_fn(m: SGHRQ, it: int) -> tuple[float, list[float]]:
            return validate(m, val_crops, device)

    logs = _Logs(out_dir, class_names, start) if ctx.main else None
    bar = None
    if ctx.main and progress:
        from tqdm import tqdm

        bar = tqdm(total=sched_cfg.iterations, initial=start, unit="it", dynamic_ncols=True)

    state_path = out_dir / "last.pt"
    batches: Iterator | None = None
    window_loss = torch.zeros(len(LOSS_TERMS) + 1, device=device)
    window_start, window_steps, run_start = time.perf_counter(), 0, time.perf_counter()
    last_loss, val_miou = float("nan"), None
    if ctx.main:
        log.info("training %s (%d classes) on %s, %d process(es), iterations %d..%d, batch %d, "
                 "crop %d", cfg.model.preset, len(class_names), device, ctx.world, start,
                 sched_cfg.iterations, sched_cfg.batch_size, cfg.data.crop_size)

    for iteration in range(start, sched_cfg.iterations):
        epoch, position = divmod(iteration, sched_cfg.epoch_iterations)
        if batches is None or position == 0:
            sampler.set_epoch(epoch)
            sampler.start = position * per_process_batch
            batches = iter(loader)
        images, labels = next(batches)
        images, labels = pad_to_divisor(images.to(device, non_blocking=True),
                                        labels.to(device, non_blocking=True))

        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            loss, terms = step_module(images, labels)
        if not torch.isfinite(loss):
            raise TrainingError(f"loss became {loss.item()} at iteration {iteration}; training "
                                f"diverged. Lower schedule.lr or resume from {state_path}")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()

        window_loss += torch.stack([loss.detach().float(), *(terms[t].float() for t in LOSS_TERMS)])
        window_steps += 1
        done = iteration + 1
        if done % cfg.run.log_every == 0 or done == sched_cfg.iterations:
            if ctx.world > 1:
                dist.all_reduce(window_loss)
                window_loss /= ctx.world
            means = (window_loss / window_steps).tolist()
            now = time.perf_counter()
            speed = window_steps * sched_cfg.batch_size / (now - window_start)
            last_loss = means[0]
            if logs is not None:
                row = {"iteration": done, "epoch": epoch, "lr": optimizer.param_groups[0]["lr"],
                       "loss": means[0], **dict(zip(LOSS_TERMS, means[1:])),
                       "images_per_s": speed, "elapsed_s": now - run_start}
                logs.train_row(row)
            if bar is not None:
                bar.set_postfix(loss=f"{means[0]:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}",
                                img_s=f"{speed:.2f}")
            window_loss.zero_()
            window_start, window_steps = now, 0
        if bar is not None:
            bar.update(1)

        final = done == sched_cfg.iterations
        if validate_fn is not None and ctx.main and (
                final or (cfg.run.val_every and done % cfg.run.val_every == 0)):
            result = validate_fn(model, done)
            if result is not None:
                val_miou, per_class = result
                log.info("iteration %d: validation mIoU %.4f", done, val_miou)
                if logs is not None:
                    logs.val_row(done, val_miou, per_class)
        if final or done % cfg.run.checkpoint_every == 0:
            if ctx.main:
                _save_state(state_path, model, optimizer, scheduler, scaler, done, cfg, device)
            if ctx.world > 1:
                dist.barrier()

    if bar is not None:
        bar.close()
    model_path = out_dir / "model.pt"
    if ctx.main:
        if start >= sched_cfg.iterations:
            log.info("%s already reached %d iterations; nothing to train", resume,
                     sched_cfg.iterations)
        # SyncBatchNorm keeps BatchNorm's state-dict keys: the file loads into plain SGHRQ.
        palette = [list(colour) for colour in crops.datasets[0].dataset.palette]
        meta = _training_meta(cfg, ctx, last_loss, val_miou, run_start)
        save_checkpoint(model_path, model, half=True, inference_only=True, palette=palette,
                        training=meta)
        log.info("wrote %s (fp16 inference weights) and %s (resumable state)", model_path,
                 state_path)
    if logs is not None:
        logs.close()
    if ctx.world > 1:
        dist.barrier()
    return TrainResult(model_path, state_path, sched_cfg.iterations, last_loss, val_miou)


def _make_optimizer(model: nn.Module, sched: ScheduleSection) -> torch.optim.Optimizer:
    if sched.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=sched.lr, betas=(sched.momentum, 0.999),
                                 weight_decay=sched.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=sched.lr, momentum=sched.momentum,
                           weight_decay=sched.weight_decay)


def _save_state(path: Path, model: SGHRQ, optimizer: torch.optim.Optimizer,
                scheduler: Any, scaler: torch.amp.GradScaler, iteration: int, cfg: TrainConfig,
                device: torch.device) -> None:
    payload = {"format": STATE_FORMAT, "version": 1, "iteration": iteration,
               "model": checkpoint_payload(model), "optimizer": optimizer.state_dict(),
               "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
               "rng": _capture_rng(device), "train_config": cfg.to_dict()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _training_meta(cfg: TrainConfig, ctx: _Distributed, final_loss: float,
                   val_miou: float | None, run_start: float) -> dict[str, Any]:
    return {
        "iterations": cfg.schedule.iterations, "batch_size": cfg.schedule.batch_size,
        "crop_size": cfg.data.crop_size, "data": [s.spec for s in cfg.data.train],
        "val_data": list(cfg.data.val), "processes": ctx.world,
        "final_loss": None if math.isnan(final_loss) else final_loss,
        "val_miou": val_miou, "seconds_this_session": round(time.perf_counter() - run_start, 1),
        "torch": str(torch.__version__), "config": cfg.to_dict(),
    }
