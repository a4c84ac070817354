"""Build-time smoke test of an image: the package segments a frame on the CPU.

    python3 smoke_test.py            # run by `docker build` (no GPU is visible at build time)

Imports torch, torch-tensorrt and uhr_seg_ros (a missing CUDA library of the torch wheel, e.g.
``libcudss.so.0`` on JetPack 6, fails the build here instead of on the drone), then segments the
bundled sample frame (downscaled) with the bundled model on the CPU backend under a 1500 MB cap
and checks the mask. Exit status 0 on success, 1 with one line saying what broke.
"""

from __future__ import annotations

import sys


def main() -> int:
    try:
        import numpy as np
        import torch
        import torch_tensorrt  # noqa: F401  (the import is the check)

        from uhr_seg_ros.paths import models_dir
        from uhr_seg_ros.pipeline import Segmenter, SegmenterSettings
    except (ImportError, OSError) as exc:
        print(f"smoke test: import failed: {exc}", file=sys.stderr)
        return 1
    import cv2

    frame = cv2.imread(str(models_dir() / "sample_frame.jpg"), cv2.IMREAD_COLOR)
    if frame is None:
        print("smoke test: models/sample_frame.jpg is missing or unreadable", file=sys.stderr)
        return 1
    frame = np.ascontiguousarray(cv2.resize(frame, (384, 320))[:, :, ::-1])
    segmenter = Segmenter.from_settings(
        SegmenterSettings(backend_order=("cpu",), memory_cap_mb=1500)
    )
    try:
        result = segmenter.segment(frame)
    finally:
        segmenter.close()
    if result.mask.shape != frame.shape[:2] or result.mask.dtype != np.uint8:
        print(
            f"smoke test: mask {result.mask.shape} {result.mask.dtype} for a frame "
            f"{frame.shape[:2]}",
            file=sys.stderr,
        )
        return 1
    print(f"smoke test passed: torch {torch.__version__}, {result.plan.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
