"""Helpers of the geo tests: georeferenced rasters made by the tests themselves, and a tiny CPU
segmenter (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import numpy as np

from uhr_seg_ros.pipeline import Segmenter, SegmenterSettings

#: Test modules that need rasterio start with ``rasterio = pytest.importorskip(*NEEDS_GEO)``.
NEEDS_GEO = ("rasterio", None, "rasterio is the optional geo extra: pip install 'uhr_seg_ros[geo]'")
EPSG = 32633
#: origin (x, y) and pixel size of the test rasters (UTM 33N, 25 cm pixels)
ORIGIN, PIXEL = (500000.0, 5000000.0), 0.25


def smooth_image(height: int, width: int, bands: int = 3, seed: int = 0) -> np.ndarray:
    """``(bands, H, W)`` float in 0..1 with structure at several scales (so masks vary)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((bands, height, width), dtype=np.float32)
    for b in range(bands):
        fx, fy, phase = [*rng.uniform(0.01, 0.06, 2).tolist(), rng.uniform(0, 6.28)]
        out[b] = (
            0.5
            + 0.35 * np.sin(xx * fx + phase) * np.cos(yy * fy)
            + 0.15 * rng.random((height, width), dtype=np.float32)
        )
    return np.clip(out, 0, 1)


def write_raster(path, data: np.ndarray, *, nodata=None, alpha: bool = False) -> None:
    import rasterio
    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    crs, transform = CRS.from_epsg(EPSG), from_origin(*ORIGIN, PIXEL, PIXEL)
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": data.dtype,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": 128,
        "blockysize": 128,
    }
    if alpha:  # the 4th band is an alpha band (extra sample marked as alpha)
        profile.update(photometric="RGB", alpha="YES")
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)


def make_segmenter(model, **overrides) -> Segmenter:
    settings = {
        "backend_order": ("cpu",),
        "memory_cap_mb": 400,
        "patch_size": 64,
        "overlap": 16,
        "batch_size": 2,
    }
    settings.update(overrides)
    return Segmenter.from_settings(SegmenterSettings(**settings), model=model)
