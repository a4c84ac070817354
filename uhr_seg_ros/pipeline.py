"""``Segmenter``: the one object adapters (ROS node, CLI, evaluation) hold.

It owns the model, the backend, the measured memory model, one tile plan per frame size and the
executor's reused buffers; ``segment`` takes a uint8 RGB frame and returns a uint8 class mask.
Start-up work (loading, backend selection, memory calibration, warm-up) happens once in
:meth:`Segmenter.from_settings` and on the first frame of a new size (or in :meth:`prepare`).
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uhr_seg_ros.backends import Backend, create_backend
from uhr_seg_ros.backends.device_memory import (
    DeviceMemory,
    device_memory,
    enforce_cap,
    held_device_bytes,
)
from uhr_seg_ros.data.palettes import default_palette
from uhr_seg_ros.model.contract import SegmentationModel
from uhr_seg_ros.settings import TENSORRT_PATCH_SIZES, SegmenterSettings
from uhr_seg_ros.tiling import (
    MemoryModel,
    PlanError,
    TiledExecutor,
    TilePlan,
    calibrate,
    device_name,
    find_memory_model,
    model_identity,
    plan_tiles,
)
from uhr_seg_ros.tiling.memory_model import CUDA_QUICK_POINTS, QUICK_POINTS

log = logging.getLogger(__name__)


def calibration_points(
    backend: Backend, patch_size: int | None, default: tuple[tuple[int, int], ...] | None = None
) -> tuple[tuple[int, int], ...]:
    """``(batch, patch)`` shapes to measure: ``default`` (None: the quick start-up set for the
    backend's device), except that TensorRT can only run the patch sizes it built engines for
    (batch 1 and its largest batch of each)."""
    if backend.name != "tensorrt":
        if default is not None:
            return default
        return CUDA_QUICK_POINTS if backend.device.type == "cuda" else QUICK_POINTS
    patches = TENSORRT_PATCH_SIZES if patch_size is None else (patch_size,)
    return tuple(sorted({(b, p) for p in patches for b in (1, backend.max_batch)}))


@dataclass
class SegmentationResult:
    """The output of one frame."""

    #: ``(H, W)`` uint8 class ids, the size of the input frame
    mask: np.ndarray
    #: ``(H, W)`` float16 in 0..1 (max softmax probability) or None when not requested
    confidence: np.ndarray | None
    #: milliseconds: upload, gather, infer, merge, download (the phases that ran) and total
    timings_ms: dict[str, float]
    #: the tile plan this frame ran with
    plan: TilePlan
    #: CUDA: measured peak (``max_memory_reserved``, what the allocator cap holds, + backend
    #: external bytes) during the call;
    #: CPU (nothing to measure per frame): the plan's predicted peak, i.e. held weights + the
    #: memory model's bound for its (batch, patch) + the executor's buffers
    peak_memory_mb: float
    #: per-class names, index = class id
    class_names: tuple[str, ...] = field(default_factory=tuple)


def _as_hwc(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A ``(H, W, 1|3)`` uint8 tensor view of an ``H×W``, ``H×W×1/3/4`` array or a ``1/3/4×H×W``
    tensor (alpha dropped, no copy unless the array has negative strides)."""
    if isinstance(image, np.ndarray):
        if image.ndim == 3 and image.shape[2] in (1, 3, 4):
            channels_last = image
        elif image.ndim == 2:
            channels_last = image[:, :, None]
        else:
            raise ValueError(
                f"image must be H×W or H×W×C with C in 1, 3, 4 (RGB order), got "
                f"shape {image.shape}; convert BGR/other layouts at the adapter"
            )
        if any(stride < 0 for stride in channels_last.strides):
            channels_last = np.ascontiguousarray(channels_last)
        with warnings.catch_warnings():
            # Message buffers arrive read-only; the executor only ever reads the frame.
            warnings.filterwarnings("ignore", message=".*not writable.*", category=UserWarning)
            tensor = torch.from_numpy(channels_last)
    elif isinstance(image, torch.Tensor):
        if image.dim() == 3 and image.shape[0] in (1, 3, 4):
            tensor = image.permute(1, 2, 0)
        elif image.dim() == 2:
            tensor = image[:, :, None]
        else:
            raise ValueError(
                f"image tensor must be H×W or C×H×W with C in 1, 3, 4, got shape "
                f"{tuple(image.shape)}"
            )
    else:
        # ValueError like every other bad input, so adapters catch one exception type.
        raise ValueError(f"image must be a numpy array or a torch tensor, got {type(image)}")
    if tensor.dtype != torch.uint8:
        raise ValueError(
            f"image must be uint8 (0..255), got {tensor.dtype}; convert with "
            "np.clip(x, 0, 255).astype(np.uint8) or rescale float images first"
        )
    if tensor.shape[0] == 0 or tensor.shape[1] == 0:
        raise ValueError(f"image is empty: {tuple(tensor.shape[:2])} pixels")
    return tensor[..., :3]


def resolve_model(settings: SegmenterSettings) -> SegmentationModel:
    """Load ``settings.model_path`` (or the bundled default), saying how to fix a missing one."""
    from uhr_seg_ros.model import load_checkpoint
    from uhr_seg_ros.paths import default_model_path

    path = Path(settings.model_path) if settings.model_path else default_model_path()
    if not path.is_file():
        hint = (
            (
                "the bundled default model has not been trained/installed yet; train one with "
                "`uhr-seg train` or pass a checkpoint"
            )
            if not settings.model_path
            else "check the path"
        )
        raise FileNotFoundError(
            f"model checkpoint {path} does not exist: {hint} (--model PATH / model_path parameter)"
        )
    return load_checkpoint(path)


class Segmenter:
    """Segments frames of any size under a memory cap. Build with :meth:`from_settings`."""

    def __init__(
        self,
        model: SegmentationModel,
        backend: Backend,
        memory_model: MemoryModel,
        settings: SegmenterSettings,
    ) -> None:
        self.model = model
        self.backend = backend
        self.memory_model = memory_model
        self.settings = settings
        num_classes = backend.num_classes
        self.class_names: tuple[str, ...] = tuple(
            model.config.class_names or (f"class_{i}" for i in range(num_classes))
        )
        # The training data's colours, stored in the checkpoint by `uhr-seg train`; else defaults.
        stored = model.meta.get("palette") or ()
        self.palette: tuple[tuple[int, int, int], ...] = (
            tuple((int(r), int(g), int(b)) for r, g, b in stored)
            if len(stored) >= num_classes
            else default_palette(num_classes)
        )
        self.executor = TiledExecutor(backend)
        #: the device's allocator view (None on the CPU): enforcement and accounting
        self.device_memory: DeviceMemory | None = device_memory(backend.device)
        self._plans: dict[tuple[int, int], TilePlan] = {}
        self._warmed: set[tuple[int, int]] = set()
        self._active_size: tuple[int, int] | None = None  # frame size the executor holds
        # (batch, patch) shapes the backend was last told to keep resident (None: unknown)
        self._resident_shapes: tuple[tuple[int, int], ...] | None = None
        # Engines exist only for the patch sizes they were built for; None = any size.
        self._allowed_patches = tuple(backend.patch_sizes) if backend.patch_sizes else None

    @classmethod
    def from_settings(
        cls, settings: SegmenterSettings, model: SegmentationModel | None = None
    ) -> Segmenter:
        """Load the model (or use the in-memory ``model``), hold the GPU allocator to the cap,
        bring up the first backend of ``settings.backend_order`` that works here and get a
        measured memory model.

        The allocator cap is set before the backend allocates anything. A backend that comes
        up but cannot meet the cap with even its smallest plan (e.g. TensorRT engines larger
        than the cap) is closed and the next one in the order is tried, with one log line
        saying why; the last one is kept (its frames then fail with the PlanError's fix).
        """
        if model is None:
            model = resolve_model(settings)
        patch_sizes = settings.engine_patch_sizes
        if any(name != "cpu" for name in settings.backend_order) and torch.cuda.is_available():
            memory = device_memory(torch.device("cuda", torch.cuda.current_device()))
            assert memory is not None
            enforce_cap(memory, settings.cap_bytes)
        order = tuple(settings.backend_order)
        while True:
            backend = create_backend(
                model,
                order,
                precision=settings.precision,
                max_batch=settings.max_batch,
                patch_sizes=patch_sizes,
                engine_cache_dir=settings.engine_cache_dir,
                memory_cap_mb=settings.memory_cap_mb,
            )
            memory_model = cls._memory_model_for(model, backend, settings)
            segmenter = cls(model, backend, memory_model, settings)
            remaining = order[order.index(backend.name) + 1 :] if backend.name in order else ()
            try:
                segmenter.check_memory_cap(settings.memory_cap_mb)
            except PlanError as exc:
                if not remaining:
                    return segmenter
                log.warning(
                    "backend %r cannot meet the %.0f MB cap, trying %s: %s",
                    backend.name,
                    settings.memory_cap_mb,
                    ",".join(remaining),
                    str(exc).splitlines()[0],
                )
                segmenter.close()
                order = remaining
                continue
            return segmenter

    @staticmethod
    def _memory_model_for(
        model: SegmentationModel, backend: Backend, settings: SegmenterSettings
    ) -> MemoryModel:
        precision = backend.precision
        identity = {
            "model_id": model_identity(model),
            "backend": backend.name,
            "device": device_name(backend.device),
            "precision": precision,
        }
        if settings.memory_model_path:
            stored = MemoryModel.load(settings.memory_model_path)
            if not stored.matches(**identity):
                raise ValueError(
                    f"memory model {settings.memory_model_path} was measured for "
                    f"{stored.model_id} on {stored.backend}/{stored.device}/{stored.precision}, "
                    f"not {identity['model_id']} on {backend.name}/{identity['device']}/"
                    f"{precision}; re-run `uhr-seg calibrate` for this model and device"
                )
            return stored
        from uhr_seg_ros.paths import config_dir

        try:
            found = find_memory_model(config_dir() / "memory_models", **identity)
        except FileNotFoundError:
            found = None
        if found is not None:
            return found
        log.info(
            "no stored memory model for %s on %s; measuring one now (a few forward "
            "passes; `uhr-seg calibrate` stores a fuller one)",
            identity["model_id"],
            backend.describe(),
        )
        points = calibration_points(backend, settings.patch_size)
        # On a GPU a forward takes milliseconds: time the same shapes, so the planner can pick
        # the fastest plan (a CPU would spend seconds; `uhr-seg calibrate` stores its times).
        timed = points if backend.device.type == "cuda" else ()
        return calibrate(backend, identity["model_id"], precision, points, time_points=timed)

    # -- planning -----------------------------------------------------------------------------

    def held_bytes(self) -> int:
        """Device bytes held before a frame. CUDA: the allocator's *reserved* bytes once cached
        free blocks are returned (weights, CUDA-graph pools, fragmentation; not just
        ``memory_allocated``) plus what the backend holds outside torch (TensorRT engines).
        On CPU: the weights."""
        external = self.backend.external_bytes()
        if self.device_memory is not None:
            return held_device_bytes(self.device_memory, external)
        # The eager backend runs its own (BN-folded) copy of the network beside self.model.
        models = {id(m): m for m in (self.model, getattr(self.backend, "model", self.model))}
        tensors = [t for m in models.values() for t in (*m.parameters(), *m.buffers())]
        return sum(t.numel() * t.element_size() for t in tensors) + external

    def _release_backend(self, keep: tuple[tuple[int, int], ...] = ()) -> None:
        """Free the backend's graphs/engines of shapes not in ``keep`` (and forget that they
        were warmed up), then return cached blocks to the driver."""
        self.backend.release(keep)
        self._warmed &= set(keep)
        self._resident_shapes = tuple(keep)
        if self.device_memory is not None:
            self.device_memory.empty_cache()

    def _baseline_held_bytes(self) -> int:
        """:meth:`held_bytes` with nothing but weights resident: what a new plan starts from
        (the memory model was measured that way: graphs, engines and context memory of the
        measured shape are part of each point). On CUDA this releases the active plan; the
        next :meth:`prepare` rebuilds it."""
        if self.device_memory is None:
            return self.held_bytes()
        if self.executor.plan is not None:
            self.executor.release()
        self._release_backend()
        return self.held_bytes()

    def plan_for(self, height: int, width: int) -> TilePlan:
        """The tile plan for a ``height × width`` frame (cached); :class:`PlanError` if none
        fits the cap."""
        key = (int(height), int(width))
        if key not in self._plans:
            if (
                self.executor.plan is not None
                and (self.executor.plan.height, self.executor.plan.width) != key
            ):
                self.executor.release()  # the planner must see the memory those buffers held
            # ... and what graphs and engines held (CUDA)
            held = self._baseline_held_bytes()
            s = self.settings
            self._plans[key] = self._plan_tiles(
                *key,
                cap_bytes=s.cap_bytes,
                held_bytes=held,
                patch_size=s.patch_size,
                overlap=s.overlap,
                batch_size=s.batch_size,
                blend=s.blend,
            )
            log.info("tile plan %s", self._plans[key].describe())
        return self._plans[key]

    def prepare(self, height: int, width: int) -> TilePlan:
        """Plan, allocate and warm up for frames of this size now instead of on the first one."""
        plan = self.plan_for(height, width)
        if self.executor.plan is not None and (
            self.executor.plan.height,
            self.executor.plan.width,
        ) != (plan.height, plan.width):
            self.executor.release()
        # Only what this plan runs stays resident (one CUDA graph, one engine); checked per
        # frame, released only when the plan changed.
        shape = ((plan.batch, plan.patch),)
        if self._resident_shapes != shape:
            self._release_backend(keep=shape)
        self.executor.prepare(plan, self.settings.return_confidence)
        self._active_size = (plan.height, plan.width)
        if (plan.batch, plan.patch) not in self._warmed:
            self.backend.warmup(plan.batch, plan.patch)
            self._warmed.add((plan.batch, plan.patch))
        return plan

    def _plan_tiles(self, height: int, width: int, **choices: Any) -> TilePlan:
        """:func:`plan_tiles` with what this backend, memory model and settings fix; callers pass
        the cap, the held bytes and the window choices."""
        return plan_tiles(
            height,
            width,
            memory_model=self.memory_model,
            num_classes=self.backend.num_classes,
            device=self.backend.device,
            input_dtype=self.backend.input_dtype,
            max_batch=self.backend.max_batch,
            size_divisor=self.backend.size_divisor,
            with_confidence=self.settings.return_confidence,
            safety_margin=self.settings.safety_margin,
            allowed_patches=self._allowed_patches,
            context=self.backend.window_context,
            **choices,
        )

    def minimum_cap_mb(self) -> float:
        """The smallest cap any frame can be segmented under: the planner's smallest plan (one
        window of the smallest patch the backend runs, batch 1) plus the safety margin.

        A cap below it fails every frame, so adapters refuse it when it is set instead of on
        the first frame.
        """
        s = self.settings
        if s.patch_size is not None:
            patch = s.patch_size
        elif self._allowed_patches:
            patch = min(self._allowed_patches)
        else:
            patch = self.backend.size_divisor
        plan = self._plan_tiles(
            patch,
            patch,
            cap_bytes=2**62,
            held_bytes=self._baseline_held_bytes(),
            patch_size=patch,
            overlap=0,
            batch_size=1,
        )
        return plan.predicted_peak_bytes / (1.0 - s.safety_margin) / 2**20

    def check_memory_cap(self, mb: float) -> None:
        """Raise :class:`PlanError` with the fix when no frame at all could run under ``mb``."""
        self.settings.replace(memory_cap_mb=mb)  # SettingsError: not a finite positive number
        minimum = self.minimum_cap_mb()
        if mb < minimum:
            raise PlanError(
                f"a memory cap of {mb:.0f} MB is below the {minimum:.0f} MB that the smallest tile "
                f"plan of this model on {self.backend.describe()} needs (weights, one window, "
                f"buffers, safety margin); raise memory_cap_mb to at least {minimum:.0f}"
            )

    def set_memory_cap(self, mb: float) -> TilePlan | None:
        """Change the cap, hold the allocator to it and re-plan the frame size in use (returned;
        None before any frame). What the old plan held (executor buffers, CUDA graphs, TensorRT
        engines and context memory, cached blocks) is released first, so a lower cap really
        lowers what the process holds. Raises :class:`PlanError` (and keeps the old cap and
        allocator limit) when nothing fits the new one, also before the first frame when no
        frame could fit (:meth:`check_memory_cap`)."""
        self.check_memory_cap(mb)
        old_settings, old_plans = self.settings, self._plans
        self.settings, self._plans = self.settings.replace(memory_cap_mb=mb), {}
        self.executor.release()
        self._release_backend()
        if self.device_memory is not None:
            enforce_cap(self.device_memory, self.settings.cap_bytes)
        if self._active_size is None:
            return None
        try:
            return self.prepare(*self._active_size)
        except PlanError:
            self.settings, self._plans = old_settings, old_plans
            if self.device_memory is not None:
                enforce_cap(self.device_memory, old_settings.cap_bytes)
            raise

    def pin_tiling(self, patch: int | None, overlap: int | None, batch: int | None) -> None:
        """Fix (or, with None, free) patch, overlap and batch for every later frame size:
        the raster reader cuts a mosaic into blocks whose windows must line up with one grid."""
        self.settings = self.settings.replace(patch_size=patch, overlap=overlap, batch_size=batch)
        self._plans = {}

    # -- inference ----------------------------------------------------------------------------

    def segment(self, image: np.ndarray | torch.Tensor) -> SegmentationResult:
        """Class mask of one frame: ``H×W`` / ``H×W×{1,3,4}`` uint8 RGB(A) array, or a
        ``{1,3,4}×H×W`` uint8 tensor (on the host or already on the backend's device)."""
        start = time.perf_counter()
        frame = _as_hwc(image)
        plan = self.prepare(frame.shape[0], frame.shape[1])
        if self.device_memory is not None:
            self.device_memory.reset_peak()
        mask, confidence, timings = self.executor.run(frame)
        if self.device_memory is not None:
            peak = self.device_memory.peak_reserved_bytes() + self.backend.external_bytes()
        else:  # nothing to measure per frame: the plan's accounting (weights do not change)
            peak = plan.predicted_peak_bytes
        timings["total"] = (time.perf_counter() - start) * 1e3
        return SegmentationResult(mask, confidence, timings, plan, peak / 2**20, self.class_names)

    def describe(self) -> str:
        """One line for logs: backend, cap and memory model."""
        return (
            f"{self.backend.describe()}, cap {self.settings.memory_cap_mb:.0f} MB, "
            f"memory model {self.memory_model.model_id} "
            f"({len(self.memory_model.points)} measured points)"
        )

    def close(self) -> None:
        """Release everything this segmenter holds on the device: the executor's buffers, the
        backend's CUDA graphs, TensorRT engines and context memory, and (CUDA) the allocator's
        cached blocks, so that ``nvidia-smi`` shows the process back at its CUDA context.

        This is what a lifecycle node's ``on_cleanup`` calls. Idempotent; the segmenter must not
        be used afterwards (build a new one with :meth:`from_settings`)."""
        self.executor.release()
        self.backend.close()
        self._warmed.clear()
        self._resident_shapes = None
        self._active_size = None
        if self.device_memory is not None:
            self.device_memory.empty_cache()
