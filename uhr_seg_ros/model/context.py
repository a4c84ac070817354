"""Context squeezing (SCPSeg's CSM): a window and its surroundings in one window-sized input.

A window of ``P × P`` pixels sits in the centre of a ``G × G`` neighbourhood (a 3 × 3 grid of
regions: the window in the middle, four corner and four edge regions around it). The squeezed
input is again ``P × P``: the window shrunk to ``D × D`` in its centre, the eight surrounding
regions shrunk into the border ring of width ``(P - D) / 2`` around it, each at its own
position in the grid. The four corners are resized as one group and the four edges as two (top
and bottom, left and right), so a whole batch costs four resizes.

This module is pure torch and shared by training (which squeezes ``G × G`` crops) and by the
tiling executor (which squeezes each window's neighbourhood gathered from the frame), so both
see exactly the same input. The squeeze is not part of the exported network: engines and ONNX
files take the squeezed window (see docs/model.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: Squeezed inputs are cut on a grid of this many pixels, so that the centre and the ring land
#: on whole cells of the encoder's stride-4 features (see :meth:`ContextSpec.check`).
RING_QUANTUM = 4


@dataclass(frozen=True)
class ContextSpec:
    """How much of the surroundings a window sees, as ratios of the window side ``P``.

    ``neighbourhood`` = G / P (> 1) and ``centre`` = D / P (< 1). SCPSeg reports
    G / L / D = 512 / 256 / 192 (and 1024 / 512 / 384 on DeepGlobe): 2.0 and 0.75.
    """

    neighbourhood: float = 2.0
    centre: float = 0.75

    def __post_init__(self) -> None:
        if not self.neighbourhood > 1.0:
            raise ValueError(f"context neighbourhood (G/P) must be > 1, got {self.neighbourhood}")
        if not 0.0 < self.centre < 1.0:
            raise ValueError(f"context centre (D/P) must be in (0, 1), got {self.centre}")

    def margin(self, patch: int) -> int:
        """Pixels of context on each side of the window: ``(G - P) / 2``."""
        return round(patch * (self.neighbourhood - 1.0) / 2)

    def neighbourhood_side(self, patch: int) -> int:
        """``G``: the side of the neighbourhood gathered around a ``patch`` window."""
        return patch + 2 * self.margin(patch)

    def centre_side(self, patch: int) -> int:
        """``D``: the side the window itself is shrunk to inside the squeezed input."""
        return patch - 2 * self.ring(patch)

    def ring(self, patch: int) -> int:
        """Width of the border ring that holds the surroundings, ``(P - D) / 2``, rounded to
        :data:`RING_QUANTUM` pixels (at least one quantum)."""
        ring = patch * (1.0 - self.centre) / 2
        return max(RING_QUANTUM, RING_QUANTUM * round(ring / RING_QUANTUM))

    def check(self, patch: int) -> None:
        """Raise ``ValueError`` when ``patch`` leaves no centre or no context."""
        if patch % RING_QUANTUM or self.centre_side(patch) < RING_QUANTUM or self.margin(patch) < 1:
            raise ValueError(
                f"a {patch} px window cannot be squeezed with G/P="
                f"{self.neighbourhood}, D/P={self.centre}; use a larger patch"
            )

    def to_dict(self) -> dict[str, float]:
        return {"neighbourhood": self.neighbourhood, "centre": self.centre}


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    # Antialiased bilinear: every shrink here is by a non-integer factor (e.g. 4/3), where
    # nearest would alias and "area" is only exact for integer factors.
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def squeeze_context(
    neighbourhood: torch.Tensor, spec: ContextSpec, patch: int, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Squeeze ``(B, C, G, G)`` float neighbourhoods into ``(B, C, P, P)`` window inputs.

    ``G`` must be :meth:`ContextSpec.neighbourhood_side` of ``patch``. With ``out`` (a
    ``(B, C, P, P)`` tensor, e.g. the executor's batch buffer) the result is written there.
    """
    spec.check(patch)
    b, c, g, g2 = neighbourhood.shape
    m, r = spec.margin(patch), spec.ring(patch)
    d = patch - 2 * r
    if g != g2 or g != patch + 2 * m:
        raise ValueError(
            f"a {patch} px window needs a {patch + 2 * m}² neighbourhood, "
            f"got {tuple(neighbourhood.shape[-2:])}"
        )
    if out is None:
        out = neighbourhood.new_empty((b, c, patch, patch))
    lo, hi = m, m + patch  # window rows/cols inside the neighbourhood
    n = neighbourhood
    out[:, :, r : r + d, r : r + d] = _resize(n[:, :, lo:hi, lo:hi], (d, d))
    # Corner group: top-left, top-right, bottom-left, bottom-right, resized together.
    corners = torch.cat(
        [n[:, :, :lo, :lo], n[:, :, :lo, hi:], n[:, :, hi:, :lo], n[:, :, hi:, hi:]], dim=0
    )
    tl, tr, bl, br = _resize(corners, (r, r)).split(b, dim=0)
    out[:, :, :r, :r], out[:, :, :r, r + d :] = tl, tr
    out[:, :, r + d :, :r], out[:, :, r + d :, r + d :] = bl, br
    # Edge groups: top and bottom (m × P -> r × D), left and right (P × m -> D × r).
    top, bottom = _resize(
        torch.cat([n[:, :, :lo, lo:hi], n[:, :, hi:, lo:hi]], dim=0), (r, d)
    ).split(b, dim=0)
    out[:, :, :r, r : r + d], out[:, :, r + d :, r : r + d] = top, bottom
    left, right = _resize(
        torch.cat([n[:, :, lo:hi, :lo], n[:, :, lo:hi, hi:]], dim=0), (d, r)
    ).split(b, dim=0)
    out[:, :, r : r + d, :r], out[:, :, r : r + d, r + d :] = left, right
    return out


__all__ = ["RING_QUANTUM", "ContextSpec", "squeeze_context"]
