"""What the rest of the core needs from a segmentation network, typed instead of duck-typed.

Backends, the ``Segmenter``, the memory model and the engine cache talk to a
:class:`SegmentationModel`; SGHRQ is one, a second model family subclasses it the same way.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

import torch
from torch import nn

#: Patch sides (and training crops) are multiples of this: the network's total stride
#: (SGHRQ: downscale 4 x ResNet output stride 8). The one place the number is written.
SIZE_DIVISOR = 32


class ModelConfig(Protocol):
    """The part of a model's configuration the core reads."""

    @property
    def num_classes(self) -> int: ...

    @property
    def class_names(self) -> tuple[str, ...]: ...

    def to_dict(self) -> dict[str, Any]: ...


class SegmentationModel(nn.Module):
    """A network mapping ``(B, 3, H, W)`` RGB 0..255 to ``(B, C, H, W)`` logits.

    ``H`` and ``W`` must be multiples of :attr:`size_divisor`; ``config`` says how many classes
    and their names; ``meta`` holds the plain data stored with the weights (palette, training
    info).
    """

    size_divisor: ClassVar[int] = SIZE_DIVISOR
    config: ModelConfig
    meta: dict[str, Any]

    @property
    def num_classes(self) -> int:
        return int(self.config.num_classes)

    def inference_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights deployment needs (what the TensorRT cache key hashes); all by default."""
        return dict(self.state_dict())
