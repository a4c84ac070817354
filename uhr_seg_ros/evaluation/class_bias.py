"""Per-class logit offsets fitted on validation crops and baked into the classifier's bias.

Why: a model trained with class-weighted cross-entropy on one class mix (water weighted 1.8x,
agriculture 0.36x) predicts with that mix's priors. Adding one offset per class to the logits
before the argmax moves each decision boundary; the offsets that maximise mIoU on validation
crops are found by coordinate search. They are added to the bias of the network's last 1x1
convolution (:meth:`SegmentationModel.output_classifier`, followed only by a linear upsampling),
so the corrected model costs nothing at inference and every backend and export carries the
correction with the weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from uhr_seg_ros.data.palettes import IGNORE_INDEX
from uhr_seg_ros.evaluation.metrics import ConfusionMatrix
from uhr_seg_ros.model import SegmentationModel

#: Offsets tried per class and round: coarse, then around the best coarse value.
COARSE_STEPS = tuple(np.round(np.arange(-1.5, 1.5001, 0.25), 3))
FINE_STEPS = tuple(np.round(np.arange(-0.2, 0.2001, 0.05), 3))


@dataclass(frozen=True)
class ValidationLogits:
    """Logits ``(N, C, h, w)`` (fp16, every ``stride``-th pixel) and labels ``(N, h, w)``."""

    logits: torch.Tensor
    labels: torch.Tensor


@torch.inference_mode()
def collect_logits(
    model: SegmentationModel,
    crops: Iterable[tuple[torch.Tensor, torch.Tensor]],
    stride: int = 2,
) -> ValidationLogits:
    """The model's logits on ``(image 3×H×W, label H×W)`` crops, subsampled by ``stride`` (6
    numbers are fitted; a quarter of the pixels is plenty and four times smaller)."""
    from uhr_seg_ros.training.crops import pad_to_divisor

    device = next(model.parameters()).device
    logits, labels = [], []
    for image, label in crops:
        images, targets = pad_to_divisor(image[None].to(device), label[None].to(device))
        out, targets = model.segment_crop(images.float(), targets)
        logits.append(out[0, :, ::stride, ::stride].half().cpu())
        labels.append(targets[0, ::stride, ::stride].to(torch.uint8).cpu())
    if not logits:
        raise ValueError("no validation crops to fit class offsets on (check data.val)")
    return ValidationLogits(torch.stack(logits), torch.stack(labels))


def _counted(data: ValidationLogits) -> tuple[torch.Tensor, torch.Tensor]:
    """``(P, C)`` fp32 logits and ``(P,)`` int64 labels of the counted (not ignored) pixels."""
    counted = data.labels != IGNORE_INDEX
    logits = data.logits.float().permute(0, 2, 3, 1)[counted]
    return logits, data.labels[counted].long()


def _miou(logits: torch.Tensor, labels: torch.Tensor, bias: torch.Tensor) -> float:
    """mIoU of counted pixels ``(P, C)``, ``(P,)`` with ``bias`` added to the logits, by the
    benchmark's rules (:class:`ConfusionMatrix`); the counting stays in torch (it runs for every
    trial offset)."""
    classes = logits.shape[1]
    prediction = (logits + bias).argmax(1)
    confusion = ConfusionMatrix(classes)
    counts = torch.bincount(labels * classes + prediction, minlength=classes * classes)
    confusion.matrix += counts.reshape(classes, classes).numpy()
    return confusion.miou()


def fit_class_bias(
    data: ValidationLogits, steps: Sequence[Sequence[float]] = (COARSE_STEPS, FINE_STEPS)
) -> tuple[np.ndarray, float, float]:
    """``(offsets, mIoU before, mIoU after)``: coordinate search, one class at a time, over the
    offset grids in ``steps`` (the second and later relative to the best so far); offsets are
    centred (a common shift changes nothing)."""
    logits, labels = _counted(data)
    if not len(labels):
        raise ValueError("every validation pixel is ignored: nothing to fit the offsets on")
    classes = logits.shape[1]
    bias = torch.zeros(classes)
    before = best = _miou(logits, labels, bias)
    for round_steps in steps:
        centre = bias.clone()
        for cls in range(classes):
            for step in round_steps:
                trial = bias.clone()
                trial[cls] = centre[cls] + step
                score = _miou(logits, labels, trial)
                if score > best + 1e-5:
                    best, bias = score, trial
    bias -= bias.mean()
    return bias.numpy().astype(np.float64), before, best


def apply_class_bias(model: SegmentationModel, offsets: Sequence[float] | np.ndarray) -> None:
    """Add ``offsets`` to the classifier bias of ``model`` and record the running total in
    ``model.meta["class_bias"]``."""
    classifier = model.output_classifier()
    if classifier.bias is None:
        raise ValueError(f"{type(model).__name__}'s classifier has no bias to carry offsets")
    if classifier.bias.numel() != len(offsets):
        raise ValueError(
            f"{type(model).__name__} has {classifier.bias.numel()} classes, got "
            f"{len(offsets)} offsets"
        )
    with torch.no_grad():
        classifier.bias += torch.as_tensor(offsets, dtype=classifier.bias.dtype).to(
            classifier.bias.device
        )
    total = np.asarray(model.meta.get("class_bias", [0.0] * len(offsets)), np.float64)
    model.meta["class_bias"] = [round(float(v), 4) for v in total + np.asarray(offsets)]
