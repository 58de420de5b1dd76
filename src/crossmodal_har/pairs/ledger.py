"""The ingest ledger: what lets a re-run of ``ingest`` resume a store exactly.

* ``STORE/ingest_state.json`` (:class:`IngestState`): the settings the store is made with and the
  fingerprints of local video-encoder weights; a re-run with other settings is refused.
* ``STORE/ledger/<session key>.json`` (:class:`SessionEntry`): one finished session's summary (what
  :func:`crossmodal_har.pairs.process.process_session` returns), its shards and the fingerprint of its
  inputs (:mod:`crossmodal_har.pairs.fingerprint`), written atomically after the session's shards.

Files written before the ledger had a version (no ``format_version``) are version 0, read unchanged;
ingest rewrites them as version 1 when it reads them (it holds the store's lock).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional

from crossmodal_har.errors import ConfigError, DataError, UserError
from crossmodal_har.io import read_json
from crossmodal_har.pairs.fingerprint import compare_files, file_entry
from crossmodal_har.pairs.session import session_key
from crossmodal_har.pairs.store_file import ShardEntry
from crossmodal_har.saved import VERSION_KEY, SavedFile, build_saved, migrate, parse_saved, write_saved

log = logging.getLogger(__name__)

LEDGER = "ingest_state.json"
LEDGER_DIR = "ledger"


def _unversioned(data: Dict[str, Any]) -> Dict[str, Any]:
    """Version 0 (written before the ledger had ``format_version``) has version 1's keys."""
    return data


@dataclass
class IngestState(SavedFile):
    """``ingest_state.json``: ``settings`` (``{"src", "config"}``, compared whole on a re-run) and
    ``weights``, the fingerprints of the local video-encoder weight files (absent for stores made
    before weights were fingerprinted, or without local weights)."""

    VERSION = 1
    WHAT = LEDGER
    UNVERSIONED = 0
    MIGRATIONS = {0: _unversioned}
    OMIT_IF_NONE = ("weights",)

    settings: Dict[str, Any]
    weights: Optional[List[Dict[str, Any]]] = None


@dataclass
class SessionEntry(SavedFile):
    """``ledger/<session key>.json``: one session's ingest summary.

    Attributes:
        session, subject: the session's name and its person.
        status: ``ok`` or ``error`` (``error``, ``error_reason`` say why).
        shards: the shards written for it (``<session key>-<chunk:04d>``).
        windows_kept, dropped: windows kept, and dropped per reason.
        labels: distinct labels kept.
        gravity, video, meta: checks of the IMU's units, the video's properties and the source's
            details (caller-defined, for the report).
        imu_coverage, too_short, seconds: IMU/video overlap, whether too short, time taken.
        inputs: the fingerprint of its inputs and the settings key it was ingested with.
    """

    VERSION = 1
    WHAT = "ledger entry"
    UNVERSIONED = 0
    MIGRATIONS = {0: _unversioned}
    OMIT_IF_NONE = ("imu_coverage", "too_short", "seconds", "inputs")
    MIGRATION_LOG_LEVEL = logging.INFO  # ingest rewrites an old entry at once: a warning per session is noise

    session: str
    status: Literal["ok", "error"]
    shards: List[ShardEntry]
    subject: Any = None
    error: Optional[str] = None
    error_reason: Optional[str] = None
    windows_kept: int = 0
    dropped: Dict[str, int] = field(default_factory=dict)
    labels: List[str] = field(default_factory=list)
    gravity: Any = None
    video: Optional[Dict[str, Any]] = None
    meta: Any = None
    imu_coverage: Optional[float] = None
    too_short: Optional[bool] = None
    seconds: Optional[float] = None
    inputs: Optional[Dict[str, Any]] = None

    def validate(self) -> None:
        key = session_key(self.session)
        for i, sh in enumerate(self.shards):
            if sh.session != self.session or sh.chunk is None or sh.name != f"{key}-{sh.chunk:04d}":
                raise ConfigError(f"shards[{i}]: not a shard of session {self.session!r}")


def ledger_file(out: Path, name: str) -> Path:
    """Where session ``name``'s ledger entry lives in store ``out``."""
    return out / LEDGER_DIR / f"{session_key(name)}.json"


def read_ledger(out: Path) -> Dict[str, SessionEntry]:
    """Finished sessions' entries, by session name. A damaged entry (unreadable, not a summary, or
    under another session's file name) is deleted and logged: its session is redone, and shards no
    entry lists are removed at the end. An entry of an older version is rewritten as this one."""
    d = out / LEDGER_DIR
    found: Dict[str, SessionEntry] = {}
    if not d.is_dir():
        return found
    for p in sorted(d.glob("*.json")):
        if p.name.startswith("."):
            continue
        try:
            data = read_json(p)
            entry = parse_saved(SessionEntry, data, p)
        except DataError:
            entry = None
        if entry is None or p.name != ledger_file(out, entry.session).name:
            log.warning("%s: damaged ledger entry removed; its session will be ingested again", p)
            p.unlink(missing_ok=True)
            continue
        if data.get(VERSION_KEY) != SessionEntry.VERSION:
            write_saved(entry, p)
        found[entry.session] = entry
    return found


def write_entry(out: Path, entry: SessionEntry) -> Path:
    """Write a session's ledger entry (after its shards: its presence means the session is done)."""
    return write_saved(entry, ledger_file(out, entry.session))


def forget_entry(out: Path, name: str) -> None:
    """Remove session ``name``'s ledger entry (before its shards: a kill in between redoes it)."""
    ledger_file(out, name).unlink(missing_ok=True)


def read_state(out: Path) -> Optional[IngestState]:
    """``out``'s ``ingest_state.json`` (None when there is none); an older version is rewritten as
    this one. A file ingest did not write is a UserError."""
    path = out / LEDGER
    if not path.exists():
        return None
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("settings"), dict):
        raise UserError(f"{path}: damaged ingest state (not written by ingest); use a new --out or delete {out}")
    state = build_saved(IngestState, migrate(IngestState, data, path), path)
    if data.get(VERSION_KEY) != IngestState.VERSION:
        write_saved(state, path)
    return state


def new_state(out: Path, settings: Dict[str, Any], weights: List[Path]) -> IngestState:
    """Write the ``ingest_state.json`` of a new store (the local weights fingerprinted)."""
    state = IngestState(settings=settings, weights=[file_entry(p) for p in weights] if weights else None)
    write_saved(state, out / LEDGER)
    return state


def check_weights(ledger_path: Path, state: IngestState, weights: List[Path], name: Optional[str]) -> None:
    """Refuse to resume when the local encoder weights (``name``: the ``--video-encoder-weights``
    given) changed: every stored embedding would."""
    if state.weights is None:
        if weights:  # a store from before weights were fingerprinted: record them now
            write_saved(dataclasses.replace(state, weights=[file_entry(p) for p in weights]), ledger_path)
        return
    try:
        why, refreshed = compare_files(state.weights, weights)
    except (KeyError, TypeError, ValueError, AttributeError):
        why, refreshed = "", None
    if why is not None:
        what = f"file {why}" if why else "its list of files"
        raise UserError(f"{ledger_path.parent}: the video encoder weights {name} changed "
                        f"({what}) since this store was ingested; use a new --out or delete it")
    if refreshed is not None:
        write_saved(dataclasses.replace(state, weights=refreshed), ledger_path)
