"""The memory cap on a real GPU, in one go (< 8 min on one GPU): run it whenever a GPU is lent.

    .venv/bin/python benchmarks/gpu_check.py [--out out/gpu_check] [--backends cuda,tensorrt]
                                             [--budget-s 420] [--model PATH]

For each backend that comes up (eager CUDA; TensorRT where torch-tensorrt is installed), one
``Segmenter`` is built under the first cap and the cap is then *changed at run time*
(``set_memory_cap``) through 3000 -> 1500 -> 1000 MB, so both the enforcement after a change and
the release of what the old plan held are exercised. Under each cap it segments 2448², 5000² and
10000² frames and records:

* the allocator's view: ``result.peak_memory_mb`` (peak reserved + TensorRT engine bytes) and
  ``max_memory_allocated``;
* the device's view (what ``nvidia-smi`` / NVML shows, CUDA context included): the peak of
  ``total - free`` from ``torch.cuda.mem_get_info`` sampled every 5 ms during the frame, minus
  the same figure before the Segmenter existed (the baseline of other processes), and this
  process's NVML ``usedGpuMemory`` after the frame when pynvml is installed;
* after each cap change: reserved bytes (must be under the new cap);
* mask agreement with the CPU fp32 backend on the 2448² frame (fraction of equal pixels).

Writes ``report.json`` and ``report.md`` to ``--out``. Rows that would run past ``--budget-s``
are skipped and marked. Without CUDA it prints one line and exits 0. Exit status 1 when a
measured allocator peak exceeded its cap.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

CAPS_MB = (3000, 1500, 1000)
SIDES = (2448, 5000, 10000)


def _frame(side: int, seed: int = 0):
    """A structured frame (smooth colour fields + noise), not pure noise: masks then have
    regions whose agreement means something."""
    import numpy as np
    import torch

    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 12, 12, generator=generator)
    smooth = torch.nn.functional.interpolate(coarse, size=(side, side), mode="bilinear")[0]
    noise = torch.rand(3, side, side, generator=generator)
    image = ((0.85 * smooth + 0.15 * noise) * 255).to(torch.uint8).permute(1, 2, 0)
    return np.ascontiguousarray(image.numpy())


class DeviceUsedSampler:
    """Peak of ``total - free`` of the device while the block runs (the nvidia-smi figure)."""

    def __init__(self, device, period_s: float = 0.005) -> None:
        self.device = device
        self.period_s = period_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _used(self) -> int:
        import torch

        free, total = torch.cuda.mem_get_info(self.device)
        return total - free

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._used())
            time.sleep(self.period_s)

    def __enter__(self) -> DeviceUsedSampler:
        self.peak = self._used()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._used())


def nvml_process_used_mb() -> float | None:
    """This process's GPU memory as NVML reports it (None without pynvml or on Jetson)."""
    try:
        import os

        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        for process in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if process.pid == os.getpid() and process.usedGpuMemory is not None:
                return process.usedGpuMemory / 2**20
    except Exception:
        return None
    return None


def check_backend(
    name: str, model, baseline_used: int, deadline: float, cpu_masks: dict[int, object]
) -> dict:
    import numpy as np
    import torch

    from uhr_seg_ros.pipeline import Segmenter, SegmenterSettings

    device = torch.device("cuda", torch.cuda.current_device())
    entry: dict = {"backend": name, "rows": [], "cap_changes": []}
    start = time.perf_counter()
    try:
        segmenter = Segmenter.from_settings(
            SegmenterSettings(backend_order=(name,), memory_cap_mb=CAPS_MB[0]), model=model
        )
    except Exception as exc:
        entry["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return entry
    entry["describe"] = segmenter.describe()
    entry["startup_s"] = round(time.perf_counter() - start, 1)
    try:
        for index, cap in enumerate(CAPS_MB):
            if index:
                try:
                    segmenter.set_memory_cap(cap)
                except ValueError as exc:  # PlanError: nothing fits
                    entry["cap_changes"].append({"to_mb": cap, "error": str(exc)})
                    continue
                entry["cap_changes"].append(
                    {
                        "to_mb": cap,
                        "reserved_after_mb": round(torch.cuda.memory_reserved(device) / 2**20, 1),
                    }
                )
            for side in SIDES:
                row = {"cap_mb": cap, "side": side}
                if time.perf_counter() > deadline:
                    row["skipped"] = "time budget"
                    entry["rows"].append(row)
                    continue
                frame = _frame(side)
                torch.cuda.reset_peak_memory_stats(device)
                with DeviceUsedSampler(device) as sampler:
                    t0 = time.perf_counter()
                    result = segmenter.segment(frame)
                    row["seconds"] = round(time.perf_counter() - t0, 2)
                row.update(
                    plan=result.plan.describe(),
                    allocator_peak_mb=round(result.peak_memory_mb, 1),
                    max_allocated_mb=round(torch.cuda.max_memory_allocated(device) / 2**20, 1),
                    device_used_peak_mb=round((sampler.peak - baseline_used) / 2**20, 1),
                    nvml_process_mb=nvml_process_used_mb(),
                    within_cap=result.peak_memory_mb <= cap,
                )
                if side in cpu_masks:
                    row["agreement_with_cpu_fp32"] = round(
                        float(np.mean(result.mask == cpu_masks[side])), 5
                    )
                entry["rows"].append(row)
    finally:
        segmenter.close()
        entry["reserved_after_close_mb"] = round(torch.cuda.memory_reserved(device) / 2**20, 1)
    return entry


def markdown(report: dict) -> str:
    summary = (
        f"torch {report['torch']}, torch-tensorrt "
        f"{report.get('torch_tensorrt') or 'absent'}, {report['seconds']:.0f} s, "
        f"command `{report['command']}`"
    )
    lines = [f"# GPU check: {report['gpu']}", "", summary, ""]
    for entry in report["backends"]:
        lines.append(f"## {entry['backend']}: {entry.get('describe', entry.get('error'))}")
        header = (
            "| cap MB | frame | allocator peak MB | max allocated MB | device used MB "
            "| NVML MB | within cap | agreement | s |"
        )
        lines += ["", header, "|---|---|---|---|---|---|---|---|---|"]
        for row in entry["rows"]:
            if "skipped" in row:
                lines.append(
                    f"| {row['cap_mb']} | {row['side']}² | skipped ({row['skipped']}) | | | | | | |"
                )
                continue
            lines.append(
                f"| {row['cap_mb']} | {row['side']}² | {row['allocator_peak_mb']} | "
                f"{row['max_allocated_mb']} | {row['device_used_peak_mb']} | "
                f"{row['nvml_process_mb'] or 'n/a'} | {row['within_cap']} | "
                f"{row.get('agreement_with_cpu_fp32', '')} | {row['seconds']} |"
            )
        for change in entry["cap_changes"]:
            lines.append(
                f"\ncap change to {change['to_mb']} MB: "
                + (
                    f"reserved {change['reserved_after_mb']} MB after"
                    if "reserved_after_mb" in change
                    else change["error"]
                )
            )
        if "reserved_after_close_mb" in entry:
            lines.append(f"\nreserved after close(): {entry['reserved_after_close_mb']} MB")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/gpu_check"))
    parser.add_argument("--backends", default="cuda,tensorrt")
    parser.add_argument("--budget-s", type=float, default=420.0)
    parser.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device (torch {torch.__version__}); nothing measured")
        return 0
    from uhr_seg_ros.pipeline import Segmenter, SegmenterSettings, resolve_model

    started = time.perf_counter()
    deadline = started + args.budget_s
    model = resolve_model(SegmenterSettings(model_path=args.model))
    device = torch.device("cuda", torch.cuda.current_device())
    free, total = torch.cuda.mem_get_info(device)
    baseline_used = total - free
    cpu = Segmenter.from_settings(
        SegmenterSettings(backend_order=("cpu",), precision="fp32"), model=model
    )
    cpu_masks = {SIDES[0]: cpu.segment(_frame(SIDES[0])).mask}
    cpu.close()
    try:
        import torch_tensorrt

        trt_version = torch_tensorrt.__version__
    except ImportError:
        trt_version = None
    report = {
        "gpu": torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "torch_tensorrt": trt_version,
        "command": " ".join(sys.argv),
        "total_mb": round(total / 2**20),
        "baseline_used_mb": round(baseline_used / 2**20),
        "backends": [],
    }
    for name in [b.strip() for b in args.backends.split(",") if b.strip()]:
        if name == "tensorrt" and trt_version is None:
            report["backends"].append(
                {
                    "backend": name,
                    "error": "torch-tensorrt not installed",
                    "rows": [],
                    "cap_changes": [],
                }
            )
            continue
        report["backends"].append(check_backend(name, model, baseline_used, deadline, cpu_masks))
    report["seconds"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "report.md").write_text(markdown(report))
    over = [
        (e["backend"], r["cap_mb"], r["side"])
        for e in report["backends"]
        for r in e["rows"]
        if r.get("within_cap") is False
    ]
    print(
        f"gpu_check: wrote {args.out}/report.md; "
        + (f"OVER THE CAP: {over}" if over else "every measured allocator peak within its cap")
    )
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
