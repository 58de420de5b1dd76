"""The generic labelled dataset format (the user-facing contract; see docs/data-formats.md).

```
<dataset>/dataset.json          {"acc_unit": "g" | "m/s^2", "gyro_unit": "rad/s" | "deg/s", "time_unit": "s" | "ms"}
<dataset>/recordings/<name>.csv header: time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z   (or <name>.parquet)
                                or time,acc_x,acc_y,acc_z (accelerometer only), or a device file
                                (<name>.cwa, <name>.bin, ...: crossmodal_har.signals.devices)
<dataset>/labels.csv            header: recording,start,end,label[,subject]
```
Optional extra keys in dataset.json: ``name`` (str), ``classes`` (list of label names in their
natural order), ``description`` (str), ``source`` (str). Any other key is an error.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from crossmodal_har.errors import ConfigError, DataError
from crossmodal_har.io import atomic_write_json, read_json
from crossmodal_har.signals.clock import zone
from crossmodal_har.signals.devices import device_suffixes
from crossmodal_har.signals.tables import COLUMNS, RECORDING_SUFFIXES, header_names
from crossmodal_har.signals.text import LINE_BREAKS, decode_text, quote, short_number, visible
from crossmodal_har.signals.types import DatasetReport
from crossmodal_har.signals.units import Units

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
LABEL_COLUMNS = ("recording", "start", "end", "label")
OPTIONAL_LABEL_COLUMNS = ("subject",)
META_OPTIONAL_KEYS = ("name", "classes", "description", "source", "tz", "sensor")
# Written by converters (e.g. UESTC with skip_bad): source files left out, merged into the report.
SKIPPED_FILE = "skipped.json"


@dataclass
class DatasetMeta:
    """Contents of ``dataset.json``."""

    units: Units
    name: str = ""
    classes: Optional[List[str]] = None
    description: str = ""
    source: str = ""
    tz: str = "UTC"  # IANA zone of device-file clocks that carry none (Axivity; GENEActiv/ActiGraph without one)
    sensor: Optional[str] = None  # which sensor of device files that hold several (APDM .h5: a label or id)


@dataclass
class LabelSegment:
    start_s: float
    end_s: float
    label: str
    line: int


@dataclass
class Labels:
    """Parsed ``labels.csv``: per-recording sorted, non-overlapping segments (times in seconds)."""

    segments: Dict[str, List[LabelSegment]] = field(default_factory=dict)
    subjects: Dict[str, str] = field(default_factory=dict)
    classes: List[str] = field(default_factory=list)  # in first-seen order


def read_meta(root: PathLike) -> DatasetMeta:
    """Read and validate ``<root>/dataset.json``."""
    path = Path(root) / "dataset.json"
    if not path.is_file():
        raise DataError(root, "not a dataset directory: dataset.json not found (the format: crossmodal-har formats)")
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(path, "dataset.json must be a JSON object with acc_unit, gyro_unit, time_unit")
    allowed = {"acc_unit", "gyro_unit", "time_unit", *META_OPTIONAL_KEYS}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise DataError(path, f"unknown key(s) {visible(', '.join(unknown))[:200]}; valid keys: "
                              f"{', '.join(sorted(allowed))}")
    units = Units.from_mapping(data, path)
    classes = data.get("classes")
    if classes is not None:
        if not isinstance(classes, list) or not all(isinstance(c, (str, int)) for c in classes):
            raise DataError(path, "classes must be a list of label names")
        classes = [str(c) for c in classes]
        if len(set(classes)) != len(classes):
            raise DataError(path, "classes contains duplicates")
        broken = [c for c in classes if any(ch in c for ch in LINE_BREAKS)]
        if broken:
            raise DataError(path, f"classes: {quote(broken[0])} holds a line break (a class name is one line)")
    for key in ("name", "description", "source", "tz", "sensor"):
        if key in data and not isinstance(data[key], str):
            raise DataError(path, f"{key} must be a string")
    tz = str(data.get("tz", "UTC"))
    zone(tz, path)
    return DatasetMeta(units=units, name=str(data.get("name", "")), classes=classes,
                       description=str(data.get("description", "")), source=str(data.get("source", "")), tz=tz,
                       sensor=data.get("sensor"))


def read_skipped(root: PathLike) -> List[Dict[str, str]]:
    """Source files a converter left out (``<root>/skipped.json``), if any."""
    p = Path(root) / SKIPPED_FILE
    if not p.is_file():
        return []
    data = read_json(p)
    if not isinstance(data, list):
        raise DataError(p, "expected a list of {path, error}")
    return [{"path": str(d.get("path", "")), "error": str(d.get("error", ""))} for d in data]


def list_recordings(root: PathLike) -> Dict[str, Path]:
    """``{name: path}`` of ``<root>/recordings/*.csv|*.parquet`` and device files (``*.cwa``,
    ``*.bin``, ...: every suffix of :mod:`crossmodal_har.signals.devices`), sorted by name.

    A device recording's clock is the file's: Unix epoch seconds (UTC) when it has a start time, so
    its rows in labels.csv give epoch times (in the dataset's ``time_unit``)."""
    rec_dir = Path(root) / "recordings"
    if not rec_dir.is_dir():
        raise DataError(root, "recordings/ directory not found")
    suffixes = set(RECORDING_SUFFIXES) | set(device_suffixes())
    out: Dict[str, Path] = {}
    for p in sorted(rec_dir.iterdir()):
        if p.name.startswith(".") or not p.is_file() or p.suffix.lower() not in suffixes:
            continue
        if p.stem in out:
            raise DataError(p, f"two recordings named {p.stem!r} ({out[p.stem].name} and {p.name})")
        out[p.stem] = p
    if not out:
        raise DataError(rec_dir, f"no recordings found (expected {', '.join(sorted(suffixes))} files)")
    return out


def _parse_number(path: Path, line: int, col: str, cell: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise DataError(path, f"cannot parse {col} {quote(cell)} as a number", line=line) from None
    if not math.isfinite(value):
        raise DataError(path, f"{col} is not finite ({quote(cell)})", line=line)
    return value


def read_labels(path: PathLike, recordings: Sequence[str], units: Units, *,
                classes: Optional[Sequence[str]] = None, skip_bad: bool = False,
                report: Optional[DatasetReport] = None) -> Labels:
    """Parse ``labels.csv`` (times in the recordings' time unit) into seconds.

    Every bad row is a DataError naming labels.csv and its line: unknown recording, unparsable or
    non-finite start/end, start >= end, empty label, a label not in ``classes``, overlapping
    segments of one recording, conflicting subjects. With ``skip_bad`` a bad row is skipped and
    listed in ``report.skipped_recordings`` (``path`` = ``labels.csv:LINE``) instead; a bad header
    always raises.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "labels.csv not found")
    known = set(recordings)
    out = Labels()
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(path, "empty file (expected header recording,start,end,label[,subject])")
    if b"\x00" in raw[:8192]:
        raise DataError(path, "binary file, not CSV text")
    text = decode_text(raw, path)
    # quoted fields may hold line breaks: read the text as CSV (not line by line), name rows by the
    # line they start on, and refuse a break inside a label (a class name is one line)
    reader = csv.reader(io.StringIO(text, newline=""))
    header = header_names(next(reader))
    missing = [c for c in LABEL_COLUMNS if c not in header]
    if missing:
        raise DataError(path, f"missing column(s) {', '.join(missing)}; header must be "
                              "recording,start,end,label[,subject]", line=1)
    unknown = [c for c in header if c not in LABEL_COLUMNS + OPTIONAL_LABEL_COLUMNS]
    if unknown:
        raise DataError(path, f"unknown column(s) {visible(', '.join(unknown))[:200]}", line=1)
    col = {c: header.index(c) for c in header}
    class_set = set(classes) if classes is not None else None
    scale = units.time_scale
    subject_line: Dict[str, int] = {}
    next_line = reader.line_num + 1
    for row in reader:
        lineno, next_line = next_line, reader.line_num + 1
        if not row or all(not c.strip() for c in row):
            continue
        try:
            if len(row) != len(header):
                raise DataError(path, f"row has {len(row)} fields, the header has {len(header)}", line=lineno)
            cells = {c: row[i].strip() for c, i in col.items()}
            rec = cells["recording"]
            if rec not in known:
                raise DataError(path, f"unknown recording {quote(rec)} (no recordings/{visible(rec[:40])}.csv or "
                                      ".parquet)", line=lineno)
            start = _parse_number(path, lineno, "start", cells["start"])
            end = _parse_number(path, lineno, "end", cells["end"])
            if not start < end:
                raise DataError(path, f"start {short_number(start)} >= end {short_number(end)}", line=lineno)
            label = cells["label"]
            if not label:
                raise DataError(path, "empty label", line=lineno)
            if any(ch in label for ch in LINE_BREAKS):
                raise DataError(path, f"label {quote(label)} holds a line break (a class name is one line)",
                                line=lineno)
            if class_set is not None and label not in class_set:
                raise DataError(path, f"label {quote(label)} is not in dataset.json classes", line=lineno)
            subject = cells.get("subject", "")
            if subject:
                prev = out.subjects.get(rec)
                if prev is not None and prev != subject:
                    raise DataError(path, f"recording {quote(rec)} has subject {quote(subject)} here but "
                                          f"{quote(prev)} on "
                                          f"line {subject_line[rec]}", line=lineno)
        except DataError as exc:
            if not skip_bad:
                raise
            if report is not None:
                report.skipped_recordings.append({"path": f"{path}:{lineno}", "error": str(exc)})
            log.warning("skipping %s", exc)
            continue
        if subject and rec not in out.subjects:
            out.subjects[rec] = subject
            subject_line[rec] = lineno
        if label not in out.classes:
            out.classes.append(label)
        out.segments.setdefault(rec, []).append(LabelSegment(start * scale, end * scale, label, lineno))
    for rec, segs in out.segments.items():
        segs.sort(key=lambda s: (s.start_s, s.end_s))
        kept: List[LabelSegment] = []
        for s in segs:
            if kept and s.start_s < kept[-1].end_s:
                exc = DataError(path, f"segment of {quote(rec)} overlaps the one on line {kept[-1].line}",
                                line=s.line)
                if not skip_bad:
                    raise exc
                if report is not None:
                    report.skipped_recordings.append({"path": f"{path}:{s.line}", "error": str(exc)})
                continue
            kept.append(s)
        out.segments[rec] = kept
    return out


def assign_labels(start_s: np.ndarray, end_s: np.ndarray, segments: Sequence[LabelSegment],
                  class_index: Dict[str, int], tol_s: float = 1e-6) -> np.ndarray:
    """Class index per window ``[start_s, end_s)``: the segment wholly containing it, else -1.

    ``segments`` are sorted and non-overlapping (times in seconds); ``tol_s`` absorbs rounding.
    """
    y = np.full(len(start_s), -1, dtype=np.int64)
    if not len(segments) or not len(start_s):
        return y
    seg_start = np.array([s.start_s for s in segments])
    seg_end = np.array([s.end_s for s in segments])
    seg_cls = np.array([class_index.get(s.label, -1) for s in segments], dtype=np.int64)
    j = np.searchsorted(seg_start, start_s + tol_s, side="right") - 1
    inside = (j >= 0)
    jj = np.clip(j, 0, None)
    inside &= end_s <= seg_end[jj] + tol_s
    y[inside] = seg_cls[jj[inside]]
    return y


def sort_classes(labels: Sequence[str]) -> List[str]:
    """Sorted label names; numerically when every label is an integer."""
    labels = list(dict.fromkeys(labels))
    try:
        return sorted(labels, key=lambda s: int(s))
    except ValueError:
        return sorted(labels)


def write_generic_dataset(out_dir: PathLike, recordings: Sequence[Tuple[str, "object"]], labels: "object",
                          units: Units, *, fmt: str = "csv", classes: Optional[Sequence[str]] = None,
                          name: str = "", source: str = "", description: str = "",
                          overwrite: bool = False) -> Path:
    """Write a dataset in the generic format, atomically (a temporary directory renamed into place).

    Args:
        out_dir: dataset directory to create.
        recordings: ``(name, DataFrame)`` with columns ``time, acc_x .. gyro_z`` in ``units``.
        labels: DataFrame with columns ``recording, start, end, label[, subject]`` (times in
            ``units.time_unit``).
        units: declared units, written to dataset.json.
        fmt: ``csv`` or ``parquet`` recordings.
        classes: optional natural class order, written to dataset.json.
        overwrite: replace an existing ``out_dir``.
    """
    import pandas as pd

    if fmt not in ("csv", "parquet"):
        raise ConfigError(f"fmt must be csv or parquet, got {fmt!r}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise ConfigError(f"{out_dir} already exists")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        (tmp / "recordings").mkdir()
        meta = units.to_dict()
        if name:
            meta["name"] = name
        if classes is not None:
            meta["classes"] = [str(c) for c in classes]
        if source:
            meta["source"] = source
        if description:
            meta["description"] = description
        atomic_write_json(tmp / "dataset.json", meta)
        names = set()
        for rec_name, df in recordings:
            if not rec_name or "/" in rec_name or rec_name.startswith(".") or rec_name in names:
                raise ConfigError(f"bad or duplicated recording name {rec_name!r}")
            names.add(rec_name)
            missing = [c for c in COLUMNS if c not in df.columns]
            if missing:
                raise ConfigError(f"recording {rec_name!r} lacks column(s) {', '.join(missing)}")
            frame = df[list(COLUMNS)]
            if fmt == "csv":
                frame.to_csv(tmp / "recordings" / f"{rec_name}.csv", index=False)
            else:
                frame.to_parquet(tmp / "recordings" / f"{rec_name}.parquet", index=False)
        labels = pd.DataFrame(labels)
        missing = [c for c in LABEL_COLUMNS if c not in labels.columns]
        if missing:
            raise ConfigError(f"labels lack column(s) {', '.join(missing)}")
        cols = list(LABEL_COLUMNS) + [c for c in OPTIONAL_LABEL_COLUMNS if c in labels.columns]
        labels[cols].to_csv(tmp / "labels.csv", index=False)
        old = None
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
