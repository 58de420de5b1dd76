"""Zero-shot evaluation of a cross-modal pretraining run (the paper's Table 4 measures).

* Retrieval among all evaluated windows, IMU→video and video→IMU: R@1, R@3, R@10 and MRR, with
  the chance levels beside them (R@k chance = k/N, MRR chance = H_N/N).
* Zero-shot classification: each IMU window gets the class whose mean video embedding, computed
  from *other subjects'* windows, is nearest (cosine). No IMU label is used; video labels only form
  the class prototypes. Balanced accuracy and macro-F1 over the labelled windows.
* Per-class retrieval (the paper's zero-shot R@k): each labelled IMU window ranks the C class
  prototypes; R@k = share of windows whose true class is among the k nearest, MRR = mean 1/rank,
  chance R@k = min(k, C)/C, MRR chance = H_C/C (C = classes with a prototype). The per-window
  retrieval above ranks N windows (chance k/N); the two are different measures on different scales.

The retrieval measures themselves (ranks, R@k, MRR, ties counted against the true match) are
:mod:`crossmodal_har.train.retrieval`'s, shared with pretraining validation.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from crossmodal_har.errors import UserError
from crossmodal_har.evaluate.metrics import classification_metrics
from crossmodal_har.evaluate.results import CLASS_RETRIEVAL_KEYS, RETRIEVAL_KEYS, ZeroshotResult, write_results
from crossmodal_har.pairs.store import PairedWindowDataset, WindowStore
from crossmodal_har.train.retrieval import l2_normalize, retrieval_metrics
from crossmodal_har.train.rundir import load_run
from crossmodal_har.train.validation import embed_dataset

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


def prototype_scores(imu_emb: np.ndarray, subjects: np.ndarray, proto_video: np.ndarray, proto_labels: np.ndarray,
                     proto_subjects: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Cosine similarity of each IMU window to each class prototype (mean video embedding of the class
    over windows of *other* subjects).

    Returns ``(classes [C], scores [N, C])``; a score is ``-inf`` where the class has no window of
    another subject.
    """
    q = l2_normalize(imu_emb)
    pv = l2_normalize(proto_video)
    proto_labels = np.asarray(proto_labels)
    proto_subjects = np.asarray(proto_subjects).astype(str)
    subjects = np.asarray(subjects).astype(str)
    classes = np.unique(proto_labels[proto_labels >= 0])
    scores = np.full((len(q), len(classes)), -np.inf)
    for s in np.unique(subjects):
        rows = np.flatnonzero(subjects == s)
        for j, c in enumerate(classes):
            sel = (proto_labels == c) & (proto_subjects != s)
            if sel.any():
                scores[rows, j] = q[rows] @ l2_normalize(pv[sel].mean(axis=0)[None])[0]
    return classes, scores


def zeroshot_classify(imu_emb: np.ndarray, video_emb: np.ndarray, labels: np.ndarray, subjects: np.ndarray,
                      proto_video: Optional[np.ndarray] = None, proto_labels: Optional[np.ndarray] = None,
                      proto_subjects: Optional[np.ndarray] = None) -> np.ndarray:
    """Predicted class per IMU window: nearest class prototype = mean video embedding of that class
    over windows of other subjects (from ``proto_*`` when given, else from the same windows).

    Returns [N] int64, -1 where no prototype from another subject exists.
    """
    if proto_video is None:
        proto_video, proto_labels, proto_subjects = video_emb, labels, subjects
    classes, scores = prototype_scores(imu_emb, subjects, proto_video, proto_labels, proto_subjects)
    pred = np.full(len(scores), -1, dtype=np.int64)
    has = np.isfinite(scores).any(axis=1) if scores.shape[1] else np.zeros(len(scores), bool)
    if has.any():
        pred[has] = classes[np.argmax(scores[has], axis=1)]
    return pred


def class_retrieval(classes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                    ks: Sequence[int] = (1, 3)) -> Dict[str, Any]:
    """Per-class retrieval from :func:`prototype_scores`: R@k and MRR of each labelled window's true
    class among the C prototypes, with chance levels (R@k: min(k, C)/C; MRR: H_C/C).

    Ties count against the true class (rank = number of prototypes scoring at least as high). A window
    whose class has no prototype from another subject counts as a miss (reciprocal rank 0).
    """
    labels = np.asarray(labels)
    rows = np.flatnonzero(labels >= 0)
    C = len(classes)
    col = {int(c): j for j, c in enumerate(classes)}
    rank = np.full(len(rows), np.inf)
    for i, r in enumerate(rows):
        j = col.get(int(labels[r]))
        if j is not None and np.isfinite(scores[r, j]):
            rank[i] = float((scores[r] >= scores[r, j]).sum())
    out: Dict[str, Any] = {}
    for k in ks:
        out[f"R@{k}"] = float(np.mean(rank <= k)) if len(rows) else float("nan")
        out[f"chance_R@{k}"] = min(k, C) / C if C else float("nan")
    out["MRR"] = float(np.mean(1.0 / rank)) if len(rows) else float("nan")
    out["chance_MRR"] = float(np.sum(1.0 / np.arange(1, C + 1)) / C) if C else float("nan")
    out["classes"] = int(C)
    out["windows"] = int(len(rows))
    missing = int(np.isinf(rank).sum())
    if missing:
        out["note"] = f"{missing} window(s) had no prototype of their class from another subject; counted as misses"
    return out


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
        p = protos or {"video": emb["video"], "label": labels, "subject": emb["subject"]}
        classes, scores = prototype_scores(emb["imu"], emb["subject"], p["video"], p["label"], p["subject"])
        pred = np.full(len(labels), -1, dtype=np.int64)
        has = np.isfinite(scores).any(axis=1) if scores.shape[1] else np.zeros(len(labels), bool)
        if has.any():
            pred[has] = classes[np.argmax(scores[has], axis=1)]
        res["class_retrieval"] = class_retrieval(classes, scores, labels)
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
        retrieval=res["retrieval"], classification=res.get("classification"),
        class_retrieval=res.get("class_retrieval"), run=os.fspath(run_dir),
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
    if res.class_retrieval is not None:
        m = res.class_retrieval
        cells = "  ".join(f"{k}={m[k]:.3f} (chance {m['chance_' + k]:.3f})" for k in CLASS_RETRIEVAL_KEYS)
        lines.append(f"  per-class retrieval over {m['classes']} class prototypes: {cells}")
    return "\n".join(lines)
