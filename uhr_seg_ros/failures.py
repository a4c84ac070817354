"""One failure policy for a frame, the same in every adapter (node, ``replay``, ``batch``).

:func:`segment_frame` runs ``Segmenter.segment`` and turns every way a frame can fail into a
:class:`FrameFailed` with a reason code the adapters count and report:

* ``bad_input``: the array is not a usable image (wrong dtype, shape, empty);
* ``no_plan``: no tile plan fits the memory cap for this frame size;
* ``out_of_memory``: CUDA ran out of memory; the cache is freed, the cap lowered to
  :data:`OOM_CAP_FACTOR` of itself (a replan, kept for later frames) and the frame retried
  once; a second failure, or no plan under the lower cap, gives up on the frame;
* ``inference_failed``: anything else the backend raised.

Decoding errors (wrong encoding, truncated JPEG, ...) happen before the core sees a frame and
carry their own codes (:class:`~uhr_seg_ros.ros.image_conversion.ImageConversionError`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import torch

from uhr_seg_ros.tiling import PlanError

if TYPE_CHECKING:
    from uhr_seg_ros.pipeline import SegmentationResult, Segmenter

log = logging.getLogger(__name__)

BAD_INPUT = "bad_input"
NO_PLAN = "no_plan"
OUT_OF_MEMORY = "out_of_memory"
INFERENCE_FAILED = "inference_failed"
#: Every reason code :func:`segment_frame` can give.
REASONS: tuple[str, ...] = (BAD_INPUT, NO_PLAN, OUT_OF_MEMORY, INFERENCE_FAILED)
#: After a CUDA out-of-memory error the cap is lowered to this fraction and the frame retried.
OOM_CAP_FACTOR = 0.75


class FrameFailed(Exception):
    """This frame is lost (the next one is not); ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _classify(exc: Exception) -> FrameFailed:
    if isinstance(exc, PlanError):
        return FrameFailed(NO_PLAN, str(exc))
    if isinstance(exc, ValueError):
        return FrameFailed(BAD_INPUT, str(exc))
    return FrameFailed(INFERENCE_FAILED, f"{type(exc).__name__}: {exc}".splitlines()[0])


def segment_frame(segmenter: Segmenter, image: np.ndarray | torch.Tensor) -> SegmentationResult:
    """``segmenter.segment(image)`` under the policy above; raises :class:`FrameFailed`."""
    try:
        return segmenter.segment(image)
    except torch.cuda.OutOfMemoryError as exc:
        oom = exc
    except Exception as exc:  # any failure loses this frame only
        raise _classify(exc) from exc
    torch.cuda.empty_cache()
    cap = segmenter.settings.memory_cap_mb
    lower = cap * OOM_CAP_FACTOR
    try:
        segmenter.set_memory_cap(lower)
    except ValueError as plan_exc:  # PlanError or SettingsError: nothing fits a lower cap
        raise FrameFailed(
            OUT_OF_MEMORY,
            f"CUDA out of memory at a {cap:.0f} MB cap and no smaller plan fits: {plan_exc}",
        ) from oom
    log.warning(
        "CUDA out of memory at a %.0f MB cap; lowered the cap to %.0f MB and retrying the frame "
        "(other processes may be using the GPU; set the cap to what is really free)",
        cap,
        lower,
    )
    try:
        return segmenter.segment(image)
    except torch.cuda.OutOfMemoryError as again:
        torch.cuda.empty_cache()
        raise FrameFailed(
            OUT_OF_MEMORY, f"CUDA out of memory again at {lower:.0f} MB: {again}"
        ) from again
    except Exception as exc:
        raise _classify(exc) from exc
