"""Training of every model family: resumable, single process or DDP under ``torchrun``.

Recipe (reference facts): SGD lr 0.01, momentum 0.9, weight decay 5e-4; poly decay (power 0.9)
to a floor of 1e-4; random crops; every loss of :mod:`uhr_seg_ros.training.losses`; a memory-bank
write on every step (inside ``forward_train``, averaged across processes under DDP).

Output directory::

    last.pt          training state (model + optimizer + scheduler + RNG + iteration): --resume
    model.pt         the inference weights in fp16 (what ``load_checkpoint`` and the node use);
                     with ``schedule.ema_decay``, their moving average (training/ema.py)
    model_raw.pt     with ``schedule.ema_decay`` only: the last step's weights, not averaged
    train_log.csv    one row per ``run.log_every`` iterations (losses, lr, images/s)
    val_log.csv      one row per validation (mIoU and per-class IoU)
    tensorboard/     the same scalars, when the ``tensorboard`` package is installed

Resuming from ``last.pt`` reproduces the uninterrupted run exactly in a single process (same
crops, same dropout masks, same weights); crops depend only on (seed, epoch, index).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader

from uhr_seg_ros.evaluation.metrics import ConfusionMatrix
from uhr_seg_ros.model import SegmentationModel, save_checkpoint
from uhr_seg_ros.training import TrainingError
from uhr_seg_ros.training.checkpoints import (
    initial_model,
    load_state,
    restore_rng,
    save_state,
    training_meta,
)
from uhr_seg_ros.training.config import ScheduleSection, TrainConfig
from uhr_seg_ros.training.crops import (
    EpochCrops,
    ResumableSampler,
    TrainingCrops,
    pad_to_divisor,
    training_crops,
    training_tile_ids,
    validation_crops,
)
from uhr_seg_ros.training.distributed import init_distributed, pick_device
from uhr_seg_ros.training.ema import WeightAverage
from uhr_seg_ros.training.logs import TrainingLogs
from uhr_seg_ros.training.losses import build_loss

log = logging.getLogger(__name__)


class TrainStep(nn.Module):
    """``forward_train`` + loss behind one ``forward`` so that DDP can wrap the pair."""

    def __init__(self, model: SegmentationModel, loss: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.loss(self.model.forward_train(images, labels), labels)


@torch.no_grad()
def validate(
    model: SegmentationModel, crops: ConcatDataset, device: torch.device, batch_size: int = 2
) -> tuple[float, list[float]]:
    """mIoU (fraction) and per-class IoU (NaN for classes absent from truth and prediction) of
    ``model`` on fixed validation crops."""
    was_training = model.training
    model.eval()
    confusion = ConfusionMatrix(model.config.num_classes)
    loader = DataLoader(crops, batch_size=batch_size, shuffle=False, num_workers=0)
    for images, labels in loader:
        images, labels = pad_to_divisor(images.to(device), labels.to(device))
        logits, labels = model.segment_crop(images, labels)
        prediction = logits.argmax(dim=1)
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


def train(
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    resume: str | os.PathLike | None = None,
    progress: bool = True,
    validate_fn: Callable[[SegmentationModel, int], tuple[float, list[float]] | None] | None = None,
) -> TrainResult:
    """Run (or resume) training; returns where the final weights are.

    ``validate_fn(model, iteration)`` replaces the default validation (mIoU of fixed crops of
    ``data.val``); it runs on the main process every ``run.val_every`` iterations and at the end.
    """
    out_dir = Path(out_dir)
    ctx = init_distributed(
        "cuda" if cfg.run.device != "cpu" and torch.cuda.is_available() else "cpu"
    )
    device = pick_device(cfg.run.device, ctx.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if cfg.schedule.batch_size % ctx.world:
        raise ValueError(
            f"schedule.batch_size {cfg.schedule.batch_size} must be divisible by the "
            f"number of processes ({ctx.world})"
        )
    per_process_batch = cfg.schedule.batch_size // ctx.world
    use_amp = cfg.run.amp and device.type == "cuda"
    if ctx.main:
        out_dir.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(cfg.run.seed)
    start = 0
    state: dict[str, Any] | None = None
    if resume:
        model, state = load_state(Path(resume), cfg)
        start = int(state["iteration"])
    else:
        model = initial_model(cfg)
    class_names = model.config.class_names
    if ctx.world > 1 and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device).train()
    ema = WeightAverage(model, cfg.schedule.ema_decay) if cfg.schedule.ema_decay else None
    if ema is not None and state is not None and "ema" in state:
        ema.load_state_dict(state["ema"])

    loss_module = build_loss(cfg.model.family, cfg.loss)
    loss_terms: tuple[str, ...] = tuple(getattr(loss_module, "terms"))  # noqa: B009
    step_module: nn.Module = TrainStep(model, loss_module)
    if ctx.world > 1:
        step_module = nn.parallel.DistributedDataParallel(
            step_module, device_ids=[device.index] if device.type == "cuda" else None
        )
    sched_cfg = cfg.schedule
    optimizer = make_optimizer(model, sched_cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: sched_cfg.lr_at(it) / sched_cfg.lr
    )
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        restore_rng(state["rng"], device)
        if ctx.rank:  # ranks > 0 were not saved: reseed them deterministically
            torch.manual_seed(cfg.run.seed * 1_000_003 + ctx.rank * 7919 + start)
    elif ctx.rank:
        torch.manual_seed(cfg.run.seed + ctx.rank)

    crops = training_crops(cfg, class_names)
    sampler = ResumableSampler(EpochCrops(crops), ctx.world, ctx.rank, cfg.run.seed)
    # A private generator: creating loader iterators must not consume the global RNG (dropout).
    loader = DataLoader(
        sampler.dataset,
        batch_size=per_process_batch,
        sampler=sampler,
        num_workers=cfg.data.workers,
        persistent_workers=cfg.data.workers > 0,
        drop_last=True,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(cfg.run.seed),
    )
    val_crops = validation_crops(cfg, class_names) if ctx.main and validate_fn is None else None
    if validate_fn is None and val_crops is not None:

        def validate_fn(m: SegmentationModel, it: int) -> tuple[float, list[float]]:
            return validate(m, val_crops, device)

    logs = TrainingLogs(out_dir, class_names, start, loss_terms) if ctx.main else None
    bar = None
    if ctx.main and progress:
        from tqdm import tqdm

        bar = tqdm(total=sched_cfg.iterations, initial=start, unit="it", dynamic_ncols=True)

    state_path = out_dir / "last.pt"
    batches: Iterator | None = None
    window_loss = torch.zeros(len(loss_terms) + 1, device=device)
    window_start, window_steps, run_start = time.perf_counter(), 0, time.perf_counter()
    last_loss, val_miou = float("nan"), None
    if ctx.main:
        log.info(
            "training %s %s (%d classes) on %s, %d process(es), iterations %d..%d, "
            "batch %d, crop %d",
            cfg.model.family,
            cfg.model.preset,
            len(class_names),
            device,
            ctx.world,
            start,
            sched_cfg.iterations,
            sched_cfg.batch_size,
            cfg.data.crop_size,
        )

    for iteration in range(start, sched_cfg.iterations):
        epoch, position = divmod(iteration, sched_cfg.epoch_iterations)
        if batches is None or position == 0:
            sampler.set_epoch(epoch)
            sampler.start = position * per_process_batch
            batches = iter(loader)
        images, labels = next(batches)
        images, labels = pad_to_divisor(
            images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        )

        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            loss, terms = step_module(images, labels)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"loss became {loss.item()} at iteration {iteration}; training "
                f"diverged. Lower schedule.lr or resume from {state_path}"
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if ema is not None:
            ema.update(model)

        window_loss += torch.stack([loss.detach().float(), *(terms[t].float() for t in loss_terms)])
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
                row = {
                    "iteration": done,
                    "epoch": epoch,
                    "lr": optimizer.param_groups[0]["lr"],
                    "loss": means[0],
                    **dict(zip(loss_terms, means[1:], strict=True)),
                    "images_per_s": speed,
                    "elapsed_s": now - run_start,
                }
                logs.train_row(row)
            if bar is not None:
                bar.set_postfix(
                    loss=f"{means[0]:.3f}",
                    lr=f"{optimizer.param_groups[0]['lr']:.2e}",
                    img_s=f"{speed:.2f}",
                )
            window_loss.zero_()
            window_start, window_steps = now, 0
        if bar is not None:
            bar.update(1)

        final = done == sched_cfg.iterations
        if (
            validate_fn is not None
            and ctx.main
            and (final or (cfg.run.val_every and done % cfg.run.val_every == 0))
        ):
            result = validate_fn(model if ema is None else ema.model, done)
            if result is not None:
                val_miou, per_class = result
                log.info("iteration %d: validation mIoU %.4f", done, val_miou)
                if logs is not None:
                    logs.val_row(done, val_miou, per_class)
        if final or done % cfg.run.checkpoint_every == 0:
            if ctx.main:
                save_state(
                    state_path,
                    model,
                    optimizer,
                    scheduler,
                    scaler,
                    done,
                    cfg,
                    device,
                    ema=None if ema is None else ema.state_dict(),
                )
            if ctx.world > 1:
                dist.barrier()

    if bar is not None:
        bar.close()
    model_path = out_dir / "model.pt"
    if ctx.main:
        if start >= sched_cfg.iterations:
            log.info(
                "%s already reached %d iterations; nothing to train", resume, sched_cfg.iterations
            )
        # SyncBatchNorm keeps BatchNorm's state-dict keys: the file loads into the plain model.
        first = crops.datasets[0]
        assert isinstance(first, TrainingCrops)
        palette = [list(colour) for colour in first.dataset.palette]
        meta = training_meta(cfg, ctx, last_loss, val_miou, run_start)
        meta["training_tiles"] = training_tile_ids(cfg, class_names)
        if ema is not None:
            save_checkpoint(
                out_dir / "model_raw.pt",
                model,
                half=True,
                inference_only=True,
                palette=palette,
                training=meta,
            )
        save_checkpoint(
            model_path,
            model if ema is None else ema.model,
            half=True,
            inference_only=True,
            palette=palette,
            training=meta,
        )
        log.info(
            "wrote %s (fp16 inference weights) and %s (resumable state)", model_path, state_path
        )
    if logs is not None:
        logs.close()
    if ctx.world > 1:
        dist.barrier()
    return TrainResult(model_path, state_path, sched_cfg.iterations, last_loss, val_miou)


def make_optimizer(model: nn.Module, sched: ScheduleSection) -> torch.optim.Optimizer:
    if sched.optimizer == "adamw":
        return torch.optim.AdamW(
            model.parameters(),
            lr=sched.lr,
            betas=(sched.momentum, 0.999),
            weight_decay=sched.weight_decay,
        )
    return torch.optim.SGD(
        model.parameters(), lr=sched.lr, momentum=sched.momentum, weight_decay=sched.weight_decay
    )
