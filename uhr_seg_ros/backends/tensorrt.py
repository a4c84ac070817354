"""TensorRT backend: torch-tensorrt (dynamo IR) builds one engine per patch size, cached on disk.

The engine is a plain serialized TensorRT engine (the same bytes ``trtexec --loadEngine`` and
Isaac ROS read), built by
``torch_tensorrt.dynamo.convert_exported_program_to_serialized_trt_engine``
from the ``torch.export`` program of :mod:`.export`, with a dynamic batch profile
``min=1, opt=max=max_batch``. It runs through TensorRT's own Python runtime on torch's current
CUDA stream, reading and writing static torch buffers: no host copies, no per-call allocations.

Engines are cached in ``engine_cache_dir`` under a key over everything that makes an engine
unusable elsewhere (:class:`EngineSpec`), so the second start deserialises instead of building.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from uhr_seg_ros.model.contract import SegmentationModel

from .base import Backend, BackendError, BackendUnavailable, error_summary, resolve_device
from .export import check_export_shape, export_program

LOGGER = logging.getLogger(__name__)

PRECISIONS = ("fp16", "fp32")
#: oldest torch-tensorrt with ``convert_exported_program_to_serialized_trt_engine``
MIN_TORCH_TENSORRT = (2, 5)
#: from here ``use_explicit_typing`` defaults to True and ``enabled_precisions`` may only hold fp32
EXPLICIT_TYPING_DEFAULT = (2, 10)
#: from here ``enabled_precisions`` and ``use_explicit_typing`` are gone from the compile API
WEAK_TYPING_REMOVED = (2, 13)


def default_engine_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/uhr_seg_ros/engines`` (``~/.cache/...`` when unset)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "uhr_seg_ros" / "engines"


def parse_version(version: str) -> tuple[int, int]:
    """``(major, minor)`` of a version string such as ``"2.5.0"`` or ``"2.8.0a0+5b3d0c4"``."""
    match = re.match(r"\s*(\d+)\.(\d+)", version)
    if match is None:
        raise ValueError(f"cannot read a major.minor version from {version!r}")
    return int(match[1]), int(match[2])


@dataclass(frozen=True)
class PrecisionSettings:
    """How to ask a given torch-tensorrt release for a precision."""

    #: extra keyword arguments for the engine conversion call
    compile_kwargs: dict[str, Any] = field(default_factory=dict)
    #: True: cast the exported graph to fp16 (fp32 input is cast inside, logits come out fp16)
    #: because the release builds strongly typed networks that follow the graph's dtypes
    half_graph: bool = False


def precision_settings(torch_tensorrt_version: str, precision: str) -> PrecisionSettings:
    """Pick the precision keyword arguments for a torch-tensorrt release (pure function).

    * 2.5 .. 2.9 (JetPack 6: TensorRT 10.3 with torch-tensorrt 2.5+): weak typing;
      ``enabled_precisions={fp32, fp16}`` lets TensorRT choose fp16 kernels per layer.
    * 2.10 .. 2.12: ``use_explicit_typing`` defaults to True and ``enabled_precisions`` must then
      be fp32 only; fp16 comes from an fp16 graph.
    * 2.13 and later: both arguments are gone; networks are always strongly typed, fp16 again
      comes from an fp16 graph.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    version = parse_version(torch_tensorrt_version)
    if version < MIN_TORCH_TENSORRT:
        raise ValueError(
            f"torch-tensorrt {torch_tensorrt_version} is too old: the engine "
            f"export needs >= {'.'.join(map(str, MIN_TORCH_TENSORRT))}"
        )
    half = precision == "fp16"
    if version < EXPLICIT_TYPING_DEFAULT:
        precisions = {torch.float32, torch.float16} if half else {torch.float32}
        return PrecisionSettings({"enabled_precisions": precisions})
    if version < WEAK_TYPING_REMOVED:
        return PrecisionSettings({"use_explicit_typing": True}, half_graph=half)
    return PrecisionSettings({}, half_graph=half)


@dataclass(frozen=True)
class EngineSpec:
    """Everything an engine depends on; equal specs may share one cached engine file."""

    #: sha256 identifying the checkpoint's weights (default :func:`weights_sha256`)
    checkpoint_sha256: str
    #: ``torch.cuda.get_device_name``: engines are tuned for, and often only run on, one GPU
    gpu_name: str
    tensorrt_version: str
    torch_tensorrt_version: str
    #: square patch side in pixels (input ``(B, 3, patch, patch)``)
    patch_size: int
    #: batch range of the optimisation profile
    min_batch: int
    opt_batch: int
    max_batch: int
    #: ``"fp16"`` or ``"fp32"``
    precision: str

    def cache_key(self) -> str:
        """sha256 hex digest over every field (canonical JSON, so field order never matters)."""
        canonical = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def file_name(self) -> str:
        """Readable and unique: ``sghrq_p1024_b4_fp16_<key16>.engine``."""
        return (
            f"sghrq_p{self.patch_size}_b{self.max_batch}_{self.precision}_"
            f"{self.cache_key()[:16]}.engine"
        )


def weights_sha256(model: SegmentationModel) -> str:
    """sha256 over the weights the inference graph uses (names, shapes, dtypes, values).

    The default engine cache key: a checkpoint re-saved with identical weights reuses its
    engine, and training-only heads (``inference_state_dict`` leaves them out) never matter.
    """
    state = model.inference_state_dict()
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        flat_bytes = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
        digest.update(flat_bytes.numpy().tobytes())
    return digest.hexdigest()


def import_tensorrt() -> tuple[Any, Any]:
    """``(torch_tensorrt, tensorrt)``, or :class:`BackendUnavailable` saying what is missing."""
    try:
        import tensorrt
        import torch_tensorrt
    except ImportError as exc:
        raise BackendUnavailable(
            f"torch-tensorrt is not installed ({exc}); install the wheel matching this torch "
            "(pip install torch-tensorrt; on Jetson NVIDIA's JetPack wheel)"
        ) from exc
    except OSError as exc:  # wheel present but its CUDA/TensorRT libraries are not
        raise BackendUnavailable(f"torch-tensorrt failed to load its libraries: {exc}") from exc
    return torch_tensorrt, tensorrt


class _HalfGraph(nn.Module):
    """fp32 input cast to fp16 inside the graph, fp16 network, fp16 logits: how strongly typed
    TensorRT builds are asked for fp16."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.half()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image.half())


def build_engine(model: SegmentationModel, spec: EngineSpec, device: torch.device) -> bytes:
    """Export ``model`` and let torch-tensorrt build a serialized engine for ``spec``.

    Works on a copy on ``device`` (freed afterwards) so the caller's model is left untouched.
    """
    torch_tensorrt, _ = import_tensorrt()
    settings = precision_settings(spec.torch_tensorrt_version, spec.precision)
    graph: nn.Module = copy.deepcopy(model).eval().to(device)
    if settings.half_graph:
        graph = _HalfGraph(graph)
    program = export_program(graph, spec.patch_size, spec.max_batch, device=device)

    def shape(batch: int) -> tuple[int, int, int, int]:
        return (batch, 3, spec.patch_size, spec.patch_size)

    engine_input = torch_tensorrt.Input(
        min_shape=shape(spec.min_batch),
        opt_shape=shape(spec.opt_batch),
        max_shape=shape(spec.max_batch),
        dtype=torch.float32,
    )
    serialized = torch_tensorrt.dynamo.convert_exported_program_to_serialized_trt_engine(
        program, inputs=[engine_input], device=device, **settings.compile_kwargs
    )
    del graph, program
    torch.cuda.empty_cache()
    return bytes(serialized)


def load_or_build_engine(
    model: SegmentationModel, spec: EngineSpec, cache_dir: Path, device: torch.device
) -> bytes:
    """The cached engine for ``spec``, building and caching it on a miss.

    The file is written atomically (temporary file + rename) with a JSON sidecar holding the
    spec, so a crash mid-write never leaves a truncated engine under the real name.
    """
    path = Path(cache_dir) / spec.file_name()
    if path.is_file():
        LOGGER.info("loading cached TensorRT engine %s", path)
        return path.read_bytes()
    LOGGER.info(
        "building TensorRT engine for patch %d, batch 1..%d, %s (minutes on Jetson; cached as %s)",
        spec.patch_size,
        spec.max_batch,
        spec.precision,
        path,
    )
    serialized = build_engine(model, spec, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".partial-{os.getpid()}")
    partial.write_bytes(serialized)
    os.replace(partial, path)
    path.with_suffix(".json").write_text(json.dumps(asdict(spec), indent=2, sort_keys=True))
    return serialized


def engine_specs(
    model: SegmentationModel,
    *,
    patch_sizes: Sequence[int],
    max_batch: int,
    precision: str,
    device: torch.device,
    checkpoint_hash: str | None = None,
) -> tuple[EngineSpec, ...]:
    """The one definition of which engines a model needs on this device and their cache keys:
    one per patch side, batch profile ``1..max_batch`` (opt = max), keyed by weights, GPU,
    TensorRT and torch-tensorrt versions and precision. ``TensorRTBackend`` (so the Segmenter
    and the node), ``uhr-seg export`` and docker/prebuild_engines.py (through export) all ask
    this function, so what one builds is what the other finds in the cache."""
    torch_tensorrt, tensorrt = import_tensorrt()
    weights = checkpoint_hash or weights_sha256(model)
    gpu = torch.cuda.get_device_name(device)
    return tuple(
        EngineSpec(
            checkpoint_sha256=weights,
            gpu_name=gpu,
            tensorrt_version=tensorrt.__version__,
            torch_tensorrt_version=torch_tensorrt.__version__,
            patch_size=patch,
            min_batch=1,
            opt_batch=max_batch,
            max_batch=max_batch,
            precision=precision,
        )
        for patch in sorted(set(patch_sizes))
    )


class _EngineRunner:
    """One deserialised engine, its execution context and static I/O buffers."""

    def __init__(self, tensorrt: Any, serialized: bytes, source: str) -> None:
        runtime = tensorrt.Runtime(tensorrt.Logger(tensorrt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(serialized)
        if self.engine is None:
            raise BackendError(
                f"TensorRT could not deserialise {source} (built by another "
                "TensorRT version or GPU?); delete it to rebuild"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == tensorrt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or len(outputs) != 1:
            raise BackendError(
                f"{source} has inputs {inputs} and outputs {outputs}; expected one "
                "image input and one logits output"
            )
        self.input_name, self.output_name = inputs[0], outputs[0]
        dtypes = {tensorrt.DataType.FLOAT: torch.float32, tensorrt.DataType.HALF: torch.float16}
        self.input_dtype = dtypes[self.engine.get_tensor_dtype(self.input_name)]
        self.output_dtype = dtypes[self.engine.get_tensor_dtype(self.output_name)]
        self.static_input: torch.Tensor | None = None
        self.static_output: torch.Tensor | None = None

    def allocate(
        self, max_batch: int, patch_size: int, num_classes: int, device: torch.device
    ) -> None:
        """Allocate the I/O buffers once and bind their addresses to the context."""
        self.static_input = torch.empty(
            max_batch, 3, patch_size, patch_size, device=device, dtype=self.input_dtype
        )
        self.static_output = torch.empty(
            max_batch, num_classes, patch_size, patch_size, device=device, dtype=self.output_dtype
        )
        self.context.set_tensor_address(self.input_name, self.static_input.data_ptr())
        self.context.set_tensor_address(self.output_name, self.static_output.data_ptr())

    def run(self, batch: torch.Tensor) -> torch.Tensor:
        """Enqueue the engine on torch's current stream; returns a view of the static output."""
        if self.static_input is None or self.static_output is None:
            raise BackendError("TensorRT engine used before allocate() or after close()")
        batch_size = batch.shape[0]
        self.static_input[:batch_size].copy_(batch)
        self.context.set_input_shape(self.input_name, (batch_size, *self.static_input.shape[1:]))
        stream = torch.cuda.current_stream(self.static_input.device).cuda_stream
        if not self.context.execute_async_v3(stream):
            raise BackendError(f"TensorRT failed to enqueue a batch of {batch_size}")
        return self.static_output[:batch_size]


class TensorRTBackend(Backend):
    """SGHRQ as TensorRT engines, one per patch size, batch dynamic in ``1..max_batch``.

    Engine memory (weights, activations of the largest profile) is allocated by TensorRT, so
    ``torch.cuda`` cannot see it: :meth:`external_bytes` returns the drop in free device memory
    measured around deserialisation and context creation, for the planner's memory model.
    """

    name = "tensorrt"

    def __init__(
        self,
        model: SegmentationModel,
        device: str | torch.device = "cuda",
        precision: str = "fp16",
        max_batch: int = 4,
        patch_sizes: Sequence[int] = (1024,),
        engine_cache_dir: str | Path | None = None,
        checkpoint_hash: str | None = None,
    ) -> None:
        _, tensorrt = import_tensorrt()
        if not torch.cuda.is_available():
            raise BackendUnavailable("no CUDA device (torch.cuda.is_available() is False)")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if not patch_sizes:
            raise ValueError("patch_sizes is empty: TensorRT engines are built per patch size")
        device = resolve_device(device)
        for patch_size in patch_sizes:
            check_export_shape(patch_size, max_batch)
        super().__init__(device, model.num_classes, torch.float32, max_batch)
        # Networks outside the registered families (test stubs, wrappers) have no context.
        self.window_context = getattr(model, "context", None)
        self.precision = precision
        self.tensorrt_version = tensorrt.__version__
        cache_dir = Path(engine_cache_dir) if engine_cache_dir else default_engine_cache_dir()
        specs = engine_specs(
            model,
            patch_sizes=patch_sizes,
            max_batch=max_batch,
            precision=precision,
            device=device,
            checkpoint_hash=checkpoint_hash,
        )
        serialized: dict[int, tuple[bytes, str]] = {}
        for spec in specs:
            patch_size = spec.patch_size
            try:
                blob = load_or_build_engine(model, spec, cache_dir, device)
            except BackendError:
                raise
            except Exception as exc:  # unsupported op, builder out of memory, ...: skip the step
                LOGGER.debug("TensorRT engine build failed", exc_info=True)
                raise BackendUnavailable(f"engine build failed: {error_summary(exc)}") from exc
            serialized[patch_size] = (blob, str(cache_dir / spec.file_name()))

        torch.cuda.synchronize(device)
        free_before = torch.cuda.mem_get_info(device)[0]
        with torch.cuda.device(device):
            self._runners = {
                p: _EngineRunner(tensorrt, blob, source) for p, (blob, source) in serialized.items()
            }
        torch.cuda.synchronize(device)
        self._external_bytes = max(0, free_before - torch.cuda.mem_get_info(device)[0])
        for patch_size, runner in self._runners.items():
            runner.allocate(max_batch, patch_size, self.num_classes, device)
        self.patch_sizes = tuple(self._runners)

    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        self.check_batch(batch)
        return self._runners[batch.shape[-1]].run(batch)

    def external_bytes(self) -> int:
        return self._external_bytes

    def describe(self) -> str:
        patches = ",".join(str(p) for p in self.patch_sizes or ())
        return (
            f"tensorrt {self.tensorrt_version} on {torch.cuda.get_device_name(self.device)} "
            f"({self.precision}, patches {patches}, batch <= {self.max_batch})"
        )

    def close(self) -> None:
        # Contexts before engines: TensorRT requires that destruction order.
        for runner in self._runners.values():
            runner.context = None
            runner.engine = None
            runner.static_input = runner.static_output = None
        self._runners = {}
        self.patch_sizes = ()
        self._external_bytes = 0
