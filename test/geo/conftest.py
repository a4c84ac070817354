"""Fixtures of the geo and batch tests: a tiny, sharpened CPU model and segmenter."""

from __future__ import annotations

import pytest
import torch
from georasters import make_segmenter

from uhr_seg_ros.model import SGHRQConfig, build_model


@pytest.fixture(scope="session")
def geo_model():
    torch.manual_seed(0)
    model = build_model(SGHRQConfig.tiny(num_classes=3))
    model.memory.prototypes.normal_()
    model.memory.initialised.fill_(True)
    with torch.no_grad():  # sharpen the random network so that its mask varies with the image
        model.query.mlp[2].bias.zero_()
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_var.fill_(0.01)
    return model.eval()


@pytest.fixture(scope="session")
def segmenter(geo_model):
    return make_segmenter(geo_model)
