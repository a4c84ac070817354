"""The segmenter flags every segmenting command shares (segment, eval, replay, demo, batch).

    add_segmenter_arguments(parser)          # in register()
    settings = settings_from_args(args)      # in run(): a validated SegmenterSettings

Same names, same defaults, same meaning everywhere; the flags only translate into
:class:`~uhr_seg_ros.settings.SegmenterSettings`, which alone validates them (a bad value is
reported naming the flag). Building the parser imports no torch, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from uhr_seg_ros.defaults import BACKEND_ORDER, MEMORY_CAP_MB

if TYPE_CHECKING:
    from uhr_seg_ros.settings import SegmenterSettings

LOGGER = logging.getLogger("uhr-seg")

DEFAULT_BACKENDS = ",".join(BACKEND_ORDER)
#: SegmenterSettings field -> the flag that sets it (for error messages).
FLAGS = {
    "model_path": "--model",
    "backend_order": "--backend",
    "precision": "--precision",
    "memory_cap_mb": "--memory-cap-mb",
    "patch_size": "--patch-size",
    "overlap": "--overlap",
    "batch_size": "--batch-size",
    "memory_model_path": "--memory-model",
}
#: Deprecated ``segment --device`` values -> backend order.
DEVICE_ORDERS: dict[str, tuple[str, ...]] = {
    "auto": BACKEND_ORDER,
    "cuda": ("cuda",),
    "tensorrt": ("tensorrt",),
    "cpu": ("cpu",),
}


def _backend_order(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"names no backend; use e.g. {DEFAULT_BACKENDS}")
    return names


def add_segmenter_arguments(
    parser: argparse.ArgumentParser, *, model: bool = True, device_alias: bool = False
) -> None:
    """Add the shared flags (in their own help group). ``model=False`` leaves out ``--model``
    for a command that defines its own; ``device_alias`` keeps ``segment``'s old ``--device``."""
    group = parser.add_argument_group("segmenter (the same flags on every segmenting command)")
    if model:
        group.add_argument(
            "--model", default=None, help="checkpoint (.pt); default: the bundled model"
        )
    group.add_argument(
        "--backend",
        type=_backend_order,
        default=None,
        help=f"backends to try in order, comma-separated (default {DEFAULT_BACKENDS})",
    )
    if device_alias:
        group.add_argument(
            "--device",
            choices=sorted(DEVICE_ORDERS),
            default=None,
            help="deprecated: use --backend (auto = the default order)",
        )
    group.add_argument(
        "--precision",
        default="fp16",
        help="fp16 or fp32 on GPU backends (the CPU always runs fp32; default fp16)",
    )
    group.add_argument(
        "--memory-cap-mb",
        type=float,
        default=MEMORY_CAP_MB,
        help=f"device memory inference may use, MB (default {MEMORY_CAP_MB:.0f}, "
        "the paper's 1.5 GB)",
    )
    group.add_argument(
        "--patch-size",
        type=int,
        default=None,
        help="pin the window side (a multiple of the model's size divisor, 32); "
        "default: the planner decides",
    )
    group.add_argument(
        "--overlap",
        type=int,
        default=None,
        help="pin the window overlap in pixels; default: 25%% of the patch",
    )
    group.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="pin the windows per forward pass; default: the planner decides",
    )
    group.add_argument(
        "--memory-model",
        default=None,
        help="memory model JSON from `uhr-seg calibrate` (default: a stored one "
        "for this model/device, else measured at start-up)",
    )


def backend_order_from_args(args: argparse.Namespace) -> tuple[str, ...]:
    """``--backend``, or the deprecated ``--device`` (not both), or the default order."""
    device = getattr(args, "device", None)
    if device is not None:
        if args.backend is not None:
            raise ValueError(
                "--device is the deprecated spelling of --backend; give only --backend"
            )
        order = DEVICE_ORDERS[device]
        LOGGER.warning("--device is deprecated; use --backend %s", ",".join(order))
        return order
    return args.backend if args.backend is not None else BACKEND_ORDER


def settings_from_args(args: argparse.Namespace, **extra: object) -> SegmenterSettings:
    """The one translation from the shared flags to validated settings (``extra``: fields a
    command sets itself, e.g. ``return_confidence``). A bad value raises ``ValueError`` naming
    the flag, which ``uhr-seg`` reports in one line."""
    from uhr_seg_ros.settings import SegmenterSettings, SettingsError

    model = getattr(args, "model", None)
    try:
        return SegmenterSettings(
            model_path=str(model) if model else None,
            backend_order=backend_order_from_args(args),
            precision=args.precision,
            memory_cap_mb=args.memory_cap_mb,
            patch_size=args.patch_size,
            overlap=args.overlap,
            batch_size=args.batch_size,
            memory_model_path=args.memory_model,
            **extra,  # type: ignore[arg-type]
        )
    except SettingsError as exc:
        raise ValueError(f"{FLAGS.get(exc.field, exc.field)} {exc.problem}") from None
