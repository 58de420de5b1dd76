"""What an IMU tower learned: linear probes from frozen embeddings to the simulator's ground truth.

For each encoder, the windows of the held-out simulated corpus (its labelled dataset, windowed with the
encoder's own preprocessing) are embedded once; linear models are then fitted with grouped K-fold over
subjects (the predictions for a person come from a model that never saw that person) to:

* ``posture``: sit / stand / lie (the labels present), windows wholly inside one such bout; metric:
  balanced accuracy of a logistic regression;
* ``cadence``: the person's walking step frequency (Hz, ``subjects.<name>.cadence_hz`` of
  ``simulation.json``), windows inside a ``walk`` bout; metric: R² of a ridge regression (its penalty
  chosen by inner folds that are grouped by subject too);
* ``heading``: the signed heading change over the window (rad, from the ``turn`` bouts' turns
  ``[start_s, duration_s, angle_rad]``, each spread evenly over its duration), windows inside a ``turn``
  bout; metric: R² of a ridge regression.

A target the corpus does not have (no lying, no cadence in simulation.json, too few windows or people) is
reported as not available rather than guessed. The random encoder and plain signal statistics (each
channel's mean and SD over the window: 12 features) are the references. Cheap: seconds on a CPU.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import balanced_accuracy_score, r2_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from crossmodal_har.config import to_dict
from crossmodal_har.errors import DataError
from crossmodal_har.evaluate.protocols import EncoderSource
from crossmodal_har.io import PathLike, atomic_write_json, read_json
from crossmodal_har.models.classifier import embed_windows
from crossmodal_har.signals.datasets import load_labelled
from crossmodal_har.signals.types import PreprocessConfig, WindowSet

log = logging.getLogger(__name__)

POSTURES = ("sit", "stand", "lie")
MIN_WINDOWS = 20
MIN_SUBJECTS = 3
ALPHAS = np.logspace(-2, 5, 8)  # ridge penalties tried (standardised features)
STATS_LABEL = "signal statistics (12 features)"
TARGETS = {
    "posture": ("posture (sit/stand/lie), balanced accuracy", "logistic regression on the embedding; chance is "
                "1 / the number of postures present"),
    "cadence": ("gait cadence while walking, R²", "ridge regression to the walker's step frequency (Hz) from "
                "simulation.json; predicting people never seen, so R² > 0 means cadence is linearly in the embedding"),
    "heading": ("heading change over a turning window, R²", "ridge regression to the signed yaw change (rad) of the "
                "window, from the turn bouts"),
}


def heading_change(turns: Sequence[Sequence[float]], start: float, end: float) -> float:
    """Signed heading change (rad) within [start, end] of turns ``[t0, duration, angle]``, each spread evenly."""
    total = 0.0
    for t0, dur, angle in turns:
        if dur <= 0:
            total += angle if start <= t0 < end else 0.0
            continue
        overlap = max(0.0, min(end, t0 + dur) - max(start, t0))
        total += angle * overlap / dur
    return total


def probe_targets(ws: WindowSet, simulation: Dict[str, Any]) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """``{target: (window indices, values)}`` of the targets this corpus has (module docstring)."""
    labels = np.asarray(ws.class_names, dtype=object)[ws.y]
    out: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
    idx = np.flatnonzero(np.isin(labels, POSTURES))
    if len(set(labels[idx])) >= 2:
        out["posture"] = (idx, labels[idx].astype(str))
    subjects = simulation.get("subjects") or {}
    idx = np.flatnonzero(labels == "walk")
    cad = [(subjects.get(str(s)) or {}).get("cadence_hz") for s in ws.subject[idx]]
    if len(idx) and all(isinstance(c, (int, float)) for c in cad):
        out["cadence"] = (idx, np.asarray(cad, dtype=np.float64))
    turns = {}
    for sess in simulation.get("sessions") or []:
        for bout in sess.get("bouts") or []:
            got = ((bout.get("params") or {}).get("turns") if bout.get("label") == "turn" else None) or []
            if all(isinstance(t, list) and len(t) == 3 for t in got):
                turns.setdefault(sess.get("name"), []).extend(got)
    idx = np.array([i for i in np.flatnonzero(labels == "turn") if ws.recording[i] in turns], dtype=np.int64)
    if len(idx):
        out["heading"] = (idx, np.array([heading_change(turns[ws.recording[i]], ws.start_s[i], ws.end_s[i])
                                         for i in idx]))
    return out


def probe_score(features: np.ndarray, values: np.ndarray, groups: np.ndarray, classify: bool) -> Optional[float]:
    """Out-of-fold balanced accuracy (``classify``) or R² of a linear model, folds grouped by subject."""
    n_groups = len(set(groups.tolist()))
    if len(values) < MIN_WINDOWS or n_groups < MIN_SUBJECTS:
        return None
    pred = np.empty(len(values), dtype=values.dtype)
    for train, test in GroupKFold(n_splits=min(5, n_groups)).split(features, values, groups):
        if classify and len(set(values[train].tolist())) < 2:
            pred[test] = values[train][0]
            continue
        head = LogisticRegression(max_iter=2000) if classify else Ridge(alpha=_ridge_alpha(
            features[train], values[train], groups[train]))
        model = make_pipeline(StandardScaler(), head).fit(features[train], values[train])
        pred[test] = model.predict(features[test])
    return float(balanced_accuracy_score(values, pred) if classify else r2_score(values, pred))


def _ridge_alpha(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """The ridge penalty with the least squared error on people left out (inner folds grouped by subject):
    a penalty chosen on windows of the same people would fit who they are, not the target."""
    n_groups = len(set(groups.tolist()))
    if n_groups < 2:
        return float(ALPHAS[-1])
    errors = np.zeros(len(ALPHAS))
    for train, test in GroupKFold(n_splits=min(4, n_groups)).split(x, y, groups):
        for i, a in enumerate(ALPHAS):
            model = make_pipeline(StandardScaler(), Ridge(alpha=a)).fit(x[train], y[train])
            errors[i] += float(np.sum((model.predict(x[test]) - y[test]) ** 2))
    return float(ALPHAS[int(np.argmin(errors))])


def signal_statistics(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x.mean(axis=1), x.std(axis=1)], axis=1)


def run_probe(dataset: PathLike, simulation_json: PathLike, encoders: Sequence[Tuple[str, Optional[int], Optional[Path]]],
              out_file: PathLike, *, random_arch: str = "patchtst-tiny", normalization: str = "none",
              seed: int = 0) -> Dict[str, Any]:
    """Probe each encoder (``(label, pretraining seed, run directory or None for a random init)``); write and
    return ``out_file`` (JSON: ``targets`` and, per label, each target's mean score and per-seed scores)."""
    simulation = read_json(simulation_json)
    if not isinstance(simulation, dict):
        raise DataError(simulation_json, "not a simulation.json (expected a JSON object)")
    windows: Dict[str, WindowSet] = {}
    scores: "OrderedDict[str, Dict[str, List[float]]]" = OrderedDict()
    seeds: Dict[str, List[Optional[int]]] = {}
    info: Dict[str, Dict[str, Any]] = {}
    sources = [(label, p, EncoderSource.from_dir(d)) for label, p, d in encoders if d is not None]
    base = sources[0][2].preprocess if sources else PreprocessConfig(normalization=normalization)
    sources += [(label, p, EncoderSource.random(random_arch, base)) for label, p, d in encoders if d is None]
    for label, p, src in [(STATS_LABEL, None, None), *sources]:
        pre = src.preprocess if src is not None else base
        key = repr(sorted(to_dict(pre).items()))
        if key not in windows:
            windows[key] = load_labelled(dataset, pre, progress=False)
        ws = windows[key]
        if src is None:
            feats = signal_statistics(ws.x)
        else:
            torch.manual_seed(seed)  # the random init of a random encoder; a saved one loads its weights
            feats = embed_windows(src.build(), ws.x, pre.normalization)
        for target, (idx, values) in probe_targets(ws, simulation).items():
            s = probe_score(feats[idx], values, ws.subject[idx].astype(str), classify=target == "posture")
            info.setdefault(target, {"n_windows": int(len(idx)), "n_subjects": len(set(ws.subject[idx].tolist())),
                                     **({"classes": sorted(set(values.tolist()))} if target == "posture" else {})})
            if s is not None:
                scores.setdefault(label, {}).setdefault(target, []).append(s)
        seeds.setdefault(label, []).append(p)
    targets = [{"name": t, "title": TARGETS[t][0], "about": TARGETS[t][1], **info[t]} for t in TARGETS if t in info]
    result = {
        "about": "Linear probes from frozen embeddings of the held-out simulated corpus to the simulator's ground "
                 "truth, folds grouped by person; mean over pretraining seeds (each seed's value in brackets). "
                 "R² ≤ 0: no better than the training people's mean (out-of-fold, so a constant scores a little below "
                 "0). Targets absent here were not available in this corpus (or had too few windows or people).",
        "targets": targets,
        "encoders": [{"label": label, "pretrain_seeds": seeds[label],
                      "scores": {t: {"mean": float(np.mean(v)), "per_seed": v} for t, v in per.items()}}
                     for label, per in scores.items()],
    }
    atomic_write_json(out_file, result)
    return result
