"""Metric logging for a run: ``metrics.csv`` (long format) and TensorBoard, rank 0 only.

Metric names are namespaced (``train/loss``, ``train/lr``, ``val/R@1``). ``metrics.csv`` has one
row per (step, metric): ``step,epoch,metric,value,time_s``. On resume, rows past the checkpoint's
step (written by the interrupted process after its last checkpoint) are dropped so the file reads
as one uninterrupted run.
"""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path
from typing import Dict, Mapping, Optional

from crossmodal_har.io import atomic_write_text

log = logging.getLogger(__name__)

CSV_NAME = "metrics.csv"
CSV_FIELDS = ("step", "epoch", "metric", "value", "time_s")


class MetricLogger:
    """Writes metrics to CSV and TensorBoard. A no-op on ranks other than 0."""

    def __init__(self, run_dir: Path, enabled: bool = True, resume_step: Optional[int] = None,
                 tensorboard: bool = True):
        self.enabled = enabled
        self.path = Path(run_dir) / CSV_NAME
        self._fh = None
        self._writer = None
        self._tb = None
        self._t0 = time.time()
        if not enabled:
            return
        if resume_step is not None and self.path.exists():
            self._truncate_after(resume_step)
        else:
            self.path.unlink(missing_ok=True)
        new = not self.path.exists()
        self._fh = open(self.path, "a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._fh)
        if new:
            self._writer.writerow(CSV_FIELDS)
            self._fh.flush()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"),
                                         purge_step=resume_step + 1 if resume_step is not None else None)
            except Exception as exc:  # tensorboard missing or broken: CSV is enough
                log.warning("TensorBoard logging disabled: %s", exc)

    def _truncate_after(self, step: int) -> None:
        with open(self.path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        if not rows or tuple(rows[0]) != CSV_FIELDS:
            return
        kept = [rows[0]] + [r for r in rows[1:] if len(r) == len(CSV_FIELDS) and int(r[0]) <= step]
        atomic_write_text(self.path, "".join(",".join(r) + "\n" for r in kept))

    def log(self, metrics: Mapping[str, float], step: int, epoch: int) -> None:
        if not self.enabled:
            return
        now = round(time.time() - self._t0, 3)
        for name, value in metrics.items():
            self._writer.writerow((step, epoch, name, repr(float(value)), now))
            if self._tb is not None:
                self._tb.add_scalar(name, float(value), step)
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def read_metrics(run_dir: Path) -> Dict[str, Dict[int, float]]:
    """``{metric: {step: value}}`` from a run's ``metrics.csv`` (last value wins per step)."""
    out: Dict[str, Dict[int, float]] = {}
    with open(Path(run_dir) / CSV_NAME, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            out.setdefault(row["metric"], {})[int(row["step"])] = float(row["value"])
    return out
