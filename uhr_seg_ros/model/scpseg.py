"""SCPSeg: one encoder-decoder that sees a window *and* its surroundings, squeezed into the window.

After Liu et al., "Squeezing Context into Patches" (IJCAI 2025), whose code is not published;
what is read and what is inferred is listed in docs/model.md.

* input: the squeezed window (:func:`~uhr_seg_ros.model.context.squeeze_context`): the window
  shrunk to ``D × D`` in the centre, its ``G × G`` neighbourhood's eight regions in the ring;
* network: DeepLabV3+ on the project's ResNet-18 V1c (output stride 8, ASPP, stride-4 decoder);
* read-out: the logits of the centre ``D × D`` part, resized (bilinear) back to ``P × P``.

Training only (never called by :meth:`SCPSeg.forward`, dropped from deployment checkpoints): a
super-resolution decoder that rebuilds the full-resolution window from the centre features (L1),
and the local feature alignment, which matches the self-similarity of the segmentation features
in ``k × k`` windows to that of the SR decoder's features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import ConvBNReLU, ResNetV1c
from .config import SCPSegConfig
from .context import ContextSpec, squeeze_context
from .contract import SegmentationModel

#: Prefix of the state-dict keys that deployment checkpoints may drop.
TRAIN_HEADS_PREFIX = "train_heads."


class DeepLabV3PlusHead(nn.Module):
    """ASPP on layer 4 (stride 8) + a decoder that fuses layer 1 (stride 4).

    ``forward(layer1, layer4)`` returns the decoder features ``(B, decoder_channels, H/4, W/4)``.
    """

    def __init__(self, low_ch: int, high_ch: int, config: SCPSegConfig) -> None:
        super().__init__()
        c = config
        # No BN on the pooled 1x1 map (batch statistics of one value per sample).
        self.image_pool = nn.Sequential(
            nn.Conv2d(high_ch, c.aspp_channels, 1), nn.ReLU(inplace=True)
        )
        self.branches = nn.ModuleList(
            ConvBNReLU(high_ch, c.aspp_channels, kernel=1 if d == 1 else 3, dilation=d)
            for d in c.aspp_dilations
        )
        self.bottleneck = ConvBNReLU(
            c.aspp_channels * (len(c.aspp_dilations) + 1), c.aspp_channels, 3
        )
        self.low_level = ConvBNReLU(low_ch, c.low_level_channels, kernel=1)
        self.fuse = nn.Sequential(
            ConvBNReLU(c.aspp_channels + c.low_level_channels, c.decoder_channels, 3),
            ConvBNReLU(c.decoder_channels, c.decoder_channels, 3),
        )

    def forward(self, layer1: torch.Tensor, layer4: torch.Tensor) -> torch.Tensor:
        # Mean over H, W (not AdaptiveAvgPool2d) keeps the graph trivially exportable.
        pooled = self.image_pool(layer4.mean(dim=(2, 3), keepdim=True))
        pooled = pooled.expand(-1, -1, *layer4.shape[2:])
        aspp = self.bottleneck(torch.cat([pooled] + [b(layer4) for b in self.branches], dim=1))
        aspp = F.interpolate(aspp, size=layer1.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([aspp, self.low_level(layer1)], dim=1))


class SRDecoder(nn.Module):
    """Rebuild the full-resolution (normalised) window from the centre's decoder features.

    ``forward(features (B, Cd, d, d), side P)`` returns ``(sr_features (B, S, d, d),
    image (B, 3, P, P))``; ``sr_features`` are what the local feature alignment compares with.
    """

    def __init__(self, in_ch: int, channels: int) -> None:
        super().__init__()
        half, quarter = max(channels // 2, 1), max(channels // 4, 1)
        self.embed = ConvBNReLU(in_ch, channels, 3)
        self.up = nn.ModuleList([ConvBNReLU(channels, half), ConvBNReLU(half, quarter)])
        self.to_rgb = nn.Conv2d(quarter, 3, 3, padding=1)

    def forward(self, features: torch.Tensor, side: int) -> tuple[torch.Tensor, torch.Tensor]:
        sr_features = self.embed(features)
        # The centre holds D/4 cells for a P-pixel window: go to P/4, then two x2 steps.
        x = F.interpolate(
            sr_features, size=(side // 4, side // 4), mode="bilinear", align_corners=False
        )
        for conv in self.up:
            x = conv(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))
        return sr_features, self.to_rgb(x)


def local_self_similarity(features: torch.Tensor, window: int) -> torch.Tensor:
    """Cosine similarity of each pixel to the ``window × window`` pixels around it.

    ``(B, C, h, w)`` -> ``(B, window², h, w)``; beyond the border the similarity is 0. Cost and
    memory are linear in ``h·w`` (a full ``hw × hw`` affinity would not fit a 1024² patch).
    """
    b, c, h, w = features.shape
    unit = F.normalize(features.float(), dim=1)
    around = F.unfold(unit, window, padding=window // 2).view(b, c, window * window, h, w)
    return (around * unit.unsqueeze(2)).sum(dim=1)


class SCPSegTrainingHeads(nn.Module):
    """The training-only parts: the SR decoder (the LFA has no weights of its own)."""

    def __init__(self, config: SCPSegConfig) -> None:
        super().__init__()
        self.sr_decoder = SRDecoder(config.decoder_channels, config.sr_channels)


class SCPSeg(SegmentationModel):
    """The network. Build with :func:`~uhr_seg_ros.model.build_model` from an
    :class:`SCPSegConfig`.

    ``forward`` is the inference graph on *squeezed* windows; :meth:`forward_context` squeezes
    ``G × G`` neighbourhoods first; ``forward_train`` takes neighbourhood crops and labels.
    """

    #: Registry name of this family (stored in checkpoints).
    family = "scpseg"

    config: SCPSegConfig
    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor

    def __init__(self, config: SCPSegConfig, training_heads: bool = True) -> None:
        super().__init__()
        c = config
        self.config = c
        #: Plain-data facts stored with the weights (class names, palette, training info).
        self.meta = {}
        self.register_buffer("pixel_mean", torch.tensor(c.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(c.std).view(1, 3, 1, 1), persistent=False)
        self.encoder = ResNetV1c(c.stem_widths, c.resnet_widths)
        self.decoder = DeepLabV3PlusHead(c.resnet_widths[0], c.resnet_widths[3], c)
        self.classifier = nn.Sequential(
            nn.Dropout2d(c.dropout), nn.Conv2d(c.decoder_channels, c.num_classes, 1)
        )
        self.train_heads = SCPSegTrainingHeads(c) if training_heads else None

    @property
    def context(self) -> ContextSpec:
        """What the tiler must gather around each window (see :mod:`~uhr_seg_ros.model.context`)."""
        return self.config.context

    # ------------------------------------------------------------------------------- inference
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, C, P, P)`` of the *window* for squeezed inputs ``x`` float
        ``(B, 3, P, P)``, RGB 0..255, ``P`` a multiple of :attr:`size_divisor`."""
        return self._predict(x)[0]

    def forward_context(self, neighbourhood: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, C, P, P)`` of the windows at the centre of ``(B, 3, G, G)`` 0..255
        neighbourhoods (``G`` = :meth:`ContextSpec.neighbourhood_side` of ``P``)."""
        return self(self.squeeze(neighbourhood))

    def window_side(self, neighbourhood_side: int) -> int:
        """``P`` of the window at the centre of a ``G``-pixel neighbourhood (crop)."""
        patch = round(neighbourhood_side / self.context.neighbourhood)
        if (
            patch % self.size_divisor
            or self.context.neighbourhood_side(patch) != neighbourhood_side
        ):
            raise ValueError(
                f"SCPSeg crops are window neighbourhoods: a {neighbourhood_side} px crop is not "
                f"G = {self.context.neighbourhood} x P for a window P that is a multiple of "
                f"{self.size_divisor} (e.g. {self.context.neighbourhood_side(256)} for P = 256)"
            )
        return patch

    def squeeze(self, neighbourhood: torch.Tensor) -> torch.Tensor:
        """The squeezed ``(B, 3, P, P)`` input of ``(B, 3, G, G)`` neighbourhoods."""
        patch = self.window_side(neighbourhood.shape[-1])
        return squeeze_context(neighbourhood.float(), self.context, patch).to(neighbourhood.dtype)

    def centre(self, neighbourhood: torch.Tensor) -> torch.Tensor:
        """The window part of neighbourhood crops ``(..., G, G)`` (images or labels)."""
        patch = self.window_side(neighbourhood.shape[-1])
        m = self.context.margin(patch)
        return neighbourhood[..., m : m + patch, m : m + patch]

    def segment_crop(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, labels)`` of the part of a training/validation crop this model predicts:
        the window at the centre of the neighbourhood crop."""
        return self.forward_context(images), self.centre(labels)

    def forward_train(
        self, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Every output the SCPSeg losses need, for neighbourhood crops ``x`` ``(B, 3, G, G)``.

        Keys: ``logits`` ``(B, C, P, P)``; ``labels`` (the window part of ``labels``
        ``(B, G, G)``, what the logits are scored against; absent without labels); ``sr`` and
        ``sr_target`` ``(B, 3, P, P)`` (normalised); ``seg_similarity`` and ``sr_similarity``
        ``(B, k², d/4, d/4)``.
        """
        if self.train_heads is None:
            raise RuntimeError(
                "this model was built for inference without its training heads; "
                "train a model from build_model(config)"
            )
        patch = self.window_side(x.shape[-1])
        logits, centre_features = self._predict(self.squeeze(x))
        assert isinstance(self.train_heads, SCPSegTrainingHeads)
        sr_features, sr = self.train_heads.sr_decoder(centre_features, patch)
        window = self._normalise(self.centre(x))
        k = self.config.lfa_window
        out = {
            "logits": logits,
            "sr": sr,
            "sr_target": window,
            "seg_similarity": local_self_similarity(centre_features, k),
            "sr_similarity": local_self_similarity(sr_features, k),
        }
        if labels is not None:
            out["labels"] = self.centre(labels)
        return out

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in fp32 whatever the input precision, then continue in the input's dtype.
        return ((x.float() - self.pixel_mean.float()) / self.pixel_std.float()).to(x.dtype)

    def output_classifier(self) -> nn.Conv2d:
        """The classifier's 1x1 convolution (its logits are only upsampled bilinearly)."""
        last = self.classifier[-1]
        assert isinstance(last, nn.Conv2d)
        return last

    def _predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Window logits ``(B, C, P, P)`` and the centre's decoder features ``(B, Cd, d, d)``."""
        self._check_input(x)
        patch = x.shape[-1]
        layer1, _, layer4 = self.encoder.features(self._normalise(x))
        features = self.decoder(layer1, layer4)
        # Static slice of the stride-4 grid: ring and centre are multiples of 4 pixels.
        r = self.context.ring(patch) // 4
        d = self.context.centre_side(patch) // 4
        centre = features[:, :, r : r + d, r : r + d]
        logits = F.interpolate(
            self.classifier(centre), size=(patch, patch), mode="bilinear", align_corners=False
        )
        return logits, centre

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-1] != x.shape[-2]:
            raise ValueError(
                f"SCPSeg expects square squeezed windows (B, 3, P, P) RGB 0..255, "
                f"got shape {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise ValueError(
                f"SCPSeg expects a float tensor with values 0..255, got {x.dtype}; "
                "call .float() (or .half() on CUDA) first"
            )
        if x.shape[-1] % self.size_divisor:
            raise ValueError(
                f"window size {x.shape[-1]} is not a multiple of "
                f"{self.size_divisor}; the tiling planner chooses valid sizes"
            )

    # ------------------------------------------------------------------------------ state
    def prepare_for_inference(self) -> None:
        """Nothing to freeze: SCPSeg holds no state written in training besides BN statistics."""

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
