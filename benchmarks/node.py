"""Node adapter overhead: per-stage latency of ``seg_node`` versus the bare core, same frames.

For each frame size (4K 3840×2160 and DeepGlobe's 2448²) this script

1. starts ``seg_node`` as its own process (real DDS, the large-image Fast DDS profile, reliable
   input), sends one frame at a time as ``sensor_msgs/Image`` and waits for its mask
   (ping-pong, so no frame is dropped and queueing does not inflate the figures), then reads
   the node's per-stage percentiles from its ``stats`` topic (warm-up frames included: use
   enough ``--frames`` that the median ignores them);
2. runs ``Segmenter.segment`` in this process on the same frame, the same number of times, with
   the same model, backend, cap and tile plan, on a worker thread like the node's (the node is
   stopped first so both get the whole machine).

The adapter's own cost is ``decode`` (Image → RGB) + ``publish`` (mask message fill + publish,
plus the colour overlay with ``--color``); ``round trip`` adds DDS transport both ways.

    .venv/bin/python benchmarks/node.py                         # tiny model, 5 frames per size
    .venv/bin/python benchmarks/node.py --config lite --frames 10 --color --backend cuda

The weights are random: latency does not depend on their values.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from uhr_seg_ros.cli.demo import RosProcess
from uhr_seg_ros.ros.fastdds import profile_variables
from uhr_seg_ros.ros.stats import STAGES

SIZES: dict[str, tuple[int, int]] = {"3840x2160": (2160, 3840), "2448x2448": (2448, 2448)}
NAMESPACE = "/uhr_seg_bench"
INPUT_TOPIC = "/uhr_seg_bench/camera"
#: Stages the node reports (``segment`` is the core's total inside the node).
NODE_STAGES = tuple(stage for stage in STAGES if stage != "queue")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config",
        choices=("tiny", "lite"),
        default="tiny",
        help="random-weight model preset (default tiny)",
    )
    parser.add_argument("--frames", type=int, default=5, help="timed frames per size")
    parser.add_argument("--backend", default="cpu", help="backend order, comma-separated")
    parser.add_argument("--cap-mb", type=float, default=1500.0, help="memory cap in MB")
    # Pinned so that node and core do identical work: the planner's choice depends on a memory
    # model each process measures at start-up, and two measurements can pick different plans.
    parser.add_argument("--patch", type=int, default=1024, help="tile side (multiple of 32)")
    parser.add_argument("--overlap", type=int, default=128, help="tile overlap in pixels")
    parser.add_argument("--batch", type=int, default=2, help="tiles per batch")
    parser.add_argument(
        "--encoding",
        choices=("rgb8", "bgr8"),
        default="bgr8",
        help="input encoding (bgr8, what most camera drivers publish, costs a "
        "conversion; rgb8 decodes as a view)",
    )
    parser.add_argument(
        "--color",
        action="store_true",
        help="also subscribe to mask_color, so the node computes the overlay",
    )
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=300.0,
        help="seconds for the node to load, calibrate and answer a frame",
    )
    return parser.parse_args()


class Probe:
    """Publishes frames to the node and collects its masks and stats (own rclpy Context)."""

    def __init__(self, with_color: bool) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import Image

        from uhr_seg_ros.ros.node import topic_qos

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("uhr_seg_bench_probe", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.publisher = self.node.create_publisher(Image, INPUT_TOPIC, topic_qos("reliable"))
        self.mask_arrivals: dict[tuple[int, int], float] = {}
        self.stats: list[DiagnosticArray] = []
        self.node.create_subscription(
            Image, f"{NAMESPACE}/mask", self._on_mask, topic_qos("reliable")
        )
        self.node.create_subscription(
            DiagnosticArray, f"{NAMESPACE}/stats", self.stats.append, topic_qos("reliable")
        )
        if with_color:
            self.node.create_subscription(
                Image, f"{NAMESPACE}/mask_color", lambda _: None, topic_qos("reliable")
            )

    def _on_mask(self, msg) -> None:
        self.mask_arrivals[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = time.perf_counter()

    def send(self, msg, index: int) -> tuple[tuple[int, int], float]:
        """Publish ``msg`` with a unique stamp; (stamp key, send time)."""
        msg.header.stamp.sec, msg.header.stamp.nanosec = 1_000_000 + index, 0
        sent = time.perf_counter()
        self.publisher.publish(msg)
        return (msg.header.stamp.sec, 0), sent

    def wait(self, stamp: tuple[int, int], timeout: float) -> float | None:
        """Arrival time of the mask for ``stamp``, or None after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while stamp not in self.mask_arrivals and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)
        return self.mask_arrivals.get(stamp)

    def reset(self) -> None:
        """Forget masks and stats of a previous node run."""
        self.mask_arrivals.clear()
        self.stats.clear()

    def wait_any_mask(self, timeout: float) -> bool:
        """True once any mask has arrived (spinning at most ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while not self.mask_arrivals and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)
        return bool(self.mask_arrivals)

    def wait_idle(self, timeout: float) -> bool:
        """True once the node's newest stats report no frame in flight."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)
            if self.stats and any(
                kv.key == "frames_in_flight" and kv.value == "0"
                for kv in self.stats[-1].status[0].values
            ):
                return True
        return False

    def latest_stats(self, settle_s: float = 1.0) -> dict[str, str]:
        """Key/values of the newest stats message after ``settle_s`` of spinning."""
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)
        if not self.stats:
            raise RuntimeError("the node published no stats")
        return {kv.key: kv.value for kv in self.stats[-1].status[0].values}

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def bench_node(
    probe: Probe, msg, checkpoint: Path, args: argparse.Namespace, log: Path, first_index: int
) -> tuple[dict[str, str], list[float]]:
    """The node's stats after ``args.frames`` ping-pong frames, and the round trips (ms)."""
    node = RosProcess(
        "uhr_seg_ros.seg_node",
        [
            "-r",
            f"__ns:={NAMESPACE}",
            "-r",
            f"image:={INPUT_TOPIC}",
            "-p",
            "autostart:=true",
            "-p",
            f"model_path:={checkpoint}",
            "-p",
            f"backend_order:=[{args.backend}]",
            "-p",
            f"memory_cap_mb:={args.cap_mb}",
            "-p",
            f"patch_size:={args.patch}",
            "-p",
            f"overlap:={args.overlap}",
            "-p",
            f"batch_size:={args.batch}",
            # Reliable input: a best-effort 4K frame was lost once while torch kept both cores of
            # the 2-core test machine busy; one frame in flight at a time makes reliability free.
            "-p",
            "input_reliability:=reliable",
        ],
        log,
        os.environ,
    )
    probe.reset()
    try:
        # Warm-up frames until the node answers (model load, memory calibration, first plan),
        # then until it is idle, so that no warm-up frame competes with a timed one.
        deadline = time.monotonic() + args.startup_timeout
        index = first_index
        while not probe.wait_any_mask(timeout=5.0):
            if not node.running() or time.monotonic() > deadline:
                raise RuntimeError(f"seg_node did not answer a frame; see {log}")
            probe.send(msg, index)
            index += 1
        if not probe.wait_idle(timeout=120.0):
            raise RuntimeError(f"seg_node did not become idle within 120 s; see {log}")
        round_trips = []
        for _ in range(args.frames):
            stamp, sent = probe.send(msg, index)
            index += 1
            arrived = probe.wait(stamp, timeout=120.0)
            if arrived is None:
                raise RuntimeError(f"no mask for a frame within 120 s; see {log}")
            round_trips.append((arrived - sent) * 1e3)
        return probe.latest_stats(), round_trips
    finally:
        node.stop()


def bench_core(segmenter, frame: np.ndarray, frames: int) -> dict[str, list[float]]:
    """Per-stage milliseconds of ``frames`` calls of ``Segmenter.segment`` after one warm-up.

    Runs on a worker thread, as in the node: on the 2-core test machine the same calls on the
    main thread were 1.6× to 5× slower (likely glibc returning the main thread's large per-call
    temporaries to the OS, to be faulted in again on the next call).
    """
    timings: dict[str, list[float]] = {}

    def run() -> None:
        segmenter.segment(frame)
        for _ in range(frames):
            for stage, ms in segmenter.segment(frame).timings_ms.items():
                timings.setdefault(stage, []).append(ms)

    worker = threading.Thread(target=run, name="core_bench")
    worker.start()
    worker.join()
    return timings


def main() -> None:
    args = parse_args()
    os.environ.update(profile_variables(os.environ))  # before any participant exists
    import torch

    from uhr_seg_ros.data.synthetic import generate_scene
    from uhr_seg_ros.model import SGHRQConfig, build_model, load_checkpoint, save_checkpoint
    from uhr_seg_ros.pipeline import Segmenter, SegmenterSettings
    from uhr_seg_ros.ros.demo_source import rgb_to_message

    workdir = Path(tempfile.mkdtemp(prefix="uhr_seg_bench_node_"))
    torch.manual_seed(0)
    checkpoint = save_checkpoint(
        workdir / f"{args.config}.pt", build_model(getattr(SGHRQConfig, args.config)(num_classes=6))
    )
    settings = SegmenterSettings(
        backend_order=tuple(args.backend.split(",")),
        memory_cap_mb=args.cap_mb,
        patch_size=args.patch,
        overlap=args.overlap,
        batch_size=args.batch,
    )
    probe = Probe(args.color)
    segmenter = None
    rows = []
    try:
        for run, (label, (height, width)) in enumerate(SIZES.items()):
            frame = generate_scene((height, width), seed=1)[0]
            msg = rgb_to_message(frame, args.encoding, "camera")
            stats, round_trips = bench_node(
                probe, msg, checkpoint, args, workdir / f"seg_node_{label}.log", 1000 * run
            )
            if segmenter is None:
                segmenter = Segmenter.from_settings(settings, model=load_checkpoint(checkpoint))
            core = bench_core(segmenter, frame, args.frames)
            rows.append((label, stats, round_trips, core))
            print(
                f"{label}: node plan {stats.get('tile_plan')}; core plan "
                f"{segmenter.plan_for(height, width).describe()}",
                flush=True,
            )
    finally:
        probe.close()
        if segmenter is not None:
            segmenter.close()
    print_report(rows, args)


def print_report(rows, args: argparse.Namespace) -> None:
    """Markdown tables: node stages vs core stages (p50 ms), then the adapter's overhead."""
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    backend = rows[0][1].get("backend", args.backend)
    print(
        f"\nmodel {args.config} (random weights), backend {backend}, cap "
        f"{args.cap_mb:.0f} MB, input {args.encoding}, mask_color "
        f"{'subscribed' if args.color else 'not subscribed'}, {args.frames} frames per size, "
        f"p50 in ms; load average at the end {load}\n"
    )
    print("| frame | where | " + " | ".join(NODE_STAGES) + " | round trip |")
    print("|---|---|" + "---|" * (len(NODE_STAGES) + 1))
    for label, stats, round_trips, core in rows:
        node_cells = [stats.get(f"latency_{s}_p50_ms", "-") for s in NODE_STAGES]
        print(
            f"| {label} | node | "
            + " | ".join(node_cells)
            + f" | {statistics.median(round_trips):.1f} |"
        )
        # The core's total fills both the node's "segment" and "total" columns.
        core_cells = [
            f"{statistics.median(core['total' if s == 'segment' else s]):.1f}"
            if s in core or s == "segment"
            else "-"
            for s in NODE_STAGES
        ]
        print(f"| {label} | core | " + " | ".join(core_cells) + " | - |")
    # The node's percentiles include its warm-up frames (queued while the model loaded), so its
    # "total" is biased up; the round trip, measured here per timed frame, is not.
    print(
        "\n| frame | decode | publish | adapter overhead (decode + publish) | node segment − "
        "core total | round trip − (decode + segment + publish): DDS both ways, wake-ups |"
    )
    print("|---|---|---|---|---|---|")
    for label, stats, round_trips, core in rows:
        decode, segment, publish = (
            float(stats[f"latency_{stage}_p50_ms"]) for stage in ("decode", "segment", "publish")
        )
        core_total = statistics.median(core["total"])
        transport = statistics.median(round_trips) - (decode + segment + publish)
        print(
            f"| {label} | {decode:.1f} | {publish:.1f} | {decode + publish:.1f} | "
            f"{segment - core_total:+.1f} | {transport:.1f} |"
        )


if __name__ == "__main__":
    main()
