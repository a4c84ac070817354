"""The one small interface every inference backend implements.

The tiling executor and everything above it talk to a ``Backend`` only: they never know whether
the network runs as TensorRT engine, eager CUDA or eager CPU.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection

import torch

from uhr_seg_ros.model.context import ContextSpec
from uhr_seg_ros.model.contract import SIZE_DIVISOR


class BackendError(RuntimeError):
    """A backend could not be created or failed to run (the message says why)."""


class BackendUnavailable(BackendError):
    """This backend cannot run here (library missing, no device, build failed); the fallback chain
    logs the message and tries the next backend."""


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` with an explicit index for CUDA (``"cuda"`` -> ``cuda:<current>``), so that
    comparing it with a tensor's ``.device`` works."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def error_summary(exc: BaseException) -> str:
    """``"TypeName: first line of the message"``: converter and builder errors span pages, a
    fallback log line needs only the gist (the full trace is logged at DEBUG)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


class Backend(ABC):
    """Runs the SGHRQ inference graph on batches of patches.

    Contract of :meth:`infer`:
      * input: ``(B, 3, P, P)`` tensor on :attr:`device`, dtype :attr:`input_dtype` (any layout,
        views allowed), RGB values in 0..255 (not normalised: normalisation is part of the
        network), ``P`` a multiple of :attr:`size_divisor`, ``1 <= B <= max_batch``;
      * output: ``(B, C, P, P)`` logits on :attr:`device` (fp16 or fp32), no host copy. The
        output may live in a buffer the backend reuses (CUDA graphs, TensorRT): it is valid
        until the next ``infer`` call, so consume it (merge, argmax) or clone it before then.
    """

    #: registry name, e.g. ``"cpu"``, ``"cuda"``, ``"tensorrt"``
    name: str = "abstract"
    #: patch sides must be multiples of this (the network's total stride)
    size_divisor: int = SIZE_DIVISOR
    #: the only patch sides this backend runs (TensorRT: one engine each); None = any multiple
    #: of :attr:`size_divisor`
    patch_sizes: tuple[int, ...] | None = None
    #: the network's context squeezing (SCPSeg): the executor feeds each window's squeezed
    #: neighbourhood instead of the window; None = windows as they are
    window_context: ContextSpec | None = None
    #: the precision the network really runs in (``"fp32"`` on the CPU whatever was asked)
    precision: str = "fp32"

    def __init__(
        self, device: torch.device, num_classes: int, input_dtype: torch.dtype, max_batch: int = 16
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.device = resolve_device(device)
        self.num_classes = int(num_classes)
        self.input_dtype = input_dtype
        self.max_batch = int(max_batch)

    @abstractmethod
    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, C, P, P)`` for a batch of patches ``(B, 3, P, P)``."""

    def check_batch(self, batch: torch.Tensor) -> None:
        """Raise ``ValueError`` saying how to fix a batch that breaks the :meth:`infer` contract.

        Shape and device checks only (no synchronisation), cheap enough for the hot path.
        """
        if batch.dim() != 4 or batch.shape[1] != 3 or batch.shape[2] != batch.shape[3]:
            raise ValueError(
                f"{self.name} backend expects a (B, 3, P, P) RGB batch, got shape "
                f"{tuple(batch.shape)}; convert HxWx3 images to 3xHxW and cut square "
                "patches"
            )
        batch_size, patch = batch.shape[0], batch.shape[-1]
        if patch % self.size_divisor:
            raise ValueError(
                f"patch side {patch} is not a multiple of {self.size_divisor}; "
                "pad or choose a patch size the planner allows"
            )
        if self.patch_sizes is not None and patch not in self.patch_sizes:
            raise ValueError(
                f"the {self.name} backend was built for patch sides "
                f"{self.patch_sizes}, got {patch}; recreate it with that size in "
                "patch_sizes"
            )
        if not 1 <= batch_size <= self.max_batch:
            raise ValueError(
                f"batch of {batch_size} patches is outside 1..{self.max_batch} "
                f"(max_batch of the {self.name} backend); split it"
            )
        if batch.device != self.device:
            raise ValueError(
                f"batch is on {batch.device} but the {self.name} backend runs on "
                f"{self.device}; upload it once with .to({str(self.device)!r})"
            )

    def warmup(self, batch_size: int, patch_size: int, iterations: int = 2) -> None:
        """Run dummy batches so that lazy initialisation (cuDNN autotune, engine load,
        CUDA graph capture) happens at start-up, not on the first real frame."""
        dummy = torch.zeros(
            batch_size, 3, patch_size, patch_size, device=self.device, dtype=self.input_dtype
        )
        with torch.inference_mode():
            for _ in range(iterations):
                self.infer(dummy)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def external_bytes(self) -> int:
        """Device bytes this backend holds that ``torch.cuda.memory_allocated`` cannot see
        (e.g. a TensorRT engine's own allocations). Eager backends hold none."""
        return 0

    def describe(self) -> str:
        """One line for logs and the stats topic."""
        return f"{self.name} on {self.device} ({str(self.input_dtype).replace('torch.', '')})"

    def release(self, keep: Collection[tuple[int, int]] = ()) -> None:  # noqa: B027
        """Free what this backend holds on the device for ``(batch, patch)`` shapes not in
        ``keep`` (CUDA graphs, TensorRT engines and their context memory); a later
        :meth:`warmup` or ``infer`` of such a shape brings it back. Weights stay. Called when
        the tile plan changes so that only what the plan runs stays resident."""

    def close(self) -> None:
        """Release device resources (engines, graphs). Idempotent."""
        self.release()
