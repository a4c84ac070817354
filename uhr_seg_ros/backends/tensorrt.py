"""TensorRT backend: torch-tensorrt (dynamo IR) builds one engine per patch size, cached on disk.

The engine is a plain serialized TensorRT engine (the same bytes ``trtexec --loadEngine`` and
Isaac ROS read), built by
``torch_tensorrt.dynamo.convert_exported_program_to_serialized_trt_engine`` from the
``torch.export`` program of :mod:`.export`, with a dynamic batch profile
``min=1, opt=max=max_batch`` and a tactic workspace bounded from the memory cap
(:func:`workspace_bytes`). It runs through TensorRT's own Python runtime on a stream of its own
(ordered after torch's current stream by events, not by the legacy default stream), reading and
writing static torch buffers: no host copies, no per-call allocations.

Memory within the cap (docs/tiling.md): only the engines of the patch sizes the tile plan uses
are deserialised (the others stay as host bytes until asked for, :meth:`TensorRTBackend.release`
drops them again); each context is created with ``USER_MANAGED`` device memory, sized by
``update_device_memory_size_for_shapes`` for the batch actually run rather than the profile
maximum, and allocated from torch's caching allocator, so it is held to the allocator's cap and
counted by its statistics. Build failures carry torch-tensorrt's own error (its logger is
forwarded into ours; releases before 2.12 raise ``UnboundLocalError`` instead of the cause).

Engines are cached in ``engine_cache_dir`` under a key over everything that makes an engine
unusable elsewhere (:class:`EngineSpec`), so the second start deserialises instead of building.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from uhr_seg_ros.defaults import MEMORY_CAP_MB
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
#: bounds of the tactic workspace given to the builder (TensorRT's default is the whole device)
MIN_WORKSPACE_BYTES = 32 * 2**20
MAX_WORKSPACE_BYTES = 2**30


def workspace_bytes(cap_bytes: int) -> int:
    """The builder's tactic workspace for a memory cap: the largest power of two not above a
    quarter of the cap, within 32 MB .. 1 GB. Tactics needing more scratch are not chosen, so
    an engine's context memory stays a fraction of the cap; a power of two keeps nearby caps on
    one cached engine."""
    quarter = max(1, int(cap_bytes) // 4)
    power = 1 << (quarter.bit_length() - 1)
    return max(MIN_WORKSPACE_BYTES, min(MAX_WORKSPACE_BYTES, power))


#: the workspace of engines built for the default cap (``uhr-seg export``, docker prebuild)
DEFAULT_WORKSPACE_BYTES = workspace_bytes(int(MEMORY_CAP_MB * 2**20))


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
    #: builder tactic workspace limit in bytes (:func:`workspace_bytes` of the cap)
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES

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


class _ForwardedLog(logging.Handler):
    """Re-emits torch_tensorrt's WARNING+ records on our logger and keeps them, so that a build
    failure can name the cause torch_tensorrt logged instead of the exception it raised."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        LOGGER.log(
            record.levelno,
            "torch_tensorrt: %s",
            record.getMessage().splitlines()[0] if record.getMessage() else "",
        )


@contextlib.contextmanager
def forwarded_torch_tensorrt_log() -> Iterator[_ForwardedLog]:
    """Forward the ``torch_tensorrt`` logger into ours while the block runs."""
    source = logging.getLogger("torch_tensorrt")
    handler = _ForwardedLog()
    source.addHandler(handler)
    try:
        yield handler
    finally:
        source.removeHandler(handler)


def build_failure_reason(exc: BaseException, records: Sequence[logging.LogRecord]) -> str:
    """One line naming why an engine build failed.

    torch-tensorrt < 2.12 catches the converter's exception, logs it and then fails with
    ``UnboundLocalError`` on the result it never got: the logged error (and the exception in
    its ``exc_info``) is the real cause, the raised one is not.
    """
    errors = [r for r in records if r.levelno >= logging.ERROR]
    if not errors:
        return error_summary(exc)
    last = errors[-1]
    cause = last.exc_info[1] if last.exc_info and last.exc_info[1] is not None else None
    logged = (
        error_summary(cause)
        if cause is not None
        else (last.getMessage().strip().splitlines() or ["(empty message)"])[0]
    )
    if isinstance(exc, UnboundLocalError):
        return f"{logged} (torch-tensorrt then raised {type(exc).__name__})"
    return f"{error_summary(exc)}; torch_tensorrt logged: {logged}"


def build_engine(model: SegmentationModel, spec: EngineSpec, device: torch.device) -> bytes:
    """Export ``model`` and let torch-tensorrt build a serialized engine for ``spec``.

    Works on a copy on ``device``, freed (with the exported program, and torch's cached blocks)
    before returning so that inference starts with only the engine on the device. A failure
    raises :class:`BackendUnavailable` naming the real cause (see :func:`build_failure_reason`).
    """
    torch_tensorrt, _ = import_tensorrt()
    settings = precision_settings(spec.torch_tensorrt_version, spec.precision)
    graph: nn.Module = copy.deepcopy(model).eval().to(device)
    program: torch.export.ExportedProgram | None = None
    try:
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
        with forwarded_torch_tensorrt_log() as log:
            try:
                serialized = (
                    torch_tensorrt.dynamo.convert_exported_program_to_serialized_trt_engine(
                        program,
                        inputs=[engine_input],
                        device=device,
                        workspace_size=spec.workspace_bytes,
                        **settings.compile_kwargs,
                    )
                )
            except Exception as exc:
                LOGGER.debug("TensorRT engine build failed", exc_info=True)
                raise BackendUnavailable(
                    f"engine build failed: {build_failure_reason(exc, log.records)}"
                ) from exc
        return bytes(serialized)
    finally:
        del graph, program  # the GPU copy of the model goes before inference starts
        gc.collect()
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()


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
    memory_cap_mb: float = MEMORY_CAP_MB,
) -> tuple[EngineSpec, ...]:
    """The one definition of which engines a model needs on this device and their cache keys:
    one per patch side, batch profile ``1..max_batch`` (opt = max), keyed by weights, GPU,
    TensorRT and torch-tensorrt versions, precision and the tactic workspace (from the memory
    cap, :func:`workspace_bytes`). ``TensorRTBackend`` (so the Segmenter
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
            workspace_bytes=workspace_bytes(int(memory_cap_mb * 2**20)),
        )
        for patch in sorted(set(patch_sizes))
    )


class _EngineRunner:
    """One deserialised engine, its execution context, the context's device memory and the
    static I/O buffers.

    ``allocate(nbytes)`` returns a uint8 tensor on the device (torch's caching allocator in the
    backend), so that the context's activation memory is held to the allocator's cap. The
    context memory is sized for the largest batch run since the last :meth:`fit_batch`, not for
    the profile maximum.
    """

    def __init__(
        self, tensorrt: Any, serialized: bytes, source: str, allocate: Callable[[int], torch.Tensor]
    ) -> None:
        self._tensorrt = tensorrt
        self._allocate = allocate
        runtime = tensorrt.Runtime(tensorrt.Logger(tensorrt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(serialized)
        if self.engine is None:
            raise BackendError(
                f"TensorRT could not deserialise {source} (built by another "
                "TensorRT version or GPU?); delete it to rebuild"
            )
        strategy = getattr(
            getattr(tensorrt, "ExecutionContextAllocationStrategy", None), "USER_MANAGED", None
        )
        #: True: the context memory is ours (a torch tensor); False (TensorRT < 10): TensorRT
        #: allocated it for the profile maximum, outside torch
        self.user_managed = strategy is not None
        self.context = (
            self.engine.create_execution_context(strategy)
            if self.user_managed
            else self.engine.create_execution_context()
        )
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
        self.context_memory: torch.Tensor | None = None
        self._memory_batch = 0

    def allocate_io(
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

    def _context_memory_size(self) -> int:
        """Bytes the context needs for the input shape set now (TensorRT >= 10.1 computes it
        per shape; older releases only know the profile maximum)."""
        if hasattr(self.context, "update_device_memory_size_for_shapes"):
            return int(self.context.update_device_memory_size_for_shapes())
        if hasattr(self.engine, "device_memory_size_v2"):
            return int(self.engine.device_memory_size_v2)
        return int(self.engine.device_memory_size)

    def fit_batch(self, batch_size: int, shrink: bool = False) -> None:
        """Set the input shape for ``batch_size`` and make the context memory fit it: grown when
        too small, and with ``shrink`` also reallocated when larger than needed."""
        assert self.static_input is not None, "allocate_io() first"
        self.context.set_input_shape(self.input_name, (batch_size, *self.static_input.shape[1:]))
        if not self.user_managed:
            return
        if batch_size <= self._memory_batch and not shrink:
            return
        size = self._context_memory_size()
        if self.context_memory is not None and self.context_memory.numel() >= size and not shrink:
            self._memory_batch = max(self._memory_batch, batch_size)
            return
        self.context_memory = None  # free before allocating the new size
        self.context_memory = self._allocate(max(size, 1))
        if hasattr(self.context, "set_device_memory"):
            self.context.set_device_memory(self.context_memory.data_ptr(), size)
        else:
            self.context.device_memory = self.context_memory.data_ptr()
        self._memory_batch = batch_size

    def run(self, batch: torch.Tensor, stream_handle: int) -> torch.Tensor:
        """Enqueue the engine on ``stream_handle``; returns a view of the static output."""
        assert self.static_input is not None and self.static_output is not None
        batch_size = batch.shape[0]
        self.static_input[:batch_size].copy_(batch)
        self.fit_batch(batch_size)
        if not self.context.execute_async_v3(stream_handle):
            raise BackendError(f"TensorRT failed to enqueue a batch of {batch_size}")
        return self.static_output[:batch_size]

    def close(self) -> None:
        # Context before engine (TensorRT requires that order), then the memory it used.
        self.context = None
        self.engine = None
        self.context_memory = self.static_input = self.static_output = None


class TensorRTBackend(Backend):
    """SGHRQ as TensorRT engines, one per patch size, batch dynamic in ``1..max_batch``.

    Engines are built (or read from the cache) for every patch size at start-up and kept as host
    bytes; an engine is deserialised only when a batch of its patch size arrives (or at
    :meth:`warmup`) and dropped again by :meth:`release`. Engine weights are allocated by
    TensorRT, which ``torch.cuda`` cannot see: :meth:`external_bytes` returns them for the planner
    (the serialized size, or on a discrete GPU the larger of that and the measured drop of free
    memory; on Jetson's shared memory that drop also moves with host allocations, so it is not
    used there).
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
        memory_cap_mb: float = MEMORY_CAP_MB,
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
        self._tensorrt = tensorrt
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
            memory_cap_mb=memory_cap_mb,
        )
        self._serialized: dict[int, tuple[bytes, str]] = {}
        for spec in specs:
            patch_size = spec.patch_size
            try:
                blob = load_or_build_engine(model, spec, cache_dir, device)
            except BackendError:
                raise
            except Exception as exc:  # unsupported op, builder out of memory, ...: skip the step
                LOGGER.debug("TensorRT engine build failed", exc_info=True)
                raise BackendUnavailable(f"engine build failed: {error_summary(exc)}") from exc
            self._serialized[patch_size] = (blob, str(cache_dir / spec.file_name()))
        self.patch_sizes = tuple(self._serialized)
        self._unified = bool(
            getattr(torch.cuda.get_device_properties(device), "is_integrated", False)
        )
        self._runners: dict[int, _EngineRunner] = {}
        self._engine_bytes: dict[int, int] = {}
        # TensorRT's own stream: enqueues never touch the legacy default stream, and are
        # ordered after torch's work (and torch's after them) by stream waits.
        self._stream = torch.cuda.Stream(device)

    def _allocate(self, nbytes: int) -> torch.Tensor:
        return torch.empty(nbytes, dtype=torch.uint8, device=self.device)

    def _runner(self, patch_size: int) -> _EngineRunner:
        """The resident engine of ``patch_size``, deserialised now if it is not."""
        runner = self._runners.get(patch_size)
        if runner is not None:
            return runner
        blob, source = self._serialized[patch_size]
        torch.cuda.synchronize(self.device)
        free_before = torch.cuda.mem_get_info(self.device)[0]
        with torch.cuda.device(self.device):
            runner = _EngineRunner(self._tensorrt, blob, source, self._allocate)
        torch.cuda.synchronize(self.device)
        dropped = max(0, free_before - torch.cuda.mem_get_info(self.device)[0])
        self._engine_bytes[patch_size] = engine_device_bytes(len(blob), dropped, self._unified)
        runner.allocate_io(self.max_batch, patch_size, self.num_classes, self.device)
        self._runners[patch_size] = runner
        return runner

    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        self.check_batch(batch)
        runner = self._runner(batch.shape[-1])
        current = torch.cuda.current_stream(self.device)
        self._stream.wait_stream(current)  # the batch was written on torch's stream
        with torch.cuda.stream(self._stream):
            output = runner.run(batch, self._stream.cuda_stream)
        current.wait_stream(self._stream)  # the logits are read on torch's stream
        return output

    def resident_patches(self) -> tuple[int, ...]:
        """Patch sizes whose engine is deserialised on the device now."""
        return tuple(sorted(self._runners))

    def release(self, keep: Collection[tuple[int, int]] = ()) -> None:
        """Drop the engines of patch sizes no shape in ``keep`` uses; shrink the context memory
        of the kept ones to the largest kept batch."""
        kept_batch: dict[int, int] = {}
        for batch, patch in keep:
            kept_batch[patch] = max(batch, kept_batch.get(patch, 0))
        torch.cuda.synchronize(self.device)
        for patch in [p for p in self._runners if p not in kept_batch]:
            self._runners.pop(patch).close()
            self._engine_bytes.pop(patch, None)
        for patch, runner in self._runners.items():
            runner.fit_batch(min(kept_batch[patch], self.max_batch), shrink=True)

    def external_bytes(self) -> int:
        return sum(self._engine_bytes.values())

    def describe(self) -> str:
        patches = ",".join(str(p) for p in self.patch_sizes or ())
        return (
            f"tensorrt {self.tensorrt_version} on {torch.cuda.get_device_name(self.device)} "
            f"({self.precision}, patches {patches}, batch <= {self.max_batch})"
        )

    def close(self) -> None:
        for runner in self._runners.values():
            runner.close()
        self._runners = {}
        self._engine_bytes = {}


def engine_device_bytes(serialized_bytes: int, free_drop: int, unified: bool) -> int:
    """Device bytes to count for one deserialised engine (weights, kernels) outside torch.

    The serialized size is a floor (the weights are in it). On a discrete GPU the measured drop
    of free memory around deserialisation may show more (kernel images, TensorRT's own
    buffers) and is taken when larger; on shared memory (Jetson) that drop also moves with
    every host allocation of the process, so only the serialized size is used.
    """
    if unified:
        return int(serialized_bytes)
    return max(int(serialized_bytes), int(free_drop))
