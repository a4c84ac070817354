"""The shipped Fast DDS profile for large images, and the environment that applies it.

Fast DDS reads its default profile file from an environment variable once per process, when the
first participant is created, so the variable must be in a process's environment before
``rclpy.init()``. Fast DDS 2.x (ROS 2 Humble) reads ``FASTRTPS_DEFAULT_PROFILES_FILE``, 3.x
(Jazzy, Kilted) ``FASTDDS_DEFAULT_PROFILES_FILE``; both are set so one environment serves both.
launch/seg.launch.py applies the same rule with launch substitutions.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from uhr_seg_ros.paths import config_dir

#: Fast DDS 3.x name first, then the Fast DDS 2.x name.
PROFILE_ENV_VARS: tuple[str, str] = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
PROFILE_FILE_NAME = "fastdds_large_images.xml"


def large_image_profile() -> Path:
    """Path of config/fastdds_large_images.xml (shared memory only, 256 MB segment)."""
    return config_dir() / PROFILE_FILE_NAME


def with_large_image_profile(environ: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``environ`` in which Fast DDS loads the large-image profile.

    A profile the user already chose (either variable set and non-empty) wins and is copied to
    the other variable, so it applies whichever Fast DDS version runs.
    """
    env = dict(environ)
    chosen = next((env[name] for name in PROFILE_ENV_VARS if env.get(name)), None)
    profile = chosen or str(large_image_profile())
    for name in PROFILE_ENV_VARS:
        env[name] = profile
    return env
