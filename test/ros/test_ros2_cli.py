"""The ``ros2`` command lines of README / docs/ros.md, run literally as a user runs them.

``ros2 launch uhr_seg_ros seg.launch.py image_topic:=...`` starts in its own process group
(``setsid``, as a terminal does); a real frame goes in, its mask comes back with the input
header; ``ros2 lifecycle get``, ``ros2 param set`` and ``ros2 topic echo`` talk to the node; then
SIGINT goes to the whole group (what Ctrl-C in a terminal does: launch *and* the nodes get it,
and launch forwards one more) and every process must exit 0 within a deadline.

Needs the ``ros2`` CLI (a ROS 2 install, or ../shared/ros2-tools installed by ``make setup``);
skipped where it is absent. The commands use the ROS 2 daemon as a user's shell does (without
it, a fresh ``ros2 param set`` may not have discovered the node yet on a loaded machine); the
test starts it and stops it at the end, and the suite's random ROS_DOMAIN_ID keeps parallel runs
(and their daemons) apart.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not importable (no ROS 2 here)")

from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from uhr_seg_ros.paths import models_dir, shared_data_dir
from uhr_seg_ros.ros.ament_prefix import marker_path
from uhr_seg_ros.ros.image_conversion import fill_image_msg

pytestmark = [pytest.mark.ros, pytest.mark.slow]
ROS2 = shutil.which(
    "ros2", path=os.pathsep.join([str(Path(sys.prefix) / "bin"), os.environ.get("PATH", "")])
)
if ROS2 is None:
    pytest.skip(
        "the ros2 CLI is not installed (a ROS 2 install, or ../shared/ros2-tools via make setup)",
        allow_module_level=True,
    )
if not any(
    marker_path(Path(p)).is_file()
    for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)
    if p
):
    pytest.skip("uhr_seg_ros is not in the ament index: run make setup", allow_module_level=True)

NODE = "/uhr_seg/uhr_seg"
IMAGE_TOPIC = "/cli_test/camera/image_raw"
RELIABLE = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
START_DEADLINE_S = 120.0  # model load + memory calibration on a loaded 2-core CPU
EXIT_DEADLINE_S = 30.0  # after SIGINT: launch's own SIGTERM escalation starts at 5 s


def real_frame() -> np.ndarray:
    """A 256×384 crop of real aerial imagery (DeepGlobe) where available, else of the bundled
    sample frame: RGB uint8."""
    data = shared_data_dir()
    tiles = sorted((data / "deepglobe").glob("*_sat.jpg")) if data else []
    path = tiles[0] if tiles else models_dir() / "sample_frame.jpg"
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return np.ascontiguousarray(bgr[:256, :384, ::-1])


def ros2(*args: str, env: dict[str, str], timeout: float = 60.0) -> str:
    result = subprocess.run([ROS2, *args], env=env, capture_output=True, text=True, timeout=timeout)
    return (result.stdout + result.stderr).strip()


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def spin_until(executor, predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=0.05)
    return predicate()


def test_ros2_launch_segments_a_frame_answers_the_cli_and_exits_0_on_ctrl_c(
    ros_context, tiny_checkpoint, tmp_path
):
    env = dict(
        os.environ,
        PATH=os.pathsep.join([str(Path(sys.prefix) / "bin"), os.environ.get("PATH", "")]),
    )
    log_path = tmp_path / "launch.log"
    with log_path.open("w") as log:
        launch = subprocess.Popen(
            [
                ROS2,
                "launch",
                "uhr_seg_ros",
                "seg.launch.py",
                f"image_topic:={IMAGE_TOPIC}",
                f"model:={tiny_checkpoint}",
                "backend:=cpu",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pgid = launch.pid  # setsid: the launch process leads its own group, as in a terminal
    node = rclpy.create_node("cli_probe", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    masks: list[Image] = []
    publisher = node.create_publisher(Image, IMAGE_TOPIC, RELIABLE)
    node.create_subscription(Image, "/uhr_seg/mask", masks.append, RELIABLE)
    ros2("daemon", "start", env=env)
    try:
        assert spin_until(
            executor, lambda: publisher.get_subscription_count() > 0, START_DEADLINE_S
        ), f"node never subscribed:\n{log_path.read_text()}"
        header = Header(frame_id="uav_cam_cli")
        header.stamp.sec, header.stamp.nanosec = 4242, 77
        pixels = real_frame()
        msg = fill_image_msg(Image(), pixels, header)
        # The launch file's input QoS is best effort, as a camera's is: a frame sent before the
        # node's reader has matched this writer (or while it is still inactive) is lost, not
        # resent. So keep sending, as a camera does, until a mask comes back.
        deadline = time.monotonic() + 60
        while not masks and time.monotonic() < deadline:
            publisher.publish(msg)
            spin_until(executor, lambda: bool(masks), 2.0)
        assert masks, log_path.read_text()
        mask = masks[0]
        assert (mask.header.frame_id, mask.header.stamp.sec, mask.header.stamp.nanosec) == (
            "uav_cam_cli",
            4242,
            77,
        )
        assert (mask.height, mask.width, mask.encoding) == (256, 384, "mono8")

        assert ros2("lifecycle", "get", NODE, env=env) == "active [3]"
        assert (
            ros2("param", "set", NODE, "memory_cap_mb", "1000.0", env=env)
            == "Set parameter successful"
        )
        refused = ros2("param", "set", NODE, "memory_cap_mb", "0.001", env=env)
        assert refused.startswith("Setting parameter failed") and "smallest tile plan" in refused
        echo = subprocess.Popen(
            [ROS2, "topic", "echo", "--once", "/uhr_seg/stats"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            # stats go out once per frame: keep sending frames until the echo has printed one
            deadline = time.monotonic() + 60
            while echo.poll() is None and time.monotonic() < deadline:
                publisher.publish(msg)
                spin_until(executor, lambda: echo.poll() is not None, 1.0)
            assert echo.poll() is not None, "ros2 topic echo printed nothing"
        finally:
            if echo.poll() is None:
                echo.kill()
        echoed = echo.communicate(timeout=10)[0]
        assert "key: memory_cap_mb\n    value: '1000.0'" in echoed, echoed
        assert "key: lifecycle_state\n    value: active" in echoed, echoed

        os.killpg(pgid, signal.SIGINT)  # Ctrl-C: launch and every node in the group
        code = launch.wait(timeout=EXIT_DEADLINE_S)
        deadline = time.monotonic() + EXIT_DEADLINE_S
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        output = log_path.read_text()
        assert not group_alive(pgid), f"processes left after SIGINT:\n{output}"
        assert code == 0, output
        assert "[seg_node-1]: process has finished cleanly" in output, output
        for failure in ("process has died", "terminate called", "Traceback"):
            assert failure not in output, output
    finally:
        executor.shutdown()
        node.destroy_node()
        ros2("daemon", "stop", env=env)
        if group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)
        launch.wait(timeout=10)
