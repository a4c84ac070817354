"""``uhr-seg demo``: node and demo camera as real processes over DDS, colour masks on disk."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy")

FRAME_H, FRAME_W = 96, 160


def _demo(*args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "uhr_seg_ros.cli", "demo", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def frame_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(
            str(folder / f"frame_{i}.png"),
            rng.integers(0, 256, (FRAME_H, FRAME_W, 3), dtype=np.uint8),
        )
    return folder


@pytest.mark.slow
def test_demo_writes_colour_masks_and_prints_stats(tiny_checkpoint, frame_folder, tmp_path):
    out = tmp_path / "demo"
    result = _demo(
        "--model",
        str(tiny_checkpoint),
        "--backend",
        "cpu",
        "--source",
        str(frame_folder),
        "--frames",
        "2",
        "--rate",
        "4",
        "--out",
        str(out),
        "--timeout",
        "120",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    masks = sorted(out.glob("mask_color_*.png"))
    assert len(masks) == 2
    for path in masks:
        picture = cv2.imread(str(path))
        assert picture.shape == (FRAME_H, FRAME_W, 3)
    assert (out / "seg_node.log").is_file() and (out / "demo_source.log").is_file()
    stats = result.stdout
    assert "backend" in stats and "cpu" in stats
    published = int(stats.split("frames_published")[1].split()[0])
    assert published >= 2
    assert "latency (ms)" in stats and "infer" in stats and "publish" in stats


@pytest.mark.slow
def test_demo_fails_fast_with_the_reason_when_the_camera_cannot_start(tiny_checkpoint, tmp_path):
    result = _demo(
        "--model",
        str(tiny_checkpoint),
        "--backend",
        "cpu",
        "--source",
        str(tmp_path / "no_such_folder"),
        "--out",
        str(tmp_path / "demo"),
        "--timeout",
        "120",
        timeout=60,
    )
    assert result.returncode == 1
    assert "demo_source exited before the masks arrived" in result.stderr
    assert "neither 'sample', 'synthetic', an image file nor a folder" in result.stderr


def test_demo_refuses_a_missing_model_before_starting_anything(tmp_path):
    result = _demo(
        "--model", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "demo"), timeout=60
    )
    assert result.returncode == 1
    assert "missing.pt does not exist" in result.stderr and "--model" in result.stderr
    assert not (tmp_path / "demo" / "seg_node.log").exists()


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8"])
def test_demo_frames_decode_back_to_the_source_pixels(encoding):
    from uhr_seg_ros.ros.demo_source import rgb_to_message
    from uhr_seg_ros.ros.image_conversion import image_to_rgb

    rgb = np.random.default_rng(1).integers(0, 256, (FRAME_H, FRAME_W, 3), dtype=np.uint8)
    msg = rgb_to_message(rgb, encoding, "cam")
    assert (msg.encoding, msg.height, msg.width, msg.header.frame_id) == (
        encoding,
        FRAME_H,
        FRAME_W,
        "cam",
    )
    decoded = image_to_rgb(msg, use_cv_bridge=False)
    if encoding == "mono8":
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        assert np.array_equal(decoded, np.repeat(grey[..., None], 3, axis=2))
    else:
        assert np.array_equal(decoded, rgb)


def test_demo_sources_sample_synthetic_and_folders(frame_folder):
    from uhr_seg_ros.ros.demo_source import SYNTHETIC_SCENES, frame_loaders

    (sample,) = frame_loaders("sample", (64, 64))
    assert sample().shape == (2048, 2048, 3)
    synthetic = frame_loaders("synthetic", (64, 96))
    assert len(synthetic) == SYNTHETIC_SCENES
    assert synthetic[0]().shape == (64, 96, 3)
    (frame_folder / "broken.jpg").write_bytes(b"not an image")
    loaders = frame_loaders(str(frame_folder), (64, 64))
    assert len(loaders) == 3  # broken.jpg sorts first and fails only when it is loaded
    with pytest.raises(ValueError, match=r"cannot decode .*broken\.jpg"):
        loaders[0]()
    assert loaders[1]().shape == (FRAME_H, FRAME_W, 3)
    with pytest.raises(FileNotFoundError, match="neither 'sample', 'synthetic'"):
        frame_loaders(str(frame_folder / "missing"), (64, 64))
    empty = frame_folder / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        frame_loaders(str(empty), (64, 64))
