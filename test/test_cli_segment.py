"""``uhr-seg segment`` end to end on a tiny checkpoint (CPU)."""

import cv2
import numpy as np
import pytest
import torch

from uhr_seg_ros.cli import main
from uhr_seg_ros.model import SGHRQConfig, build_model, save_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, build_model(SGHRQConfig.tiny(3)))
    return path


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "frame.png"
    rgba = np.random.default_rng(0).integers(0, 256, (70, 110, 4), dtype=np.uint8)
    cv2.imwrite(str(path), rgba)
    return path


def test_writes_a_class_id_png_the_size_of_the_input(checkpoint, image_file, tmp_path):
    out, color = tmp_path / "out" / "mask.png", tmp_path / "overlay.png"
    rc = main(["segment", str(image_file), "--out", str(out), "--model", str(checkpoint),
               "--device", "cpu", "--memory-cap-mb", "300", "--color", str(color)])
    assert rc == 0
    mask = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (70, 110) and mask.dtype == np.uint8 and mask.max() < 3
    assert cv2.imread(str(color)).shape == (70, 110, 3)


@pytest.mark.parametrize("extra,message", [
    (["--model", "missing.pt"], "does not exist"),
    (["--out", "mask.jpg"], "must be a .png"),
])
def test_user_errors_exit_1_with_one_line(checkpoint, image_file, tmp_path, caplog, extra,
                                          message):
    args = ["segment", str(image_file), "--out", str(tmp_path / "m.png"), "--device", "cpu",
            "--model", str(checkpoint)] + extra
    assert main(args) == 1
    assert message in caplog.text


def test_unreadable_image(tmp_path, checkpoint, caplog):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert main(["segment", str(bad), "--out", str(tmp_path / "m.png"),
                 "--model", str(checkpoint), "--device", "cpu"]) == 1
    assert "cannot decode" in caplog.text


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_no_usable_backend_exits_1_with_the_reason(checkpoint, image_file, tmp_path, caplog):
    assert main(["segment", str(image_file), "--out", str(tmp_path / "m.png"),
                 "--model", str(checkpoint), "--device", "cuda"]) == 1
    assert "no backend could be created" in caplog.text and "no CUDA device" in caplog.text


def test_cli_backend_default_is_the_backends_default_order():
    from uhr_seg_ros.backends import DEFAULT_ORDER
    from uhr_seg_ros.cli.segmenter_options import DEFAULT_BACKENDS

    assert tuple(DEFAULT_BACKENDS.split(",")) == DEFAULT_ORDER


def test_truncated_jpeg_is_refused_not_segmented(tmp_path, checkpoint):
    """A cut-off JPEG used to give exit 0 and a one-class mask from libjpeg's grey fill (the
    message is read_rgb's, tested in test/data/test_image_io.py)."""
    jpeg = cv2.imencode(".jpg", np.random.default_rng(1).integers(
        0, 256, (64, 96, 3), dtype=np.uint8))[1].tobytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(jpeg[: len(jpeg) // 2])
    out = tmp_path / "m.png"
    assert main(["segment", str(cut), "--out", str(out), "--model", str(checkpoint),
                 "--device", "cpu"]) == 1
    assert not out.exists()
