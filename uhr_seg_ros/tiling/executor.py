"""Run a :class:`~uhr_seg_ros.tiling.plan.TilePlan` on one frame: tiles in, class mask out.

Data path (nothing frame-sized in float, ever):
  1. the uint8 frame goes to the device once (or, when the plan says it does not fit, one band
     of ``tile_height`` rows per row of windows);
  2. windows are copied from views of that frame into one reused ``(B, 3, P, P)`` batch buffer
     (the uint8 → float conversion happens in that copy; the buffer has the backend's preferred
     memory layout, so channels-last backends get it without a conversion); along an axis
     shorter than a patch the window is completed by mirror reflection of the frame;
  3. their logits (times the plan's blend weights, when not uniform) are summed into a ring
     buffer of ``tile_height`` rows × frame width; when a
     row of windows is complete, the rows no later window touches are final: argmax (and,
     on request, the softmax confidence of the averaged logits) → uint8 labels, then those
     ring rows are zeroed for reuse;
  4. labels go to the host once at the end (or per band when streaming).

Argmax of the summed logits equals argmax of the averaged logits (every class of a pixel is
divided by the same total weight), so the weight is only applied for the confidence.
All buffers are allocated by :meth:`TiledExecutor.prepare` and reused for every frame of the
same size; :func:`buffer_specs` is the one description of them, used by the planner as well.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType

import numpy as np
import torch

from uhr_seg_ros.backends.base import Backend
from uhr_seg_ros.model.context import ContextSpec

from .context import ContextGather, context_buffer_specs
from .geometry import TileGrid, blend_profile, coverage_counts, reflect_indices
from .plan import TilePlan

BufferSpecs = dict[str, tuple[tuple[int, ...], torch.dtype]]
#: ``y -> (tile_height, W, c)`` device view of frame rows ``[y, y + tile_height)``
RowSource = Callable[[int], torch.Tensor]
#: where final rows go: ``(mask (H, W) uint8, confidence (H, W) float16 or None)``
Sinks = tuple[torch.Tensor, "torch.Tensor | None"]

#: Final rows are labelled this many at a time, so the argmax scratch (int64) stays small.
FINALIZE_ROWS = 64


def buffer_specs(
    grid: TileGrid,
    batch: int,
    num_classes: int,
    device: torch.device,
    input_dtype: torch.dtype,
    *,
    frame_resident: bool,
    with_confidence: bool,
    blend: str = "uniform",
    context: ContextSpec | None = None,
) -> BufferSpecs:
    """Name → ``(shape, dtype)`` of every buffer the executor allocates for one plan
    (``context``: the network's, whose gather buffers are included, see tiling/context.py)."""
    height, width, rows = grid.height, grid.width, grid.tile_height
    chunk = min(rows, FINALIZE_ROWS)
    specs: BufferSpecs = {
        "batch": ((batch, 3, grid.patch, grid.patch), input_dtype),
        "logit_rows": ((num_classes, rows, width), torch.float32),  # ring of open rows
        "row_max": ((chunk, width), torch.float32),
        "row_argmax": ((chunk, width), torch.int64),
        "label_rows": ((chunk, width), torch.uint8),
    }
    if blend != "uniform":  # weight of each window pixel (outer product of the 1-D profile)
        specs["window_weights"] = ((grid.tile_height, grid.tile_width), torch.float32)
    if with_confidence:
        specs["confidence_rows"] = ((chunk, width), torch.float16)
        specs["row_counts"] = ((height,), torch.float32)
        specs["col_counts"] = ((width,), torch.float32)
    if context is not None:  # its row band also serves streaming
        specs.update(context_buffer_specs(grid, batch, context, input_dtype))
    elif not frame_resident:
        specs["frame_rows"] = ((rows, width, 3), torch.uint8)
    elif torch.device(device).type == "cuda":
        specs["frame"] = ((height, width, 3), torch.uint8)
        specs["mask"] = ((height, width), torch.uint8)
        if with_confidence:
            specs["confidence"] = ((height, width), torch.float16)
    return specs


def buffer_bytes(
    grid: TileGrid,
    batch: int,
    num_classes: int,
    device: torch.device,
    input_dtype: torch.dtype,
    *,
    frame_resident: bool,
    with_confidence: bool,
    blend: str = "uniform",
    context: ContextSpec | None = None,
) -> int:
    """Total bytes of :func:`buffer_specs`."""
    specs = buffer_specs(
        grid,
        batch,
        num_classes,
        device,
        input_dtype,
        frame_resident=frame_resident,
        with_confidence=with_confidence,
        blend=blend,
        context=context,
    )
    return sum(int(np.prod(shape)) * dtype.itemsize for shape, dtype in specs.values())


class _PhaseTimer:
    """Milliseconds per phase; CUDA phases are timed with events and read once at the end."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.host_ms: dict[str, float] = {}
        self.events: list[tuple[str, torch.cuda.Event, torch.cuda.Event]] = []

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self.events.append((name, start, end))
        else:
            t0 = time.perf_counter()
            yield
            self.host_ms[name] = self.host_ms.get(name, 0.0) + (time.perf_counter() - t0) * 1e3

    def result(self) -> dict[str, float]:
        totals = dict(self.host_ms)
        if self.events:
            self.events[-1][2].synchronize()
            for name, start, end in self.events:
                totals[name] = totals.get(name, 0.0) + start.elapsed_time(end)
        return totals


class TiledExecutor:
    """Segments frames tile by tile through a :class:`Backend` under a :class:`TilePlan`."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.device = backend.device
        self.plan: TilePlan | None = None
        self.with_confidence = False
        self._buffers: dict[str, torch.Tensor] = {}
        self._batches: list[list[tuple[int, int, int]]] = []
        # mirror-reflection indices completing a window along an axis shorter than the patch
        self._fill_rows: torch.Tensor | None = None
        self._fill_cols: torch.Tensor | None = None
        #: the network's context (None: windows are fed as they are)
        self.context: ContextSpec | None = backend.window_context
        self._gather: ContextGather | None = None

    @property
    def buffers(self) -> Mapping[str, torch.Tensor]:
        """Read-only view of the allocated buffers by name (see :func:`buffer_specs`)."""
        return MappingProxyType(self._buffers)

    @property
    def buffer_bytes(self) -> int:
        """Bytes of every buffer currently allocated (the executor's tracked allocations)."""
        return sum(t.numel() * t.element_size() for t in self._buffers.values())

    def prepare(self, plan: TilePlan, with_confidence: bool = False) -> None:
        """Allocate the buffers of ``plan`` (no-op when they already match)."""
        if plan == self.plan and with_confidence == self.with_confidence:
            return
        self.release()
        grid = plan.grid
        specs = buffer_specs(
            grid,
            plan.batch,
            self.backend.num_classes,
            self.device,
            self.backend.input_dtype,
            frame_resident=plan.frame_resident,
            with_confidence=with_confidence,
            blend=plan.blend,
            context=self.context,
        )
        self._buffers = {
            name: torch.zeros(shape, dtype=dtype, device=self.device)
            for name, (shape, dtype) in specs.items()
        }
        # The layout the backend's first layer wants (channels-last: the HWC frame copies in
        # row by row and the network needs no conversion).
        self._buffers["batch"] = self._buffers["batch"].contiguous(
            memory_format=getattr(self.backend, "memory_format", torch.contiguous_format)
        )
        profile = blend_profile(grid.patch, plan.blend)
        if "window_weights" in self._buffers:
            self._buffers["window_weights"].copy_(
                torch.from_numpy(np.outer(profile[: grid.tile_height], profile[: grid.tile_width]))
            )
        if with_confidence:
            self._buffers["row_counts"].copy_(
                torch.from_numpy(coverage_counts(grid.height, grid.patch, grid.stride, profile))
            )
            self._buffers["col_counts"].copy_(
                torch.from_numpy(coverage_counts(grid.width, grid.patch, grid.stride, profile))
            )
        self._fill_rows = self._fill_cols = None
        if grid.tile_height < grid.patch:
            self._fill_rows = torch.from_numpy(
                reflect_indices(grid.tile_height, grid.patch)[grid.tile_height :]
            ).to(self.device)
        if grid.tile_width < grid.patch:
            self._fill_cols = torch.from_numpy(
                reflect_indices(grid.tile_width, grid.patch)[grid.tile_width :]
            ).to(self.device)
        self._batches = self._make_batches(grid, plan.batch, split_rows=not plan.frame_resident)
        if self.context is not None:
            self._gather = ContextGather(grid, self.context, self._buffers, self.device)
        self.plan, self.with_confidence = plan, with_confidence

    def release(self) -> None:
        """Free every buffer (before re-planning, so that the planner sees free memory)."""
        self._buffers = {}
        self._batches = []
        self._fill_rows = self._fill_cols = None
        self._gather = None
        self.plan = None

    @staticmethod
    def _make_batches(
        grid: TileGrid, batch: int, split_rows: bool
    ) -> list[list[tuple[int, int, int]]]:
        # Streaming uploads one band of rows at a time, so a batch must not span two rows.
        groups = (
            [[t for t in grid.tiles() if t[0] == r] for r in range(len(grid.row_starts))]
            if split_rows
            else [grid.tiles()]
        )
        return [group[i : i + batch] for group in groups for i in range(0, len(group), batch)]

    def run(self, frame: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None, dict[str, float]]:
        """Segment one ``(H, W, 1|3)`` uint8 frame (host or device) of the prepared size.

        Returns the ``(H, W)`` uint8 class mask, the ``(H, W)`` float16 confidence (max softmax
        probability of the averaged logits, 0..1) or None, and milliseconds per phase.
        """
        plan = self.plan
        if plan is None or tuple(frame.shape[:2]) != (plan.height, plan.width):
            raise ValueError(
                f"executor prepared for {None if plan is None else plan.grid}, "
                f"got a frame of shape {tuple(frame.shape)}"
            )
        grid, buf = plan.grid, self._buffers
        timer = _PhaseTimer(self.device)
        mask = np.empty((grid.height, grid.width), dtype=np.uint8)
        confidence = (
            np.empty((grid.height, grid.width), dtype=np.float16) if self.with_confidence else None
        )
        sinks = self._sinks(mask, confidence)
        with timer("upload"):
            source = self._stage(frame)
        tile_h, tile_w = grid.tile_height, grid.tile_width
        weights = buf.get("window_weights")
        done, open_y = 0, 0  # frame rows [0, done) are final; open_y starts the current row
        with torch.inference_mode():
            for tiles in self._batches:
                with timer("gather"):  # includes the band upload when the frame is streamed
                    if self._gather is not None:  # squeezed neighbourhoods (tiling/context.py)
                        self._gather.fill(source, tiles, buf["batch"])
                    for k, (_, y, x) in enumerate(tiles if self._gather is None else ()):
                        self._load_window(buf["batch"][k], source, y, x)
                with timer("infer"):
                    logits = self.backend.infer(buf["batch"][: len(tiles)])
                with timer("merge"):
                    for k, (_, y, x) in enumerate(tiles):
                        if y != open_y:  # first window of a new row: rows above it are final
                            self._finalize(done, y, sinks)
                            done = open_y = y
                        self._accumulate(logits[k], y, x, tile_h, tile_w, weights)
                    # The plan counts one batch of logits alive, not two: no view of this batch
                    # may outlive the loop body (``_accumulate`` keeps its views local).
                    del logits
            with timer("merge"):
                self._finalize(done, grid.height, sinks)
            with timer("download"):
                if "mask" in buf:
                    torch.from_numpy(mask).copy_(buf["mask"])
                    if confidence is not None:
                        torch.from_numpy(confidence).copy_(buf["confidence"])
        return mask, confidence, timer.result()

    def _load_window(self, target: torch.Tensor, source: RowSource, y: int, x: int) -> None:
        """Fill one ``(3, P, P)`` slot of the batch with the window at ``(y, x)``: the frame's
        pixels, then mirror reflection along an axis shorter than the patch (never zeros)."""
        assert self.plan is not None, "prepare() first"
        grid = self.plan.grid
        tile_h, tile_w = grid.tile_height, grid.tile_width
        target[:, :tile_h, :tile_w].copy_(source(y)[:, x : x + tile_w].permute(2, 0, 1))
        if self._fill_rows is not None:
            target[:, tile_h:, :tile_w] = target[:, :tile_h, :tile_w].index_select(
                1, self._fill_rows
            )
        if self._fill_cols is not None:
            target[:, :, tile_w:] = target[:, :, :tile_w].index_select(2, self._fill_cols)

    def _stage(self, frame: torch.Tensor) -> RowSource:
        """Put the frame where windows are cut from: device-resident, or one band at a time."""
        plan, buf = self.plan, self._buffers
        assert plan is not None, "prepare() first"
        tile_h, channels = plan.grid.tile_height, frame.shape[2]
        if self._gather is not None:
            return self._stage_context(frame)
        if plan.frame_resident:
            if "frame" not in buf:  # CPU executor: use the frame in place (a GPU tensor: copy)
                resident = frame.to(self.device)
                return lambda y: resident[y : y + tile_h]
            if frame.device == self.device:
                return lambda y: frame[y : y + tile_h]
            staged = buf["frame"][..., :channels]
            staged.copy_(frame)
            return lambda y: staged[y : y + tile_h]
        band = buf["frame_rows"][..., :channels]
        uploaded_y = -1

        def rows(y: int) -> torch.Tensor:  # one upload per row of windows
            nonlocal uploaded_y
            if y != uploaded_y:
                band.copy_(frame[y : y + tile_h])
                uploaded_y = y
            return band

        return rows

    def _stage_context(self, frame: torch.Tensor) -> RowSource:
        """As :meth:`_stage`, but each row source gives the window row's mirrored
        neighbourhood rows (see :class:`~uhr_seg_ros.tiling.context.ContextGather`)."""
        plan, buf, gather = self.plan, self._buffers, self._gather
        assert plan is not None and gather is not None
        if not plan.frame_resident:
            return gather.streamed_rows(frame)
        if "frame" in buf and frame.device != self.device:
            staged = buf["frame"][..., : frame.shape[2]]
            staged.copy_(frame)
            return gather.resident_rows(staged)
        return gather.resident_rows(frame.to(self.device))

    def _sinks(self, mask: np.ndarray, confidence: np.ndarray | None) -> Sinks:
        """Where final rows go: the device-resident output (copied once at the end) or the host
        output directly (CPU, or a streamed frame)."""
        buf = self._buffers
        mask_sink = buf.get("mask", torch.from_numpy(mask))
        conf_sink = None
        if confidence is not None:
            conf_sink = buf.get("confidence", torch.from_numpy(confidence))
        return mask_sink, conf_sink

    def _accumulate(
        self,
        logits: torch.Tensor,
        y: int,
        x: int,
        tile_h: int,
        tile_w: int,
        weights: torch.Tensor | None,
    ) -> None:
        """Add one window's ``(C, patch, patch)`` logits (times the blend weights) to the ring."""
        for r0, r1, f0, f1 in self._ring_pieces(y, y + tile_h):
            ring = self._buffers["logit_rows"][:, r0:r1, x : x + tile_w]
            window = logits[:, f0 - y : f1 - y, :tile_w]
            if weights is None:
                ring.add_(window)
            else:
                ring.addcmul_(window, weights[f0 - y : f1 - y])

    def _ring_pieces(self, start: int, stop: int) -> Iterator[tuple[int, int, int, int]]:
        """Split frame rows ``[start, stop)`` into contiguous ring slices:
        ``(ring_lo, ring_hi, frame_lo, frame_hi)``. The ring holds ``tile_height`` rows and row
        ``y`` lives at ``y % tile_height``; a span never exceeds the ring."""
        assert self.plan is not None, "prepare() first"
        size = self.plan.grid.tile_height
        while start < stop:
            lo = start % size
            hi = min(size, lo + stop - start)
            yield lo, hi, start, start + hi - lo
            start += hi - lo

    def _finalize(self, start: int, stop: int, sinks: Sinks) -> None:
        """Frame rows ``[start, stop)`` get no more logits: label them and free their ring rows."""
        buf = self._buffers
        mask_sink, conf_sink = sinks
        pieces = (
            (r0 + i, min(r1, r0 + i + FINALIZE_ROWS), f0 + i, min(f1, f0 + i + FINALIZE_ROWS))
            for r0, r1, f0, f1 in self._ring_pieces(start, stop)
            for i in range(0, r1 - r0, FINALIZE_ROWS)
        )
        for r0, r1, f0, f1 in pieces:
            n = r1 - r0
            logits = buf["logit_rows"][:, r0:r1]
            best, labels = buf["row_max"][:n], buf["row_argmax"][:n]
            torch.max(logits, dim=0, out=(best, labels))
            buf["label_rows"][:n].copy_(labels)
            mask_sink[f0:f1].copy_(buf["label_rows"][:n])
            if conf_sink is not None:
                # max softmax of the averaged logits = 1 / sum_c exp((l_c - max) / count)
                logits.sub_(best).div_(buf["row_counts"][f0:f1].view(1, n, 1))
                logits.div_(buf["col_counts"].view(1, 1, -1)).exp_()
                torch.sum(logits, dim=0, out=best)
                buf["confidence_rows"][:n].copy_(best.reciprocal_())
                conf_sink[f0:f1].copy_(buf["confidence_rows"][:n])
            logits.zero_()
