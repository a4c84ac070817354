"""Suite-wide fixtures. Room-specific fixtures live in each test/<room>/conftest.py."""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import pytest

# Real DDS in tests: a private domain per run and localhost-only discovery, set before any
# rclpy.init() (also inherited by child processes the ROS tests spawn).
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

# launch's pytest plugin (from ../shared/ros2-tools) makes every logger created after it a
# LaunchLogger with propagate=False, so pytest's caplog (a root handler) would see none of this
# package's log lines. Restore the standard class before the package creates its loggers; the
# autouse fixture below re-enables propagation for loggers made while launch was reset.
logging.setLoggerClass(logging.Logger)

from uhr_seg_ros.paths import shared_data_dir

_OWN_LOGGERS = ("uhr_seg_ros", "uhr-seg")


@pytest.fixture(autouse=True)
def _own_loggers_propagate():
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and name.split(".")[0] in _OWN_LOGGERS:
            logger.propagate = True
    yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real imagery); the test is skipped when it is absent."""
    root = shared_data_dir()
    if root is None:
        pytest.skip("../shared/data is absent (real imagery is not shipped with the project)")
    return root


@pytest.fixture(scope="session")
def deepglobe_dir(shared_data: Path) -> Path:
    path = shared_data / "deepglobe"
    if not any(path.glob("*_sat.jpg")):
        pytest.skip("no DeepGlobe tiles in ../shared/data/deepglobe")
    return path


@pytest.fixture
def tiny_model():
    """A tiny 3-class SGHRQ in eval mode with a non-trivial (random, initialised) memory bank."""
    import torch

    from uhr_seg_ros.model import SGHRQConfig, build_model

    torch.manual_seed(0)
    model = build_model(SGHRQConfig.tiny(num_classes=3))
    model.memory.prototypes.normal_()
    model.memory.initialised.fill_(True)
    return model.eval()


def pytest_collection_modifyitems(config, items):
    """Skip GPU/TensorRT-marked tests cleanly where the hardware or library is missing."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:
        has_cuda = False
    try:
        import torch_tensorrt  # noqa: F401

        has_trt = has_cuda
    except Exception:
        has_trt = False
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs CUDA (no GPU on this machine)"))
        if "tensorrt" in item.keywords and not has_trt:
            item.add_marker(pytest.mark.skip(reason="needs torch-tensorrt with CUDA"))
