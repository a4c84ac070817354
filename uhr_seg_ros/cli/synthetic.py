"""``uhr-seg synthetic``: render a seeded synthetic aerial scene and its exact DeepGlobe label.

uhr-seg synthetic --size 2048 --seed 5 --out scene.png    # + scene_label.png, scene_overlay.png
uhr-seg synthetic --sample-frame                          # regenerate models/sample_frame.jpg
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

LOGGER = logging.getLogger("uhr-seg.synthetic")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "synthetic",
        help="render a synthetic aerial scene with its exact label",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--size", type=_size, default=(2048, 2048), help="N or HxW pixels (default 2048)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("scene.png"),
        help="image path; <stem>_label.png and <stem>_overlay.png are written too",
    )
    parser.add_argument(
        "--sample-frame",
        action="store_true",
        help="regenerate models/sample_frame.jpg (2048², seed 1, JPEG q90)",
    )
    parser.set_defaults(func=run)
    return parser


def _size(text: str) -> tuple[int, int]:
    height, _, width = text.partition("x")
    try:
        size = (int(height), int(width or height))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not N or HxW") from None
    if min(size) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: sides must be >= 1")
    return size


def run(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from uhr_seg_ros.data.palettes import DEEPGLOBE_PALETTE, colorize
    from uhr_seg_ros.data.synthetic import generate_scene, write_sample_frame

    if args.sample_frame:
        from uhr_seg_ros.paths import REPO_ROOT

        target = REPO_ROOT / "models" / "sample_frame.jpg"
        write_sample_frame(target)
        LOGGER.info("wrote %s (%.2f MB)", target, target.stat().st_size / 2**20)
        return 0
    start = time.perf_counter()
    image, label = generate_scene(args.size, seed=args.seed)
    elapsed = time.perf_counter() - start
    stem = args.out.with_suffix("")
    pictures = {
        args.out: image,
        Path(f"{stem}_label.png"): colorize(label, DEEPGLOBE_PALETTE),
        Path(f"{stem}_overlay.png"): colorize(label, DEEPGLOBE_PALETTE, image, 0.35),
    }
    for path, rgb in pictures.items():
        if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise ValueError(
                f"could not write {path}: check the folder exists and the suffix "
                "is an image format (.png, .jpg)"
            )
    shares = np.bincount(label.ravel(), minlength=6) / label.size
    LOGGER.info(
        "%dx%d seed %d in %.2f s; class shares %s",
        args.size[1],
        args.size[0],
        args.seed,
        elapsed,
        " ".join(f"{s:.2f}" for s in shares),
    )
    return 0
