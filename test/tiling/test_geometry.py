import numpy as np
import pytest

from uhr_seg_ros.tiling import TileGrid, coverage_counts, round_up, tile_starts


@pytest.mark.parametrize(
    "length,patch,stride,expected",
    [
        (10, 4, 3, [0, 3, 6]),  # last window pulled back to end at 10
        (10, 4, 4, [0, 4, 6]),
        (8, 4, 4, [0, 4]),  # exact fit: no extra window
        (3, 4, 2, [0]),  # shorter than a patch: one (padded) window
        (4, 4, 1, [0]),
    ],
)
def test_tile_starts(length, patch, stride, expected):
    assert tile_starts(length, patch, stride) == expected


@pytest.mark.parametrize("length,patch,stride", [(0, 4, 2), (10, 4, 0), (10, 4, 5)])
def test_tile_starts_rejects_bad_geometry(length, patch, stride):
    with pytest.raises(ValueError, match="stride"):
        tile_starts(length, patch, stride)


def test_every_position_is_covered_and_counted():
    for length in (1, 7, 31, 32, 33, 100, 257):
        for patch, stride in ((32, 24), (32, 32), (64, 16)):
            starts = tile_starts(length, patch, stride)
            brute = np.zeros(length, np.float32)
            for s in starts:
                assert s >= 0 and (s + patch <= length or (s == 0 and length < patch))
                brute[s : s + patch] += 1
            assert brute.min() >= 1
            np.testing.assert_array_equal(coverage_counts(length, patch, stride), brute)


def test_grid_raster_order_and_short_frames():
    grid = TileGrid(height=20, width=100, patch=32, stride=24)
    assert grid.tile_height == 20 and grid.tile_width == 32
    tiles = grid.tiles()
    assert len(tiles) == grid.num_tiles == 1 * len(tile_starts(100, 32, 24))
    assert [x for _, _, x in tiles] == sorted(x for _, _, x in tiles)
    assert round_up(100, 32) == 128 and round_up(96, 32) == 96
