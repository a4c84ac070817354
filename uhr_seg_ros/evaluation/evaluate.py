"""Benchmark evaluation: whole frames through the memory-capped ``Segmenter``, dataset-level IoU.

Every frame is segmented exactly as the node would (sliding windows planned under the memory
cap, logits averaged where windows overlap), then scored against its label. Outputs in
``out_dir``: ``results.json`` (``miou`` as a fraction, ``per_class_iou``, ``peak_memory_mb``,
``fps``, the majority-class baseline, building IoU for two-class building data),
``results.md`` and ``results.csv`` (per-class table), ``per_image.csv`` and
``vis/<name>.jpg`` pictures: image | truth | prediction | errors.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from uhr_seg_ros.data.datasets import BadSampleError, SegmentationDataset
from uhr_seg_ros.data.palettes import IGNORE_INDEX, palette_lut
from uhr_seg_ros.evaluation.metrics import ConfusionMatrix

if TYPE_CHECKING:
    from uhr_seg_ros.pipeline import Segmenter

log = logging.getLogger(__name__)

#: Longest side of each visualisation panel in pixels (keeps a 20000² frame's picture small).
VIS_PANEL_SIDE = 768
_ERROR_COLOUR = (230, 40, 40)
_IGNORED_COLOUR = (40, 40, 90)


@dataclass
class ImageScore:
    """One frame's scores and cost."""

    name: str
    height: int
    width: int
    miou: float
    pixel_accuracy: float
    seconds: float
    peak_memory_mb: float


@dataclass
class Evaluation:
    """Accumulated results of one run; :meth:`summary` is what results.json holds."""

    class_names: tuple[str, ...]
    confusion: ConfusionMatrix
    images: list[ImageScore] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    plans: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        iou = self.confusion.iou()
        baseline = self.confusion.majority_baseline()
        seconds = sum(image.seconds for image in self.images)
        frequencies = self.confusion.class_frequencies()
        result: dict[str, Any] = {
            "images": len(self.images),
            "miou": _number(self.confusion.miou()),
            "per_class_iou": {n: _number(v) for n, v in zip(self.class_names, iou, strict=True)},
            "pixel_accuracy": _number(self.confusion.pixel_accuracy()),
            "baseline_miou": _number(baseline.miou()),
            "baseline_pixel_accuracy": _number(baseline.pixel_accuracy()),
            "baseline_class": (
                self.class_names[int(np.argmax(frequencies))]
                if self.confusion.matrix.any()
                else None
            ),
            "truth_share": {
                n: _number(v) for n, v in zip(self.class_names, frequencies, strict=True)
            },
            "peak_memory_mb": max((i.peak_memory_mb for i in self.images), default=None),
            "fps": len(self.images) / seconds if seconds else None,
            "seconds_per_image": seconds / len(self.images) if self.images else None,
            "megapixels_per_second": (
                sum(i.height * i.width for i in self.images) / 1e6 / seconds if seconds else None
            ),
            "plans": self.plans,
            "skipped": self.skipped,
            "confusion_matrix": self.confusion.matrix.tolist(),
        }
        if "building" in self.class_names:
            # Inria papers report the building IoU as "mIoU"; both are given.
            result["building_iou"] = result["per_class_iou"]["building"]
        return result


def _number(value: float) -> float | None:
    """JSON-safe float: NaN (class absent) becomes null."""
    return None if value is None or math.isnan(value) else float(value)


def evaluate(
    segmenter: Segmenter,
    dataset: SegmentationDataset,
    out_dir: Path | None = None,
    *,
    limit: int | None = None,
    visualize: bool = True,
    progress: bool = True,
) -> Evaluation:
    """Segment every sample of ``dataset`` with ``segmenter``.

    Timing and memory are per frame after planning and warm-up for its size (the node's
    steady state). Bad samples are skipped with a warning naming the file and listed in the
    results. Writes pictures to ``out_dir/vis`` when ``out_dir`` and ``visualize`` are set.
    """
    from tqdm import tqdm

    num_classes = segmenter.backend.num_classes
    if num_classes != dataset.num_classes:
        raise ValueError(
            f"the model predicts {num_classes} classes but the data set has "
            f"{dataset.num_classes} ({', '.join(dataset.classes)}); evaluate a model trained "
            "for this data set"
        )
    evaluation = Evaluation(tuple(dataset.classes), ConfusionMatrix(num_classes))
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if out_dir is not None and visualize:
        (out_dir / "vis").mkdir(parents=True, exist_ok=True)
    for index in tqdm(range(count), desc="eval", unit="img", disable=not progress):
        try:
            sample = dataset[index]
        except BadSampleError as exc:
            log.warning("skipping bad sample: %s", exc)
            evaluation.skipped.append(str(exc))
            continue
        height, width = sample.label.shape
        plan = segmenter.prepare(height, width)
        if plan.describe() not in evaluation.plans:
            evaluation.plans.append(plan.describe())
        start = time.perf_counter()
        result = segmenter.segment(sample.image)
        seconds = time.perf_counter() - start
        image_matrix = ConfusionMatrix(num_classes)
        image_matrix.update(result.mask, sample.label)
        evaluation.confusion.matrix += image_matrix.matrix
        evaluation.images.append(
            ImageScore(
                sample.name,
                height,
                width,
                image_matrix.miou(),
                image_matrix.pixel_accuracy(),
                seconds,
                float(result.peak_memory_mb),
            )
        )
        if out_dir is not None and visualize:
            picture = comparison_picture(
                sample.image, sample.label, result.mask, dataset.palette, tuple(dataset.classes)
            )
            path = out_dir / "vis" / f"{Path(sample.name).name}.jpg"
            cv2.imwrite(
                str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88]
            )
    if not evaluation.images:
        raise ValueError(
            "no sample could be evaluated (all bad or empty split); see the "
            "warnings above or run the data set's validate()"
        )
    return evaluation


def comparison_picture(
    image: np.ndarray,
    truth: np.ndarray,
    prediction: np.ndarray,
    palette,
    class_names: tuple[str, ...] = (),
) -> np.ndarray:
    """``image | truth | prediction | errors`` side by side (uint8 RGB), titled, with a legend.

    Errors: wrong pixels red over the dimmed image, ignored truth dark blue (as in the truth
    panel), correct pixels show the image. Panels are downscaled to :data:`VIS_PANEL_SIDE`.
    """
    height, width = truth.shape
    scale = min(1.0, VIS_PANEL_SIDE / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small_image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    small_truth = cv2.resize(truth, size, interpolation=cv2.INTER_NEAREST)
    small_prediction = cv2.resize(prediction, size, interpolation=cv2.INTER_NEAREST)
    lut = palette_lut(palette, ignore_color=_IGNORED_COLOUR)
    errors = (small_image.astype(np.float32) * 0.45).astype(np.uint8)
    errors[(small_prediction != small_truth) & (small_truth != IGNORE_INDEX)] = _ERROR_COLOUR
    errors[small_truth == IGNORE_INDEX] = _IGNORED_COLOUR
    panels = [small_image, lut[small_truth], lut[small_prediction], errors]
    titles = ("image", "truth", "prediction", "errors (red)")
    titled = []
    for panel, title in zip(panels, titles, strict=True):
        header = np.full((26, panel.shape[1], 3), 255, np.uint8)
        cv2.putText(
            header, title, (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA
        )
        titled.append(np.concatenate([header, panel], axis=0))
    gap = np.full((titled[0].shape[0], 6, 3), 255, np.uint8)
    row = np.concatenate([titled[0], gap, titled[1], gap, titled[2], gap, titled[3]], axis=1)
    return np.concatenate([row, _legend(row.shape[1], palette, class_names)], axis=0)


def _legend(width: int, palette, class_names: tuple[str, ...]) -> np.ndarray:
    """A white strip with one colour swatch + name per class (and the ignore colour)."""
    strip = np.full((26, width, 3), 255, np.uint8)
    entries = [
        (tuple(int(c) for c in colour), name)
        for colour, name in zip(palette, class_names, strict=False)
    ] + [(_IGNORED_COLOUR, "ignored")]
    left = 6
    for colour, name in entries:
        if left + 16 > width:
            break
        cv2.rectangle(strip, (left, 6), (left + 14, 20), colour, -1)
        cv2.rectangle(strip, (left, 6), (left + 14, 20), (0, 0, 0), 1)
        cv2.putText(
            strip, name, (left + 19, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA
        )
        left += 19 + cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)[0][0] + 14
    return strip


def write_results(evaluation: Evaluation, out_dir: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Write results.json / results.md / results.csv / per_image.csv; return the JSON dict.

    ``meta`` (data spec, split, model, backend, memory cap) is stored alongside the scores.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {**meta, **evaluation.summary()}
    results["per_image"] = [vars(image) for image in evaluation.images]
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")

    with open(out_dir / "results.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "iou", "pixel_accuracy", "truth_share"])
        for name in evaluation.class_names:
            writer.writerow(
                [
                    name,
                    _cell(results["per_class_iou"][name]),
                    "",
                    _cell(results["truth_share"][name]),
                ]
            )
        writer.writerow(["mean", _cell(results["miou"]), _cell(results["pixel_accuracy"]), ""])
        writer.writerow(
            [
                f"majority baseline ({results['baseline_class']})",
                _cell(results["baseline_miou"]),
                _cell(results["baseline_pixel_accuracy"]),
                "",
            ]
        )
    with open(out_dir / "per_image.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["name", "height", "width", "miou", "pixel_accuracy", "seconds", "peak_memory_mb"]
        )
        for image in evaluation.images:
            writer.writerow(
                [
                    image.name,
                    image.height,
                    image.width,
                    _cell(image.miou),
                    _cell(image.pixel_accuracy),
                    f"{image.seconds:.3f}",
                    f"{image.peak_memory_mb:.1f}",
                ]
            )
    (out_dir / "results.md").write_text(_markdown(results, evaluation.class_names))
    picture = confusion_picture(evaluation.confusion.matrix, evaluation.class_names)
    cv2.imwrite(str(out_dir / "confusion.png"), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    return results


def confusion_picture(
    matrix: np.ndarray, class_names: tuple[str, ...], cell: int = 64
) -> np.ndarray:
    """RGB picture of a confusion matrix, rows = truth, columns = prediction, each row
    normalised (recall per class): dark blue = 0, white = 1, the percentage in each cell.
    Rows without any truth pixel stay grey."""
    n = len(class_names)
    label_w, header_h = 8 * max(len(c) for c in class_names) + 16, 40
    picture = np.full((header_h + n * cell, label_w + n * cell, 3), 255, np.uint8)
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape, float), where=totals > 0)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(picture, "truth \\ predicted", (4, 14), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for j, name in enumerate(class_names):
        cv2.putText(
            picture,
            name[:8],
            (label_w + j * cell + 4, header_h - 8),
            font,
            0.38,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    for i, name in enumerate(class_names):
        top = header_h + i * cell
        cv2.putText(picture, name, (4, top + cell // 2 + 4), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        for j in range(n):
            left = label_w + j * cell
            if totals[i, 0] == 0:
                colour = (200, 200, 200)
            else:
                v = float(shares[i, j])
                colour = (int(20 + 235 * v), int(40 + 215 * v), int(120 + 135 * v))
            cv2.rectangle(picture, (left, top), (left + cell - 2, top + cell - 2), colour, -1)
            if totals[i, 0]:
                text_colour = (0, 0, 0) if shares[i, j] > 0.5 else (255, 255, 255)
                cv2.putText(
                    picture,
                    f"{100 * shares[i, j]:.0f}",
                    (left + 18, top + cell // 2 + 5),
                    font,
                    0.5,
                    text_colour,
                    1,
                    cv2.LINE_AA,
                )
    return picture


def _cell(value: float | None) -> str:
    """CSV cell: 4 decimals, empty for a missing (None/NaN) value."""
    return "" if value is None or math.isnan(value) else f"{value:.4f}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.2f}"


def _markdown(results: dict[str, Any], class_names: tuple[str, ...]) -> str:
    lines = [
        f"# Evaluation: {results.get('data', '')} ({results.get('split', '')})",
        "",
        f"- model: `{results.get('model', '')}`",
        f"- backend: {results.get('backend', '')}",
        (
            f"- memory cap: {results.get('memory_cap_mb', 'n/a')} MB; peak "
            f"{_float(results['peak_memory_mb'], '.0f')} MB"
        ),
        (
            f"- images: {results['images']} ({len(results['skipped'])} skipped); "
            f"{_float(results['fps'], '.3f')} FPS, {_float(results['seconds_per_image'], '.2f')} s "
            "per image"
        ),
        "",
        "| class | IoU (%) | truth share (%) |",
        "|---|---:|---:|",
    ]
    for name in class_names:
        lines.append(
            f"| {name} | {_percent(results['per_class_iou'][name])} | "
            f"{_percent(results['truth_share'][name])} |"
        )
    lines += [
        f"| **mIoU** | **{_percent(results['miou'])}** | |",
        (
            f"| majority baseline ({results['baseline_class']}) | "
            f"{_percent(results['baseline_miou'])} | |"
        ),
        "",
        (
            f"Pixel accuracy {_percent(results['pixel_accuracy'])} % (baseline "
            f"{_percent(results['baseline_pixel_accuracy'])} %)."
        ),
    ]
    if "building_iou" in results:
        lines.append(
            f"Building IoU {_percent(results['building_iou'])} % (the figure Inria "
            "papers call mIoU)."
        )
    lines += [
        "",
        (
            "IoU is accumulated over all images; classes absent from truth and prediction "
            "are n/a and not averaged; ignored (255) pixels are not counted."
        ),
        "",
    ]
    return "\n".join(lines)


def _float(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)
