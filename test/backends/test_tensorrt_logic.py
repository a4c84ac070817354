"""TensorRT backend logic that needs neither TensorRT nor a GPU: precision kwargs per
torch-tensorrt release, the engine cache key, the on-disk cache and the failure message."""

from __future__ import annotations

import dataclasses
import logging
from types import SimpleNamespace

import pytest
import torch

from uhr_seg_ros.backends import create_backend
from uhr_seg_ros.backends import tensorrt as trt_backend
from uhr_seg_ros.backends.tensorrt import (
    EngineSpec,
    default_engine_cache_dir,
    load_or_build_engine,
    parse_version,
    precision_settings,
    weights_sha256,
)

SPEC = EngineSpec(
    checkpoint_sha256="0" * 64,
    gpu_name="Orin (nvgpu)",
    tensorrt_version="10.3.0",
    torch_tensorrt_version="2.5.0",
    patch_size=1024,
    min_batch=1,
    opt_batch=4,
    max_batch=4,
    precision="fp16",
)


@pytest.mark.parametrize(
    "version, expected",
    [
        ("2.5.0", (2, 5)),
        ("2.8.0a0+5b3d0c4", (2, 8)),
        ("2.10.0", (2, 10)),
        ("2.14.0.dev20260801+cu130", (2, 14)),
        (" 3.0", (3, 0)),
    ],
)
def test_parse_version_reads_major_minor_of_release_and_jetson_strings(version, expected):
    assert parse_version(version) == expected


def test_parse_version_rejects_garbage():
    with pytest.raises(ValueError, match=r"major\.minor"):
        parse_version("unknown")


@pytest.mark.parametrize("version", ["2.5.0", "2.8.0a0+5b3d0c4", "2.9.1"])
def test_weak_typing_releases_get_enabled_precisions(version):
    fp16 = precision_settings(version, "fp16")
    assert fp16.compile_kwargs == {"enabled_precisions": {torch.float32, torch.float16}}
    assert not fp16.half_graph
    fp32 = precision_settings(version, "fp32")
    assert fp32.compile_kwargs == {"enabled_precisions": {torch.float32}}
    assert not fp32.half_graph


@pytest.mark.parametrize("version", ["2.10.0", "2.12.1"])
def test_explicit_typing_releases_get_a_half_graph_without_enabled_precisions(version):
    fp16 = precision_settings(version, "fp16")
    assert fp16.compile_kwargs == {"use_explicit_typing": True} and fp16.half_graph
    fp32 = precision_settings(version, "fp32")
    assert fp32.compile_kwargs == {"use_explicit_typing": True} and not fp32.half_graph


@pytest.mark.parametrize("version", ["2.13.0", "2.14.0.dev20260801"])
def test_releases_without_typing_flags_get_no_precision_kwargs(version):
    assert precision_settings(version, "fp16") == trt_backend.PrecisionSettings({}, True)
    assert precision_settings(version, "fp32") == trt_backend.PrecisionSettings({}, False)


def test_precision_settings_refuse_old_releases_and_unknown_precisions():
    with pytest.raises(ValueError, match="too old"):
        precision_settings("2.4.1", "fp16")
    with pytest.raises(ValueError, match="precision"):
        precision_settings("2.10.0", "int8")


def test_cache_key_is_a_stable_sha256_of_every_field():
    key = SPEC.cache_key()
    assert len(key) == 64 and int(key, 16) >= 0
    assert EngineSpec(**dataclasses.asdict(SPEC)).cache_key() == key
    changed = {
        "checkpoint_sha256": "1" * 64,
        "gpu_name": "NVIDIA H100",
        "tensorrt_version": "10.4.0",
        "torch_tensorrt_version": "2.6.0",
        "patch_size": 512,
        "min_batch": 2,
        "opt_batch": 2,
        "max_batch": 8,
        "precision": "fp32",
        "workspace_bytes": 2**27,
    }
    assert set(changed) == {f.name for f in dataclasses.fields(EngineSpec)}
    keys = {
        dataclasses.replace(SPEC, **{name: value}).cache_key() for name, value in changed.items()
    }
    assert len(keys) == len(changed) and key not in keys


def test_engine_file_name_is_readable_and_carries_the_key():
    assert SPEC.file_name() == f"sghrq_p1024_b4_fp16_{SPEC.cache_key()[:16]}.engine"


def test_weights_hash_follows_inference_weights_only(tiny_model):
    reference = weights_sha256(tiny_model)
    assert weights_sha256(tiny_model) == reference
    with torch.no_grad():
        next(tiny_model.train_heads.parameters()).add_(1.0)
    assert weights_sha256(tiny_model) == reference  # training heads never reach an engine
    with torch.no_grad():
        tiny_model.aux8_head.bias.add_(1e-3)
    assert weights_sha256(tiny_model) != reference


def test_default_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_engine_cache_dir() == tmp_path / "uhr_seg_ros" / "engines"


def test_second_start_loads_the_cached_engine_instead_of_building(
    tiny_model, tmp_path, monkeypatch
):
    builds = []

    def fake_build(model, spec, device):
        builds.append(spec)
        return b"serialized-engine"

    monkeypatch.setattr(trt_backend, "build_engine", fake_build)
    first = load_or_build_engine(tiny_model, SPEC, tmp_path, torch.device("cpu"))
    second = load_or_build_engine(tiny_model, SPEC, tmp_path, torch.device("cpu"))
    assert first == second == b"serialized-engine" and builds == [SPEC]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [SPEC.file_name(), SPEC.file_name().replace(".engine", ".json")]
    )
    other = dataclasses.replace(SPEC, patch_size=512)
    load_or_build_engine(tiny_model, other, tmp_path, torch.device("cpu"))
    assert builds == [SPEC, other]


def test_engine_build_failure_skips_tensorrt_with_the_error(
    tiny_model, tmp_path, monkeypatch, caplog
):
    fake_libs = (SimpleNamespace(__version__="2.5.0"), SimpleNamespace(__version__="10.3.0"))
    monkeypatch.setattr(trt_backend, "import_tensorrt", lambda: fake_libs)
    monkeypatch.setattr(trt_backend.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(trt_backend.torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(trt_backend.torch.cuda, "get_device_name", lambda device: "Orin")

    def failing_build(model, spec, device):
        raise RuntimeError("Conversion of aten.grid_sampler_2d not supported\nlong trace")

    monkeypatch.setattr(trt_backend, "build_engine", failing_build)
    caplog.set_level(logging.WARNING, logger="uhr_seg_ros.backends")
    backend = create_backend(
        tiny_model, ("tensorrt", "cpu"), patch_sizes=(64,), engine_cache_dir=tmp_path
    )
    assert backend.name == "cpu"
    expected = (
        "backend 'tensorrt' skipped: engine build failed: RuntimeError: Conversion of "
        "aten.grid_sampler_2d not supported"
    )
    assert [r.getMessage() for r in caplog.records] == [expected]
    assert list(tmp_path.iterdir()) == []  # nothing half-built is cached
