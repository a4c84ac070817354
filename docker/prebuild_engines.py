"""Build the TensorRT engines the node is about to ask for, before ``ros2 launch`` starts it.

    python3 prebuild_engines.py [NAME:=VALUE ...]      # the same arguments as `ros2 launch`

docker/entrypoint.sh runs this on every start. The node would build a missing engine itself, but
building here happens once, visibly and before the node allocates anything: a build needs far more
memory than inference (which matters on an 8 GB Orin), and a failure shows up before launch
rather than as one fallback line in the node's log. Each engine is built by
``uhr-seg export --format tensorrt`` into the node's engine cache, keyed by checkpoint, GPU,
TensorRT version, patch, batch and precision: a later start finds it and takes seconds.

The engines are the ones ``Segmenter.from_settings`` requests for the launch's parameters (the
``params_file``, ``model`` and ``backend`` launch arguments, last one wins), and only when
TensorRT heads the backend order. Exit status: 0 when every engine is in the cache (or none is
needed), 1 when a build failed; the node then falls back along its backend order.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from uhr_seg_ros.paths import config_dir
from uhr_seg_ros.ros.params import NodeParams, parse_params, segmenter_settings

LOGGER = logging.getLogger("prebuild_engines")


def launch_arguments(argv: Sequence[str]) -> dict[str, str]:
    """``{name: value}`` of ``name:=value`` launch arguments (a repeated name: the last wins)."""
    arguments = {}
    for item in argv:
        name, separator, value = item.partition(":=")
        if not separator or not name:
            raise ValueError(f"launch arguments look like name:=value, got {item!r}")
        arguments[name] = value
    return arguments


def node_parameters(params_file: Path) -> dict[str, object]:
    """The ``ros__parameters`` of the first node entry (``/**`` or a node name) of a params file."""
    content = yaml.safe_load(params_file.read_text()) or {}
    for entry in content.values():
        if isinstance(entry, dict) and "ros__parameters" in entry:
            return dict(entry["ros__parameters"])
    raise ValueError(f"{params_file} has no '<node>: ros__parameters:' section")


def launch_params(arguments: dict[str, str]) -> NodeParams:
    """The node's validated parameters for these launch arguments (as seg.launch.py passes them)."""
    params_file = Path(arguments.get("params_file") or config_dir() / "seg.yaml")
    values = node_parameters(params_file)
    if arguments.get("model"):
        values["model_path"] = arguments["model"]
    if arguments.get("backend"):
        values["backend_order"] = [b.strip() for b in arguments["backend"].split(",") if b.strip()]
    return parse_params(values)


def export_commands(params: NodeParams, out_dir: Path) -> list[list[str]]:
    """One ``uhr-seg export`` command line per engine the node will load; none unless TensorRT
    is the first backend tried."""
    if params.backend_order[0] != "tensorrt":
        return []
    # Which engines: the node's own settings (patch sizes, batch profile); their cache keys come
    # from backends.tensorrt.engine_specs inside `uhr-seg export`, as in the node.
    settings = segmenter_settings(params)
    batch = settings.max_batch
    patches = settings.engine_patch_sizes
    model = ["--model", params.model_path] if params.model_path else []
    return [
        [
            sys.executable,
            "-m",
            "uhr_seg_ros.cli",
            "export",
            "--format",
            "tensorrt",
            *model,
            "--patch",
            str(patch),
            "--batch",
            str(batch),
            "--precision",
            params.precision,
            "--out",
            str(out_dir / f"sghrq_p{patch}_b{batch}_{params.precision}.engine"),
        ]
        for patch in patches
    ]


def main(argv: Sequence[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="[prebuild_engines] %(message)s")
    try:
        params = launch_params(launch_arguments(argv))
    except (OSError, ValueError) as exc:
        LOGGER.error("cannot read the launch parameters: %s", exc)
        return 1
    from uhr_seg_ros.backends.tensorrt import default_engine_cache_dir

    commands = export_commands(params, default_engine_cache_dir().parent / "exported")
    if not commands:
        LOGGER.info(
            "backend order %s does not start with tensorrt: no engine to build",
            ",".join(params.backend_order),
        )
    for command in commands:
        if subprocess.run(command, check=False).returncode != 0:
            LOGGER.warning(
                "engine build failed (see above); the node will fall back along %s",
                ",".join(params.backend_order),
            )
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
