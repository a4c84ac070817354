"""Context gathering for networks that see beyond their window (SCPSeg's context squeezing).

For a network whose ``context`` is a :class:`~uhr_seg_ros.model.context.ContextSpec`, every
window of the plan is fed as its *squeezed neighbourhood*: the ``G × G`` pixels centred on the
window (mirrored at the frame edges) shrunk into one ``P × P`` input. The executor keeps its
batched, capped data path; this module only changes how a batch buffer is filled:

  1. the rows of a window row's neighbourhood, ``[y - m, y + P + m)`` mirrored into the frame,
     are a view of the resident frame, or (at the top/bottom edge, or when the frame is
     streamed) copied into one reused ``(G, W, 3)`` uint8 band;
  2. each window's ``G × G`` block is a view of those rows, or (at the left/right edge) an
     ``index_select`` into one reused ``(G, G, 3)`` uint8 block, converted to float in the copy
     into the reused ``(B, 3, G, G)`` neighbourhood batch;
  3. :func:`~uhr_seg_ros.model.context.squeeze_context` writes the batch buffer (four batched
     resizes).

:func:`context_buffer_specs` is the one description of the extra buffers, used by the executor
and the planner alike, so the memory cap covers them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from uhr_seg_ros.model.context import ContextSpec, squeeze_context

from .geometry import TileGrid, reflect_indices

BufferSpecs = dict[str, tuple[tuple[int, ...], torch.dtype]]
#: ``y -> (G, W, c)`` frame rows ``y - m .. y + P + m - 1`` (mirrored) on the device
ContextRows = Callable[[int], torch.Tensor]


def context_buffer_specs(
    grid: TileGrid, batch: int, context: ContextSpec, input_dtype: torch.dtype
) -> BufferSpecs:
    """Name → ``(shape, dtype)`` of the buffers the context gather adds to a plan."""
    side = context.neighbourhood_side(grid.patch)
    return {
        "context_batch": ((batch, 3, side, side), input_dtype),  # neighbourhoods, pre-squeeze
        "context_rows": ((side, grid.width, 3), torch.uint8),  # mirrored or streamed rows
        "context_block": ((side, side, 3), torch.uint8),  # one mirrored neighbourhood
    }


class ContextGather:
    """Fills a batch buffer with squeezed window neighbourhoods for one prepared plan."""

    def __init__(
        self,
        grid: TileGrid,
        context: ContextSpec,
        buffers: dict[str, torch.Tensor],
        device: torch.device,
    ) -> None:
        context.check(grid.patch)
        self.grid, self.context = grid, context
        self.margin = context.margin(grid.patch)
        self.side = context.neighbourhood_side(grid.patch)
        self.batch = buffers["context_batch"]
        self.rows_buf = buffers["context_rows"]
        self.block = buffers["context_block"]
        # Index tensors, built once per plan: mirrored frame rows per window row, and mirrored
        # columns per window column (None where the range lies inside the frame: a view).
        self.row_index = {y: self._index(y, grid.height, device) for y in grid.row_starts}
        self.col_index = {x: self._index(x, grid.width, device) for x in grid.col_starts}

    def _index(self, start: int, length: int, device: torch.device) -> torch.Tensor | None:
        lo, hi = start - self.margin, start - self.margin + self.side
        if lo >= 0 and hi <= length:
            return None
        return torch.from_numpy(reflect_indices(length, self.side, start=lo)).to(device)

    def resident_rows(self, frame: torch.Tensor) -> ContextRows:
        """Rows of a device-resident ``(H, W, c)`` frame: views inside, one copy at the edges."""
        rows = self.rows_buf[..., : frame.shape[2]]

        def source(y: int) -> torch.Tensor:
            index = self.row_index[y]
            if index is None:
                return frame[y - self.margin : y - self.margin + self.side]
            torch.index_select(frame, 0, index, out=rows)
            return rows

        return source

    def streamed_rows(self, frame: torch.Tensor) -> ContextRows:
        """Rows of a host frame, uploaded into the reused band once per row of windows."""
        rows = self.rows_buf[..., : frame.shape[2]]
        host_index = {y: (None if i is None else i.cpu()) for y, i in self.row_index.items()}
        uploaded = -1

        def source(y: int) -> torch.Tensor:
            nonlocal uploaded
            if y != uploaded:
                index = host_index[y]
                if index is None:
                    rows.copy_(frame[y - self.margin : y - self.margin + self.side])
                else:  # a host gather of G rows, then one upload
                    rows.copy_(frame.index_select(0, index.to(frame.device)))
                uploaded = y
            return rows

        return source

    def fill(self, rows: ContextRows, tiles: list[tuple[int, int, int]], out: torch.Tensor) -> None:
        """Write the squeezed neighbourhoods of ``tiles`` into ``out[:len(tiles)]``."""
        n = len(tiles)
        for k, (_, y, x) in enumerate(tiles):
            source = rows(y)
            index = self.col_index[x]
            if index is None:
                block = source[:, x - self.margin : x - self.margin + self.side]
            else:
                block = self.block[..., : source.shape[2]]
                torch.index_select(source, 1, index, out=block)
            self.batch[k].copy_(block.permute(2, 0, 1))  # uint8 -> float; grey -> 3 channels
        squeeze_context(self.batch[:n], self.context, self.grid.patch, out=out[:n])


__all__ = ["ContextGather", "context_buffer_specs"]
