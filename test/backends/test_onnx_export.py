"""torch.export of the inference graph (dynamic batch) and the ONNX file built from it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from uhr_seg_ros.backends.export import (
    ONNX_INPUT_NAME,
    ONNX_OPSET,
    ONNX_OUTPUT_NAME,
    export_onnx,
    export_program,
)
from uhr_seg_ros.model import SGHRQConfig, build_model

onnx = pytest.importorskip("onnx")

MAX_BATCH = 3


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(SGHRQConfig.tiny(num_classes=3)).eval()


@pytest.fixture(scope="module")
def onnx_path(model, tmp_path_factory) -> Path:
    """One export shared by the module: it takes seconds on a 2-core CPU."""
    return export_onnx(model, tmp_path_factory.mktemp("onnx") / "sghrq.onnx", 64, MAX_BATCH)


def _eager(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(batch)


def _input_shape(program: torch.export.ExportedProgram) -> tuple:
    (name,) = program.graph_signature.user_inputs
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == name)
    return tuple(node.meta["val"].shape)


def test_exported_program_runs_every_batch_size_in_its_range(model, patches):
    program = export_program(model, 64, MAX_BATCH)
    batch_dim, *rest = _input_shape(program)
    assert isinstance(batch_dim, torch.SymInt) and rest == [3, 64, 64]
    for size in (1, MAX_BATCH):
        with torch.inference_mode():
            exported = program.module()(patches[:size])
        torch.testing.assert_close(exported, _eager(model, patches[:size]))


def test_batch_of_one_exports_a_static_program(model, patches):
    program = export_program(model, 64, 1)
    assert _input_shape(program) == (1, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(program.module()(patches[:1]), _eager(model, patches[:1]))


@pytest.mark.parametrize(
    "patch, batch, message", [(48, 2, "multiple of 32"), (64, 0, "batch must be >= 1")]
)
def test_export_rejects_shapes_no_engine_can_have(model, patch, batch, message):
    with pytest.raises(ValueError, match=message):
        export_program(model, patch, batch)


@pytest.mark.slow
def test_onnx_file_has_documented_opset_names_and_dynamic_batch(onnx_path):
    proto = onnx.load(str(onnx_path))
    onnx.checker.check_model(proto, full_check=True)
    assert {o.domain: o.version for o in proto.opset_import}[""] == ONNX_OPSET
    (image,), (logits,) = proto.graph.input, proto.graph.output
    assert (image.name, logits.name) == (ONNX_INPUT_NAME, ONNX_OUTPUT_NAME)
    dims = [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 64, 64]
    assert logits.type.tensor_type.shape.dim[0].dim_param == "batch"


@pytest.mark.slow
def test_onnx_runtime_matches_eager_fp32(onnx_path, model, patches):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for size in (1, MAX_BATCH):
        (logits,) = session.run(None, {ONNX_INPUT_NAME: patches[:size].numpy()})
        torch.testing.assert_close(
            torch.from_numpy(logits), _eager(model, patches[:size]), rtol=1e-4, atol=1e-4
        )
