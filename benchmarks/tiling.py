"""Tiled executor vs the common naive slide loop: throughput and peak memory, same model, same run.

The naive loop is how most segmentation toolboxes slide a window: one window per forward,
crops cut on the host and uploaded one by one, every window's logits padded to the full frame
and added into a full-frame float buffer (plus a count buffer), then divide and argmax.
The executor runs the *same windows* (same patch and overlap, so the masks agree) through the
planner's batch size with the frame uploaded once and logits merged one band of rows at a time.
A third row lets the planner also choose the windows under the cap (``planned``). On CUDA a
cap sweep (``--caps``, default 1000 1500 3000 MB) records the measured peak of planner-chosen
plans against each cap.

    python benchmarks/tiling.py --quick   # CPU, 2448² frame, tiny model (< 5 min on 2 cores)
    python benchmarks/tiling.py --device cuda --preset lite --sizes 2448 5000 10000

Timing: the methods take turns for ``--frames`` rounds after their warm-up and the fastest frame
of each counts (other jobs on a shared machine only ever add time); the CPU time of that frame
(all threads) is reported too.
Peak memory of one frame: CUDA measures what the method holds (weights, buffers) plus the most
``max_memory_allocated`` rose during one of its frames; on the CPU the figure is accounted, not
measured (weights + the measured forward peak of the memory model + the method's own buffers). The last line printed
is one JSON object (``speedup``, ``batched_fps``, ``naive_fps`` are those of the first size).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from uhr_seg_ros.model import SGHRQConfig, build_model, load_checkpoint
from uhr_seg_ros.paths import shared_data_dir
from uhr_seg_ros.pipeline import Segmenter, SegmenterSettings

MB = 2**20


def naive_slide(model: torch.nn.Module, image: np.ndarray, patch: int, overlap: int,
                device: torch.device) -> np.ndarray:
    """The baseline: the sliding-window loop most toolboxes ship (see module docstring)."""
    height, width = image.shape[:2]
    stride = patch - overlap
    rows = max(math.ceil((height - patch) / stride), 0) + 1
    cols = max(math.ceil((width - patch) / stride), 0) + 1
    num_classes = model.config.num_classes
    logits_sum = torch.zeros(1, num_classes, height, width, device=device)
    count = torch.zeros(1, 1, height, width, device=device)
    with torch.inference_mode():
        for i in range(rows):
            for j in range(cols):
                y1, x1 = min(i * stride, height - patch), min(j * stride, width - patch)
                y2, x2 = y1 + patch, x1 + patch
                crop = torch.from_numpy(image[y1:y2, x1:x2]).permute(2, 0, 1)[None]
                logits = model(crop.float().to(device))
                logits_sum += F.pad(logits.float(), (x1, width - x2, y1, height - y2))
                count[:, :, y1:y2, x1:x2] += 1
        return (logits_sum / count).argmax(1)[0].to(torch.uint8).cpu().numpy()


def load_frame(side: int) -> tuple[np.ndarray, str]:
    """A real DeepGlobe tile (tiled/cropped to ``side``) when ../shared/data has one, else
    smooth synthetic colour regions. Content does not change the work, only the logits."""
    import cv2

    root = shared_data_dir()
    tiles = sorted((root / "deepglobe").glob("*_sat.jpg")) if root else []
    if tiles:
        rgb = cv2.cvtColor(cv2.imread(str(tiles[0])), cv2.COLOR_BGR2RGB)
        reps = math.ceil(side / min(rgb.shape[:2]))
        return np.ascontiguousarray(np.tile(rgb, (reps, reps, 1))[:side, :side]), tiles[0].name
    rng = np.random.default_rng(0)
    coarse = torch.from_numpy(rng.random((1, 3, 8, 8), dtype=np.float32))
    smooth = F.interpolate(coarse, size=(side, side), mode="bilinear")
    return (smooth[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8), "synthetic"


def param_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


def interleaved(methods: dict[str, Callable[[], object]], frames: int,
                device: torch.device) -> dict[str, dict]:
    """Run the methods in turn, ``frames`` rounds. Per method: the fastest wall time of a frame
    (other jobs on a shared machine only ever add time, and taking turns exposes every method to
    the same load), the CPU time of that frame, the most device memory a frame added on top of
    what was allocated before it (CUDA; 0 on CPU), and the last output."""
    stats = {name: {"wall": math.inf, "cpu": math.inf, "extra": 0, "out": None}
             for name in methods}
    for _ in range(frames):
        for name, run in methods.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
                before = torch.cuda.memory_allocated(device)
            wall0, cpu0 = time.perf_counter(), time.process_time()
            out = run()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            entry = stats[name]
            if wall < entry["wall"]:
                entry.update(wall=wall, cpu=cpu)
            if device.type == "cuda":
                entry["extra"] = max(entry["extra"],
                                     torch.cuda.max_memory_allocated(device) - before)
            entry["out"] = out
    return stats


def bench_size(model, side: int, args, device: torch.device) -> dict:
    image, source = load_frame(side)
    common = {"backend_order": (args.device,), "precision": args.precision,
              "memory_cap_mb": args.cap_mb, "max_batch": args.max_batch}
    pinned = Segmenter.from_settings(
        SegmenterSettings(patch_size=args.patch, overlap=args.overlap, **common),
        model=copy.deepcopy(model))
    planner = Segmenter.from_settings(SegmenterSettings(**common), model=copy.deepcopy(model))
    naive_model = copy.deepcopy(model).eval().to(device)
    plan, planned_plan = pinned.prepare(side, side), planner.prepare(side, side)
    with torch.inference_mode():  # the warm-up the segmenters got in prepare()
        naive_model(torch.zeros(1, 3, args.patch, args.patch, device=device))
    stats = interleaved({
        "batched": lambda: pinned.segment(image),
        "naive": lambda: naive_slide(naive_model, image, args.patch, args.overlap, device),
        "planned": lambda: planner.segment(image),
    }, args.frames, device)
    batched, naive, planned = stats["batched"], stats["naive"], stats["planned"]
    result = batched["out"]

    # Peak of one frame of each method: what it holds (weights, buffers) + what a frame adds.
    # CPU: accounted, not measured (weights + the measured forward peak + buffers; the naive
    # loop holds at least a full-frame logit sum, a padded copy of one window's logits, a count).
    memory_model = pinned.memory_model
    if device.type == "cuda":
        batched_peak = (param_bytes(naive_model) + pinned.executor.buffer_bytes
                        + batched["extra"])
        naive_peak = param_bytes(naive_model) + naive["extra"]
    else:
        batched_peak = result.peak_memory_mb * MB
        naive_peak = (param_bytes(naive_model) + memory_model.predict(1, args.patch)
                      + (2 * model.config.num_classes + 1) * side * side * 4)
    pinned.close()
    planner.close()
    return {
        "size": side, "source": source, "windows": plan.grid.num_tiles,
        "patch": plan.patch, "overlap": plan.overlap, "batch": plan.batch,
        "batched_fps": 1 / batched["wall"], "naive_fps": 1 / naive["wall"],
        "speedup": naive["wall"] / batched["wall"], "cpu_time_ratio": naive["cpu"] / batched["cpu"],
        "batched_peak_mb": batched_peak / MB, "naive_peak_mb": naive_peak / MB,
        "mask_agreement": float((result.mask == naive["out"]).mean()),
        "batched_timings_ms": {k: round(v, 1) for k, v in result.timings_ms.items()},
        "planned": planned_plan.describe(), "planned_fps": 1 / planned["wall"],
        "planned_speedup": naive["wall"] / planned["wall"],
    }


def cap_sweep(model, args, device: torch.device) -> list[dict]:
    """Planner-chosen plans under each of ``args.caps``: measured peak vs the cap (CUDA only:
    ``max_memory_allocated`` + engine bytes, the figure the planner promises to bound)."""
    rows = []
    for cap in args.caps:
        settings = SegmenterSettings(backend_order=(args.device,), precision=args.precision,
                                     memory_cap_mb=cap, max_batch=args.max_batch)
        segmenter = Segmenter.from_settings(settings, model=copy.deepcopy(model))
        for side in args.sizes:
            image, _ = load_frame(side)
            segmenter.prepare(side, side)
            timing = interleaved({"planned": lambda s=segmenter, x=image: s.segment(x)},
                                 args.frames, device)["planned"]
            seconds, result = timing["wall"], timing["out"]
            rows.append({"cap_mb": cap, "size": side, "plan": result.plan.describe(),
                         "peak_mb": result.peak_memory_mb, "fps": 1 / seconds,
                         "under_cap": result.peak_memory_mb <= cap})
        segmenter.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="one 2448² frame, tiny model, best of 3 frames per method")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=("fp16", "fp32"), default="fp16")
    parser.add_argument("--preset", choices=("tiny", "lite", "paper"), default="lite",
                        help="random-init model size when --model is not given (default lite)")
    parser.add_argument("--model", type=Path, default=None, help="checkpoint instead of a preset")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2448, 5000])
    parser.add_argument("--patch", type=int, default=1504,
                        help="window of both methods (default 1504: the paper's DeepGlobe "
                             "protocol)")
    parser.add_argument("--overlap", type=int, default=376, help="default 376 (stride 1128)")
    parser.add_argument("--cap-mb", type=float, default=1500.0)
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--frames", type=int, default=3,
                        help="timed frames per method and size; the best one counts (default 3)")
    parser.add_argument("--caps", type=float, nargs="*", default=[1000, 1500, 3000],
                        help="CUDA only: measured peak vs each cap (default 1000 1500 3000)")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.preset, args.frames = [2448], "tiny", 3
    logging.basicConfig(level=logging.WARNING)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = (load_checkpoint(args.model) if args.model
             else build_model(getattr(SGHRQConfig, args.preset)(6))).eval()

    rows = [bench_size(model, side, args, device) for side in args.sizes]
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"model {args.model or args.preset}, cap {args.cap_mb:.0f} MB")
    print("| frame | windows (patch/overlap) | batch | naive FPS | batched FPS | speedup | "
          "CPU-time ratio | naive peak MB | batched peak MB | masks agree | "
          "planner's own plan: FPS (speedup) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']}² ({r['source']}) | {r['windows']} ({r['patch']}/{r['overlap']}) | "
              f"{r['batch']} | {r['naive_fps']:.3f} | {r['batched_fps']:.3f} | "
              f"{r['speedup']:.2f}× | {r['cpu_time_ratio']:.2f}× | {r['naive_peak_mb']:.0f} | "
              f"{r['batched_peak_mb']:.0f} | "
              f"{r['mask_agreement']:.4%} | {r['planned_fps']:.3f} ({r['planned_speedup']:.2f}×):"
              f" {r['planned']} |")
    caps = cap_sweep(model, args, device) if device.type == "cuda" and args.caps else []
    if caps:
        print("| cap MB | frame | plan | measured peak MB | under cap | FPS |")
        print("|---|---|---|---|---|---|")
        for c in caps:
            print(f"| {c['cap_mb']:.0f} | {c['size']}² | {c['plan']} | {c['peak_mb']:.0f} | "
                  f"{'yes' if c['under_cap'] else 'NO'} | {c['fps']:.2f} |")
    elif args.caps:
        print("cap sweep skipped: peak memory is measured on CUDA only (--device cuda)")
    first = rows[0]
    print(json.dumps({"speedup": round(first["speedup"], 3),
                      "batched_fps": round(first["batched_fps"], 4),
                      "naive_fps": round(first["naive_fps"], 4),
                      "planned_speedup": round(first["planned_speedup"], 3),
                      "device": args.device, "sizes": rows, "caps": caps}, default=str))


if __name__ == "__main__":
    main()
