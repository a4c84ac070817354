"""The segmentation networks (core: plain torch, no ROS): model families behind one contract.

Public API: the family registry (:func:`build_model`, :func:`get_family`,
:func:`registered_families`, :class:`SegmentationModel`), the two families' configs and
networks (:class:`SGHRQConfig`/:class:`SGHRQ`, :class:`SCPSegConfig`/:class:`SCPSeg`),
:func:`save_checkpoint`, :func:`load_checkpoint`, :class:`CheckpointError`.
"""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import SCPSegConfig, SGHRQConfig
from .context import ContextSpec, squeeze_context
from .contract import SIZE_DIVISOR, ModelConfig, SegmentationModel
from .families import (
    ModelFamily,
    build_model,
    family_for,
    get_family,
    register_family,
    registered_families,
)
from .scpseg import SCPSeg
from .sghrq import SGHRQ

__all__ = [
    "SGHRQ",
    "SIZE_DIVISOR",
    "CheckpointError",
    "ContextSpec",
    "ModelConfig",
    "ModelFamily",
    "SCPSeg",
    "SCPSegConfig",
    "SGHRQConfig",
    "SegmentationModel",
    "build_model",
    "family_for",
    "get_family",
    "load_checkpoint",
    "register_family",
    "registered_families",
    "save_checkpoint",
    "squeeze_context",
]
