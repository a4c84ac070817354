"""The raster (GeoTIFF) options shared by ``uhr-seg segment`` and ``uhr-seg batch``, and the one
function both call to segment a raster file into a mask GeoTIFF (and polygons on request)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from uhr_seg_ros.geo.mosaic import RasterReport
    from uhr_seg_ros.pipeline import Segmenter

LOGGER = logging.getLogger("uhr-seg.geo")
#: the block side default, repeated here so that building the parser imports nothing heavy
DEFAULT_BLOCK_SIZE = 4096


def add_raster_arguments(parser: argparse.ArgumentParser, vector_format: bool = False) -> None:
    """Flags of the GeoTIFF path (used when the mask is written as .tif). ``vector_format``:
    ``--vector`` names a format (gpkg/geojson, one file per mask: ``uhr-seg batch``) instead of
    a path."""
    group = parser.add_argument_group(
        "GeoTIFF / orthomosaic (mask written as .tif; needs the geo extra)"
    )
    group.add_argument(
        "--bands",
        default=None,
        help="1-based input bands as R,G,B (e.g. 3,2,1) or one grey band "
        "(default 1,2,3; a single-band raster is used as grey)",
    )
    group.add_argument(
        "--rescale",
        default="auto",
        help="to 0..255: auto (uint8 as is, else percentile), none, percentile "
        "(2-98 %% per band), percentile:LO,HI, or a fixed MIN,MAX "
        "(default auto)",
    )
    group.add_argument(
        "--src-nodata",
        type=float,
        default=None,
        help="input nodata value when the file does not declare one",
    )
    group.add_argument(
        "--block-size",
        type=int,
        default=DEFAULT_BLOCK_SIZE,
        help=f"pixels per block side read at a time; bounds host memory "
        f"(default {DEFAULT_BLOCK_SIZE})",
    )
    group.add_argument(
        "--overviews", action="store_true", help="write a Cloud-Optimized GeoTIFF with overviews"
    )
    if vector_format:
        group.add_argument(
            "--vector",
            choices=("gpkg", "geojson"),
            default=None,
            help="also write per-class polygons of each raster mask, beside it",
        )
    else:
        group.add_argument(
            "--vector",
            type=Path,
            default=None,
            help="also write per-class polygons (.gpkg or .geojson)",
        )
    group.add_argument(
        "--min-area",
        type=float,
        default=0.0,
        help="drop polygons smaller than this, in CRS units² (e.g. m²)",
    )
    group.add_argument(
        "--simplify",
        type=float,
        default=0.0,
        help="polygon simplification tolerance in CRS units (e.g. m)",
    )


def check_raster_arguments(args: argparse.Namespace, raster_out: bool) -> None:
    """Refuse option combinations that cannot work, before any model is loaded."""
    from uhr_seg_ros.geo.source import Rescale, parse_bands

    if args.block_size < 32:
        raise ValueError(f"--block-size must be at least 32 pixels, got {args.block_size}")
    if args.bands is not None:
        parse_bands(args.bands)
    Rescale.parse(args.rescale)
    if isinstance(args.vector, Path):
        if not raster_out:
            raise ValueError("--vector needs the mask written as a GeoTIFF (.tif)")
        if args.vector.suffix.lower() not in (".gpkg", ".geojson", ".json"):
            raise ValueError(f"--vector {args.vector}: use a .gpkg or .geojson file name")


def segment_raster_file(
    segmenter: Segmenter,
    image: Path,
    out: Path,
    args: argparse.Namespace,
    vector: Path | None = None,
    show_progress: bool = True,
) -> RasterReport:
    """``image`` (any raster GDAL reads) → mask GeoTIFF ``out`` (+ polygons at ``vector``)."""
    from uhr_seg_ros.geo.mosaic import segment_raster
    from uhr_seg_ros.geo.source import RasterSource, Rescale, parse_bands

    bands = parse_bands(args.bands) if args.bands else None
    with RasterSource(
        image, bands=bands, rescale=Rescale.parse(args.rescale), src_nodata=args.src_nodata
    ) as source:
        bar = None
        if show_progress:
            from tqdm import tqdm

            bar = tqdm(desc=image.name, unit="block", leave=False)

        def progress(done: int, total: int) -> None:
            if bar is not None:
                bar.total = total
                bar.update(done - bar.n)

        try:
            report = segment_raster(
                segmenter,
                source,
                out,
                block_size=args.block_size,
                overviews=args.overviews,
                progress=progress,
            )
        finally:
            if bar is not None:
                bar.close()
    if vector is not None:
        from uhr_seg_ros.geo.vector import write_polygons

        count = write_polygons(out, vector, min_area=args.min_area, simplify=args.simplify)
        LOGGER.info("wrote %d polygons to %s", count, vector)
    return report
