"""Parameter mapping: defaults, coercion, refusals with reasons, run-time vs start-up."""

from __future__ import annotations

import pytest

from uhr_seg_ros.ros.params import (
    PARAM_NAMES,
    RUNTIME_PARAMS,
    NodeParams,
    ParamError,
    apply_runtime_changes,
    check_against_model,
    parse_params,
    unknown_parameter_warnings,
)


def test_defaults_are_valid_and_every_field_is_documented():
    assert parse_params({}) == NodeParams()
    assert {"memory_cap_mb", "overlay_alpha"} <= RUNTIME_PARAMS
    assert not {"model_path", "backend_order", "input_transport"} & RUNTIME_PARAMS


def test_yaml_integers_are_accepted_for_floats_and_lists_become_tuples():
    params = parse_params(
        {
            "memory_cap_mb": 900,
            "backend_order": ["cuda", "cpu"],
            "palette": [0, 0, 0, 255, 255, 255],
        }
    )
    assert params.memory_cap_mb == 900.0 and isinstance(params.memory_cap_mb, float)
    assert params.backend_order == ("cuda", "cpu")
    assert params.palette == (0, 0, 0, 255, 255, 255)


@pytest.mark.parametrize(
    "values, named",
    [
        ({"memory_cap_mb": "lots"}, "memory_cap_mb"),
        ({"memory_cap_mb": -5.0}, "memory_cap_mb"),
        ({"memory_cap_mb": float("nan")}, "memory_cap_mb"),
        ({"backend_order": []}, "backend_order"),
        ({"backend_order": ["gpu"]}, "backend_order"),
        ({"backend_order": ["cpu", "cpu"]}, "backend_order"),
        ({"backend_order": "cpu"}, "backend_order"),
        ({"precision": "int4"}, "precision"),
        ({"patch_size": 100}, "patch_size"),
        ({"patch_size": 256, "overlap": 256}, "overlap"),
        ({"overlap": -2}, "overlap"),
        ({"batch_size": -1}, "batch_size"),
        ({"class_names": ["urban", " "]}, "class_names"),
        ({"palette": [1, 2]}, "palette"),
        ({"palette": [0, 0, 256]}, "palette"),
        ({"overlay_alpha": 1.5}, "overlay_alpha"),
        ({"publish_color": 1}, "publish_color"),
        ({"input_transport": "theora"}, "input_transport"),
        ({"input_reliability": "sometimes"}, "input_reliability"),
        ({"output_reliability": "x"}, "output_reliability"),
        ({"max_frame_pixels": 0}, "max_frame_pixels"),
        ({"stats_rate_hz": -1.0}, "stats_rate_hz"),
        ({"memroy_cap_mb": 1.0}, "memroy_cap_mb"),
    ],
)
def test_invalid_values_are_refused_with_the_parameter_named(values, named):
    with pytest.raises(ParamError, match=named):
        parse_params(values)


def test_runtime_change_applies_on_top_of_current_values():
    current = parse_params({"memory_cap_mb": 1500.0, "model_path": "/m.pt"})
    changed = apply_runtime_changes(current, {"memory_cap_mb": 700, "overlay_alpha": 1.0})
    assert (changed.memory_cap_mb, changed.overlay_alpha, changed.model_path) == (
        700.0,
        1.0,
        "/m.pt",
    )


def test_start_up_only_parameters_are_refused_at_run_time_but_unchanged_values_pass():
    current = NodeParams()
    with pytest.raises(ParamError, match=r"model_path.*configured.*cleanup.*restart"):
        apply_runtime_changes(current, {"model_path": "/other.pt"})
    with pytest.raises(ParamError, match="backend_order"):
        apply_runtime_changes(current, {"backend_order": ["cpu"]})
    assert apply_runtime_changes(current, {"model_path": ""}) == current


def test_unconfigured_node_takes_every_valid_change_still_validated():
    changed = apply_runtime_changes(NodeParams(), {"model_path": "/m.pt"}, configured=False)
    assert changed.model_path == "/m.pt"
    with pytest.raises(ParamError, match="precision"):
        apply_runtime_changes(NodeParams(), {"precision": "int3"}, configured=False)


@pytest.mark.parametrize(
    "name, hint",
    [
        ("memory_cap_mbb", "did you mean 'memory_cap_mb'?"),
        ("backend", "did you mean 'backend_order'?"),
        ("overlay_apha", "did you mean 'overlay_alpha'?"),
        ("zzz", "valid: model_path, backend_order"),
    ],
)
def test_unknown_parameter_gets_one_warning_with_the_closest_name(name, hint):
    (warning,) = unknown_parameter_warnings([name, name, "memory_cap_mb"])
    assert warning.startswith(f"unknown parameter '{name}' is ignored; ")
    assert hint in warning


def test_runtime_change_still_validates():
    with pytest.raises(ParamError, match="overlay_alpha"):
        apply_runtime_changes(NodeParams(), {"overlay_alpha": -0.1})


def test_class_names_and_palette_must_fit_the_model():
    check_against_model(parse_params({"class_names": ["a", "b"], "palette": [1] * 6}), 2)
    with pytest.raises(ParamError, match="class_names has 1 names but the model has 2"):
        check_against_model(parse_params({"class_names": ["a"]}), 2)
    with pytest.raises(ParamError, match="palette has 1 colours"):
        check_against_model(parse_params({"palette": [1, 2, 3]}), 2)


def test_declare_params_reads_overrides_on_a_real_node(ros_context):
    import rclpy
    from rclpy.parameter import Parameter

    from uhr_seg_ros.ros.params import declare_params

    node = rclpy.create_node(
        "params_probe",
        context=ros_context,
        parameter_overrides=[
            Parameter("memory_cap_mb", value=640),
            Parameter("backend_order", value=["cpu"]),
        ],
    )
    try:
        params = declare_params(node)
        assert params.memory_cap_mb == 640.0 and params.backend_order == ("cpu",)
        assert all(node.has_parameter(name) for name in PARAM_NAMES)
        descriptor = node.describe_parameter("model_path")
        assert "read on configure" in descriptor.description
    finally:
        node.destroy_node()


def test_shipped_seg_yaml_loads_and_equals_the_defaults(rclpy_module):
    """config/seg.yaml documents the defaults: it must load and agree with NodeParams()."""
    from uhr_seg_ros.paths import config_dir
    from uhr_seg_ros.ros.params import declare_params

    context = rclpy_module.Context()
    rclpy_module.init(
        context=context,
        args=["node", "--ros-args", "--params-file", str(config_dir() / "seg.yaml")],
    )
    node = rclpy_module.create_node("uhr_seg", context=context)
    try:
        assert declare_params(node) == NodeParams()
    finally:
        node.destroy_node()
        context.try_shutdown()


def test_every_parameter_is_documented_in_the_reference_and_the_yaml():
    from uhr_seg_ros.paths import REPO_ROOT

    reference = REPO_ROOT / "docs" / "node.md"
    if not reference.is_file():
        pytest.skip("docs/ is not installed with the package")
    documented = reference.read_text()
    shipped = (REPO_ROOT / "config" / "seg.yaml").read_text()
    for name in PARAM_NAMES:
        assert f"| `{name}` |" in documented, f"{name} missing from docs/node.md"
        assert f"{name}:" in shipped, f"{name} missing from config/seg.yaml"
