"""The registry and the fallback chain (runs on every machine; the chain test needs no GPU)."""

from __future__ import annotations

import logging

import pytest
import torch

from uhr_seg_ros import backends
from uhr_seg_ros.backends import (
    Backend,
    BackendError,
    BackendUnavailable,
    create_backend,
    register_backend,
    registered_backends,
)

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="tests the no-CUDA fallback")


def _skip_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "uhr_seg_ros.backends" and r.levelno == logging.WARNING
    ]


def test_builtin_backends_are_registered_in_chain_order():
    assert registered_backends()[:3] == ("tensorrt", "cuda", "cpu")


def test_duplicate_registration_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_backend("cpu", lambda model, options: None)


def test_unknown_backend_name_lists_the_known_ones(tiny_model):
    with pytest.raises(ValueError, match=r"unknown backend.*'tpu'.*choose from"):
        create_backend(tiny_model, ("tpu", "cpu"))


def test_empty_order_and_bad_precision_are_configuration_errors(tiny_model):
    with pytest.raises(ValueError, match="empty"):
        create_backend(tiny_model, ())
    with pytest.raises(ValueError, match="precision"):
        create_backend(tiny_model, ("cpu",), precision="int8")


@no_cuda
def test_default_chain_ends_on_cpu_with_one_line_per_skipped_step(tiny_model, caplog):
    caplog.set_level(logging.INFO, logger="uhr_seg_ros.backends")
    backend = create_backend(tiny_model, ("tensorrt", "cuda", "cpu"), patch_sizes=(64,))
    assert backend.name == "cpu" and backend.device == torch.device("cpu")
    lines = _skip_lines(caplog)
    assert len(lines) == 2
    assert lines[0].startswith("backend 'tensorrt' skipped: ")
    assert "torch-tensorrt" in lines[0] or "CUDA" in lines[0]
    assert lines[1].startswith("backend 'cuda' skipped: no CUDA device")
    assert any(r.getMessage().startswith("using backend cpu") for r in caplog.records)


def test_failing_step_is_logged_with_its_error_and_the_chain_goes_on(
    tiny_model, caplog, monkeypatch
):
    def broken(model, options):
        raise RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB (traceback follows)")

    monkeypatch.setitem(
        backends._REGISTRY, "broken", backends._Registration(broken, ("fp16", "fp32"))
    )
    caplog.set_level(logging.INFO, logger="uhr_seg_ros.backends")
    backend = create_backend(tiny_model, ("broken", "cpu"))
    assert backend.name == "cpu"
    assert _skip_lines(caplog) == ["backend 'broken' skipped: RuntimeError: CUDA out of memory."]


def test_every_step_failing_raises_backend_error_with_all_reasons(tiny_model, monkeypatch):
    def absent(model, options):
        raise BackendUnavailable("library missing")

    monkeypatch.setitem(
        backends._REGISTRY, "absent", backends._Registration(absent, ("fp16", "fp32"))
    )
    with pytest.raises(
        BackendError,
        match="no backend could be created: absent: library missing; absent: library missing",
    ):
        create_backend(tiny_model, ("absent", "absent"))


def test_factories_receive_the_options(tiny_model, monkeypatch, tmp_path):
    seen = {}

    def spy(model, options):
        seen.update(vars(options))
        raise BackendUnavailable("spy")

    monkeypatch.setitem(backends._REGISTRY, "spy", backends._Registration(spy, ("fp16", "fp32")))
    backend = create_backend(
        tiny_model,
        ("spy", "cpu"),
        precision="fp32",
        max_batch=3,
        patch_sizes=[256, 512],
        engine_cache_dir=str(tmp_path),
        checkpoint_hash="ab" * 32,
        cuda_graphs=False,
    )
    assert isinstance(backend, Backend) and backend.max_batch == 3
    assert seen["precision"] == "fp32" and seen["max_batch"] == 3
    assert seen["patch_sizes"] == (256, 512) and seen["engine_cache_dir"] == tmp_path
    assert seen["checkpoint_hash"] == "ab" * 32 and seen["cuda_graphs"] is False
