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


# -- truncated and corrupt compressed files (OpenCV alone decodes a cut-off JPEG into grey rows)

from uhr_seg_ros.data.image_io import ImageDecodeError, check_encoded, decode_rgb
from uhr_seg_ros.paths import models_dir, shared_data_dir


@pytest.fixture(scope="module")
def real_bgr() -> np.ndarray:
    """A 320×480 crop of real aerial imagery (DeepGlobe) if present, else the bundled frame."""
    data = shared_data_dir()
    tiles = sorted((data / "deepglobe").glob("*_sat.jpg")) if data else []
    image = cv2.imread(str(tiles[0] if tiles else models_dir() / "sample_frame.jpg"))
    return np.ascontiguousarray(image[:320, :480])


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
@pytest.mark.parametrize("keep", [0.5, 0.9, -1])
def test_truncated_files_are_refused_as_truncated(tmp_path, real_bgr, suffix, keep):
    encoded = cv2.imencode(suffix, real_bgr)[1].tobytes()
    cut = encoded[:keep] if keep == -1 else encoded[: int(len(encoded) * keep)]
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(cut)
    with pytest.raises(ImageDecodeError, match="cut off") as info:
        read_rgb(path)
    assert info.value.reason == "truncated" and str(path) in str(info.value)
    whole = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(decode_rgb(encoded), whole[..., ::-1])  # the whole file is fine


def test_png_with_a_damaged_chunk_is_refused_as_corrupt(real_bgr):
    encoded = bytearray(cv2.imencode(".png", real_bgr)[1].tobytes())
    encoded[len(encoded) // 2] ^= 0xFF  # inside IDAT
    with pytest.raises(ImageDecodeError, match="CRC") as info:
        check_encoded(bytes(encoded), "frame.png")
    assert info.value.reason == "corrupt"


def test_jpeg_with_a_damaged_header_is_refused_as_corrupt(real_bgr):
    encoded = bytearray(cv2.imencode(".jpg", real_bgr)[1].tobytes())
    encoded[4:6] = b"\xff\xf0"  # APP0 length now runs past the end of the data
    with pytest.raises(ImageDecodeError) as info:
        check_encoded(bytes(encoded))
    assert info.value.reason == "corrupt"
    with pytest.raises(ImageDecodeError) as info:
        check_encoded(b"\xff\xd8garbage\xff\xd9")  # no marker after SOI
    assert info.value.reason == "corrupt"


def test_other_formats_pass_the_check_and_decode(tmp_path, real_bgr):
    check_encoded(b"II*\x00 a tiff header and whatever follows")
    cv2.imwrite(str(tmp_path / "f.tif"), real_bgr)
    np.testing.assert_array_equal(read_rgb(tmp_path / "f.tif"), real_bgr[..., ::-1])
