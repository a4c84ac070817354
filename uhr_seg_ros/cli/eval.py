"""``uhr-seg eval``: benchmark a model on a data set through the memory-capped tiling engine.

    uhr-seg eval --data deepglobe:../shared/data/deepglobe --split val --out runs/eval_dg
    uhr-seg eval --data inria:/data/AerialImageDataset --model my.pt --memory-cap-mb 1500 \\
        --split test --out runs/eval_inria
    uhr-seg eval --data synthetic:4@2048 --limit 2 --out runs/eval_synth

Writes results.json (miou as a fraction, per_class_iou, peak_memory_mb, fps, majority-class
baseline; building_iou for Inria), results.md, results.csv, per_image.csv and vis/*.jpg
(image | truth | prediction | errors). See docs/data.md for data layouts and splits.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from uhr_seg_ros.cli.segmenter_options import add_segmenter_arguments

LOGGER = logging.getLogger("uhr-seg.eval")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "eval",
        help="per-class IoU, mIoU, peak memory and FPS of a model on a data set",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data",
        required=True,
        metavar="KIND:ARG",
        help="deepglobe:DIR, inria:DIR, folder:DIR or synthetic:COUNT@SIZE",
    )
    parser.add_argument(
        "--split",
        default="val",
        choices=("train", "val", "test", "all"),
        help="which split to score (default val)",
    )
    parser.add_argument(
        "--ids",
        nargs="+",
        default=None,
        metavar="NAME",
        help="score exactly these samples (any split), e.g. --ids 6399 10452",
    )
    parser.add_argument("--limit", type=int, default=None, help="score only the first N images")
    add_segmenter_arguments(parser)
    parser.add_argument("--no-vis", action="store_true", help="skip the per-image pictures")
    parser.add_argument("--out", type=Path, required=True, help="folder for results and pictures")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from uhr_seg_ros.cli.segmenter_options import settings_from_args
    from uhr_seg_ros.data.datasets import SubsetDataset, build_dataset
    from uhr_seg_ros.evaluation.evaluate import evaluate, write_results
    from uhr_seg_ros.paths import default_model_path
    from uhr_seg_ros.pipeline import Segmenter

    settings = settings_from_args(args)  # a bad flag fails before the data set is read
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    dataset = build_dataset(args.data, "all" if args.ids else args.split)
    if args.ids:
        dataset = SubsetDataset(dataset, args.ids)
    if len(dataset) == 0:
        raise ValueError(
            f"split {args.split!r} of {args.data} is empty; pick another --split "
            "or add split files (docs/data.md)"
        )
    model_path = Path(args.model) if args.model else default_model_path()
    trained_on = tiles_in_training_data(model_path, args.data, dataset.names)
    if trained_on:
        LOGGER.warning(
            "%d of the %d evaluated samples were in this model's training data (%s); "
            "these scores overstate accuracy on unseen imagery",
            len(trained_on),
            len(dataset),
            ", ".join(trained_on[:8]) + (" ..." if len(trained_on) > 8 else ""),
        )
    segmenter = Segmenter.from_settings(settings)
    LOGGER.info(
        "evaluating %s (%s, %d images) with %s",
        args.data,
        args.split,
        len(dataset) if args.limit is None else min(args.limit, len(dataset)),
        segmenter.describe(),
    )
    try:
        evaluation = evaluate(
            segmenter, dataset, args.out, limit=args.limit, visualize=not args.no_vis
        )
    finally:
        segmenter.close()
    results = write_results(
        evaluation,
        args.out,
        {
            "data": args.data,
            "split": args.split,
            "model": str(model_path),
            "backend": segmenter.backend.describe(),
            "memory_cap_mb": settings.memory_cap_mb,
            "ids": args.ids,
            "in_training_data": trained_on,
        },
    )
    LOGGER.info(
        "mIoU %.2f %% (majority baseline %.2f %%), peak %.0f MB, %.3f FPS -> %s",
        100 * (results["miou"] or 0.0),
        100 * (results["baseline_miou"] or 0.0),
        results["peak_memory_mb"],
        results["fps"],
        args.out / "results.md",
    )
    return 0


def tiles_in_training_data(model_path: Path, data_spec: str, names: list[str]) -> list[str]:
    """The evaluated sample names that the checkpoint lists as training tiles (its
    ``meta.training.training_tiles``, ``kind:name``); empty when it records none."""
    from uhr_seg_ros.model.checkpoint import CheckpointError, read_checkpoint

    try:
        payload = read_checkpoint(model_path)
    except (CheckpointError, OSError):
        return []  # the segmenter reports the unreadable file in its own words
    meta = payload.get("meta", {}) if isinstance(payload, dict) else {}
    training = meta.get("training", {}) if isinstance(meta, dict) else {}
    trained = set(training.get("training_tiles", []) if isinstance(training, dict) else [])
    kind = data_spec.partition(":")[0].lower()
    return [name for name in names if f"{kind}:{name}" in trained]
