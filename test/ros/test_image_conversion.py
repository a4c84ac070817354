"""Image message <-> numpy: every supported encoding, padded rows, and every bad frame."""

from __future__ import annotations

import array
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from uhr_seg_ros.ros.image_conversion import (
    HAVE_CV_BRIDGE,
    ImageConversionError,
    compressed_to_rgb,
    fill_image_msg,
    image_to_rgb,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
GREY16 = RNG.integers(0, 65536, size=(5, 7), dtype=np.uint16)


def make_msg(pixels: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False):
    """A message-like Image holding ``pixels`` with ``pad`` junk bytes after every row."""
    height, width = pixels.shape[:2]
    if pixels.dtype == np.uint16:
        pixels = pixels.astype(">u2" if bigendian else "<u2")
    rows = pixels.reshape(height, -1).view(np.uint8)
    padded = np.concatenate([rows, np.full((height, pad), 0xAB, np.uint8)], axis=1)
    return SimpleNamespace(
        height=height,
        width=width,
        encoding=encoding,
        step=padded.shape[1],
        is_bigendian=int(bigendian),
        data=array.array("B", padded.tobytes()),
    )


def expected_grey16(values: np.ndarray) -> np.ndarray:
    scaled = np.rint(values.astype(np.float64) * 255.0 / 65535.0).astype(np.uint8)
    return np.repeat(scaled[..., None], 3, axis=2)


ENCODED = {
    "rgb8": (RGB, RGB),
    "bgr8": (RGB[..., ::-1].copy(), RGB),
    "rgba8": (np.dstack([RGB, np.full(RGB.shape[:2], 9, np.uint8)]), RGB),
    "bgra8": (np.dstack([RGB[..., ::-1], np.full(RGB.shape[:2], 9, np.uint8)]), RGB),
    "mono8": (RGB[..., 0].copy(), np.repeat(RGB[..., :1], 3, axis=2)),
    "8UC1": (RGB[..., 1].copy(), np.repeat(RGB[..., 1:2], 3, axis=2)),
    "mono16": (GREY16, expected_grey16(GREY16)),
    "16UC1": (GREY16, expected_grey16(GREY16)),
}


@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("encoding", sorted(ENCODED))
def test_every_encoding_decodes_to_rgb(encoding, pad):
    pixels, expected = ENCODED[encoding]
    rgb = image_to_rgb(make_msg(pixels, encoding, pad=pad), use_cv_bridge=False)
    assert rgb.shape == (5, 7, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, expected)


@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
def test_big_endian_16_bit(encoding):
    msg = make_msg(GREY16, encoding, pad=2, bigendian=True)
    np.testing.assert_array_equal(image_to_rgb(msg, use_cv_bridge=False), expected_grey16(GREY16))


def test_16_bit_scaling_matches_cv_bridge_rounding():
    values = np.array([[0, 128, 129, 257, 385, 386, 65535]], dtype=np.uint16)
    rgb = image_to_rgb(make_msg(values, "mono16"), use_cv_bridge=False)
    assert rgb[0, :, 0].tolist() == [0, 0, 1, 1, 1, 2, 255]


def test_rgb8_is_a_view_and_out_buffer_is_reused():
    msg = make_msg(RGB, "rgb8")
    assert np.shares_memory(
        image_to_rgb(msg, use_cv_bridge=False), np.frombuffer(msg.data, np.uint8)
    )
    out = np.empty((5, 7, 3), np.uint8)
    result = image_to_rgb(make_msg(RGB[..., ::-1].copy(), "bgr8"), out=out, use_cv_bridge=False)
    assert result is out
    np.testing.assert_array_equal(out, RGB)


def _bad(msg, **kwargs) -> ImageConversionError:
    with pytest.raises(ImageConversionError) as info:
        image_to_rgb(msg, use_cv_bridge=False, **kwargs)
    assert str(info.value)  # a message, not just a code
    return info.value


def test_unknown_encoding_names_the_supported_ones():
    err = _bad(make_msg(RGB, "yuv422"))
    assert err.reason == "unknown_encoding" and "rgb8" in str(err) and "yuv422" in str(err)


def test_zero_size():
    msg = make_msg(RGB, "rgb8")
    msg.height, msg.data = 0, array.array("B")
    assert _bad(msg).reason == "zero_size"


def test_step_smaller_than_a_row():
    msg = make_msg(RGB, "rgb8")
    msg.step = 7 * 3 - 1
    assert _bad(msg).reason == "step_mismatch"


def test_data_longer_than_step_times_height():
    msg = make_msg(RGB, "rgb8")
    msg.data.extend(b"\x00" * 4)
    assert _bad(msg).reason == "step_mismatch"


def test_truncated_data():
    msg = make_msg(RGB, "bgr8", pad=2)
    del msg.data[-10:]
    err = _bad(msg)
    assert err.reason == "truncated" and "truncated" in str(err)


def test_over_max_pixels_is_refused_before_reading_data():
    msg = SimpleNamespace(
        height=30000, width=30000, encoding="rgb8", step=90000, is_bigendian=0, data=b""
    )
    err = _bad(msg, max_pixels=20000 * 20000)
    assert err.reason == "too_large" and "max_frame_pixels" in str(err)


def encode(ext: str, bgr: np.ndarray, *params: int) -> bytes:
    ok, data = cv2.imencode(ext, bgr, list(params))
    assert ok
    return data.tobytes()


def _compressed(data: bytes, fmt: str = "jpeg"):
    return SimpleNamespace(format=fmt, data=array.array("B", data))


def test_png_round_trip_is_exact():
    png = encode(".png", RGB[..., ::-1])
    np.testing.assert_array_equal(compressed_to_rgb(_compressed(png, "png")), RGB)


def test_jpeg_decodes_to_rgb():
    smooth = np.zeros((64, 48, 3), np.uint8)
    smooth[..., 0] = 200  # red in RGB
    jpeg = encode(".jpg", smooth[..., ::-1], cv2.IMWRITE_JPEG_QUALITY, 95)
    rgb = compressed_to_rgb(_compressed(jpeg))
    assert rgb.shape == (64, 48, 3)
    assert np.abs(rgb.astype(int) - smooth).max() <= 3


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_compressed_over_max_pixels_refused_from_header(ext, monkeypatch):
    encoded = encode(ext, np.zeros((40, 50, 3), np.uint8))

    def must_not_decode(*args):
        raise AssertionError("decoded a frame that the header already showed too large")

    monkeypatch.setattr(cv2, "imdecode", must_not_decode)
    with pytest.raises(ImageConversionError) as info:
        compressed_to_rgb(_compressed(encoded), max_pixels=40 * 50 - 1)
    assert info.value.reason == "too_large"


@pytest.mark.parametrize("data", [b"\xff\xd8\xff\xe0garbage\xff\xd9", b"not an image at all"])
def test_corrupt_compressed(data):
    with pytest.raises(ImageConversionError) as info:
        compressed_to_rgb(_compressed(data))
    assert info.value.reason == "corrupt" and "corrupt" in str(info.value)


def test_cut_off_jpeg_is_refused_even_if_a_decoder_would_fill_it_in():
    jpeg = encode(".jpg", RGB)
    with pytest.raises(ImageConversionError) as info:
        compressed_to_rgb(_compressed(jpeg[: len(jpeg) * 2 // 3]))
    assert info.value.reason == "truncated"


def test_empty_compressed():
    with pytest.raises(ImageConversionError) as info:
        compressed_to_rgb(_compressed(b""))
    assert info.value.reason == "zero_size"


def test_fill_mask_and_colour_messages_reuse_the_buffer():
    header = object()
    msg = SimpleNamespace(data=array.array("B"))
    mask = RNG.integers(0, 6, size=(5, 7), dtype=np.uint8)
    fill_image_msg(msg, mask, header)
    assert (msg.height, msg.width, msg.step, msg.encoding) == (5, 7, 7, "mono8")
    assert msg.header is header and bytes(msg.data) == mask.tobytes()
    buffer = msg.data
    fill_image_msg(msg, mask[::-1], header)  # same size: written in place
    assert msg.data is buffer and bytes(msg.data) == np.ascontiguousarray(mask[::-1]).tobytes()
    fill_image_msg(msg, RGB, header)
    assert (msg.step, msg.encoding) == (21, "rgb8")
    np.testing.assert_array_equal(image_to_rgb(msg, use_cv_bridge=False), RGB)


def test_fill_refuses_float_arrays():
    with pytest.raises(ValueError, match="uint8"):
        fill_image_msg(SimpleNamespace(data=array.array("B")), np.zeros((2, 2)), None)


@pytest.mark.skipif(not HAVE_CV_BRIDGE, reason="ROS 2 cv_bridge is not importable here")
@pytest.mark.parametrize("pad_pixels", [0, 2])
@pytest.mark.parametrize("encoding", sorted(ENCODED))
def test_numpy_path_equals_cv_bridge(encoding, pad_pixels):
    from sensor_msgs.msg import Image

    pixels = ENCODED[encoding][0]
    pixel_bytes = pixels.itemsize * (pixels.shape[2] if pixels.ndim == 3 else 1)
    fake = make_msg(pixels, encoding, pad=pad_pixels * pixel_bytes)
    msg = Image(
        height=fake.height,
        width=fake.width,
        encoding=fake.encoding,
        step=fake.step,
        is_bigendian=fake.is_bigendian,
        data=fake.data,
    )
    np.testing.assert_array_equal(
        image_to_rgb(msg, use_cv_bridge=True), image_to_rgb(msg, use_cv_bridge=False)
    )
