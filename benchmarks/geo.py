"""Orthomosaic mode: peak memory against raster area, and Ray batch throughput, 1 vs 2 workers.

    python benchmarks/geo.py memory --sizes 4000x4000 12000x9000      # the issue's done-when
    python benchmarks/geo.py memory --sizes 4000x4000 10000x10000 40000x40000:8192
    python benchmarks/geo.py batch --files 6 --size 1500                # 1 vs 2 Ray workers

``memory``: for each size (``WxH``, or ``WxH:F`` with imagery only in a centred F² footprint,
nodata around it), a synthetic georeferenced RGB GeoTIFF (tiled, DEFLATE) is generated
under --work (never committed), then ``uhr-seg segment IN --out mask.tif`` runs in a fresh
process; its peak RSS (``ru_maxrss``), its RSS after start-up (model loaded, before the first
block) and its wall time are printed, with the growth per added pixel against the first size.
The mask's CRS/transform/size are checked against the input every run.
``batch``: the same archive through ``uhr-seg batch`` on a local Ray cluster with 1 worker
(all CPUs, all threads) and with 2 workers (half each), start-up included and excluded.
The default model is a tiny random-init SGHRQ (memory does not depend on its weights; times
are the network's, use --model for a real checkpoint). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STRIP_ROWS = 1024


def make_raster(path: Path, height: int, width: int, footprint: int | None = None) -> None:
    """Smooth fields with some texture, written strip by strip (never whole in memory).

    ``footprint``: only a centred ``footprint``² square holds imagery, the rest is nodata (0),
    like the area outside a flight's footprint: every block is still read and written, but only
    the blocks with imagery are segmented, so a 40k² run takes minutes on a CPU while its peak
    (one block at a time) is that of a fully covered raster."""
    import rasterio
    from rasterio.transform import from_origin

    if path.is_file():
        return
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "BIGTIFF": "IF_SAFER",
        "transform": from_origin(500000.0, 5000000.0, 0.1, 0.1),
        "nodata": 0 if footprint else None,
    }
    rng = np.random.default_rng(0)
    tmp = path.with_suffix(".partial.tif")
    with rasterio.open(tmp, "w", **profile) as ds:
        xx = np.arange(width, dtype=np.float32)
        top, left = ((height - footprint) // 2, (width - footprint) // 2) if footprint else (0, 0)
        bottom, right = (top + footprint, left + footprint) if footprint else (height, width)
        for y0 in range(0, height, STRIP_ROWS):
            rows = min(STRIP_ROWS, height - y0)
            strip = np.zeros((3, rows, width), dtype=np.uint8)
            r0, r1 = max(y0, top) - y0, min(y0 + rows, bottom) - y0
            if r1 > r0:  # imagery only inside the footprint
                yy = np.arange(y0 + r0, y0 + r1, dtype=np.float32)[:, None]
                for b, (fx, fy) in enumerate(((0.002, 0.003), (0.004, 0.001), (0.001, 0.005))):
                    field = 128 + 90 * np.sin(xx[left:right] * fx + b) * np.cos(yy * fy)
                    noise = rng.integers(0, 24, field.shape)
                    strip[b, r0:r1, left:right] = np.clip(field + noise, 1, 255)
            ds.write(strip, window=rasterio.windows.Window(0, y0, width, rows))
    tmp.replace(path)


def child(args: argparse.Namespace) -> None:
    """One ``uhr-seg segment`` in this process; print RSS figures as JSON."""
    from uhr_seg_ros import pipeline
    from uhr_seg_ros.cli import main

    startup: dict[str, float] = {}
    original = pipeline.Segmenter.from_settings.__func__

    def from_settings(cls, *a, **k):  # record RSS once the model is up
        segmenter = original(cls, *a, **k)
        startup["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return segmenter

    pipeline.Segmenter.from_settings = classmethod(from_settings)
    start = time.perf_counter()
    argv = [
        "segment",
        args.input,
        "--out",
        args.output,
        "--device",
        "cpu",
        "--memory-cap-mb",
        str(args.memory_cap_mb),
    ]
    if args.model:
        argv += ["--model", args.model]
    rc = main(argv)
    print(
        json.dumps(
            {
                "rc": rc,
                "seconds": time.perf_counter() - start,
                "startup_rss_mb": startup.get("rss_mb"),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def tiny_checkpoint(work: Path) -> str:
    import torch

    from uhr_seg_ros.model import SGHRQConfig, build_model, save_checkpoint

    path = work / "tiny.pt"
    if not path.is_file():
        torch.manual_seed(0)
        save_checkpoint(path, build_model(SGHRQConfig.tiny(6)))
    return str(path)


def memory(args: argparse.Namespace) -> dict:
    import rasterio

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model = args.model or tiny_checkpoint(work)
    rows, base = [], None
    for size in args.sizes:
        dims, _, footprint_text = size.lower().partition(":")
        width, height = (int(v) for v in dims.split("x"))
        footprint = int(footprint_text) if footprint_text else None
        name = size.replace(":", "_fp")
        src, out = work / f"mosaic_{name}.tif", work / f"mask_{name}.tif"
        t0 = time.perf_counter()
        make_raster(src, height, width, footprint)
        generated = time.perf_counter() - t0
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "child",
                "--input",
                str(src),
                "--output",
                str(out),
                "--model",
                model,
                "--memory-cap-mb",
                str(args.memory_cap_mb),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode:
            raise SystemExit(f"{size}: child failed:\n{proc.stderr[-3000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        with rasterio.open(src) as a, rasterio.open(out) as b:
            same = (a.crs, a.transform, a.shape) == (b.crs, b.transform, b.shape)
        plan = next(
            (
                line.split(" blocks, ", 1)[1].split(")")[0]
                for line in proc.stderr.splitlines()
                if " blocks, " in line
            ),
            "",
        )
        row = {
            "size": size,
            "pixels": width * height,
            "plan": plan,
            "georef_identical": same,
            "generate_s": round(generated, 1),
            **result,
        }
        if base is None:
            base = row
        else:
            added = row["pixels"] - base["pixels"]
            row["bytes_per_added_pixel"] = (
                (row["peak_rss_mb"] - base["peak_rss_mb"]) * 2**20 / added
            )
        rows.append(row)
        print(json.dumps(row), flush=True)
        if not args.keep:
            src.unlink()
            out.unlink()
    return {"memory": rows, "load_avg": os.getloadavg()}


def batch(args: argparse.Namespace) -> dict:
    import cv2

    work = Path(args.work) / "batch"
    inputs = work / "in"
    inputs.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(args.files):
        path = inputs / f"frame_{i:03d}.png"
        if not path.is_file():
            yy, xx = np.mgrid[0 : args.size, 0 : args.size].astype(np.float32)
            img = 128 + 90 * np.sin(xx * 0.01 * (i + 1)) * np.cos(yy * 0.007)
            img = np.clip(
                img[..., None] + rng.integers(0, 30, (args.size, args.size, 3)), 0, 255
            ).astype(np.uint8)
            cv2.imwrite(str(path), img)
    model = args.model or tiny_checkpoint(Path(args.work))
    rows = []
    for workers in (1, 2):
        out = work / f"out_{workers}"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "uhr_seg_ros.cli",
                "batch",
                str(inputs),
                "--out",
                str(out),
                "--workers",
                str(workers),
                "--model",
                model,
                "--device",
                "cpu",
                "--memory-cap-mb",
                str(args.memory_cap_mb),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - t0
        manifest = json.loads((out / "manifest.json").read_text())
        finished = sorted(r["finished_at"] for r in manifest["records"])
        busy = sum(r["seconds"] for r in manifest["records"])
        rows.append(
            {
                "workers": workers,
                "rc": proc.returncode,
                "wall_s": round(wall, 1),
                "files": args.files,
                "size": args.size,
                "summary": manifest["summary"],
                "sum_file_s": round(busy, 1),
                "first_last": [finished[0], finished[-1]],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    # Second run of the 2-worker folder: everything is skipped.
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "uhr_seg_ros.cli",
            "batch",
            str(inputs),
            "--out",
            str(work / "out_2"),
            "--workers",
            "2",
            "--model",
            model,
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    rerun = {
        "rerun_rc": proc.returncode,
        "rerun_s": round(time.perf_counter() - t0, 1),
        "rerun_log": next((line for line in proc.stderr.splitlines() if "done before" in line), ""),
    }
    print(json.dumps(rerun), flush=True)
    return {
        "batch": rows,
        "speedup_2_vs_1": rows[0]["wall_s"] / rows[1]["wall_s"],
        **rerun,
        "load_avg": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="mode", required=True)
    for name in ("memory", "batch"):
        p = sub.add_parser(name)
        p.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "uhr_geo_bench"))
        p.add_argument("--model", default=None, help="checkpoint (default: tiny random init)")
        p.add_argument("--memory-cap-mb", type=float, default=1500)
    sub.choices["memory"].add_argument("--sizes", nargs="+", default=["4000x4000", "12000x9000"])
    sub.choices["memory"].add_argument(
        "--keep", action="store_true", help="keep the generated rasters and masks"
    )
    sub.choices["batch"].add_argument("--files", type=int, default=6)
    sub.choices["batch"].add_argument("--size", type=int, default=1500)
    c = sub.add_parser("child")
    c.add_argument("--input")
    c.add_argument("--output")
    c.add_argument("--model")
    c.add_argument("--memory-cap-mb", type=float, default=1500)
    args = parser.parse_args()
    if args.mode == "child":
        child(args)
        return
    print(json.dumps((memory if args.mode == "memory" else batch)(args)))


if __name__ == "__main__":
    main()
