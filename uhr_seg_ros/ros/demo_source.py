"""A demo camera: publishes ``sensor_msgs/Image`` frames on ``image`` at a fixed rate.

Stands in for a UAV camera in ``ros2 launch uhr_seg_ros seg.launch.py demo:=true`` and
``uhr-seg demo``. Frames come from the bundled sample frame (``source:=sample``), seeded synthetic
aerial scenes (``source:=synthetic``), or an image file / a folder of images (``source:=PATH``).

Run it alone with ``ros2 run uhr_seg_ros demo_source`` or
``python -m uhr_seg_ros.ros.demo_source --ros-args -p source:=synthetic \
-r image:=/camera/image_raw``.

Frames are only published while someone subscribes, so ``count:=N`` means N frames offered to a
listener, not N frames lost before discovery finished.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from rclpy.task import Future
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from uhr_seg_ros.data.datasets import IMAGE_SUFFIXES
from uhr_seg_ros.data.image_io import read_rgb
from uhr_seg_ros.paths import models_dir
from uhr_seg_ros.ros.image_conversion import fill_image_msg
from uhr_seg_ros.ros.runner import run_node

SAMPLE_FRAME_NAME = "sample_frame.jpg"
ENCODINGS: tuple[str, ...] = ("rgb8", "bgr8", "mono8")
RELIABILITIES: dict[str, QoSReliabilityPolicy] = {
    "best_effort": QoSReliabilityPolicy.BEST_EFFORT,
    "reliable": QoSReliabilityPolicy.RELIABLE,
}
#: Distinct synthetic scenes cycled through (a 2048² scene takes a few seconds to generate).
SYNTHETIC_SCENES = 2
#: Sources with at most this many frames keep each frame's message after its first use; larger
#: folders are read frame by frame so a folder of a thousand 4K images does not fill the memory.
CACHE_LIMIT = 8

FrameLoader = Callable[[], np.ndarray]


def frame_loaders(source: str, synthetic_size: tuple[int, int]) -> list[FrameLoader]:
    """One loader per distinct frame of ``source`` (``sample``, ``synthetic``, file or folder)."""
    if source == "sample":
        path = models_dir() / SAMPLE_FRAME_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"the bundled sample frame {path} is missing; use source:=synthetic or "
                "source:=/path/to/images"
            )
        return [partial(read_rgb, path)]
    if source == "synthetic":
        return [partial(_scene, synthetic_size, i) for i in range(SYNTHETIC_SCENES)]
    path = Path(source).expanduser()
    if path.is_file():
        return [partial(read_rgb, path)]
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
        return [partial(read_rgb, p) for p in images]
    raise FileNotFoundError(
        f"source {source!r} is neither 'sample', 'synthetic', an image file nor a folder"
    )


def _scene(size: tuple[int, int], index: int) -> np.ndarray:
    from uhr_seg_ros.data.synthetic import generate_scene

    return generate_scene(size, seed=(0, index))[0]


def rgb_to_message(rgb: np.ndarray, encoding: str, frame_id: str) -> Image:
    """An Image message holding ``rgb`` (``H×W×3`` uint8) re-encoded as ``encoding``."""
    header = Header(frame_id=frame_id)
    if encoding == "mono8":
        return fill_image_msg(Image(), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), header)
    if encoding == "bgr8":
        msg = fill_image_msg(Image(), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), header)
        msg.encoding = "bgr8"
        return msg
    return fill_image_msg(Image(), np.ascontiguousarray(rgb), header)


class DemoSource(Node):
    """Publishes the frames of one source in a loop, stamped at publication time."""

    def __init__(self) -> None:
        super().__init__("demo_source")
        source = str(self.declare_parameter("source", "sample").value)
        rate_hz = float(self.declare_parameter("rate_hz", 2.0).value)
        self._count = int(self.declare_parameter("count", 0).value)  # 0 = forever
        self._encoding = str(self.declare_parameter("encoding", "rgb8").value)
        self._frame_id = str(self.declare_parameter("frame_id", "camera").value)
        reliability = str(self.declare_parameter("reliability", "best_effort").value)
        synthetic_size: tuple[int, ...] = tuple(
            self.declare_parameter("synthetic_size", [2048, 2048]).value
        )
        if rate_hz <= 0 or self._count < 0:
            raise ValueError(f"rate_hz must be > 0 and count >= 0, got {rate_hz} and {self._count}")
        if self._encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {self._encoding!r}")
        if reliability not in RELIABILITIES:
            raise ValueError(
                f"reliability must be one of {tuple(RELIABILITIES)}, got {reliability!r}"
            )
        if len(synthetic_size) != 2 or min(synthetic_size) < 32:
            raise ValueError(
                f"synthetic_size must be [height, width] >= 32, got {list(synthetic_size)}"
            )

        self._loaders = frame_loaders(source, (int(synthetic_size[0]), int(synthetic_size[1])))
        self._cache: dict[int, Image] | None = {} if len(self._loaders) <= CACHE_LIMIT else None
        # Sensor-data QoS like a camera driver (keep last 5, volatile); reliability selectable.
        qos = QoSProfile(
            history=qos_profile_sensor_data.history,
            depth=qos_profile_sensor_data.depth,
            durability=qos_profile_sensor_data.durability,
            reliability=RELIABILITIES[reliability],
        )
        self._publisher = self.create_publisher(Image, "image", qos)
        self._sent = 0
        self._next_index = 0
        self._waiting_logged = False
        #: Done when ``count`` frames were published (never when count is 0).
        self.finished: Future = Future()
        self._timer = self.create_timer(1.0 / rate_hz, self._tick)
        self.get_logger().info(
            f"publishing {len(self._loaders)} frame(s) from {source!r} on "
            f"{self._publisher.topic_name} at {rate_hz:g} Hz ({self._encoding}, {reliability})"
        )

    def _message(self, index: int) -> Image:
        """Frame ``index`` as a message, built on first use (kept when the source is small)."""
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        msg = rgb_to_message(self._loaders[index](), self._encoding, self._frame_id)
        if self._cache is not None:
            self._cache[index] = msg
        return msg

    def _tick(self) -> None:
        if self._count and self._sent >= self._count:
            # One period after the last frame, so the transport has flushed it.
            self._timer.cancel()
            self.finished.set_result(self._sent)
            return
        if self._publisher.get_subscription_count() == 0:
            if not self._waiting_logged:
                self.get_logger().info(f"waiting for a subscriber on {self._publisher.topic_name}")
                self._waiting_logged = True
            return
        index = self._next_index % len(self._loaders)
        self._next_index += 1
        try:
            msg = self._message(index)
        except (OSError, ValueError) as exc:  # unreadable or vanished file: skip it
            self.get_logger().warning(f"skipping a frame: {exc}", throttle_duration_sec=5.0)
            return
        msg.header.stamp = self.get_clock().now().to_msg()
        try:
            self._publisher.publish(msg)
        except RuntimeError:  # RCLError: Ctrl-C shut the context down during this tick
            if self.context.ok():
                raise
            return
        self._sent += 1


def main(args: list[str] | None = None) -> int:
    """Publish until ``count`` frames are sent or Ctrl-C; exit 1 on a missing/bad source."""
    return run_node(DemoSource, args=args, startup_errors=(FileNotFoundError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
