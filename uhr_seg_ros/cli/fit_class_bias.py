"""``uhr-seg fit-class-bias``: fit one logit offset per class on validation crops and write a
model whose classifier bias carries them (free at inference, in every backend and export).

    uhr-seg fit-class-bias --model runs/lite/model.pt --config config/train_lite_cpu.yaml \\
        --out runs/lite/model_calibrated.pt

The crops are the training config's validation crops (``data.val``, ``data.val_crop_size``;
``--val-crops`` of them). Prints mIoU before and after and the offsets; the offsets are
recorded in the written file (``meta.class_bias``). See evaluation/class_bias.py for why.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

LOGGER = logging.getLogger("uhr-seg.fit-class-bias")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from uhr_seg_ros.cli.train import add_override_option

    parser = subparsers.add_parser(
        "fit-class-bias",
        help="fit per-class logit offsets on validation crops into a model's classifier",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, type=Path, help="checkpoint to correct")
    parser.add_argument(
        "--config", required=True, help="training YAML whose data.val supplies the crops"
    )
    parser.add_argument("--out", required=True, type=Path, help="where to write the result")
    parser.add_argument(
        "--val-crops", type=int, default=140, help="number of fixed validation crops"
    )
    add_override_option(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import torch

    from uhr_seg_ros.cli.train import resolve_config
    from uhr_seg_ros.evaluation.class_bias import apply_class_bias, collect_logits, fit_class_bias
    from uhr_seg_ros.model import load_checkpoint, save_checkpoint
    from uhr_seg_ros.model.checkpoint import read_checkpoint
    from uhr_seg_ros.training.config import load_train_config
    from uhr_seg_ros.training.crops import validation_crops

    if args.val_crops < 1:
        raise ValueError(f"--val-crops must be >= 1, got {args.val_crops}")
    if args.out.resolve() == args.model.resolve():
        raise ValueError("--out must differ from --model (the input is kept as it is)")
    cfg = load_train_config(
        resolve_config(args.config), overrides=[*args.overrides, f"data.val_crops={args.val_crops}"]
    )
    half = read_checkpoint(args.model).get("dtype") == "float16"
    model = load_checkpoint(args.model)
    crops = validation_crops(cfg, model.config.class_names)
    if crops is None:
        raise ValueError(f"{args.config} has no data.val: nothing to fit the offsets on")
    LOGGER.info(
        "collecting logits of %d validation crops (%s)", len(crops), ", ".join(cfg.data.val)
    )
    with torch.inference_mode():
        data = collect_logits(model, (crops[i] for i in range(len(crops))))
    offsets, before, after = fit_class_bias(data)
    apply_class_bias(model, offsets)
    model.meta["class_bias_fit"] = {
        "val": list(cfg.data.val),
        "crops": len(crops),
        "crop_size": cfg.data.val_crop_size,
        "val_miou_before": round(before, 4),
        "val_miou_after": round(after, 4),
    }
    save_checkpoint(args.out, model, half=half, inference_only=True, **model.meta)
    names = model.config.class_names
    print(
        f"validation mIoU {before * 100:.1f} % -> {after * 100:.1f} % on {len(crops)} crops; "
        "offsets: " + ", ".join(f"{n} {v:+.2f}" for n, v in zip(names, offsets, strict=True))
    )
    print(f"wrote {args.out}")
    return 0
