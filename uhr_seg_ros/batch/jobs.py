"""Inputs, outputs and the manifest of a batch run.

The manifest (``manifest.json``, mirrored as ``manifest.csv`` for spreadsheets) has one record
per input: output, status, reason, plan, seconds, size. It is rewritten after every file, so an
interrupted run loses nothing, and a second run skips every input whose record says ``ok``, whose
output still exists and whose size and modification time are unchanged.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from uhr_seg_ros.geo import is_raster_path

#: Files a folder input contributes (recursively), case-insensitive.
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".jp2")
MANIFEST_JSON, MANIFEST_CSV = "manifest.json", "manifest.csv"


@dataclass(frozen=True)
class Job:
    """One input file and where its mask goes (``.tif`` for rasters, else ``.png``)."""

    input: str
    output: str
    vector: str | None = None  # polygons of a raster mask, when requested

    @property
    def is_raster(self) -> bool:
        return is_raster_path(self.input)


@dataclass
class Record:
    """What happened to one job; a row of the manifest."""

    input: str
    output: str
    status: str  # ok | error
    reason: str = ""  # one line: what went wrong
    kind: str = ""  # image | raster
    width: int = 0
    height: int = 0
    plan: str = ""
    seconds: float = 0.0
    worker: str = ""
    input_bytes: int = 0
    input_mtime: float = 0.0
    finished_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))


def expand_inputs(inputs: Sequence[str | Path], out_dir: Path) -> list[Path]:
    """Files as given, folders expanded recursively to image files, outputs folder excluded;
    a missing input is a :class:`FileNotFoundError` before anything runs."""
    found: list[Path] = []
    out_dir = out_dir.resolve()
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(
                p
                for p in item.rglob("*")
                if p.is_file()
                and p.suffix.lower() in IMAGE_SUFFIXES
                and out_dir not in p.resolve().parents
            )
        elif item.is_file():
            found.append(item)
        else:
            raise FileNotFoundError(f"input {item} does not exist")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise ValueError(f"no image or raster files in {', '.join(map(str, inputs))}")
    return unique


def plan_jobs(files: Sequence[Path], out_dir: Path, vector_suffix: str | None = None) -> list[Job]:
    """``out_dir/<path relative to the inputs' common folder>_mask.{tif,png}``, so inputs with
    the same name in different folders never overwrite each other."""
    root = Path(os.path.commonpath([str(f.parent) for f in files]))
    jobs = []
    for f in files:
        stem = out_dir / f.relative_to(root).parent / f"{f.stem}_mask"
        raster = is_raster_path(f)
        jobs.append(
            Job(
                str(f),
                str(stem.with_suffix(".tif" if raster else ".png")),
                str(stem.with_suffix(vector_suffix)) if raster and vector_suffix else None,
            )
        )
    return jobs


class Manifest:
    """The records of one output folder, keyed by input path."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.records: dict[str, Record] = {}
        path = out_dir / MANIFEST_JSON
        if path.is_file():
            try:
                data = json.loads(path.read_text())
                names = {f.name for f in fields(Record)}
                for row in data.get("records", []):
                    record = Record(**{k: v for k, v in row.items() if k in names})
                    self.records[record.input] = record
            except (ValueError, TypeError) as exc:
                raise ValueError(
                    f"{path} is not a manifest this version can read ({exc}); "
                    "move it away to start afresh"
                ) from None

    def is_done(self, job: Job) -> bool:
        """Finished before, output still there, input unchanged since."""
        record = self.records.get(job.input)
        if record is None or record.status != "ok" or not Path(record.output).is_file():
            return False
        stat = Path(job.input).stat()
        return record.input_bytes == stat.st_size and record.input_mtime == stat.st_mtime

    def add(self, record: Record) -> None:
        self.records[record.input] = record
        self.save()

    def save(self) -> None:
        """Both files, each replaced atomically."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        rows = [asdict(r) for r in self.records.values()]
        summary = {
            status: sum(r.status == status for r in self.records.values())
            for status in ("ok", "error")
        }
        _atomic_write(
            self.out_dir / MANIFEST_JSON,
            json.dumps({"summary": summary, "records": rows}, indent=1),
        )
        tmp = self.out_dir / (MANIFEST_CSV + ".tmp")
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=[f.name for f in fields(Record)])
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(self.out_dir / MANIFEST_CSV)

    def failed(self, inputs: Iterable[str]) -> list[Record]:
        return [
            self.records[i] for i in inputs if i in self.records and self.records[i].status != "ok"
        ]


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
