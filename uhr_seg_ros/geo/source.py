"""Windowed reads of a raster as the model's input: band selection, rescaling, nodata/alpha.

Only the requested window is ever read; the percentile stretch is computed once from a
decimated read (GDAL serves it from overviews when the file has them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import require

#: Longest side of the decimated read that percentile stretches are computed from.
STATS_SIDE = 2048
#: Rows converted per step on the float path (bounds the float32 scratch per band).
CONVERT_ROWS = 512


@dataclass(frozen=True)
class Rescale:
    """How raster values become 0..255: ``auto`` (uint8 as is, else the 2–98 % stretch),
    ``none``, ``percentile`` (per band, ``low``/``high`` in %) or ``range`` (fixed values)."""

    mode: str = "auto"
    low: float = 2.0
    high: float = 98.0

    @classmethod
    def parse(cls, text: str) -> Rescale:
        """``auto`` | ``none`` | ``percentile`` | ``percentile:LO,HI`` | ``MIN,MAX``."""
        text = text.strip().lower()
        try:
            if text in ("auto", "none", "percentile"):
                return cls(text)
            if text.startswith("percentile:"):
                low, high = (float(v) for v in text.split(":", 1)[1].split(","))
                if not 0 <= low < high <= 100:
                    raise ValueError
                return cls("percentile", low, high)
            low, high = (float(v) for v in text.split(","))
        except ValueError:
            raise ValueError(
                f"--rescale {text!r}: use auto, none, percentile, "
                "percentile:LO,HI (0 <= LO < HI <= 100) or MIN,MAX"
            ) from None
        if not high > low:
            raise ValueError(f"--rescale {text!r}: MAX must be greater than MIN")
        return cls("range", low, high)


def parse_bands(text: str) -> tuple[int, ...]:
    """``3,2,1`` → ``(3, 2, 1)``: 1-based band numbers as GDAL and QGIS count them."""
    try:
        bands = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--bands {text!r}: use 1-based band numbers such as 3,2,1") from None
    if len(bands) not in (1, 3) or min(bands) < 1:
        raise ValueError(f"--bands {text!r}: give three bands (R,G,B) or one (grey), 1-based")
    return bands


class RasterSource:
    """An open raster read window by window as ``(H, W, 3)`` uint8 RGB plus a validity mask."""

    def __init__(
        self,
        path: str | Path,
        bands: tuple[int, ...] | None = None,
        rescale: Rescale = Rescale(),
        src_nodata: float | None = None,
    ) -> None:
        rasterio = require("rasterio")
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"raster {self.path} does not exist")
        try:
            self.dataset: Any = rasterio.open(self.path)
        except rasterio.errors.RasterioIOError as exc:
            raise ValueError(f"cannot open {self.path} as a raster: {exc}") from None
        ds = self.dataset
        if bands is None:  # RGB(A)/RGB+NIR → 1,2,3; grey(+alpha) → grey three times
            bands = (1, 2, 3) if ds.count >= 3 else (1,)
        if max(bands) > ds.count:
            self.close()
            raise ValueError(
                f"--bands {','.join(map(str, bands))}: {self.path} has only {ds.count} band(s)"
            )
        self.bands = tuple(bands) * (3 if len(bands) == 1 else 1)
        self.dtype = np.dtype(ds.dtypes[self.bands[0] - 1])
        self.nodata = src_nodata if src_nodata is not None else ds.nodata
        flags = {flag for band in self.bands for flag in ds.mask_flag_enums[band - 1]}
        self._mask_band = bool(
            flags & {rasterio.enums.MaskFlags.per_dataset, rasterio.enums.MaskFlags.alpha}
        )
        self.ranges = self._value_ranges(rescale)
        self._luts = self._make_luts()

    # -- properties of the whole raster -------------------------------------------------------

    @property
    def height(self) -> int:
        return int(self.dataset.height)

    @property
    def width(self) -> int:
        return int(self.dataset.width)

    def describe(self) -> str:
        ds = self.dataset
        stretch = (
            "as is"
            if self.ranges is None
            else ", ".join(
                f"b{b} {lo:g}..{hi:g}" for b, (lo, hi) in zip(self.bands, self.ranges, strict=False)
            )
        )
        return (
            f"{self.path.name}: {ds.width}x{ds.height}, {ds.count} band(s) {self.dtype}, "
            f"bands {','.join(map(str, self.bands))} ({stretch}), CRS "
            f"{ds.crs.to_string() if ds.crs else 'none'}, nodata {self.nodata}"
        )

    # -- reading ------------------------------------------------------------------------------

    def read(self, row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """``(H, W, 3)`` uint8 model input and ``(H, W)`` bool validity of one window."""
        from rasterio.windows import Window

        window = Window(col, row, width, height)
        data = self.dataset.read(self.bands, window=window)
        valid = (
            self.dataset.dataset_mask(window=window) > 0
            if self._mask_band
            else np.ones((height, width), dtype=bool)
        )
        if self.nodata is not None:
            hit = np.isnan(data) if np.isnan(self.nodata) else data == self.nodata
            valid &= ~hit.all(axis=0)
        if data.dtype.kind == "f":
            valid &= ~np.isnan(data).any(axis=0)
        rgb = np.empty((height, width, 3), dtype=np.uint8)
        for channel in range(3):
            rgb[..., channel] = self._to_uint8(data[channel], channel)
        return rgb, valid

    def _to_uint8(self, band: np.ndarray, channel: int) -> np.ndarray:
        if self.ranges is None:
            return band
        if self._luts is not None:  # 8/16-bit integers: one table lookup, no float copy
            return self._luts[channel][band.view(np.uint8 if band.itemsize == 1 else np.uint16)]
        low, high = self.ranges[channel]
        out = np.empty(band.shape, dtype=np.uint8)
        for r in range(0, band.shape[0], CONVERT_ROWS):
            rows = band[r : r + CONVERT_ROWS].astype(np.float32)
            rows -= low
            rows *= 255.0 / (high - low)
            np.clip(np.nan_to_num(rows, copy=False), 0, 255, out=rows)
            out[r : r + CONVERT_ROWS] = np.rint(rows)
        return out

    def _value_ranges(self, rescale: Rescale) -> list[tuple[float, float]] | None:
        mode = rescale.mode
        if mode == "auto":
            mode = "none" if self.dtype == np.uint8 else "percentile"
        if mode == "none":
            if self.dtype != np.uint8:
                raise ValueError(
                    f"{self.path} is {self.dtype}, the model takes 0..255: pass "
                    "--rescale percentile or --rescale MIN,MAX"
                )
            return None
        if mode == "range":
            return [(rescale.low, rescale.high)] * 3
        return self._percentiles(rescale.low, rescale.high)

    def _percentiles(self, low: float, high: float) -> list[tuple[float, float]]:
        ds = self.dataset
        factor = max(1, -(-max(ds.height, ds.width) // STATS_SIDE))
        shape = (-(-ds.height // factor), -(-ds.width // factor))
        unique = sorted(set(self.bands))
        data = ds.read(unique, out_shape=(len(unique), *shape))
        valid = (
            ds.dataset_mask(out_shape=shape) > 0 if self._mask_band else np.ones(shape, dtype=bool)
        )
        if self.nodata is not None:
            hit = np.isnan(data) if np.isnan(self.nodata) else data == self.nodata
            valid &= ~hit.all(axis=0)
        ranges = {}
        for i, band in enumerate(unique):
            values = data[i][valid]
            values = values[np.isfinite(values)] if values.dtype.kind == "f" else values
            if values.size == 0:
                raise ValueError(
                    f"{self.path} band {band} has no valid pixels to stretch; "
                    "check --src-nodata or pass --rescale MIN,MAX"
                )
            lo, hi = (float(v) for v in np.percentile(values, [low, high]))
            ranges[band] = (lo, hi if hi > lo else lo + 1.0)
        return [ranges[band] for band in self.bands]

    def _make_luts(self) -> list[np.ndarray] | None:
        if self.ranges is None or self.dtype.kind not in "ui" or self.dtype.itemsize > 2:
            return None
        # Table index = the value's bit pattern; entry = its stretched byte.
        codes = np.arange(2 ** (8 * self.dtype.itemsize), dtype=np.uint64)
        values = codes.astype(np.uint8 if self.dtype.itemsize == 1 else np.uint16)
        values = values.view(self.dtype).astype(np.float64)
        return [
            np.clip(np.rint((values - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)
            for lo, hi in self.ranges
        ]

    def close(self) -> None:
        self.dataset.close()

    def __enter__(self) -> RasterSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
