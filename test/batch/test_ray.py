"""``uhr-seg batch`` on a local 2-CPU Ray cluster (started once for the module)."""

from __future__ import annotations

import json
import logging

import pytest
from conftest import make_archive

from uhr_seg_ros.cli import main

ray = pytest.importorskip(
    "ray", reason="ray is the optional batch extra: pip install 'uhr_seg_ros[batch]'"
)
pytest.importorskip("rasterio", reason="the archive holds a GeoTIFF (geo extra)")

pytestmark = pytest.mark.slow  # a Ray cluster and two model loads: ~15-30 s on 2 cores


@pytest.fixture(scope="module", autouse=True)
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def batch(checkpoint, *args):
    return main(
        [
            "batch",
            *map(str, args),
            "--model",
            str(checkpoint),
            "--backend",
            "cpu",
            "--memory-cap-mb",
            "300",
            "--patch-size",
            "64",
            "--workers",
            "2",
        ]
    )


def test_archive_on_two_workers_then_resume_skips_what_is_done(tmp_path, checkpoint, caplog):
    caplog.set_level(logging.INFO)
    root, out = make_archive(tmp_path / "in"), tmp_path / "out"
    assert batch(checkpoint, root, "--out", out, "--vector", "geojson") == 1  # broken.png
    manifest = json.loads((out / "manifest.json").read_text())
    records = {r["input"].split("/in/")[1]: r for r in manifest["records"]}
    assert manifest["summary"] == {"ok": 4, "error": 1}
    assert "cannot decode" in records["broken.png"]["reason"]
    assert (out / "a" / "x_mask.png").is_file() and (out / "b" / "x_mask.png").is_file()
    assert (out / "ortho_mask.tif").is_file() and (out / "ortho_mask.geojson").is_file()
    assert records["ortho.tif"]["kind"] == "raster" and records["ortho.tif"]["width"] == 90
    assert len({r["worker"] for r in records.values() if r["worker"]}) == 2  # both worked
    assert (out / "manifest.csv").is_file()

    caplog.clear()
    mtime = (out / "c_mask.png").stat().st_mtime
    assert batch(checkpoint, root, "--out", out) == 1  # only broken.png is tried again
    assert "4 done before (skipped), 1 to segment" in caplog.text
    assert (out / "c_mask.png").stat().st_mtime == mtime

    (root / "broken.png").unlink()
    caplog.clear()
    assert batch(checkpoint, root, "--out", out) == 0
    assert "4 done before (skipped), 0 to segment" in caplog.text


def test_a_worker_that_cannot_start_is_one_line(tmp_path, checkpoint, caplog):
    root, bad = make_archive(tmp_path / "in", rasters=False), tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert batch(bad, root, "--out", tmp_path / "out") == 1
    assert "a batch worker could not start" in caplog.text
