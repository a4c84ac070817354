"""Evaluation: metric wiring and report files with a stub segmenter; the real CLI end to end."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from uhr_seg_ros.data.datasets import BadSampleError, Sample, SegmentationDataset
from uhr_seg_ros.data.palettes import IGNORE_INDEX, INRIA_CLASSES, INRIA_PALETTE
from uhr_seg_ros.evaluation.evaluate import comparison_picture, evaluate, write_results


class _Buildings(SegmentationDataset):
    """Two 8×8 frames, top half building; frame "broken" raises like a missing mask."""

    classes = INRIA_CLASSES
    palette = INRIA_PALETTE

    def __init__(self, broken: bool = False) -> None:
        self._names = ["a", "broken", "b"] if broken else ["a", "b"]

    @property
    def names(self) -> list[str]:
        return self._names

    def __getitem__(self, index: int) -> Sample:
        name = self._names[index]
        if name == "broken":
            raise BadSampleError("broken_gt.png: mask missing")
        label = np.zeros((8, 8), np.uint8)
        label[:4] = 1
        label[7, 7] = IGNORE_INDEX
        return Sample(np.full((8, 8, 3), 120, np.uint8), label, name)


class _StubSegmenter:
    """Predicts building on the top 6 rows: 2 of 8 rows wrong (background called building)."""

    def __init__(self, num_classes: int = 2) -> None:
        self.backend = SimpleNamespace(num_classes=num_classes)

    def prepare(self, height: int, width: int):
        return SimpleNamespace(describe=lambda: f"{width}x{height}: 1 tile")

    def segment(self, image: np.ndarray):
        mask = np.zeros(image.shape[:2], np.uint8)
        mask[:6] = 1
        return SimpleNamespace(mask=mask, peak_memory_mb=12.5)


def test_scores_skips_bad_samples_and_writes_reports(tmp_path: Path) -> None:
    evaluation = evaluate(_StubSegmenter(), _Buildings(broken=True), tmp_path, progress=False)
    assert [image.name for image in evaluation.images] == ["a", "b"]
    assert evaluation.skipped == ["broken_gt.png: mask missing"]
    results = write_results(evaluation, tmp_path, {"data": "stub", "split": "val"})

    # Per frame: building truth 32 px, predicted 48, TP 32 -> IoU 32/48; background truth 31
    # counted px (one ignored), predicted 15 of them correctly -> 15/31.
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert saved["per_class_iou"]["building"] == pytest.approx(32 / 48)
    assert saved["building_iou"] == pytest.approx(32 / 48)
    assert saved["per_class_iou"]["background"] == pytest.approx(15 / 31)
    assert saved["miou"] == pytest.approx((32 / 48 + 15 / 31) / 2)
    assert saved["pixel_accuracy"] == pytest.approx(47 / 63)
    # Majority baseline: building (32 of 63 counted px) everywhere -> IoU 32/63, background 0.
    assert saved["baseline_class"] == "building"
    assert saved["baseline_miou"] == pytest.approx(32 / 63 / 2)
    assert saved["peak_memory_mb"] == 12.5 and saved["fps"] > 0 and saved["images"] == 2
    assert saved["data"] == "stub" and saved["skipped"] == ["broken_gt.png: mask missing"]

    rows = list(csv.reader((tmp_path / "results.csv").open()))
    assert rows[0] == ["row", "iou", "pixel_accuracy", "truth_share"]
    assert rows[2][:2] == ["building", f"{32 / 48:.4f}"]
    assert len(list(csv.reader((tmp_path / "per_image.csv").open()))) == 3
    markdown = (tmp_path / "results.md").read_text()
    assert "| building | 66.67 |" in markdown and "majority baseline (building)" in markdown
    assert sorted(p.name for p in (tmp_path / "vis").iterdir()) == ["a.jpg", "b.jpg"]


def test_limit_and_class_count_mismatch(tmp_path: Path) -> None:
    assert len(evaluate(_StubSegmenter(), _Buildings(), limit=1, progress=False).images) == 1
    with pytest.raises(ValueError, match="predicts 6 classes but the data set has 2"):
        evaluate(_StubSegmenter(num_classes=6), _Buildings(), progress=False)
    with pytest.raises(ValueError, match="no sample could be evaluated"):
        evaluate(_StubSegmenter(), _Buildings(broken=True), limit=0, progress=False)


def test_confusion_picture_normalises_rows_and_greys_absent_classes() -> None:
    from uhr_seg_ros.evaluation.evaluate import confusion_picture

    matrix = np.array([[9, 1, 0], [0, 0, 0], [5, 0, 5]])
    picture = confusion_picture(matrix, ("urban", "water", "barren"), cell=64)
    assert picture.dtype == np.uint8 and picture.shape[2] == 3
    top = picture.shape[0] - 3 * 64
    left = picture.shape[1] - 3 * 64
    corner = lambda i, j: tuple(picture[top + i * 64 + 2, left + j * 64 + 2])  # noqa: E731
    assert corner(1, 0) == (200, 200, 200)  # no water in the truth
    assert corner(0, 0)[0] > corner(2, 0)[0] > corner(0, 1)[0]  # 90 % > 50 % > 10 %


def test_comparison_picture_panels() -> None:
    truth = np.zeros((40, 60), np.uint8)
    truth[:, 30:] = 1
    truth[0, 0] = IGNORE_INDEX
    prediction = np.ones((40, 60), np.uint8)
    image = np.full((40, 60, 3), 200, np.uint8)
    picture = comparison_picture(image, truth, prediction, INRIA_PALETTE, INRIA_CLASSES)
    assert picture.dtype == np.uint8 and picture.shape == (26 + 40 + 26, 4 * 60 + 3 * 6, 3)
    errors = picture[26:66, 3 * 66 :]
    assert (errors[5:, :30] == (230, 40, 40)).all()  # background called building: red
    assert (errors[:, 30:] == 90).all()  # correct: image dimmed (200 * 0.45)
    assert tuple(errors[0, 0]) == (40, 40, 90)  # ignored
    assert (picture[26:66, 66 + 30 : 66 + 60] == 255).all()  # truth panel: building is white


def test_large_frames_are_downscaled_for_pictures() -> None:
    truth = np.zeros((3000, 1500), np.uint8)
    picture = comparison_picture(
        np.zeros((3000, 1500, 3), np.uint8), truth, truth, INRIA_PALETTE, INRIA_CLASSES
    )
    assert picture.shape[0] == 26 + 768 + 26 and picture.shape[1] == 4 * 384 + 18


@pytest.mark.slow
def test_eval_cli_on_tiny_synthetic_scenes(tmp_path: Path) -> None:
    """`uhr-seg eval` end to end: tiny random checkpoint, two 128² scenes, CPU backend."""
    from uhr_seg_ros.cli import main
    from uhr_seg_ros.data.palettes import DEEPGLOBE_CLASSES
    from uhr_seg_ros.model import SGHRQConfig, build_model, save_checkpoint

    config = dataclasses.replace(SGHRQConfig.tiny(), num_classes=6, class_names=DEEPGLOBE_CLASSES)
    checkpoint = save_checkpoint(tmp_path / "tiny.pt", build_model(config))
    out = tmp_path / "eval"
    code = main(
        [
            "eval",
            "--data",
            "synthetic:2@128",
            "--model",
            str(checkpoint),
            "--backend",
            "cpu",
            "--memory-cap-mb",
            "400",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["images"] == 2 and set(results["per_class_iou"]) == set(DEEPGLOBE_CLASSES)
    assert 0.0 <= results["miou"] <= 1.0 and 0.0 < results["baseline_miou"] <= 1.0
    assert results["peak_memory_mb"] > 0 and results["fps"] > 0
    assert results["memory_cap_mb"] == 400 and results["split"] == "val"
    picture = cv2.imread(str(out / "vis" / "synthetic_s1_0000.jpg"))
    assert picture.shape == (26 + 128 + 26, 4 * 128 + 18, 3)
    assert (out / "results.md").is_file() and (out / "results.csv").is_file()
    assert cv2.imread(str(out / "confusion.png")) is not None


def test_eval_names_samples_the_checkpoint_was_trained_on(tmp_path: Path) -> None:
    from uhr_seg_ros.cli.eval import tiles_in_training_data
    from uhr_seg_ros.model import SGHRQConfig, build_model, save_checkpoint

    model = build_model(SGHRQConfig.tiny())
    trained = save_checkpoint(
        tmp_path / "trained.pt",
        model,
        training={"training_tiles": ["deepglobe:104113", "deepglobe512:0079"]},
    )
    assert tiles_in_training_data(trained, "deepglobe:/data/dg", ["6399", "104113"]) == ["104113"]
    assert tiles_in_training_data(trained, "deepglobe512:/d", ["0079", "0080"]) == ["0079"]
    assert tiles_in_training_data(trained, "folder:/d", ["104113"]) == []
    silent = save_checkpoint(tmp_path / "silent.pt", model)  # older files record nothing
    assert tiles_in_training_data(silent, "deepglobe:/data/dg", ["104113"]) == []


def test_eval_cli_reports_a_missing_model(tmp_path: Path) -> None:
    from uhr_seg_ros.cli import main

    code = main(
        [
            "eval",
            "--data",
            "synthetic:1@64",
            "--model",
            str(tmp_path / "none.pt"),
            "--out",
            str(tmp_path / "eval"),
        ]
    )
    assert code == 1


def _default_model_segmenter():
    from uhr_seg_ros.paths import default_model_path
    from uhr_seg_ros.pipeline import Segmenter, SegmenterSettings

    assert default_model_path().is_file(), (
        f"the bundled default model {default_model_path()} is missing (models/MODEL_CARD.md "
        "says how it is trained)"
    )
    return Segmenter.from_settings(SegmenterSettings(backend_order=("cpu",)))


@pytest.mark.slow
@pytest.mark.data
def test_default_model_beats_majority_baseline_on_held_out_tiles(deepglobe_dir: Path) -> None:
    """The shipped model on the real DeepGlobe tiles it never trained on (models/MODEL_CARD.md),
    and its checkpoint says so: they are not among its recorded training tiles."""
    from uhr_seg_ros.data.datasets import DeepGlobeDataset, SubsetDataset
    from uhr_seg_ros.model.checkpoint import read_checkpoint
    from uhr_seg_ros.paths import default_model_path

    held_out = ["6399", "10452"]
    trained = set(read_checkpoint(default_model_path())["meta"]["training"]["training_tiles"])
    assert "deepglobe:104113" in trained and "deepglobe512:0001" in trained
    assert not {f"deepglobe:{t}" for t in held_out} & trained
    assert "deepglobe512:0235" not in trained  # the quadrant of 6399
    segmenter = _default_model_segmenter()
    dataset = SubsetDataset(DeepGlobeDataset(deepglobe_dir, "all"), held_out)
    summary = evaluate(segmenter, dataset, progress=False).summary()
    assert summary["miou"] > summary["baseline_miou"] + 0.05
    assert summary["pixel_accuracy"] > summary["baseline_pixel_accuracy"]


@pytest.mark.slow
def test_default_model_beats_majority_baseline_on_synthetic_scenes() -> None:
    from uhr_seg_ros.data.datasets import build_dataset

    segmenter = _default_model_segmenter()
    summary = evaluate(
        segmenter, build_dataset("synthetic:1@1024", "test"), progress=False
    ).summary()
    assert summary["miou"] > summary["baseline_miou"] + 0.05
    assert summary["pixel_accuracy"] > summary["baseline_pixel_accuracy"]
