"""``uhr-seg segment mosaic.tif --out mask.tif`` end to end, and its one-line errors."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from georasters import NEEDS_GEO, smooth_image, write_raster

from uhr_seg_ros.cli import main

rasterio = pytest.importorskip(*NEEDS_GEO)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, geo_model):
    from uhr_seg_ros.model import save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, geo_model)
    return path


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory):
    path = tmp_path_factory.mktemp("mosaic") / "ortho16.tif"
    data = (smooth_image(200, 260, bands=4) * 4000).astype(np.uint16)  # RGB+NIR, 12 bit
    data[:, :, :20] = 0
    write_raster(path, data, nodata=0)
    return path


def cli(checkpoint, *args):
    return main(
        [
            "segment",
            *map(str, args),
            "--model",
            str(checkpoint),
            "--device",
            "cpu",
            "--memory-cap-mb",
            "400",
            "--patch-size",
            "64",
            "--block-size",
            "128",
        ]
    )


def test_mosaic_to_mask_geotiff_and_polygons(checkpoint, mosaic, tmp_path):
    out, vector = tmp_path / "out" / "mask.tif", tmp_path / "classes.geojson"
    assert (
        cli(
            checkpoint,
            mosaic,
            "--out",
            out,
            "--bands",
            "3,2,1",
            "--vector",
            vector,
            "--min-area",
            "0.5",
        )
        == 0
    )
    with rasterio.open(mosaic) as src, rasterio.open(out) as ds:
        assert (ds.crs, ds.transform, ds.shape) == (src.crs, src.transform, src.shape)
        mask = ds.read(1)
    assert (mask[:, :20] == 255).all() and (mask[:, 20:] < 3).all()
    features = json.loads(vector.read_text())["features"]
    assert features and all(f["properties"]["area"] >= 0.5 for f in features)


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--bands", "1,2"], "--bands"),
        (["--bands", "7,2,1"], "has only 4 band"),
        (["--rescale", "9,1"], "MAX must be greater"),
        (["--vector", "x.shp"], "use a .gpkg or .geojson"),
        (["--color", "c.png"], "--color is for PNG masks"),
    ],
)
def test_bad_raster_options_exit_1_with_one_line(
    checkpoint, mosaic, tmp_path, caplog, extra, message
):
    assert cli(checkpoint, mosaic, "--out", tmp_path / "m.tif", *extra) == 1
    assert message in caplog.text
    assert not (tmp_path / "m.tif").exists()


def test_missing_geo_extra_is_one_line_naming_it(checkpoint, mosaic, tmp_path, caplog, monkeypatch):
    monkeypatch.setitem(sys.modules, "rasterio", None)  # import rasterio → ImportError
    assert cli(checkpoint, mosaic, "--out", tmp_path / "m.tif") == 1
    assert "pip install 'uhr_seg_ros[geo]'" in caplog.text
