"""The start / spin / shutdown sequence every executable of the package shares."""

from __future__ import annotations

from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.task import Future


def run_node(make_node: Callable[[], Node], *, args: list[str] | None = None,
             startup_errors: tuple[type[Exception], ...] = (), startup_exit_code: int = 1) -> int:
    """Create a node, spin it until Ctrl-C / shutdown (or its ``finished`` future), clean up.

    ``startup_errors`` raised while the node is created (a bad parameter, a missing file) are
    logged as one line and end the process with ``startup_exit_code``; a Ctrl-C that arrives
    while the node is still being built (e.g. loading a model) exits 0 without a traceback.
    """
    rclpy.init(args=args)
    try:
        node = make_node()
    except startup_errors as exc:
        rclpy.logging.get_logger("uhr_seg_ros").fatal(f"{type(exc).__name__}: {exc}")
        rclpy.try_shutdown()
        return startup_exit_code
    except Exception:
        if rclpy.ok():
            raise
        return 0  # Ctrl-C or a launch shutdown arrived while the node was being created
    try:
        finished = getattr(node, "finished", None)
        if isinstance(finished, Future):
            rclpy.spin_until_future_complete(node, finished)
        else:
            rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
