"""Model families behind one contract: a name, a config type, a network type, presets.

Everything outside ``model/`` (backends, export, tiler, training, evaluation, node, commands)
talks to a network through :class:`~uhr_seg_ros.model.contract.SegmentationModel` only, and
builds one through :func:`build_model` / :func:`family_for`: adding a family is one
:func:`register_family` call (plus its training loss in the training room).

Registered here: ``sghrq`` (three branches, nothing beyond the patch) and ``scpseg`` (one
branch, the patch's surroundings squeezed into the patch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .config import PlainConfig, SCPSegConfig, SGHRQConfig
from .contract import SegmentationModel
from .scpseg import SCPSeg
from .sghrq import SGHRQ


@dataclass(frozen=True)
class ModelFamily:
    """One registered architecture."""

    #: registry name, stored in checkpoints and written as ``model.family`` in recipes
    name: str
    config_type: type[PlainConfig]
    model_type: type[SegmentationModel]
    #: preset constructors of ``config_type`` (classmethods taking num_classes, class_names)
    presets: tuple[str, ...]
    #: one line for ``--help`` texts and docs
    summary: str

    def preset(self, name: str, num_classes: int, class_names: Sequence[str] = ()) -> PlainConfig:
        """The config of preset ``name`` for these classes."""
        if name not in self.presets:
            raise ValueError(
                f"model preset {name!r} is not one of {self.name}'s presets {self.presets}"
            )
        return getattr(self.config_type, name)(num_classes, tuple(class_names))

    def config_from_dict(self, data: Mapping[str, Any]) -> PlainConfig:
        return self.config_type.from_dict(data)


_FAMILIES: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> None:
    """Add a family; names and config types must be unique."""
    if family.name in _FAMILIES:
        raise ValueError(f"model family {family.name!r} is already registered")
    if any(f.config_type is family.config_type for f in _FAMILIES.values()):
        raise ValueError(f"config type {family.config_type.__name__} already has a family")
    _FAMILIES[family.name] = family


def registered_families() -> tuple[str, ...]:
    """Family names, in registration order."""
    return tuple(_FAMILIES)


def get_family(name: str) -> ModelFamily:
    """The family called ``name``; ``ValueError`` naming the registered ones otherwise."""
    try:
        return _FAMILIES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown model family {name!r}; choose from {registered_families()}"
        ) from None


def family_for(config: Any) -> ModelFamily:
    """The family whose config type ``config`` is."""
    for family in _FAMILIES.values():
        if type(config) is family.config_type:
            return family
    raise TypeError(
        f"build_model needs the config of a registered model family "
        f"({', '.join(f.config_type.__name__ for f in _FAMILIES.values())}), got "
        f"{type(config).__name__}; use e.g. SGHRQConfig.from_dict(...) for a dict"
    )


def build_model(config: Any, training_heads: bool = True) -> Any:
    """A randomly initialised network of ``config``'s family (train mode; SGHRQ's bank empty
    and writable); ``training_heads=False`` builds the inference graph only."""
    return family_for(config).model_type(config, training_heads)


register_family(
    ModelFamily(
        "sghrq",
        SGHRQConfig,
        SGHRQ,
        ("paper", "lite", "tiny"),
        "SGHRQ: semantic + shallow branch + high-resolution query, frozen class memory bank; "
        "sees its patch only",
    )
)
register_family(
    ModelFamily(
        "scpseg",
        SCPSegConfig,
        SCPSeg,
        ("paper", "lite", "tiny"),
        "SCPSeg: one DeepLabV3+ branch on a window with its surroundings squeezed into its border",
    )
)

__all__ = [
    "ModelFamily",
    "build_model",
    "family_for",
    "get_family",
    "register_family",
    "registered_families",
]
