"""Synthetic scene generator: determinism, exact labels that match the picture, sample frame."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from uhr_seg_ros.data import synthetic
from uhr_seg_ros.data.synthetic import AGRICULTURE, BARREN, FOREST, URBAN, WATER, generate_scene
from uhr_seg_ros.paths import REPO_ROOT


@pytest.fixture(scope="module")
def scenes() -> list[tuple[np.ndarray, np.ndarray]]:
    return [generate_scene(512, seed=seed) for seed in range(4)]


def test_same_seed_same_scene_other_seed_other_scene() -> None:
    image, label = generate_scene((96, 160), seed=(3, 1))
    again_image, again_label = generate_scene((96, 160), seed=(3, 1))
    assert image.shape == (96, 160, 3) and image.dtype == np.uint8
    assert label.shape == (96, 160) and label.dtype == np.uint8
    np.testing.assert_array_equal(image, again_image)
    np.testing.assert_array_equal(label, again_label)
    assert not np.array_equal(image, generate_scene((96, 160), seed=(3, 2))[0])


def test_labels_are_deepglobe_classes_and_cover_all_of_them(scenes) -> None:
    seen = set()
    for _, label in scenes:
        values = set(np.unique(label).tolist())
        assert values <= set(range(6))  # exact truth: never "unknown"
        seen |= values
    assert seen == set(range(6))


def test_classes_look_different(scenes) -> None:
    """Labels match the picture: class colours are separable the way they are in aerial imagery."""
    pixels = {cls: [] for cls in range(6)}
    for image, label in scenes:
        for cls in range(6):
            pixels[cls].append(image[label == cls].reshape(-1, 3).astype(np.float32))
    mean = {cls: np.concatenate(v).mean(0) for cls, v in pixels.items() if sum(map(len, v))}
    brightness = {cls: m.mean() for cls, m in mean.items()}
    assert brightness[FOREST] < brightness[AGRICULTURE] < brightness[BARREN]
    assert brightness[WATER] < brightness[BARREN]
    assert mean[FOREST][1] > mean[FOREST][2]  # canopy is green, not blue
    urban = np.concatenate(pixels[URBAN])
    assert urban.std() > 25  # roofs, streets and shadows: the busiest texture


def test_scene_is_textured_not_flat(scenes) -> None:
    image, _ = scenes[0]
    detail = cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.CV_32F)
    assert 2.0 < np.abs(detail).mean() < 40.0


def test_rejects_tiny_sizes() -> None:
    with pytest.raises(ValueError, match="at least 64x64"):
        generate_scene(32)


def test_bundled_sample_frame_matches_its_seed() -> None:
    """models/sample_frame.jpg is the documented scene (regenerable label), small enough."""
    path = REPO_ROOT / "models" / "sample_frame.jpg"
    assert path.stat().st_size < 1.5 * 2**20
    stored = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    image, label = generate_scene(synthetic.SAMPLE_FRAME_SIZE, seed=synthetic.SAMPLE_FRAME_SEED)
    assert stored.shape == image.shape == (2048, 2048, 3)
    assert np.abs(stored.astype(np.int16) - image).mean() < 3.0  # JPEG q90 error only
    assert len(np.unique(label)) == 6


def test_synthetic_command_writes_scene_label_and_overlay(tmp_path) -> None:
    from uhr_seg_ros.cli import main

    out = tmp_path / "scene.png"
    assert main(["synthetic", "--size", "64x96", "--seed", "3", "--out", str(out)]) == 0
    for path in (out, tmp_path / "scene_label.png", tmp_path / "scene_overlay.png"):
        assert cv2.imread(str(path)).shape == (64, 96, 3)
    expected, _ = generate_scene((64, 96), seed=3)
    assert np.array_equal(cv2.imread(str(out))[..., ::-1], expected)
