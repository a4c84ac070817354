"""The training configuration: YAML sections as frozen dataclasses, checked when built.

``config/train_*.yaml`` files mirror :class:`TrainConfig`; unknown keys and sections are refused
with the list of valid ones, ``--reduced`` and ``section.key=value`` overrides merge in before
validation.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from uhr_seg_ros.data.palettes import DEEPGLOBE_CLASSES
from uhr_seg_ros.model import SGHRQ, get_family, registered_families
from uhr_seg_ros.training.losses import loss_weights_for

#: Window/crop sides of every family are multiples of this.
SIZE_DIVISOR = SGHRQ.size_divisor


@dataclass(frozen=True)
class ModelSection:
    # Model family (uhr_seg_ros.model.registered_families()): "sghrq" or "scpseg".
    family: str = "sghrq"
    # Preset of the family's config: "paper" (reference widths), "lite" (shipped default) or
    # "tiny" (tests).
    preset: str = "lite"
    # Class names in label order; their count is the number of classes.
    class_names: tuple[str, ...] = DEEPGLOBE_CLASSES
    # Other fields of the family's config to override, e.g. {memory_momentum: 0.95}.
    overrides: Mapping[str, Any] = field(default_factory=dict)
    # Start from this model checkpoint's weights (fine-tuning) instead of random ones.
    init_from: str | None = None

    def __post_init__(self) -> None:
        if self.family not in registered_families():
            raise ValueError(
                f"model.family must be one of {registered_families()}, got {self.family!r}"
            )
        presets = get_family(self.family).presets
        if self.preset not in presets:
            raise ValueError(f"model.preset must be one of {presets}, got {self.preset!r}")

    def build_config(self) -> Any:
        family = get_family(self.family)
        base = family.preset(self.preset, len(self.class_names), self.class_names)
        return family.config_from_dict({**base.to_dict(), **dict(self.overrides)})


@dataclass(frozen=True)
class DataSource:
    # Data set spec for uhr_seg_ros.data.datasets.build_dataset, e.g. "deepglobe:/data/dg".
    spec: str
    # Share of the training crops drawn from this source (relative to the other sources).
    weight: float = 1.0
    # Which split of the source to train on ("train", or "all" to pool train+val+test).
    split: str = "train"
    # Sample names never trained on (held-out tiles and their quadrants), e.g. ["6399"].
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "exclude", tuple(str(name) for name in self.exclude))
        if self.split not in ("train", "val", "test", "all"):
            raise ValueError(
                f"data.train split must be train, val, test or all, got {self.split!r}"
            )


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
    # The model's ground sample distance (m/pixel): sources with a known other GSD (the 1.2 m
    # DeepGlobe quadrants) are resampled to it. null: crop every source at its own resolution.
    gsd_m: float | None = 0.5
    # Strength of the photometric augmentation (0 = off; 0.3 = +-30 % brightness etc.).
    color_jitter: float = 0.0
    # Half the crops are resampled down by a random factor in [1, this] and back up (a coarser
    # sensor, a higher flight; hides which sources were upsampled to gsd_m). 1 = off.
    coarse_sensor_factor: float = 1.0
    # Side and number of the fixed validation crops.
    val_crop_size: int = 1024
    val_crops: int = 16
    # DataLoader worker processes per training process (0 = load in the main process).
    workers: int = 2
    # Decoded-frame cache of each worker, in MiB.
    cache_mb: float = 2048.0

    def __post_init__(self) -> None:
        sources = tuple(
            s
            if isinstance(s, DataSource)
            else DataSource(s)
            if isinstance(s, str)
            else _section(DataSource, s, "data.train")
            for s in self.train
        )
        object.__setattr__(self, "train", sources)
        if not sources:
            raise ValueError(
                "data.train is empty: list at least one data set spec, e.g. "
                "'deepglobe:/data/deepglobe' or 'synthetic:64@2048'"
            )
        if any(s.weight <= 0 for s in sources):
            raise ValueError("every data.train weight must be > 0")
        if not self.coarse_sensor_factor >= 1:
            raise ValueError(
                f"data.coarse_sensor_factor must be >= 1 (1 = off), got {self.coarse_sensor_factor}"
            )
        if self.crop_size < SIZE_DIVISOR or self.val_crop_size < SIZE_DIVISOR:
            raise ValueError(f"crop sizes must be >= {SIZE_DIVISOR}")


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
    # Linear warm-up from lr/100 over the first steps (0 = none; helps AdamW from random init).
    warmup_iterations: int = 0
    # Iterations between redraws of the crop set (an "epoch" of random crops).
    epoch_iterations: int = 1000
    # Exponential moving average of the weights (training/ema.py): 0 = off; e.g. 0.999 averages
    # over about the last 1000 steps. When on, validation and model.pt use the average and
    # model_raw.pt keeps the last step's weights.
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.warmup_iterations < 0 or self.warmup_iterations >= self.iterations:
            raise ValueError("schedule.warmup_iterations must be in [0, iterations)")
        if self.iterations < 1 or self.batch_size < 1 or self.epoch_iterations < 1:
            raise ValueError("schedule.iterations, batch_size and epoch_iterations must be >= 1")
        if not 0 < self.min_lr <= self.lr:
            raise ValueError(
                f"need 0 < schedule.min_lr <= schedule.lr, got {self.min_lr}, {self.lr}"
            )
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"schedule.optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"schedule.momentum must be in [0, 1), got {self.momentum}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"schedule.ema_decay must be in [0, 1), got {self.ema_decay}")

    def lr_at(self, iteration: int) -> float:
        """Learning rate of step ``iteration`` (0-based)."""
        if iteration < self.warmup_iterations:
            fraction = (iteration + 1) / self.warmup_iterations
            return self.lr * (0.01 + 0.99 * fraction)
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
    # Loss weights of the model family (training.losses: LossWeights, SCPSegLossWeights).
    loss: Any = None
    run: RunSection = field(default_factory=RunSection)

    def __post_init__(self) -> None:
        weights = loss_weights_for(self.model.family, {} if self.loss is None else self.loss)
        object.__setattr__(self, "loss", weights)
        context = getattr(self.model.build_config(), "context", None)
        if context is not None:  # crops are neighbourhoods: their centre must be a window
            divisor = get_family(self.model.family).model_type.size_divisor
            for name in ("crop_size", "val_crop_size"):
                side = getattr(self.data, name)
                patch = round(side / context.neighbourhood)
                if patch % divisor or context.neighbourhood_side(patch) != side:
                    raise ValueError(
                        f"data.{name} {side} is not a window neighbourhood for "
                        f"{self.model.family}: use G = {context.neighbourhood:g} x a multiple "
                        f"of {divisor}, e.g. {context.neighbourhood_side(256)}"
                    )

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML and ``weights_only`` friendly)."""
        return _plain(dataclasses.asdict(self))


_SECTIONS = {
    "model": ModelSection,
    "data": DataSection,
    "schedule": ScheduleSection,
    "loss": None,
    "run": RunSection,
}

#: What ``--reduced`` changes unless the YAML's own ``reduced:`` section says otherwise.
DEFAULT_REDUCED = {
    "data": {"crop_size": 512, "val_crop_size": 512, "val_crops": 4},
    "schedule": {"iterations": 300, "batch_size": 2, "epoch_iterations": 100},
    "run": {"log_every": 10, "val_every": 0, "checkpoint_every": 100},
}


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
        raise ValueError(f"{where} must be a mapping, got {type(data).__name__}")
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


def train_config_from_dict(
    data: Mapping[str, Any], reduced: bool = False, overrides: Sequence[str] = ()
) -> TrainConfig:
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
            raise ValueError(
                f"override {item!r} must look like section.key=value, e.g. schedule.iterations=500"
            )
        data = _merge(data, {section: {name: yaml.safe_load(raw)}})
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise ValueError(
            f"unknown section(s) {unknown} in the training config; valid: "
            f"{sorted(_SECTIONS)} and 'reduced'"
        )
    # The loss section's keys depend on the model family: TrainConfig checks them.
    sections: dict[str, Any] = {
        name: (data.get(name) or {}) if cls is None else _section(cls, data.get(name) or {}, name)
        for name, cls in _SECTIONS.items()
    }
    return TrainConfig(**sections)


def load_train_config(
    path: str | os.PathLike, reduced: bool = False, overrides: Sequence[str] = ()
) -> TrainConfig:
    """Read a training YAML (see ``config/train_*.yaml``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training config {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, Mapping):
        raise ValueError(f"{path} must hold a YAML mapping of sections")
    try:
        return train_config_from_dict(data, reduced, overrides)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
