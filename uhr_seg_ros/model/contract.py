"""What the rest of the core needs from a segmentation network, typed instead of duck-typed.

Backends, the ``Segmenter``, the memory model and the engine cache talk to a
:class:`SegmentationModel`; SGHRQ is one, a second model family subclasses it the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch
from torch import nn

if TYPE_CHECKING:
    from .context import ContextSpec

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
    #: registry name of the family (stored in checkpoints; see model/families.py)
    family: ClassVar[str] = "abstract"
    config: ModelConfig
    meta: dict[str, Any]
    #: the training-only heads (None when built or loaded for inference)
    train_heads: nn.Module | None

    @property
    def context(self) -> ContextSpec | None:
        """None, or the surroundings the tiler squeezes into each window before ``forward``
        (SCPSeg; see model/context.py and tiling/context.py)."""
        return None

    def forward_train(
        self, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Every output the family's training loss reads (training/losses.py)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be trained here")

    def segment_crop(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, labels)`` of the part of a validation crop the network predicts."""
        return self(images), labels

    def output_classifier(self) -> nn.Conv2d:
        """The last layer: a 1x1 convolution to class logits, followed only by a linear
        upsampling, so that an offset added to its bias is added to every output logit
        (evaluation/class_bias.py)."""
        raise NotImplementedError(f"{type(self).__name__} does not name its classifier")

    def prepare_for_inference(self) -> None:
        """Freeze what training writes (``load_checkpoint`` calls it); nothing by default."""

    @property
    def num_classes(self) -> int:
        return int(self.config.num_classes)

    def inference_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights deployment needs (what the TensorRT cache key hashes); all by default."""
        return dict(self.state_dict())
