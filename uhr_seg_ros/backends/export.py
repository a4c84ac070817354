"""Export of the inference graph: ``torch.export`` with a dynamic batch axis, and ONNX.

Both the TensorRT engine builder and the ONNX file start from the same ``ExportedProgram``, so
every exported artefact sees the network exactly as eager PyTorch runs it (0..255 RGB input,
normalisation inside, logits out).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from uhr_seg_ros.extras import require
from uhr_seg_ros.model.contract import SIZE_DIVISOR

#: ONNX opset of exported files: 18 is the lowest the torch.export-based exporter emits and is
#: parsed by TensorRT 10.x (JetPack 6.1+, trtexec), ONNX Runtime >= 1.14 and Isaac ROS 3.
ONNX_OPSET = 18
ONNX_INPUT_NAME = "image"
ONNX_OUTPUT_NAME = "logits"


def check_export_shape(patch_size: int, max_batch: int) -> None:
    """Raise ``ValueError`` for a patch or batch no engine can be built for."""
    if patch_size <= 0 or patch_size % SIZE_DIVISOR:
        raise ValueError(
            f"patch size must be a positive multiple of {SIZE_DIVISOR}, got {patch_size}"
        )
    if max_batch < 1:
        raise ValueError(f"batch must be >= 1, got {max_batch}")


def _example_and_dynamic_shapes(
    patch_size: int,
    max_batch: int,
    device: str | torch.device,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, tuple[dict[int, torch.export.Dim], ...] | None]:
    """Example input and ``dynamic_shapes`` for a batch axis named ``batch`` in 1..max_batch.

    The example has 2 samples (when allowed) because ``torch.export`` specialises dimensions
    traced at size 1.
    """
    check_export_shape(patch_size, max_batch)
    example = torch.zeros(min(2, max_batch), 3, patch_size, patch_size, device=device, dtype=dtype)
    if max_batch == 1:
        return example, None
    return example, ({0: torch.export.Dim("batch", min=1, max=max_batch)},)


def export_program(
    model: nn.Module,
    patch_size: int,
    max_batch: int,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.export.ExportedProgram:
    """Trace ``model`` for ``(B, 3, patch, patch)`` inputs with ``B`` dynamic in 1..max_batch."""
    example, dynamic_shapes = _example_and_dynamic_shapes(patch_size, max_batch, device, dtype)
    with torch.no_grad():
        return torch.export.export(model.eval(), (example,), dynamic_shapes=dynamic_shapes)


def export_onnx(model: nn.Module, path: str | Path, patch_size: int, max_batch: int) -> Path:
    """Write the inference graph as one ONNX file (weights inside) and check it.

    Input ``image``: float32 ``(batch, 3, patch, patch)`` RGB 0..255, ``batch`` symbolic in
    1..max_batch; output ``logits``: float32 ``(batch, C, patch, patch)``. Exported in fp32 on
    the model's device: TensorRT / ONNX Runtime choose fp16 at build time (``trtexec --fp16``).
    """
    onnx = require("onnx", "onnx", "ONNX export")
    require("onnxscript", "onnx", "ONNX export")  # torch.onnx.export (dynamo) needs it

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    device = next(model.parameters()).device
    example, dynamic_shapes = _example_and_dynamic_shapes(
        patch_size, max_batch, device, torch.float32
    )
    with torch.no_grad():
        torch.onnx.export(
            model.eval(),
            (example,),
            f=str(path),
            dynamo=True,
            opset_version=ONNX_OPSET,
            input_names=[ONNX_INPUT_NAME],
            output_names=[ONNX_OUTPUT_NAME],
            dynamic_shapes=dynamic_shapes,
            external_data=False,
        )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return path
