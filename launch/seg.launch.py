"""Segmentation node (and optionally a demo camera) with the large-image Fast DDS profile.

    ros2 launch uhr_seg_ros seg.launch.py                        # masks on /uhr_seg/mask
    ros2 launch uhr_seg_ros seg.launch.py demo:=true             # plus a demo camera
    ros2 launch uhr_seg_ros seg.launch.py demo:=true demo_source:=/data/frames
    ros2 launch uhr_seg_ros seg.launch.py image_topic:=/uav/cam/image backend:=cuda,cpu \\
        params_file:=$(ros2 pkg prefix uhr_seg_ros)/share/uhr_seg_ros/config/jetson_orin.yaml

The node runs as ``<namespace>/uhr_seg`` with its ``image`` input remapped to ``image_topic``.
It is a managed (lifecycle) node: with ``autostart:=true`` (the default, as Nav2's lifecycle
manager does) it configures and activates itself; with ``autostart:=false`` it waits unconfigured
for ``ros2 lifecycle set /uhr_seg/uhr_seg configure`` (then ``activate``) or a lifecycle manager.
Every process started here loads config/fastdds_large_images.xml through the variable this
distribution's Fast DDS reads (FASTRTPS_DEFAULT_PROFILES_FILE on Humble/Iron/Jazzy,
FASTDDS_DEFAULT_PROFILES_FILE on Kilted and later), unless the user already chose a profile:
without it best-effort 4K frames are lost as fragmented UDP (see docs/ros.md). Nodes started
outside this launch file (e.g. the camera driver) need the same variable to send large frames
over shared memory.
"""

import os
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

from launch import LaunchContext, LaunchDescription
from uhr_seg_ros.ros.fastdds import PROFILE_FILE_NAME, profile_variables

PACKAGE = "uhr_seg_ros"
#: Seconds launch waits after SIGINT before it sends SIGTERM (launch's default: 5). The node
#: finishes the frame in flight first: one large frame on a CPU takes longer than 5 s.
SEG_NODE_SIGTERM_TIMEOUT_S = "30"


def _seg_node(context: LaunchContext) -> list[LifecycleNode]:
    """The segmentation node; ``model`` and ``backend`` override the params file only when set,
    ``autostart`` always (a lifecycle choice of this launch, not of the params file)."""
    autostart = LaunchConfiguration("autostart").perform(context).strip().lower()
    if autostart not in ("true", "false"):
        raise ValueError(f"autostart must be true or false, got {autostart!r}")
    overrides: dict[str, object] = {"autostart": autostart == "true"}
    model = LaunchConfiguration("model").perform(context)
    if model:
        overrides["model_path"] = model
    backend = LaunchConfiguration("backend").perform(context)
    if backend:
        overrides["backend_order"] = [name.strip() for name in backend.split(",") if name.strip()]
    return [
        LifecycleNode(
            package=PACKAGE,
            executable="seg_node",
            name="uhr_seg",
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("params_file"), overrides],
            remappings=[
                ("image", LaunchConfiguration("image_topic")),
                ("image/compressed", [LaunchConfiguration("image_topic"), "/compressed"]),
            ],
            output="screen",
            emulate_tty=True,
            sigterm_timeout=SEG_NODE_SIGTERM_TIMEOUT_S,
        )
    ]


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory(PACKAGE))
    profile = share / "config" / PROFILE_FILE_NAME
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=str(share / "config" / "seg.yaml"),
                description="node parameters (YAML); presets in the package's config/ folder",
            ),
            DeclareLaunchArgument(
                "model",
                default_value="",
                description="SGHRQ checkpoint (.pt); empty = the params file's (bundled default)",
            ),
            DeclareLaunchArgument(
                "image_topic",
                default_value="/camera/image_raw",
                description="input sensor_msgs/Image topic (compressed: <image_topic>/compressed)",
            ),
            DeclareLaunchArgument(
                "namespace",
                default_value="uhr_seg",
                description="namespace of the node and its mask, mask_color and stats topics",
            ),
            DeclareLaunchArgument(
                "backend",
                default_value="",
                description="backend order, comma-separated (e.g. 'cuda,cpu'); empty = params file",
            ),
            DeclareLaunchArgument(
                "autostart",
                default_value="true",
                description="configure and activate the lifecycle node at start-up; false = wait "
                "for `ros2 lifecycle set` or a lifecycle manager",
            ),
            DeclareLaunchArgument(
                "demo",
                default_value="false",
                description="also run a demo camera publishing on image_topic",
            ),
            DeclareLaunchArgument(
                "demo_source",
                default_value="sample",
                description="demo camera frames: sample (bundled frame), synthetic, or an image "
                "file / folder",
            ),
            *(
                SetEnvironmentVariable(name, value)
                for name, value in profile_variables(os.environ, profile).items()
            ),
            OpaqueFunction(function=_seg_node),
            Node(
                package=PACKAGE,
                executable="demo_source",
                name="demo_source",
                namespace=LaunchConfiguration("namespace"),
                parameters=[{"source": LaunchConfiguration("demo_source")}],
                remappings=[("image", LaunchConfiguration("image_topic"))],
                output="screen",
                condition=IfCondition(LaunchConfiguration("demo")),
            ),
        ]
    )
