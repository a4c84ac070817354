"""The memory cap on the GPU, tested with fakes of the allocator, the free-memory (NVML-like)
view, the engine builder and TensorRT's runtime: enforcement, accounting, calibration the way
inference runs, release on a cap change, fallback when a cap cannot be met, TensorRT context
memory and build-failure reporting. None of this needs a GPU."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fakes import MB, FakeDeviceMemory, captured_log, cpu_allocate, fake_tensorrt
from torch import nn

from uhr_seg_ros.backends import Backend, BackendUnavailable
from uhr_seg_ros.backends import tensorrt as trt_backend
from uhr_seg_ros.backends.device_memory import (
    allocator_fraction,
    enforce_cap,
    held_device_bytes,
)
from uhr_seg_ros.backends.tensorrt import (
    EngineSpec,
    _EngineRunner,
    build_engine,
    build_failure_reason,
    engine_device_bytes,
    workspace_bytes,
)
from uhr_seg_ros.model.contract import SegmentationModel
from uhr_seg_ros.pipeline import Segmenter, SegmenterSettings
from uhr_seg_ros.tiling import MemoryModel, PlanError
from uhr_seg_ros.tiling.memory_model import cuda_point_bytes

# -- enforcement and accounting ------------------------------------------------------------------


def test_allocator_is_held_to_cap_over_total_after_returning_cached_blocks():
    memory = FakeDeviceMemory(total=8000 * MB)
    memory.reserve(100 * MB)
    memory.free(100 * MB)
    assert enforce_cap(memory, 1000 * MB) == pytest.approx(0.125)
    assert memory.fractions == [pytest.approx(0.125)] and memory.cached == 0


def test_fraction_is_clamped_and_refuses_nonsense():
    assert allocator_fraction(20_000 * MB, 8000 * MB) == 1.0
    assert allocator_fraction(1, 8000 * MB) > 0
    with pytest.raises(ValueError):
        allocator_fraction(0, 8000 * MB)


def test_held_bytes_count_reserved_graph_pools_not_just_allocated():
    memory = FakeDeviceMemory()
    memory.reserve(50 * MB)  # weights
    memory.pooled = 200 * MB  # a live CUDA graph's private pool: reserved, not allocated
    memory.cached = 30 * MB  # cached free blocks: returned to the driver before counting
    assert memory.allocated_bytes() == 50 * MB
    assert held_device_bytes(memory, external_bytes=70 * MB) == (50 + 200 + 70) * MB
    assert memory.cached == 0


# -- calibration the way inference runs ---------------------------------------------------------


class FakeGraphBackend(Backend):
    """A backend on the CPU that books device memory on a fake allocator: a graph pool per
    warmed-up shape, activations per forward when no graph is held, and TensorRT-like
    external bytes."""

    name = "fakegpu"

    def __init__(
        self,
        memory: FakeDeviceMemory,
        pool_per_pixel: float = 10.0,
        external_bytes: int = 0,
        num_classes: int = 2,
    ) -> None:
        super().__init__(torch.device("cpu"), num_classes, torch.float32, max_batch=4)
        self.memory = memory
        self.pool_per_pixel = pool_per_pixel
        self.engine_bytes = external_bytes
        self.graphs: dict[tuple[int, int], int] = {}
        self.released: list[tuple] = []
        self.resident_external = 0

    def warmup(self, batch_size, patch_size, iterations=2):
        if (batch_size, patch_size) not in self.graphs:
            pool = int(self.pool_per_pixel * batch_size * patch_size**2)
            self.memory.reserve(pool)
            self.graphs[(batch_size, patch_size)] = pool
        self.resident_external = self.engine_bytes
        self.memory.outside = self.engine_bytes

    def infer(self, batch):
        self.check_batch(batch)
        return batch[:, : self.num_classes]

    def release(self, keep=()):
        self.released.append(tuple(keep))
        for shape in [s for s in self.graphs if s not in set(keep)]:
            self.memory.free(self.graphs.pop(shape))
        if not keep:
            self.resident_external = 0
            self.memory.outside = 0

    def external_bytes(self):
        return self.resident_external


def test_calibration_point_counts_the_captured_graph_pool_and_releases_it():
    memory = FakeDeviceMemory()
    backend = FakeGraphBackend(memory, pool_per_pixel=10.0)
    cost = cuda_point_bytes(backend, memory, 2, 64)
    assert cost == 10 * 2 * 64 * 64
    assert backend.graphs == {} and memory.reserved_bytes() == 0  # nothing left resident


def test_calibration_point_counts_engine_bytes_outside_torch_on_discrete_and_unified():
    for unified in (False, True):
        memory = FakeDeviceMemory(unified=unified)
        memory.host_noise = 500 * MB  # host allocations move free memory on shared memory
        backend = FakeGraphBackend(memory, pool_per_pixel=0.0, external_bytes=300 * MB)
        cost = cuda_point_bytes(backend, memory, 1, 64)
        # the engine is counted once; Jetson's host noise is not mistaken for device use
        assert cost == 300 * MB, unified


def test_engine_bytes_ignore_free_memory_drop_on_shared_memory():
    assert engine_device_bytes(100, 900, unified=True) == 100
    assert engine_device_bytes(100, 900, unified=False) == 900
    assert engine_device_bytes(100, 10, unified=False) == 100


# -- the Segmenter under a cap ------------------------------------------------------------------


class _StubModel(SegmentationModel):
    """Two classes from a 1x1 convolution: enough for the Segmenter's bookkeeping."""

    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(num_classes=2, class_names=(), to_dict=lambda: {})
        self.meta = {}
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _segmenter(
    memory: FakeDeviceMemory, backend: Backend, cap_mb: float = 1000, bytes_per_pixel: float = 10.0
) -> Segmenter:
    model = _StubModel()
    memory_model = MemoryModel(
        "stub", backend.name, "cpu", "fp32", fixed_bytes=0, bytes_per_pixel=bytes_per_pixel
    )
    segmenter = Segmenter(
        model,
        backend,
        memory_model,
        SegmenterSettings(memory_cap_mb=cap_mb, patch_size=64, overlap=16),
    )
    segmenter.device_memory = memory
    return segmenter


def test_only_the_plan_in_use_stays_resident_and_a_cap_change_releases_it():
    memory = FakeDeviceMemory()
    backend = FakeGraphBackend(memory)
    segmenter = _segmenter(memory, backend)
    plan = segmenter.prepare(200, 150)
    assert set(backend.graphs) == {(plan.batch, plan.patch)}
    segmenter.prepare(200, 150)  # same plan: nothing released or recaptured per frame
    assert backend.released.count(((plan.batch, plan.patch),)) == 1
    held_with_graph = memory.reserved_bytes()
    assert held_with_graph > 0
    calls = memory.empty_cache_calls
    segmenter.set_memory_cap(500)
    assert () in backend.released  # everything was released before re-planning
    assert memory.empty_cache_calls > calls
    assert memory.fractions[-1] == pytest.approx(500 * MB / memory.total)
    assert set(backend.graphs) == {(segmenter.plan_for(200, 150).batch, 64)}


def test_planner_sees_reserved_memory_not_just_allocated():
    memory = FakeDeviceMemory()
    segmenter = _segmenter(memory, FakeGraphBackend(memory), cap_mb=1000)
    memory.pooled = 900 * MB  # reserved by someone else in this process, allocated by nobody
    with pytest.raises(PlanError, match="900 MB weights/engine already held"):
        segmenter.plan_for(200, 150)


def test_a_failed_cap_change_restores_the_old_cap_and_fraction():
    memory = FakeDeviceMemory()
    backend = FakeGraphBackend(memory)
    segmenter = _segmenter(memory, backend, cap_mb=1000, bytes_per_pixel=20_000.0)
    segmenter.prepare(200, 150)
    with pytest.raises(PlanError):
        segmenter.set_memory_cap(50)
    assert segmenter.settings.memory_cap_mb == 1000
    assert memory.fractions == [] or memory.fractions[-1] == pytest.approx(1000 * MB / memory.total)


def test_close_releases_graphs_engines_and_cached_blocks():
    memory = FakeDeviceMemory()
    backend = FakeGraphBackend(memory, external_bytes=100 * MB)
    segmenter = _segmenter(memory, backend)
    segmenter.segment(np.zeros((200, 150, 3), np.uint8))
    assert backend.graphs and backend.external_bytes()
    segmenter.close()
    assert backend.graphs == {} and memory.reserved_bytes() == 0
    assert backend.external_bytes() == 0


def test_a_backend_that_cannot_meet_the_cap_falls_to_the_next_with_one_line(monkeypatch):
    from uhr_seg_ros import backends as registry

    memory = FakeDeviceMemory()

    def big_engines(model, options):
        backend = FakeGraphBackend(memory, external_bytes=4000 * MB)
        backend.name = "tensorrt"
        backend.resident_external = 4000 * MB  # engines larger than the cap
        return backend

    monkeypatch.setitem(
        registry._REGISTRY, "tensorrt", registry._Registration(big_engines, ("fp16", "fp32"))
    )
    monkeypatch.setattr(
        Segmenter,
        "_memory_model_for",
        staticmethod(
            lambda model, backend, settings: MemoryModel(
                "stub", backend.name, "cpu", "fp32", 0, 1.0
            )
        ),
    )
    model = _StubModel()
    with captured_log("uhr_seg_ros.pipeline") as records:
        segmenter = Segmenter.from_settings(
            SegmenterSettings(backend_order=("tensorrt", "cpu"), memory_cap_mb=1000, patch_size=64),
            model=model,
        )
    assert segmenter.backend.name == "cpu"
    lines = [r.getMessage() for r in records]
    assert len(lines) == 1 and lines[0].startswith(
        "backend 'tensorrt' cannot meet the 1000 MB cap, trying cpu: a memory cap of 1000 MB"
    )


# -- TensorRT: workspace, context memory, build failures ----------------------------------------


def test_workspace_is_a_power_of_two_quarter_of_the_cap_within_bounds():
    assert workspace_bytes(1000 * MB) == 128 * MB
    assert workspace_bytes(1500 * MB) == 256 * MB
    assert workspace_bytes(3000 * MB) == 512 * MB
    assert workspace_bytes(64 * MB) == 32 * MB
    assert workspace_bytes(64_000 * MB) == 1024 * MB
    assert EngineSpec("0", "g", "10", "2.5", 512, 1, 4, 4, "fp16").workspace_bytes == 256 * MB


def _runner(tensorrt, sizes):
    runner = _EngineRunner(tensorrt, b"engine", "test.engine", cpu_allocate(sizes))
    runner.allocate_io(4, 32, 2, torch.device("cpu"))
    return runner


def test_context_memory_is_ours_and_sized_for_the_batch_run_not_the_profile_max():
    sizes: list[int] = []
    runner = _runner(fake_tensorrt(memory_per_sample=1000), sizes)
    assert runner.user_managed and runner.context.strategy == 2
    runner.run(torch.zeros(1, 3, 32, 32), stream_handle=7)
    assert sizes == [1000] and runner.context.device_memory_calls == [1000]
    runner.run(torch.zeros(1, 3, 32, 32), stream_handle=7)
    assert sizes == [1000]  # no per-call allocation
    runner.run(torch.zeros(3, 3, 32, 32), stream_handle=7)
    assert sizes == [1000, 3000]  # grown for a larger batch
    runner.fit_batch(1, shrink=True)
    assert sizes == [1000, 3000, 1000]  # a lower plan batch frees the difference
    assert runner.context.enqueued == [7, 7, 7]  # on the backend's stream, never stream 0


def test_old_tensorrt_without_user_managed_memory_still_runs():
    sizes: list[int] = []
    runner = _runner(fake_tensorrt(user_managed=False), sizes)
    runner.run(torch.zeros(2, 3, 32, 32), stream_handle=5)
    assert not runner.user_managed and sizes == [] and runner.context.shape[0] == 2


def test_unbound_local_error_is_reported_with_the_cause_torch_tensorrt_logged():
    cause = RuntimeError("Conversion of aten.grid_sampler_2d not supported\ntrace")
    record = logging.LogRecord(
        "torch_tensorrt",
        logging.ERROR,
        __file__,
        1,
        "While interpreting the module got an error: %s",
        (cause,),
        (RuntimeError, cause, None),
    )
    reason = build_failure_reason(
        UnboundLocalError("cannot access local variable 'interpreter_result'"), [record]
    )
    assert reason == (
        "RuntimeError: Conversion of aten.grid_sampler_2d not supported "
        "(torch-tensorrt then raised UnboundLocalError)"
    )
    plain = build_failure_reason(ValueError("x"), [])
    assert plain == "ValueError: x"


def test_build_forwards_torch_tensorrt_log_bounds_workspace_and_names_real_cause(
    tiny_model, monkeypatch
):
    calls = {}

    def convert(program, inputs, device, **kwargs):
        calls.update(kwargs)
        try:
            raise RuntimeError("Conversion of aten.grid_sampler_2d not supported")
        except RuntimeError:
            logging.getLogger("torch_tensorrt").exception(
                "While interpreting the module got an error"
            )
        raise UnboundLocalError("cannot access local variable 'interpreter_result'")

    fake = SimpleNamespace(
        Input=lambda **kw: kw,
        dynamo=SimpleNamespace(convert_exported_program_to_serialized_trt_engine=convert),
    )
    monkeypatch.setattr(trt_backend, "import_tensorrt", lambda: (fake, None))
    monkeypatch.setattr(trt_backend, "export_program", lambda *a, **k: "program")
    spec = EngineSpec("0", "Orin", "10.3.0", "2.8.0", 64, 1, 2, 2, "fp16", workspace_bytes=128 * MB)
    with (
        captured_log("uhr_seg_ros.backends.tensorrt") as records,
        pytest.raises(
            BackendUnavailable,
            match=r"engine build failed: RuntimeError: Conversion of "
            r"aten.grid_sampler_2d not supported \(torch-tensorrt then raised "
            r"UnboundLocalError\)",
        ),
    ):
        build_engine(tiny_model, spec, torch.device("cpu"))
    assert calls["workspace_size"] == 128 * MB
    assert [r.getMessage() for r in records] == [
        "torch_tensorrt: While interpreting the module got an error"
    ]


# -- the GPU check script -----------------------------------------------------------------------


def _gpu_check():
    import importlib.util

    from uhr_seg_ros.paths import REPO_ROOT

    spec = importlib.util.spec_from_file_location(
        "gpu_check", REPO_ROOT / "benchmarks" / "gpu_check.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_exits_cleanly_with_one_line_without_cuda(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _gpu_check().main(["--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("gpu_check: no CUDA device")
    assert list(tmp_path.iterdir()) == []


def test_gpu_check_report_renders_rows_skips_and_cap_changes():
    report = {
        "gpu": "H200",
        "torch": "2.13",
        "torch_tensorrt": None,
        "seconds": 12.0,
        "command": "gpu_check.py",
        "backends": [
            {
                "backend": "cuda",
                "describe": "cuda eager",
                "rows": [
                    {
                        "cap_mb": 1000,
                        "side": 2448,
                        "plan": "p",
                        "allocator_peak_mb": 900.0,
                        "max_allocated_mb": 800.0,
                        "device_used_peak_mb": 1300.0,
                        "nvml_process_mb": None,
                        "within_cap": True,
                        "agreement_with_cpu_fp32": 0.999,
                        "seconds": 1.0,
                    },
                    {"cap_mb": 1000, "side": 10000, "skipped": "time budget"},
                ],
                "cap_changes": [{"to_mb": 1000, "reserved_after_mb": 120.0}],
                "reserved_after_close_mb": 0.0,
            }
        ],
    }
    text = _gpu_check().markdown(report)
    assert "| 1000 | 2448² | 900.0 | 800.0 | 1300.0 | n/a | True | 0.999 | 1.0 |" in text
    assert "skipped (time budget)" in text and "reserved 120.0 MB after" in text
    assert "reserved after close(): 0.0 MB" in text
