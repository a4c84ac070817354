"""``uhr-seg segment``: one image file in, a class-id PNG (and a colour overlay) out; or an
orthomosaic in, a georeferenced mask GeoTIFF (and polygons) out.

    uhr-seg segment frame.jpg --out mask.png
    uhr-seg segment flights/day1/ 'archive/**/*.jpg' --out masks/    # many files, one process
    uhr-seg segment big.jpg --out mask.png --backend cuda --memory-cap-mb 1000 --color overlay.png
    uhr-seg segment mosaic.tif --out mask.tif --bands 3,2,1 --overviews --vector classes.gpkg
    uhr-seg segment unlabelled/ --out pseudo/masks --min-confidence 0.7  # pseudo-labels

The mask is a single-channel 8-bit image the size of the input whose pixel values are class ids
(0..C-1, see the model's class names); ``--color`` writes the palette blended over the image.
``--min-confidence P`` writes 255 ("not sure") where the largest softmax probability is below
P: masks of unlabelled frames that training reads as labels with those pixels ignored.
Several inputs, a folder or a glob write one mask per image into the --out folder; existing
masks are skipped unless --overwrite; a failing input is logged and the others go on (non-zero
exit if any failed). The model is loaded and calibrated once, each frame size planned once.
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

#: Image files a folder input contributes (a .tif goes through the raster path).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "segment",
        help="segment image files (or a mosaic) into class-id masks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "inputs",
        type=Path,
        nargs="+",
        metavar="IMAGE",
        help="input images (any format OpenCV reads; .tif: the raster path), "
        "folders of them, or quoted glob patterns",
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="one input: the class-id mask (single-channel PNG, or GeoTIFF "
        "for the windowed raster path); several, a folder or a glob: a "
        "folder (no suffix) that gets one <name>.png (<name>.tif for "
        "rasters) each",
    )
    parser.add_argument(
        "--color",
        type=Path,
        default=None,
        help="also write the palette blended over the image (PNG/JPEG; a folder when --out is one)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="many-files mode: redo masks that already exist (default: skip)",
    )
    parser.add_argument(
        "--min-confidence",
        type=float,
        default=None,
        metavar="P",
        help="PNG masks: 255 where the top class probability is below P (0 < P < 1), "
        "e.g. pseudo-labels for training",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_segmenter_arguments(parser, device_alias=True)
    add_raster_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from uhr_seg_ros.geo import is_raster_path

    if args.min_confidence is not None and not 0.0 < args.min_confidence < 1.0:
        raise ValueError(f"--min-confidence must be in (0, 1), got {args.min_confidence}")
    settings_from_args(args)  # a bad flag fails before any image is read
    inputs = list(args.inputs)
    # One file and an --out with a suffix (not an existing folder): one mask file.
    single = (
        len(inputs) == 1
        and bool(args.out.suffix)
        and not args.out.is_dir()
        and not _is_glob(inputs[0])
        and not inputs[0].is_dir()
    )
    if not single:
        return run_many(args)
    args.image = inputs[0]
    if is_raster_path(args.out):
        return run_raster(args)
    return run_single(args)


def run_single(args: argparse.Namespace) -> int:
    """One image file in, one class-id PNG (and colour overlay) out."""
    from uhr_seg_ros.cli.geo_options import check_raster_arguments
    from uhr_seg_ros.pipeline import Segmenter

    if args.out.suffix.lower() != ".png":
        raise ValueError(
            f"--out {args.out} must be a .png file (a lossless class-id mask) or "
            "a .tif (georeferenced mask)"
        )
    check_raster_arguments(args, raster_out=False)
    segmenter = Segmenter.from_settings(segment_settings(args))
    try:
        result, size = segment_image_file(
            segmenter, args.image, args.out, args.color, args.min_confidence
        )
    finally:
        segmenter.close()
    timings = ", ".join(f"{k} {v:.0f}" for k, v in result.timings_ms.items())
    LOGGER.info("%s", result.plan.describe())
    LOGGER.info(
        "wrote %s (%dx%d); ms: %s; peak %.0f MB",
        args.out,
        size[1],
        size[0],
        timings,
        result.peak_memory_mb,
    )
    return 0


def segment_settings(args: argparse.Namespace):
    """The shared flags' settings, with the confidence map when ``--min-confidence`` needs it."""
    return settings_from_args(args, return_confidence=args.min_confidence is not None)


def segment_image_file(
    segmenter,
    image_path: Path,
    out: Path,
    color: Path | None = None,
    min_confidence: float | None = None,
):
    """Decode ``image_path``, segment it, write the class-id PNG ``out`` (255 where the
    confidence is below ``min_confidence``) and the overlay ``color``. Returns the
    :class:`SegmentationResult` and the frame's ``(H, W)``."""
    import cv2
    import numpy as np

    from uhr_seg_ros.data.image_io import read_rgb
    from uhr_seg_ros.data.palettes import IGNORE_INDEX, colorize

    image = read_rgb(image_path)
    result = segmenter.segment(image)
    mask = result.mask
    if min_confidence is not None:
        assert result.confidence is not None, "segment_settings asks for the confidence"
        mask = np.where(result.confidence < min_confidence, IGNORE_INDEX, mask).astype(np.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), mask):
        raise ValueError(f"OpenCV cannot write {out}; check that its folder is writable")
    if color is not None:
        overlay = colorize(mask, segmenter.palette, image)
        color.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(color), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR)):
            raise ValueError(
                f"OpenCV cannot write --color {color}; use a .png or .jpg name in a writable folder"
            )
    return result, image.shape[:2]


def _is_glob(path: Path) -> bool:
    return any(ch in str(path) for ch in "*?[")


def expand_inputs(inputs: list[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Files named, the image files of folders named (sorted, not recursive) and the matches of
    glob patterns, each once, in order; and ``(input, reason)`` for inputs that give none."""
    import glob

    files: list[Path] = []
    missing: list[tuple[Path, str]] = []
    for item in inputs:
        if _is_glob(item):
            found = [
                Path(p) for p in sorted(glob.glob(str(item), recursive=True)) if Path(p).is_file()
            ]
            reason = "no file matches this pattern"
        elif item.is_dir():
            found = sorted(
                p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            reason = f"folder has no image files ({', '.join(IMAGE_SUFFIXES)})"
        elif item.is_file():
            found, reason = [item], ""
        else:
            found, reason = [], "does not exist"
        if not found:
            missing.append((item, reason))
        files.extend(found)
    unique = list(dict.fromkeys(files))
    return unique, missing


def _output_name(source: Path) -> str:
    from uhr_seg_ros.geo import is_raster_path

    return source.stem + (".tif" if is_raster_path(source) else ".png")


def run_many(args: argparse.Namespace) -> int:
    """Files, folders and globs in, a folder of masks out: one model, one calibration, one plan
    per frame size; existing masks skipped unless ``--overwrite``; a failing input is reported
    and the rest go on; non-zero exit if any failed."""
    import time

    from tqdm import tqdm

    from uhr_seg_ros.cli.geo_options import check_raster_arguments
    from uhr_seg_ros.pipeline import Segmenter

    if args.out.suffix and not args.out.is_dir():
        raise ValueError(
            f"--out {args.out} names one file but several inputs (or a folder or a "
            "pattern) were given; pass a folder (no suffix) for the masks"
        )
    if args.vector is not None:
        raise ValueError("--vector names one file: use it with one raster input")
    check_raster_arguments(args, raster_out=True)
    files, failed = expand_inputs(list(args.inputs))
    for item, reason in failed:
        LOGGER.error("%s: %s", item, reason)
    names: dict[str, Path] = {}
    for source in files:
        clash = names.setdefault(_output_name(source), source)
        if clash != source:
            raise ValueError(
                f"{clash} and {source} would both write {args.out / clash.stem}.*; "
                "segment them into different --out folders"
            )
    todo = [f for f in files if args.overwrite or not (args.out / _output_name(f)).exists()]
    skipped = len(files) - len(todo)
    if skipped:
        LOGGER.info(
            "skipping %d input(s) whose mask exists in %s (--overwrite redoes them)",
            skipped,
            args.out,
        )
    done, seconds = 0, []
    segmenter = Segmenter.from_settings(segment_settings(args)) if todo else None
    try:
        bar = tqdm(todo, unit="img", desc="segment", disable=args.no_progress or not todo)
        for source in bar:
            bar.set_postfix_str(source.name)
            start = time.perf_counter()
            try:
                segment_input(segmenter, source, args.out, args)
            except (ValueError, OSError, RuntimeError, MemoryError) as exc:
                failed.append((source, f"{type(exc).__name__}: {exc}".splitlines()[0]))
                LOGGER.error("%s: %s", source, failed[-1][1])
                continue
            seconds.append(time.perf_counter() - start)
            done += 1
    finally:
        if segmenter is not None:
            segmenter.close()
    summary = f"{done} segmented, {skipped} skipped (mask exists), {len(failed)} failed"
    if len(seconds) > 1:  # the first frame of a size includes planning and warm-up
        steady = sorted(seconds[1:])[len(seconds[1:]) // 2]
        summary += f"; steady state {steady:.2f} s per image (median, decode to mask written)"
    LOGGER.info("%s -> %s", summary, args.out)
    for item, reason in failed:
        LOGGER.info("failed: %s: %s", item, reason)
    return 1 if failed else 0


def segment_input(segmenter, source: Path, out_dir: Path, args: argparse.Namespace) -> None:
    """One input of the many-files mode, routed by its kind: rasters (.tif) to the windowed
    GeoTIFF path, everything else to the image path."""
    from uhr_seg_ros.geo import is_raster_path

    out = out_dir / _output_name(source)
    color = None if args.color is None else args.color / f"{source.stem}.png"
    if is_raster_path(source):
        from uhr_seg_ros.cli.geo_options import segment_raster_file
        from uhr_seg_ros.geo import require

        if color is not None:
            raise ValueError("--color is for PNG masks; a GeoTIFF mask carries its colour table")
        require("rasterio")
        if args.min_confidence is not None:
            raise ValueError("--min-confidence is for PNG masks, not GeoTIFF mosaics")
        segment_raster_file(segmenter, source, out, args, show_progress=False)
        return
    segment_image_file(segmenter, source, out, color, args.min_confidence)


def run_raster(args: argparse.Namespace) -> int:
    """The GeoTIFF path: windowed reads in, a mask GeoTIFF (and polygons) out."""
    from uhr_seg_ros.cli.geo_options import check_raster_arguments, segment_raster_file
    from uhr_seg_ros.geo import require
    from uhr_seg_ros.pipeline import Segmenter

    check_raster_arguments(args, raster_out=True)
    if args.color is not None:
        raise ValueError("--color is for PNG masks; a GeoTIFF mask carries its colour table")
    if args.min_confidence is not None:
        raise ValueError("--min-confidence is for PNG masks, not GeoTIFF mosaics")
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
