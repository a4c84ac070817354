"""Fakes of what the GPU paths talk to (the caching allocator and its NVML-like free-memory
view, TensorRT's runtime), so that enforcement, accounting and release logic is tested on
CPU-only CI."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from types import SimpleNamespace

import torch

MB = 2**20


class FakeDeviceMemory:
    """A :class:`~uhr_seg_ros.backends.device_memory.DeviceMemory` whose numbers the test sets.

    ``reserve(n)`` / ``cache(n)`` / ``free_cached()`` model the caching allocator: reserved
    bytes are in use or cached; ``empty_cache`` returns the cached ones. ``host_noise`` is
    subtracted from free memory on each read, as host allocations do on Jetson's shared memory.
    """

    def __init__(self, total: int = 8 * 1024 * MB, unified: bool = False) -> None:
        self.unified = unified
        self.total = total
        self.in_use = 0
        self.cached = 0
        self.pooled = 0  # reserved, not allocated, kept by empty_cache (a live graph's pool)
        self.outside = 0  # bytes taken by something torch cannot see (TensorRT, context)
        self.host_noise = 0
        self.peak = 0
        self.fractions: list[float] = []
        self.empty_cache_calls = 0

    # allocator model
    def reserve(self, nbytes: int) -> None:
        self.in_use += nbytes
        self.peak = max(self.peak, self.reserved_bytes())

    def free(self, nbytes: int) -> None:  # to the allocator's cache, not the driver
        self.in_use -= nbytes
        self.cached += nbytes

    # DeviceMemory
    def total_bytes(self) -> int:
        return self.total

    def free_bytes(self) -> int:
        used = self.reserved_bytes() + self.outside
        if self.unified:
            self.outside += self.host_noise  # the host allocated meanwhile
        return self.total - used

    def allocated_bytes(self) -> int:
        return self.in_use

    def reserved_bytes(self) -> int:
        return self.in_use + self.cached + self.pooled

    def peak_allocated_bytes(self) -> int:
        return self.peak

    def peak_reserved_bytes(self) -> int:
        return self.peak

    def reset_peak(self) -> None:
        self.peak = self.reserved_bytes()

    def synchronize(self) -> None:
        pass

    def set_fraction(self, fraction: float) -> None:
        self.fractions.append(fraction)

    def empty_cache(self) -> None:
        self.empty_cache_calls += 1
        self.cached = 0


def fake_tensorrt(
    user_managed: bool = True, memory_per_sample: int = 1000, weights_bytes: int = 0
) -> SimpleNamespace:
    """A ``tensorrt`` module with one engine: input ``image`` (fp32), output ``logits`` (fp16);
    the context needs ``memory_per_sample`` bytes per batch sample for the shape set."""

    class Context:
        def __init__(self, strategy):
            self.strategy = strategy
            self.shape = None
            self.addresses = {}
            self.device_memory_calls = []
            self.enqueued = []

        def set_tensor_address(self, name, pointer):
            self.addresses[name] = pointer

        def set_input_shape(self, name, shape):
            self.shape = tuple(shape)
            return True

        def update_device_memory_size_for_shapes(self):
            return memory_per_sample * self.shape[0]

        def set_device_memory(self, pointer, size):
            self.device_memory_calls.append(size)

        def execute_async_v3(self, stream):
            self.enqueued.append(stream)
            return True

    class Engine:
        num_io_tensors = 2
        device_memory_size = memory_per_sample * 64  # the profile maximum

        def __init__(self):
            self.contexts = []

        def get_tensor_name(self, index):
            return ("image", "logits")[index]

        def get_tensor_mode(self, name):
            return "in" if name == "image" else "out"

        def get_tensor_dtype(self, name):
            return "float" if name == "image" else "half"

        def create_execution_context(self, strategy=None):
            context = Context(strategy)
            self.contexts.append(context)
            return context

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, blob):
            return Engine() if blob else None

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    module = SimpleNamespace(
        Runtime=Runtime,
        Logger=Logger,
        __version__="10.3.0",
        TensorIOMode=SimpleNamespace(INPUT="in", OUTPUT="out"),
        DataType=SimpleNamespace(FLOAT="float", HALF="half"),
    )
    if user_managed:
        module.ExecutionContextAllocationStrategy = SimpleNamespace(STATIC=0, USER_MANAGED=2)
    return module


def cpu_allocate(record: list[int]):
    """An ``allocate(nbytes)`` for :class:`_EngineRunner` on the CPU that records the sizes."""

    def allocate(nbytes: int) -> torch.Tensor:
        record.append(nbytes)
        return torch.empty(nbytes, dtype=torch.uint8)

    return allocate


@contextlib.contextmanager
def captured_log(name: str, level: int = logging.WARNING) -> Iterator[list[logging.LogRecord]]:
    """Records of logger ``name`` at ``level`` and above while the block runs (independent of
    how other tests configured propagation, unlike caplog)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(level)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
