"""``uhr-seg``: the command-line face of the core.

Each subcommand lives in its own module ``uhr_seg_ros/cli/<name>.py`` exposing
``register(subparsers) -> argparse.ArgumentParser`` whose parser sets ``func(args) -> int``.
Modules import torch and friends inside ``func`` so that ``uhr-seg --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Order is the order shown in --help.
#: Module names under ``uhr_seg_ros/cli/``; each registers its own command name.
SUBCOMMANDS = (
    "segment",
    "batch",
    "calibrate",
    "export",
    "train",
    "fit_class_bias",
    "eval",
    "demo",
    "replay",
    "synthetic",
    "check_data",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="uhr-seg",
        description="Memory-capped ultra-high-resolution segmentation (SGHRQ) for UAV imagery.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname).1s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from uhr_seg_ros.backends.base import BackendError  # here, so that --help stays instant
    from uhr_seg_ros.extras import MissingExtraError

    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (FileNotFoundError, ValueError, BackendError, MissingExtraError) as exc:
        # Expected user errors (missing file, bad value, no backend works on this machine, an
        # optional extra not installed): one clear line, no traceback.
        logging.getLogger("uhr-seg").error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
