"""A labelled dataset (the generic format, :mod:`crossmodal_har.signals.generic`) from a paired corpus
whose ``labels.csv`` labels its sessions: the IMU of each session (one body site's file with
``imu_site``) with its labels, so that ``evaluate --dataset DIR`` can score encoders on it.

Only the IMU is written (the videos stay where they are): each session's recording goes through the
paired source's own reader (its ``session.json`` units and ``imu_offset_s``), so the recordings are in
canonical units (g, rad/s) on the video clock, the clock of ``labels.csv``; a session becomes a
recording of the same name, its subject the session's subject.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import pandas as pd

from crossmodal_har.errors import DataError, UserError
from crossmodal_har.io import PathLike, read_json
from crossmodal_har.pairs.sources import iter_paired_sessions
from crossmodal_har.signals.generic import write_generic_dataset
from crossmodal_har.signals.tables import COLUMNS
from crossmodal_har.signals.units import Units

log = logging.getLogger(__name__)


def write_labelled_dataset(src: PathLike, out: PathLike, *, imu_site: Optional[str] = None,
                           name: str = "") -> Path:
    """Write ``out`` from the paired corpus ``src``; an ``out`` made earlier from the same ``src`` is replaced
    (derived data), any other existing non-empty ``out`` is refused.

    A session without labels is left out (logged); a session whose IMU cannot be read raises its
    DataError (this is a view of a corpus the caller made, not a user's folder to skip through)."""
    src, out = Path(src), Path(out)
    if out.is_dir() and any(out.iterdir()):
        meta = out / "dataset.json"
        made = read_json(meta) if meta.is_file() else None
        if not (isinstance(made, dict) and made.get("source") == str(src)):
            raise UserError(f"--out {out} exists and is not a dataset made from {src}: choose a new --out")
    recordings: List[Tuple[str, pd.DataFrame]] = []
    rows = []
    for spec in iter_paired_sessions(src, imu_site=imu_site):
        if not spec.labels:
            log.info("%s: no labels in labels.csv, left out", spec.name)
            continue
        rec = spec.load_imu()
        recordings.append((spec.name, pd.DataFrame(np.column_stack([rec.t, rec.data]), columns=list(COLUMNS))))
        rows += [{"recording": spec.name, "start": a, "end": b, "label": lab, "subject": spec.subject}
                 for a, b, lab in spec.labels]
    if not recordings:
        raise DataError(src / "labels.csv", "no labelled session: nothing to evaluate on")
    site = f" ({imu_site} IMU)" if imu_site else ""
    return write_generic_dataset(out, recordings, pd.DataFrame(rows), Units(), overwrite=True,
                                 name=name or f"{src.name}{site}", source=str(src),
                                 description=f"the labelled sessions of the paired corpus {src}{site}")
