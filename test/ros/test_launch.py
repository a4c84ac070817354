"""launch/seg.launch.py with demo:=true, run for real by launch_testing: the lifecycle node
starts itself (autostart), and its masks are the Segmenter's masks of the demo camera's frame.

Needs launch, launch_ros and launch_testing: a ROS 2 install, or ../shared/ros2-tools installed
into the venv by ``make setup`` (CI does). Skipped where they are absent. The package must be in
the ament index: a colcon workspace, or the venv as ``make setup`` prepares it (test/ros/conftest.py
puts it on AMENT_PREFIX_PATH).
"""

from __future__ import annotations

import pytest

pytest.importorskip(
    "launch_testing",
    reason="launch_testing is not installed (ROS 2 install or ../shared/ros2-tools via make setup)",
)
pytest.importorskip("launch_ros", reason="launch_ros is not installed")

import tempfile
import time
import unittest
from pathlib import Path

import cv2
import launch_testing.actions
import launch_testing.asserts
import numpy as np
from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource

import launch

try:
    SHARE = Path(get_package_share_directory("uhr_seg_ros"))
except PackageNotFoundError:
    pytest.skip(
        "uhr_seg_ros is not in the ament index: run `make setup` (or colcon build and "
        "source install/setup.bash)",
        allow_module_level=True,
    )

NAMESPACE = "uhr_seg_launch_test"
NUM_CLASSES = 6
FRAME_H, FRAME_W = 96, 160
#: Start-up (model load, memory calibration on a CPU) plus the first frames.
MASK_DEADLINE_S = 120.0
WORKDIR = Path(tempfile.mkdtemp(prefix="uhr_seg_launch_test_"))
MODEL = WORKDIR / "tiny.pt"
FRAME = WORKDIR / "frames" / "frame.png"


@pytest.mark.launch_test
@pytest.mark.slow
def generate_test_description():
    import torch

    from uhr_seg_ros.model import SGHRQConfig, build_model, save_checkpoint

    torch.manual_seed(0)  # this seed's random model gives a mask of several classes on FRAME
    save_checkpoint(MODEL, build_model(SGHRQConfig.tiny(num_classes=NUM_CLASSES)))
    FRAME.parent.mkdir()
    # A frame with structure (smooth colour regions), so the mask is not one class everywhere.
    yy, xx = np.mgrid[0:FRAME_H, 0:FRAME_W]
    frame = np.stack(
        [(xx * 255 // FRAME_W), (yy * 255 // FRAME_H), ((xx + yy) % 64) * 4], axis=-1
    ).astype(np.uint8)
    cv2.imwrite(str(FRAME), frame)
    seg_launch = SHARE / "launch" / "seg.launch.py"
    return launch.LaunchDescription(
        [
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(str(seg_launch)),
                launch_arguments={
                    "demo": "true",
                    "demo_source": str(FRAME.parent),
                    "model": str(MODEL),
                    "backend": "cpu",
                    "namespace": NAMESPACE,
                }.items(),
            ),
            launch_testing.actions.ReadyToTest(),
        ]
    )


class TestMasksArrive(unittest.TestCase):
    def test_masks_are_the_segmenters_masks_of_the_demo_frame(self):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import Image

        from uhr_seg_ros.ros.node import topic_qos

        context = rclpy.Context()
        rclpy.init(context=context)
        node = rclpy.create_node("launch_test_probe", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        masks = []
        node.create_subscription(Image, f"/{NAMESPACE}/mask", masks.append, topic_qos("reliable"))
        try:
            deadline = time.monotonic() + MASK_DEADLINE_S
            while len(masks) < 2 and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.1)
        finally:
            executor.shutdown()
            node.destroy_node()
            context.try_shutdown()
        self.assertGreaterEqual(len(masks), 2, f"no masks within {MASK_DEADLINE_S:.0f} s")
        from uhr_seg_ros.data.image_io import read_rgb
        from uhr_seg_ros.pipeline import Segmenter, SegmenterSettings

        expected = (
            Segmenter.from_settings(
                SegmenterSettings(model_path=str(MODEL), backend_order=("cpu",))
            )
            .segment(read_rgb(FRAME))
            .mask
        )
        self.assertGreater(len(np.unique(expected)), 1, "test frame gives a one-class mask")
        for mask in masks:
            self.assertEqual((mask.height, mask.width, mask.encoding), (FRAME_H, FRAME_W, "mono8"))
            self.assertEqual(mask.header.frame_id, "camera")
            np.testing.assert_array_equal(
                np.frombuffer(mask.data, np.uint8).reshape(FRAME_H, FRAME_W), expected
            )


@launch_testing.post_shutdown_test()
class TestCleanShutdown(unittest.TestCase):
    def test_every_process_exits_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
