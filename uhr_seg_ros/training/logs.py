"""Training logs: ``train_log.csv``, ``val_log.csv`` and TensorBoard scalars when installed."""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class TrainingLogs:
    """CSV rows (+ TensorBoard scalars when available), written by the main process only."""

    def __init__(
        self,
        out_dir: Path,
        class_names: tuple[str, ...],
        resume_at: int,
        loss_terms: tuple[str, ...],
    ) -> None:
        #: the loss terms of the model family (columns after ``loss``)
        self.loss_terms = loss_terms
        self.train_fields = (
            "iteration",
            "epoch",
            "lr",
            "loss",
            *loss_terms,
            "images_per_s",
            "elapsed_s",
        )
        self.train_csv = out_dir / "train_log.csv"
        self.val_csv = out_dir / "val_log.csv"
        self.val_fields = ("iteration", "miou", *(f"iou_{n}" for n in class_names))
        for path in (self.train_csv, self.val_csv):
            _truncate_after(path, resume_at)
        self.tensorboard = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(out_dir / "tensorboard"), purge_step=resume_at)
        except ImportError:
            log.info("tensorboard not installed: logging to CSV only")

    def _append(self, path: Path, fields: Sequence[str], row: Mapping[str, Any]) -> None:
        new = not path.exists()
        with path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            if new:
                writer.writeheader()
            writer.writerow(row)

    def train_row(self, row: Mapping[str, Any]) -> None:
        self._append(self.train_csv, self.train_fields, row)
        if self.tensorboard:
            for key in ("lr", "loss", *self.loss_terms, "images_per_s"):
                self.tensorboard.add_scalar(f"train/{key}", row[key], row["iteration"])

    def val_row(self, iteration: int, miou: float, per_class: Sequence[float]) -> None:
        values = [iteration, miou, *per_class]
        self._append(self.val_csv, self.val_fields, dict(zip(self.val_fields, values, strict=True)))
        if self.tensorboard:
            self.tensorboard.add_scalar("val/miou", miou, iteration)

    def close(self) -> None:
        if self.tensorboard:
            self.tensorboard.close()


def _truncate_after(path: Path, iteration: int) -> None:
    """Drop log rows written after ``iteration`` (by a run that died before its next save)."""
    if not path.exists():
        return
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
        fields = list(rows[0].keys()) if rows else None
    if not fields:
        return
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(r for r in rows if int(r["iteration"]) <= iteration)
