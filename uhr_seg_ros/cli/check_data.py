"""``uhr-seg check-data``: decode every sample of a data set once and name the bad files.

    uhr-seg check-data deepglobe:/data/deepglobe --split all

Exits 1 when any sample is bad (missing mask, undecodable image, wrong size), 0 otherwise.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "check-data",
        help="decode every sample of a data set and list the bad ones",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("spec", help="deepglobe:DIR, inria:DIR, folder:DIR or synthetic:N@SIZE")
    parser.add_argument("--split", default="all", choices=("train", "val", "test", "all"))
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from uhr_seg_ros.data.datasets import build_dataset

    dataset = build_dataset(args.spec, args.split)
    problems = dataset.validate()
    for line in problems:
        print(line)
    print(
        f"{len(dataset) - len(problems)} of {len(dataset)} samples ok ({args.spec}, {args.split})"
    )
    return 1 if problems else 0
