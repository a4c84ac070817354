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
    rc = main(
        [
            "segment",
            str(image_file),
            "--out",
            str(out),
            "--model",
            str(checkpoint),
            "--device",
            "cpu",
            "--memory-cap-mb",
            "300",
            "--color",
            str(color),
        ]
    )
    assert rc == 0
    mask = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (70, 110) and mask.dtype == np.uint8 and mask.max() < 3
    assert cv2.imread(str(color)).shape == (70, 110, 3)


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--model", "missing.pt"], "does not exist"),
        (["--out", "mask.jpg"], "must be a .png"),
    ],
)
def test_user_errors_exit_1_with_one_line(checkpoint, image_file, tmp_path, caplog, extra, message):
    args = [
        "segment",
        str(image_file),
        "--out",
        str(tmp_path / "m.png"),
        "--device",
        "cpu",
        "--model",
        str(checkpoint),
        *extra,
    ]
    assert main(args) == 1
    assert message in caplog.text


def test_unreadable_image(tmp_path, checkpoint, caplog):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert (
        main(
            [
                "segment",
                str(bad),
                "--out",
                str(tmp_path / "m.png"),
                "--model",
                str(checkpoint),
                "--device",
                "cpu",
            ]
        )
        == 1
    )
    assert "cannot decode" in caplog.text


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_no_usable_backend_exits_1_with_the_reason(checkpoint, image_file, tmp_path, caplog):
    assert (
        main(
            [
                "segment",
                str(image_file),
                "--out",
                str(tmp_path / "m.png"),
                "--model",
                str(checkpoint),
                "--device",
                "cuda",
            ]
        )
        == 1
    )
    assert "no backend could be created" in caplog.text and "no CUDA device" in caplog.text


def test_cli_backend_default_is_the_backends_default_order():
    from uhr_seg_ros.backends import DEFAULT_ORDER
    from uhr_seg_ros.cli.segmenter_options import DEFAULT_BACKENDS

    assert tuple(DEFAULT_BACKENDS.split(",")) == DEFAULT_ORDER


def test_truncated_jpeg_is_refused_not_segmented(tmp_path, checkpoint):
    """A cut-off JPEG used to give exit 0 and a one-class mask from libjpeg's grey fill (the
    message is read_rgb's, tested in test/data/test_image_io.py)."""
    jpeg = cv2.imencode(
        ".jpg", np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    )[1].tobytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(jpeg[: len(jpeg) // 2])
    out = tmp_path / "m.png"
    assert (
        main(
            ["segment", str(cut), "--out", str(out), "--model", str(checkpoint), "--device", "cpu"]
        )
        == 1
    )
    assert not out.exists()


def _write_images(folder, count, shape=(40, 60, 3)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(count):
        cv2.imwrite(str(folder / f"img{i}.png"), rng.integers(0, 256, shape, dtype=np.uint8))


def test_many_files_folders_and_globs_into_a_folder(checkpoint, tmp_path, caplog):
    caplog.set_level("INFO")
    _write_images(tmp_path / "a", 2)
    _write_images(tmp_path / "b", 2, shape=(50, 30, 3))
    out = tmp_path / "masks"
    common = ["--out", str(out), "--model", str(checkpoint), "--device", "cpu", "--no-progress"]
    rc = main(["segment", str(tmp_path / "a"), str(tmp_path / "b" / "img*.png"), *common])
    assert rc == 1  # b's images have the same names as a's: refused before any work
    assert "would both write" in caplog.text and not out.exists()
    (tmp_path / "b" / "img0.png").rename(tmp_path / "b" / "other0.png")
    (tmp_path / "b" / "img1.png").rename(tmp_path / "b" / "other1.png")
    caplog.clear()
    assert main(["segment", str(tmp_path / "a"), str(tmp_path / "b" / "other*.png"), *common]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "img0.png",
        "img1.png",
        "other0.png",
        "other1.png",
    ]
    assert cv2.imread(str(out / "other0.png"), cv2.IMREAD_UNCHANGED).shape == (50, 30)
    assert "4 segmented, 0 skipped" in caplog.text
    # Existing masks are skipped unless --overwrite.
    stamp = (out / "img0.png").stat().st_mtime_ns
    caplog.clear()
    assert main(["segment", str(tmp_path / "a"), *common]) == 0
    assert "0 segmented, 2 skipped" in caplog.text
    assert (out / "img0.png").stat().st_mtime_ns == stamp
    caplog.clear()
    assert main(["segment", str(tmp_path / "a"), "--overwrite", *common]) == 0
    assert "2 segmented, 0 skipped" in caplog.text


def test_many_files_keep_going_after_a_failure(checkpoint, tmp_path, caplog):
    caplog.set_level("INFO")
    _write_images(tmp_path / "in", 2)
    (tmp_path / "in" / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "masks"
    rc = main(
        [
            "segment",
            str(tmp_path / "in"),
            str(tmp_path / "nope.jpg"),
            "--out",
            str(out),
            "--model",
            str(checkpoint),
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert rc == 1
    assert sorted(p.name for p in out.iterdir()) == ["img0.png", "img1.png"]
    assert "2 segmented, 0 skipped (mask exists), 2 failed" in caplog.text
    assert "broken.png" in caplog.text and "nope.jpg: does not exist" in caplog.text


def test_many_files_plan_and_load_once(checkpoint, tmp_path, monkeypatch):
    from uhr_seg_ros import pipeline

    _write_images(tmp_path / "in", 3)
    built, planned = [], []
    original_from_settings = pipeline.Segmenter.from_settings.__func__
    original_plan = pipeline.plan_tiles

    def counting_from_settings(cls, *a, **k):
        built.append(1)
        return original_from_settings(cls, *a, **k)

    def counting_plan(*a, **k):
        planned.append(a[:2])
        return original_plan(*a, **k)

    monkeypatch.setattr(pipeline.Segmenter, "from_settings", classmethod(counting_from_settings))
    monkeypatch.setattr(pipeline, "plan_tiles", counting_plan)
    assert (
        main(
            [
                "segment",
                str(tmp_path / "in"),
                "--out",
                str(tmp_path / "m"),
                "--model",
                str(checkpoint),
                "--backend",
                "cpu",
                "--no-progress",
            ]
        )
        == 0
    )
    # One model for all three frames; the frame size planned once (the start-up check of the
    # smallest possible plan is the only other plan).
    assert len(built) == 1 and planned.count((40, 60)) == 1 and len(planned) <= 2


def test_one_file_into_a_folder_and_a_mask_name_for_many_is_refused(
    checkpoint, image_file, tmp_path, caplog
):
    out = tmp_path / "masks"
    out.mkdir()
    assert (
        main(
            [
                "segment",
                str(image_file),
                "--out",
                str(out),
                "--model",
                str(checkpoint),
                "--device",
                "cpu",
                "--no-progress",
            ]
        )
        == 0
    )
    assert (out / "frame.png").is_file()
    assert (
        main(
            [
                "segment",
                str(image_file),
                str(image_file),
                "--out",
                str(tmp_path / "x.png"),
                "--model",
                str(checkpoint),
                "--device",
                "cpu",
            ]
        )
        == 1
    )
    assert "pass a folder" in caplog.text


def test_min_confidence_marks_unsure_pixels_255_and_keeps_the_rest(
    checkpoint, image_file, tmp_path
):
    from uhr_seg_ros.pipeline import Segmenter
    from uhr_seg_ros.settings import SegmenterSettings

    out = tmp_path / "mask.png"
    args = ["segment", str(image_file), "--model", str(checkpoint), "--backend", "cpu"]
    assert main([*args, "--out", str(out), "--min-confidence", "0.4"]) == 0
    mask = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)

    settings = SegmenterSettings(
        model_path=str(checkpoint), backend_order=("cpu",), return_confidence=True
    )
    segmenter = Segmenter.from_settings(settings)
    image = cv2.cvtColor(cv2.imread(str(image_file)), cv2.COLOR_BGR2RGB)
    result = segmenter.segment(image)
    segmenter.close()
    unsure = result.confidence < 0.4
    assert 0 < unsure.sum() < unsure.size  # the threshold splits this frame
    assert (mask[unsure] == 255).all()
    np.testing.assert_array_equal(mask[~unsure], result.mask[~unsure])


@pytest.mark.parametrize("value", ["0", "1.5"])
def test_min_confidence_outside_0_1_is_refused(checkpoint, image_file, tmp_path, caplog, value):
    args = [
        "segment",
        str(image_file),
        "--out",
        str(tmp_path / "m.png"),
        "--model",
        str(checkpoint),
    ]
    assert main([*args, "--min-confidence", value]) == 1
    assert "--min-confidence must be in (0, 1)" in caplog.text
