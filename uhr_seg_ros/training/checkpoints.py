"""What a run writes and reads back: the resumable ``last.pt`` and the fp16 ``model.pt``.

``last.pt`` holds model + optimizer + scheduler + scaler + RNG + iteration + the config (+ the
weight average, when on), so a resumed single-process run reproduces the uninterrupted one
exactly.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from uhr_seg_ros.model import SGHRQ, SegmentationModel, build_model, load_checkpoint
from uhr_seg_ros.model.checkpoint import (
    CheckpointError,
    checkpoint_payload,
    model_from_payload,
    read_checkpoint,
)
from uhr_seg_ros.model.sghrq import TRAIN_HEADS_PREFIX
from uhr_seg_ros.training import TrainingError
from uhr_seg_ros.training.config import TrainConfig
from uhr_seg_ros.training.distributed import Distributed

STATE_FORMAT = "uhr_seg_ros/train_state"

log = logging.getLogger(__name__)


def capture_rng(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


#: Model config fields that no weight's shape depends on: a fine-tuning run may set its own.
SHAPELESS_FIELDS = ("input_blur_sigma", "dropout", "memory_momentum")


def initial_model(cfg: TrainConfig) -> SegmentationModel:
    """A fresh model, or ``model.init_from``'s weights when fine-tuning.

    Same classes: every weight and the memory bank carry over. Other classes (a user's own
    data set): the weights whose shapes match (backbones, ASPP, query MLP body: what transfers)
    carry over, the class-dependent layers (logit heads, the query MLP's first and last layer,
    the memory bank) start fresh. Fields that shape no tensor (input blur, dropout, bank
    momentum) follow the training config; any other difference (preset, widths) is refused.
    """
    config = cfg.model.build_config()
    model = build_model(config)
    if not cfg.model.init_from:
        return model
    source = load_checkpoint(cfg.model.init_from)
    # Fields that shape no tensor may change when fine-tuning (e.g. adding an input blur).
    free = {f: getattr(config, f) for f in SHAPELESS_FIELDS if hasattr(config, f)}
    same_classes = dataclasses.replace(
        source.config, num_classes=config.num_classes, class_names=config.class_names, **free
    )
    if same_classes != config:
        raise ValueError(
            f"model.init_from {cfg.model.init_from} has a different model config "
            "than this training config; match model.preset and overrides"
        )
    if dataclasses.replace(source.config, **free) == config:
        # Missing training heads (inference-only files) keep their fresh initialisation.
        model.load_state_dict(source.state_dict(), strict=False)
        if isinstance(model, SGHRQ) and isinstance(source, SGHRQ):
            model.memory.prototypes.copy_(source.memory.prototypes)
            model.memory.initialised.copy_(source.memory.initialised)
        return model
    own = model.state_dict()
    reused = {
        k: v
        for k, v in source.state_dict().items()
        if k in own
        and own[k].shape == v.shape
        and not k.startswith("memory.proto")
        and not k.startswith("memory.init")
    }
    model.load_state_dict(reused, strict=False)
    fresh = sorted(
        {
            k.rsplit(".", 1)[0]
            for k in own
            if k not in reused and not k.startswith(TRAIN_HEADS_PREFIX)
        }
    )
    log.info(
        "fine-tuning from %s (%d classes) to %d classes: reused %d of %d tensors; fresh: "
        "%s (and the training-only heads)",
        cfg.model.init_from,
        source.config.num_classes,
        config.num_classes,
        len(reused),
        len(own),
        ", ".join(fresh),
    )
    return model


def load_state(path: Path, cfg: TrainConfig) -> tuple[SegmentationModel, dict[str, Any]]:
    state = read_checkpoint(path)
    if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(
            f"{path} is not a training state file (use the last.pt that "
            "'uhr-seg train' wrote; model files cannot be resumed)"
        )
    model = model_from_payload(state["model"], source=str(path))
    if model.config != cfg.model.build_config():
        raise TrainingError(
            f"{path} was trained with another model config than this training "
            "config describes; resume with the config it was started with"
        )
    return model, dict(state)


def save_state(
    path: Path,
    model: SegmentationModel,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    iteration: int,
    cfg: TrainConfig,
    device: torch.device,
    ema: Mapping[str, torch.Tensor] | None = None,
) -> None:
    payload: dict[str, Any] = {
        "format": STATE_FORMAT,
        "version": 1,
        "iteration": iteration,
        "model": checkpoint_payload(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": capture_rng(device),
        "train_config": cfg.to_dict(),
    }
    if ema is not None:
        payload["ema"] = dict(ema)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def training_meta(
    cfg: TrainConfig, ctx: Distributed, final_loss: float, val_miou: float | None, run_start: float
) -> dict[str, Any]:
    return {
        "iterations": cfg.schedule.iterations,
        "batch_size": cfg.schedule.batch_size,
        "crop_size": cfg.data.crop_size,
        "data": [s.spec for s in cfg.data.train],
        "val_data": list(cfg.data.val),
        "processes": ctx.world,
        "final_loss": None if math.isnan(final_loss) else final_loss,
        "val_miou": val_miou,
        "seconds_this_session": round(time.perf_counter() - run_start, 1),
        "torch": str(torch.__version__),
        "config": cfg.to_dict(),
    }
