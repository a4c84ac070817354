"""``uhr-seg export``: ONNX anywhere, TensorRT only where it can be built (else one line)."""

from __future__ import annotations

import logging
import sys

import pytest
import torch

from uhr_seg_ros.cli import main
from uhr_seg_ros.model import save_checkpoint


@pytest.fixture
def checkpoint(tiny_model, tmp_path):
    return save_checkpoint(tmp_path / "tiny.pt", tiny_model)


@pytest.mark.slow
def test_export_onnx_writes_a_checked_file(checkpoint, tmp_path):
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "out" / "sghrq.onnx"
    code = main(
        [
            "export",
            "--model",
            str(checkpoint),
            "--format",
            "onnx",
            "--out",
            str(out),
            "--batch",
            "2",
            "--patch",
            "64",
        ]
    )
    assert code == 0
    proto = onnx.load(str(out))
    assert proto.graph.input[0].type.tensor_type.shape.dim[2].dim_value == 64


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the message on a machine without CUDA")
def test_export_tensorrt_without_gpu_fails_with_one_clear_line(checkpoint, tmp_path, caplog):
    caplog.set_level(logging.ERROR)
    out = tmp_path / "sghrq.engine"
    code = main(
        [
            "export",
            "--model",
            str(checkpoint),
            "--format",
            "tensorrt",
            "--out",
            str(out),
            "--patch",
            "64",
        ]
    )
    assert code == 1 and not out.exists()
    (message,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert "torch-tensorrt is not installed" in message or "no CUDA device" in message


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--patch", "100"], "multiple of 32"),
        (["--batch", "0"], "batch must be >= 1"),
    ],
)
def test_export_rejects_bad_shapes_before_loading_anything(
    checkpoint, tmp_path, caplog, flags, message
):
    code = main(
        [
            "export",
            "--model",
            str(checkpoint),
            "--format",
            "onnx",
            "--out",
            str(tmp_path / "x.onnx"),
            *flags,
        ]
    )
    assert code == 1 and message in caplog.text and not (tmp_path / "x.onnx").exists()


def test_export_of_a_missing_checkpoint_says_which_file(tmp_path, caplog):
    missing = tmp_path / "nope.pt"
    code = main(
        ["export", "--model", str(missing), "--format", "onnx", "--out", str(tmp_path / "x.onnx")]
    )
    assert code == 1 and str(missing) in caplog.text


def test_export_onnx_without_the_onnx_extra_is_one_line_naming_it(
    checkpoint, tmp_path, caplog, monkeypatch
):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
    assert (
        main(
            [
                "export",
                "--format",
                "onnx",
                "--model",
                str(checkpoint),
                "--out",
                str(tmp_path / "m.onnx"),
                "--patch",
                "64",
                "--batch",
                "1",
            ]
        )
        == 1
    )
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        "onnx is not installed (needed for ONNX export): pip install 'uhr_seg_ros[onnx]'"
    ]
    assert not (tmp_path / "m.onnx").exists()
