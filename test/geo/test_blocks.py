"""Block geometry: every block sees the whole raster's windows, owned ranges tile the axis."""

import itertools

import pytest

from uhr_seg_ros.geo.blocks import block_spans
from uhr_seg_ros.tiling.geometry import tile_starts


@pytest.mark.parametrize("length", [1, 50, 64, 65, 300, 301, 1000, 4097])
@pytest.mark.parametrize("patch,stride", [(64, 48), (64, 64), (64, 20), (96, 72)])
@pytest.mark.parametrize("block", [1, 100, 160, 1000])
def test_blocks_reproduce_the_global_windows_and_tile_the_axis(length, patch, stride, block):
    starts = tile_starts(length, patch, stride)
    spans = block_spans(length, patch, stride, block)
    assert spans[0].own_start == 0 and spans[-1].own_stop == length
    for a, b in itertools.pairwise(spans):
        assert a.own_stop == b.own_start and b.read_start > a.read_start
    for span in spans:
        local = [span.read_start + s for s in tile_starts(span.read_length, patch, stride)]
        inside = [
            s for s in starts if span.read_start <= s and s + min(patch, length) <= span.read_stop
        ]
        assert local == inside  # same windows as the whole raster, none extra
        for y in range(span.own_start, span.own_stop):  # every covering window is inside
            covering = [s for s in starts if s <= y < s + patch]
            assert all(s in local for s in covering)


def test_block_size_bounds_the_read_length():
    spans = block_spans(10_000, 1024, 768, 4096)
    assert max(s.read_length for s in spans) <= 4096
    assert len(spans) == 3
