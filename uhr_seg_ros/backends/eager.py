"""Eager PyTorch backend (CPU, or CUDA with fp16 autocast)."""

from __future__ import annotations

import torch
from torch import nn

from .base import Backend


class EagerBackend(Backend):
    """Runs the network as an ordinary ``nn.Module`` in inference mode."""

    def __init__(self, model: nn.Module, device: str | torch.device = "cpu",
                 precision: str = "fp32", max_batch: int = 16) -> None:
        device = torch.device(device)
        if precision not in ("fp32", "fp16"):
            raise ValueError(f"precision must be 'fp32' or 'fp16', got {precision!r}")
        if precision == "fp16" and device.type != "cuda":
            precision = "fp32"  # fp16 convolutions on CPU are slow and poorly supported
        self.precision = precision
        self.model = model.eval().to(device)
        super().__init__(device, model.config.num_classes, torch.float32, max_batch)
        self.name = device.type

    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            if self.precision == "fp16":
                with torch.autocast("cuda", dtype=torch.float16):
                    return self.model(batch)
            return self.model(batch)
