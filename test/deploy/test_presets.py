"""The parameter presets in config/: same schema as config/seg.yaml, values the node accepts, and
the properties each deployment relies on."""

from __future__ import annotations

import pytest
import yaml

from uhr_seg_ros.paths import REPO_ROOT
from uhr_seg_ros.ros.params import PARAM_NAMES, NodeParams, parse_params

CONFIG = REPO_ROOT / "config"
PRESETS = ("jetson_orin", "desktop", "cpu_bench")


def _node_entry(name: str) -> dict:
    content = yaml.safe_load((CONFIG / f"{name}.yaml").read_text())
    assert list(content) == ["/**"], f"{name}.yaml: one '/**' entry, like seg.yaml"
    return content["/**"]["ros__parameters"]


def _preset(name: str) -> NodeParams:
    return parse_params(_node_entry(name))


@pytest.mark.parametrize("name", PRESETS)
def test_preset_keys_are_those_of_seg_yaml(name: str) -> None:
    schema = set(_node_entry("seg"))
    keys = set(_node_entry(name))
    assert keys <= schema, f"{name}.yaml: keys unknown to seg.yaml: {sorted(keys - schema)}"
    assert keys == schema, f"{name}.yaml leaves out {sorted(schema - keys)}: say it explicitly"
    assert schema <= set(PARAM_NAMES)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_has_no_empty_list(name: str) -> None:
    # rcl's YAML parser cannot type an empty list and refuses the whole file.
    empty = [key for key, value in _node_entry(name).items() if value == []]
    assert not empty, f"{name}.yaml: empty lists {empty}; leave the key out instead"


@pytest.mark.parametrize("name", PRESETS)
def test_preset_values_pass_node_validation(name: str) -> None:
    assert isinstance(_preset(name), NodeParams)


@pytest.mark.parametrize("name", PRESETS)
def test_every_value_has_its_reasoning_above_it(name: str) -> None:
    """Each parameter line sits under a comment, directly or as part of a block of parameter
    lines that one comment explains together."""
    lines = [line.strip() for line in (CONFIG / f"{name}.yaml").read_text().splitlines()]
    start = lines.index("ros__parameters:") + 1
    unexplained = []
    for number in range(start, len(lines)):
        if not lines[number] or lines[number].startswith("#"):
            continue
        above = number - 1
        while above >= start and lines[above] and not lines[above].startswith("#"):
            above -= 1
        if above < start or not lines[above].startswith("#"):
            unexplained.append(lines[number])
    assert not unexplained, f"{name}.yaml: no reasoning above {unexplained}"


def test_jetson_orin_flies_tensorrt_fp16_under_1p5_gb() -> None:
    jetson = _preset("jetson_orin")
    assert jetson.memory_cap_mb == 1500.0
    assert jetson.backend_order[0] == "tensorrt" and jetson.precision == "fp16"
    assert "cpu" in jetson.backend_order, "the last resort keeps the node publishing"
    assert jetson.patch_size > 0, "a pinned patch means one engine to build and hold"
    assert jetson.input_reliability == "best_effort"


def test_desktop_has_the_large_cap() -> None:
    assert _preset("desktop").memory_cap_mb > 2 * _preset("jetson_orin").memory_cap_mb
    assert _preset("desktop").backend_order[0] == "tensorrt"


def test_cpu_bench_is_cpu_only_with_a_fixed_plan() -> None:
    bench = _preset("cpu_bench")
    assert bench.backend_order == ("cpu",)
    assert bench.precision == "fp32"
    assert bench.patch_size > 0 and bench.overlap >= 0 and bench.batch_size > 0


@pytest.mark.ros
@pytest.mark.parametrize("name", PRESETS)
def test_preset_loads_through_rcl_params_file_parser(name: str) -> None:
    """rcl parses --params-file itself (stricter than PyYAML: e.g. untyped empty lists); the
    node then gets exactly these values."""
    rclpy = pytest.importorskip("rclpy")
    from rclpy.node import Node

    context = rclpy.Context()
    rclpy.init(args=["--ros-args", "--params-file", str(CONFIG / f"{name}.yaml")], context=context)
    try:
        node = Node(
            "uhr_seg",
            namespace="uhr_seg",
            context=context,
            automatically_declare_parameters_from_overrides=True,
        )
        loaded = {n: node.get_parameter(n).value for n in PARAM_NAMES if node.has_parameter(n)}
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    assert parse_params(loaded) == _preset(name)
