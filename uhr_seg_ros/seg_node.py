"""Entry point of the ``uhr_seg`` node.

``ros2 run uhr_seg_ros seg_node --ros-args ...`` (colcon install), ``seg_node --ros-args ...``
(pip install) and ``python -m uhr_seg_ros.seg_node --ros-args ...`` (no ROS CLI) all land here.
"""

from __future__ import annotations

import sys

import rclpy
from rclpy.executors import ExternalShutdownException

from uhr_seg_ros.ros.node import NODE_NAME, SegNode
from uhr_seg_ros.ros.params import ParamError


def main(args: list[str] | None = None) -> int:
    """Run the node until Ctrl-C or shutdown; exit code 2 on an invalid parameter."""
    rclpy.init(args=args)
    try:
        node = SegNode()
    except ParamError as exc:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"invalid parameter: {exc}")
        rclpy.try_shutdown()
        return 2
    except Exception:
        if rclpy.ok():
            raise
        return 0  # Ctrl-C or a launch shutdown arrived while the model was loading
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
