"""The peer comparison: SGHRQ against a standard U-Net with a ResNet-18 encoder, trained the
same way and scored through the same tiling engine under the same memory cap.

segmentation_models_pytorch (the maintained library users would reach for) cannot run here: it
needs timm and torchvision, and PyPI's torchvision 0.29.1 fails to import beside torch 2.13.0+cpu
("operator torchvision::nms does not exist"). The peer is therefore built below from plain torch
in smp's ``Unet("resnet18")`` layout (7x7 stem, basic-block stages 64/128/256/512 at strides
4..32, decoder 256/128/64/32/16 with skip connections, nearest upsampling, random init).

    # train both from random init on the same crops, same optimiser, same number of steps
    python benchmarks/peer.py train --arch sghrq --steps 120 --set data.crop_size=256 \
        --out runs/peer_sghrq
    python benchmarks/peer.py train --arch unet --steps 120 --set data.crop_size=256 \
        --out runs/peer_unet
    # score them (and the shipped model) on held-out tiles, one process, same cap
    python benchmarks/peer.py compare --ids 6399 10452 \\
        --weights sghrq=runs/peer_sghrq/weights.pt unet=runs/peer_unet/weights.pt \\
        shipped=models/sghrq_deepglobe_lite.pt

``train`` reads the data, schedule and loss weights of ``--config`` (the shipped recipe by
default) but always starts from random weights (``model.init_from`` is ignored) and runs
``--steps`` steps. ``compare`` prints a markdown table: mIoU and per-class IoU over the tiles,
parameters, FLOPs per pixel (FlopCounterMode at a 1024² patch, in kFLOPs), peak memory as the
planner accounts it, and process CPU seconds per 2448² frame (also as a ratio to the first model,
measured in the same run).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from uhr_seg_ros.data.datasets import SubsetDataset, build_dataset
from uhr_seg_ros.evaluation.metrics import ConfusionMatrix
from uhr_seg_ros.model import build_model, load_checkpoint
from uhr_seg_ros.model.backbones import BasicBlock, ConvBNReLU
from uhr_seg_ros.model.contract import SegmentationModel
from uhr_seg_ros.training.config import load_train_config
from uhr_seg_ros.training.crops import pad_to_divisor, training_crops
from uhr_seg_ros.training.loop import make_optimizer
from uhr_seg_ros.training.losses import SGHRQLoss, segmentation_ce


@dataclass(frozen=True)
class UNetConfig:
    """What the tiling engine reads from a model's ``config`` (and its identity hash)."""

    num_classes: int
    class_names: tuple[str, ...]
    encoder: str = "resnet18"
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class UNetResNet18(SegmentationModel):
    """U-Net, ResNet-18 encoder (torchvision layout), smp-style decoder; input RGB 0..255.
    A ``SegmentationModel`` so that the backends and the tiler take it as they take SGHRQ."""

    family = "peer_unet"

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        self.meta: dict = {}
        self.train_heads = None
        self.register_buffer(
            "mean", torch.tensor([123.7, 116.3, 103.5]).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor([58.4, 57.1, 57.4]).view(1, 3, 1, 1), persistent=False
        )
        self.stem = ConvBNReLU(3, 64, 7, stride=2)
        widths, strides = (64, 128, 256, 512), (1, 2, 2, 2)
        stages, in_ch = [], 64
        for width, stride in zip(widths, strides, strict=False):
            stages.append(nn.Sequential(BasicBlock(in_ch, width, stride), BasicBlock(width, width)))
            in_ch = width
        self.stages = nn.ModuleList(stages)
        skips = (256, 128, 64, 64, 0)  # layer3, layer2, layer1, stem, none
        blocks, in_ch = [], 512
        for skip, out_ch in zip(skips, config.decoder_channels, strict=False):
            blocks.append(
                nn.Sequential(ConvBNReLU(in_ch + skip, out_ch), ConvBNReLU(out_ch, out_ch))
            )
            in_ch = out_ch
        self.decoder = nn.ModuleList(blocks)
        self.head = nn.Conv2d(in_ch, config.num_classes, 3, padding=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - self.mean) / self.std
        stem = self.stem(x)  # stride 2
        x = F.max_pool2d(stem, 3, stride=2, padding=1)  # stride 4
        features = [stem]
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        skips = [features[3], features[2], features[1], features[0], None]
        x = features[4]
        for block, skip in zip(self.decoder, skips, strict=False):
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            if skip is not None:
                x = torch.cat([x, skip], dim=1)
            x = block(x)
        return self.head(x)


def build(arch: str, class_names: tuple[str, ...], cfg) -> nn.Module:
    if arch == "unet":
        return UNetResNet18(UNetConfig(len(class_names), class_names))
    return build_model(cfg.model.build_config())


def train(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    cfg = load_train_config(
        args.config,
        overrides=[
            f"schedule.iterations={args.steps}",
            f"schedule.warmup_iterations={min(args.steps - 1, 40)}",
            *args.set,
        ],
    )
    class_names = cfg.model.class_names
    torch.manual_seed(cfg.run.seed)
    model = build(args.arch, class_names, cfg).train()
    sghrq_loss = SGHRQLoss(cfg.loss)
    weights = sghrq_loss.class_weights
    optimizer = make_optimizer(model, cfg.schedule)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: cfg.schedule.lr_at(it) / cfg.schedule.lr
    )
    crops = training_crops(cfg, class_names)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "train_log.csv").open("w")
    log.write("step,loss,seconds\n")
    start, step = time.perf_counter(), 0
    while step < args.steps:
        epoch = step // cfg.schedule.epoch_iterations
        for part in crops.datasets:
            part.set_epoch(epoch)
        loader = DataLoader(
            crops,
            batch_size=cfg.schedule.batch_size,
            shuffle=True,
            drop_last=True,
            generator=torch.Generator().manual_seed(epoch),
        )
        for images, labels in loader:
            images, labels = pad_to_divisor(images, labels)
            if args.arch == "unet":
                loss = segmentation_ce(model(images), labels, weights)
            else:
                loss, _ = sghrq_loss(model.forward_train(images, labels), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if step % 10 == 0:
                log.write(f"{step},{loss.item():.4f},{time.perf_counter() - start:.1f}\n")
                log.flush()
                print(f"step {step}/{args.steps} loss {loss.item():.3f}", flush=True)
            if step >= args.steps or (step % cfg.schedule.epoch_iterations == 0):
                break
    state = model.state_dict()
    torch.save(
        {
            "arch": args.arch,
            "class_names": list(class_names),
            "steps": args.steps,
            "seconds": round(time.perf_counter() - start, 1),
            "state_dict": {k: v.half() if v.is_floating_point() else v for k, v in state.items()},
        },
        out / "weights.pt",
    )
    print(f"wrote {out / 'weights.pt'}")


def load(path: str, cfg) -> nn.Module:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("format") is not None:  # a uhr_seg_ros model checkpoint
        return load_checkpoint(path)
    model = build(payload["arch"], tuple(payload["class_names"]), cfg)
    model.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()},
        strict=False,
    )
    if getattr(model, "train_heads", None) is not None:
        model.train_heads = None  # inference graph only, as in a shipped checkpoint
    return model.eval()


def gflops_per_pixel(model: nn.Module, patch: int = 1024) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, patch, patch))
    return counter.get_total_flops() / 1e9 / patch**2


def compare(args: argparse.Namespace) -> None:
    from uhr_seg_ros.pipeline import Segmenter, SegmenterSettings

    torch.set_num_threads(args.threads)
    cfg = load_train_config(args.config)
    dataset = SubsetDataset(build_dataset(args.data, "all"), args.ids)
    rows = []
    for item in args.weights:
        name, _, path = item.partition("=")
        model = load(path, cfg)
        params = sum(p.numel() for p in model.parameters())
        gflops = gflops_per_pixel(model)
        settings = SegmenterSettings(
            model_path=path, memory_cap_mb=args.memory_cap_mb, backend_order=("cpu",)
        )
        segmenter = Segmenter.from_settings(settings, model=model)
        confusion = ConfusionMatrix(len(cfg.model.class_names))
        seconds, peak = [], 0.0
        for index in range(len(dataset)):
            sample = dataset[index]
            t0 = time.process_time()
            result = segmenter.segment(sample.image)
            seconds.append(time.process_time() - t0)
            confusion.update(result.mask, sample.label)
            peak = max(peak, float(result.peak_memory_mb))
        segmenter.close()
        rows.append(
            {
                "name": name,
                "miou": confusion.miou(),
                "iou": [None if np.isnan(v) else float(v) for v in confusion.iou()],
                "params_m": params / 1e6,
                "gflops_per_pixel": gflops,
                "peak_mb": peak,
                "cpu_s_per_frame": float(np.mean(seconds)),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["cpu_s_per_frame"]
    classes = cfg.model.class_names
    print(
        f"\n| model | mIoU | {' | '.join(classes)} | params | kFLOPs/pixel | peak MB | "
        "CPU s / frame | ratio |"
    )
    print("|---" * (7 + len(classes)) + "|")
    for row in rows:
        ious = " | ".join("—" if v is None else f"{100 * v:.1f}" for v in row["iou"])
        print(
            f"| {row['name']} | {100 * row['miou']:.1f} | {ious} | {row['params_m']:.2f} M | "
            f"{row['gflops_per_pixel'] * 1e6:.1f} | {row['peak_mb']:.0f} | "
            f"{row['cpu_s_per_frame']:.1f} | {row['cpu_s_per_frame'] / base:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--arch", choices=("sghrq", "unet"), required=True)
    t.add_argument("--steps", type=int, default=400)
    t.add_argument("--out", required=True)
    t.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a field of --config, e.g. data.crop_size=256",
    )
    c = sub.add_parser("compare")
    c.add_argument("--weights", nargs="+", required=True, metavar="NAME=PATH")
    c.add_argument("--data", default="deepglobe:../shared/data/deepglobe")
    c.add_argument("--ids", nargs="+", default=["6399", "10452"])
    c.add_argument("--memory-cap-mb", type=float, default=1500.0)
    for p in (t, c):
        p.add_argument("--config", default="config/train_lite_cpu.yaml")
        p.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    train(args) if args.command == "train" else compare(args)


if __name__ == "__main__":
    main()
