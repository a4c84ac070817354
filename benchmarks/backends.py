"""Backends side by side: FPS, latency p50/p99 and peak memory per frame size under one cap.

Every available backend of ``--backends`` runs the whole pipeline (``Segmenter``: planner,
tiled executor, backend) on the same synthetic frames, so the figures include tiling, merging
and the mask download, as the node sees them. Unavailable backends print the reason instead.

    python benchmarks/backends.py                 # GPU: 2448² and 5000², cap 1500 MB (< 8 min)
    python benchmarks/backends.py --quick         # CPU smoke run: 1 timed frame per size

Peak memory on CUDA is measured (``max_memory_allocated`` + TensorRT engine bytes); on CPU it
is the planner's model of the same quantity (CPU memory is not capped by a device).
The weights are random (``SGHRQConfig.lite()``) unless ``--model`` gives a checkpoint: speed
and memory do not depend on the weights' values.
"""

from __future__ import annotations

import argparse
import copy
import logging
import time

import numpy as np
import torch

from uhr_seg_ros.backends import BackendError
from uhr_seg_ros.model import SGHRQConfig, build_model, load_checkpoint
from uhr_seg_ros.pipeline import Segmenter, SegmenterSettings


def synthetic_frame(side: int, seed: int = 0) -> np.ndarray:
    """``side × side × 3`` uint8 RGB with smooth colour regions (content does not change the
    amount of work, but keeps the logits realistic)."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((1, 3, 8, 8), dtype=np.float32))
    smooth = torch.nn.functional.interpolate(coarse, size=(side, side), mode="bilinear")
    return (smooth[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def bench_backend(name: str, model: torch.nn.Module, args: argparse.Namespace) -> list[str]:
    """Markdown table rows for one backend (one per frame size, or one saying why not)."""
    settings = SegmenterSettings(
        backend_order=(name,),
        precision=args.precision,
        memory_cap_mb=args.cap_mb,
        max_batch=args.max_batch,
    )
    start = time.perf_counter()
    try:
        # A private copy: backends move and re-layout the model (cuda, channels_last).
        segmenter = Segmenter.from_settings(settings, model=copy.deepcopy(model))
    except BackendError as exc:  # the chain of one logged why; the table says it again
        reason = str(exc).split(f"{name}: ", 1)[-1]
        return [f"| {name} | - | unavailable: {reason} | | | | | |"]
    startup_s = time.perf_counter() - start
    rows = []
    try:
        for side in args.sizes:
            frame = synthetic_frame(side)
            plan = segmenter.prepare(side, side)  # planning, buffers, warm-up (graphs, engines)
            segmenter.segment(frame)  # first frame: allocator and autotuning settle
            latencies, peaks = [], []
            for _ in range(args.frames):
                result = segmenter.segment(frame)  # returns host arrays: the GPU has finished
                latencies.append(result.timings_ms["total"])
                peaks.append(result.peak_memory_mb)
            p50, p99 = np.percentile(latencies, [50, 99])
            rows.append(
                f"| {segmenter.backend.describe()} | {side}² | {plan.patch} px × "
                f"{plan.batch}, {plan.grid.num_tiles} tiles | {1e3 / np.mean(latencies):.2f} "
                f"| {p50:.0f} | {p99:.0f} | {max(peaks):.0f} | {startup_s:.1f} |"
            )
    finally:
        segmenter.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backends",
        default="tensorrt,cuda,cpu",
        help="comma-separated, compared side by side (default tensorrt,cuda,cpu)",
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[2448, 5000],
        help="square frame sides (default 2448 5000)",
    )
    parser.add_argument("--cap-mb", type=float, default=1500.0, help="memory cap (default 1500)")
    parser.add_argument("--frames", type=int, default=20, help="timed frames per size")
    parser.add_argument("--precision", choices=("fp16", "fp32"), default="fp16")
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--model", default=None, help="checkpoint (default: random lite weights)")
    parser.add_argument(
        "--quick", action="store_true", help="1 timed frame per size (a CPU smoke run)"
    )
    args = parser.parse_args()
    if args.quick:
        args.frames = 1
    logging.basicConfig(level=logging.WARNING, format="%(levelname).1s %(name)s: %(message)s")

    if args.model:
        model = load_checkpoint(args.model)
    else:
        torch.manual_seed(0)
        model = build_model(SGHRQConfig.lite()).eval()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
    print(
        f"torch {torch.__version__}, {device}, {torch.get_num_threads()} CPU threads, cap "
        f"{args.cap_mb:.0f} MB, {args.precision}, {args.frames} timed frames per size"
    )
    print("| backend | frame | plan | FPS | p50 ms | p99 ms | peak MB | start-up s |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.backends.split(","):
        for row in bench_backend(name.strip(), model, args):
            print(row, flush=True)


if __name__ == "__main__":
    main()
