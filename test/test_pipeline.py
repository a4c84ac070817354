"""Segmenter: the object every adapter holds (tiny random-init SGHRQ on the CPU)."""

import warnings

import numpy as np
import pytest
import torch

from uhr_seg_ros.model import SGHRQConfig, build_model
from uhr_seg_ros.pipeline import Segmenter, SegmenterSettings
from uhr_seg_ros.tiling import PlanError


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(SGHRQConfig.tiny(3)).eval()


@pytest.fixture(scope="module")
def segmenter(model):
    settings = SegmenterSettings(
        backend_order=("cpu",), memory_cap_mb=400, patch_size=64, overlap=16, return_confidence=True
    )
    return Segmenter.from_settings(settings, model=model)


def test_mask_matches_the_network_on_a_single_window(segmenter, model):
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    result = segmenter.segment(image)
    with torch.no_grad():
        logits = model(torch.from_numpy(image).permute(2, 0, 1)[None].float())[0]
    np.testing.assert_array_equal(result.mask, logits.argmax(0).numpy())
    np.testing.assert_allclose(
        result.confidence.astype(np.float32), logits.softmax(0).max(0).values.numpy(), atol=2e-3
    )


def test_result_fields(segmenter):
    image = np.random.default_rng(1).integers(0, 256, (90, 150, 4), dtype=np.uint8)
    result = segmenter.segment(image)
    assert result.mask.shape == (90, 150) and result.mask.dtype == np.uint8
    assert result.mask.max() < 3 and result.confidence.shape == (90, 150)
    assert {"infer", "merge", "total"} <= set(result.timings_ms)
    assert result.plan.patch == 64 and result.plan.overlap == 16
    assert 0 < result.peak_memory_mb <= 400
    assert result.class_names == segmenter.class_names and len(segmenter.palette) == 3
    assert "cpu" in segmenter.describe()


def test_tensor_and_array_inputs_agree(segmenter):
    image = np.random.default_rng(2).integers(0, 256, (70, 80, 3), dtype=np.uint8)
    from_array = segmenter.segment(image).mask
    from_tensor = segmenter.segment(torch.from_numpy(image).permute(2, 0, 1)).mask
    from_flipped_view = segmenter.segment(image[:, ::-1][:, ::-1]).mask
    np.testing.assert_array_equal(from_array, from_tensor)
    np.testing.assert_array_equal(from_array, from_flipped_view)


def test_read_only_message_buffers_are_accepted_silently(segmenter):
    image = np.random.default_rng(3).integers(0, 256, (70, 80, 3), dtype=np.uint8)
    expected = segmenter.segment(image).mask
    read_only = np.frombuffer(image.tobytes(), dtype=np.uint8).reshape(image.shape)
    assert not read_only.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(segmenter.segment(read_only).mask, expected)


@pytest.mark.parametrize(
    "bad,message",
    [
        (np.zeros((0, 10, 3), np.uint8), "empty"),
        (np.zeros((10, 10, 3), np.float32), "uint8"),
        (np.zeros((10, 10, 2), np.uint8), "C in 1, 3, 4"),
        (np.zeros((2, 10, 10, 3), np.uint8), "C in 1, 3, 4"),
        (torch.zeros(5, 10, 10, dtype=torch.uint8), "C×H×W"),
        ([[1, 2], [3, 4]], "numpy array or a torch tensor"),
    ],
)
def test_bad_input_gets_a_clear_value_error(segmenter, bad, message):
    with pytest.raises(ValueError, match=message):
        segmenter.segment(bad)


def test_set_memory_cap_replans_or_refuses(model):
    segmenter = Segmenter.from_settings(
        SegmenterSettings(backend_order=("cpu",), memory_cap_mb=200), model=model
    )
    assert segmenter.set_memory_cap(150) is None  # no frame yet: nothing to re-plan
    image = np.zeros((300, 400, 3), np.uint8)
    first = segmenter.segment(image).plan
    with pytest.raises(PlanError, match="Raise the cap"):
        segmenter.set_memory_cap(0.5)
    assert segmenter.settings.memory_cap_mb == 150 and segmenter.plan_for(300, 400) == first
    bigger = segmenter.set_memory_cap(1000)
    assert bigger.cap_bytes == 1000 * 2**20 and bigger.patch >= first.patch
    segmenter.close()


def test_missing_model_file_says_how_to_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Segmenter.from_settings(
            SegmenterSettings(model_path=str(tmp_path / "nope.pt"), backend_order=("cpu",))
        )


def test_palette_comes_from_the_checkpoint_meta_when_stored():
    torch.manual_seed(0)
    model = build_model(SGHRQConfig.tiny(2)).eval()
    settings = SegmenterSettings(backend_order=("cpu",), memory_cap_mb=400, patch_size=64)
    assert len(Segmenter.from_settings(settings, model=model).palette) == 2  # defaults
    model.meta = {"palette": [[0, 0, 0], [255, 255, 255]]}
    assert Segmenter.from_settings(settings, model=model).palette == ((0, 0, 0), (255, 255, 255))
