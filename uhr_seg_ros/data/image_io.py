"""Reading and decoding images: the one reader every entry point uses (CLI, data sets, demo
camera) and the one check of compressed bytes (files, the node's CompressedImage, bag replay).

OpenCV decodes a cut-off JPEG without an error: libjpeg's warnings are hidden and the missing
rows come back grey, which the network turns into a plausible one-class mask. So JPEG and PNG
bytes are checked before decoding: a JPEG must keep its marker structure up to the scan and end
with the end-of-image marker; a PNG's chunks must be complete, their CRCs right, and IEND last.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import cv2
import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"
JPEG_EOI = b"\xff\xd9"
#: A complete JPEG ends with EOI, possibly followed by a little padding from some encoders.
JPEG_TAIL = 64
#: JPEG markers without a length field (RSTn, SOI, EOI, TEM).
_STANDALONE = frozenset({0x01, *range(0xD0, 0xDA)})
_SOS = 0xDA


class ImageDecodeError(ValueError):
    """Compressed image bytes that must not be segmented; ``reason`` is ``truncated`` (data
    missing at the end) or ``corrupt`` (inconsistent data) for statistics."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _check_jpeg(data: bytes, what: str) -> None:
    if JPEG_EOI not in data[-JPEG_TAIL:]:
        raise ImageDecodeError(
            "truncated",
            f"{what}: JPEG of {len(data)} bytes has no "
            "end-of-image marker; it was cut off (in transit, by the camera "
            "driver, or an interrupted copy)",
        )
    pos = 2
    while True:  # header segments up to the start of scan
        if pos + 4 > len(data) or data[pos] != 0xFF:
            raise ImageDecodeError(
                "corrupt",
                f"{what}: corrupt JPEG, its header is damaged "
                f"at byte {pos} (no marker where one must be)",
            )
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        length = data[pos + 2] << 8 | data[pos + 3]
        if length < 2 or pos + 2 + length > len(data):
            raise ImageDecodeError(
                "corrupt",
                f"{what}: corrupt JPEG, the segment at byte "
                f"{pos} claims {length} bytes, past the end of the data",
            )
        if marker == _SOS:
            return
        pos += 2 + length


def _check_png(data: bytes, what: str) -> None:
    pos = len(PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            break
        crc = int.from_bytes(data[end - 4 : end], "big")
        if zlib.crc32(data[pos + 4 : end - 4]) != crc:
            raise ImageDecodeError(
                "corrupt",
                f"{what}: corrupt PNG, chunk "
                f"{kind.decode('latin-1')!r} at byte {pos} fails its CRC",
            )
        if kind == b"IEND":
            return
        pos = end
    raise ImageDecodeError(
        "truncated", f"{what}: PNG of {len(data)} bytes ends before its IEND chunk; it was cut off"
    )


def check_encoded(data: bytes, what: str = "image") -> None:
    """Raise :class:`ImageDecodeError` when JPEG or PNG ``data`` is truncated or corrupt.

    Other formats pass (the decoder reports what it can). Cost: one pass over the headers for a
    JPEG; a CRC over the bytes for a PNG (tens of ms for a 4K frame).
    """
    if data[:2] == JPEG_SOI:
        _check_jpeg(data, what)
    elif data[:8] == PNG_SIGNATURE:
        _check_png(data, what)


def _to_rgb(image: np.ndarray | None, what: str) -> np.ndarray:
    if image is None:
        raise ImageDecodeError(
            "corrupt",
            f"cannot decode {what} (corrupt, empty or not an image); use PNG, JPEG or TIFF",
        )
    if image.dtype != np.uint8:
        raise ValueError(
            f"{what} has {image.dtype} pixels; the model expects 8-bit RGB, "
            "convert it first (e.g. scale 16-bit data to 0..255)"
        )
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    code = cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(image, code)


def decode_rgb(data: bytes, what: str = "image") -> np.ndarray:
    """``H×W×3`` uint8 RGB pixels of encoded image bytes (checked by :func:`check_encoded`).

    Raises :class:`ImageDecodeError` for truncated/corrupt/undecodable data and ``ValueError``
    for pixels that are not 8-bit.
    """
    if not data:
        raise ImageDecodeError("corrupt", f"{what} is empty")
    check_encoded(data, what)
    return _to_rgb(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), what)


def read_rgb(path: str | Path) -> np.ndarray:
    """``H×W×3`` uint8 RGB pixels of an image file; grey is expanded and alpha dropped.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` (an
    :class:`ImageDecodeError` for truncated or corrupt JPEG/PNG files) with the fix for a file
    that cannot be used or whose pixels are not 8-bit (the network expects 0..255 RGB; silently
    truncating 16-bit data would hand it a nearly black frame).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    return decode_rgb(path.read_bytes(), str(path))
