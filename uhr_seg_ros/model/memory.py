"""Class-prototype memory bank: written from semantic features in training, read by the shallow
branch to correct the semantic bias of its stride-16 logits (paper eqs. 5-9)."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .backbones import ConvBNReLU

IGNORE_INDEX = 255


class MemoryBank(nn.Module):
    """``num_classes`` prototypes of width ``dim`` (a buffer, never a Parameter).

    * :meth:`write` (training only, under ``no_grad``): first write of a class = mean feature of
      its pixels; later ``new = m * old + (1 - m) * sum_i w_i f_i`` with
      ``w_i = (1 - cos(f_i, old)) / sum_j (1 - cos(f_j, old))`` over that class's pixels, so the
      features least like the prototype move it most. Averaged across processes under DDP.
    * :meth:`forward` (the read): ``F = ReLU(BN(conv1x1(feat16)))``,
      ``W = softmax(F . M^T / sqrt(dim))`` over classes, ``aux16_m = W * aux16 + aux16``.
    """

    prototypes: torch.Tensor
    initialised: torch.Tensor

    def __init__(self, num_classes: int, dim: int, feat_channels: int, momentum: float) -> None:
        super().__init__()
        self.momentum = momentum
        self.frozen = False
        self.read_proj = ConvBNReLU(feat_channels, dim, kernel=1)
        self.register_buffer("prototypes", torch.zeros(num_classes, dim))
        self.register_buffer("initialised", torch.zeros(num_classes, dtype=torch.bool))

    def freeze(self) -> None:
        """Refuse further writes (deployment, evaluation). Reading is unaffected."""
        self.frozen = True

    def forward(self, feat16: torch.Tensor, aux16: torch.Tensor) -> torch.Tensor:
        """Memory-corrected logits ``(B, C, h, w)`` from ``feat16`` ``(B, Cf, h, w)`` and ``aux16``
        ``(B, C, h, w)``; a pure read."""
        query = self.read_proj(feat16)
        scale = 1.0 / math.sqrt(self.prototypes.shape[1])
        affinity = torch.einsum("bdhw,cd->bchw", query, self.prototypes.to(query.dtype)) * scale
        return affinity.softmax(dim=1) * aux16 + aux16

    @torch.no_grad()
    def write(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Update the prototypes from ``features`` ``(B, dim, h, w)`` and ``labels`` ``(B, H, W)``
        (int, 255 = ignore; nearest-resized to ``h x w`` here). Classes absent from the batch
        (on every process) keep their prototype.
        """
        if self.frozen:
            raise RuntimeError("the memory bank is frozen (inference model); it cannot be written")
        if labels.shape[-2:] != features.shape[-2:]:
            labels = F.interpolate(
                labels[:, None].float(), size=features.shape[-2:], mode="nearest"
            )[:, 0]
        num_classes, dim = self.prototypes.shape
        feats = features.detach().float().permute(0, 2, 3, 1).reshape(-1, dim)
        labels = labels.reshape(-1).long()
        valid = (labels >= 0) & (labels < num_classes)
        feats, labels = feats[valid], labels[valid]

        old = self.prototypes.float()
        count = torch.zeros(num_classes, device=feats.device).index_add_(
            0, labels, torch.ones_like(labels, dtype=torch.float32)
        )
        mean = torch.zeros_like(old).index_add_(0, labels, feats) / count.clamp_min(1)[:, None]
        dissim = 1.0 - F.cosine_similarity(feats, old[labels], dim=1)
        dissim_sum = torch.zeros(num_classes, device=feats.device).index_add_(0, labels, dissim)
        weighted = torch.zeros_like(old).index_add_(0, labels, dissim[:, None] * feats)
        # All features equal to the prototype (sum of 1 - cos = 0): their mean is the fair answer.
        degenerate = dissim_sum <= 1e-12
        weighted = torch.where(
            degenerate[:, None], mean, weighted / dissim_sum.clamp_min(1e-12)[:, None]
        )
        moved = self.momentum * old + (1.0 - self.momentum) * weighted
        candidate = torch.where(self.initialised[:, None], moved, mean)
        present = (count > 0).float()
        candidate = candidate * present[:, None]

        if dist.is_available() and dist.is_initialized():
            # Average over the processes that saw the class; the others do not dilute it.
            dist.all_reduce(candidate)
            dist.all_reduce(present)
        seen = present > 0
        new = candidate / present.clamp_min(1)[:, None]
        self.prototypes.copy_(torch.where(seen[:, None], new, old).to(self.prototypes.dtype))
        self.initialised |= seen
