"""Reading image files: the one reader every entry point uses (CLI, data sets, demo camera)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def read_rgb(path: str | Path) -> np.ndarray:
    """``H×W×3`` uint8 RGB pixels of an image file; grey is expanded and alpha dropped.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` with the fix for a file
    OpenCV cannot decode or whose pixels are not 8-bit (the network expects 0..255 RGB; silently
    truncating 16-bit data would hand it a nearly black frame).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(
            f"cannot decode {path} (corrupt, empty or not an image); use PNG, JPEG or TIFF"
        )
    if image.dtype != np.uint8:
        raise ValueError(
            f"{path} has {image.dtype} pixels; the model expects 8-bit RGB, "
            "convert it first (e.g. scale 16-bit data to 0..255)"
        )
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    code = cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(image, code)
