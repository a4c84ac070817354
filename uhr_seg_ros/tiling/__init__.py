"""Memory-capped tiling: a measured memory model, a planner and a tile executor.

``plan_tiles`` picks patch/overlap/batch for a frame size under a cap; ``TiledExecutor`` runs
that plan on a backend, merging overlapping logits one band of rows at a time.
"""

from .executor import TiledExecutor, buffer_bytes, buffer_specs
from .geometry import (
    BLEND_MODES,
    TileGrid,
    blend_profile,
    coverage_counts,
    reflect_indices,
    round_up,
    tile_starts,
)
from .memory_model import (
    MemoryModel,
    calibrate,
    device_name,
    find_memory_model,
    measure_infer_peak,
    measure_infer_seconds,
    model_identity,
)
from .plan import PlanError, TilePlan
from .planner import DEFAULT_SAFETY_MARGIN, plan_tiles

__all__ = [
    "BLEND_MODES",
    "DEFAULT_SAFETY_MARGIN",
    "MemoryModel",
    "PlanError",
    "TileGrid",
    "TilePlan",
    "TiledExecutor",
    "blend_profile",
    "buffer_bytes",
    "buffer_specs",
    "calibrate",
    "coverage_counts",
    "device_name",
    "find_memory_model",
    "measure_infer_peak",
    "measure_infer_seconds",
    "model_identity",
    "plan_tiles",
    "reflect_indices",
    "round_up",
    "tile_starts",
]
