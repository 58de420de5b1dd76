"""One paired session as every source describes it (:class:`SessionSpec`), and what sources share:
the ``labels.csv`` reader and the file-system-safe session names used for shards and the ledger.

A leaf of :mod:`crossmodal_har.pairs`: the sources (:mod:`.sources`, :mod:`.ego4d`,
:mod:`.gopro.source`) and ingestion import it; it imports none of them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from crossmodal_har.errors import DataError
from crossmodal_har.signals.text import quote, read_text, short_number, visible
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
        inputs: every file the source reads for this session (IMU file, video, ``session.json``,
            listed even when missing); ingestion fingerprints them to tell on a re-run whether the
            session changed (:mod:`crossmodal_har.pairs.fingerprint`). Shared files are not listed:
            what the session takes from them (its rows of ``labels.csv``) is in ``labels``/``subject``.
    """

    name: str
    subject: str
    video_path: Path
    load_imu: Callable[[], ImuRecording]
    labels: List[Label] = field(default_factory=list)
    meta: Dict[str, Any] = field(default_factory=dict)
    inputs: List[Path] = field(default_factory=list)


def read_labels_csv(path: Path, sessions: Optional[Iterable[str]] = None
                    ) -> Tuple[Dict[str, List[Label]], Dict[str, str]]:
    """Read ``labels.csv`` (session,start,end,label[,subject]; seconds on the video clock).

    The rules are the generic format's (:func:`crossmodal_har.signals.generic.read_labels`): every
    bad row is a DataError naming the file and its line: unparsable, non-finite or negative times,
    start >= end, an empty label, a session not in ``sessions`` (when given), two subjects for one
    session, and segments of one session that overlap (touching is fine). Text follows
    :mod:`crossmodal_har.signals.text` (UTF-8, a leading BOM ignored).

    Returns ``({session: [(start, end, label), ...] sorted}, {session: subject})``. A missing file
    gives empty dicts.
    """
    labels: Dict[str, List[Label]] = {}
    subjects: Dict[str, str] = {}
    if not path.exists():
        return labels, subjects
    text = read_text(path)
    if "\x00" in text[:8192]:
        raise DataError(path, "binary file, not CSV text")
    known = None if sessions is None else set(sessions)
    lines: Dict[str, List[int]] = {}
    try:
        _read_labels_rows(path, text, known, labels, subjects, lines)
    except csv.Error as exc:
        raise DataError(path, f"malformed CSV: {exc}") from None
    for sess, segs in labels.items():
        order = sorted(range(len(segs)), key=lambda k: segs[k][:2])
        for a, b in zip(order[:-1], order[1:]):
            if segs[b][0] < segs[a][1]:
                first, second = sorted((lines[sess][a], lines[sess][b]))
                raise DataError(path, f"segment of session {quote(sess)} overlaps the one on line {first}",
                                line=second)
        labels[sess] = [segs[k] for k in order]
    return labels, subjects


def _read_labels_rows(path: Path, text: str, known: Optional[set], labels: Dict[str, List[Label]],
                      subjects: Dict[str, str], lines: Dict[str, List[int]]) -> None:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        return
    header = [h.strip().lower() for h in header]
    need = ["session", "start", "end", "label"]
    if header[:4] != need or len(header) > 5 or (len(header) == 5 and header[4] != "subject"):
        raise DataError(path, f"header must be session,start,end,label[,subject], got "
                              f"{visible(','.join(header))[:200]}", line=1)
    for lineno, row in enumerate(reader, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise DataError(path, f"expected {len(header)} fields, got {len(row)}", line=lineno)
        sess, a, b, lab = (c.strip() for c in row[:4])
        if known is not None and sess not in known:
            raise DataError(path, f"unknown session {quote(sess)} (no such session in the source)", line=lineno)
        try:
            start, end = float(a), float(b)
        except ValueError:
            raise DataError(path, f"start/end must be numbers (seconds), got {quote(a)}, {quote(b)}",
                            line=lineno) from None
        if not (math.isfinite(start) and math.isfinite(end)):
            raise DataError(path, f"start/end must be finite, got {short_number(start)}, {short_number(end)}",
                            line=lineno)
        if start < 0 or end < 0:
            raise DataError(path, f"negative time {short_number(min(start, end))} (seconds on the video clock "
                                  "start at 0)", line=lineno)
        if end <= start:
            raise DataError(path, f"segment end must be after start, got {short_number(start)}.."
                                  f"{short_number(end)}", line=lineno)
        if not lab:
            raise DataError(path, "empty label", line=lineno)
        labels.setdefault(sess, []).append((start, end, lab))
        lines.setdefault(sess, []).append(lineno)
        if len(row) == 5 and row[4].strip():
            subj = row[4].strip()
            if subjects.setdefault(sess, subj) != subj:
                raise DataError(path, f"session {quote(sess)} has two subjects ({quote(subjects[sess])}, "
                                      f"{quote(subj)})", line=lineno)


def safe_name(name: str) -> str:
    """A file-system-safe version of a session name (for shard directory names)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "session"


def session_key(name: str) -> str:
    """Stable, file-system-safe prefix of a session's shard and ledger file names."""
    return f"{safe_name(name)[:60]}-{hashlib.sha1(name.encode('utf-8')).hexdigest()[:8]}"
