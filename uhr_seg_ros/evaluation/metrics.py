"""Segmentation metrics from one accumulated confusion matrix (rows = truth, columns = prediction).

Conventions (the DeepGlobe / Inria benchmarks'):
* pixels whose truth is ``ignore_index`` (255: DeepGlobe "unknown", padding) are not counted;
* IoU of class c = TP / (TP + FP + FN) over every image accumulated (dataset-level, not a mean
  of per-image IoUs);
* a class absent from both truth and prediction has IoU NaN and is left out of the mean, so a
  test set without water does not score 0 or 1 for water;
* mIoU is the mean over the listed classes (all by default) of the non-NaN IoUs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from uhr_seg_ros.data.palettes import IGNORE_INDEX

ArrayLike = np.ndarray | torch.Tensor


def _as_numpy(values: ArrayLike) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


class ConfusionMatrix:
    """``num_classes × num_classes`` int64 pixel counts, accumulated over many images."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), np.int64)

    def update(self, prediction: ArrayLike, truth: ArrayLike) -> np.ndarray:
        """Add one image: integer class ids of the same shape. Returns this image's matrix."""
        prediction, truth = _as_numpy(prediction), _as_numpy(truth)
        if prediction.shape != truth.shape:
            raise ValueError(
                f"prediction {prediction.shape} and truth {truth.shape} must have the same shape"
            )
        counted = truth != self.ignore_index
        truth_ids = truth[counted].astype(np.int64)
        predicted_ids = prediction[counted].astype(np.int64)
        classes = self.num_classes
        for name, ids in (("truth", truth_ids), ("prediction", predicted_ids)):
            outside = ids[(ids < 0) | (ids >= classes)]
            if outside.size:
                raise ValueError(
                    f"{name} holds class id {int(outside[0])} outside "
                    f"0..{classes - 1} (ignore = {self.ignore_index}); does the "
                    "model's class count match the data set's?"
                )
        image = np.bincount(
            truth_ids * classes + predicted_ids, minlength=classes * classes
        ).reshape(classes, classes)
        self.matrix += image
        return image

    def iou(self) -> np.ndarray:
        """Per-class IoU (float64, NaN for classes absent from truth and prediction)."""
        true_positive = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - true_positive
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, true_positive / union, np.nan)

    def miou(self, classes: Sequence[int] | None = None) -> float:
        """Mean of the non-NaN IoUs over ``classes`` (all by default); NaN if none counts."""
        iou = self.iou()
        selected = iou if classes is None else iou[list(classes)]
        selected = selected[~np.isnan(selected)]
        return float(selected.mean()) if selected.size else float("nan")

    def pixel_accuracy(self) -> float:
        """Correct pixels / counted pixels (NaN before any counted pixel)."""
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else float("nan")

    def class_frequencies(self) -> np.ndarray:
        """Share of counted truth pixels per class (float64, sums to 1)."""
        counts = self.matrix.sum(1).astype(np.float64)
        return counts / counts.sum() if counts.sum() else counts

    def majority_baseline(self) -> ConfusionMatrix:
        """The matrix a constant prediction of the most frequent truth class would have scored.

        The trivial baseline a model must beat: no constant prediction scores a higher pixel
        accuracy or mIoU on these pixels (it is chosen with knowledge of the truth).
        """
        baseline = ConfusionMatrix(self.num_classes, self.ignore_index)
        truth_counts = self.matrix.sum(1)
        baseline.matrix[:, int(np.argmax(truth_counts))] = truth_counts
        return baseline
