"""Choose patch size, overlap and batch size so that a frame's inference stays under a memory cap.

Predicted peak of a plan = bytes already held (weights, engines: measured by the caller)
+ the measured :class:`~uhr_seg_ros.tiling.memory_model.MemoryModel` of one forward
+ the executor's own buffers (exact: :func:`~uhr_seg_ros.tiling.executor.buffer_specs`).
A plan is accepted when that sum is at most ``cap · (1 − safety_margin)``; the margin absorbs
allocator fragmentation and what a handful of calibration points cannot show.

Choice among the plans under the cap: with a time model (seconds per forward measured by
``uhr-seg calibrate`` for each batch and patch), the least predicted frame time, i.e. the sum over
the plan's forwards of the measured time of one forward: windows, overlap and batching all count.
Without one (or on a tie) the preference order: the largest patch (most context per window),
then a frame resident on the device over streaming it from host memory in row bands, then the
largest batch. Pinned ``patch_size``/``overlap``/``batch_size`` are always honoured.

Candidate windows: fixed sides with a 25 % overlap (the paper's protocol), plus, for every count
``n`` of windows along a frame axis, the smallest side that covers it with ``n`` windows and at
least :data:`MIN_OVERLAP_FRACTION` overlap (the frame is then covered with little recomputation).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch

from uhr_seg_ros.model.context import ContextSpec
from uhr_seg_ros.settings import DEFAULT_SAFETY_MARGIN

from .executor import buffer_bytes
from .geometry import BLEND_MODES, DEFAULT_BLEND, TileGrid, round_up
from .memory_model import MemoryModel
from .plan import PlanError, TilePlan

log = logging.getLogger(__name__)

#: Overlap between neighbouring windows as a fraction of the patch (the paper's protocol:
#: 1280/960 on Inria and 1504/1128 on DeepGlobe are both 25 %).
DEFAULT_OVERLAP_FRACTION = 0.25
#: The least overlap of the "n windows per axis" candidates, as a fraction of the patch: every
#: seam keeps some shared context for the averaging.
MIN_OVERLAP_FRACTION = 1 / 16
#: Windows per frame axis tried for the fitted candidates.
MAX_FITTED_WINDOWS = 8
#: Patch sides the planner tries, largest first.
PATCH_CANDIDATES: tuple[int, ...] = (
    2048,
    1792,
    1536,
    1280,
    1024,
    896,
    768,
    640,
    512,
    384,
    256,
    192,
    128,
    96,
    64,
    32,
)
#: A thin frame (e.g. 100 × 8000) gets windows of at least this side, not of its short side:
#: below this the network sees too little context to be useful.
MIN_CONTEXT_PATCH = 256


def _patch_candidates(
    height: int,
    width: int,
    size_divisor: int,
    patch_override: int | None,
    allowed: Sequence[int] | None,
) -> list[int]:
    if patch_override is not None:
        if patch_override <= 0 or patch_override % size_divisor:
            raise PlanError(
                f"patch_size must be a positive multiple of {size_divisor}, got {patch_override}"
            )
        if allowed is not None and patch_override not in allowed:
            raise PlanError(
                f"patch_size {patch_override} is not one the backend was built for "
                f"({sorted(allowed)}); pick one of those or rebuild the backend"
            )
        return [patch_override]
    if allowed is not None:  # e.g. TensorRT: one engine per patch size, built at start-up
        return sorted(set(allowed), reverse=True)
    # No window larger than the frame needs (rounded up to the divisor), except that thin
    # frames still get MIN_CONTEXT_PATCH of context along their long side.
    limit = round_up(
        min(max(height, width), max(min(height, width), MIN_CONTEXT_PATCH)), size_divisor
    )
    candidates = {p for p in PATCH_CANDIDATES if p <= limit and p % size_divisor == 0}
    candidates.add(limit)
    return sorted(candidates, reverse=True)


def fitted_windows(
    length: int, count: int, size_divisor: int, min_overlap_fraction: float = MIN_OVERLAP_FRACTION
) -> tuple[int, int] | None:
    """``(patch, overlap)`` of the smallest window side that covers ``length`` with ``count``
    windows sharing at least ``min_overlap_fraction`` of a patch; None if ``count`` is 1 or the
    window would not fit inside ``length``."""
    if count < 2:
        return None
    patch = round_up(math.ceil(length / (count - (count - 1) * min_overlap_fraction)), size_divisor)
    if patch >= length:
        return None
    stride = math.ceil((length - patch) / (count - 1))
    return patch, patch - stride


def _window_candidates(
    height: int,
    width: int,
    size_divisor: int,
    patch_override: int | None,
    overlap_override: int | None,
    allowed: Sequence[int] | None,
    fitted: bool,
) -> list[tuple[int, int]]:
    """``(patch, overlap)`` pairs in preference order (largest patch first)."""
    pairs: dict[int, int] = {}
    for patch in _patch_candidates(height, width, size_divisor, patch_override, allowed):
        pairs[patch] = (
            round(patch * DEFAULT_OVERLAP_FRACTION)
            if overlap_override is None
            else overlap_override
        )
    if fitted and patch_override is None and overlap_override is None and allowed is None:
        short = min(height, width)
        for length in {height, width}:
            for count in range(2, MAX_FITTED_WINDOWS + 1):
                window = fitted_windows(length, count, size_divisor)
                if window is not None and window[0] <= short:
                    # the same side fitted to both axes keeps the smaller overlap (less work)
                    pairs[window[0]] = min(window[1], pairs.get(window[0], window[1]))
    valid = {patch: ov for patch, ov in pairs.items() if 0 <= ov < patch}
    if not valid:  # only a pinned overlap can be invalid
        raise PlanError(
            f"overlap must be in [0, patch) = [0, {max(pairs)}), got {overlap_override}"
        )
    return sorted(valid.items(), key=lambda pair: -pair[0])


def predicted_frame_seconds(
    grid: TileGrid, batch: int, memory_model: MemoryModel, split_rows: bool = False
) -> float | None:
    """Sum of the time model's seconds over the forwards of a plan (partial batches included);
    ``split_rows``: a streamed frame never batches across rows of windows."""
    cols = len(grid.col_starts)
    groups = [cols] * len(grid.row_starts) if split_rows else [grid.num_tiles]
    total = 0.0
    for windows in groups:
        full, rest = divmod(windows, batch)
        for size, forwards in ((batch, full), (rest, 1 if rest else 0)):
            if forwards:
                seconds = memory_model.predict_seconds(size, grid.patch)
                if seconds is None:
                    return None
                total += forwards * seconds
    return total


def plan_tiles(
    height: int,
    width: int,
    *,
    cap_bytes: int,
    memory_model: MemoryModel,
    num_classes: int,
    device: torch.device,
    input_dtype: torch.dtype,
    held_bytes: int = 0,
    max_batch: int = 16,
    size_divisor: int = 32,
    with_confidence: bool = False,
    safety_margin: float = DEFAULT_SAFETY_MARGIN,
    patch_size: int | None = None,
    overlap: int | None = None,
    batch_size: int | None = None,
    allowed_patches: Sequence[int] | None = None,
    blend: str = DEFAULT_BLEND,
    context: ContextSpec | None = None,
) -> TilePlan:
    """The preferred plan for an ``height × width`` frame, or :class:`PlanError`.

    ``held_bytes`` is what the device already holds before inference (weights, TensorRT
    engine: ``Backend.external_bytes()``); ``patch_size``, ``overlap`` and
    ``batch_size`` pin those choices instead of letting the planner pick them;
    ``allowed_patches`` restricts the patch to sizes the backend can run (None: any multiple of
    ``size_divisor``); ``blend`` weights overlapping logits (``uniform`` or ``hann``);
    ``context`` is the network's context squeezing (SCPSeg), whose gather buffers count
    against the cap like every other buffer.
    """
    if blend not in BLEND_MODES:
        raise PlanError(f"blend must be one of {BLEND_MODES}, got {blend!r}")
    if height <= 0 or width <= 0:
        raise PlanError(f"cannot plan an empty frame of {width}x{height}")
    if not 0.0 <= safety_margin < 1.0:
        raise PlanError(f"safety_margin must be in [0, 1), got {safety_margin}")
    if batch_size is not None and not 1 <= batch_size <= max_batch:
        raise PlanError(f"batch_size must be in 1..{max_batch} for this backend, got {batch_size}")
    budget = int(cap_bytes * (1.0 - safety_margin))
    # On the CPU "device" memory is host memory: the caller's frame is used in place.
    residency = (True, False) if torch.device(device).type == "cuda" else (True,)
    timed = memory_model.has_time
    smallest_need: int | None = None
    best: TilePlan | None = None
    for patch, patch_overlap in _window_candidates(
        height, width, size_divisor, patch_size, overlap, allowed_patches, fitted=timed
    ):
        grid = TileGrid(height, width, patch, patch - patch_overlap)
        most = min(max_batch, grid.num_tiles)
        batches = [batch_size] if batch_size is not None else range(most, 0, -1)
        for resident in residency:
            for batch in batches:
                buffers = buffer_bytes(
                    grid,
                    batch,
                    num_classes,
                    device,
                    input_dtype,
                    frame_resident=resident,
                    with_confidence=with_confidence,
                    blend=blend,
                    context=context,
                )
                need = held_bytes + memory_model.predict(batch, patch) + buffers
                if need > budget:
                    smallest_need = need if smallest_need is None else min(smallest_need, need)
                    continue
                seconds = predicted_frame_seconds(
                    grid, batch, memory_model, split_rows=not resident
                )
                candidate = TilePlan(
                    height,
                    width,
                    patch,
                    patch_overlap,
                    batch,
                    resident,
                    int(cap_bytes),
                    budget,
                    need,
                    buffers,
                    seconds,
                    blend,
                )
                if not timed:
                    return candidate  # preference order: the first that fits
                # strictly faster only: ties keep the earlier (preferred) plan
                if best is None or (seconds or 0.0) < (best.predicted_seconds or 0.0):
                    best = candidate
    if best is not None:
        log.debug("fastest plan under the cap: %s", best.describe())
        return best
    assert smallest_need is not None  # no plan fitted, so at least one was measured
    needed_cap = smallest_need / (1.0 - safety_margin) / 2**20
    raise PlanError(
        f"no tile plan for a {width}x{height} frame fits a memory cap of "
        f"{cap_bytes / 2**20:.0f} MB: the smallest plan needs {smallest_need / 2**20:.0f} MB "
        f"(of which {held_bytes / 2**20:.0f} MB weights/engine already held) plus a "
        f"{safety_margin:.0%} safety margin. Raise the cap to at least {needed_cap:.0f} MB"
        + (", or drop the patch_size/batch_size overrides" if patch_size or batch_size else "")
        + "."
    )
