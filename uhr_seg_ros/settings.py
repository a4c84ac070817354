"""``SegmenterSettings``: the one owner of everything a user chooses about segmentation.

ROS parameters (:mod:`uhr_seg_ros.ros.params`), every command's flags
(:mod:`uhr_seg_ros.cli.segmenter_options`), the docker prebuild and the YAML presets only
*translate* into this object; it alone checks the values, so a bad cap, backend, precision or
patch gets the same one-line reason everywhere. Frozen: a change (a new cap from the node's
parameter callback, lowered after an out-of-memory error) is a new object via
:meth:`SegmenterSettings.replace`.

Sentinels: ROS parameters and YAML files cannot hold ``None``, so "let the planner decide" is
written :data:`AUTO_PATCH` / :data:`AUTO_OVERLAP` / :data:`AUTO_BATCH` there (and ``""`` for
"no file"); the constructor turns them into ``None`` and :meth:`SegmenterSettings.as_sentinels`
turns them back.

Importing this module is cheap (the CLI parser uses it); validation imports the backend
registry and the model contract on first use.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from uhr_seg_ros.defaults import BACKEND_ORDER, MEMORY_CAP_MB

#: "The planner decides" as ROS parameters / YAML write it (they cannot hold None).
AUTO_PATCH = 0
AUTO_OVERLAP = -1
AUTO_BATCH = 0
#: Fraction of the cap kept free: fragmentation, cuDNN/TensorRT workspace variance.
DEFAULT_SAFETY_MARGIN = 0.10
#: Largest batch a backend is built for (TensorRT profile max, CUDA graph size).
DEFAULT_MAX_BATCH = 4
#: Patch sizes TensorRT engines are built for when ``patch_size`` is not pinned (one engine
#: each, built once and cached): a large one for generous caps, a small one for tight caps.
TENSORRT_PATCH_SIZES: tuple[int, ...] = (512, 1024)


class SettingsError(ValueError):
    """An invalid setting: ``field`` names it, ``problem`` says what is allowed.

    Adapters may reword the field (``--memory-cap-mb`` for a command, the parameter name for
    the node); ``str(error)`` is ``"<field> <problem>"``.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field = field
        self.problem = problem


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class SegmenterSettings:
    """Everything a user can choose; validated when built (:class:`SettingsError`)."""

    #: checkpoint file; None = the bundled default model (uhr_seg_ros.paths.default_model_path())
    model_path: str | None = None
    #: backends tried in order until one comes up (names from the backend registry)
    backend_order: tuple[str, ...] = BACKEND_ORDER
    #: precision on GPU backends (one a registered backend offers); a backend that lacks it
    #: runs its own (the CPU backend always runs fp32)
    precision: str = "fp16"
    #: device memory inference may use, in MB (weights, engine, buffers, activations)
    memory_cap_mb: float = MEMORY_CAP_MB
    #: fraction of the cap kept free for fragmentation and measurement variance
    safety_margin: float = DEFAULT_SAFETY_MARGIN
    #: planner overrides: None lets the planner decide from the cap
    patch_size: int | None = None
    overlap: int | None = None
    batch_size: int | None = None
    #: largest batch the backend is built for (TensorRT profile, CUDA graph size)
    max_batch: int = DEFAULT_MAX_BATCH
    #: also return the per-pixel confidence (max softmax of the averaged logits)
    return_confidence: bool = False
    #: how overlapping windows' logits are combined: "uniform" | "hann" (tiling.BLEND_MODES;
    #: the default is tiling.geometry.DEFAULT_BLEND, chosen by measurement)
    blend: str = "uniform"
    #: a file written by `uhr-seg calibrate`; None = look in config/memory_models/, else measure
    #: a quick memory model at start-up
    memory_model_path: str | None = None
    #: TensorRT engine cache (None = ~/.cache/uhr_seg_ros/engines)
    engine_cache_dir: str | None = None

    def __post_init__(self) -> None:
        set_field = object.__setattr__  # frozen: normalise once, here
        for name in ("model_path", "memory_model_path", "engine_cache_dir"):
            value = getattr(self, name)
            set_field(self, name, str(value) if value not in (None, "") else None)
        for name, auto in (
            ("patch_size", AUTO_PATCH),
            ("overlap", AUTO_OVERLAP),
            ("batch_size", AUTO_BATCH),
        ):
            if getattr(self, name) == auto and _is_int(getattr(self, name)):
                set_field(self, name, None)
        if isinstance(self.backend_order, str):
            set_field(
                self,
                "backend_order",
                tuple(name.strip() for name in self.backend_order.split(",") if name.strip()),
            )
        else:
            set_field(self, "backend_order", tuple(self.backend_order))
        self._validate()
        set_field(self, "memory_cap_mb", float(self.memory_cap_mb))

    def _validate(self) -> None:
        from uhr_seg_ros.backends import registered_backends, registered_precisions
        from uhr_seg_ros.model.contract import SIZE_DIVISOR
        from uhr_seg_ros.tiling.geometry import BLEND_MODES

        if self.blend not in BLEND_MODES:
            raise SettingsError("blend", f"must be one of {', '.join(BLEND_MODES)}")
        known = registered_backends()
        if not self.backend_order:
            raise SettingsError("backend_order", f"must name at least one of {', '.join(known)}")
        unknown = [name for name in self.backend_order if name not in known]
        if unknown:
            raise SettingsError(
                "backend_order",
                f"names unknown backend(s) {', '.join(unknown)}; registered: {', '.join(known)}",
            )
        if len(set(self.backend_order)) != len(self.backend_order):
            raise SettingsError(
                "backend_order", f"lists a backend twice: {', '.join(self.backend_order)}"
            )
        precisions = registered_precisions()
        if self.precision not in precisions:
            raise SettingsError(
                "precision", f"must be one of {', '.join(precisions)}; got {self.precision!r}"
            )
        cap = self.memory_cap_mb
        if not (_is_number(cap) and math.isfinite(cap) and cap > 0):
            raise SettingsError(
                "memory_cap_mb", f"must be a finite positive number of MB, got {cap!r}"
            )
        if not (_is_number(self.safety_margin) and 0.0 <= self.safety_margin < 1.0):
            raise SettingsError("safety_margin", f"must be in [0, 1), got {self.safety_margin!r}")
        if not (_is_int(self.max_batch) and self.max_batch >= 1):
            raise SettingsError("max_batch", f"must be an integer >= 1, got {self.max_batch!r}")
        patch = self.patch_size
        if patch is not None and not (_is_int(patch) and patch > 0 and patch % SIZE_DIVISOR == 0):
            raise SettingsError(
                "patch_size",
                f"must be {AUTO_PATCH} (automatic) or a positive "
                f"multiple of {SIZE_DIVISOR}, got {patch!r}",
            )
        overlap = self.overlap
        if overlap is not None and not (
            _is_int(overlap) and overlap >= 0 and (patch is None or overlap < patch)
        ):
            limit = f"0 <= overlap < patch_size ({patch})" if patch else "overlap >= 0"
            raise SettingsError(
                "overlap", f"must be {AUTO_OVERLAP} (automatic) or {limit}, got {overlap!r}"
            )
        batch = self.batch_size
        if batch is not None and not (_is_int(batch) and 1 <= batch <= self.max_batch):
            raise SettingsError(
                "batch_size",
                f"must be {AUTO_BATCH} (automatic) or in "
                f"1..{self.max_batch} (max_batch), got {batch!r}",
            )

    def replace(self, **changes: Any) -> SegmenterSettings:
        """A validated copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    @property
    def engine_patch_sizes(self) -> tuple[int, ...]:
        """The patch sides a TensorRT backend builds engines for under these settings."""
        return TENSORRT_PATCH_SIZES if self.patch_size is None else (self.patch_size,)

    @property
    def cap_bytes(self) -> int:
        """The cap in bytes (finite by construction)."""
        return int(self.memory_cap_mb * 2**20)

    def as_sentinels(self) -> dict[str, Any]:
        """The fields as ROS parameters / YAML hold them: None becomes the sentinel."""
        return {
            "model_path": self.model_path or "",
            "backend_order": list(self.backend_order),
            "precision": self.precision,
            "memory_cap_mb": self.memory_cap_mb,
            "patch_size": AUTO_PATCH if self.patch_size is None else self.patch_size,
            "overlap": AUTO_OVERLAP if self.overlap is None else self.overlap,
            "batch_size": AUTO_BATCH if self.batch_size is None else self.batch_size,
            "memory_model_path": self.memory_model_path or "",
        }
