"""UESTC-MMEA-CL sensor files (the paper's evaluation set) → generic format.

No copy of UESTC-MMEA-CL exists on the machine this was written on; the reader follows the layout
published by the dataset authors (README and data loader of github.com/Xu-Linfeng/UESTC_MMEA_CL_main)
and is tested on small files written in that shape:

```
UESTC-MMEA-CL/
  train.txt, val.txt, test.txt         "<...>/<k>_<class>/<k>_<class>_<YYYY_MM_DD_HH_MM_SS> <frames> <sensor rows> <label>"
  video/<k>_<class>/...
  sensor/<k>_<class>/<k>_<class>_<YYYY_MM_DD_HH_MM_SS>.csv
```
Each sensor CSV has no header and one row per sample with six raw MPU readings:
``acc_x, acc_y, acc_z`` in counts of 1/8192 g (+-4 g range) and ``gyro_x, gyro_y, gyro_z`` in
counts of 1/16.4 deg/s (+-2000 deg/s range), the scale factors the authors' loader divides by.
Class ``k`` (1..32) is the folder prefix; e.g. ``1_upstairs`` ... ``32_watch_TV``.

Assumptions, stated because the public material does not give them:
  * there are no timestamps; samples are taken as uniformly spaced at ``rate_hz`` (default 25 Hz:
    the list files give about as many sensor rows as video frames per clip);
  * participants are not identified in file names, so ``subject`` is the recording date
    (``YYYY-MM-DD``, a session proxy). Splits by this "subject" are session-disjoint, not
    guaranteed person-disjoint.
Each clip becomes one recording labelled with its class over its whole duration.

Two readings (dataset specs in :mod:`crossmodal_har.signals.datasets`):
  * ``uestc:<dir>``: all 32 classes (the default);
  * ``uestc5:<dir>``: the paper's 5 classes, :data:`PAPER_CLASSES` (standing, walking, sit_stand,
    downstairs, fall): the official downstream code (scheshmi/IMU-Video-OOD-HAR ``downstream.py``)
    keeps only the clips of the folders ``12_standing``, ``20_walking``, ``29_sit_stand``,
    ``2_downstairs`` and ``4_fall``. Clips of other classes are not read at all.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from crossmodal_har.errors import ConfigError, DataError
from crossmodal_har.io import atomic_write_json
from crossmodal_har.signals.generic import SKIPPED_FILE, write_generic_dataset
from crossmodal_har.signals.units import GYRO_UNITS, Units

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
DEFAULT_RATE_HZ = 25.0
ACC_LSB_PER_G = 8192.0
GYRO_LSB_PER_DEG_S = 16.4
CONVERTER_VERSION = 1
#: the paper's 5 classes (folder numbers 12, 20, 29, 2, 4 in UESTC-MMEA-CL)
PAPER_CLASSES = ("standing", "walking", "sit_stand", "downstairs", "fall")

_CLASS_DIR = re.compile(r"^(\d+)_(.+)$")
_DATE = re.compile(r"_(\d{4})_(\d{2})_(\d{2})_\d{2}_\d{2}_\d{2}$")


def sensor_root(root: PathLike) -> Path:
    """``<root>/sensor`` if present, else ``root`` itself when it holds ``<k>_<class>/`` folders."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"UESTC-MMEA-CL directory {root} not found")
    cand = root / "sensor"
    base = cand if cand.is_dir() else root
    if not any(p.is_dir() and _CLASS_DIR.match(p.name) for p in base.iterdir()):
        raise DataError(root, "no sensor/<k>_<class>/ folders found (expected the UESTC-MMEA-CL layout)")
    return base


def list_clips(root: PathLike, classes: Optional[Sequence[str]] = None
               ) -> Tuple[List[str], List[Tuple[str, Path, str]]]:
    """Class names in dataset order (by folder number) and ``(class, csv path, recording name)``.

    ``classes``: keep only these class names (e.g. :data:`PAPER_CLASSES`); each must have a folder.
    """
    base = sensor_root(root)
    wanted = set(classes) if classes is not None else None
    classes: Dict[int, str] = {}
    clips = []
    for d in sorted(base.iterdir()):
        m = _CLASS_DIR.match(d.name)
        if not d.is_dir() or not m:
            continue
        k, name = int(m.group(1)), m.group(2)
        if k in classes and classes[k] != name:
            raise DataError(d, f"class number {k} used by two folders ({classes[k]}, {name})")
        classes[k] = name
        if wanted is not None and name not in wanted:
            continue
        for f in sorted(d.glob("*.csv")):
            clips.append((name, f, f.stem))
    names = [classes[k] for k in sorted(classes)]
    if wanted is not None:
        missing = sorted(wanted - set(names))
        if missing:
            raise DataError(base, f"no <k>_<class>/ folder for class(es) {', '.join(missing)} "
                                  f"(the 5-class reading needs {', '.join(sorted(wanted))})")
        names = [c for c in names if c in wanted]
    stems = [c[2] for c in clips]
    if len(set(stems)) != len(stems):
        dup = sorted({s for s in stems if stems.count(s) > 1})[0]
        raise DataError(base, f"two sensor files named {dup}.csv")
    if not clips:
        raise DataError(base, "no sensor .csv files found")
    return names, clips


def read_sensor_csv(path: PathLike) -> np.ndarray:
    """Read one headerless sensor CSV → [T, 6] float64 in g and rad/s."""
    import pandas as pd

    path = Path(path)
    if path.stat().st_size == 0:
        raise DataError(path, "empty file")
    with open(path, "rb") as fh:
        if b"\x00" in fh.read(4096):
            raise DataError(path, "binary file, not CSV text")
    try:
        df = pd.read_csv(path, header=None, dtype=np.float64, skip_blank_lines=False, engine="c")
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError):
        _diagnose(path)
        raise DataError(path, "cannot parse CSV") from None
    if df.shape[1] < 6:
        raise DataError(path, f"expected 6 columns (acc x y z, gyro x y z raw counts), found {df.shape[1]}", line=1)
    arr = df.to_numpy(dtype=np.float64)[:, :6]
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        line = int(np.flatnonzero(bad)[0]) + 1
        raise DataError(path, "missing or non-finite value (NaN row)", line=line)
    out = np.empty_like(arr)
    out[:, :3] = arr[:, :3] / ACC_LSB_PER_G
    out[:, 3:] = arr[:, 3:] / GYRO_LSB_PER_DEG_S * GYRO_UNITS["deg/s"]
    return out


def _diagnose(path: Path) -> None:
    with open(path, "r", encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            cells = line.strip().split(",")
            if not line.strip():
                raise DataError(path, "empty line (NaN row)", line=lineno)
            for j, c in enumerate(cells[:6]):
                try:
                    float(c)
                except ValueError:
                    raise DataError(path, f"cannot parse {c.strip()[:40]!r} as a number (column {j + 1})",
                                    line=lineno) from None


def session_of(stem: str) -> str:
    """Recording date ``YYYY-MM-DD`` from ``<k>_<class>_<YYYY_MM_DD_HH_MM_SS>``, else the stem."""
    m = _DATE.search(stem)
    return f"{m.group(1)}-{m.group(2)}-{m.group(3)}" if m else stem


def convert_uestc(root: PathLike, cache: PathLike, *, rate_hz: float = DEFAULT_RATE_HZ, progress: bool = True,
                  skip_bad: bool = False, classes: Optional[Sequence[str]] = None) -> Path:
    """Convert UESTC-MMEA-CL sensor files into the generic format under ``cache`` (once).

    ``classes``: read only the clips of these classes (:data:`PAPER_CLASSES` for ``uestc5``); None = all.

    With ``skip_bad`` a bad sensor file is left out and listed in ``<out>/skipped.json`` (merged
    into the loading report); without, its DataError propagates.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    root = Path(root)
    names, clips = list_clips(root, classes)
    h = hashlib.sha256()
    h.update(f"{CONVERTER_VERSION}|{root.resolve()}|{rate_hz}|{skip_bad}".encode())
    if classes is not None:
        h.update(("|classes=" + ",".join(sorted(classes))).encode())
    for _, p, _ in clips:
        st = p.stat()
        h.update(f"|{p.name}|{st.st_size}|{st.st_mtime_ns}".encode())
    out = Path(cache) / "datasets" / f"uestc-{h.hexdigest()[:12]}"
    if (out / "dataset.json").is_file():
        return out
    recordings = []
    rows = []
    skipped = []
    for cls, path, stem in tqdm(clips, desc="converting UESTC-MMEA-CL", unit="file",
                                disable=None if progress else True):
        try:
            data = read_sensor_csv(path)
        except DataError as exc:
            if not skip_bad:
                raise
            skipped.append({"path": os.fspath(path), "error": str(exc)})
            continue
        t = np.arange(len(data), dtype=np.float64) / rate_hz
        df = pd.DataFrame(data, columns=["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"])
        df.insert(0, "time", t)
        recordings.append((stem, df))
        if len(data):
            rows.append((stem, 0.0, len(data) / rate_hz, cls, session_of(stem)))
    labels = pd.DataFrame(rows, columns=["recording", "start", "end", "label", "subject"])
    try:
        write_generic_dataset(out, recordings, labels, Units("g", "rad/s", "s"), fmt="parquet", classes=names,
                              name="uestc-mmea-cl" if classes is None else f"uestc-mmea-cl-{len(names)}",
                              source=f"UESTC-MMEA-CL sensor files: {root}",
                              description=f"one recording per clip, uniform {rate_hz} Hz assumed, "
                                          "subject = recording date (session proxy)"
                                          + ("" if classes is None else "; classes " + ", ".join(names)))
    except (ConfigError, OSError):
        if (out / "dataset.json").is_file():
            return out
        raise
    if skipped:
        atomic_write_json(out / SKIPPED_FILE, skipped)
    return out
