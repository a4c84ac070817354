"""The SGHRQ network (core: plain torch, no ROS).

Public API: :class:`SGHRQConfig` (+ presets), :class:`SGHRQ`, :func:`build_model`,
:func:`save_checkpoint`, :func:`load_checkpoint`, :class:`CheckpointError`; the contract every
network meets for the rest of the core: :class:`SegmentationModel` (and :data:`SIZE_DIVISOR`).
"""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import SGHRQConfig
from .contract import SIZE_DIVISOR, ModelConfig, SegmentationModel
from .sghrq import SGHRQ, build_model

__all__ = [
    "SGHRQ",
    "SIZE_DIVISOR",
    "CheckpointError",
    "ModelConfig",
    "SGHRQConfig",
    "SegmentationModel",
    "build_model",
    "load_checkpoint",
    "save_checkpoint",
]
