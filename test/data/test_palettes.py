"""Palettes: class-id masks to colours and colour-coded labels back to ids."""

import numpy as np
import pytest

from uhr_seg_ros.data.palettes import (
    DEEPGLOBE_PALETTE,
    DEEPGLOBE_UNKNOWN_COLOR,
    IGNORE_INDEX,
    colorize,
    default_palette,
    palette_lut,
    rgb_to_class,
)


def test_colorize_maps_each_class_and_blacks_out_unlisted_ids():
    mask = np.array([[0, 1, 2], [3, 4, 5], [6, 255, 0]], dtype=np.uint8)
    out = colorize(mask, DEEPGLOBE_PALETTE)
    assert out.shape == (3, 3, 3) and out.dtype == np.uint8
    for cls in range(6):
        ys, xs = np.nonzero(mask == cls)
        assert (out[ys, xs] == DEEPGLOBE_PALETTE[cls]).all()
    assert (out[2, 0] == 0).all() and (out[2, 1] == 0).all()  # ids 6 and 255: no colour


@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.5, 1.0])
def test_colorize_blend_matches_weighted_mean(alpha):
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 6, size=(17, 23), dtype=np.uint8)
    image = rng.integers(0, 256, size=(17, 23, 3), dtype=np.uint8)
    out = colorize(mask, DEEPGLOBE_PALETTE, image=image, alpha=alpha)
    expected = np.asarray(DEEPGLOBE_PALETTE, np.float64)[mask] * alpha + image * (1 - alpha)
    assert np.abs(out.astype(np.float64) - expected).max() <= 1.0


def test_colorize_refuses_mismatched_inputs():
    mask = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match="matching mask"):
        colorize(mask, DEEPGLOBE_PALETTE, image=np.zeros((4, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        colorize(mask.astype(np.int64), DEEPGLOBE_PALETTE)
    with pytest.raises(ValueError, match="alpha"):
        colorize(mask, DEEPGLOBE_PALETTE, image=np.zeros((4, 4, 3), np.uint8), alpha=1.5)


def test_palette_lut_is_a_private_copy():
    lut = palette_lut(DEEPGLOBE_PALETTE, ignore_color=(9, 9, 9))
    assert lut.shape == (256, 3) and (lut[6:] == 9).all()
    lut[0] = (1, 2, 3)
    assert (palette_lut(DEEPGLOBE_PALETTE)[0] == DEEPGLOBE_PALETTE[0]).all()


def test_default_palette_is_distinct_and_deterministic():
    pal = default_palette(12)
    assert len(pal) == 12 and len(set(pal)) == 12
    assert pal == default_palette(12)
    assert default_palette(2) == DEEPGLOBE_PALETTE[:2]


def test_rgb_to_class_tolerates_jpeg_noise_and_reports_unexpected_colours():
    ids = np.array([[0, 1, 2, 3], [4, 5, 0, 1]], dtype=np.uint8)
    rgb = np.asarray(DEEPGLOBE_PALETTE, np.int16)[ids]
    noise = np.random.default_rng(1).integers(-40, 41, size=rgb.shape)
    noisy = np.clip(rgb + noise, 0, 255).astype(np.uint8)
    labels, unexpected = rgb_to_class(noisy, DEEPGLOBE_PALETTE, DEEPGLOBE_UNKNOWN_COLOR)
    assert (labels == ids).all() and unexpected == 0.0

    odd = rgb.astype(np.uint8).copy()
    odd[0, 0] = (255, 0, 0)  # red: in no palette
    odd[0, 1] = DEEPGLOBE_UNKNOWN_COLOR  # "unknown": ignored, but expected
    labels, unexpected = rgb_to_class(odd, DEEPGLOBE_PALETTE, DEEPGLOBE_UNKNOWN_COLOR)
    assert labels[0, 0] == IGNORE_INDEX and labels[0, 1] == IGNORE_INDEX
    assert unexpected == pytest.approx(1 / 8)
