"""Measured memory and time model of one network on one backend: peak bytes and seconds of a
forward pass.

Activation memory depends on cuDNN algorithm choice, TensorRT tactics and the allocator, so the
planner never guesses it: :func:`calibrate` runs the real backend on a few ``(batch, patch)``
shapes and records the peak, and :class:`MemoryModel` turns those points into an upper bound
``fixed + per_pixel · batch · patch²`` that no measured point exceeds.

What one measurement counts (the input batch itself is excluded: the executor owns it):
  * CUDA, measured the way inference runs: starting from nothing resident but the weights
    (``backend.release()``, cached blocks returned), the shape is warmed up (CUDA graph captured,
    TensorRT engine deserialised and its context memory allocated) and run; the point is the
    growth of the allocator's *peak reserved* bytes (what the allocator cap holds: graph pools
    and cached blocks included) plus the growth of the backend's external bytes (engine
    weights), and on a discrete GPU any further drop of free memory (``mem_get_info``) that
    neither explains. On Jetson (memory shared with the CPU) free-memory deltas also move with
    host allocations, so they are not used there. Afterwards the shape is released again;
  * CPU: the peak of live torch CPU allocations during the call, from the profiler's memory
    events (the closest CPU equivalent of ``max_memory_allocated``).

Time is measured beside memory, on the same backend and shapes (plus larger patches, where the
planner's choices lie): the fastest of a few forwards (wall clock) on the CPU, CUDA events on a GPU
(TensorRT: each engine's patch size). The planner multiplies it out over a plan's windows and
picks the fastest plan under the cap; a file without time points plans as before (largest
patch first).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from uhr_seg_ros.backends.base import Backend
from uhr_seg_ros.backends.device_memory import DeviceMemory, device_memory

log = logging.getLogger(__name__)

#: ``(batch, patch)`` shapes measured at start-up when no stored model matches: small enough
#: for a CPU, two patch sizes and two batch sizes so that the per-pixel slope is well determined.
QUICK_POINTS: tuple[tuple[int, int], ...] = ((1, 128), (1, 256), (2, 256))
#: The same on a GPU, where a forward takes milliseconds: closer to the patches actually planned,
#: so less is extrapolated (cuDNN workspaces are not exactly linear in the pixel count).
CUDA_QUICK_POINTS: tuple[tuple[int, int], ...] = ((1, 256), (1, 512), (1, 1024), (2, 1024))
#: Shapes measured by ``uhr-seg calibrate`` (covers the planner's usual choices on a GPU).
FULL_POINTS: tuple[tuple[int, int], ...] = (
    (1, 256),
    (1, 512),
    (2, 512),
    (1, 1024),
    (2, 1024),
    (4, 1024),
    (1, 1536),
)
#: Shapes measured by ``uhr-seg calibrate`` on a CPU (patch 1536 is too slow there).
CPU_FULL_POINTS: tuple[tuple[int, int], ...] = ((1, 128), (1, 256), (2, 256), (1, 512), (2, 512))
#: Shapes timed by ``uhr-seg calibrate`` on a CPU: every patch side the planner is likely to pick
#: for frames of 1-5k px (the per-pixel cost grows with the patch once activations leave the
#: caches, so it is measured there, not extrapolated), and batches 2 and 4 at the sizes a
#: 1-3k frame is usually cut into (batching helps at 512 px and hurts beyond on two cores).
CPU_TIME_POINTS: tuple[tuple[int, int], ...] = (
    (1, 256),
    (1, 512),
    (2, 512),
    (4, 512),
    (1, 768),
    (1, 1024),
    (2, 1024),
    (4, 1024),
    (1, 1280),
    (2, 1280),
    (4, 1280),
    (1, 1536),
    (1, 2048),
    (1, 2464),
)
#: The same on a GPU (forwards take milliseconds: batches matter more there).
CUDA_TIME_POINTS: tuple[tuple[int, int], ...] = (
    (1, 256),
    (1, 512),
    (2, 512),
    (4, 512),
    (1, 1024),
    (2, 1024),
    (4, 1024),
    (1, 1536),
    (2, 1536),
    (1, 2048),
)


@dataclass
class MemoryModel:
    """Upper bound of the extra device bytes one ``backend.infer(B×3×P×P)`` needs."""

    #: what was measured: model identity, backend name, device name, precision
    model_id: str
    backend: str
    device: str
    precision: str
    #: bytes independent of the batch size (workspaces, weight casts)
    fixed_bytes: int
    #: bytes per input pixel of the batch (activations, logits); multiplies ``B·P²``
    bytes_per_pixel: float
    #: the raw measurements ``[batch, patch, peak_bytes]`` the fit came from
    points: list[list[int]] = field(default_factory=list)
    #: measured seconds of one forward, ``[batch, patch, seconds]`` (empty: no time model)
    time_points: list[list[float]] = field(default_factory=list)

    @property
    def has_time(self) -> bool:
        return bool(self.time_points)

    def predict_seconds(self, batch: int, patch: int) -> float | None:
        """Seconds of one forward of ``batch`` windows of ``patch²`` (None without time points).

        A patch side that was timed uses its own measurement at the nearest timed batch size
        (batching changes the per-pixel cost differently at each size, so one batch's gain is
        not carried to other patches). Otherwise the per-pixel cost is interpolated linearly in
        the patch side between the measured patches of the nearest measured batch size (clamped
        beyond them). Either way the result is that cost times ``batch · patch²``.
        """
        if not self.time_points:
            return None
        same_patch = {int(b): s for b, p, s in self.time_points if int(p) == patch}
        if same_patch:
            near = min(same_patch, key=lambda b: (abs(math.log(b / batch)), b))
            return same_patch[near] / (near * patch * patch) * batch * patch * patch
        batches = sorted({int(b) for b, _, _ in self.time_points})
        nearest = min(batches, key=lambda b: (abs(math.log(b / batch)), b))
        curve = sorted((int(p), s / (b * p * p)) for b, p, s in self.time_points if b == nearest)
        sides = [p for p, _ in curve]
        rates = [r for _, r in curve]
        if patch <= sides[0]:
            rate = rates[0]
        elif patch >= sides[-1]:
            rate = rates[-1]
        else:
            i = next(k for k, side in enumerate(sides) if side >= patch)
            frac = (patch - sides[i - 1]) / (sides[i] - sides[i - 1])
            rate = rates[i - 1] + frac * (rates[i] - rates[i - 1])
        return rate * batch * patch * patch

    def predict(self, batch: int, patch: int) -> int:
        """Peak extra bytes of one forward of ``batch`` patches of ``patch × patch``."""
        return math.ceil(self.fixed_bytes + self.bytes_per_pixel * batch * patch * patch)

    def matches(self, model_id: str, backend: str, device: str, precision: str) -> bool:
        return (self.model_id, self.backend, self.device, self.precision) == (
            model_id,
            backend,
            device,
            precision,
        )

    @classmethod
    def fit(cls, points: list[tuple[int, int, int]], **identity: Any) -> MemoryModel:
        """Least-squares slope over ``B·P²``, intercept raised until every point is covered."""
        if len(points) < 2:
            raise ValueError("a memory model needs at least two measured (batch, patch) points")
        pixels = torch.tensor([b * p * p for b, p, _ in points], dtype=torch.float64)
        peaks = torch.tensor([m for _, _, m in points], dtype=torch.float64)
        if pixels.max() == pixels.min():
            raise ValueError("memory model points must differ in batch·patch²")
        centred = pixels - pixels.mean()
        slope = float((centred * (peaks - peaks.mean())).sum() / (centred * centred).sum())
        slope = max(slope, 0.0)
        fixed = float((peaks - slope * pixels).max())
        return cls(
            fixed_bytes=max(0, math.ceil(fixed)),
            bytes_per_pixel=slope,
            points=[[int(b), int(p), int(m)] for b, p, m in points],
            **identity,
        )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> MemoryModel:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (OSError, json.JSONDecodeError, TypeError) as exc:
            raise ValueError(
                f"{path} is not a memory model file written by `uhr-seg calibrate` ({exc})"
            ) from exc


def device_name(device: torch.device) -> str:
    """Stable name of the hardware a measurement belongs to (e.g. ``cuda:NVIDIA Orin``)."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type


def model_identity(model: torch.nn.Module) -> str:
    """Architecture name + a hash of its config (or of its parameter shapes when it has no
    serialisable config): the same graph always gets the same identity, weights aside."""
    config = getattr(model, "config", None)  # any nn.Module may be calibrated
    if config is not None and hasattr(config, "to_dict"):
        described = json.dumps(config.to_dict(), sort_keys=True, default=str)
    else:
        described = json.dumps([[name, list(p.shape)] for name, p in model.state_dict().items()])
    digest = hashlib.sha256(described.encode()).hexdigest()[:12]
    return f"{type(model).__name__}-{digest}"


def find_memory_model(
    directory: Path, model_id: str, backend: str, device: str, precision: str
) -> MemoryModel | None:
    """The stored model in ``directory/*.json`` measured for exactly this identity, if any."""
    for path in sorted(Path(directory).glob("*.json")):
        try:
            stored = MemoryModel.load(path)
        except ValueError:
            log.warning("ignoring %s: not a memory model file", path)
            continue
        if stored.matches(model_id, backend, device, precision):
            return stored
    return None


def cpu_peak_bytes(run: Callable[[], object]) -> int:
    """Peak bytes of live torch CPU allocations made while ``run()`` executes (profiler memory
    events; allocations made before the call are not counted)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    events = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]"
    )
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def cuda_point_bytes(backend: Backend, memory: DeviceMemory, batch: int, patch: int) -> int:
    """Device bytes one ``(batch, patch)`` shape costs on ``backend`` as inference runs it:
    warm-up (graph capture, engine load, context memory) plus one forward, from a state with
    only the weights resident (see the module docstring). The shape is released afterwards."""
    x = torch.zeros(batch, 3, patch, patch, device=backend.device, dtype=backend.input_dtype)
    backend.release()
    memory.synchronize()
    memory.empty_cache()
    memory.reset_peak()
    reserved0 = memory.reserved_bytes()
    external0 = backend.external_bytes()
    free0 = memory.free_bytes()
    with torch.inference_mode():
        backend.warmup(batch, patch, iterations=1)
        backend.infer(x)  # first-enqueue and lazily loaded kernels are part of the point
    memory.synchronize()
    reserved_growth = memory.peak_reserved_bytes() - reserved0
    external_growth = backend.external_bytes() - external0
    outside = max(0, external_growth)
    if not memory.unified:
        free_drop = free0 - memory.free_bytes()
        unexplained = free_drop - (memory.reserved_bytes() - reserved0)
        outside = max(outside, unexplained)
    backend.release()
    memory.empty_cache()
    return max(0, reserved_growth) + outside


def measure_infer_peak(
    backend: Backend, batch: int, patch: int, memory: DeviceMemory | None = None
) -> int:
    """Peak extra bytes of ``backend.infer`` on one ``(batch, 3, patch, patch)`` input (CUDA:
    :func:`cuda_point_bytes`, through ``memory`` or the device's real allocator view)."""
    if backend.device.type == "cuda" or memory is not None:
        view = memory if memory is not None else device_memory(backend.device)
        assert view is not None
        return cuda_point_bytes(backend, view, batch, patch)
    x = torch.zeros(batch, 3, patch, patch, device=backend.device, dtype=backend.input_dtype)
    with torch.inference_mode():
        backend.infer(x)  # lazy initialisation (autotuning, engine load) is not per-frame cost

        def run() -> None:
            backend.infer(x)

        return cpu_peak_bytes(run)


def measure_infer_seconds(backend: Backend, batch: int, patch: int, repeats: int = 3) -> float:
    """Fastest of ``repeats`` timed ``backend.infer`` calls on one ``(batch, 3, patch, patch)``
    input after a warm-up call: host wall clock on the CPU, CUDA events on a GPU (TensorRT
    included). The minimum, not the mean: other jobs on a shared machine only ever add time."""
    x = torch.zeros(batch, 3, patch, patch, device=backend.device, dtype=backend.input_dtype)
    samples = []
    with torch.inference_mode():
        backend.infer(x)
        for _ in range(max(1, repeats)):
            if backend.device.type == "cuda":
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                backend.infer(x)
                end.record()
                end.synchronize()
                samples.append(start.elapsed_time(end) / 1e3)
            else:
                t0 = time.perf_counter()
                backend.infer(x)
                samples.append(time.perf_counter() - t0)
    return min(samples)


def _usable(backend: Backend, points: tuple[tuple[int, int], ...]) -> list[tuple[int, int]]:
    allowed = backend.patch_sizes
    return [
        (b, p)
        for b, p in points
        if b <= backend.max_batch
        and p % backend.size_divisor == 0
        and (allowed is None or p in allowed)
    ]


def calibrate(
    backend: Backend,
    model_id: str,
    precision: str,
    points: tuple[tuple[int, int], ...] = QUICK_POINTS,
    time_points: tuple[tuple[int, int], ...] = (),
    repeats: int = 3,
    memory: DeviceMemory | None = None,
) -> MemoryModel:
    """Measure peak memory at ``points`` and seconds per forward at ``time_points`` on
    ``backend`` and fit a :class:`MemoryModel` that holds both."""
    usable = _usable(backend, points)
    measured = []
    for batch, patch in usable:
        peak = measure_infer_peak(backend, batch, patch, memory)
        log.debug("memory model point: batch %d, patch %d -> %.1f MB", batch, patch, peak / 2**20)
        measured.append((batch, patch, peak))
    fitted = MemoryModel.fit(
        measured,
        model_id=model_id,
        backend=backend.name,
        device=device_name(backend.device),
        precision=precision,
    )
    for batch, patch in _usable(backend, time_points):
        seconds = measure_infer_seconds(backend, batch, patch, repeats)
        log.debug("time model point: batch %d, patch %d -> %.4f s", batch, patch, seconds)
        fitted.time_points.append([batch, patch, round(seconds, 6)])
    return fitted
