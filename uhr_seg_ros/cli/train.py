"""``uhr-seg train``: train SGHRQ from a YAML recipe (single process, or DDP under torchrun).

    uhr-seg train --config config/train_lite_cpu.yaml --out runs/lite
    uhr-seg train --config train_deepglobe.yaml --reduced            # small crops, few steps
    uhr-seg train --config runs/lite/config.yaml --resume runs/lite/last.pt --out runs/lite
    torchrun --nproc_per_node 4 -m uhr_seg_ros.cli train --config train_deepglobe.yaml

A bare config name is looked up in the package's config/ directory. ``--set section.key=value``
overrides one field (value parsed as YAML), e.g. ``--set schedule.iterations=2000``.
Writes last.pt (resumable state), model.pt (fp16 inference weights), train_log.csv,
val_log.csv and config.yaml (the effective config) into --out.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

LOGGER = logging.getLogger("uhr-seg.train")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train a network (SGHRQ or SCPSeg: model.family) from a YAML recipe",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", required=True, help="training YAML (path, or a name in the package's config/)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output directory (default runs/<config name>)"
    )
    parser.add_argument(
        "--resume", type=Path, default=None, help="continue from a last.pt training state"
    )
    parser.add_argument(
        "--reduced",
        action="store_true",
        help="reduced schedule for small machines (small crops, few iterations)",
    )
    add_override_option(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (log files)")
    parser.set_defaults(func=run)
    return parser


def add_override_option(parser: argparse.ArgumentParser) -> None:
    """``--set SECTION.KEY=VALUE`` (repeatable) into ``args.overrides``: one field of a training
    config, value parsed as YAML."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one training-config field (repeatable)",
    )


def resolve_config(name: str) -> Path:
    """A path as given if it exists, else ``<package config dir>/<name>[.yaml]``."""
    path = Path(name)
    if path.is_file():
        return path
    from uhr_seg_ros.paths import config_dir

    for candidate in (config_dir() / name, config_dir() / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    available = sorted(p.name for p in config_dir().glob("train_*.yaml"))
    raise FileNotFoundError(
        f"training config {name} not found (as a path or in the package "
        f"config/: {', '.join(available)})"
    )


def run(args: argparse.Namespace) -> int:
    import yaml

    from uhr_seg_ros.training import TrainingError
    from uhr_seg_ros.training.config import load_train_config
    from uhr_seg_ros.training.loop import train

    config_path = resolve_config(args.config)
    config = load_train_config(config_path, reduced=args.reduced, overrides=args.overrides)
    out_dir = args.out or Path("runs") / config_path.stem
    if os.environ.get("RANK", "0") == "0":  # under torchrun only the first process writes
        out_dir.mkdir(parents=True, exist_ok=True)
        # The effective config beside the results: what actually ran, resumable as-is.
        (out_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    try:
        result = train(config, out_dir, resume=args.resume, progress=not args.no_progress)
    except TrainingError as exc:
        LOGGER.error("%s", exc)
        return 1
    if os.environ.get("RANK", "0") != "0":
        return 0
    miou = "n/a" if result.val_miou is None else f"{result.val_miou:.4f}"
    LOGGER.info(
        "done: %d iterations, final loss %.4f, validation mIoU %s; model %s",
        result.iterations,
        result.final_loss,
        miou,
        result.model_path,
    )
    return 0
