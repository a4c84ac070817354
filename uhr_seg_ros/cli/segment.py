"""``uhr-seg segment``: one image file in, a class-id PNG (and a colour overlay) out; or an
orthomosaic in, a georeferenced mask GeoTIFF (and polygons) out.

    uhr-seg segment frame.jpg --out mask.png
    uhr-seg segment big.jpg --out mask.png --backend cuda --memory-cap-mb 1000 --color overlay.png
    uhr-seg segment mosaic.tif --out mask.tif --bands 3,2,1 --overviews --vector classes.gpkg

The mask is a single-channel 8-bit image the size of the input whose pixel values are class ids
(0..C-1, see the model's class names); ``--color`` writes the palette blended over the image.
A .tif mask is written block by block from windowed reads (any raster size, the input's CRS and
transform, nodata 255, colour table; needs ``pip install 'uhr_seg_ros[geo]'``), see docs/geo.md.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from uhr_seg_ros.cli.geo_options import add_raster_arguments
from uhr_seg_ros.cli.segmenter_options import add_segmenter_arguments, settings_from_args

LOGGER = logging.getLogger("uhr-seg.segment")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "segment",
        help="segment one image file into a class-id PNG",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("image", type=Path, help="input image (any format OpenCV reads)")
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="class-id mask: single-channel PNG, or GeoTIFF (.tif) for the windowed raster path",
    )
    parser.add_argument(
        "--color",
        type=Path,
        default=None,
        help="also write the palette blended over the image (PNG/JPEG)",
    )
    add_segmenter_arguments(parser, device_alias=True)
    add_raster_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import cv2

    from uhr_seg_ros.cli.geo_options import check_raster_arguments
    from uhr_seg_ros.data.image_io import read_rgb
    from uhr_seg_ros.data.palettes import colorize
    from uhr_seg_ros.geo import is_raster_path
    from uhr_seg_ros.pipeline import Segmenter

    settings = settings_from_args(args)  # a bad flag fails before the image is read
    if is_raster_path(args.out):
        return run_raster(args)
    if args.out.suffix.lower() != ".png":
        raise ValueError(
            f"--out {args.out} must be a .png file (a lossless class-id mask) or "
            "a .tif (georeferenced mask)"
        )
    check_raster_arguments(args, raster_out=False)
    image = read_rgb(args.image)
    segmenter = Segmenter.from_settings(settings)
    try:
        result = segmenter.segment(image)
    finally:
        segmenter.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(args.out), result.mask):
        raise ValueError(f"OpenCV cannot write {args.out}; check that its folder is writable")
    if args.color is not None:
        overlay = colorize(result.mask, segmenter.palette, image)
        args.color.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(args.color), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR)):
            raise ValueError(
                f"OpenCV cannot write --color {args.color}; use a .png or .jpg "
                "name in a writable folder"
            )
    timings = ", ".join(f"{k} {v:.0f}" for k, v in result.timings_ms.items())
    LOGGER.info("%s", result.plan.describe())
    LOGGER.info(
        "wrote %s (%dx%d); ms: %s; peak %.0f MB",
        args.out,
        image.shape[1],
        image.shape[0],
        timings,
        result.peak_memory_mb,
    )
    return 0


def run_raster(args: argparse.Namespace) -> int:
    """The GeoTIFF path: windowed reads in, a mask GeoTIFF (and polygons) out."""
    from uhr_seg_ros.cli.geo_options import check_raster_arguments, segment_raster_file
    from uhr_seg_ros.geo import require
    from uhr_seg_ros.pipeline import Segmenter

    check_raster_arguments(args, raster_out=True)
    if args.color is not None:
        raise ValueError("--color is for PNG masks; a GeoTIFF mask carries its colour table")
    require("rasterio")  # before loading the model: a missing extra is the first thing said
    if not args.image.is_file():
        raise FileNotFoundError(f"raster {args.image} does not exist")
    segmenter = Segmenter.from_settings(settings_from_args(args))
    try:
        report = segment_raster_file(segmenter, args.image, args.out, args, vector=args.vector)
    finally:
        segmenter.close()
    LOGGER.info(
        "wrote %s (%dx%d, %d blocks, %s) in %.1f s",
        report.output,
        report.width,
        report.height,
        report.blocks,
        report.plan,
        report.seconds,
    )
    return 0
