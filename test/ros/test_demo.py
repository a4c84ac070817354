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
    return subprocess.run([sys.executable, "-m", "uhr_seg_ros.cli", "demo", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def frame_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(folder / f"frame_{i}.png"),
                    rng.integers(0, 256, (FRAME_H, FRAME_W, 3), dtype=np.uint8))
    return folder


@pytest.mark.slow
def test_demo_writes_colour_masks_and_prints_stats(tiny_checkpoint, frame_folder, tmp_path):
    out = tmp_path / "demo"
    result = _demo("--model", str(tiny_checkpoint), "--backend", "cpu", "--source",
                   str(frame_folder), "--frames", "2", "--rate", "4", "--out", str(out),
                   "--timeout", "120")
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
def test_demo_fails_fast_with_the_reason_when_the_camera_cannot_start(tiny_checkpoint,
                                                                      tmp_path):
    result = _demo("--model", str(tiny_checkpoint), "--backend", "cpu", "--source",
                   str(tmp_path / "no_such_folder"), "--out", str(tmp_path / "demo"),
                   "--timeout", "120", timeout=60)
    assert result.returncode == 1
    assert "demo_source exited before the masks arrived" in result.stderr
    assert "neither 'sample', 'synthetic', an image file nor a folder" in result.stderr


def test_demo_refuses_a_missing_model_before_starting_anything(tmp_path):
    result = _demo("--model", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "demo"),
                   timeout=60)
    assert result.returncode == 1
    assert "missing.pt does not exist" in result.stderr and "--model" in result.stderr
    assert not (tmp_path / "demo" / "seg_node.log").exists()
