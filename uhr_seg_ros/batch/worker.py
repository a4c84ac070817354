"""One segmenter per worker process; one file per call; failures become records."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

from uhr_seg_ros.failures import FrameFailed, segment_frame

from .jobs import Job, Record

if TYPE_CHECKING:
    from uhr_seg_ros.pipeline import SegmenterSettings

log = logging.getLogger(__name__)


class SegmentWorker:
    """Loads the model once (in :meth:`__init__`) and segments file after file with it.

    ``raster_options`` are the GeoTIFF flags of ``uhr-seg`` (bands, rescale, block size, ...);
    ``threads`` bounds torch's CPU threads so that workers sharing a machine do not fight.
    """

    def __init__(
        self,
        settings: SegmenterSettings,
        raster_options: argparse.Namespace,
        threads: int | None = None,
    ) -> None:
        import torch

        from uhr_seg_ros.pipeline import Segmenter

        if threads:
            torch.set_num_threads(threads)
        self.raster_options = raster_options
        self.segmenter = Segmenter.from_settings(settings)
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def describe(self) -> str:
        return f"{self.name}: {self.segmenter.describe()}"

    def process(self, job: Job) -> Record:
        """Segment one file; never raises for a bad file (the reason goes in the record)."""
        start = time.perf_counter()
        stat = Path(job.input).stat() if Path(job.input).exists() else None
        record = Record(
            job.input,
            job.output,
            "ok",
            kind="raster" if job.is_raster else "image",
            worker=self.name,
            input_bytes=stat.st_size if stat else 0,
            input_mtime=stat.st_mtime if stat else 0.0,
        )
        try:
            if job.is_raster:
                self._raster(job, record)
            else:
                self._image(job, record)
        except FrameFailed as exc:  # the core's failure policy already retried what it could
            record.status, record.reason = "error", f"{exc.reason}: {exc}".splitlines()[0]
            log.warning("%s: %s", job.input, record.reason)
        except Exception as exc:
            record.status, record.reason = "error", f"{type(exc).__name__}: {exc}".splitlines()[0]
            log.warning("%s: %s", job.input, record.reason)
        record.seconds = round(time.perf_counter() - start, 3)
        return record

    def _raster(self, job: Job, record: Record) -> None:
        from uhr_seg_ros.cli.geo_options import segment_raster_file

        report = segment_raster_file(
            self.segmenter,
            Path(job.input),
            Path(job.output),
            self.raster_options,
            vector=Path(job.vector) if job.vector else None,
            show_progress=False,
        )
        record.width, record.height, record.plan = report.width, report.height, report.plan

    def _image(self, job: Job, record: Record) -> None:
        import cv2

        from uhr_seg_ros.data.image_io import read_rgb

        image = read_rgb(Path(job.input))
        result = segment_frame(self.segmenter, image)  # same policy as the node and replay
        out = Path(job.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.stem + ".partial.png")
        if not cv2.imwrite(str(partial), result.mask):
            raise ValueError(f"OpenCV cannot write {out}")
        partial.replace(out)
        record.height, record.width = image.shape[:2]
        p = result.plan
        record.plan = f"patch {p.patch}, overlap {p.overlap}, batch {p.batch}"

    def close(self) -> None:
        self.segmenter.close()
