"""Labelled datasets → :class:`WindowSet`.

``load_labelled(spec, cfg)`` accepts
  * a directory in the generic format (docs/data-formats.md),
  * ``hapt`` (UCI HAPT, converted once from the offline copy into the cache),
    ``hapt:<path>`` (a ``HAPT.pkl.gz`` or an official UCI HAPT folder with ``RawData/``),
  * ``uestc:<dir>`` (UESTC-MMEA-CL sensor files, all 32 classes),
    ``uestc5:<dir>`` (the same files, only the paper's 5 classes: :data:`uestc.PAPER_CLASSES`).
Every source is first converted into the generic format, then windowed the same way.

Channels (``cfg.channels``): with ``acc`` every recording's gyroscope columns are set to 0.0 before
windowing (an accelerometer-only recording, whose gyroscope is NaN, is then windowed like any other);
with ``acc+gyro`` an accelerometer-only recording is a DataError naming it
(:func:`crossmodal_har.signals.windows.select_channels`), whatever ``skip_bad`` says: it is not a bad
file but the wrong model for it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np

from crossmodal_har.config import to_dict
from crossmodal_har.errors import ConfigError, DataError
from crossmodal_har.io import atomic_write
from crossmodal_har.signals import hapt, uestc
from crossmodal_har.signals.generic import (assign_labels, list_recordings, read_labels, read_meta,
                                            read_skipped, sort_classes)
from crossmodal_har.signals.recording import read_recording, units_for
from crossmodal_har.signals.types import DatasetReport, PreprocessConfig, WindowSet
from crossmodal_har.signals.windows import recording_windows

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
CACHE_ENV = "CROSSMODAL_HAR_CACHE"
# Bump when windowing/resampling maths change so stale caches are not reused.
WINDOW_CACHE_VERSION = 2


def default_cache_dir() -> Path:
    """``$CROSSMODAL_HAR_CACHE`` or ``~/.cache/crossmodal-har``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "crossmodal-har"


def dataset_location(spec: PathLike) -> Optional[str]:
    """The file or directory a dataset spec reads (``uestc:<dir>`` -> ``<dir>``), or None for the
    built-in ``hapt``: what a command's output guard keeps ``--out`` away from."""
    text = os.fspath(spec)
    for prefix in ("uestc:", "uestc5:", "hapt:"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    return None if text == "hapt" else text


def resolve_dataset(spec: PathLike, *, cache_dir: Optional[PathLike] = None, progress: bool = True,
                    allow_download: bool = False, skip_bad: bool = False) -> Path:
    """Turn a dataset spec into a generic-format directory (converting into the cache if needed)."""
    text = os.fspath(spec)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if text == "hapt" or text.startswith("hapt:"):
        source = text[5:] or None
        return hapt.convert_hapt(cache, source=source, allow_download=allow_download, progress=progress)
    if text.startswith("uestc:"):
        return uestc.convert_uestc(Path(text[6:]), cache, progress=progress, skip_bad=skip_bad)
    if text.startswith("uestc5:"):
        return uestc.convert_uestc(Path(text[7:]), cache, progress=progress, skip_bad=skip_bad,
                                   classes=uestc.PAPER_CLASSES)
    path = Path(text)
    if not path.exists():
        raise ConfigError(f"dataset {text!r} not found: expected a directory in the generic format, "
                          "'hapt', 'hapt:<path>', 'uestc:<dir>' or 'uestc5:<dir>'")
    return path


def load_labelled(spec: PathLike, cfg: Optional[PreprocessConfig] = None, *, skip_bad: bool = False,
                  cache_dir: Optional[PathLike] = None, progress: bool = True,
                  allow_download: bool = False) -> WindowSet:
    """Load a labelled dataset as windows in physical units (g, rad/s).

    Args:
        spec: generic dataset directory, ``hapt``, ``hapt:<path>``, ``uestc:<dir>`` or ``uestc5:<dir>``.
        cfg: preprocessing (rate, window, stride, median filter, quality thresholds).
        skip_bad: skip a bad recording (or labels row) and list it in
            ``report.skipped_recordings`` instead of raising its DataError.
        cache_dir: where converted datasets and window caches live (default
            ``$CROSSMODAL_HAR_CACHE`` or ``~/.cache/crossmodal-har``). Windows are cached for
            ``hapt``/``uestc`` always, and for generic directories only when ``cache_dir`` is given.
        progress: show a progress bar (on a terminal).
        allow_download: for ``hapt`` with no local copy, download the UCI archive (checksummed).

    Returns:
        WindowSet of the windows that lie wholly inside one labelled segment and pass the quality
        checks. ``report`` counts recordings, exclusions by reason, unlabelled windows, short and
        skipped recordings.
    """
    cfg = cfg or PreprocessConfig()
    cfg.validate()
    text = os.fspath(spec)
    converted = text == "hapt" or text.startswith(("hapt:", "uestc:", "uestc5:"))
    root = resolve_dataset(spec, cache_dir=cache_dir, progress=progress, allow_download=allow_download,
                           skip_bad=skip_bad)
    use_cache = converted or cache_dir is not None
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    name = "hapt" if text == "hapt" or text.startswith("hapt:") else (
        "uestc" if text.startswith("uestc:") else "uestc5" if text.startswith("uestc5:") else root.name)
    key = _cache_key(root, cfg, skip_bad) if use_cache else None
    if key is not None:
        cached = _load_cache(cache_root / "windows" / f"{key}.npz", cfg, name)
        if cached is not None:
            log.info("loaded %d windows of %s from the window cache", len(cached), name)
            return cached
    ws = load_generic(root, cfg, skip_bad=skip_bad, progress=progress, name=name)
    if key is not None:
        _save_cache(cache_root / "windows" / f"{key}.npz", ws)
    return ws


def load_generic(root: PathLike, cfg: PreprocessConfig, *, skip_bad: bool = False, progress: bool = True,
                 name: str = "") -> WindowSet:
    """Window a dataset in the generic format (no caching). See :func:`load_labelled`."""
    from tqdm.auto import tqdm

    root = Path(root)
    meta = read_meta(root)
    recordings = list_recordings(root)
    report = DatasetReport()
    report.skipped_recordings.extend(read_skipped(root))
    labels = read_labels(root / "labels.csv", list(recordings), meta.units, classes=meta.classes,
                         skip_bad=skip_bad, report=report)
    present = set(labels.classes)
    if meta.classes is not None:
        class_names = [c for c in meta.classes if c in present]
        absent = [c for c in meta.classes if c not in present]
        if absent:
            log.warning("%s: classes with no labelled segment: %s", root, ", ".join(absent))
    else:
        class_names = sort_classes(labels.classes)
    class_index = {c: i for i, c in enumerate(class_names)}
    xs: List[np.ndarray] = []
    ys: List[np.ndarray] = []
    subj: List[np.ndarray] = []
    recs: List[np.ndarray] = []
    starts: List[np.ndarray] = []
    ends: List[np.ndarray] = []
    for rec_name, path in tqdm(recordings.items(), desc=f"windowing {name or root.name}", unit="rec",
                               disable=None if progress else True):
        subject = labels.subjects.get(rec_name, rec_name)
        try:
            rec = read_recording(path, units_for(path, meta.units), subject=subject, name=rec_name, tz=meta.tz,
                                 sensor=meta.sensor)
        except DataError as exc:
            if not skip_bad:
                raise
            log.warning("skipping %s", exc)
            report.skipped_recordings.append({"path": os.fspath(path), "error": str(exc)})
            continue
        report.recordings_read += 1
        x, s, e, reasons = recording_windows(rec, cfg)
        if len(x) == 0:
            report.short_recordings.append(rec_name)
            continue
        bad = reasons != ""
        for reason, count in zip(*np.unique(reasons[bad].astype(str), return_counts=True)):
            report.exclude(str(reason), int(count))
        ok = np.flatnonzero(~bad)
        y = assign_labels(s[ok], e[ok], labels.segments.get(rec_name, []), class_index)
        lab = y >= 0
        report.unlabelled_windows += int((~lab).sum())
        sel = ok[lab]
        if not len(sel):
            continue
        xs.append(x[sel])
        ys.append(y[lab])
        subj.append(np.full(len(sel), subject, dtype=object))
        recs.append(np.full(len(sel), rec_name, dtype=object))
        starts.append(s[sel])
        ends.append(e[sel])
    if not xs:
        raise DataError(root, "no usable labelled windows: " + summarize_report(report, cfg))
    y_all = np.concatenate(ys)
    present = np.bincount(y_all, minlength=len(class_names)) > 0
    if not present.all():
        # A class with no window cannot be learnt or scored; keep the remaining ones, renumbered.
        log.warning("%s: no usable windows for class(es) %s; they are left out", root,
                    ", ".join(c for c, p in zip(class_names, present) if not p))
        remap = np.cumsum(present) - 1
        y_all = remap[y_all]
        class_names = [c for c, p in zip(class_names, present) if p]
    ws = WindowSet(x=np.concatenate(xs), y=y_all.astype(np.int64), subject=np.concatenate(subj),
                   recording=np.concatenate(recs), start_s=np.concatenate(starts), end_s=np.concatenate(ends),
                   class_names=class_names, preprocess=cfg, report=report, name=name or root.name)
    report.windows_kept = len(ws)
    if report.short_recordings:
        log.info("%d recording(s) shorter than one window (%.1f s): %s", len(report.short_recordings),
                 cfg.window_s, ", ".join(report.short_recordings[:10]))
    return ws


def summarize_report(report: DatasetReport, cfg: PreprocessConfig) -> str:
    """One line: what was read and why windows were left out."""
    parts = [f"{report.recordings_read} recording(s) read"]
    if report.skipped_recordings:
        parts.append(f"{len(report.skipped_recordings)} skipped as bad")
    if report.short_recordings:
        parts.append(f"{len(report.short_recordings)} shorter than one window ({cfg.window_s:g} s)")
    if report.windows_excluded:
        parts.append("excluded windows " + ", ".join(f"{k}: {v}" for k, v in sorted(report.windows_excluded.items())))
    parts.append(f"{report.unlabelled_windows} window(s) not wholly inside one labelled segment")
    return "; ".join(parts)


# ------------------------------------------------------------------------------------ caching

def _cache_key(root: Path, cfg: PreprocessConfig, skip_bad: bool) -> str:
    files = []
    for p in sorted([root / "dataset.json", root / "labels.csv", *(root / "recordings").glob("*")]):
        if p.is_file():
            st = p.stat()
            files.append([p.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns])
    pre = to_dict(cfg)
    if pre.get("normalization") != "recording":
        pre.pop("normalization", None)  # applied at model input, not stored in windows
    payload = {"v": WINDOW_CACHE_VERSION, "root": os.fspath(root.resolve()), "files": files,
               "preprocess": pre, "skip_bad": bool(skip_bad)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def _report_to_dict(r: DatasetReport) -> Dict:
    return {"recordings_read": r.recordings_read, "windows_kept": r.windows_kept,
            "windows_excluded": dict(r.windows_excluded), "skipped_recordings": list(r.skipped_recordings),
            "short_recordings": list(r.short_recordings), "unlabelled_windows": r.unlabelled_windows}


def _save_cache(path: Path, ws: WindowSet) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, x=ws.x, y=ws.y, subject=ws.subject.astype(str), recording=ws.recording.astype(str),
                     start_s=ws.start_s, end_s=ws.end_s,
                     meta=np.array(json.dumps({"class_names": ws.class_names, "name": ws.name,
                                               "report": _report_to_dict(ws.report)})))
    try:
        atomic_write(path, write)
    except OSError as exc:  # a read-only cache must not break loading
        log.warning("could not write window cache %s: %s", path, exc)


def _load_cache(path: Path, cfg: PreprocessConfig, name: str) -> Optional[WindowSet]:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            rep = DatasetReport(**meta["report"])
            return WindowSet(x=z["x"], y=z["y"], subject=z["subject"].astype(object),
                             recording=z["recording"].astype(object), start_s=z["start_s"], end_s=z["end_s"],
                             class_names=list(meta["class_names"]), preprocess=cfg, report=rep,
                             name=meta.get("name") or name)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable window cache %s: %s", path, exc)
        return None
