"""Zero-shot evaluation of a cross-modal pretraining run (the paper's Table 4 measures).

* Retrieval among all evaluated windows, IMU→video and video→IMU: R@1, R@3, R@10 and MRR, with
  the chance levels beside them (R@k chance = k/N, MRR chance = H_N/N).
* Zero-shot classification: each IMU window gets the class whose mean video embedding, computed
  from *other subjects'* windows, is nearest (cosine). No IMU label is used; video labels only form
  the class prototypes. Balanced accuracy and macro-F1 over the labelled windows.

Ties in similarity count against the true match (a collapsed model that maps everything to one
point scores chance-or-worse, never perfect).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np

from crossmodal_har.errors import DataError, UserError

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def true_match_ranks(query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """1-based rank of ``gallery[i]`` among all gallery items for ``query[i]`` (cosine similarity).

    Ties with the true match are counted as ranked above it (pessimistic).
    """
    q, g = _normalise(query), _normalise(gallery)
    if len(q) != len(g):
        raise ValueError("query and gallery must be paired (same length)")
    sim = q @ g.T
    true = np.diag(sim)[:, None]
    ge = (sim >= true).sum(axis=1)  # includes the true match itself
    return ge.astype(np.int64)


def retrieval_metrics(query: np.ndarray, gallery: np.ndarray, ks: Sequence[int] = (1, 3, 10)) -> Dict[str, float]:
    """R@k, MRR and their chance levels for paired ``query[i]`` ↔ ``gallery[i]``."""
    n = len(query)
    if n == 0:
        raise UserError("retrieval needs at least one pair")
    ranks = true_match_ranks(query, gallery)
    out: Dict[str, float] = {}
    for k in ks:
        out[f"R@{k}"] = float(np.mean(ranks <= k))
    out["MRR"] = float(np.mean(1.0 / ranks))
    for k in ks:
        out[f"chance_R@{k}"] = float(min(1.0, k / n))
    out["chance_MRR"] = float(np.sum(1.0 / np.arange(1, n + 1)) / n)
    out["n"] = int(n)
    return out


def zeroshot_classify(imu_emb: np.ndarray, video_emb: np.ndarray, labels: np.ndarray, subjects: np.ndarray,
                      proto_video: Optional[np.ndarray] = None, proto_labels: Optional[np.ndarray] = None,
                      proto_subjects: Optional[np.ndarray] = None) -> np.ndarray:
    """Predicted class per IMU window: nearest class prototype = mean video embedding of that class
    over windows of other subjects (from ``proto_*`` when given, else from the same windows).

    Returns [N] int64, -1 where no prototype from another subject exists.
    """
    if proto_video is None:
        proto_video, proto_labels, proto_subjects = video_emb, labels, subjects
    q = _normalise(imu_emb)
    pv = _normalise(proto_video)
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
        P = _normalise(np.stack(protos))
        pred[rows] = np.asarray(names)[np.argmax(q[rows] @ P.T, axis=1)]
    return pred


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> Dict[str, float]:
    """Balanced accuracy and macro-F1 over windows with a label (>= 0); chance = 1 / classes."""
    from sklearn.metrics import balanced_accuracy_score, f1_score

    keep = np.asarray(y_true) >= 0
    yt, yp = np.asarray(y_true)[keep], np.asarray(y_pred)[keep]
    if len(yt) == 0:
        raise UserError("no labelled windows to classify")
    classes = np.unique(yt)
    import warnings

    with warnings.catch_warnings():  # predictions of classes absent from y_true are fine here
        warnings.simplefilter("ignore", UserWarning)
        bacc = float(balanced_accuracy_score(yt, yp))
    return {"balanced_accuracy": bacc,
            "macro_f1": float(f1_score(yt, yp, labels=classes, average="macro", zero_division=0)),
            "accuracy": float(np.mean(yt == yp)), "chance_balanced_accuracy": float(1.0 / len(classes)),
            "n": int(len(yt)), "classes": int(len(classes))}


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
        res["classification"] = classification_metrics(labels, pred)
        if (pred[labels >= 0] < 0).any():
            res["classification"]["note"] = ("some windows had no prototype from another subject "
                                             "(single-subject classes); counted as wrong")
    return res


# --------------------------------------------------------------------------- run-level

def load_run_model(run_dir: PathLike, device: str = "cpu"):
    """Rebuild a pretraining run's full method (towers, heads, loss) from ``model.json`` +
    ``model.safetensors``. Returns ``(model, meta, cfg)``."""
    from safetensors.torch import load_file

    from crossmodal_har.config import from_dict
    from crossmodal_har.io import read_json
    from crossmodal_har.models.io import load_state_strict
    from crossmodal_har.train.config import PretrainConfig
    from crossmodal_har.train.engine import MODEL_META, MODEL_WEIGHTS
    from crossmodal_har.train.methods import build_method

    run_dir = Path(run_dir)
    meta_path = run_dir / MODEL_META
    if not meta_path.is_file():
        raise UserError(f"{run_dir}: not a finished pretraining run (no {MODEL_META}); "
                        "run `crossmodal-har pretrain` (or --resume it) first")
    meta = read_json(meta_path)
    cfg = from_dict(PretrainConfig, meta["config"], where=str(meta_path))
    model = build_method(cfg, meta["data"], arch=meta["architecture"])
    try:
        state = load_file(str(run_dir / MODEL_WEIGHTS))
    except Exception as exc:
        raise DataError(run_dir / MODEL_WEIGHTS, f"unreadable weights: {exc}") from None
    load_state_strict(model, state, run_dir / MODEL_WEIGHTS)
    model.to(device).eval()
    return model, meta, cfg


def run_zeroshot(run_dir: PathLike, store_path: PathLike, out_dir: PathLike, split: str = "test",
                 batch_size: int = 64, device: str = "cpu", max_prototype_windows: int = 5000) -> Dict[str, Any]:
    """Zero-shot evaluation of ``run_dir`` on the windows of ``store_path`` (``split``: the run's test
    subjects, or ``all`` windows). Writes ``out_dir/results.json`` and returns it.

    Class prototypes for the zero-shot classification are mean *video* embeddings of labelled windows
    of every other subject in the store (train subjects included: only their videos and video labels
    are used, never an IMU label), at most ``max_prototype_windows`` of them (evenly spaced).
    """
    from crossmodal_har.io import atomic_write_json
    from crossmodal_har.pairs.store import PairedWindowDataset, WindowStore
    from crossmodal_har.train.engine import embed_dataset

    model, meta, cfg = load_run_model(run_dir, device)
    if cfg.method == "imu-mae":
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
    if kind == "embeddings":
        if int(store.video.shape[1]) != int(info["video_dim"]):
            raise UserError(f"{store_path}: video embeddings of size {store.video.shape[1]}, the run used "
                            f"{info['video_dim']}")
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
    res.update({"run": os.fspath(run_dir), "method": cfg.method, "store": os.fspath(store_path), "split": split,
                "subjects": subjects, "windows": int(len(idx)), "class_names": store.class_names})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "results.json", res)
    return res


def format_results(res: Dict[str, Any]) -> str:
    """A small plain-text table of the zero-shot results (value | chance)."""
    lines = [f"zero-shot: {res.get('method', '?')} on {res.get('windows', '?')} windows ({res.get('split', '')})"]
    for direction, m in res["retrieval"].items():
        cells = "  ".join(f"{k}={m[k]:.3f} (chance {m['chance_' + k]:.3f})" for k in ("R@1", "R@3", "R@10", "MRR"))
        lines.append(f"  {direction:13s} {cells}")
    if "classification" in res:
        c = res["classification"]
        lines.append(f"  classification balanced_accuracy={c['balanced_accuracy']:.3f} "
                     f"(chance {c['chance_balanced_accuracy']:.3f})  macro_f1={c['macro_f1']:.3f}")
    return "\n".join(lines)
