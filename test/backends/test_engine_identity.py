"""The engines ``uhr-seg export`` writes are the ones the node's TensorRT backend looks up.

No TensorRT here: torch-tensorrt/TensorRT, the GPU queries and the engine builder are fakes, so
what is tested is the identity (EngineSpec, cache key, file name) both sides compute through
``backends.tensorrt.engine_specs``. A cache hit means the backend never calls the builder.
"""

from __future__ import annotations

from contextlib import nullcontext
from types import SimpleNamespace

import pytest
import torch

from uhr_seg_ros.backends import tensorrt as trt_backend
from uhr_seg_ros.cli import main
from uhr_seg_ros.model import SGHRQConfig, build_model, load_checkpoint, save_checkpoint
from uhr_seg_ros.settings import SegmenterSettings


class FakeRunner:
    def __init__(self, tensorrt, serialized: bytes, source: str) -> None:
        self.serialized, self.source = serialized, source

    def allocate(self, *args) -> None:
        pass


@pytest.fixture
def fake_tensorrt(monkeypatch):
    """A machine that looks like one GPU with TensorRT 10.3 / torch-tensorrt 2.5."""
    builds: list[trt_backend.EngineSpec] = []

    def fake_build(model, spec, device):
        builds.append(spec)
        return f"engine {spec.cache_key()}".encode()

    modules = (SimpleNamespace(__version__="2.5.0"), SimpleNamespace(__version__="10.3.0"))
    monkeypatch.setattr(trt_backend, "import_tensorrt", lambda: modules)
    monkeypatch.setattr(trt_backend, "build_engine", fake_build)
    monkeypatch.setattr(trt_backend, "_EngineRunner", FakeRunner)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake Orin")
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2**30, 2**31))
    monkeypatch.setattr(torch.cuda, "device", lambda device: nullcontext())
    monkeypatch.setattr(
        torch.cuda,
        "get_device_properties",
        lambda device=None: SimpleNamespace(is_integrated=True, total_memory=2**31),
    )
    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: SimpleNamespace(cuda_stream=1))
    return builds


def test_export_writes_what_the_node_looks_up(fake_tensorrt, tmp_path):
    torch.manual_seed(0)
    checkpoint = tmp_path / "tiny.pt"
    save_checkpoint(checkpoint, build_model(SGHRQConfig.tiny(3)))
    cache = tmp_path / "engines"
    settings = SegmenterSettings(
        model_path=str(checkpoint), backend_order=("tensorrt",), engine_cache_dir=str(cache)
    )
    # What docker/prebuild_engines.py runs: one export per engine the settings need.
    for patch in settings.engine_patch_sizes:
        assert (
            main(
                [
                    "export",
                    "--format",
                    "tensorrt",
                    "--model",
                    str(checkpoint),
                    "--patch",
                    str(patch),
                    "--batch",
                    str(settings.max_batch),
                    "--precision",
                    settings.precision,
                    "--engine-cache-dir",
                    str(cache),
                    "--out",
                    str(tmp_path / f"p{patch}.engine"),
                ]
            )
            == 0
        )
    exported = {spec.file_name() for spec in fake_tensorrt}
    assert len(exported) == len(settings.engine_patch_sizes)
    assert {p.name for p in cache.glob("*.engine")} == exported

    # The node's backend for the same settings (a model loaded the way the node loads it).
    fake_tensorrt.clear()
    backend = trt_backend.TensorRTBackend(
        load_checkpoint(checkpoint),
        "cuda",
        settings.precision,
        settings.max_batch,
        settings.engine_patch_sizes,
        settings.engine_cache_dir,
    )
    assert fake_tensorrt == []  # every engine was a cache hit: nothing rebuilt at start-up
    # engines stay host bytes until the plan uses their patch size (only that one is resident)
    assert {source.rsplit("/", 1)[-1] for _, source in backend._serialized.values()} == exported
    assert backend.resident_patches() == ()
    assert backend.patch_sizes == settings.engine_patch_sizes


def test_another_precision_is_another_engine(fake_tensorrt, tmp_path):
    model = build_model(SGHRQConfig.tiny(3)).eval()
    device = torch.device("cuda", 0)
    fp16, fp32 = (
        trt_backend.engine_specs(model, patch_sizes=(512,), max_batch=4, precision=p, device=device)
        for p in ("fp16", "fp32")
    )
    assert fp16[0].cache_key() != fp32[0].cache_key()
    assert fp16[0].gpu_name == "Fake Orin" and fp16[0].tensorrt_version == "10.3.0"
