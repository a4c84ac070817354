"""An exponential moving average of the weights, kept beside the model being trained.

Why: on a short CPU schedule the last step's weights carry the noise of the last few hundred
batches of 4 crops; their running average is a smoother point of the same trajectory, at no
inference cost (Polyak averaging; timm's ``ModelEmaV3``, ``torch.optim.swa_utils``). Whether it
segments better depends on the run: on the lite fine-tunes it helped one seed and cost another
(docs/model.md, "More steps, weight averages and soups"), so it is off by default.

Floating-point buffers are averaged too (BatchNorm statistics, the SGHRQ memory bank), so the
averaged model is consistent without a BatchNorm re-estimation pass; integer and boolean buffers
(batch counters, "bank initialised" flags) follow the live model.
"""

from __future__ import annotations

import copy

import torch

from uhr_seg_ros.model import SegmentationModel


class WeightAverage:
    """``average = decay * average + (1 - decay) * live``, after every optimiser step."""

    def __init__(self, model: SegmentationModel, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"schedule.ema_decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.model: SegmentationModel = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, live: SegmentationModel) -> None:
        averaged, current = [], []
        for mine, theirs in zip(
            self.model.state_dict().values(), live.state_dict().values(), strict=True
        ):
            if mine.is_floating_point():
                averaged.append(mine)
                current.append(theirs.detach())
            else:
                mine.copy_(theirs)
        torch._foreach_lerp_(averaged, current, 1.0 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
