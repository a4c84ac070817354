"""SGHRQ: spatial-guided high-resolution query network with a class memory bank.

Three branches see one local patch and nothing beyond it:

* semantic: the patch downscaled by 4 -> ResNet-18 V1c (OS8) -> ASPP -> latent embedding
  (stride 32 of the patch) and ASPP logits;
* shallow: RGB + two Laplacian residuals at full resolution -> STDC1 early stages -> ``aux8``
  (stride 8) and ``aux16`` (stride 16) logits; the memory bank corrects ``aux16`` -> ``aux16_m``;
* query: an MLP over the stride-8 grid reads the nearest cell of each source with a Fourier
  encoding of the offset, then the logits are upsampled bilinearly to the patch.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import ResNetV1c, STDCShallow
from .config import SGHRQConfig
from .contract import SegmentationModel
from .heads import ASPPHead
from .memory import MemoryBank
from .pyramid import LaplacianInput
from .query import HighResQuery
from .train_heads import TrainingHeads

#: Prefix of the state-dict keys that deployment checkpoints may drop.
TRAIN_HEADS_PREFIX = "train_heads."


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """``(1, 1, k, k)`` normalised Gaussian, ``k = 2 ceil(3 sigma) + 1``; ``(1, 1, 1, 1)`` ones
    (identity) for ``sigma = 0``."""
    if sigma <= 0:
        return torch.ones(1, 1, 1, 1)
    radius = math.ceil(3 * sigma)
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    line = torch.exp(-(taps**2) / (2 * sigma**2))
    line /= line.sum()
    return (line[:, None] * line[None, :])[None, None]


class SGHRQ(SegmentationModel):
    """The network. Build with :func:`build_model`; see :class:`SGHRQConfig` for the widths.

    ``forward`` is the inference graph (pure in eval mode: the memory bank is only read);
    ``forward_train`` also runs the training-only heads and, given labels, writes the bank.
    """

    #: Registry name of this family (stored in checkpoints).
    family = "sghrq"

    config: SGHRQConfig
    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor
    blur_kernel: torch.Tensor

    def __init__(self, config: SGHRQConfig, training_heads: bool = True) -> None:
        super().__init__()
        c = config
        self.config = c
        #: Plain-data facts stored with the weights (class names, palette, training info).
        self.meta: dict[str, Any] = {}
        self.register_buffer("pixel_mean", torch.tensor(c.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(c.std).view(1, 3, 1, 1), persistent=False)
        # Fixed input blur (config.input_blur_sigma): part of the graph, so every backend and
        # export applies it; not a weight (a checkpoint's tensors do not change).
        self.register_buffer("blur_kernel", gaussian_kernel(c.input_blur_sigma), persistent=False)
        # Semantic branch.
        self.semantic = ResNetV1c(c.stem_widths, c.resnet_widths)
        self.aspp = ASPPHead(
            c.resnet_widths[3],
            c.aspp_channels,
            c.aspp_dilations,
            c.aspp_bottleneck,
            c.query_channels,
            c.num_classes,
            c.dropout,
        )
        # Shallow (memory-based interaction) branch.
        self.pyramid = LaplacianInput()
        self.shallow = STDCShallow(9, c.stdc_widths, c.stdc_blocks)
        self.aux8_head = nn.Conv2d(c.stdc_widths[2], c.num_classes, 1)
        self.aux16_head = nn.Conv2d(c.stdc_widths[3], c.num_classes, 1)
        self.memory = MemoryBank(c.num_classes, c.memory_dim, c.stdc_widths[3], c.memory_momentum)
        # Query module.
        self.query = HighResQuery(c.query_channels, c.num_classes, c.pe_frequencies, c.mlp_widths)
        # Never called by forward(); dropped from deployment checkpoints and from models loaded
        # for inference (so exports do not carry their weights either).
        self.train_heads = TrainingHeads(c) if training_heads else None

    # ------------------------------------------------------------------------------- inference
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, C, H, W)`` (float) for patches ``x`` float ``(B, 3, H, W)``, RGB in
        0..255, ``H`` and ``W`` multiples of :attr:`size_divisor`."""
        return self._branches(x, labels=None)["logits"]

    def forward_train(
        self, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Every output the losses need, for patches ``x`` as in :meth:`forward`.

        With ``labels`` (int ``(B, H, W)``, 255 = ignore) and an unfrozen bank, the bank is first
        written from this batch's layer-4 features (paper order: update, then read).
        Keys: ``logits`` ``(B,C,H,W)``; ``aspp`` (stride 32); ``aux8``; ``aux16``; ``aux16_m``;
        ``semantic_features`` (layer 4, stride 32); ``fcn``; ``sr``/``sr_target`` (stride 2);
        ``affinity_shallow``/``affinity_semantic`` (stride 32).
        """
        if self.train_heads is None:
            raise RuntimeError(
                "this model was built for inference without its training heads; "
                "train a model from build_model(config) (load weights into it "
                "with load_state_dict(..., strict=False))"
            )
        out = self._branches(x, labels=labels)
        out.update(
            self.train_heads(
                out.pop("image"),
                out.pop("layer3"),
                out.pop("embedding"),
                out.pop("feat8"),
                out.pop("feat16"),
            )
        )
        return out

    def _branches(self, x: torch.Tensor, labels: torch.Tensor | None) -> dict[str, torch.Tensor]:
        self._check_input(x)
        height, width = x.shape[-2], x.shape[-1]
        # Normalise in fp32 whatever the input precision, then continue in the input's dtype.
        image = ((x.float() - self.pixel_mean.float()) / self.pixel_std.float()).to(x.dtype)
        if self.blur_kernel.numel() > 1:
            pad = self.blur_kernel.shape[-1] // 2
            image = F.conv2d(
                F.pad(image, (pad, pad, pad, pad), mode="reflect"),
                self.blur_kernel.to(image.dtype).expand(3, 1, -1, -1),
                groups=3,
            )

        scale = self.config.downscale
        small = F.interpolate(image, size=(height // scale, width // scale), mode="nearest")
        layer3, layer4 = self.semantic(small)
        aspp_logits, embedding = self.aspp(layer4)

        feat8, feat16 = self.shallow(self.pyramid(image))
        aux8 = self.aux8_head(feat8)
        aux16 = self.aux16_head(feat16)
        if labels is not None and not self.memory.frozen:
            self.memory.write(layer4, labels)
        aux16_m = self.memory(feat16, aux16)

        query = self.query(embedding, aux16_m, aux8, (feat8.shape[-2], feat8.shape[-1]))
        logits = F.interpolate(query, size=(height, width), mode="bilinear", align_corners=False)
        return {
            "logits": logits,
            "aspp": aspp_logits,
            "aux8": aux8,
            "aux16": aux16,
            "aux16_m": aux16_m,
            "semantic_features": layer4,
            "image": image,
            "layer3": layer3,
            "embedding": embedding,
            "feat8": feat8,
            "feat16": feat16,
        }

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(
                f"SGHRQ expects patches (B, 3, H, W) RGB 0..255, got shape "
                f"{tuple(x.shape)}; convert HxWx3 images with "
                "torch.from_numpy(img).permute(2, 0, 1)[None].float()"
            )
        if not x.is_floating_point():
            raise ValueError(
                f"SGHRQ expects a float tensor with values 0..255, got {x.dtype}; "
                "call .float() (or .half() on CUDA) first"
            )
        if x.shape[-2] % self.size_divisor or x.shape[-1] % self.size_divisor:
            raise ValueError(
                f"patch size {tuple(x.shape[-2:])} is not a multiple of "
                f"{self.size_divisor}; pad or crop the patch (the tiling planner "
                "does this for you)"
            )

    def segment_crop(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, labels)`` of a validation crop: SGHRQ predicts the whole crop."""
        return self(images), labels

    def output_classifier(self) -> nn.Conv2d:
        """The query MLP's last 1x1 convolution (its logits are only upsampled bilinearly)."""
        last = self.query.mlp[-1]
        assert isinstance(last, nn.Conv2d)
        return last

    # ------------------------------------------------------------------------------ state
    def freeze_memory_bank(self) -> None:
        """Forbid bank writes from now on (deployment); ``load_checkpoint`` calls it."""
        self.memory.freeze()

    def prepare_for_inference(self) -> None:
        """Deployment state: the memory bank is only read from now on."""
        self.freeze_memory_bank()

    def inference_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict without the training-only heads (what deployment needs)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(TRAIN_HEADS_PREFIX)}

    def parameter_counts(self) -> dict[str, int]:
        """``{"inference": n, "training_heads": m}`` parameter counts."""
        heads = sum(p.numel() for p in self.train_heads.parameters()) if self.train_heads else 0
        return {
            "inference": sum(p.numel() for p in self.parameters()) - heads,
            "training_heads": heads,
        }
