"""One paired session as every source describes it (:class:`SessionSpec`), and what sources share:
the ``labels.csv`` reader and the file-system-safe session names used for shards and the ledger.

A leaf of :mod:`crossmodal_har.pairs`: the sources (:mod:`.sources`, :mod:`.ego4d`,
:mod:`.gopro.source`) and ingestion import it; it imports none of them.
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

from crossmodal_har.errors import DataError
from crossmodal_har.signals.types import ImuRecording

Label = Tuple[float, float, str]


@dataclass
class SessionSpec:
    """One paired session: a video and the IMU recorded with it.

    Attributes:
        name: unique session id within the source (shard names and the manifest use it).
        subject: person id (for subject-wise splits).
        video_path: the video file.
        load_imu: returns the IMU as an ImuRecording in canonical units (g, rad/s) with ``t`` in
            seconds on the video clock; raises DataError for bad data. Sources may record repairs
            they made (e.g. sorted/deduplicated timestamps) in ``meta["imu_fixes"]`` while loading.
        labels: ``(start_s, end_s, label)`` on the video clock; may be empty.
        meta: free-form, JSON-serialisable details for the report.
    """

    name: str
    subject: str
    video_path: Path
    load_imu: Callable[[], ImuRecording]
    labels: List[Label] = field(default_factory=list)
    meta: Dict[str, Any] = field(default_factory=dict)


def read_labels_csv(path: Path) -> Tuple[Dict[str, List[Label]], Dict[str, str]]:
    """Read ``labels.csv`` (session,start,end,label[,subject]; seconds on the video clock).

    Returns ``({session: [(start, end, label), ...]}, {session: subject})``. A missing file gives
    empty dicts; a malformed one is a DataError naming the line.
    """
    labels: Dict[str, List[Label]] = {}
    subjects: Dict[str, str] = {}
    if not path.exists():
        return labels, subjects
    try:
        _read_labels_rows(path, labels, subjects)
    except UnicodeDecodeError:
        raise DataError(path, "not a UTF-8 text file") from None
    except csv.Error as exc:
        raise DataError(path, f"malformed CSV: {exc}") from None
    for segs in labels.values():
        segs.sort()
    return labels, subjects


def _read_labels_rows(path: Path, labels: Dict[str, List[Label]], subjects: Dict[str, str]) -> None:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return
        header = [h.strip().lower() for h in header]
        need = ["session", "start", "end", "label"]
        if header[:4] != need or len(header) > 5 or (len(header) == 5 and header[4] != "subject"):
            raise DataError(path, f"header must be session,start,end,label[,subject], got {','.join(header)}", line=1)
        for lineno, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise DataError(path, f"expected {len(header)} fields, got {len(row)}", line=lineno)
            sess, a, b, lab = (c.strip() for c in row[:4])
            try:
                start, end = float(a), float(b)
            except ValueError:
                raise DataError(path, f"start/end must be numbers (seconds), got {a!r}, {b!r}", line=lineno) from None
            if not (np.isfinite(start) and np.isfinite(end)) or end <= start:
                raise DataError(path, f"segment end must be after start, got {start}..{end}", line=lineno)
            if not lab:
                raise DataError(path, "empty label", line=lineno)
            labels.setdefault(sess, []).append((start, end, lab))
            if len(row) == 5 and row[4].strip():
                subj = row[4].strip()
                if subjects.setdefault(sess, subj) != subj:
                    raise DataError(path, f"session {sess!r} has two subjects ({subjects[sess]!r}, {subj!r})", line=lineno)


def safe_name(name: str) -> str:
    """A file-system-safe version of a session name (for shard directory names)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "session"


def session_key(name: str) -> str:
    """Stable, file-system-safe prefix of a session's shard and ledger file names."""
    return f"{safe_name(name)[:60]}-{hashlib.sha1(name.encode('utf-8')).hexdigest()[:8]}"
