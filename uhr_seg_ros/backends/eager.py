"""Eager PyTorch backend: CPU fp32, or CUDA with fp16 autocast, channels_last and CUDA graphs.

Both run a copy of the network with every eval-mode BatchNorm folded into the convolution before
it (:func:`fold_batch_norm`): one pass over each activation instead of two, and no BN kernels.
"""

from __future__ import annotations

import copy
import itertools
import logging
from collections.abc import Collection
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from uhr_seg_ros.model.contract import SegmentationModel

from .base import Backend, resolve_device

LOGGER = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16")
#: Largest difference between folded and unfolded fp32 logits, relative to the logits' largest
#: magnitude (rounding only: folding is exact in real arithmetic; tested).
FOLD_TOLERANCE = 1e-4


def fold_batch_norm(model: nn.Module) -> tuple[nn.Module, int]:
    """A copy of ``model`` (eval mode) in which every ``Conv2d`` directly followed by a
    ``BatchNorm2d`` inside an ``nn.Sequential`` carries the BN's affine map in its weights and
    bias, the BN replaced by ``nn.Identity``. Returns the copy and the number of folds. The
    original is untouched (it may still be trained)."""
    folded = copy.deepcopy(model).eval()
    count = 0
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in itertools.pairwise(names):
            conv, norm = module._modules[first], module._modules[second]
            if (
                isinstance(conv, nn.Conv2d)
                and isinstance(norm, nn.BatchNorm2d)
                and norm.track_running_stats
                and norm.running_mean is not None
            ):
                module._modules[first] = fuse_conv_bn_eval(conv, norm)
                module._modules[second] = nn.Identity()
                count += 1
    return folded, count


@dataclass
class _CapturedGraph:
    """One CUDA graph replaying the network on a static ``(B, 3, P, P)`` input buffer."""

    graph: torch.cuda.CUDAGraph
    static_input: torch.Tensor
    static_output: torch.Tensor


class EagerBackend(Backend):
    """Runs the network as an ordinary ``nn.Module`` in inference mode.

    On CUDA:
      * ``precision="fp16"`` runs under ``torch.autocast`` (convolutions in fp16, reductions and
        softmax kept in fp32 by autocast's op lists), logits come back fp16;
      * weights are ``channels_last`` (faster fp16 convolutions on tensor cores; cuDNN propagates
        the layout, so the NCHW input needs no conversion);
      * ``cuda_graphs=True`` captures one graph per ``(batch, patch)`` passed to :meth:`warmup`
        and replays it for every batch of that patch size up to that batch: launch overhead
        vanishes (it dominates small patches and Jetson's slower CPU). Batches with no captured
        graph run eagerly. Each graph has its own private memory pool, so that :meth:`release`
        of one shape really frees its activations (a pool shared by several graphs is freed
        only with the last of them). If capture fails (an op that synchronises), one line is
        logged and the backend stays eager;
      * ``torch_compile=True`` wraps the network in ``torch.compile`` (fused kernels; costs
        minutes of start-up, so off by default).
    On CPU everything runs fp32 eagerly (fp16 convolutions are slow there), weights also
    ``channels_last``, and the executor hands it channels-last batches (:attr:`memory_format`).
    ``fold_bn=True`` (default) runs a BN-folded copy of the network (:func:`fold_batch_norm`,
    logits within :data:`FOLD_TOLERANCE` of the unfolded model in fp32).
    """

    #: layout of the input batch this backend runs fastest on (the executor allocates its batch
    #: buffer in it, so the HWC frame copies straight in and the first layer converts nothing)
    memory_format = torch.channels_last

    def __init__(
        self,
        model: SegmentationModel,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        max_batch: int = 16,
        cuda_graphs: bool = True,
        torch_compile: bool = False,
        fold_bn: bool = True,
    ) -> None:
        device = resolve_device(device)
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        on_cuda = device.type == "cuda"
        super().__init__(device, model.num_classes, torch.float32, max_batch)
        # Networks outside the registered families (test stubs, wrappers) have no context.
        self.window_context = getattr(model, "context", None)
        self.name = device.type
        self.precision = precision if on_cuda else "fp32"
        self.cuda_graphs = cuda_graphs and on_cuda
        # channels_last on both devices: tensor-core fp16 convolutions on CUDA, and oneDNN's
        # blocked kernels on x86 CPUs (lite, 2×1024², cpu2: 0.59 s instead of 0.81 s per batch).
        self.folded_batch_norms = 0
        network: nn.Module = model
        if fold_bn:
            network, self.folded_batch_norms = fold_batch_norm(model)
        self.model = network.eval().to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
        self._forward = torch.compile(self.model, dynamic=False) if torch_compile else self.model
        self._graphs: dict[tuple[int, int], _CapturedGraph] = {}

    def _run(self, batch: torch.Tensor) -> torch.Tensor:
        # No autocast weight cache: inference uses each weight once per forward, and cached
        # casts freed at autocast exit would dangle inside a captured CUDA graph.
        with torch.autocast(
            "cuda", dtype=torch.float16, enabled=self.precision == "fp16", cache_enabled=False
        ):
            return self._forward(batch)

    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        self.check_batch(batch)
        graph = self._graph_for(batch.shape[0], batch.shape[-1])
        if graph is None:
            with torch.inference_mode():
                return self._run(batch)
        batch_size = batch.shape[0]
        graph.static_input[:batch_size].copy_(batch)
        graph.graph.replay()
        return graph.static_output[:batch_size]

    def _graph_for(self, batch_size: int, patch_size: int) -> _CapturedGraph | None:
        """The captured graph with the smallest batch >= ``batch_size`` (samples are independent
        in eval mode, so the unused tail of a bigger graph's input is harmless)."""
        sizes = [b for (b, p) in self._graphs if p == patch_size and b >= batch_size]
        return self._graphs[(min(sizes), patch_size)] if sizes else None

    def warmup(self, batch_size: int, patch_size: int, iterations: int = 2) -> None:
        """Autotune cuDNN (and compile) at start-up; with CUDA graphs, also capture the graph
        for ``(batch_size, patch_size)``."""
        if self.cuda_graphs and (batch_size, patch_size) not in self._graphs:
            self._capture(batch_size, patch_size, iterations)
        super().warmup(batch_size, patch_size, iterations)

    def _capture(self, batch_size: int, patch_size: int, iterations: int) -> None:
        static_input = torch.zeros(batch_size, 3, patch_size, patch_size, device=self.device)
        try:
            # Warm up on a side stream first, as capture requires (lazy cuDNN/compile state).
            side_stream = torch.cuda.Stream(self.device)
            side_stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side_stream), torch.inference_mode():
                for _ in range(max(iterations, 1)):
                    self._run(static_input)
            torch.cuda.current_stream(self.device).wait_stream(side_stream)
            graph = torch.cuda.CUDAGraph()
            with torch.inference_mode(), torch.cuda.graph(graph):
                static_output = self._run(static_input)
        except RuntimeError as exc:
            LOGGER.warning(
                "CUDA graph capture failed, running eagerly instead: %s", str(exc).splitlines()[0]
            )
            self.cuda_graphs = False
            self._graphs.clear()
            return
        self._graphs[(batch_size, patch_size)] = _CapturedGraph(graph, static_input, static_output)

    def describe(self) -> str:
        extras = " + CUDA graphs" if self._graphs else ""
        return f"{self.name} eager on {self.device} ({self.precision}{extras})"

    def graph_shapes(self) -> tuple[tuple[int, int], ...]:
        """``(batch, patch)`` of the CUDA graphs captured and held now."""
        return tuple(sorted(self._graphs))

    def release(self, keep: Collection[tuple[int, int]] = ()) -> None:
        """Drop the CUDA graphs of shapes not in ``keep``: their private-pool blocks go back to
        the caching allocator (and to the driver at the caller's ``empty_cache``)."""
        kept = set(keep)
        for shape in [s for s in self._graphs if s not in kept]:
            self._graphs.pop(shape).graph.reset()

    def close(self) -> None:
        self.release()
