"""launch/seg.launch.py read as source: arguments, defaults and the names it relies on.

Runs everywhere (no launch/launch_ros needed); test_launch.py runs the file for real where a
ROS 2 install provides launch_testing.
"""

from __future__ import annotations

import ast
from importlib.metadata import distribution

import pytest

from uhr_seg_ros.paths import REPO_ROOT
from uhr_seg_ros.ros.ament_prefix import EXECUTABLES
from uhr_seg_ros.ros.fastdds import PROFILE_FILE_NAME
from uhr_seg_ros.ros.params import PARAM_NAMES

LAUNCH_FILE = REPO_ROOT / "launch" / "seg.launch.py"


@pytest.fixture(scope="module")
def tree() -> ast.Module:
    return ast.parse(LAUNCH_FILE.read_text(), filename=str(LAUNCH_FILE))


def _calls(tree: ast.Module, func_name: str) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == func_name
    ]


def _keyword(call: ast.Call, name: str) -> ast.expr:
    return next(k.value for k in call.keywords if k.arg == name)


def _declared(tree: ast.Module) -> dict[str, ast.expr]:
    return {
        call.args[0].value: _keyword(call, "default_value")
        for call in _calls(tree, "DeclareLaunchArgument")
    }


def test_declares_the_documented_arguments_with_their_defaults(tree):
    declared = _declared(tree)
    assert set(declared) == {
        "params_file",
        "model",
        "image_topic",
        "namespace",
        "backend",
        "autostart",
        "demo",
        "demo_source",
    }
    literal = {
        name: value.value for name, value in declared.items() if isinstance(value, ast.Constant)
    }
    assert literal == {
        "model": "",
        "image_topic": "/camera/image_raw",
        "namespace": "uhr_seg",
        "backend": "",
        "autostart": "true",
        "demo": "false",
        "demo_source": "sample",
    }


def test_default_params_file_is_the_shipped_seg_yaml(tree):
    default = ast.unparse(_declared(tree)["params_file"])
    assert "'config' / 'seg.yaml'" in default
    assert (REPO_ROOT / "config" / "seg.yaml").is_file()


def test_every_launch_configuration_is_declared(tree):
    used = {call.args[0].value for call in _calls(tree, "LaunchConfiguration")}
    assert used <= set(_declared(tree))


def test_sets_the_fast_dds_profile_variable_from_the_shipped_profile(tree):
    """One SetEnvironmentVariable per entry of profile_variables(os.environ, <share profile>)."""
    (env_action,) = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.GeneratorExp)
        and ast.unparse(node.elt).startswith("SetEnvironmentVariable(")
    ]
    assert "profile_variables(os.environ, profile)" in ast.unparse(env_action)
    assert "share / 'config' / PROFILE_FILE_NAME" in LAUNCH_FILE.read_text().replace('"', "'")
    assert (REPO_ROOT / "config" / PROFILE_FILE_NAME).is_file()


def test_argument_overrides_name_real_node_parameters(tree):
    keys = {
        node.slice.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Name)
        and node.value.id == "overrides"
        and isinstance(node.slice, ast.Constant)
    }
    assert keys == {"model_path", "backend_order"}
    assert "overrides: dict[str, object] = {'autostart':" in ast.unparse(tree)
    assert keys <= set(PARAM_NAMES)


def _node_actions(tree: ast.Module) -> list[ast.Call]:
    return _calls(tree, "Node") + _calls(tree, "LifecycleNode")


def test_launched_executables_are_installed_console_scripts_and_lib_launchers(tree):
    executables = {_keyword(call, "executable").value for call in _node_actions(tree)}
    assert executables == {"seg_node", "demo_source"} == set(EXECUTABLES)
    scripts = {
        ep.name for ep in distribution("uhr_seg_ros").entry_points if ep.group == "console_scripts"
    }
    assert executables <= scripts
    # what non-editable and colcon installs put in lib/uhr_seg_ros (where ros2 run looks)
    assert {p.name for p in (REPO_ROOT / "resource" / "lib").iterdir()} == executables


def test_seg_node_is_a_lifecycle_node_remapped_to_image_topic(tree):
    seg_node = next(
        call for call in _node_actions(tree) if _keyword(call, "executable").value == "seg_node"
    )
    assert seg_node.func.id == "LifecycleNode"
    remappings = ast.unparse(_keyword(seg_node, "remappings"))
    assert "('image', LaunchConfiguration('image_topic'))" in remappings
