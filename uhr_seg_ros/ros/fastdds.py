"""The shipped Fast DDS profile for large images, and the environment variable that applies it.

Fast DDS reads its default profile file from an environment variable once per process, when the
first participant is created, so the variable must be in a process's environment before
``rclpy.init()``. Fast DDS 2.x (ROS 2 Humble, Iron, Jazzy) reads
``FASTRTPS_DEFAULT_PROFILES_FILE``; Fast DDS 3.x (Kilted and later) reads
``FASTDDS_DEFAULT_PROFILES_FILE`` and warns that the old name is deprecated. The distribution is
told by ``ROS_DISTRO`` (set by ROS 2's setup scripts; the PyPI wheels are Kilted).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from uhr_seg_ros.paths import config_dir

FASTDDS_3_VAR = "FASTDDS_DEFAULT_PROFILES_FILE"
FASTDDS_2_VAR = "FASTRTPS_DEFAULT_PROFILES_FILE"
PROFILE_ENV_VARS: tuple[str, str] = (FASTDDS_3_VAR, FASTDDS_2_VAR)
#: ROS 2 distributions that ship Fast DDS 2.x.
FAST_DDS_2_DISTROS = frozenset({"humble", "iron", "jazzy"})
PROFILE_FILE_NAME = "fastdds_large_images.xml"


def large_image_profile() -> Path:
    """Path of config/fastdds_large_images.xml (shared memory only, 256 MB segment)."""
    return config_dir() / PROFILE_FILE_NAME


def profile_env_var(ros_distro: str | None) -> str:
    """The variable this distribution's Fast DDS reads its default profile file from."""
    return FASTDDS_2_VAR if (ros_distro or "").lower() in FAST_DDS_2_DISTROS else FASTDDS_3_VAR


def profile_variables(environ: Mapping[str, str], profile: Path | None = None) -> dict[str, str]:
    """``{variable: file}`` to add to ``environ`` so that Fast DDS loads the large-image profile.

    A profile the user already chose wins, even under the other version's name (it is then
    copied to the name this distribution reads). ``profile`` defaults to the shipped one.
    """
    name = profile_env_var(environ.get("ROS_DISTRO"))
    chosen = next((environ[n] for n in (name, *PROFILE_ENV_VARS) if environ.get(n)), None)
    return {name: chosen or str(profile or large_image_profile())}


def with_large_image_profile(environ: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``environ`` (e.g. for a child process) in which Fast DDS loads the profile."""
    return {**environ, **profile_variables(environ)}
