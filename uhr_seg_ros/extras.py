"""Optional dependencies (setup.py extras): import them so that a missing one is one line.

``require("onnx", "onnx", "ONNX export")`` returns the module or raises
:class:`MissingExtraError` saying ``pip install 'uhr_seg_ros[onnx]'``; ``uhr-seg`` prints that
line (no traceback) and exits 1.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def require(module: str, extra: str, needed_for: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``pip install`` of ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{module} is not installed (needed for {needed_for}): "
            f"pip install 'uhr_seg_ros[{extra}]'"
        ) from exc
