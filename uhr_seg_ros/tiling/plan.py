"""The plan of one frame size, shared by the planner (who makes it) and the executor (who runs
it): window side, overlap, batch, residency and the predicted peak it was accepted under.

It lives apart from both so that neither imports the other for it: the planner depends on the
executor's buffer sizes, the executor only on this record.
"""

from __future__ import annotations

from dataclasses import dataclass

from .geometry import DEFAULT_BLEND, TileGrid


class PlanError(ValueError):
    """No tile plan fits the memory cap (or the requested overrides are invalid)."""


@dataclass(frozen=True)
class TilePlan:
    """How one frame size is cut, batched and held in memory."""

    #: frame size the plan was made for
    height: int
    width: int
    #: square window side in pixels (a multiple of the network's size divisor)
    patch: int
    #: pixels shared by neighbouring windows; ``stride = patch - overlap``
    overlap: int
    #: windows per forward pass
    batch: int
    #: False: the frame stays in host memory and is uploaded one band of rows at a time
    frame_resident: bool
    #: the cap this plan was made for, and the budget after the safety margin, in bytes
    cap_bytes: int
    budget_bytes: int
    #: predicted peak: held before the call + one forward + executor buffers, in bytes
    predicted_peak_bytes: int
    #: the executor-buffer part of the prediction, in bytes
    buffer_bytes: int
    #: predicted inference seconds of one frame (sum over its forwards), None without a time
    #: model
    predicted_seconds: float | None = None
    #: how overlapping logits are weighted (:data:`~uhr_seg_ros.tiling.geometry.BLEND_MODES`)
    blend: str = DEFAULT_BLEND

    @property
    def stride(self) -> int:
        return self.patch - self.overlap

    @property
    def grid(self) -> TileGrid:
        return TileGrid(self.height, self.width, self.patch, self.stride)

    def describe(self) -> str:
        mode = "resident" if self.frame_resident else "streamed in row bands"
        timing = (
            "" if self.predicted_seconds is None else f", predicted {self.predicted_seconds:.2g} s"
        )
        return (
            f"{self.width}x{self.height}: {self.grid.num_tiles} tiles of {self.patch} px "
            f"(overlap {self.overlap}), batch {self.batch}, frame {mode}, predicted peak "
            f"{self.predicted_peak_bytes / 2**20:.0f} of {self.cap_bytes / 2**20:.0f} MB cap"
            f"{timing}"
        )
