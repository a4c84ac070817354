"""``uhr-seg calibrate``: measure the network's memory and speed on this device for the planner.

    uhr-seg calibrate --device cuda --out config/memory_models/orin_lite_fp16.json
    uhr-seg calibrate --device cpu --model my.pt

Runs the backend on several (batch, patch) shapes, records the peak memory of each (CUDA:
max_memory_allocated plus free-memory drops torch cannot see; CPU: profiler allocation peak),
fits ``fixed + per_pixel · batch · patch²`` so that no measurement exceeds it, times one forward
of each (batch, patch) the planner is likely to pick (fastest of ``--repeats``; CPU wall clock,
CUDA events on a GPU, each engine's patch on TensorRT), and writes both into the JSON the
planner reads: it then picks the fastest plan under the cap. Files in config/memory_models/ are
picked up automatically when model, backend, device and precision match.
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
        help="measure peak memory and time per batch/patch for the tiling planner",
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
        "--repeats", type=int, default=3, help="timed forwards per shape; the fastest counts"
    )
    parser.add_argument(
        "--no-time",
        action="store_true",
        help="memory only (the planner then prefers the largest patch)",
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
    from uhr_seg_ros.tiling.memory_model import (
        CPU_FULL_POINTS,
        CPU_TIME_POINTS,
        CUDA_TIME_POINTS,
        FULL_POINTS,
    )

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
    on_cpu = backend.device.type == "cpu"
    shapes = CPU_FULL_POINTS if on_cpu else FULL_POINTS
    default = tuple((batch, patch) for batch, patch in shapes if batch <= args.max_batch)
    points = calibration_points(backend, None, default)
    timed: tuple[tuple[int, int], ...] = ()
    if not args.no_time:
        timed_shapes = CPU_TIME_POINTS if on_cpu else CUDA_TIME_POINTS
        timed = calibration_points(
            backend, None, tuple((b, p) for b, p in timed_shapes if b <= args.max_batch)
        )
    precision = backend.precision
    LOGGER.info(
        "measuring memory at %d and time at %d shapes on %s",
        len(points),
        len(timed),
        backend.describe(),
    )
    fitted = calibrate(
        backend, model_identity(model), precision, points, time_points=timed, repeats=args.repeats
    )
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
    for timed_batch, timed_patch, seconds in fitted.time_points:
        LOGGER.info(
            "batch %d patch %4d: %.3f s per forward, %.1f ns per pixel",
            timed_batch,
            timed_patch,
            seconds,
            seconds / (timed_batch * timed_patch**2) * 1e9,
        )
    LOGGER.info(
        "fixed %.1f MB + %.1f bytes/pixel -> %s",
        fitted.fixed_bytes / 2**20,
        fitted.bytes_per_pixel,
        out,
    )
    return 0
