"""Cut a raster axis into overlapping blocks whose windows are those of the whole raster.

The executor places windows with :func:`~uhr_seg_ros.tiling.geometry.tile_starts`. A block
that starts on one of the whole raster's window starts and is ``patch + k * stride`` long (or
ends on the raster's edge) gets exactly the same windows, shifted. A pixel whose every covering
window lies inside the block receives the same logits, summed in the same order, as in the
whole-frame run; each block *owns* (writes) only such pixels, and consecutive blocks share just
enough windows that the owned ranges tile the axis. So a mosaic segmented block by block equals
``Segmenter.segment`` of the whole raster under the same patch/overlap, without ever holding it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from uhr_seg_ros.tiling.geometry import tile_starts


@dataclass(frozen=True)
class Span:
    """One block along one axis, in raster pixels."""

    #: pixels read and segmented: ``[read_start, read_stop)``
    read_start: int
    read_stop: int
    #: pixels this block writes: ``[own_start, own_stop)``, inside the read range
    own_start: int
    own_stop: int

    @property
    def read_length(self) -> int:
        return self.read_stop - self.read_start


def block_spans(length: int, patch: int, stride: int, block: int) -> list[Span]:
    """Blocks of at most ``max(block, patch + stride)`` pixels covering ``[0, length)``."""
    if block <= 0:
        raise ValueError(f"block size must be positive, got {block}")
    starts = tile_starts(length, patch, stride)
    count = len(starts)
    # At least enough windows per block that consecutive blocks advance.
    per_block = max((block - patch) // stride + 1, math.ceil(patch / stride) + 1)
    spans: list[Span] = []
    first, own_start = 0, 0
    while True:
        stop = min(count, first + per_block)  # windows [first, stop) are in this block
        own_stop = length if stop == count else starts[stop]
        spans.append(
            Span(starts[first], min(length, starts[stop - 1] + patch), own_start, own_stop)
        )
        if stop == count:
            return spans
        # The next block starts at the latest window such that no window before it reaches
        # past this block's owned range, i.e. it fully covers what it will own.
        nxt = stop - 1
        while nxt > 0 and starts[nxt - 1] + patch > own_stop:
            nxt -= 1
        first, own_start = nxt, own_stop
