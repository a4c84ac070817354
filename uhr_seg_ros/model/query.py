"""Spatial-guided high-resolution query: an MLP asks each stride-8 query point what its nearest
latent embedding and nearest guidance logits say, given where exactly it sits in their cells.

The nearest-cell lookup is integer index arithmetic + ``index_select`` (no ``grid_sample``), so it
exports to ONNX/TensorRT predictably; coordinates and the Fourier encoding are computed in fp32
even under fp16 autocast and cast to the features' dtype only when concatenated.
"""

from __future__ import annotations

import torch
from torch import nn

from .backbones import ConvBNReLU


def nearest_cells(
    query_size: int, source_size: int, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest source cell of each query cell centre along one axis, and the relative offset.

    Both grids tile the same extent ``[-1, 1]`` (``align_corners=False`` convention). Query
    centre ``q_i = (2i + 1) / query_size - 1`` lands at source pixel position
    ``p_i = ((q_i + 1) * source_size - 1) / 2`` and the nearest cell is ``round(p_i)`` (ties to
    even), exactly what ``F.grid_sample(mode="nearest", align_corners=False)`` picks.

    Returns ``index`` (int64, ``(query_size,)``, in ``[0, source_size)``) and ``offset``
    (float32, ``(query_size,)``): ``(q_i - centre of the chosen cell) * source_size``, in
    ``[-1, 1]`` (the offset measured in half source cells, as in LIIF).
    """
    cells = torch.arange(query_size, device=device, dtype=torch.float32)
    q = (2.0 * cells + 1.0) / query_size - 1.0
    pos = ((q + 1.0) * source_size - 1.0) / 2.0
    index = pos.round().clamp(0, source_size - 1).long()
    centre = (2.0 * index.float() + 1.0) / source_size - 1.0
    return index, (q - centre) * source_size


class FourierOffsetEncoding(nn.Module):
    """``[dy, dx, sin(w_y dy), sin(w_x dx), cos(w_y dy), cos(w_x dx)]`` with ``n`` learnable
    frequencies per axis initialised at ``2 ** linspace(0, 6, n)``: ``2 + 4n`` channels
    (26 for ``n = 6``). High frequencies let the MLP draw sharp boundaries inside a cell.
    """

    def __init__(self, num_frequencies: int) -> None:
        super().__init__()
        init = 2.0 ** torch.linspace(0.0, 6.0, num_frequencies)
        self.frequencies = nn.Parameter(init.repeat(2, 1))  # (2 axes, n)

    @property
    def out_channels(self) -> int:
        return 2 + 4 * self.frequencies.shape[1]

    def forward(self, offsets: torch.Tensor) -> torch.Tensor:
        """``offsets`` float32 ``(2, H, W)`` (dy, dx) -> encoding float32 ``(2 + 4n, H, W)``."""
        offsets = offsets.float()
        phase = offsets[:, None] * self.frequencies.float()[:, :, None, None]  # (2, n, H, W)
        phase = phase.flatten(0, 1)
        return torch.cat([offsets, phase.sin(), phase.cos()], dim=0)


class HighResQuery(nn.Module):
    """MLP decoder over the stride-8 query grid (paper eq. 4).

    Sources, each looked up at its nearest cell with its own offset encoding: the latent
    embedding (ASPP, stride 32), the memory-corrected logits ``aux16_m`` (stride 16) and the
    shallow logits ``aux8`` (stride 8). Input width ``(E + P) + 2 (C + P)``, ``P = 2 + 4n``.
    """

    def __init__(
        self, embed_channels: int, num_classes: int, num_frequencies: int, hidden: tuple[int, ...]
    ) -> None:
        super().__init__()
        encodings = [FourierOffsetEncoding(num_frequencies) for _ in range(3)]
        self.encodings = nn.ModuleList(encodings)
        pe = encodings[0].out_channels
        in_ch = (embed_channels + pe) + 2 * (num_classes + pe)
        layers: list[nn.Module] = []
        for width in hidden:
            layers.append(ConvBNReLU(in_ch, width, kernel=1))
            in_ch = width
        layers.append(nn.Conv2d(in_ch, num_classes, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(
        self,
        embedding: torch.Tensor,
        aux16_m: torch.Tensor,
        aux8: torch.Tensor,
        query_size: tuple[int, int],
    ) -> torch.Tensor:
        """Logits ``(B, C, *query_size)`` from sources ``(B, *, h_s, w_s)`` of any size."""
        height, width = query_size
        parts = []
        for source, encoding in zip((embedding, aux16_m, aux8), self.encodings, strict=True):
            rows, dy = nearest_cells(height, source.shape[-2], source.device)
            cols, dx = nearest_cells(width, source.shape[-1], source.device)
            picked = source.index_select(2, rows).index_select(3, cols)
            offsets = torch.stack(
                [dy[:, None].expand(height, width), dx[None, :].expand(height, width)]
            )
            code = encoding(offsets).to(picked.dtype)
            parts += [picked, code.expand(source.shape[0], -1, -1, -1)]
        return self.mlp(torch.cat(parts, dim=1))
