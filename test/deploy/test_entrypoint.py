"""What the container does on start: docker/entrypoint.sh with stand-ins for ``ros2`` and
``python3`` (no ROS CLI here), and docker/prebuild_engines.py, which decides the engines."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from uhr_seg_ros.paths import REPO_ROOT
from uhr_seg_ros.pipeline import TENSORRT_PATCH_SIZES, SegmenterSettings

ENTRYPOINT = REPO_ROOT / "docker" / "entrypoint.sh"
CONFIG = REPO_ROOT / "config"


def _load_prebuild():
    spec = importlib.util.spec_from_file_location(
        "prebuild_engines", REPO_ROOT / "docker" / "prebuild_engines.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


prebuild = _load_prebuild()


def _option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_launch_arguments_last_wins_and_reject_garbage() -> None:
    assert prebuild.launch_arguments(["a:=1", "b:=x:=y", "a:=2"]) == {"a": "2", "b": "x:=y"}
    with pytest.raises(ValueError, match="name:=value"):
        prebuild.launch_arguments(["--params-file"])


def test_jetson_preset_prebuilds_its_one_engine(tmp_path: Path) -> None:
    params = prebuild.launch_params(
        {"params_file": str(CONFIG / "jetson_orin.yaml"), "model": "/models/run7.pt"}
    )
    commands = prebuild.export_commands(params, tmp_path)
    assert len(commands) == 1
    command = commands[0]
    assert command[:4] == [sys.executable, "-m", "uhr_seg_ros.cli", "export"]
    assert _option(command, "--format") == "tensorrt"
    assert _option(command, "--model") == "/models/run7.pt"
    assert _option(command, "--patch") == str(params.patch_size)
    # The node's engine key includes the batch profile: it must be the Segmenter's.
    assert _option(command, "--batch") == str(SegmenterSettings().max_batch)
    assert _option(command, "--precision") == "fp16"
    assert Path(_option(command, "--out")).parent == tmp_path


def test_unpinned_patch_prebuilds_every_engine_the_node_loads(tmp_path: Path) -> None:
    params = prebuild.launch_params({"params_file": str(CONFIG / "desktop.yaml")})
    patches = [_option(c, "--patch") for c in prebuild.export_commands(params, tmp_path)]
    assert patches == [str(p) for p in TENSORRT_PATCH_SIZES]
    assert all("--model" not in c for c in prebuild.export_commands(params, tmp_path))


@pytest.mark.parametrize(
    "arguments",
    [
        {"params_file": str(CONFIG / "cpu_bench.yaml")},
        {"params_file": str(CONFIG / "jetson_orin.yaml"), "backend": "cuda,tensorrt"},
    ],
)
def test_no_engine_unless_tensorrt_comes_first(arguments: dict, tmp_path: Path) -> None:
    assert prebuild.export_commands(prebuild.launch_params(arguments), tmp_path) == []


def test_invalid_preset_is_refused_with_the_parameter_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("/**:\n  ros__parameters:\n    precision: fp8\n")
    with pytest.raises(ValueError, match="precision"):
        prebuild.launch_params({"params_file": str(bad)})


@pytest.fixture
def container(tmp_path: Path) -> dict[str, str]:
    """A fake workspace: install/setup.bash puts stand-in ``ros2`` and ``python3`` on PATH that
    record their arguments; the package's config/ is the real one."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("ros2", "python3"):
        script = bin_dir / tool
        script.write_text(
            f'#!/bin/sh\necho "{tool} $*" >> "$CALLS"\n'
            'echo "$FASTDDS_DEFAULT_PROFILES_FILE $FASTRTPS_DEFAULT_PROFILES_FILE"'
            ' >> "$CALLS.env"\n'
            f'[ "{tool}" = python3 ] && exit "${{PREBUILD_STATUS:-0}}"\nexit 0\n'
        )
        script.chmod(0o755)
    share = tmp_path / "install" / "share" / "uhr_seg_ros"
    share.mkdir(parents=True)
    (share / "config").symlink_to(CONFIG)
    (tmp_path / "install" / "setup.bash").write_text(f'PATH="{bin_dir}:$PATH"\n')
    return {
        "PATH": os.environ["PATH"],
        "UHR_SEG_WS": str(tmp_path),
        "CALLS": str(tmp_path / "calls.log"),
    }


def _start(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    result = subprocess.run(
        ["bash", str(ENTRYPOINT), *args],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    calls = Path(env["CALLS"])
    return result, calls.read_text().splitlines() if calls.exists() else []


def test_entrypoint_prebuilds_then_launches_with_preset_model_and_user_args(
    container: dict[str, str], tmp_path: Path
) -> None:
    model = tmp_path / "run7.pt"
    model.write_bytes(b"checkpoint")
    env = {**container, "UHR_SEG_PRESET": "jetson_orin", "UHR_SEG_MODEL": str(model)}
    result, calls = _start(env, "image_topic:=/cam/image")
    assert result.returncode == 0, result.stderr
    share_config = Path(container["UHR_SEG_WS"]) / "install/share/uhr_seg_ros/config"
    expected = (
        f"params_file:={share_config}/jetson_orin.yaml model:={model} image_topic:=/cam/image"
    )
    assert calls == [
        f"python3 {container['UHR_SEG_WS']}/prebuild_engines.py {expected}",
        f"ros2 launch uhr_seg_ros seg.launch.py {expected}",
    ]


def test_entrypoint_launches_even_when_the_engine_build_fails(container: dict[str, str]) -> None:
    result, calls = _start({**container, "PREBUILD_STATUS": "1"})
    assert result.returncode == 0
    assert calls[-1].startswith("ros2 launch uhr_seg_ros seg.launch.py params_file:=")
    assert "continuing without a prebuilt engine" in result.stderr


def test_entrypoint_skips_prebuild_when_asked(container: dict[str, str]) -> None:
    _, calls = _start({**container, "UHR_SEG_PREBUILD": "0"})
    assert [c.split()[0] for c in calls] == ["ros2"]


def test_entrypoint_refuses_unknown_preset_and_lists_the_real_ones(
    container: dict[str, str],
) -> None:
    result, calls = _start({**container, "UHR_SEG_PRESET": "orin"})
    assert result.returncode == 2 and calls == []
    assert "jetson_orin" in result.stderr and "cpu_bench" in result.stderr


def test_entrypoint_refuses_a_model_that_is_not_mounted(container: dict[str, str]) -> None:
    result, calls = _start({**container, "UHR_SEG_MODEL": "/models/missing.pt"})
    assert result.returncode == 2 and calls == []
    assert "UHR_SEG_MODELS_DIR" in result.stderr


def test_entrypoint_runs_other_commands_in_the_ros_environment(container: dict[str, str]) -> None:
    _, calls = _start(container, "ros2", "bag", "record", "/uhr_seg/mask")
    assert calls == ["ros2 bag record /uhr_seg/mask"]
    profile = f"{container['UHR_SEG_WS']}/install/share/uhr_seg_ros/config/fastdds_large_images.xml"
    assert Path(container["CALLS"] + ".env").read_text().split() == [profile, profile]


def test_entrypoint_keeps_a_profile_the_user_chose(container: dict[str, str]) -> None:
    _start({**container, "FASTRTPS_DEFAULT_PROFILES_FILE": "/etc/robot_dds.xml"})
    for line in Path(container["CALLS"] + ".env").read_text().splitlines():
        assert line.split() == ["/etc/robot_dds.xml", "/etc/robot_dds.xml"]
