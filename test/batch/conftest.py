"""Fixtures of the batch tests: a tiny checkpoint and a small archive made here."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from uhr_seg_ros.model import SGHRQConfig, build_model, save_checkpoint


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, build_model(SGHRQConfig.tiny(3)))
    return path


def make_archive(root, rasters: bool = True):
    """root/a/x.png, root/b/x.png (same name, other folder), root/c.jpg, root/broken.png and,
    when rasterio is there, root/ortho.tif (georeferenced)."""
    rng = np.random.default_rng(0)
    for rel in ("a/x.png", "b/x.png", "c.jpg"):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), rng.integers(0, 256, (48, 72, 3), dtype=np.uint8))
    (root / "broken.png").write_bytes(b"\x89PNG not really")
    if rasters:
        import rasterio
        from rasterio.transform import from_origin

        with rasterio.open(
            root / "ortho.tif",
            "w",
            driver="GTiff",
            width=90,
            height=70,
            count=3,
            dtype="uint8",
            crs="EPSG:32633",
            transform=from_origin(500000, 5000000, 0.5, 0.5),
        ) as ds:
            ds.write(rng.integers(0, 256, (3, 70, 90), dtype=np.uint8))
    return root
