"""Segment a raster of any size block by block into a georeferenced mask GeoTIFF.

Memory is bounded by one block (``block_size``² pixels of input, model input and mask, plus
the executor's buffers for that block) and GDAL's block cache (:data:`GDAL_CACHE_MB`), never by
the raster: each block is read through a rasterio window, segmented by the
:class:`~uhr_seg_ros.pipeline.Segmenter`, and the pixels it owns (see :mod:`.blocks`) are
written to a tiled, compressed GeoTIFF with the input's CRS, transform and size.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import MASK_NODATA, require
from .blocks import Span, block_spans
from .source import RasterSource

if TYPE_CHECKING:
    from uhr_seg_ros.pipeline import Segmenter

log = logging.getLogger(__name__)

#: Default block side in pixels: with a 1024 patch (25 % overlap) blocks share one window row
#: and column, i.e. ~25 % of windows per axis are computed twice; larger blocks waste less and
#: hold more (about 10 bytes per block pixel on the host).
DEFAULT_BLOCK_SIZE = 4096
#: GDAL's block cache for the reads and writes of one raster, in MB (GDAL's default is 5 % of
#: RAM, which a long write would fill with dirty tiles).
GDAL_CACHE_MB = 64
#: Tile side of the mask GeoTIFF (and of the COG).
MASK_TILE = 512


@dataclass
class RasterReport:
    """What one raster run did; ``uhr-seg`` logs it and ``uhr-seg batch`` records it."""

    input: str
    output: str
    width: int
    height: int
    #: the pinned tile plan every block ran with (patch, overlap, batch)
    plan: str
    blocks: int
    skipped_blocks: int  # blocks whose owned pixels were all nodata: not segmented
    seconds: float
    class_counts: dict[str, int]


def pin_tiling(
    segmenter: Segmenter, height: int, width: int, block_size: int
) -> tuple[list[Span], list[Span]]:
    """Fix patch, overlap and batch for the whole raster and cut it into blocks.

    Unpinned, the patch is what the planner picks for a ``block_size / 4`` frame (so that
    blocks hold several windows per axis); the batch is what it picks for the largest block.
    """
    settings = segmenter.settings
    patch, overlap = settings.patch_size, settings.overlap
    if patch is None:
        probe_side = max(block_size // 4, segmenter.backend.size_divisor)
        probe = segmenter.plan_for(min(height, probe_side), min(width, probe_side))
        patch, overlap = probe.patch, probe.overlap
    elif overlap is None:
        overlap = segmenter.plan_for(min(height, patch), min(width, patch)).overlap
    segmenter.pin_tiling(patch, overlap, settings.batch_size)
    stride = patch - overlap
    rows = block_spans(height, patch, stride, block_size)
    cols = block_spans(width, patch, stride, block_size)
    largest = segmenter.plan_for(max(s.read_length for s in rows), max(s.read_length for s in cols))
    segmenter.pin_tiling(patch, overlap, largest.batch)
    return rows, cols


class MaskWriter:
    """A uint8 class-id GeoTIFF written window by window: tiled, DEFLATE, colour table, class
    names as tags and a QGIS style sidecar; written under a ``.partial`` name and renamed on
    :meth:`close`, so a failed run never leaves a truncated mask under the final name."""

    def __init__(
        self,
        path: str | Path,
        *,
        width: int,
        height: int,
        crs: Any,
        transform: Any,
        class_names: Sequence[str],
        palette: Sequence[Sequence[int]],
        tags: dict[str, str] | None = None,
    ) -> None:
        rasterio = require("rasterio")
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial.tif")
        self.class_names = tuple(class_names)
        self.palette = tuple(tuple(int(c) for c in rgb) for rgb in palette)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        profile = {
            "driver": "GTiff",
            "width": width,
            "height": height,
            "count": 1,
            "dtype": "uint8",
            "crs": crs,
            "transform": transform,
            "nodata": MASK_NODATA,
            "tiled": True,
            "blockxsize": MASK_TILE,
            "blockysize": MASK_TILE,
            "compress": "deflate",
            "predictor": 2,
            "BIGTIFF": "IF_SAFER",
        }
        try:
            self.dataset = rasterio.open(self.partial, "w", **profile)
        except rasterio.errors.RasterioIOError as exc:
            raise ValueError(f"cannot create {self.path}: {exc}") from None
        ds = self.dataset
        colours = {i: (*rgb, 255) for i, rgb in enumerate(self.palette[: len(self.class_names)])}
        colours[MASK_NODATA] = (0, 0, 0, 0)
        ds.write_colormap(1, colours)
        ds.set_band_description(1, "class id")
        ds.update_tags(
            CLASS_NAMES=json.dumps(list(self.class_names)),
            **{f"CLASS_{i}": name for i, name in enumerate(self.class_names)},
            **(tags or {}),
        )
        self.counts = np.zeros(256, dtype=np.int64)

    def write(self, mask: np.ndarray, row: int, col: int) -> None:
        from rasterio.windows import Window

        self.dataset.write(mask, 1, window=Window(col, row, mask.shape[1], mask.shape[0]))
        self.counts += np.bincount(mask.ravel(), minlength=256)

    def close(self, overviews: bool = False) -> None:
        """Finish the file: with ``overviews``, a Cloud-Optimized GeoTIFF (GDAL's COG driver,
        mode-resampled overviews), else the tiled GeoTIFF as written."""
        rasterio = require("rasterio")
        self.dataset.close()
        if overviews:
            with rasterio.Env() as env:
                has_cog = "COG" in env.drivers()
            if has_cog:
                from rasterio.shutil import copy

                copy(
                    self.partial,
                    self.path,
                    driver="COG",
                    compress="DEFLATE",
                    predictor="YES",
                    blocksize=MASK_TILE,
                    overview_resampling="MODE",
                    BIGTIFF="IF_SAFER",
                )
                self.partial.unlink()
            else:  # old GDAL: internal overviews after the fact (not COG layout)
                with rasterio.open(self.partial, "r+") as ds:
                    factors = _overview_factors(ds.width, ds.height)
                    ds.build_overviews(factors, rasterio.enums.Resampling.mode)
                os.replace(self.partial, self.path)
        else:
            os.replace(self.partial, self.path)
        self.path.with_suffix(".qml").write_text(qgis_style(self.class_names, self.palette))

    def abort(self) -> None:
        self.dataset.close()
        self.partial.unlink(missing_ok=True)


def _overview_factors(width: int, height: int) -> list[int]:
    factors, factor = [], 2
    while max(width, height) / factor >= MASK_TILE / 2:
        factors.append(factor)
        factor *= 2
    return factors


def qgis_style(class_names: Sequence[str], palette: Sequence[Sequence[int]]) -> str:
    """A QGIS layer style (``.qml``): paletted renderer with the class names as labels. QGIS
    applies ``mask.qml`` automatically when ``mask.tif`` is added to a project."""
    from xml.sax.saxutils import quoteattr

    entries = "\n".join(
        f'        <paletteEntry value="{i}" color="#{r:02x}{g:02x}{b:02x}" alpha="255" '
        f"label={quoteattr(name)}/>"
        for i, (name, (r, g, b)) in enumerate(zip(class_names, palette, strict=False))
    )
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        '<qgis version="3.28" styleCategories="Symbology">\n  <pipe>\n'
        '    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1">\n'
        f"      <colorPalette>\n{entries}\n      </colorPalette>\n"
        "    </rasterrenderer>\n  </pipe>\n</qgis>\n"
    )


def segment_raster(
    segmenter: Segmenter,
    source: RasterSource,
    out: str | Path,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
    overviews: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> RasterReport:
    """Segment ``source`` into the mask GeoTIFF ``out``; ``progress(done, total)`` per block."""
    start = time.perf_counter()
    settings = segmenter.settings
    original = (settings.patch_size, settings.overlap, settings.batch_size)
    try:
        return _segment_blocks(segmenter, source, Path(out), block_size, overviews, progress, start)
    finally:  # the segmenter may serve other files next (uhr-seg batch): unpin
        segmenter.pin_tiling(*original)


def _segment_blocks(
    segmenter: Segmenter,
    source: RasterSource,
    out: Path,
    block_size: int,
    overviews: bool,
    progress: Callable[[int, int], None] | None,
    start: float,
) -> RasterReport:
    rasterio = require("rasterio")
    height, width = source.height, source.width
    rows, cols = pin_tiling(segmenter, height, width, block_size)
    plan = segmenter.plan_for(rows[0].read_length, cols[0].read_length)
    total, done, skipped = len(rows) * len(cols), 0, 0
    log.info(
        "%s → %d block(s) of up to %dx%d px, %s",
        source.describe(),
        total,
        cols[0].read_length,
        rows[0].read_length,
        plan.describe(),
    )
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        writer = MaskWriter(
            out,
            width=width,
            height=height,
            crs=source.dataset.crs,
            transform=source.dataset.transform,
            class_names=segmenter.class_names,
            palette=segmenter.palette,
            tags={
                "SOFTWARE": "uhr_seg_ros",
                "SOURCE": source.path.name,
                "TILE_PLAN": f"patch {plan.patch}, overlap {plan.overlap}, batch {plan.batch}",
            },
        )
        try:
            for rs in rows:
                for cs in cols:
                    image, valid = source.read(
                        rs.read_start, cs.read_start, rs.read_length, cs.read_length
                    )
                    own = (
                        slice(rs.own_start - rs.read_start, rs.own_stop - rs.read_start),
                        slice(cs.own_start - cs.read_start, cs.own_stop - cs.read_start),
                    )
                    if valid[own].any():
                        mask = segmenter.segment(image).mask[own]
                        mask[~valid[own]] = MASK_NODATA
                    else:  # nothing to segment here (e.g. outside the mosaic's footprint)
                        mask = np.full(valid[own].shape, MASK_NODATA, dtype=np.uint8)
                        skipped += 1
                    del image, valid
                    writer.write(np.ascontiguousarray(mask), rs.own_start, cs.own_start)
                    done += 1
                    if progress is not None:
                        progress(done, total)
            writer.close(overviews)
        except BaseException:
            writer.abort()
            raise
    counts = {name: int(writer.counts[i]) for i, name in enumerate(segmenter.class_names)}
    counts["nodata"] = int(writer.counts[MASK_NODATA])
    return RasterReport(
        str(source.path),
        str(out),
        width,
        height,
        f"patch {plan.patch}, overlap {plan.overlap}, batch {plan.batch}",
        total,
        skipped,
        time.perf_counter() - start,
        counts,
    )
