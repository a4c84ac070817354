"""The SGHRQ network (core: plain torch, no ROS).

Public API: :class:`SGHRQConfig` (+ presets), :class:`SGHRQ`, :func:`build_model`,
:func:`save_checkpoint`, :func:`load_checkpoint`, :class:`CheckpointError`.
"""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import SGHRQConfig
from .sghrq import SGHRQ, build_model

__all__ = ["SGHRQ", "CheckpointError", "SGHRQConfig", "build_model", "load_checkpoint",
           "save_checkpoint"]
