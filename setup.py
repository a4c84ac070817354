"""Build script for both colcon (ament_python) and plain pip installs.

The same tree installs three ways, each a ROS 2 prefix that ``ros2 launch`` / ``ros2 run`` use:
* ``colcon build`` (ament_python): console scripts go to ``lib/uhr_seg_ros`` (setup.cfg), the
  data files below register the package in the ament index and fill ``share/uhr_seg_ros``;
* ``pip install .`` into a venv: the same data files, and launchers in ``lib/uhr_seg_ros``
  (resource/lib/: pip puts console scripts in ``bin/`` only, where ``ros2 run`` does not look);
* ``pip install -e .`` (``make setup``): editable installs install no data files, so
  ``python -m uhr_seg_ros.ros.ament_prefix VENV`` links them into the venv afterwards.
``uhr-seg``, ``seg_node`` and ``demo_source`` are also on PATH in a venv. Files in share/ are found
by ``uhr_seg_ros.paths``.
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "uhr_seg_ros"


def _share(subdir: str, patterns: list[str]) -> tuple[str, list[str]]:
    files = sorted({f for pattern in patterns for f in glob(f"{subdir}/{pattern}")})
    return (f"share/{PACKAGE}/{subdir}", files)


setup(
    name=PACKAGE,
    version="0.1.0",
    description="Memory-capped ultra-high-resolution semantic segmentation node for UAV imagery",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        # Same names as the console scripts, which colcon puts there too (setup.cfg): whichever
        # copy stays (colcon's, in the build checked here), both run the same main().
        (f"lib/{PACKAGE}", sorted(glob("resource/lib/*"))),
        _share("launch", ["*.py"]),
        _share("config", ["*.yaml", "*.xml"]),
        _share("config/memory_models", ["*.json"]),
        _share("models", ["*.pt", "*.md", "*.yaml", "*.json", "*.png", "*.jpg"]),
    ],
    install_requires=[
        # torch is not pinned here: Jetson users bring NVIDIA's wheel, desktops the CUDA build.
        # The Makefile pins the CPU build used by CI.
        "torch>=2.4",
        "numpy>=1.24",
        "opencv-python-headless>=4.8",
        "pyyaml>=6.0",
        "tqdm>=4.60",
        "setuptools",
    ],
    extras_require={
        "test": ["pytest>=8.0,<9", "onnxruntime>=1.17"],
        # ROS 2 from PyPI wheels (no apt ROS needed); a sourced ROS 2 install works as well.
        "ros": [
            "ros-kilted-rclpy[fastrtps]",
            "ros-kilted-sensor-msgs",
            "ros-kilted-std-msgs",
            "ros-kilted-diagnostic-msgs",
            "rosbags>=0.10",
        ],
        # torch.onnx.export (dynamo exporter) needs onnxscript.
        "onnx": ["onnx>=1.16", "onnxscript>=0.2"],
        # torch-tensorrt must match the installed torch exactly: on Jetson use NVIDIA's wheel.
        "tensorrt": ["torch-tensorrt>=2.5"],  # 2.4 lacks the engine-export function
        # GeoTIFF/COG orthomosaics in, mask GeoTIFF and polygons out (docs/geo.md); the wheels
        # bundle GDAL, so no system GDAL is needed.
        "geo": ["rasterio>=1.3", "shapely>=2.0", "pyogrio>=0.7"],
        # `uhr-seg batch`: archives of images/mosaics over a Ray cluster (docs/geo.md).
        "batch": ["ray>=2.9"],
        # `make lint`: pinned so that a new release's rules never break CI unannounced.
        "lint": ["ruff==0.17.6", "mypy==2.4.1"],
    },
    zip_safe=True,
    entry_points={
        "console_scripts": [
            "uhr-seg = uhr_seg_ros.cli:main",
            "seg_node = uhr_seg_ros.seg_node:main",
            "demo_source = uhr_seg_ros.ros.demo_source:main",
        ],
    },
)
