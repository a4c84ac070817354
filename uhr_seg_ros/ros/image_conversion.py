"""sensor_msgs/Image and CompressedImage <-> numpy, with errors a user can act on.

Everything here works on *message-like* objects (anything with the fields of
``sensor_msgs/msg/Image``: ``height, width, encoding, step, is_bigendian, data`` and a
``header``), so it is tested without spinning ROS. ROS 2's ``cv_bridge`` is used when it is
importable, for the frames its Python conversion reads correctly; a numpy conversion gives the
same pixels for every frame (the rules below are cv_bridge's) and is used otherwise.

Decoding produces the core's input convention, ``H×W×3`` uint8 RGB:

* ``rgb8`` is returned as a view of ``msg.data`` (no copy); ``bgr8``, ``rgba8``, ``bgra8`` are
  reordered (alpha dropped); ``mono8``/``8UC1`` are replicated to three channels.
* ``mono16``/``16UC1`` are scaled linearly from the full 16-bit range, ``v8 = round(v16 * 255 /
  65535)`` — exactly what cv_bridge does for a 16→8 bit conversion, so results do not depend on
  whether cv_bridge is installed. A 12-bit sensor in a 16-bit container therefore looks dark;
  scale it at the source if that matters.
* Rows may be padded (``step > width * bytes_per_pixel``); 16-bit data may be big-endian.
"""

from __future__ import annotations

import array
import sys
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from uhr_seg_ros.data.image_io import ImageDecodeError, check_encoded

try:  # ROS 2's cv_bridge: present in a sourced ROS install, absent from PyPI.
    from cv_bridge import CvBridge
except ImportError:
    CvBridge = None

HAVE_CV_BRIDGE = CvBridge is not None
#: One bridge for every frame: building one per frame is start-up work on the hot path.
_BRIDGE = CvBridge() if HAVE_CV_BRIDGE else None


class ImageConversionError(ValueError):
    """A frame that cannot become an RGB image; ``reason`` is a short code for statistics."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class _Layout:
    channels: int
    bytes_per_channel: int
    #: cv2 colour conversion to RGB; None when the pixels already are RGB
    to_rgb: int | None


_LAYOUTS: dict[str, _Layout] = {
    "rgb8": _Layout(3, 1, None),
    "bgr8": _Layout(3, 1, cv2.COLOR_BGR2RGB),
    "rgba8": _Layout(4, 1, cv2.COLOR_RGBA2RGB),
    "bgra8": _Layout(4, 1, cv2.COLOR_BGRA2RGB),
    "mono8": _Layout(1, 1, cv2.COLOR_GRAY2RGB),
    "8UC1": _Layout(1, 1, cv2.COLOR_GRAY2RGB),
    "mono16": _Layout(1, 2, cv2.COLOR_GRAY2RGB),
    "16UC1": _Layout(1, 2, cv2.COLOR_GRAY2RGB),
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_LAYOUTS)


def _check_size(height: int, width: int, max_pixels: int | None, what: str) -> None:
    if height <= 0 or width <= 0:
        raise ImageConversionError(
            "zero_size",
            f"{what} has zero size ({width}×{height}); the publisher sent an empty frame",
        )
    if max_pixels is not None and height * width > max_pixels:
        raise ImageConversionError(
            "too_large",
            f"{what} is {width}×{height} = {height * width} pixels, over "
            f"max_frame_pixels={max_pixels}; raise max_frame_pixels if the frame is intended",
        )


def _layout_of(msg: Any) -> _Layout:
    layout = _LAYOUTS.get(msg.encoding)
    if layout is None:
        raise ImageConversionError(
            "unknown_encoding",
            f"image encoding {msg.encoding!r} is not supported; publish "
            f"one of {', '.join(SUPPORTED_ENCODINGS)} (or use the compressed transport)",
        )
    return layout


def _rows(msg: Any, layout: _Layout) -> np.ndarray:
    """Validate geometry against the buffer; ``(H, W*C*bytes)`` uint8 view of the pixel rows."""
    row_bytes = msg.width * layout.channels * layout.bytes_per_channel
    if msg.step < row_bytes:
        raise ImageConversionError(
            "step_mismatch",
            f"step {msg.step} is smaller than one row of {msg.width} "
            f"{msg.encoding} pixels ({row_bytes} bytes); the publisher's step is wrong",
        )
    expected = msg.step * msg.height
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    if buffer.size < expected:
        raise ImageConversionError(
            "truncated",
            f"data holds {buffer.size} bytes, step × height = {msg.step} × "
            f"{msg.height} needs {expected}; the frame was truncated",
        )
    if buffer.size > expected:
        raise ImageConversionError(
            "step_mismatch",
            f"data holds {buffer.size} bytes but step × height = {msg.step} × "
            f"{msg.height} = {expected}; step or height is wrong",
        )
    return buffer.reshape(msg.height, msg.step)[:, :row_bytes]


def _numpy_to_rgb(
    msg: Any, layout: _Layout, rows: np.ndarray, out: np.ndarray | None
) -> np.ndarray:
    if layout.bytes_per_channel == 2:
        pixels = rows.view(">u2" if msg.is_bigendian else "<u2")
        # round(v * 255 / 65535) == (v + 128) // 257 for every 16-bit v (no ties: 257 is odd).
        pixels = ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)
    else:
        pixels = rows
    pixels = pixels.reshape(msg.height, msg.width, layout.channels)
    if layout.to_rgb is None:
        return pixels
    if out is None or out.shape != (msg.height, msg.width, 3) or out.dtype != np.uint8:
        out = np.empty((msg.height, msg.width, 3), dtype=np.uint8)
    return cv2.cvtColor(pixels, layout.to_rgb, dst=out)


#: Encodings cv_bridge converts to rgb8 itself; it refuses 8UC1/16UC1 (no colour meaning).
_CV_BRIDGE_ENCODINGS = frozenset({"rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16"})


def _cv_bridge_converts(msg: Any, layout: _Layout) -> bool:
    """Whether cv_bridge's Python conversion reads this frame correctly: it assumes rows of
    whole pixels and byte-swaps with an API NumPy 2 removed. Other frames take the numpy path."""
    whole_pixels = msg.step % (layout.channels * layout.bytes_per_channel) == 0
    native_order = layout.bytes_per_channel == 1 or bool(msg.is_bigendian) == (
        sys.byteorder == "big"
    )
    return msg.encoding in _CV_BRIDGE_ENCODINGS and whole_pixels and native_order


def image_to_rgb(
    msg: Any,
    *,
    max_pixels: int | None = None,
    out: np.ndarray | None = None,
    use_cv_bridge: bool | None = None,
) -> np.ndarray:
    """Decode a ``sensor_msgs/Image`` into an ``H×W×3`` uint8 RGB array.

    Args:
        msg: an Image message (or any object with its fields).
        max_pixels: refuse frames with more than ``H*W`` pixels before touching the data.
        out: a ``H×W×3`` uint8 buffer to write into when a conversion is needed (reused across
            frames to avoid allocations); ignored for ``rgb8``, which is returned as a view of
            ``msg.data``.
        use_cv_bridge: None = cv_bridge when importable, True = cv_bridge (ImportError when
            absent), False = numpy only. cv_bridge only gets the frames it converts correctly
            (see ``_cv_bridge_converts``); the numpy path gives the same pixels for all.

    Raises:
        ImageConversionError: unknown encoding, zero size, over ``max_pixels``, step or data
            length inconsistent with the geometry.
    """
    layout = _layout_of(msg)
    _check_size(msg.height, msg.width, max_pixels, "image")
    rows = _rows(msg, layout)  # validates the geometry before either decoder reads the data
    if use_cv_bridge is None:
        use_cv_bridge = HAVE_CV_BRIDGE
    if use_cv_bridge:
        if not HAVE_CV_BRIDGE:
            raise ImportError("cv_bridge is not importable; source a ROS 2 install that has it")
        if _BRIDGE is not None and _cv_bridge_converts(msg, layout):
            return _BRIDGE.imgmsg_to_cv2(msg, "rgb8")
    return _numpy_to_rgb(msg, layout, rows, out)


def _encoded_size(data: np.ndarray) -> tuple[int, int] | None:
    """``(height, width)`` read from a PNG or JPEG header without decoding, else None."""
    if data[:8].tobytes() == b"\x89PNG\r\n\x1a\n" and data.size >= 24:
        width, height = np.frombuffer(data[16:24].tobytes(), dtype=">u4")
        return int(height), int(width)
    if data[:2].tobytes() != b"\xff\xd8":
        return None
    pos = 2
    while pos + 9 <= data.size:
        if data[pos] != 0xFF:
            return None
        marker = int(data[pos + 1])
        length = int(data[pos + 2]) << 8 | int(data[pos + 3])
        # SOF0..SOF15 carry the frame size; C4 (DHT), C8 (JPG), CC (DAC) share the range.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height = int(data[pos + 5]) << 8 | int(data[pos + 6])
            width = int(data[pos + 7]) << 8 | int(data[pos + 8])
            return height, width
        pos += 2 + length
    return None


def compressed_to_rgb(msg: Any, *, max_pixels: int | None = None) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG, PNG, anything OpenCV reads) to RGB.

    The bytes are checked first (``data.image_io.check_encoded``: a cut-off or damaged JPEG/PNG,
    which OpenCV would decode into grey rows, is refused), then the size is read from the
    PNG/JPEG header, so a frame over ``max_pixels`` is refused without decoding it.
    ``msg.format`` is informational only: OpenCV detects the codec from the bytes. Alpha is
    dropped; 16-bit PNGs are reduced to 8 bit by OpenCV.

    Raises:
        ImageConversionError: empty data, truncated or corrupt JPEG/PNG data, over
            ``max_pixels``, or data OpenCV cannot decode.
    """
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise ImageConversionError("zero_size", "compressed image has no data")
    try:
        check_encoded(data.tobytes(), f"compressed image ({msg.format})")
    except ImageDecodeError as exc:
        raise ImageConversionError(exc.reason, str(exc)) from exc
    size = _encoded_size(data)
    if size is not None:
        _check_size(*size, max_pixels, f"compressed image ({msg.format})")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageConversionError(
            "corrupt",
            f"cannot decode {data.size} bytes of compressed image (format "
            f"{msg.format!r}); the data is corrupt or not an image",
        )
    _check_size(bgr.shape[0], bgr.shape[1], max_pixels, f"compressed image ({msg.format})")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=bgr)


_ENCODING_OF_CHANNELS = {1: "mono8", 3: "rgb8"}


def fill_image_msg(msg: Any, pixels: np.ndarray, header: Any) -> Any:
    """Write an ``H×W`` (mono8) or ``H×W×3`` (rgb8) uint8 array into an Image message.

    ``msg`` is reused across frames: its ``data`` buffer is overwritten in place when the size is
    unchanged, so publishing a stream of equal-sized masks allocates nothing. ``header`` is the
    input frame's (same stamp and frame_id, so consumers can pair mask and image).
    """
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3):
        raise ValueError(f"expected a uint8 H×W or H×W×3 array, got {pixels.dtype} {pixels.shape}")
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if channels not in _ENCODING_OF_CHANNELS:
        raise ValueError(f"expected 1 or 3 channels, got {channels}")
    msg.header = header
    msg.height, msg.width = int(pixels.shape[0]), int(pixels.shape[1])
    msg.encoding = _ENCODING_OF_CHANNELS[channels]
    msg.is_bigendian = 0
    msg.step = msg.width * channels
    if isinstance(msg.data, array.array) and len(msg.data) == pixels.nbytes:
        np.frombuffer(msg.data, dtype=np.uint8).reshape(pixels.shape)[...] = pixels
    else:
        msg.data = array.array("B", np.ascontiguousarray(pixels).tobytes())
    return msg
