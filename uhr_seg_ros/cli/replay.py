"""``uhr-seg replay``: segment the image topics of a recorded bag into a bag of masks.

    uhr-seg replay flight.mcap --out flight_masks --model models/sghrq_deepglobe_lite.pt
    uhr-seg replay flight_bag/ --out masks_bag --topic /camera/image_raw --memory-cap-mb 1500

Reads rosbag2 (mcap or sqlite3; a bag directory or one .mcap/.db3 file) with the ``rosbags``
package and runs the core directly: no ROS install, no DDS. Each sensor_msgs/Image or
CompressedImage topic T becomes T/mask (mono8 class ids, the frame's header and bag timestamp).
Frames that cannot be used are skipped and counted. Exits 1 when no mask was written.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from uhr_seg_ros.cli.segmenter_options import add_segmenter_arguments

LOGGER = logging.getLogger("uhr-seg.replay")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "replay",
        help="segment recorded image topics (rosbag2) into a bag of mono8 masks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "in_bag",
        type=Path,
        metavar="IN.bag",
        help="input rosbag2: a bag directory or a .mcap/.db3 file",
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="OUT.bag",
        help="output bag directory (must not exist)",
    )
    parser.add_argument(
        "--topic",
        action="append",
        dest="topics",
        metavar="T",
        help="image topic to segment (repeatable); default: every Image/CompressedImage topic",
    )
    add_segmenter_arguments(parser)
    parser.add_argument(
        "--storage",
        choices=("mcap", "sqlite3"),
        default=None,
        help="output storage (default: the input's)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from uhr_seg_ros.cli.segmenter_options import settings_from_args
    from uhr_seg_ros.extras import require

    settings = settings_from_args(args)  # a bad flag fails before anything is opened
    require("rosbags", "ros", "reading and writing rosbag2 files")
    from uhr_seg_ros.pipeline import Segmenter
    from uhr_seg_ros.ros.bag_replay import replay_bag

    # Checked before the model loads, so a typo costs no start-up time.
    if not args.in_bag.exists():
        raise FileNotFoundError(f"input bag {args.in_bag} does not exist")
    if args.out.exists():
        raise ValueError(
            f"--out {args.out} exists; a replay never overwrites a bag: remove it "
            "or choose another path"
        )
    segmenter = Segmenter.from_settings(settings)
    LOGGER.info("segmenter: %s", segmenter.describe())
    try:
        report = replay_bag(
            args.in_bag, args.out, segmenter, topics=args.topics, storage=args.storage
        )
    finally:
        segmenter.close()

    for in_topic, out_topic in report.topics.items():
        print(f"{in_topic} -> {out_topic}")
    skipped = ", ".join(f"{reason}: {n}" for reason, n in sorted(report.skipped_reasons.items()))
    print(
        f"{report.frames_read} frames read, {report.masks_written} masks written to "
        f"{args.out}, {report.frames_skipped} skipped" + (f" ({skipped})" if skipped else "")
    )
    if report.masks_written:
        print(f"segmentation: {report.segment_ms / report.masks_written:.1f} ms per frame")
        return 0
    LOGGER.error("no mask was written: every frame was skipped (see the warnings above)")
    return 1
