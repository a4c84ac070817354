import dataclasses

import pytest

from uhr_seg_ros.model import SGHRQConfig


def test_dict_round_trip_preserves_every_field():
    config = SGHRQConfig.lite(num_classes=2, class_names=("background", "building"))
    data = config.to_dict()
    assert all(not isinstance(v, tuple) for v in data.values())  # YAML/weights_only friendly
    assert SGHRQConfig.from_dict(data) == config


def test_unknown_key_is_refused_with_the_valid_keys_listed():
    data = SGHRQConfig.tiny().to_dict()
    data["num_clases"] = 4
    with pytest.raises(ValueError, match=r"num_clases.*valid keys"):
        SGHRQConfig.from_dict(data)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 255}, "255"),
        ({"class_names": ("a", "b")}, "one name per class"),
        ({"downscale": 8}, "downscale"),
        ({"stdc_widths": (4, 8, 12, 16)}, "multiples of 8"),
        ({"memory_momentum": 1.0}, "memory_momentum"),
        ({"input_blur_sigma": -0.5}, "input_blur_sigma"),
        ({"input_blur_sigma": 9.0}, "input_blur_sigma"),
    ],
)
def test_invalid_values_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(SGHRQConfig.tiny(num_classes=3), **change)


def test_presets_scale_as_documented():
    paper, lite = SGHRQConfig.paper(), SGHRQConfig.lite()
    assert paper.resnet_widths == (64, 128, 256, 512) and paper.stdc_widths == (32, 64, 256, 512)
    assert paper.aspp_dilations == (1, 12, 24, 36) and paper.mlp_widths == (512, 256, 256)
    assert lite.resnet_widths == tuple(w // 2 for w in paper.resnet_widths)
    assert paper.memory_dim == 512 and paper.class_names == tuple(f"class_{i}" for i in range(6))


def test_a_field_added_later_keeps_older_models_identity_until_it_is_set():
    """Memory models and engine keys hash to_dict(): a new field at its default must not change
    the dict of any model saved before it existed."""
    lite = SGHRQConfig.lite()
    assert "input_blur_sigma" not in lite.to_dict()
    assert SGHRQConfig.from_dict(lite.to_dict()) == lite
    blurred = dataclasses.replace(lite, input_blur_sigma=1.2)
    assert blurred.to_dict()["input_blur_sigma"] == 1.2
    assert SGHRQConfig.from_dict(blurred.to_dict()) == blurred
