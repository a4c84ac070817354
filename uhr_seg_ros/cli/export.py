"""``uhr-seg export``: the model as a TensorRT engine (built on the target GPU) or an ONNX file.

    uhr-seg export --model models/sghrq_deepglobe_lite.pt --format tensorrt --out sghrq.engine \\
        --batch 4 --patch 1024 --precision fp16
    uhr-seg export --format onnx --out sghrq.onnx --batch 4 --patch 1024

A TensorRT engine only runs on the GPU model and TensorRT version that built it, so build it on
the target (Jetson). The build also lands in the node's engine cache, so a node started with the
same patch, batch and precision loads it instead of building. The ONNX file is portable: input
``image`` float32 ``(batch, 3, P, P)`` RGB 0..255, output ``logits`` ``(batch, C, P, P)``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from uhr_seg_ros.model.contract import SegmentationModel

LOGGER = logging.getLogger("uhr-seg.export")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        help="export the model as a TensorRT engine or an ONNX file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model", type=Path, default=None, help="checkpoint (.pt); default: the bundled model"
    )
    parser.add_argument("--format", choices=("tensorrt", "onnx"), required=True)
    parser.add_argument("--out", type=Path, required=True, help="file to write")
    parser.add_argument(
        "--batch",
        type=int,
        default=4,
        help="largest batch; the batch axis is dynamic in 1..N (default 4)",
    )
    parser.add_argument(
        "--patch",
        type=int,
        default=1024,
        help="square patch side in pixels, a multiple of 32 (default 1024)",
    )
    parser.add_argument(
        "--precision",
        default="fp16",
        help="TensorRT engine precision (default fp16); ONNX is always fp32",
    )
    parser.add_argument(
        "--engine-cache-dir",
        type=Path,
        default=None,
        help="TensorRT engine cache (default ~/.cache/uhr_seg_ros/engines)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from uhr_seg_ros.backends.base import BackendError
    from uhr_seg_ros.backends.export import check_export_shape
    from uhr_seg_ros.model import load_checkpoint
    from uhr_seg_ros.paths import default_model_path

    check_export_shape(args.patch, args.batch)
    model_path = args.model or default_model_path()
    model = load_checkpoint(model_path, map_location="cpu")
    try:
        if args.format == "onnx":
            _export_onnx(model, args)
        else:
            _export_tensorrt(model, args)
    except BackendError as exc:
        LOGGER.error("%s", exc)
        return 1
    return 0


def _export_onnx(model: SegmentationModel, args: argparse.Namespace) -> None:
    from uhr_seg_ros.backends.export import ONNX_OPSET, export_onnx

    path = export_onnx(model, args.out, args.patch, args.batch)
    shape = f"3x{args.patch}x{args.patch}"
    LOGGER.info(
        "wrote %s (%.1f MB, opset %d): input 'image' float32 (batch 1..%d, %s) RGB 0..255",
        path,
        path.stat().st_size / 2**20,
        ONNX_OPSET,
        args.batch,
        shape,
    )
    LOGGER.info(
        "TensorRT build: trtexec --onnx=%s --fp16 --minShapes=image:1x%s "
        "--optShapes=image:%dx%s --maxShapes=image:%dx%s --saveEngine=sghrq.engine",
        path,
        shape,
        args.batch,
        shape,
        args.batch,
        shape,
    )


def _export_tensorrt(model: SegmentationModel, args: argparse.Namespace) -> None:
    import torch

    from uhr_seg_ros.backends.base import BackendUnavailable
    from uhr_seg_ros.backends.tensorrt import (
        default_engine_cache_dir,
        engine_specs,
        import_tensorrt,
        load_or_build_engine,
    )

    import_tensorrt()  # BackendUnavailable naming what is missing, before anything else
    if not torch.cuda.is_available():
        raise BackendUnavailable(
            "no CUDA device: a TensorRT engine must be built on the GPU it "
            "will run on; use --format onnx to export elsewhere"
        )
    device = torch.device("cuda", torch.cuda.current_device())
    # The same identity function the node's TensorRT backend asks, so its cache finds this.
    (spec,) = engine_specs(
        model,
        patch_sizes=(args.patch,),
        max_batch=args.batch,
        precision=args.precision,
        device=device,
    )
    serialized = load_or_build_engine(
        model, spec, args.engine_cache_dir or default_engine_cache_dir(), device
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(serialized)
    LOGGER.info(
        "wrote %s (%.1f MB): TensorRT %s on %s, patch %d, batch 1..%d, %s",
        args.out,
        len(serialized) / 2**20,
        spec.tensorrt_version,
        spec.gpu_name,
        spec.patch_size,
        spec.max_batch,
        spec.precision,
    )
