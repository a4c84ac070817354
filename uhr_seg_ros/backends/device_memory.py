"""The memory cap enforced by PyTorch's caching allocator, and the device accounting the planner
reads.

What the cap is held by:

* **torch allocations** (weights, activations, cuDNN/cuBLAS workspaces that torch requests,
  CUDA-graph private pools, the executor's buffers, and TensorRT execution-context memory,
  which :mod:`.tensorrt` allocates from torch): ``torch.cuda.set_per_process_memory_fraction``
  with ``cap / total``. The allocator then refuses (``torch.cuda.OutOfMemoryError``) any
  allocation that would take its *reserved* memory over the cap, instead of growing into what
  other processes need. It is set before the backend allocates anything
  (:func:`enforce_cap`).
* **not held by it**: the CUDA context (driver state, module images of the kernels loaded,
  cuDNN/cuBLAS handles: a few hundred MB, in no allocator), and TensorRT's own allocations
  (deserialised engine weights and kernels). The engine weights are counted by the planner
  (``Backend.external_bytes()``), the context is not counted at all.

What the planner counts as *held* before a frame: ``memory_reserved`` (not ``memory_allocated``),
after cached free blocks have been returned to the driver, so that graph pools and
fragmentation count, plus the backend's external bytes (:func:`held_device_bytes`).

Everything goes through a :class:`DeviceMemory` view, so that the logic is tested on CPU-only CI
with a fake (test/backends/test_device_memory.py); :class:`TorchCudaMemory` is the real one.
"""

from __future__ import annotations

import logging
from typing import Protocol

import torch

LOGGER = logging.getLogger(__name__)

#: The allocator is never held to less than this fraction of the device (torch refuses 0).
MIN_FRACTION = 1e-3


class DeviceMemory(Protocol):
    """What the enforcement and accounting read and change on one device."""

    #: True on devices that share memory with the CPU (Jetson): free-memory deltas there also
    #: move with host allocations and cannot be read as device usage
    unified: bool

    def total_bytes(self) -> int: ...
    def free_bytes(self) -> int: ...
    def allocated_bytes(self) -> int: ...
    def reserved_bytes(self) -> int: ...
    def peak_allocated_bytes(self) -> int: ...
    def peak_reserved_bytes(self) -> int: ...
    def reset_peak(self) -> None: ...
    def synchronize(self) -> None: ...
    def set_fraction(self, fraction: float) -> None: ...
    def empty_cache(self) -> None: ...


class TorchCudaMemory:
    """:class:`DeviceMemory` of one CUDA device through ``torch.cuda`` (not run on a GPU in the
    session that wrote it: see docs/tiling.md)."""

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device(device)
        props = torch.cuda.get_device_properties(self.device)
        self.unified = bool(getattr(props, "is_integrated", False))
        self._total = int(props.total_memory)

    def total_bytes(self) -> int:
        return self._total

    def free_bytes(self) -> int:
        return int(torch.cuda.mem_get_info(self.device)[0])

    def allocated_bytes(self) -> int:
        return int(torch.cuda.memory_allocated(self.device))

    def reserved_bytes(self) -> int:
        return int(torch.cuda.memory_reserved(self.device))

    def peak_allocated_bytes(self) -> int:
        return int(torch.cuda.max_memory_allocated(self.device))

    def peak_reserved_bytes(self) -> int:
        return int(torch.cuda.max_memory_reserved(self.device))

    def reset_peak(self) -> None:
        torch.cuda.reset_peak_memory_stats(self.device)

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)

    def set_fraction(self, fraction: float) -> None:
        torch.cuda.set_per_process_memory_fraction(fraction, self.device)

    def empty_cache(self) -> None:
        torch.cuda.empty_cache()


def device_memory(device: torch.device) -> DeviceMemory | None:
    """The view of ``device``, None for the CPU (host memory has no allocator cap here)."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return TorchCudaMemory(device)


def allocator_fraction(cap_bytes: int, total_bytes: int) -> float:
    """``cap / total`` clamped to the range torch accepts."""
    if cap_bytes <= 0 or total_bytes <= 0:
        raise ValueError(f"cap ({cap_bytes}) and device total ({total_bytes}) must be positive")
    return min(1.0, max(MIN_FRACTION, cap_bytes / total_bytes))


def enforce_cap(memory: DeviceMemory, cap_bytes: int) -> float:
    """Hold the caching allocator of ``memory``'s device to ``cap_bytes``; returns the fraction.

    Lowering the cap returns cached free blocks first, so that the new limit is what is held
    (blocks still in use, e.g. a CUDA graph pool, stay until their owner releases them).
    """
    fraction = allocator_fraction(cap_bytes, memory.total_bytes())
    memory.empty_cache()
    memory.set_fraction(fraction)
    LOGGER.info(
        "allocator held to %.0f MB (%.4f of %.0f MB device memory)%s",
        cap_bytes / 2**20,
        fraction,
        memory.total_bytes() / 2**20,
        "; memory shared with the CPU" if memory.unified else "",
    )
    return fraction


def held_device_bytes(memory: DeviceMemory, external_bytes: int) -> int:
    """What the device holds for this process before a frame: the allocator's reserved bytes
    once its cached free blocks are returned (weights, graph pools, fragmentation) plus what the
    backend holds outside torch."""
    memory.empty_cache()
    return memory.reserved_bytes() + int(external_bytes)
