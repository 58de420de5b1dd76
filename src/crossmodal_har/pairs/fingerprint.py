"""What a session's ledger entry remembers of its inputs, so that a re-run of ``ingest`` can tell
whether the session changed since it was ingested (:func:`fingerprint`, :func:`compare`).

A fingerprint has two parts:

* ``labels`` and ``spec``: digests of what the source made of the session — its ``(start, end,
  label)`` segments and subject (its rows of a shared ``labels.csv``, as read), and its name and
  metadata (e.g. ``session.json`` as parsed, the Ego4D declared duration). Editing one
  session's rows of ``labels.csv`` changes that session's fingerprint only.
* ``files``: every input file the source reads for the session (:attr:`SessionSpec.inputs`: the
  IMU file, the video, ``session.json`` — a missing one is recorded as missing, so its appearing
  counts too), each with its size, ``mtime_ns``, ``ctime_ns``, inode and a BLAKE2b digest of its
  **whole** content.

Hashing every byte costs about as much as reading the file once (roughly 1 GB/s), much less than
decoding its video, and it is done once per ingested session. A re-run does not re-hash a file
whose ``stat`` (size, mtime, ctime, inode) is unchanged: any write to a file moves its ``ctime``,
which, unlike ``mtime``, cannot be set back by ``touch``/``utime`` or copy tools, so an unchanged
``stat`` means unchanged content. This holds only when the recorded ``ctime`` is clearly older
than the moment of hashing (a write within the same timestamp tick, just after the hash, would
keep it): files changed less than :data:`RACY_NS` before they were hashed are re-hashed on every
re-run ("racy" entries, as in git's index). A file whose ``stat`` moved but whose content is the
same (``touch``) is not a change; its entry is refreshed. Hashing only the head and tail of a file
would miss a same-size edit in the middle with its mtime put back, so the whole file is hashed.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat as stat_mod
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from crossmodal_har.pairs.session import SessionSpec

VERSION = 1
RACY_NS = 2_000_000_000  # > any file-system timestamp granularity (ext4/xfs: ~4 ms; FAT: 2 s)
_CHUNK = 1 << 20
_STAT_KEYS = ("size", "mtime_ns", "ctime_ns", "ino")


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def spec_inputs(spec: SessionSpec) -> List[Path]:
    """The files a session is read from (a source that lists none: its video)."""
    return list(spec.inputs) if spec.inputs else [Path(spec.video_path)]


def labels_digest(spec: SessionSpec) -> str:
    return _digest({"subject": spec.subject, "labels": [[float(a), float(b), str(c)] for a, b, c in spec.labels]})


def spec_digest(spec: SessionSpec) -> str:
    # ``dir`` is the session directory: implied by the name and --src (which the settings check).
    meta = {k: v for k, v in (spec.meta or {}).items() if k != "dir"} if isinstance(spec.meta, dict) else spec.meta
    return _digest({"name": spec.name, "meta": meta})  # the video path is one of the inputs


def file_digest(path: Path) -> str:
    """BLAKE2b (128 bit) of the whole file."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while True:
            block = fh.read(_CHUNK)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _stat(path: Path) -> Optional[os.stat_result]:
    """The file's stat, or None when it cannot be had (missing, no permission, a symlink loop...):
    such a session fails when it is read, with the reader's message."""
    try:
        return os.stat(path)
    except (OSError, ValueError):
        return None


def _stat_dict(st: os.stat_result) -> Dict[str, int]:
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns), "ctime_ns": int(st.st_ctime_ns),
            "ino": int(st.st_ino)}


def file_entry(path: Path) -> Dict[str, Any]:
    """``{"path", "size", "mtime_ns", "ctime_ns", "ino", "blake2b", "hashed_at_ns"}``, or
    ``{"path", "missing": true}`` / ``{"path", "other": "<kind>"}`` for no file / not a regular file."""
    p = os.path.abspath(path)
    t0 = time.time_ns()
    st = _stat(Path(p))
    if st is None:
        return {"path": p, "missing": True}
    if not stat_mod.S_ISREG(st.st_mode):
        return {"path": p, "other": "directory" if stat_mod.S_ISDIR(st.st_mode) else "special file"}
    try:
        digest = file_digest(Path(p))
    except OSError as exc:
        return {"path": p, "unreadable": exc.strerror or str(exc)}
    after = _stat(Path(p))
    entry: Dict[str, Any] = {"path": p, **_stat_dict(st), "blake2b": digest, "hashed_at_ns": t0}
    if after is None or _stat_dict(after) != _stat_dict(st):
        entry["hashed_at_ns"] = 0  # changed while hashed: never trust its stat
    return entry


def fingerprint(spec: SessionSpec) -> Dict[str, Any]:
    """The fingerprint of ``spec``'s inputs now (hashes every input file)."""
    return {"version": VERSION, "labels": labels_digest(spec), "spec": spec_digest(spec),
            "files": [file_entry(p) for p in spec_inputs(spec)]}


def _trusted(entry: Dict[str, Any]) -> bool:
    """Whether the recorded stat of ``entry`` vouches for its content (not a racy entry)."""
    at = int(entry.get("hashed_at_ns") or 0)
    return at > 0 and int(entry["ctime_ns"]) < at - RACY_NS and int(entry["mtime_ns"]) < at - RACY_NS


def _same_file(old: Dict[str, Any]) -> Tuple[bool, Optional[Dict[str, Any]]]:
    """(unchanged?, a refreshed entry when the stat moved but the content did not)."""
    path = Path(old["path"])
    if "blake2b" not in old:
        now = file_entry(path)
        return {k: v for k, v in now.items() if k != "hashed_at_ns"} == old, None
    st = _stat(path)
    if st is None or not stat_mod.S_ISREG(st.st_mode):
        return False, None
    if int(st.st_size) != int(old["size"]):
        return False, None
    if _stat_dict(st) == {k: int(old[k]) for k in _STAT_KEYS} and _trusted(old):
        return True, None
    now = file_entry(path)
    if now.get("blake2b") != old["blake2b"]:
        return False, None
    return True, (now if now != old else None)


def compare(spec: SessionSpec, stored: Any) -> Tuple[Optional[str], Optional[Dict[str, Any]]]:
    """Whether ``spec``'s inputs are still those of the fingerprint ``stored``.

    Returns ``(reason, refreshed)``: ``reason`` is None when nothing changed, else what changed (for
    the log); ``refreshed`` is a fingerprint to record instead of ``stored`` (stats moved, content
    did not), or None.
    """
    try:
        if not isinstance(stored, dict) or stored.get("version") != VERSION:
            return "no input fingerprint recorded (store made by an older version)", None
        if stored.get("labels") != labels_digest(spec):
            return "its labels.csv rows or subject", None
        if stored.get("spec") != spec_digest(spec):
            return "its session settings (session.json or source metadata)", None
        why, files = compare_files(stored.get("files"), spec_inputs(spec))
        if why is not None:
            return ("its set of input files" if why == "" else why), None
        return None, (dict(stored, files=files) if files is not None else None)
    except (KeyError, TypeError, ValueError, AttributeError):
        return "its recorded fingerprint is damaged", None


def compare_files(entries: Any, paths: List[Path]) -> Tuple[Optional[str], Optional[List[Dict[str, Any]]]]:
    """Whether the files ``paths`` still are those the entries (of :func:`file_entry`) recorded.

    Returns ``(reason, refreshed)``: ``reason`` None = unchanged, ``""`` = not the same list of
    files, else the name of the first file that changed; ``refreshed``: entries to record instead
    (some stat moved, no content did), or None.
    """
    want = [os.path.abspath(p) for p in paths]
    if not isinstance(entries, list) or [e.get("path") if isinstance(e, dict) else None for e in entries] != want:
        return "", None
    refreshed = False
    out = []
    for old in entries:
        same, now = _same_file(old)
        if not same:
            return os.path.basename(old["path"]), None
        out.append(now or old)
        refreshed |= now is not None
    return None, (out if refreshed else None)


def tree_files(root: Path) -> List[Path]:
    """Every regular file under ``root`` (or ``root`` itself when it is a file), sorted."""
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file())
