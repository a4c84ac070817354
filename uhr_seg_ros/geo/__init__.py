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

import importlib
from types import ModuleType

#: Suffixes that select the raster (GeoTIFF) path of ``uhr-seg segment`` / ``uhr-seg batch``.
RASTER_SUFFIXES: tuple[str, ...] = (".tif", ".tiff")
#: Mask value of pixels that were nodata (or transparent) in the input.
MASK_NODATA = 255


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def require(module: str, extra: str = "geo") -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``pip install`` of the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{module} is not installed (needed for geospatial rasters): "
            f"pip install 'uhr_seg_ros[{extra}]'"
        ) from exc


def is_raster_path(path: object) -> bool:
    """True for a GeoTIFF/TIFF file name, which goes through the windowed raster path."""
    return str(path).lower().endswith(RASTER_SUFFIXES)
