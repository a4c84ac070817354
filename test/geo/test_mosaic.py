"""Raster in, georeferenced mask out: equality with in-memory segment, georeferencing, nodata,
uint16 and 4-band inputs, COG output, polygons."""

from __future__ import annotations

import json

import numpy as np
import pytest
from georasters import NEEDS_GEO, make_segmenter, smooth_image, write_raster

rasterio = pytest.importorskip(*NEEDS_GEO)

from uhr_seg_ros.geo import MASK_NODATA
from uhr_seg_ros.geo.mosaic import segment_raster
from uhr_seg_ros.geo.source import RasterSource, Rescale

# Larger than one block of BLOCK px in both directions: 3 x 3 blocks with patch 64/overlap 16.
HEIGHT, WIDTH, BLOCK = 300, 410, 160


@pytest.fixture(scope="module")
def rgb8():
    return (smooth_image(HEIGHT, WIDTH) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def rgb8_file(tmp_path_factory, rgb8):
    path = tmp_path_factory.mktemp("geo") / "mosaic.tif"
    write_raster(path, rgb8)
    return path


def test_mask_equals_in_memory_segment_of_the_same_pixels(segmenter, rgb8, rgb8_file, tmp_path):
    out = tmp_path / "mask.tif"
    with RasterSource(rgb8_file) as source:
        report = segment_raster(segmenter, source, out, block_size=BLOCK)
    assert report.blocks >= 9  # the raster is larger than the band buffer in both directions
    whole = segmenter.segment(np.ascontiguousarray(rgb8.transpose(1, 2, 0))).mask
    with rasterio.open(out) as ds:
        mask = ds.read(1)
    assert len(np.unique(whole)) > 1  # a mask that could differ
    np.testing.assert_array_equal(mask, whole)
    assert segmenter.settings.patch_size == 64 and segmenter.settings.batch_size == 2  # unpinned


def test_georeferencing_colour_table_and_class_names_are_written(segmenter, rgb8_file, tmp_path):
    out = tmp_path / "mask.tif"
    with RasterSource(rgb8_file) as source:
        segment_raster(segmenter, source, out, block_size=BLOCK)
    with rasterio.open(rgb8_file) as src, rasterio.open(out) as ds:
        assert (ds.crs, ds.transform, ds.width, ds.height) == (
            src.crs,
            src.transform,
            src.width,
            src.height,
        )
        assert ds.dtypes[0] == "uint8" and ds.nodata == MASK_NODATA and ds.count == 1
        assert ds.profile["tiled"] and ds.compression.name.lower() == "deflate"
        assert json.loads(ds.tags()["CLASS_NAMES"]) == list(segmenter.class_names)
        colours = ds.colormap(1)
        assert colours[0][:3] == segmenter.palette[0] and colours[MASK_NODATA][3] == 0
    assert "paletted" in out.with_suffix(".qml").read_text()
    assert not list(tmp_path.glob("*.partial*"))


def test_nodata_and_alpha_become_mask_nodata(segmenter, rgb8, tmp_path):
    data = rgb8.copy()
    data[:, :40, :] = 0  # a nodata strip (all bands 0)
    alpha = np.full((1, HEIGHT, WIDTH), 255, dtype=np.uint8)
    alpha[0, :, -30:] = 0  # transparent right edge
    nodata_file, alpha_file = tmp_path / "nodata.tif", tmp_path / "alpha.tif"
    write_raster(nodata_file, data, nodata=0)
    write_raster(alpha_file, np.concatenate([rgb8, alpha]), alpha=True)
    for path, invalid in ((nodata_file, np.s_[:40, :]), (alpha_file, np.s_[:, -30:])):
        out = tmp_path / f"{path.stem}_mask.tif"
        with RasterSource(path) as source:
            segment_raster(segmenter, source, out, block_size=BLOCK)
        with rasterio.open(out) as ds:
            mask = ds.read(1)
        assert (mask[invalid] == MASK_NODATA).all()
        keep = np.ones_like(mask, dtype=bool)
        keep[invalid] = False
        assert (mask[keep] < 3).all()


def test_uint16_four_band_input_with_band_order_and_stretch(segmenter, rgb8, tmp_path):
    """RGB+NIR uint16 read as bands 3,2,1 with a fixed range equals the uint8 picture."""
    nir = np.full((1, HEIGHT, WIDTH), 1000, dtype=np.uint16)
    rgb16 = rgb8.astype(np.uint16) * 16  # 12-bit sensor values, 0..4080
    path = tmp_path / "rgbn16.tif"
    write_raster(path, np.concatenate([rgb16[::-1], nir]))  # stored B,G,R,NIR
    with RasterSource(path, bands=(3, 2, 1), rescale=Rescale.parse("0,4080")) as source:
        image, valid = source.read(0, 0, HEIGHT, WIDTH)
        assert valid.all()
        np.testing.assert_array_equal(image, rgb8.transpose(1, 2, 0))
        segment_raster(segmenter, source, tmp_path / "m16.tif", block_size=BLOCK)
    with RasterSource(path, bands=(3, 2, 1)) as source:  # auto: 2–98 % stretch per band
        assert source.ranges is not None and all(hi > lo for lo, hi in source.ranges)
        image, _ = source.read(0, 0, HEIGHT, WIDTH)
        assert image.min() == 0 and image.max() == 255


def test_float_input_percentile_stretch_ignores_nodata(tmp_path):
    data = smooth_image(64, 80).astype(np.float32) * 0.3  # reflectance 0..0.3
    data[:, :10] = -9999.0
    path = tmp_path / "refl.tif"
    write_raster(path, data, nodata=-9999.0)
    with RasterSource(path, rescale=Rescale.parse("percentile:1,99")) as source:
        lo, hi = source.ranges[0]
        assert 0.0 <= lo < hi <= 0.3
        image, valid = source.read(0, 0, 64, 80)
    assert not valid[:10].any() and valid[10:].all() and image.dtype == np.uint8


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"bands": (5, 2, 1)}, "has only 3 band"),
        ({"rescale": Rescale("none")}, "pass --rescale"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, kwargs, message):
    path = tmp_path / "u16.tif"
    write_raster(path, np.ones((3, 8, 8), dtype=np.uint16))
    with pytest.raises(ValueError, match=message):
        RasterSource(path, **kwargs)


@pytest.mark.parametrize("text", ["3,2", "0,1,2", "a,b,c"])
def test_bad_band_lists_are_refused(text):
    from uhr_seg_ros.geo.source import parse_bands

    with pytest.raises(ValueError, match="--bands"):
        parse_bands(text)


def test_unreadable_raster_is_a_value_error(tmp_path):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00garbage")
    with pytest.raises(ValueError, match="cannot open"):
        RasterSource(bad)


def test_overviews_give_a_cloud_optimized_geotiff(segmenter, tmp_path):
    path, out = tmp_path / "big.tif", tmp_path / "cog.tif"
    write_raster(path, (smooth_image(600, 1100) * 255).astype(np.uint8))  # > 2 COG tiles
    with RasterSource(path) as source:
        segment_raster(
            make_segmenter(segmenter.model, patch_size=256, overlap=32),
            source,
            out,
            block_size=2048,
            overviews=True,
        )
    with rasterio.open(out) as ds:
        assert ds.overviews(1)[0] == 2 and ds.colormap(1)[0][:3] == segmenter.palette[0]
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert "CLASS_NAMES" in ds.tags() and ds.nodata == MASK_NODATA


def test_polygons_per_class_in_the_raster_crs(segmenter, rgb8_file, tmp_path):
    from uhr_seg_ros.geo.vector import write_polygons

    mask = tmp_path / "mask.tif"
    with RasterSource(rgb8_file) as source:
        segment_raster(segmenter, source, mask, block_size=BLOCK)
    geojson = tmp_path / "classes.geojson"
    count = write_polygons(mask, geojson)
    doc = json.loads(geojson.read_text())
    assert count == len(doc["features"]) > 0
    assert doc["crs"]["properties"]["name"].endswith("32633")
    with rasterio.open(mask) as ds:
        pixel_area = abs(ds.transform.a * ds.transform.e)
        total = ds.width * ds.height * pixel_area
    assert sum(f["properties"]["area"] for f in doc["features"]) == pytest.approx(total)
    xs = [x for f in doc["features"] for x, _ in f["geometry"]["coordinates"][0]]
    assert min(xs) == pytest.approx(500000.0)  # map coordinates, not pixels
    names = {f["properties"]["class_name"] for f in doc["features"]}
    assert names <= set(segmenter.class_names)
    big = write_polygons(mask, tmp_path / "big.geojson", min_area=50.0, simplify=0.5)
    assert 0 < big < count


def test_geopackage_output(segmenter, rgb8_file, tmp_path):
    pyogrio = pytest.importorskip("pyogrio", reason="GeoPackage output needs pyogrio (geo extra)")
    from uhr_seg_ros.geo.vector import write_polygons

    mask = tmp_path / "mask.tif"
    with RasterSource(rgb8_file) as source:
        segment_raster(segmenter, source, mask, block_size=1000)
    count = write_polygons(mask, tmp_path / "classes.gpkg", min_area=1.0)
    info = pyogrio.read_info(tmp_path / "classes.gpkg")
    assert info["features"] == count > 0 and "32633" in info["crs"]
    assert {"class_id", "class_name", "area"} <= set(info["fields"])
