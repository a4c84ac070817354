"""Held-out mIoU of models when the same frames come from coarser sensors.

Each labelled frame is degraded as a sensor ``f`` times coarser would record it at the same
pixel size (``data.transforms.coarser_sensor``: area-downsampled by ``f``, bilinearly
upsampled back), then segmented by the default ``Segmenter`` (the CPU backend, default cap and
plan, as ``uhr-seg eval``). ``f = 1`` is the frame as it is. A model that scores much better
on degraded frames than on sharp ones has learnt sharpness as a cue: its training data were
blurrier than what it is asked to segment (e.g. sources upsampled to the model's GSD).

    OMP_NUM_THREADS=1 python benchmarks/sensor_robustness.py --models A.pt B.pt \
        --data deepglobe:../shared/data/deepglobe --ids 6399 10452 --factors 1 1.6 2.4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", type=Path, required=True)
    parser.add_argument("--data", default="deepglobe:../shared/data/deepglobe")
    parser.add_argument("--ids", nargs="+", default=["6399", "10452"])
    parser.add_argument("--factors", nargs="+", type=float, default=[1.0, 1.6, 2.4])
    args = parser.parse_args()
    if any(f < 1 for f in args.factors):
        sys.exit("--factors must be >= 1 (1 = the frame as it is)")

    from uhr_seg_ros.data.datasets import build_dataset
    from uhr_seg_ros.data.transforms import coarser_sensor
    from uhr_seg_ros.evaluation.metrics import ConfusionMatrix
    from uhr_seg_ros.pipeline import Segmenter
    from uhr_seg_ros.settings import SegmenterSettings

    dataset = build_dataset(args.data, "all")
    missing = [i for i in args.ids if i not in dataset.names]
    if missing:
        sys.exit(f"{args.data} has no samples {missing}")
    samples = [dataset[dataset.names.index(i)] for i in args.ids]
    print("| model | " + " | ".join(f"f = {f:g}" for f in args.factors) + " |")
    print("|---|" + "---|" * len(args.factors))
    for path in args.models:
        settings = SegmenterSettings(model_path=str(path), backend_order=("cpu",))
        segmenter = Segmenter.from_settings(settings)
        scores = []
        for factor in args.factors:
            confusion = ConfusionMatrix(len(segmenter.class_names))
            for sample in samples:
                image = coarser_sensor(sample.image, factor) if factor > 1 else sample.image
                confusion.update(segmenter.segment(np.ascontiguousarray(image)).mask, sample.label)
            scores.append(confusion.miou())
        segmenter.close()
        print(f"| {path} | " + " | ".join(f"{s * 100:.1f}" for s in scores) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
