"""Tile geometry: where the windows go on a frame. Pure functions, no tensors on a device.

Windows are square ``patch × patch`` and placed every ``stride`` pixels; the last window of a
row/column is pulled back so that it ends exactly on the frame border: along an axis longer than
a patch no window ever runs past the frame (the overlap absorbs the remainder). Along an axis
shorter than a patch the single window is filled by mirror reflection of the frame
(:func:`reflect_indices`) and its logits cropped back, so the network never sees made-up black
borders. This is the usual sliding-window protocol of the segmentation literature (the paper
evaluates with 1504/1128 on DeepGlobe).

Overlapping logits are blended with a per-window weight profile (:func:`blend_profile`):
``uniform`` averages them, ``hann`` down-weights each window's borders, where its context is
poorest. Both profiles are separable, so a pixel's total weight is the product of one row and
one column sum (:func:`coverage_counts`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np


def round_up(value: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is ``>= value``."""
    return -(-int(value) // multiple) * multiple


def tile_starts(length: int, patch: int, stride: int) -> list[int]:
    """Start offsets of windows of ``patch`` pixels covering ``[0, length)``.

    Windows step by ``stride``; the last one is aligned to the end. A ``length`` no longer than
    ``patch`` gets a single window at 0 (the caller pads the missing part).
    """
    if length <= 0 or patch <= 0 or not 0 < stride <= patch:
        raise ValueError(
            f"need length > 0 and 0 < stride <= patch, got {length=}, {patch=}, {stride=}"
        )
    if length <= patch:
        return [0]
    count = math.ceil((length - patch) / stride) + 1
    return [min(i * stride, length - patch) for i in range(count)]


#: Blending profiles of overlapping windows (see :func:`blend_profile`).
BLEND_MODES = ("uniform", "hann")
#: The default: uniform (the paper's protocol). The measurement that should decide it,
#: ``benchmarks/tiling.py`` section 6, did not run yet on a quiet machine (docs/benchmarks.md).
DEFAULT_BLEND = "uniform"
#: Smallest Hann weight relative to the centre: a frame-edge pixel covered by one window's
#: border keeps a usable (if small) weight, and the confidence never divides by zero.
HANN_FLOOR = 1e-3


def blend_profile(patch: int, mode: str = "uniform") -> np.ndarray:
    """``(patch,)`` float32 weight of each window position along one axis (the 2-D weight of a
    window pixel is the outer product): all ones for ``uniform``; ``hann``:
    ``sin²(π (i + ½) / patch)``, floored at :data:`HANN_FLOOR`."""
    if mode == "uniform":
        return np.ones(patch, dtype=np.float32)
    if mode == "hann":
        profile = np.sin(np.pi * (np.arange(patch) + 0.5) / patch) ** 2
        return np.maximum(profile, HANN_FLOOR).astype(np.float32)
    raise ValueError(f"blend must be one of {BLEND_MODES}, got {mode!r}")


def reflect_indices(length: int, size: int, start: int = 0) -> np.ndarray:
    """``(size,)`` int64 indices into ``[0, length)`` of the positions ``start .. start + size
    - 1`` of an axis of ``length`` samples extended by mirror reflection without repeating the
    edge sample (``np.pad(mode="reflect")``, repeated when needed; a single sample is
    repeated). ``start < 0`` reaches before the first sample (a window's context)."""
    positions = np.arange(start, start + size)
    if length == 1:
        return np.zeros(size, dtype=np.int64)
    period = 2 * (length - 1)
    folded = positions % period
    return np.where(folded >= length, period - folded, folded).astype(np.int64)


def coverage_counts(
    length: int, patch: int, stride: int, profile: np.ndarray | None = None
) -> np.ndarray:
    """Total blend weight on each position along one axis, ``(length,)`` float32, > 0: with no
    ``profile`` (uniform), how many windows cover the position.

    The 2-D weight of a pixel is the product of its row and column sums, so averaging the
    overlapping logits never needs a frame-sized counter.
    """
    span = min(patch, length)
    weights = np.ones(span, np.float64) if profile is None else profile[:span].astype(np.float64)
    counts = np.zeros(length, dtype=np.float64)
    for start in tile_starts(length, patch, stride):
        counts[start : start + span] += weights
    return counts.astype(np.float32)


@dataclass(frozen=True)
class TileGrid:
    """All windows of one frame size, in raster order (row by row, left to right)."""

    height: int
    width: int
    patch: int
    stride: int

    @cached_property
    def row_starts(self) -> list[int]:
        return tile_starts(self.height, self.patch, self.stride)

    @cached_property
    def col_starts(self) -> list[int]:
        return tile_starts(self.width, self.patch, self.stride)

    @property
    def tile_height(self) -> int:
        """Rows of real image inside every window (less than ``patch`` only for short frames)."""
        return min(self.patch, self.height)

    @property
    def tile_width(self) -> int:
        return min(self.patch, self.width)

    @property
    def num_tiles(self) -> int:
        return len(self.row_starts) * len(self.col_starts)

    def tiles(self) -> list[tuple[int, int, int]]:
        """``(row_index, y, x)`` of every window in raster order."""
        return [(r, y, x) for r, y in enumerate(self.row_starts) for x in self.col_starts]
