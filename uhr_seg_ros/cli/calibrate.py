"""``uhr-seg calibrate``: measure the network's memory on this device for the tiling planner.

    uhr-seg calibrate --device cuda --out config/memory_models/orin_lite_fp16.json
    uhr-seg calibrate --device cpu --model my.pt

Runs the backend on several (batch, patch) shapes, records the peak memory of each (CUDA:
max_memory_allocated plus free-memory drops torch cannot see; CPU: profiler allocation peak),
fits ``fixed + per_pixel · batch · patch²`` so that no measurement exceeds it, and writes the
JSON the planner reads. Files in config/memory_models/ are picked up automatically when model,
backend, device and precision match.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

LOGGER = logging.getLogger("uhr-seg.calibrate")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "calibrate",
        help="measure peak memory per batch/patch for the tiling planner",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--device",
        choices=("cuda", "tensorrt", "cpu"),
        default="cuda",
        help="backend to measure (default cuda)",
    )
    parser.add_argument(
        "--model", default=None, help="checkpoint (.pt); default: the bundled model"
    )
    parser.add_argument(
        "--precision",
        default="fp16",
        help="GPU precision (the CPU always runs fp32; default fp16)",
    )
    parser.add_argument(
        "--max-batch", type=int, default=4, help="largest batch to measure (default 4)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON to write (default config/memory_models/<model>_<device>_<precision>.json)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from uhr_seg_ros.backends import create_backend
    from uhr_seg_ros.paths import config_dir
    from uhr_seg_ros.pipeline import (
        TENSORRT_PATCH_SIZES,
        SegmenterSettings,
        calibration_points,
        resolve_model,
    )
    from uhr_seg_ros.tiling import calibrate, model_identity
    from uhr_seg_ros.tiling.memory_model import CPU_FULL_POINTS, FULL_POINTS

    settings = SegmenterSettings(  # validates the precision against the backend registry
        model_path=args.model, backend_order=(args.device,), precision=args.precision
    )
    model = resolve_model(settings)
    # TensorRT: the engines a Segmenter builds, so that every point calibration_points asks
    # for has one (the backend's own default is patch 1024 only).
    backend = create_backend(
        model,
        (args.device,),
        precision=settings.precision,
        max_batch=args.max_batch,
        patch_sizes=TENSORRT_PATCH_SIZES,
    )
    shapes = CPU_FULL_POINTS if backend.device.type == "cpu" else FULL_POINTS
    default = tuple((batch, patch) for batch, patch in shapes if batch <= args.max_batch)
    points = calibration_points(backend, None, default)
    precision = backend.precision
    LOGGER.info("measuring %d shapes on %s", len(points), backend.describe())
    fitted = calibrate(backend, model_identity(model), precision, points)
    backend.close()
    out = args.out
    if out is None:
        slug = re.sub(r"[^A-Za-z0-9]+", "_", f"{fitted.model_id}_{fitted.device}_{precision}")
        out = config_dir() / "memory_models" / f"{slug.strip('_').lower()}.json"
    fitted.save(out)
    for batch, patch, measured in fitted.points:
        LOGGER.info(
            "batch %d patch %4d: measured %7.1f MB, model %7.1f MB",
            batch,
            patch,
            measured / 2**20,
            fitted.predict(batch, patch) / 2**20,
        )
    LOGGER.info(
        "fixed %.1f MB + %.1f bytes/pixel -> %s",
        fitted.fixed_bytes / 2**20,
        fitted.bytes_per_pixel,
        out,
    )
    return 0
