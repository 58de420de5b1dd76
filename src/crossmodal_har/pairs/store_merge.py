"""Joining window stores made in pieces (``ingest --num-shards K --shard-index i`` on K machines, then
``ingest --merge``) into one store equal to a single run over all sessions."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from crossmodal_har.errors import UserError
from crossmodal_har.io import PathLike, atomic_write_json, read_json
from crossmodal_har.pairs.report import merge_reports
from crossmodal_har.pairs.store import SHARD_FILES, SHARDS_DIR, WindowStore, shard_path
from crossmodal_har.pairs.store_file import REPORT_JSON, STORE_JSON, write_store_json

log = logging.getLogger(__name__)

COMPATIBLE_KEYS = ("preprocess", "video_mode", "video_encoder", "video_encoder_weights", "embedding_layout", "frames",
                   "frames_per_slot", "size", "frame_policy", "embed_dim", "layout")


def merge_into(sources: Sequence[PathLike], out: PathLike, *, src: Optional[PathLike] = None) -> Path:
    """``ingest --merge``: :func:`merge_stores` of ``sources`` into ``out``, logged; ``src`` (``--src``) must
    not be given with it."""
    if src:
        raise UserError("--merge takes stores, not --src")
    path = merge_stores(sources, out)
    log.info("merged %d store(s) into %s", len(sources), path.parent)
    return path


def merge_stores(sources: Sequence[PathLike], out: PathLike, *, link: bool = True) -> Path:
    """Join several stores made with the same settings (e.g. ``--num-shards K --shard-index i`` on
    K machines) into ``out``. Shards are hard-linked when possible (same file system), else copied.

    The result equals a single run over all sessions: shards ordered by (session, chunk), class
    names recomputed, reports summed. Raises UserError on incompatible settings or a session present
    in two inputs.
    """
    out = Path(out)
    if len(sources) < 1:
        raise UserError("merge needs at least one store")
    stores = [WindowStore(s) for s in sources]
    ref = stores[0].meta
    for st in stores[1:]:
        for key in COMPATIBLE_KEYS:
            if key == "embed_dim" and (st.meta.get(key) is None or ref.get(key) is None):
                continue  # an empty store does not know D
            if st.meta.get(key) != ref.get(key):
                raise UserError(f"cannot merge {st.path} into {stores[0].path}: {key} differs "
                                f"({st.meta.get(key)!r} vs {ref.get(key)!r})")
    if (out / STORE_JSON).exists():
        raise UserError(f"{out} already holds a store; choose a new --out")
    seen: Dict[str, Path] = {}
    shards: List[Dict[str, Any]] = []
    for st in stores:
        sessions = {s["session"] for s in st.shards}
        for name in sorted(sessions):
            if name in seen:
                raise UserError(f"session {name!r} is in both {seen[name]} and {st.path}")
            seen[name] = st.path
        shards.extend(dict(s, _src=st.path) for s in st.shards)
    shards.sort(key=lambda s: (s["session"], int(s.get("chunk", 0))))
    (out / SHARDS_DIR).mkdir(parents=True, exist_ok=True)
    for s in shards:
        src_dir = shard_path(s["_src"], s["name"])
        dst = shard_path(out, s["name"])
        tmp = dst.parent / f".tmp-{s['name']}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for name in SHARD_FILES:
            if link:
                try:
                    os.link(src_dir / name, tmp / name)
                    continue
                except OSError:
                    pass
            shutil.copy2(src_dir / name, tmp / name)
        if dst.exists():
            shutil.rmtree(dst)
        os.replace(tmp, dst)
    classes = sorted(set().union(*[set(st.class_names) for st in stores]))
    meta = {k: v for k, v in ref.items() if k not in ("shards", "num_windows", "format_version")}
    meta["class_names"] = classes
    meta["split"] = None
    meta["merged_from"] = [os.fspath(st.path) for st in stores]
    reports = []
    for st in stores:
        rp = st.path / REPORT_JSON
        if rp.is_file():
            reports.append(read_json(rp))
    atomic_write_json(out / REPORT_JSON, merge_reports(reports))
    return write_store_json(out, meta, [{k: v for k, v in s.items() if k != "_src"} for s in shards])
