"""Fixtures for the ROS adapter tests: a private rclpy Context and a tiny random checkpoint.

Tests that need rclpy request ``ros_context`` (or ``rclpy_module``) and are skipped cleanly where
rclpy is not importable; conversion, stats and parameter parsing tests need no ROS at all.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from uhr_seg_ros.ros.ament_prefix import marker_path

#: Where ``make setup`` registered the package (the venv), put on AMENT_PREFIX_PATH for launch
#: tests and the ``ros2`` processes they start, as ``source .venv/bin/activate`` does.
VENV_PREFIX = Path(sys.prefix)
if marker_path(VENV_PREFIX).is_file() and str(VENV_PREFIX) not in os.environ.get(
    "AMENT_PREFIX_PATH", ""
).split(os.pathsep):
    os.environ["AMENT_PREFIX_PATH"] = os.pathsep.join(
        p for p in (str(VENV_PREFIX), os.environ.get("AMENT_PREFIX_PATH", "")) if p
    )


@pytest.fixture(scope="session")
def rclpy_module():
    return pytest.importorskip("rclpy", reason="rclpy is not importable (no ROS 2 here)")


@pytest.fixture
def ros_context(rclpy_module) -> Iterator[object]:
    """An initialised private Context, shut down after the test (no global rclpy state)."""
    context = rclpy_module.Context()
    rclpy_module.init(context=context)
    try:
        yield context
    finally:
        context.try_shutdown()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised ``SGHRQConfig.tiny`` model with 6 classes (fast on CPU)."""
    from uhr_seg_ros.model import SGHRQConfig, build_model, save_checkpoint

    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, build_model(SGHRQConfig.tiny(num_classes=6)))
    return path
