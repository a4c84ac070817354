"""Metrics against confusion matrices and IoUs computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from uhr_seg_ros.evaluation.metrics import ConfusionMatrix

# Truth / prediction of a 3×4 image with 3 classes and two ignored pixels (255).
TRUTH = np.array([[0, 0, 1, 1], [0, 2, 2, 255], [1, 1, 2, 255]], np.uint8)
PREDICTION = np.array([[0, 1, 1, 1], [0, 2, 0, 2], [1, 2, 2, 0]], np.uint8)
# Counted pixels by hand (row = truth, column = prediction):
#   truth 0: (0,0)->0 (0,1)->1 (1,0)->0          => [2, 1, 0]
#   truth 1: (0,2)->1 (0,3)->1 (2,0)->1 (2,1)->2 => [0, 3, 1]
#   truth 2: (1,1)->2 (1,2)->0 (2,2)->2          => [1, 0, 2]
EXPECTED = np.array([[2, 1, 0], [0, 3, 1], [1, 0, 2]])


def test_matrix_matches_hand_count_and_ignores_255() -> None:
    metrics = ConfusionMatrix(3)
    image = metrics.update(PREDICTION, TRUTH)
    np.testing.assert_array_equal(image, EXPECTED)
    np.testing.assert_array_equal(metrics.matrix, EXPECTED)
    assert metrics.matrix.sum() == 10  # 12 pixels - 2 ignored


def test_iou_miou_and_accuracy_by_hand() -> None:
    metrics = ConfusionMatrix(3)
    metrics.update(PREDICTION, TRUTH)
    # IoU = TP / (row + column - TP): class 0: 2/(3+3-2); class 1: 3/(4+4-3); class 2: 2/(3+3-2)
    np.testing.assert_allclose(metrics.iou(), [2 / 4, 3 / 5, 2 / 4])
    assert metrics.miou() == pytest.approx((0.5 + 0.6 + 0.5) / 3)
    assert metrics.miou(classes=[1]) == pytest.approx(0.6)
    assert metrics.pixel_accuracy() == pytest.approx(7 / 10)


def test_accumulates_over_images_dataset_level() -> None:
    metrics = ConfusionMatrix(3)
    metrics.update(PREDICTION, TRUTH)
    metrics.update(torch.from_numpy(TRUTH.astype(np.int64)), torch.from_numpy(TRUTH))  # perfect
    np.testing.assert_array_equal(metrics.matrix, EXPECTED + np.diag([3, 4, 3]))
    # Class 1: TP 3+4, truth 4+4, predicted 4+4 -> 7 / 9 (not the mean of 0.6 and 1.0).
    assert metrics.iou()[1] == pytest.approx(7 / 9)


def test_absent_class_is_nan_and_excluded_from_the_mean() -> None:
    metrics = ConfusionMatrix(4)
    metrics.update(PREDICTION, TRUTH)  # class 3 never appears
    iou = metrics.iou()
    assert math.isnan(iou[3])
    assert metrics.miou() == pytest.approx((0.5 + 0.6 + 0.5) / 3)
    # A class predicted but absent from truth counts, with IoU 0.
    metrics.update(np.full((1, 2), 3), np.zeros((1, 2), np.uint8))
    assert metrics.iou()[3] == 0.0
    assert math.isnan(ConfusionMatrix(2).miou())
    assert math.isnan(ConfusionMatrix(2).pixel_accuracy())


def test_majority_baseline_by_hand() -> None:
    metrics = ConfusionMatrix(3)
    metrics.update(PREDICTION, TRUTH)
    baseline = metrics.majority_baseline()  # truth counts [3, 4, 3]: always predict class 1
    np.testing.assert_array_equal(baseline.matrix, [[0, 3, 0], [0, 4, 0], [0, 3, 0]])
    np.testing.assert_allclose(baseline.iou(), [0.0, 4 / 10, 0.0])
    assert baseline.pixel_accuracy() == pytest.approx(0.4)
    np.testing.assert_allclose(metrics.class_frequencies(), [0.3, 0.4, 0.3])


def test_bad_inputs_raise_clear_errors() -> None:
    metrics = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="same shape"):
        metrics.update(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"prediction holds class id 7 outside 0\.\.2"):
        metrics.update(np.full((2, 2), 7), np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="truth holds class id 5"):
        metrics.update(np.zeros((2, 2)), np.full((2, 2), 5, np.uint8))
    assert metrics.matrix.sum() == 0
