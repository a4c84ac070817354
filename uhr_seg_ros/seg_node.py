"""Entry point of the ``uhr_seg`` node.

``ros2 run uhr_seg_ros seg_node --ros-args ...`` (colcon install), ``seg_node --ros-args ...``
(pip install) and ``python -m uhr_seg_ros.seg_node --ros-args ...`` (no ROS CLI) all land here.
"""

from __future__ import annotations

import sys

from uhr_seg_ros.ros.node import SegNode
from uhr_seg_ros.ros.params import ParamError
from uhr_seg_ros.ros.runner import exit_now, run_node


def main(args: list[str] | None = None) -> int:
    """Run the node until Ctrl-C or shutdown, then end the process (exit code 2 on an invalid
    parameter or params file). The process entry point: it does not return."""
    exit_now(run_node(SegNode, args=args, startup_errors=(ParamError,), startup_exit_code=2))
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
