"""launch/seg.launch.py with demo:=true, run for real: masks arrive on /<namespace>/mask.

Needs launch, launch_ros and launch_testing (a ROS 2 install; none has a PyPI wheel), so it is
skipped in PyPI-only environments such as CI. The package must be installed where launch_ros
finds it: a colcon workspace, or any prefix on AMENT_PREFIX_PATH holding
``share/ament_index/resource_index/packages/uhr_seg_ros``, ``share/uhr_seg_ros/`` and the
executables in ``lib/uhr_seg_ros/`` (see docs/ros.md, "Checking the launch file").
"""

from __future__ import annotations

import pytest

pytest.importorskip("launch_testing")
pytest.importorskip("launch_ros")

import tempfile
import time
import unittest
from pathlib import Path

import cv2
import launch_testing.actions
import launch_testing.asserts
import numpy as np
from ament_index_python.packages import get_package_share_directory
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource

import launch

NAMESPACE = "uhr_seg_launch_test"
NUM_CLASSES = 6
FRAME_H, FRAME_W = 96, 160
#: Start-up (model load, memory calibration on a CPU) plus the first frames.
MASK_DEADLINE_S = 120.0


@pytest.mark.launch_test
def generate_test_description():
    from uhr_seg_ros.model import SGHRQConfig, build_model, save_checkpoint

    workdir = Path(tempfile.mkdtemp(prefix="uhr_seg_launch_test_"))
    model = save_checkpoint(workdir / "tiny.pt",
                            build_model(SGHRQConfig.tiny(num_classes=NUM_CLASSES)))
    frames = workdir / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "frame.png"), np.random.default_rng(0).integers(
        0, 256, (FRAME_H, FRAME_W, 3), dtype=np.uint8))
    seg_launch = Path(get_package_share_directory("uhr_seg_ros")) / "launch" / "seg.launch.py"
    return launch.LaunchDescription([
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(str(seg_launch)),
            launch_arguments={"demo": "true", "demo_source": str(frames), "model": str(model),
                              "backend": "cpu", "namespace": NAMESPACE}.items()),
        launch_testing.actions.ReadyToTest(),
    ])


class TestMasksArrive(unittest.TestCase):

    def test_masks_arrive_with_the_frame_size_and_class_range(self):
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
        node.create_subscription(Image, f"/{NAMESPACE}/mask", masks.append,
                                 topic_qos("reliable"))
        try:
            deadline = time.monotonic() + MASK_DEADLINE_S
            while len(masks) < 2 and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.1)
        finally:
            executor.shutdown()
            node.destroy_node()
            context.try_shutdown()
        self.assertGreaterEqual(len(masks), 2, f"no masks within {MASK_DEADLINE_S:.0f} s")
        for mask in masks:
            self.assertEqual((mask.height, mask.width, mask.encoding), (FRAME_H, FRAME_W, "mono8"))
            self.assertEqual(mask.header.frame_id, "camera")
            self.assertLess(max(mask.data), NUM_CLASSES)


@launch_testing.post_shutdown_test()
class TestCleanShutdown(unittest.TestCase):

    def test_every_process_exits_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
