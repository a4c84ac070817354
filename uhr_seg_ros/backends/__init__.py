"""Inference backends behind one interface, chosen by a fallback chain.

``create_backend(model, order=("tensorrt", "cuda", "cpu"))`` tries each name in turn; every step
that cannot run here logs one line saying why (torch-tensorrt missing, no CUDA, engine build
failed: ...) and the first backend that comes up is returned. Backends live in a plain registry
(name -> factory) that refuses unknown and duplicate names.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from uhr_seg_ros.defaults import BACKEND_ORDER, MEMORY_CAP_MB
from uhr_seg_ros.model.contract import SegmentationModel

from .base import Backend, BackendError, BackendUnavailable, error_summary
from .eager import PRECISIONS as EAGER_PRECISIONS
from .eager import EagerBackend
from .tensorrt import PRECISIONS as TENSORRT_PRECISIONS
from .tensorrt import TensorRTBackend

__all__ = [
    "DEFAULT_ORDER",
    "Backend",
    "BackendError",
    "BackendOptions",
    "BackendUnavailable",
    "backend_precisions",
    "create_backend",
    "register_backend",
    "registered_backends",
    "registered_precisions",
]

LOGGER = logging.getLogger(__name__)

DEFAULT_ORDER = BACKEND_ORDER


@dataclass(frozen=True)
class BackendOptions:
    """Settings every factory receives; each backend uses the ones that apply to it."""

    #: ``"fp16"`` or ``"fp32"`` on GPU backends; the CPU backend always runs fp32
    precision: str = "fp16"
    #: largest batch of patches one ``infer`` call gets (TensorRT profile max, graph size)
    max_batch: int = 4
    #: patch sides the planner may choose (TensorRT builds one engine per size)
    patch_sizes: tuple[int, ...] = (1024,)
    #: where serialized TensorRT engines are cached (None: ``~/.cache/uhr_seg_ros/engines``)
    engine_cache_dir: Path | None = None
    #: weights identity in the engine cache key (None: ``weights_sha256(model)``, which
    #: ``uhr-seg export`` and the node both use, so they share cached engines; pass a
    #: checkpoint *file* hash only if every builder of the cache does the same)
    checkpoint_hash: str | None = None
    #: eager CUDA: capture CUDA graphs at warm-up (see :class:`EagerBackend`)
    cuda_graphs: bool = True
    #: eager CUDA: wrap the network in ``torch.compile`` (slow start-up)
    torch_compile: bool = False
    #: the memory cap, in MB: bounds the TensorRT builder's tactic workspace
    memory_cap_mb: float = MEMORY_CAP_MB


BackendFactory = Callable[[SegmentationModel, BackendOptions], Backend]


@dataclass(frozen=True)
class _Registration:
    factory: BackendFactory
    #: precisions a user may ask of this backend; the first is what it runs when asked for one
    #: it cannot (the CPU backend runs fp32 whatever a shared config says)
    precisions: tuple[str, ...]


_REGISTRY: dict[str, _Registration] = {}


def register_backend(
    name: str, factory: BackendFactory, precisions: Sequence[str] = ("fp16", "fp32")
) -> None:
    """Add a backend under ``name`` with the precisions it offers; a factory raises
    :class:`BackendUnavailable` when it cannot run on this machine."""
    if name in _REGISTRY:
        raise ValueError(f"backend {name!r} is already registered")
    if not precisions:
        raise ValueError(f"backend {name!r} must offer at least one precision")
    _REGISTRY[name] = _Registration(factory, tuple(precisions))


def registered_backends() -> tuple[str, ...]:
    """Names accepted in ``create_backend(order=...)``, in registration order."""
    return tuple(_REGISTRY)


def backend_precisions(name: str) -> tuple[str, ...]:
    """The precisions backend ``name`` offers (ValueError for an unknown name)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown backend {name!r}; choose from {registered_backends()}")
    return _REGISTRY[name].precisions


def registered_precisions() -> tuple[str, ...]:
    """Every precision some registered backend offers (what ``precision`` may be set to)."""
    names: dict[str, None] = {}
    for registration in _REGISTRY.values():
        names.update(dict.fromkeys(registration.precisions))
    return tuple(sorted(names))


def _cuda_backend(model: SegmentationModel, options: BackendOptions) -> Backend:
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
        raise BackendUnavailable(
            f"no CUDA device (torch.cuda.is_available() is False; torch "
            f"{torch.__version__} is {build})"
        )
    return EagerBackend(
        model,
        "cuda",
        options.precision,
        options.max_batch,
        cuda_graphs=options.cuda_graphs,
        torch_compile=options.torch_compile,
    )


def _cpu_backend(model: SegmentationModel, options: BackendOptions) -> Backend:
    return EagerBackend(model, "cpu", "fp32", options.max_batch)


def _tensorrt_backend(model: SegmentationModel, options: BackendOptions) -> Backend:
    return TensorRTBackend(
        model,
        "cuda",
        options.precision,
        options.max_batch,
        options.patch_sizes,
        options.engine_cache_dir,
        options.checkpoint_hash,
        memory_cap_mb=options.memory_cap_mb,
    )


register_backend("tensorrt", _tensorrt_backend, TENSORRT_PRECISIONS)
register_backend("cuda", _cuda_backend, EAGER_PRECISIONS)
register_backend("cpu", _cpu_backend, ("fp32",))


def create_backend(
    model: SegmentationModel,
    order: Sequence[str] = DEFAULT_ORDER,
    *,
    precision: str = "fp16",
    max_batch: int = 4,
    patch_sizes: Sequence[int] = (1024,),
    engine_cache_dir: str | Path | None = None,
    checkpoint_hash: str | None = None,
    cuda_graphs: bool = True,
    torch_compile: bool = False,
    memory_cap_mb: float = MEMORY_CAP_MB,
) -> Backend:
    """The first backend in ``order`` that comes up on this machine.

    Each skipped step logs one WARNING line ``backend 'x' skipped: <reason>``; the chosen one
    logs one INFO line. Raises ``ValueError`` for an unknown name or precision (configuration
    mistakes are not fallback reasons) and :class:`BackendError` when every step failed.
    """
    order = tuple(order)
    if not order:
        raise ValueError(f"backend order is empty; use e.g. {DEFAULT_ORDER}")
    unknown = [name for name in order if name not in _REGISTRY]
    if unknown:
        raise ValueError(f"unknown backend(s) {unknown}; choose from {registered_backends()}")
    if precision not in registered_precisions():
        raise ValueError(f"precision must be one of {registered_precisions()}, got {precision!r}")
    options = BackendOptions(
        precision=precision,
        max_batch=max_batch,
        patch_sizes=tuple(patch_sizes),
        engine_cache_dir=Path(engine_cache_dir) if engine_cache_dir else None,
        checkpoint_hash=checkpoint_hash,
        cuda_graphs=cuda_graphs,
        torch_compile=torch_compile,
        memory_cap_mb=memory_cap_mb,
    )
    reasons: list[str] = []
    for name in order:
        try:
            backend = _REGISTRY[name].factory(model, options)
        except BackendUnavailable as exc:
            reason = str(exc)
        except Exception as exc:  # a broken step (CUDA OOM, driver error) must not stop the chain
            LOGGER.debug("backend %r failed", name, exc_info=True)
            reason = error_summary(exc)
        else:
            LOGGER.info("using backend %s", backend.describe())
            return backend
        LOGGER.warning("backend %r skipped: %s", name, reason)
        reasons.append(f"{name}: {reason}")
    raise BackendError("no backend could be created: " + "; ".join(reasons))
