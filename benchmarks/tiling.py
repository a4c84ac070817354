"""How close the tiled segmenter comes to the machine's limit, on real tiles, in one run.

Sections (every ratio is taken between figures measured in this same process):

1. **Roofline.** fp32 GEMM throughput measured now (``torch.mm`` of 2048² matrices, best of a
   few) × the model's FLOPs per frame (``FlopCounterMode`` on the meta device: convolutions and
   matmuls) = the least time a frame could take if the network ran at GEMM speed.
2. **Files.** What ``uhr-seg segment DIR --out DIR`` does per image (decode, segment, encode the
   PNG; the same functions, one Segmenter, the planner's own plan) on the real 2448² tiles of
   ``../shared/data/deepglobe_unlabelled``; steady state = median over the images after the
   first (which plans and warms up). Ratio to the roofline.
3. **Naive slide loop** of common toolboxes at the paper's DeepGlobe protocol (1504 window,
   1128 stride, one window per forward on the plain unfolded model, full-frame float sums):
   the segmenter's frame time against it on the same frames, the two taking turns.
4. **Peak memory against the cap** (CPU: accounted from the measured memory model; CUDA:
   measured ``max_memory_allocated`` + engine bytes; with ``--device cuda`` also a cap sweep).
5. **Frame edges.** Pixel accuracy of the bottom/right 8 px against the top/left 8 px on the
   held-out labelled tiles (the two the bundled model never trained on), for the segmenter, the
   segmenter on the frame rotated 180° (a control: the same pixels in the other corner of the
   frame) and the old behaviour (one window zero-padded past the frame).
6. **Blending.** Uniform averaging against Hann weighting on the same held-out tiles: mIoU,
   pixel accuracy and accuracy on the seams (within 8 px of an interior window border), for
   the planner's plan and for 512 px windows (many seams).

    python benchmarks/tiling.py                      # CPU, bundled model, all sections
    python benchmarks/tiling.py --frames 3 --naive-frames 1 --skip-blend   # shorter
    python benchmarks/tiling.py --device cuda        # GPU: CUDA eager (+ cap sweep)

Sections needing ../shared/data are skipped (with a line saying so) when it is absent.
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from uhr_seg_ros.cli.segment import segment_image_file
from uhr_seg_ros.data.image_io import read_rgb
from uhr_seg_ros.model import load_checkpoint
from uhr_seg_ros.paths import default_model_path, shared_data_dir
from uhr_seg_ros.pipeline import Segmenter, SegmenterSettings

MB = 2**20
EDGE = 8  # px: width of the frame-edge and seam bands


def naive_slide(
    model: torch.nn.Module, image: np.ndarray, patch: int, overlap: int, device: torch.device
) -> np.ndarray:
    """The baseline: the sliding-window loop most toolboxes ship (one window per forward, crops
    cut on the host, each window's logits padded to a full-frame buffer and summed)."""
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


def gemm_gflops(device: torch.device, side: int = 2048, repeats: int = 5) -> float:
    """Best fp32 ``torch.mm`` throughput of ``side²`` matrices (2·side³ FLOPs each)."""
    a = torch.randn(side, side, device=device)
    b = torch.randn(side, side, device=device)
    best = math.inf
    for _ in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * side**3 / best / 1e9


def flops_per_pixel(model: torch.nn.Module, patch: int = 1024) -> float:
    """Convolution + matmul FLOPs per input pixel of one forward (shapes only, meta device)."""
    from torch.utils.flop_counter import FlopCounterMode

    meta = copy.deepcopy(model).to("meta").eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta(torch.zeros(1, 3, patch, patch, device="meta"))
    return counter.get_total_flops() / patch**2


def real_tiles(limit: int) -> list[Path]:
    root = shared_data_dir()
    if root is None:
        return []
    return sorted((root / "deepglobe_unlabelled").glob("*.jpg"))[:limit]


#: Labelled DeepGlobe tiles the bundled model never trained on (models/MODEL_CARD.md).
HELD_OUT_TILES = ("10452", "6399")


def held_out_tiles():
    """The labelled tiles of :data:`HELD_OUT_TILES` (skipped when ../shared/data is absent)."""
    from uhr_seg_ros.data.datasets import build_dataset

    root = shared_data_dir()
    if root is None or not (root / "deepglobe").is_dir():
        return []
    dataset = build_dataset(f"deepglobe:{root / 'deepglobe'}", "all")
    return [
        dataset[i]
        for i, name in enumerate(dataset.names)
        if any(name.startswith(tile) for tile in HELD_OUT_TILES)
    ]


def section_files(segmenter: Segmenter, files: list[Path], roofline_s: float) -> dict:
    with tempfile.TemporaryDirectory() as out:
        seconds, plan = [], None
        for path in files:
            start = time.perf_counter()
            result, _ = segment_image_file(segmenter, path, Path(out) / f"{path.stem}.png")
            seconds.append(time.perf_counter() - start)
            plan = result
    steady = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
    return {
        "images": len(files),
        "first_s": seconds[0],
        "steady_s": steady,
        "per_image_s": [round(s, 3) for s in seconds],
        "plan": plan.plan.describe(),
        "timings_ms": {k: round(v) for k, v in plan.timings_ms.items()},
        "peak_mb": plan.peak_memory_mb,
        "vs_roofline": steady / roofline_s,
    }


def section_naive(
    segmenter: Segmenter,
    model: torch.nn.Module,
    files: list[Path],
    device: torch.device,
    rounds: int,
) -> dict:
    plain = copy.deepcopy(model).eval().to(device)
    naive_s, ours_s, agree = [], [], []
    for path in files[:rounds]:
        image = read_rgb(path)
        start = time.perf_counter()
        reference = naive_slide(plain, image, 1504, 376, device)
        naive_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        ours = segmenter.segment(image).mask
        ours_s.append(time.perf_counter() - start)
        agree.append(float((ours == reference).mean()))
    naive, fast = statistics.median(naive_s), statistics.median(ours_s)
    return {
        "frames": len(naive_s),
        "naive_s": naive,
        "segmenter_s": fast,
        "speedup": naive / fast,
        "mask_agreement": statistics.mean(agree),
        "naive_per_frame_s": [round(s, 3) for s in naive_s],
        "segmenter_per_frame_s": [round(s, 3) for s in ours_s],
    }


def _accuracy(pred: np.ndarray, truth: np.ndarray) -> float:
    valid = truth != 255
    return float((pred[valid] == truth[valid]).mean()) if valid.any() else float("nan")


def edge_bands(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Pixel accuracy of the top + left ``EDGE`` px and of the bottom + right ``EDGE`` px."""
    first = np.concatenate([pred[:EDGE].ravel(), pred[:, :EDGE].ravel()])
    first_t = np.concatenate([truth[:EDGE].ravel(), truth[:, :EDGE].ravel()])
    last = np.concatenate([pred[-EDGE:].ravel(), pred[:, -EDGE:].ravel()])
    last_t = np.concatenate([truth[-EDGE:].ravel(), truth[:, -EDGE:].ravel()])
    return _accuracy(first, first_t), _accuracy(last, last_t)


def zero_padded_single_window(
    model: torch.nn.Module, image: np.ndarray, device: torch.device, divisor: int = 32
) -> np.ndarray:
    """The old behaviour: one window rounded up to the divisor, zeros past the frame."""
    height, width = image.shape[:2]
    side = -(-max(height, width) // divisor) * divisor
    frame = torch.zeros(1, 3, side, side, device=device)
    frame[0, :, :height, :width] = torch.from_numpy(image).permute(2, 0, 1).float()
    with torch.inference_mode():
        return model(frame)[0, :, :height, :width].argmax(0).to(torch.uint8).cpu().numpy()


def section_edges(
    segmenter: Segmenter, model: torch.nn.Module, samples, device: torch.device
) -> dict:
    plain = copy.deepcopy(model).eval().to(device)
    rows = {
        "segmenter": [],
        "segmenter, frame rotated 180° (control)": [],
        "zero-padded single window (before)": [],
    }
    for sample in samples:
        rows["segmenter"].append(edge_bands(segmenter.segment(sample.image).mask, sample.label))
        # The control: the same pixels, presented with bottom/right first. If the gap follows
        # the pixels, it is the land cover of these bands; if it follows the position in the
        # frame, it is the network or the tiler.
        rotated = np.ascontiguousarray(sample.image[::-1, ::-1])
        unrotated = segmenter.segment(rotated).mask[::-1, ::-1]
        rows["segmenter, frame rotated 180° (control)"].append(edge_bands(unrotated, sample.label))
        rows["zero-padded single window (before)"].append(
            edge_bands(zero_padded_single_window(plain, sample.image, device), sample.label)
        )
    out = {}
    for name, pairs in rows.items():
        top_left = float(np.nanmean([p[0] for p in pairs]))
        bottom_right = float(np.nanmean([p[1] for p in pairs]))
        out[name] = {
            "top_left": top_left,
            "bottom_right": bottom_right,
            "relative_gap": (top_left - bottom_right) / top_left,
        }
    out["plan"] = segmenter.plan_for(*samples[0].image.shape[:2]).describe()
    return out


def seam_mask(plan) -> np.ndarray:
    """True within ``EDGE`` px of an interior window border (where windows start or end)."""
    grid = plan.grid
    mask = np.zeros((grid.height, grid.width), bool)
    for starts, length, axis in (
        (grid.row_starts, grid.height, 0),
        (grid.col_starts, grid.width, 1),
    ):
        for s in starts:
            for edge in (s, s + grid.patch):
                if 0 < edge < length:
                    band = slice(max(edge - EDGE, 0), min(edge + EDGE, length))
                    if axis == 0:
                        mask[band] = True
                    else:
                        mask[:, band] = True
    return mask


def section_blend(model: torch.nn.Module, samples, common: dict, num_classes: int) -> list:
    from uhr_seg_ros.evaluation.metrics import ConfusionMatrix

    rows = []
    for label, pins in (("planner's plan", {}), ("512 px windows", {"patch_size": 512})):
        for blend in ("uniform", "hann"):
            segmenter = Segmenter.from_settings(
                SegmenterSettings(blend=blend, **pins, **common), model=copy.deepcopy(model)
            )
            matrix, seam_hits, seam_total, off_hits, off_total = (
                ConfusionMatrix(num_classes),
                0,
                0,
                0,
                0,
            )
            for sample in samples:
                result = segmenter.segment(sample.image)
                matrix.update(result.mask, sample.label)
                seams, valid = seam_mask(result.plan), sample.label != 255
                right = (result.mask == sample.label) & valid
                seam_hits += int(right[seams].sum())
                seam_total += int(valid[seams].sum())
                off_hits += int(right[~seams].sum())
                off_total += int(valid[~seams].sum())
            rows.append(
                {
                    "windows": label,
                    "blend": blend,
                    "miou": matrix.miou(),
                    "pixel_accuracy": matrix.pixel_accuracy(),
                    "seam_accuracy": seam_hits / max(seam_total, 1),
                    "off_seam_accuracy": off_hits / max(off_total, 1),
                    "plan": result.plan.describe(),
                }
            )
            segmenter.close()
    return rows


def cap_sweep(model, args, device: torch.device, image: np.ndarray) -> list[dict]:
    """CUDA only: planner-chosen plans under each cap, measured peak vs the cap."""
    rows = []
    for cap in args.caps:
        settings = SegmenterSettings(
            backend_order=(args.device,),
            precision=args.precision,
            memory_cap_mb=cap,
            max_batch=args.max_batch,
        )
        segmenter = Segmenter.from_settings(settings, model=copy.deepcopy(model))
        segmenter.segment(image)
        start = time.perf_counter()
        result = segmenter.segment(image)
        torch.cuda.synchronize(device)
        rows.append(
            {
                "cap_mb": cap,
                "plan": result.plan.describe(),
                "peak_mb": result.peak_memory_mb,
                "fps": 1 / (time.perf_counter() - start),
                "under_cap": result.peak_memory_mb <= cap,
            }
        )
        segmenter.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=("fp16", "fp32"), default="fp16")
    parser.add_argument(
        "--model", type=Path, default=None, help="checkpoint (default: the bundled model)"
    )
    parser.add_argument(
        "--frames", type=int, default=5, help="real tiles through the files section (default 5)"
    )
    parser.add_argument(
        "--naive-frames",
        type=int,
        default=2,
        help="frames of the naive-loop comparison (default 2)",
    )
    parser.add_argument("--cap-mb", type=float, default=1500.0)
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--skip-blend", action="store_true", help="skip section 6")
    parser.add_argument(
        "--caps",
        type=float,
        nargs="*",
        default=[1000, 1500, 3000],
        help="CUDA only: measured peak vs each cap (default 1000 1500 3000)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    device = torch.device(args.device)
    model = load_checkpoint(args.model or default_model_path()).eval()
    common = {
        "backend_order": (args.device,),
        "precision": args.precision,
        "memory_cap_mb": args.cap_mb,
        "max_batch": args.max_batch,
    }
    report: dict = {
        "device": args.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "model": str(args.model or "bundled"),
    }

    files = real_tiles(args.frames)
    if not files:
        print("../shared/data/deepglobe_unlabelled not found: the real-tile sections are skipped")
        print(json.dumps(report))
        return
    height, width = read_rgb(files[0]).shape[:2]
    gflops = gemm_gflops(device)
    per_pixel = flops_per_pixel(model)
    roofline_s = per_pixel * height * width / (gflops * 1e9)
    report["roofline"] = {
        "gemm_gflops": gflops,
        "flops_per_pixel": per_pixel,
        "frame": f"{width}x{height}",
        "roofline_s": roofline_s,
    }
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(
        f"1. roofline: GEMM {gflops:.0f} GFLOP/s × {per_pixel / 1e3:.1f} kFLOP/px × "
        f"{width}x{height} = {roofline_s:.3f} s per frame"
    )

    segmenter = Segmenter.from_settings(SegmenterSettings(**common), model=copy.deepcopy(model))
    files_row = section_files(segmenter, files, roofline_s)
    report["files"] = files_row
    print(
        f"2. files ({files_row['images']} real tiles, decode + segment + PNG): steady "
        f"{files_row['steady_s']:.3f} s per image = {files_row['vs_roofline']:.2f}× roofline "
        f"(first {files_row['first_s']:.2f} s); plan {files_row['plan']}; "
        f"phases ms {files_row['timings_ms']}"
    )
    naive_row = section_naive(segmenter, model, files, device, args.naive_frames)
    report["naive"] = naive_row
    print(
        f"3. naive slide loop 1504/1128: {naive_row['naive_s']:.3f} s vs segmenter "
        f"{naive_row['segmenter_s']:.3f} s per frame = {naive_row['speedup']:.2f}× "
        f"({naive_row['frames']} frames, masks agree on {naive_row['mask_agreement']:.1%})"
    )
    report["memory"] = {
        "cap_mb": args.cap_mb,
        "peak_mb": files_row["peak_mb"],
        "measured": device.type == "cuda",
    }
    print(
        f"4. peak memory {files_row['peak_mb']:.0f} MB of the {args.cap_mb:.0f} MB cap "
        f"({'measured' if device.type == 'cuda' else 'accounted: CPU'})"
    )

    samples = held_out_tiles()
    if samples:
        edges = section_edges(segmenter, model, samples, device)
        report["edges"] = edges
        for name in (
            "segmenter",
            "segmenter, frame rotated 180° (control)",
            "zero-padded single window (before)",
        ):
            e = edges[name]
            print(
                f"5. edges, {name}: top/left {e['top_left']:.1%}, bottom/right "
                f"{e['bottom_right']:.1%} (gap {e['relative_gap']:+.1%} of top/left)"
            )
        if not args.skip_blend:
            report["blend"] = section_blend(model, samples, common, model.config.num_classes)
            print("6. | windows | blend | mIoU | pixel acc. | seam acc. | off-seam acc. |")
            for r in report["blend"]:
                print(
                    f"   | {r['windows']} | {r['blend']} | {r['miou']:.2%} | "
                    f"{r['pixel_accuracy']:.2%} | {r['seam_accuracy']:.2%} | "
                    f"{r['off_seam_accuracy']:.2%} |"
                )
    else:
        print("5./6. ../shared/data/deepglobe not found: edge and blending sections skipped")
    segmenter.close()

    if device.type == "cuda" and args.caps:
        report["caps"] = cap_sweep(model, args, device, read_rgb(files[0]))
        for c in report["caps"]:
            print(
                f"cap {c['cap_mb']:.0f} MB: {c['plan']}: measured {c['peak_mb']:.0f} MB "
                f"({'under' if c['under_cap'] else 'OVER'}), {c['fps']:.2f} FPS"
            )
    else:
        print("cap sweep not run: peak memory is measured on CUDA only (--device cuda)")
    print(json.dumps(report, default=str))


if __name__ == "__main__":
    main()
