"""The node's parameters: one typed dataclass, one function from ROS values to it.

Every parameter is a field of :class:`NodeParams` with its default, a description (shown by
``ros2 param describe``) and whether it may change while the node runs. Run-time changes are the
ones the node can apply between two frames without rebuilding anything (a new memory cap only
replans tiles); the others pick the model, backend or DDS entities and are read by the lifecycle
``configure`` transition: they change while the node is unconfigured (after ``cleanup``).

Parameters are declared with ``dynamic_typing`` so that ``memory_cap_mb: 1500`` in a YAML file
(an integer) is accepted for a float; :func:`parse_params` then checks types and ranges itself and
refuses bad values with a reason that names the parameter.
"""

from __future__ import annotations

import difflib
import math
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from uhr_seg_ros.defaults import BACKEND_ORDER, MEMORY_CAP_MB
from uhr_seg_ros.settings import (
    AUTO_BATCH,
    AUTO_OVERLAP,
    AUTO_PATCH,
    SegmenterSettings,
    SettingsError,
)

TRANSPORTS: tuple[str, ...] = ("raw", "compressed")
RELIABILITIES: tuple[str, ...] = ("best_effort", "reliable")
#: Largest frame accepted by default (the paper's 20000²); bigger ones are refused undecoded.
MAX_FRAME_PIXELS = 20000 * 20000


class ParamError(ValueError):
    """An invalid parameter value; the message names the parameter and what is allowed."""


def _param(default: Any, doc: str, *, runtime: bool = False) -> Any:
    return field(default=default, metadata={"doc": doc, "runtime": runtime})


@dataclass(frozen=True)
class NodeParams:
    """Every parameter of the ``uhr_seg`` node (see config/seg.yaml and docs/node.md)."""

    model_path: str = _param("", "SGHRQ checkpoint (.pt); empty = the bundled default model")
    backend_order: tuple[str, ...] = _param(
        BACKEND_ORDER, "backends to try, best first; the first that works is used"
    )
    precision: str = _param("fp16", "fp16 or fp32 on GPU backends (the CPU always runs fp32)")
    memory_cap_mb: float = _param(
        MEMORY_CAP_MB,
        "GPU memory cap in MB; the tile plan is chosen to stay under it",
        runtime=True,
    )
    patch_size: int = _param(
        AUTO_PATCH,
        f"tile side in pixels (a multiple of the model's size divisor); {AUTO_PATCH} = planner "
        "decides",
    )
    overlap: int = _param(AUTO_OVERLAP, f"tile overlap in pixels; {AUTO_OVERLAP} = planner decides")
    batch_size: int = _param(
        AUTO_BATCH, f"tiles per inference batch; {AUTO_BATCH} = planner decides"
    )
    memory_model_path: str = _param(
        "", "memory model JSON from `uhr-seg calibrate`; empty = a stored one, else measured"
    )
    class_names: tuple[str, ...] = _param(
        (), "class names for diagnostics; empty = the model's", runtime=True
    )
    palette: tuple[int, ...] = _param(
        (), "flat RGB list r,g,b,r,g,b,... one colour per class; empty = the model's", runtime=True
    )
    publish_color: bool = _param(
        True, "compute mask_color (still only while someone subscribes)", runtime=True
    )
    overlay_alpha: float = _param(
        0.5, "weight of class colours over the image in mask_color; 1 = colours only", runtime=True
    )
    input_transport: str = _param("raw", "raw (subscribe image) or compressed (image/compressed)")
    input_reliability: str = _param(
        "best_effort", "QoS reliability of the input subscription: best_effort or reliable"
    )
    output_reliability: str = _param(
        "reliable", "QoS reliability of mask, mask_color and stats: reliable or best_effort"
    )
    max_frame_pixels: int = _param(
        MAX_FRAME_PIXELS, "frames with more pixels are rejected before decoding", runtime=True
    )
    stats_rate_hz: float = _param(
        0.0, "rate of the stats topic; 0 = one message per processed frame", runtime=True
    )
    autostart: bool = _param(
        False,
        "configure and activate at start-up instead of waiting for a lifecycle manager "
        "(the launch file's autostart argument sets it)",
    )


_FIELDS = {f.name: f for f in fields(NodeParams)}
_TYPES = typing.get_type_hints(NodeParams)
PARAM_NAMES: tuple[str, ...] = tuple(_FIELDS)
RUNTIME_PARAMS: frozenset[str] = frozenset(n for n, f in _FIELDS.items() if f.metadata["runtime"])


def _description(name: str) -> str:
    """The parameter's description, with a note when it needs a restart to change."""
    meta = _FIELDS[name].metadata
    return meta["doc"] if meta["runtime"] else meta["doc"] + " (read on configure)"


def _to_ros_value(value: Any) -> Any:
    """A field value as rclpy accepts it (tuples become lists)."""
    return list(value) if isinstance(value, tuple) else value


def _coerce(name: str, value: Any) -> Any:
    """``value`` as the field's Python type, or ParamError (ints are accepted for floats)."""
    expected = _TYPES[name]
    element = typing.get_args(expected)[0] if typing.get_origin(expected) is tuple else None
    if element is not None:
        # rclpy hands integer arrays over as array.array, string arrays as lists.
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ParamError(f"{name} must be a list of {element.__name__}, got {value!r}")
        return tuple(_coerce_scalar(name, v, element) for v in value)
    return _coerce_scalar(name, value, expected)


def _coerce_scalar(name: str, value: Any, expected: type) -> Any:
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not expected:
        raise ParamError(
            f"{name} must be {expected.__name__}, got {type(value).__name__} {value!r}"
        )
    return value


def _check_one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ParamError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def segmenter_settings(p: NodeParams) -> SegmenterSettings:
    """The core's settings for these parameters: a translation only (the sentinels 0/-1 and
    empty paths are understood by :class:`SegmenterSettings`, which also validates)."""
    return SegmenterSettings(
        model_path=p.model_path,
        backend_order=p.backend_order,
        precision=p.precision,
        memory_cap_mb=p.memory_cap_mb,
        patch_size=p.patch_size,
        overlap=p.overlap,
        batch_size=p.batch_size,
        memory_model_path=p.memory_model_path,
    )


def _validate(p: NodeParams) -> None:
    try:
        segmenter_settings(p)  # the segmenter's own fields: checked by their one owner
    except SettingsError as exc:
        raise ParamError(str(exc)) from None
    _check_one_of("input_transport", p.input_transport, TRANSPORTS)
    _check_one_of("input_reliability", p.input_reliability, RELIABILITIES)
    _check_one_of("output_reliability", p.output_reliability, RELIABILITIES)
    if any(not name.strip() for name in p.class_names):
        raise ParamError(f"class_names must not contain empty names: {list(p.class_names)}")
    if len(p.palette) % 3 or any(not 0 <= v <= 255 for v in p.palette):
        raise ParamError(
            "palette must be a flat list of r,g,b triples with values 0..255, got "
            f"{len(p.palette)} values"
        )
    if not 0.0 <= p.overlay_alpha <= 1.0:
        raise ParamError(f"overlay_alpha must be within 0..1, got {p.overlay_alpha}")
    if p.max_frame_pixels <= 0:
        raise ParamError(f"max_frame_pixels must be positive, got {p.max_frame_pixels}")
    if not (math.isfinite(p.stats_rate_hz) and p.stats_rate_hz >= 0):
        raise ParamError(f"stats_rate_hz must be >= 0 (0 = per frame), got {p.stats_rate_hz}")


def parse_params(values: Mapping[str, Any], base: NodeParams | None = None) -> NodeParams:
    """Validated :class:`NodeParams` from ``{name: value}`` (ROS parameter values).

    Names absent from ``values`` keep their value in ``base`` (the defaults when None), so the
    same function reads the start-up parameters and applies a run-time change.

    Raises:
        ParamError: an unknown name, a wrong type or an out-of-range value.
    """
    unknown = sorted(set(values) - set(_FIELDS))
    if unknown:
        raise ParamError(
            f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(PARAM_NAMES)}"
        )
    params = replace(
        base or NodeParams(), **{name: _coerce(name, value) for name, value in values.items()}
    )
    _validate(params)
    return params


def apply_runtime_changes(
    current: NodeParams, changes: Mapping[str, Any], *, configured: bool = True
) -> NodeParams:
    """``current`` with ``changes`` applied; while ``configured``, refuses a change to a
    parameter that only the configure transition reads."""
    fixed = sorted(
        name
        for name, value in changes.items()
        if configured
        and name in _FIELDS
        and name not in RUNTIME_PARAMS
        and _coerce(name, value) != getattr(current, name)
    )
    if fixed:
        raise ParamError(
            f"{', '.join(fixed)} cannot change while the node is configured: deactivate and "
            "clean it up (ros2 lifecycle set <node> deactivate, then cleanup), set it, configure "
            f"again, or restart the node (run-time: {', '.join(sorted(RUNTIME_PARAMS))})"
        )
    return parse_params(changes, base=current)


def unknown_parameter_warnings(names: Iterable[str]) -> list[str]:
    """One warning per name that is not a parameter of the node, with the closest valid name.

    A misspelt name in a params file or ``-p`` is otherwise ignored without a word by ROS, and
    the node runs with the default (e.g. ``memory_cap_mbb: 900.0`` leaves the cap at 1500).
    """
    warnings = []
    for name in sorted(set(names) - set(PARAM_NAMES)):
        close = difflib.get_close_matches(name, PARAM_NAMES, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else f"valid: {', '.join(PARAM_NAMES)}"
        warnings.append(f"unknown parameter '{name}' is ignored; {hint}")
    return warnings


def check_against_model(params: NodeParams, num_classes: int) -> None:
    """Refuse class names or a palette that do not fit a model with ``num_classes`` classes."""
    if params.class_names and len(params.class_names) != num_classes:
        raise ParamError(
            f"class_names has {len(params.class_names)} names but the model has "
            f"{num_classes} classes"
        )
    if params.palette and len(params.palette) // 3 < num_classes:
        raise ParamError(
            f"palette has {len(params.palette) // 3} colours but the model has "
            f"{num_classes} classes"
        )


def declare_params(node: Any) -> NodeParams:
    """Declare every parameter on an rclpy ``node`` and return their validated values.

    Values come from the defaults above, overridden by ``--params-file`` / ``-p`` arguments.
    Overrides that name no parameter of the node get one warning each (see
    :func:`unknown_parameter_warnings`).
    """
    from rcl_interfaces.msg import ParameterDescriptor

    for name, spec in _FIELDS.items():
        descriptor = ParameterDescriptor(description=_description(name), dynamic_typing=True)
        node.declare_parameter(name, _to_ros_value(spec.default), descriptor)
    # rclpy keeps the overrides addressed to this node (params files, -p) in this attribute;
    # names rclpy itself declares (use_sim_time, qos_overrides.*) are not ours to judge.
    overrides = getattr(node, "_parameter_overrides", {})
    foreign = [
        name
        for name in overrides
        if not node.has_parameter(name) and not name.startswith("qos_overrides.")
    ]
    for warning in unknown_parameter_warnings(foreign):
        node.get_logger().warning(warning)
    return read_params(node)


def read_params(node: Any) -> NodeParams:
    """The node's current parameter values, validated (what ``configure`` builds from)."""
    return parse_params({name: node.get_parameter(name).value for name in PARAM_NAMES})
