"""``uhr-seg batch``: segment an archive of images and mosaics on Ray, resumably.

    uhr-seg batch flights/ --out masks/                      # local cluster, 1 worker
    uhr-seg batch a.tif b.tif c.jpg --out masks/ --workers 2 --vector gpkg
    uhr-seg batch /data/archive --out /data/masks --address auto --workers 8 --gpus-per-worker 1

Folders are searched recursively for images (.png/.jpg/...) and rasters (.tif). Each worker is
a Ray actor holding one model; files are queued over the workers. Images get a class-id PNG,
rasters a mask GeoTIFF (the GeoTIFF options below apply), under DIR with the inputs' relative
paths. DIR/manifest.json (and .csv) records every file: output, status, reason, plan, time.
A second run skips what is done; failed files are tried again. Exit status 1 if any file failed.
Needs ``pip install 'uhr_seg_ros[batch]'`` (and ``[geo]`` for rasters). See docs/geo.md.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from uhr_seg_ros.cli.geo_options import add_raster_arguments
from uhr_seg_ros.cli.segmenter_options import add_segmenter_arguments, settings_from_args

LOGGER = logging.getLogger("uhr-seg.batch")
#: the raster flags handed to every worker
RASTER_OPTIONS = (
    "bands",
    "rescale",
    "src_nodata",
    "block_size",
    "overviews",
    "min_area",
    "simplify",
)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "batch",
        help="segment many images/mosaics on Ray (resumable, with a manifest)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", type=Path, help="files and/or folders")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    cluster = parser.add_argument_group("Ray cluster")
    cluster.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="actors, each with its own model (default 1)",
    )
    cluster.add_argument(
        "--address",
        default=None,
        help="join a running cluster: auto, or ray://HEAD:10001 (default: "
        "start a local one on this machine)",
    )
    cluster.add_argument(
        "--gpus-per-worker",
        type=float,
        default=None,
        help="GPUs each worker reserves; 0.5 puts two on one GPU (default 1 "
        "when the cluster has GPUs, else 0)",
    )
    cluster.add_argument(
        "--cpus-per-worker",
        type=float,
        default=None,
        help="CPUs each worker reserves and uses (default: CPUs / workers)",
    )
    add_segmenter_arguments(parser)
    add_raster_arguments(parser, vector_format=True)
    parser.set_defaults(func=run)
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from uhr_seg_ros.batch.jobs import Manifest, Record, expand_inputs, plan_jobs
    from uhr_seg_ros.batch.ray_runner import ClusterOptions, run_jobs
    from uhr_seg_ros.cli.geo_options import check_raster_arguments
    from uhr_seg_ros.geo import require

    settings = settings_from_args(args)  # a bad flag fails before any file is looked at
    check_raster_arguments(args, raster_out=True)
    if args.gpus_per_worker is not None and args.gpus_per_worker < 0:
        raise ValueError(f"--gpus-per-worker must be >= 0, got {args.gpus_per_worker}")
    files = expand_inputs(args.inputs, args.out)
    jobs = plan_jobs(files, args.out, f".{args.vector}" if args.vector else None)
    manifest = Manifest(args.out)
    todo = [job for job in jobs if not manifest.is_done(job)]
    LOGGER.info(
        "%d input(s): %d done before (skipped), %d to segment",
        len(jobs),
        len(jobs) - len(todo),
        len(todo),
    )
    if not todo:
        return 0
    require("ray", extra="batch")
    if any(job.is_raster for job in todo):
        require("rasterio")
    raster_options = argparse.Namespace(**{k: getattr(args, k) for k in RASTER_OPTIONS})
    failed = 0
    with tqdm(total=len(todo), unit="file", desc="batch") as bar:

        def on_record(record: Record) -> None:
            nonlocal failed
            manifest.add(record)
            failed += record.status != "ok"
            if record.status != "ok":
                bar.write(f"failed: {record.input}: {record.reason}")
            bar.set_postfix(failed=failed)
            bar.update(1)

        run_jobs(
            todo,
            settings,
            raster_options,
            ClusterOptions(args.address, args.workers, args.gpus_per_worker, args.cpus_per_worker),
            on_record,
        )
    LOGGER.info(
        "%d segmented, %d failed; manifest %s",
        len(todo) - failed,
        failed,
        args.out / "manifest.json",
    )
    return 1 if failed else 0
