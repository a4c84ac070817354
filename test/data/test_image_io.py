"""The one image-file reader: RGB order, grey/alpha handling and actionable refusals."""

import cv2
import numpy as np
import pytest

from uhr_seg_ros.data.image_io import read_rgb


def test_colour_grey_and_alpha_files_come_back_as_rgb(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "c.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(read_rgb(tmp_path / "c.png"), rgb)

    grey = rgb[..., 0].copy()
    cv2.imwrite(str(tmp_path / "g.png"), grey)
    np.testing.assert_array_equal(read_rgb(tmp_path / "g.png"), np.repeat(grey[..., None], 3, 2))

    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    np.testing.assert_array_equal(read_rgb(tmp_path / "a.png"), rgb)


def test_refusals_say_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_rgb(tmp_path / "missing.png")
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="cannot decode"):
        read_rgb(tmp_path / "bad.jpg")
    cv2.imwrite(str(tmp_path / "deep.png"), np.full((4, 4), 40000, np.uint16))
    with pytest.raises(ValueError, match="8-bit"):
        read_rgb(tmp_path / "deep.png")
