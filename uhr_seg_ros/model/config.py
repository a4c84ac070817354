"""``SGHRQConfig``: every number that shapes the network, stored inside every checkpoint.

A model is rebuilt from a checkpoint alone, so the config is plain data (ints, floats, strings,
tuples) that survives ``torch.load(weights_only=True)`` as a dict.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from .context import ContextSpec

#: ImageNet statistics in 0..255 RGB units (the network normalises its own input).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def _generic_names(num_classes: int) -> tuple[str, ...]:
    return tuple(f"class_{i}" for i in range(num_classes))


_Config = TypeVar("_Config", bound="PlainConfig")


class PlainConfig:
    """Shared (de)serialisation of the model-family configs: plain data in and out.

    Subclasses are frozen dataclasses; lists (from YAML and checkpoints) become tuples.
    """

    num_classes: int
    class_names: tuple[str, ...]
    #: Fields added after models were shipped: left out of :meth:`to_dict` while at their
    #: default, so that every model saved before keeps its identity (memory models and
    #: TensorRT engine keys hash the config) and its file.
    added_fields: ClassVar[tuple[str, ...]] = ()

    def _normalise_fields(self) -> None:
        names = tuple(getattr(self, "class_names", ())) or _generic_names(
            getattr(self, "num_classes", 0)
        )
        object.__setattr__(self, "class_names", names)
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, list):  # YAML and checkpoints give lists; keep the type hashable
                object.__setattr__(self, f.name, tuple(value))

    def _validate_classes(self) -> None:
        num_classes = getattr(self, "num_classes", None)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        if num_classes >= 255:
            raise ValueError("num_classes must be below 255 (label value 255 means 'ignore')")
        if len(self.class_names) != num_classes:
            raise ValueError(
                f"class_names has {len(self.class_names)} names but num_classes is "
                f"{num_classes}; give one name per class"
            )

    # ----------------------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists for tuples) safe for YAML and ``weights_only`` checkpoints."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name in self.added_fields and value == f.default:
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls: type[_Config], data: Mapping[str, Any]) -> _Config:
        """Inverse of :meth:`to_dict`; unknown keys are refused (a typo must not pass silently)."""
        if not isinstance(data, Mapping):
            kind = type(data).__name__
            raise ValueError(f"model config must be a mapping, got {kind}")
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown model config key(s) {unknown}; valid keys are {sorted(known)}"
            )
        return cls(**dict(data))


@dataclass(frozen=True)
class SGHRQConfig(PlainConfig):
    """Widths and hyper-parameters of :class:`~uhr_seg_ros.model.SGHRQ`.

    Use a preset (:meth:`paper`, :meth:`lite`, :meth:`tiny`) and ``dataclasses.replace`` for
    variations. Defaults are the reference (paper) widths for 6 classes.
    """

    # Number of output classes (logit channels); labels use 0..num_classes-1, 255 = ignore.
    num_classes: int = 6
    # One name per class, in logit order (shown in diagnostics and model cards).
    class_names: tuple[str, ...] = ()
    # Semantic branch input is the patch downscaled by this factor (nearest); the reference uses 4.
    downscale: int = 4
    # ResNet-V1c deep stem: the three 3x3 conv widths that replace the 7x7 conv.
    stem_widths: tuple[int, int, int] = (32, 32, 64)
    # ResNet-18 stage widths (2 basic blocks each); the last one is also the memory-bank width.
    resnet_widths: tuple[int, int, int, int] = (64, 128, 256, 512)
    # ASPP branch dilations; 1 means a 1x1 branch. Output stride 8 makes 12/24/36 the usual set.
    aspp_dilations: tuple[int, ...] = (1, 12, 24, 36)
    # Channels of each ASPP branch (and of the image-pooling branch).
    aspp_channels: int = 128
    # 3x3 bottleneck width between the ASPP concat and the ASPP logits.
    aspp_bottleneck: int = 128
    # 1x1 reduction of the ASPP concat that the query module reads as its latent embedding.
    query_channels: int = 256
    # STDC1 early stages: stem conv, second conv, stride-8 stage (feat8), stride-16 stage (feat16).
    stdc_widths: tuple[int, int, int, int] = (32, 64, 256, 512)
    # STDC blocks in the stride-8 and stride-16 stages (STDC1 uses 2 and 2).
    stdc_blocks: tuple[int, int] = (2, 2)
    # Learnable Fourier frequencies per axis for each relative offset (2^linspace(0, 6, n) init).
    pe_frequencies: int = 6
    # Hidden widths of the query MLP (1x1 convs with BN + ReLU between).
    mlp_widths: tuple[int, ...] = (512, 256, 256)
    # Momentum m of the memory-bank moving average: new = m * old + (1 - m) * weighted mean.
    memory_momentum: float = 0.9
    # Input normalisation in 0..255 RGB units, applied inside the network.
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # Width of the training-only super-resolution decoder (absent from the inference graph).
    sr_channels: int = 64
    # Width of the training-only FCN auxiliary head on ResNet layer 3.
    fcn_channels: int = 64
    # Channels both branches are projected to for the training-only feature-affinity loss.
    affinity_channels: int = 128
    # Dropout before the ASPP and FCN classifiers (training only; identity in eval mode).
    dropout: float = 0.1
    # Gaussian blur (sigma in input pixels) applied inside the network before both branches:
    # matches sharp frames to training data that were softer, e.g. sources upsampled to the
    # model's GSD (area-down by f then linear-up is about sigma = f / 2). 0 = none.
    input_blur_sigma: float = 0.0

    added_fields: ClassVar[tuple[str, ...]] = ("input_blur_sigma",)

    def __post_init__(self) -> None:
        self._normalise_fields()
        self._validate()

    def _validate(self) -> None:
        self._validate_classes()
        if self.downscale not in (1, 2, 4):
            raise ValueError(
                f"downscale must be 1, 2 or 4 (the network's size divisor of 32 assumes at most "
                f"4), got {self.downscale}"
            )
        widths = {
            "stem_widths": (self.stem_widths, 3),
            "resnet_widths": (self.resnet_widths, 4),
            "stdc_widths": (self.stdc_widths, 4),
            "stdc_blocks": (self.stdc_blocks, 2),
        }
        for name, (value, length) in widths.items():
            if len(value) != length or any(int(v) < 1 for v in value):
                raise ValueError(f"{name} needs {length} positive integers, got {value!r}")
        if any(w % 8 for w in self.stdc_widths[2:]):
            raise ValueError(
                f"stdc_widths[2:] must be multiples of 8 (STDC splits them in "
                f"1/2, 1/4, 1/8 parts), got {self.stdc_widths}"
            )
        positive = (
            "aspp_channels",
            "aspp_bottleneck",
            "query_channels",
            "pe_frequencies",
            "sr_channels",
            "fcn_channels",
            "affinity_channels",
        )
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if not self.aspp_dilations or any(d < 1 for d in self.aspp_dilations):
            raise ValueError(f"aspp_dilations must be positive integers, got {self.aspp_dilations}")
        if not self.mlp_widths or any(w < 1 for w in self.mlp_widths):
            raise ValueError(f"mlp_widths must be positive integers, got {self.mlp_widths}")
        if not 0.0 <= self.memory_momentum < 1.0:
            raise ValueError(f"memory_momentum must be in [0, 1), got {self.memory_momentum}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise ValueError(f"mean/std need 3 values each (std > 0), got {self.mean}, {self.std}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.input_blur_sigma <= 8.0:
            raise ValueError(
                f"input_blur_sigma must be in [0, 8] pixels (0 = off), got {self.input_blur_sigma}"
            )

    @property
    def memory_dim(self) -> int:
        """Width D of one class prototype: the ResNet layer-4 width."""
        return self.resnet_widths[3]

    # ----------------------------------------------------------------------------------- presets
    @classmethod
    def paper(cls, num_classes: int = 6, class_names: Sequence[str] = ()) -> SGHRQConfig:
        """The reference widths (ResNet-18, STDC1 32/64/256/512, ASPP 128, MLP 512/256/256)."""
        return cls(num_classes=num_classes, class_names=tuple(class_names))

    @classmethod
    def lite(cls, num_classes: int = 6, class_names: Sequence[str] = ()) -> SGHRQConfig:
        """About half the reference widths (~1/4 of the parameters): the shipped default,
        small enough to train on a CPU and to run on an embedded GPU with room to spare."""
        return cls(
            num_classes=num_classes,
            class_names=tuple(class_names),
            stem_widths=(16, 16, 32),
            resnet_widths=(32, 64, 128, 256),
            aspp_channels=64,
            aspp_bottleneck=64,
            query_channels=128,
            stdc_widths=(16, 32, 128, 256),
            mlp_widths=(256, 128, 128),
            sr_channels=32,
            fcn_channels=32,
            affinity_channels=64,
        )

    @classmethod
    def tiny(cls, num_classes: int = 3, class_names: Sequence[str] = ()) -> SGHRQConfig:
        """A few thousand parameters: for unit tests (64x64 forward in milliseconds on CPU)."""
        return cls(
            num_classes=num_classes,
            class_names=tuple(class_names),
            stem_widths=(4, 4, 8),
            resnet_widths=(8, 8, 16, 16),
            aspp_dilations=(1, 2),
            aspp_channels=8,
            aspp_bottleneck=8,
            query_channels=8,
            stdc_widths=(4, 8, 16, 16),
            stdc_blocks=(1, 1),
            mlp_widths=(16, 16),
            sr_channels=4,
            fcn_channels=8,
            affinity_channels=8,
        )


@dataclass(frozen=True)
class SCPSegConfig(PlainConfig):
    """Widths and hyper-parameters of :class:`~uhr_seg_ros.model.SCPSeg` (context squeezing,
    one DeepLabV3+ encoder-decoder on ResNet-18 V1c).

    Defaults are the widths SCPSeg reports (ResNet-18, DeepLabV3+); presets as for SGHRQ.
    """

    num_classes: int = 6
    class_names: tuple[str, ...] = ()
    # G / P: side of the neighbourhood squeezed into a window, as a multiple of the window side
    # (reported G/L = 512/256 and 1024/512: 2.0).
    context_neighbourhood: float = 2.0
    # D / P: side the window itself keeps inside the squeezed input (reported 192/256: 0.75).
    context_centre: float = 0.75
    # ResNet-18 V1c deep stem and stage widths (the project's backbone code, output stride 8).
    stem_widths: tuple[int, int, int] = (32, 32, 64)
    resnet_widths: tuple[int, int, int, int] = (64, 128, 256, 512)
    # ASPP dilations (1 = the 1x1 branch) and width of each branch / of the ASPP bottleneck.
    aspp_dilations: tuple[int, ...] = (1, 12, 24, 36)
    aspp_channels: int = 128
    # DeepLabV3+ decoder: 1x1 reduction of the stride-4 layer-1 features, then two 3x3 convs.
    low_level_channels: int = 48
    decoder_channels: int = 128
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # Training-only super-resolution decoder width (absent from the inference graph).
    sr_channels: int = 64
    # Side k of the sliding windows of the local feature alignment's self-similarity (reported 7).
    lfa_window: int = 7
    dropout: float = 0.1

    def __post_init__(self) -> None:
        self._normalise_fields()
        self._validate_classes()
        for name, length in (("stem_widths", 3), ("resnet_widths", 4)):
            value = getattr(self, name)
            if len(value) != length or any(int(v) < 1 for v in value):
                raise ValueError(f"{name} needs {length} positive integers, got {value!r}")
        for name in ("aspp_channels", "low_level_channels", "decoder_channels", "sr_channels"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if not self.aspp_dilations or any(d < 1 for d in self.aspp_dilations):
            raise ValueError(f"aspp_dilations must be positive integers, got {self.aspp_dilations}")
        if self.lfa_window < 1 or self.lfa_window % 2 == 0:
            raise ValueError(f"lfa_window must be a positive odd integer, got {self.lfa_window}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise ValueError(f"mean/std need 3 values each (std > 0), got {self.mean}, {self.std}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        self.context  # noqa: B018 - validates the two ratios

    @property
    def context(self) -> ContextSpec:
        """The squeezing geometry (ratios of the window side)."""
        return ContextSpec(self.context_neighbourhood, self.context_centre)

    @classmethod
    def paper(cls, num_classes: int = 6, class_names: Sequence[str] = ()) -> SCPSegConfig:
        """The reported network: DeepLabV3+ on ResNet-18 (V1c stem), G/L/D = 2 : 1 : 0.75."""
        return cls(num_classes=num_classes, class_names=tuple(class_names))

    @classmethod
    def lite(cls, num_classes: int = 6, class_names: Sequence[str] = ()) -> SCPSegConfig:
        """Half the widths (the same halving as :meth:`SGHRQConfig.lite`): CPU-trainable."""
        return cls(
            num_classes=num_classes,
            class_names=tuple(class_names),
            stem_widths=(16, 16, 32),
            resnet_widths=(32, 64, 128, 256),
            aspp_channels=64,
            low_level_channels=24,
            decoder_channels=64,
            sr_channels=32,
        )

    @classmethod
    def tiny(cls, num_classes: int = 3, class_names: Sequence[str] = ()) -> SCPSegConfig:
        """A few thousand parameters: for unit tests."""
        return cls(
            num_classes=num_classes,
            class_names=tuple(class_names),
            stem_widths=(4, 4, 8),
            resnet_widths=(8, 8, 16, 16),
            aspp_dilations=(1, 2),
            aspp_channels=8,
            low_level_channels=4,
            decoder_channels=8,
            sr_channels=4,
            lfa_window=3,
        )
