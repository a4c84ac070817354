"""``uhr-seg demo``: the node and a demo camera as real ROS 2 processes, masks written to a folder.

    uhr-seg demo                                   # bundled model on the bundled sample frame
    uhr-seg demo --source synthetic --frames 5 --out out/demo
    uhr-seg demo --model my.pt --source /data/frames --backend cuda,cpu

What ``ros2 launch uhr_seg_ros seg.launch.py demo:=true`` does, for a machine without the ROS 2
CLI: starts ``seg_node`` (namespace /uhr_seg, input /camera/image_raw) and ``demo_source`` as
processes talking over real DDS with the large-image Fast DDS profile, subscribes to
``/uhr_seg/mask_color`` and ``/uhr_seg/stats``, writes the first colour masks as PNG and prints
the node's statistics. Exits 0 when the masks arrived, 1 with the reason otherwise (never waits
longer than --timeout). The processes' logs are kept in the output folder.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from uhr_seg_ros.cli.segmenter_options import add_segmenter_arguments

if TYPE_CHECKING:
    from uhr_seg_ros.settings import SegmenterSettings

LOGGER = logging.getLogger("uhr-seg.demo")
NAMESPACE = "/uhr_seg"
IMAGE_TOPIC = "/camera/image_raw"
#: Seconds a process gets to exit after SIGINT before it is killed.
STOP_TIMEOUT_S = 10.0
#: Log lines of a failed process shown to the user.
LOG_TAIL_LINES = 15


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo",
        help="run the node on a demo camera over real DDS and write colour masks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("out/demo"),
        help="folder for the colour masks and process logs (default out/demo)",
    )
    parser.add_argument(
        "--frames", type=int, default=3, help="colour masks to collect before stopping (default 3)"
    )
    parser.add_argument(
        "--source",
        default="sample",
        help="sample (bundled frame), synthetic, or an image file / folder",
    )
    add_segmenter_arguments(parser)
    parser.add_argument(
        "--rate", type=float, default=1.0, help="demo camera frame rate in Hz (default 1)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds to wait for the masks, model loading included (default 300)",
    )
    parser.set_defaults(func=run)
    return parser


class RosProcess:
    """``python -m module --ros-args ...`` as a child process, its output kept in ``log_path``."""

    def __init__(
        self, module: str, ros_args: Sequence[str], log_path: Path, env: Mapping[str, str]
    ) -> None:
        self.name = module.rsplit(".", 1)[-1]
        self.log_path = log_path
        self._log_file = open(log_path, "wb")  # noqa: SIM115 - closed by stop()
        self.popen = subprocess.Popen(
            [sys.executable, "-m", module, "--ros-args", *ros_args],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=dict(env),
        )

    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> int:
        """SIGINT (a clean rclpy shutdown), SIGKILL after STOP_TIMEOUT_S; the exit code."""
        if self.running():
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log_file.close()
        return self.popen.returncode

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the log, indented for the terminal."""
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join("    " + line for line in text) or "    (empty log)"


def node_parameter_arguments(settings: SegmenterSettings) -> list[str]:
    """``-p name:=value`` for every segmenter setting the node has a parameter for (its sentinels
    for "the planner decides"), so the node segments exactly as the flags say."""
    arguments = []
    for name, value in settings.as_sentinels().items():
        if isinstance(value, list):
            text = f"[{','.join(value)}]"
        elif isinstance(value, str):
            text = f"'{value}'" if value else "''"
        else:
            text = str(value)
        arguments += ["-p", f"{name}:={text}"]
    return arguments


def run(args: argparse.Namespace) -> int:
    from uhr_seg_ros.cli.segmenter_options import settings_from_args
    from uhr_seg_ros.paths import default_model_path
    from uhr_seg_ros.ros.fastdds import profile_variables

    settings = settings_from_args(args)  # checked here: a typo fails before any process starts
    model = Path(args.model) if args.model else default_model_path()
    if not model.is_file():
        raise FileNotFoundError(
            f"model {model} does not exist"
            + ("" if args.model else " (the bundled model is not installed yet)")
            + "; pass a checkpoint with --model"
        )
    if args.frames < 1 or args.rate <= 0 or args.timeout <= 0:
        raise ValueError("--frames, --rate and --timeout must be positive")
    args.out.mkdir(parents=True, exist_ok=True)

    # The profile must be in this process's environment before rclpy creates a participant.
    os.environ.update(profile_variables(os.environ))
    node = RosProcess(
        "uhr_seg_ros.seg_node",
        [
            "-r",
            f"__ns:={NAMESPACE}",
            "-r",
            f"image:={IMAGE_TOPIC}",
            "-p",
            "autostart:=true",
            *node_parameter_arguments(settings.replace(model_path=str(model.resolve()))),
        ],
        args.out / "seg_node.log",
        os.environ,
    )
    camera = RosProcess(
        "uhr_seg_ros.ros.demo_source",
        [
            "-r",
            f"image:={IMAGE_TOPIC}",
            "-p",
            f"source:={args.source}",
            "-p",
            f"rate_hz:={args.rate}",
        ],
        args.out / "demo_source.log",
        os.environ,
    )
    processes = (node, camera)
    try:
        failure = _collect(args, processes)
    finally:
        codes = [p.stop() for p in processes]
    if failure:
        LOGGER.error("%s", failure)
        for process, code in zip(processes, codes, strict=True):
            LOGGER.error(
                "%s (exit %s), end of %s:\n%s",
                process.name,
                code,
                process.log_path,
                process.log_tail(),
            )
        return 1
    return 0


def _collect(args: argparse.Namespace, processes: Sequence[RosProcess]) -> str:
    """Write ``args.frames`` colour masks and print the stats; the failure message or ''."""
    import cv2
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    from uhr_seg_ros.ros.image_conversion import image_to_rgb
    from uhr_seg_ros.ros.node import topic_qos

    context = rclpy.Context()
    rclpy.init(context=context)
    viewer = rclpy.create_node("uhr_seg_demo_viewer", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(viewer)
    masks: list[Path] = []
    latest_stats: list[DiagnosticArray] = []

    def on_color(msg: Image) -> None:
        if len(masks) < args.frames:
            path = args.out / f"mask_color_{len(masks):03d}.png"
            cv2.imwrite(str(path), cv2.cvtColor(image_to_rgb(msg), cv2.COLOR_RGB2BGR))
            masks.append(path)
            print(f"mask {len(masks)}/{args.frames}: {msg.width}×{msg.height} -> {path}")

    try:
        viewer.create_subscription(
            Image, f"{NAMESPACE}/mask_color", on_color, topic_qos("reliable")
        )
        viewer.create_subscription(
            DiagnosticArray, f"{NAMESPACE}/stats", latest_stats.append, topic_qos("reliable")
        )
        print(
            f"waiting for {args.frames} masks (model loading and the first frame take a while "
            f"on a CPU; at most {args.timeout:.0f} s) ..."
        )
        deadline = time.monotonic() + args.timeout
        while len(masks) < args.frames:
            if time.monotonic() > deadline:
                return (
                    f"only {len(masks)} of {args.frames} masks arrived within "
                    f"{args.timeout:.0f} s; raise --timeout on a slow machine"
                )
            exited = [p.name for p in processes if not p.running()]
            if exited:
                return f"{' and '.join(exited)} exited before the masks arrived"
            executor.spin_once(timeout_sec=0.1)
        # The node publishes stats right after each mask; give the last one a moment.
        settle = time.monotonic() + 2.0
        while time.monotonic() < settle:
            executor.spin_once(timeout_sec=0.1)
        if latest_stats:
            print(format_stats(latest_stats[-1]))
        return ""
    finally:
        executor.shutdown()
        viewer.destroy_node()
        context.try_shutdown()


def format_stats(array: Any) -> str:
    """The node's stats message (diagnostic_msgs/DiagnosticArray) as a small table."""
    lines = []
    for status in array.status:
        values = {kv.key: kv.value for kv in status.values}
        lines.append(f"{status.name}: {status.message}")
        for key in (
            "backend",
            "tile_plan",
            "memory_cap_mb",
            "peak_memory_mb",
            "fps",
            "frames_received",
            "frames_published",
            "frames_dropped",
            "frames_rejected",
        ):
            if key in values:
                lines.append(f"  {key:<17} {values[key]}")
        stages = [
            k[len("latency_") : -len("_p50_ms")]
            for k in values
            if k.startswith("latency_") and k.endswith("_p50_ms")
        ]
        if stages:
            lines.append(f"  {'latency (ms)':<17} {'p50':>9} {'p95':>9} {'p99':>9}")
            for stage in stages:
                row = [values.get(f"latency_{stage}_p{q}_ms", "-") for q in (50, 95, 99)]
                lines.append(f"  {stage:<17} {row[0]:>9} {row[1]:>9} {row[2]:>9}")
    return "\n".join(lines)
