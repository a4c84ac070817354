"""Tile geometry: where the windows go on a frame. Pure functions, no tensors on a device.

Windows are square ``patch × patch`` and placed every ``stride`` pixels; the last window of a
row/column is pulled back so that it ends exactly on the frame border (no padding needed unless
the frame is smaller than one patch along that axis). This is the usual sliding-window protocol
of the segmentation literature (the paper evaluates with 1504/1128 on DeepGlobe).
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
        raise ValueError(f"need length > 0 and 0 < stride <= patch, got {length=}, "
                         f"{patch=}, {stride=}")
    if length <= patch:
        return [0]
    count = math.ceil((length - patch) / stride) + 1
    return [min(i * stride, length - patch) for i in range(count)]


def coverage_counts(length: int, patch: int, stride: int) -> np.ndarray:
    """How many windows cover each position along one axis: ``(length,)`` float32, all >= 1.

    The 2-D count of a pixel is the product of its row and column counts, so averaging the
    overlapping logits never needs a frame-sized counter.
    """
    counts = np.zeros(length + 1, dtype=np.float32)
    for start in tile_starts(length, patch, stride):
        counts[start] += 1
        counts[min(start + patch, length)] -= 1
    return np.cumsum(counts[:-1])


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
