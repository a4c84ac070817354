"""SegmenterSettings is the one owner of the segmenter's settings: every adapter (ROS parameters,
each command's flags) only translates into it and reports its reasons."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from uhr_seg_ros import backends
from uhr_seg_ros.cli import build_parser, main
from uhr_seg_ros.cli.segmenter_options import settings_from_args
from uhr_seg_ros.ros.params import ParamError, parse_params, segmenter_settings
from uhr_seg_ros.settings import SegmenterSettings, SettingsError

#: The shared flags, with values other than the defaults, as a user would type them.
SHARED_FLAGS = [
    "--backend",
    "cuda,cpu",
    "--precision",
    "fp32",
    "--memory-cap-mb",
    "900",
    "--patch-size",
    "512",
    "--overlap",
    "64",
    "--batch-size",
    "2",
    "--memory-model",
    "mm.json",
    "--model",
    "m.pt",
]
EXPECTED = SegmenterSettings(
    model_path="m.pt",
    backend_order=("cuda", "cpu"),
    precision="fp32",
    memory_cap_mb=900.0,
    patch_size=512,
    overlap=64,
    batch_size=2,
    memory_model_path="mm.json",
)
#: Each segmenting command with its own required arguments.
COMMANDS = {
    "segment": ["segment", "in.jpg", "--out", "m.png"],
    "eval": ["eval", "--data", "synthetic:1@64", "--out", "runs/x"],
    "replay": ["replay", "in.mcap", "--out", "out_bag"],
    "demo": ["demo"],
    "batch": ["batch", "in_dir", "--out", "out_dir"],
}


@pytest.mark.parametrize("cap", [float("inf"), float("nan"), -5.0, 0.0, True])
def test_the_cap_must_be_a_finite_positive_number(cap):
    with pytest.raises(SettingsError, match="memory_cap_mb must be a finite positive number"):
        SegmenterSettings(memory_cap_mb=cap)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"backend_order": ()}, "backend_order"),
        ({"backend_order": ("gpu",)}, "backend_order"),
        ({"backend_order": ("cpu", "cpu")}, "backend_order"),
        ({"precision": "int8"}, "precision"),
        ({"patch_size": 100}, "patch_size"),
        ({"patch_size": -64}, "patch_size"),
        ({"patch_size": 512, "overlap": 512}, "overlap"),
        ({"overlap": -2}, "overlap"),
        ({"batch_size": 5}, "batch_size"),  # above max_batch 4
        ({"safety_margin": 1.0}, "safety_margin"),
    ],
)
def test_each_bad_value_is_refused_naming_its_field(changes, field):
    with pytest.raises(SettingsError) as info:
        SegmenterSettings(**changes)
    assert info.value.field == field and str(info.value).startswith(field)


def test_sentinels_mean_automatic_and_round_trip():
    auto = SegmenterSettings(model_path="", patch_size=0, overlap=-1, batch_size=0)
    assert (auto.model_path, auto.patch_size, auto.overlap, auto.batch_size) == (None,) * 4
    assert SegmenterSettings(**EXPECTED.as_sentinels()) == EXPECTED
    assert SegmenterSettings(**auto.as_sentinels()) == auto


def test_settings_are_frozen_and_changed_by_validated_copies():
    settings = SegmenterSettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.memory_cap_mb = 10.0  # type: ignore[misc]
    assert settings.replace(memory_cap_mb=700).memory_cap_mb == 700.0
    with pytest.raises(SettingsError):
        settings.replace(memory_cap_mb=float("inf"))


def test_a_registered_backend_can_be_chosen_by_settings_and_ros_parameters(monkeypatch):
    monkeypatch.setitem(
        backends._REGISTRY, "fancy", backends._Registration(lambda model, options: None, ("int8",))
    )
    assert SegmenterSettings(backend_order=("fancy", "cpu"), precision="int8").precision == "int8"
    params = parse_params({"backend_order": ["fancy", "cpu"], "precision": "int8"})
    assert segmenter_settings(params).backend_order == ("fancy", "cpu")


def test_ros_parameters_get_the_same_reason_as_settings():
    with pytest.raises(ParamError, match="memory_cap_mb must be a finite positive number of MB"):
        parse_params({"memory_cap_mb": float("inf")})
    settings = segmenter_settings(parse_params({"patch_size": 512, "overlap": -1}))
    assert settings.patch_size == 512 and settings.overlap is None


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_segmenting_command_takes_the_same_flags(command):
    args = build_parser().parse_args(COMMANDS[command] + SHARED_FLAGS)
    assert settings_from_args(args) == EXPECTED


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("value", ["inf", "nan", "-1.5"])
def test_a_bad_cap_is_one_line_naming_the_flag(command, value, caplog):
    caplog.set_level(logging.ERROR)
    assert main(COMMANDS[command] + [f"--memory-cap-mb={value}"]) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [f"--memory-cap-mb must be a finite positive number of MB, got {value}"]


def test_segment_keeps_device_as_a_deprecated_alias(caplog):
    args = build_parser().parse_args([*COMMANDS["segment"], "--device", "cpu"])
    assert settings_from_args(args).backend_order == ("cpu",)
    assert "--device is deprecated; use --backend cpu" in caplog.text
    both = build_parser().parse_args([*COMMANDS["segment"], "--device", "cpu", "--backend", "cpu"])
    with pytest.raises(ValueError, match="give only --backend"):
        settings_from_args(both)
