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

from uhr_seg_ros.defaults import BACKEND_ORDER

# Order is the order shown in --help.
#: Module names under ``uhr_seg_ros/cli/``; each registers its own command name.
SUBCOMMANDS = (
    "segment",
    "batch",
    "calibrate",
    "export",
    "train",
    "eval",
    "demo",
    "replay",
    "synthetic",
    "check_data",
)
#: ``--backend`` default of every subcommand that takes one (from ``uhr_seg_ros.defaults``, which
#: imports no torch, so building the parser stays instant).
DEFAULT_BACKENDS = ",".join(BACKEND_ORDER)


def add_backend_argument(parser: argparse.ArgumentParser) -> None:
    """``--backend a,b,c``: the fallback chain, parsed into a tuple of names."""
    parser.add_argument(
        "--backend",
        type=_backend_order,
        default=DEFAULT_BACKENDS,
        help=f"backends to try in order, comma-separated (default {DEFAULT_BACKENDS})",
    )


def _backend_order(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"names no backend; use e.g. {DEFAULT_BACKENDS}")
    return names


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
    from uhr_seg_ros.geo import MissingExtraError

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
