"""Geospatial rasters in and out: orthomosaics (GeoTIFF/COG, any size) to georeferenced masks.

* :mod:`.blocks`: where a raster is cut so that block-by-block inference equals whole-frame
  inference (pure geometry, no rasterio);
* :mod:`.source`: windowed reads with band selection, rescaling to 0..255 and nodata/alpha;
* :mod:`.mosaic`: the block loop and the mask GeoTIFF writer (colour table, class tags, COG);
* :mod:`.vector`: per-class polygons (GeoPackage/GeoJSON) from a mask GeoTIFF.

rasterio is the optional ``geo`` extra; everything here imports it lazily through
:func:`require` so that a missing extra is one line naming it.
"""

from __future__ import annotations

from types import ModuleType

from uhr_seg_ros.extras import MissingExtraError
from uhr_seg_ros.extras import require as _require

__all__ = ["MASK_NODATA", "RASTER_SUFFIXES", "MissingExtraError", "is_raster_path", "require"]

#: Suffixes that select the raster (GeoTIFF) path of ``uhr-seg segment`` / ``uhr-seg batch``.
RASTER_SUFFIXES: tuple[str, ...] = (".tif", ".tiff")
#: Mask value of pixels that were nodata (or transparent) in the input.
MASK_NODATA = 255


def require(module: str, extra: str = "geo") -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``pip install`` of the extra."""
    return _require(module, extra, "geospatial rasters")


def is_raster_path(path: object) -> bool:
    """True for a GeoTIFF/TIFF file name, which goes through the windowed raster path."""
    return str(path).lower().endswith(RASTER_SUFFIXES)
