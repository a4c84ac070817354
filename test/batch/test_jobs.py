"""Inputs, outputs, manifest and the worker, without Ray."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
from conftest import make_archive

from uhr_seg_ros.batch.jobs import Manifest, Record, expand_inputs, plan_jobs
from uhr_seg_ros.batch.worker import SegmentWorker
from uhr_seg_ros.pipeline import SegmenterSettings


def test_folders_expand_recursively_and_same_names_do_not_collide(tmp_path):
    root = make_archive(tmp_path / "in", rasters=False)
    out = tmp_path / "in" / "masks"  # inside the input folder: its files are not inputs
    out.mkdir()
    (out / "old_mask.png").write_bytes(b"")
    files = expand_inputs([root, root / "c.jpg"], out)  # c.jpg once
    assert [f.name for f in files] == ["x.png", "x.png", "broken.png", "c.jpg"]
    outputs = [Path(j.output).relative_to(out).as_posix() for j in plan_jobs(files, out)]
    assert outputs == ["a/x_mask.png", "b/x_mask.png", "broken_mask.png", "c_mask.png"]


def test_missing_input_and_empty_folder_are_one_line_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        expand_inputs([tmp_path / "nope"], tmp_path / "out")
    with pytest.raises(ValueError, match="no image or raster files"):
        expand_inputs([tmp_path], tmp_path / "out")


def test_rasters_get_geotiff_masks_and_polygons_beside_them(tmp_path):
    files = [tmp_path / "m.tif", tmp_path / "p.png"]
    jobs = plan_jobs(files, tmp_path / "out", ".gpkg")
    assert [Path(j.output).name for j in jobs] == ["m_mask.tif", "p_mask.png"]
    assert jobs[0].is_raster and Path(jobs[0].vector).name == "m_mask.gpkg"
    assert jobs[1].vector is None


def test_manifest_resumes_only_unchanged_finished_inputs(tmp_path):
    src, out = tmp_path / "x.png", tmp_path / "out"
    src.write_bytes(b"pixels")
    (job,) = plan_jobs([src], out)
    manifest = Manifest(out)
    assert not manifest.is_done(job)
    Path(job.output).parent.mkdir(parents=True)
    Path(job.output).write_bytes(b"mask")
    stat = src.stat()
    manifest.add(
        Record(job.input, job.output, "ok", input_bytes=stat.st_size, input_mtime=stat.st_mtime)
    )
    reloaded = Manifest(out)
    assert reloaded.is_done(job)
    assert (out / "manifest.csv").read_text().startswith("input,output,status")
    os.utime(src, (stat.st_atime, stat.st_mtime + 5))  # the input changed
    assert not reloaded.is_done(job)
    reloaded.add(Record(job.input, job.output, "error", reason="boom"))
    assert not Manifest(out).is_done(job)


def test_corrupt_manifest_is_a_one_line_error(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="move it away"):
        Manifest(tmp_path)


def test_worker_records_a_bad_file_and_keeps_going(tmp_path, checkpoint):
    root = make_archive(tmp_path / "in", rasters=False)
    files = expand_inputs([root], tmp_path / "out")
    worker = SegmentWorker(
        SegmenterSettings(
            model_path=str(checkpoint), backend_order=("cpu",), memory_cap_mb=300, patch_size=64
        ),
        argparse.Namespace(),
        threads=1,
    )
    records = [worker.process(job) for job in plan_jobs(files, tmp_path / "out")]
    status = {Path(r.input).name + str(i): r.status for i, r in enumerate(records)}
    assert list(status.values()) == ["ok", "ok", "error", "ok"]
    broken = records[2]
    assert "cannot decode" in broken.reason and "\n" not in broken.reason
    assert all(Path(r.output).is_file() for r in records if r.status == "ok")
    assert records[0].width == 72 and records[0].height == 48 and "patch 64" in records[0].plan
