"""Zero-shot evaluation of a cross-modal pretraining run (the paper's Table 4 measures).

* Retrieval among all evaluated windows, IMU→video and video→IMU: R@1, R@3, R@10 and MRR, with
  the chance levels beside them (R@k chance = k/N, MRR chance = H_N/N).
* Zero-shot classification: each IMU window gets the class whose mean video embedding, computed
  from *other subjects'* windows, is nearest (cosine). No IMU label is used; video labels only form
  the class prototypes. Balanced accuracy and macro-F1 over the labelled windows.

The retrieval measures themselves (ranks, R@k, MRR, ties counted against the true match) are
:mod:`crossmodal_har.train.retrieval`'s, shared with pretraining validation.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np

from crossmodal_har.errors import UserError
from crossmodal_har.evaluate.metrics import classification_metrics
from crossmodal_har.evaluate.results import RETRIEVAL_KEYS, ZeroshotResult, write_results
from crossmodal_har.pairs.store import PairedWindowDataset, WindowStore
from crossmodal_har.train.retrieval import l2_normalize, retrieval_metrics
from crossmodal_har.train.rundir import load_run
from crossmodal_har.train.validation import embed_dataset

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


def zeroshot_classify(imu_emb: np.ndarray, video_emb: np.ndarray, labels: np.ndarray, subjects: np.ndarray,
                      proto_video: Optional[np.ndarray] = None, proto_labels: Optional[np.ndarray] = None,
                      proto_subjects: Optional[np.ndarray] = None) -> np.ndarray:
    """Predicted class per IMU window: nearest class prototype = mean video embedding of that class
    over windows of other subjects (from ``proto_*`` when given, else from the same windows).

    Returns [N] int64, -1 where no prototype from another subject exists.
    """
    if proto_video is None:
        proto_video, proto_labels, proto_subjects = video_emb, labels, subjects
    q = l2_normalize(imu_emb)
    pv = l2_normalize(proto_video)
    proto_labels = np.asarray(proto_labels)
    proto_subjects = np.asarray(proto_subjects).astype(str)
    subjects = np.asarray(subjects).astype(str)
    classes = np.unique(proto_labels[proto_labels >= 0])
    pred = np.full(len(q), -1, dtype=np.int64)
    for s in np.unique(subjects):
        rows = np.flatnonzero(subjects == s)
        protos, names = [], []
        for c in classes:
            sel = (proto_labels == c) & (proto_subjects != s)
            if sel.any():
                protos.append(pv[sel].mean(axis=0))
                names.append(c)
        if not protos:
            continue
        P = l2_normalize(np.stack(protos))
        pred[rows] = np.asarray(names)[np.argmax(q[rows] @ P.T, axis=1)]
    return pred


def zeroshot_metrics(emb: Dict[str, np.ndarray], protos: Optional[Dict[str, np.ndarray]] = None) -> Dict[str, Any]:
    """All zero-shot measures from ``embed_dataset``'s output (``imu``, ``video``, ``label``, ``subject``).

    ``protos`` (``video``, ``label``, ``subject``): the windows whose video embeddings form the class
    prototypes (default: the evaluated windows themselves; a query never uses its own subject's).
    """
    res: Dict[str, Any] = {"retrieval": {
        "imu_to_video": retrieval_metrics(emb["imu"], emb["video"]),
        "video_to_imu": retrieval_metrics(emb["video"], emb["imu"]),
    }}
    labels = np.asarray(emb["label"])
    if (labels >= 0).any():
        p = protos or {}
        pred = zeroshot_classify(emb["imu"], emb["video"], labels, emb["subject"], p.get("video"), p.get("label"),
                                 p.get("subject"))
        c = classification_metrics(labels, pred)  # the few-shot tables' metrics (macro-F1 included)
        present = sum(r is not None for r in c["per_class_recall"])  # classes among the labelled windows
        res["classification"] = {**c, "chance_balanced_accuracy": 1.0 / present, "classes": present}
        if (pred[labels >= 0] < 0).any():
            res["classification"]["note"] = ("some windows had no prototype from another subject "
                                             "(single-subject classes); counted as wrong")
    return res


# --------------------------------------------------------------------------- run-level

def run_zeroshot(run_dir: PathLike, store_path: PathLike, out_dir: PathLike, split: str = "test",
                 batch_size: int = 64, device: str = "cpu", max_prototype_windows: int = 5000,
                 name: Optional[str] = None) -> ZeroshotResult:
    """Zero-shot evaluation of ``run_dir`` on the windows of ``store_path`` (``split``: the run's test
    subjects, or ``all`` windows). Writes ``out_dir/results.json`` and returns it; its ``method`` is
    ``name`` (the row label in reports, e.g. a control run) or the run's method, ``pretrain_method``
    always the run's.

    Class prototypes for the zero-shot classification are mean *video* embeddings of labelled windows
    of every other subject in the store (train subjects included: only their videos and video labels
    are used, never an IMU label), at most ``max_prototype_windows`` of them (evenly spaced).
    """
    model, meta = load_run(run_dir, device)
    if meta["method"] == "imu-mae":
        raise UserError(f"{run_dir}: imu-mae has no video tower; zero-shot needs a cross-modal run "
                        "(siglip, clip, imu2clip)")
    store = WindowStore(store_path)
    info = meta["data"]
    kind = "frames" if store.video_mode == "frames" else "embeddings"
    if kind != info["video_kind"]:
        raise UserError(f"{store_path}: a {kind} store, but the run was trained on {info['video_kind']}; "
                        "ingest the store with the same --video-mode")
    if tuple(store.imu.shape[1:]) != (info["window"], 6):
        raise UserError(f"{store_path}: windows of {store.imu.shape[1]} samples, the run used {info['window']}")
    run_channels = info["preprocess"].get("channels", "acc+gyro")
    if store.preprocess.channels == "acc" and run_channels != "acc":
        raise UserError(f"{store_path}: an accelerometer-only store (gyroscope zeroed at ingest), but the run "
                        f"reads {run_channels}; pretrain with --channels acc or ingest without channels=acc")
    if kind == "embeddings":
        if int(store.video.shape[-1]) != int(info["video_dim"]):
            raise UserError(f"{store_path}: video embeddings of size {store.video.shape[-1]}, the run used "
                            f"{info['video_dim']}")
        store_k = int(store.video.shape[1]) if store.video.ndim == 3 else None
        if store_k != info.get("num_frames"):
            def layout(k):
                return "pooled embeddings [D]" if k is None else f"per-frame embeddings [{k}, D]"
            raise UserError(f"{store_path}: {layout(store_k)}, the run was trained on {layout(info.get('num_frames'))}"
                            "; ingest with the same --embedding-layout")
        run_enc = (meta.get("data_meta") or {}).get("video_encoder")
        if run_enc and store.meta.get("video_encoder") and run_enc != store.meta.get("video_encoder"):
            log.warning("store embeddings come from %s but the run was trained on %s embeddings",
                        store.meta.get("video_encoder"), run_enc)
    if store.preprocess.normalization != info["preprocess"]["normalization"]:
        log.warning("store normalization %s differs from the run's %s (the run's is applied)",
                    store.preprocess.normalization, info["preprocess"]["normalization"])
    if split == "all":
        subjects = store.subjects()
    elif split == "test":
        subjects = list(meta["split"].get("test") or [])
        if not subjects:
            raise UserError(f"{run_dir}: the run has no test subjects; use --split all")
        missing = sorted(set(subjects) - set(store.subjects()))
        if missing:
            raise UserError(f"{store_path}: the run's test subjects {missing} are not in this store; "
                            "use --split all for another store")
    else:
        raise UserError(f"--split must be test or all, got {split!r}")
    idx = store.indices_for(subjects=subjects)
    if len(idx) < 2:
        raise UserError(f"{store_path}: only {len(idx)} window(s) for subjects {subjects}")
    ds = PairedWindowDataset(store, idx, frame_sampling="centre")
    emb = embed_dataset(model, ds, batch_size, device)
    protos = None
    labelled = np.flatnonzero(store.labels >= 0)
    if len(labelled) and (store.labels[idx] >= 0).any():
        others = np.setdiff1d(labelled, idx)
        if len(others):
            if len(others) > max_prototype_windows:
                others = others[np.linspace(0, len(others) - 1, max_prototype_windows).round().astype(int)]
            pe = embed_dataset(model, PairedWindowDataset(store, others, frame_sampling="centre"), batch_size,
                               device, video_only=True)
            protos = {k: np.concatenate([emb[k], pe[k]]) for k in ("video", "label", "subject")}
    res = zeroshot_metrics(emb, protos)
    if "classification" in res:
        res["classification"]["prototype_windows"] = int(len(protos["label"]) if protos else len(idx))
    result = ZeroshotResult(
        retrieval=res["retrieval"], classification=res.get("classification"), run=os.fspath(run_dir),
        method=name or meta["method"], pretrain_method=meta["method"],
        pretrain_seed=(meta.get("config") or {}).get("seed"), store=os.fspath(store_path), split=split,
        subjects=subjects, windows=int(len(idx)), class_names=store.class_names)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_results(result, out / "results.json")
    return result


def format_results(res: ZeroshotResult) -> str:
    """A small plain-text table of the zero-shot results (value | chance)."""
    lines = [f"zero-shot: {res.method} on {res.windows} windows ({res.split})"]
    for direction, m in res.retrieval.items():
        cells = "  ".join(f"{k}={m[k]:.3f} (chance {m['chance_' + k]:.3f})" for k in RETRIEVAL_KEYS)
        lines.append(f"  {direction:13s} {cells}")
    if res.classification is not None:
        c = res.classification
        lines.append(f"  classification balanced_accuracy={c['balanced_accuracy']:.3f} "
                     f"(chance {c['chance_balanced_accuracy']:.3f})  macro_f1={c['macro_f1']:.3f}")
    return "\n".join(lines)
