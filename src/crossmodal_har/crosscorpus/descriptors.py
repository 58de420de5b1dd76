"""What could make one pair of simulated corpora transfer better than another: descriptors of a corpus, of a
pair, and of which target windows a run retrieves.

* **Scene looks.** Each corpus paints its sessions from a pool of looks seeded by the corpus's seed
  (:func:`crossmodal_har.simulator.session.shared_look`), so two corpora with different seeds share a look
  only by accident; :func:`look_descriptors` counts identical looks and measures how near, in colour, each
  look the target uses is to the pretraining pool. :func:`feature_gap` measures the same gap as the frozen
  video encoder sees it (per-frame ImageNet features of two stores).
* **Activity mix.** Shares of simulated time per activity (``simulation.json``'s bouts, the source of
  ``labels.csv``); the pair's total-variation distance.
* **Subject motion.** Mean |gyro| (rad/s) of the stored IMU windows, all windows and still ones (the head's
  look-around), and the share of locomotion time.
* **Which windows are retrieved.** :func:`rank_breakdown` ranks every target window (the zero-shot
  retrieval's own ranks) and splits R@1 and MRR by activity group, so a pair's score can be read as its
  groups' scores weighted by its activity mix.

Units: colours RGB in [0, 1]; angular rate rad/s; shares are fractions of time or of windows.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
from scipy import stats

from crossmodal_har.io import PathLike
from crossmodal_har.pairs.store import PairedWindowDataset, WindowStore
from crossmodal_har.simulator.render import Look
from crossmodal_har.simulator.session import shared_look
from crossmodal_har.train.retrieval import true_match_ranks
from crossmodal_har.train.rundir import load_run
from crossmodal_har.train.validation import embed_dataset

log = logging.getLogger(__name__)

LOCOMOTION = ("walk", "run", "stairs_up", "stairs_down")
STILL = ("stand", "sit", "lie")
GROUPS = ("locomotion", "still", "other")  # other: turns, transitions, falls; unlabelled windows too


def activity_group(label: str) -> str:
    return "locomotion" if label in LOCOMOTION else "still" if label in STILL else "other"


# ----------------------------------------------------------------------------------------- looks

def look_vector(look: Look) -> np.ndarray:
    """15 numbers of what a look paints: mean wall, ground and pillar colours, sky at horizon and zenith."""
    return np.concatenate([look.wall_colors.mean(0), look.ground_colors.mean(0), look.box_palette.mean(0),
                           look.sky_horizon, look.sky_zenith]).astype(np.float64)


def same_look(a: Look, b: Look) -> bool:
    return a.salt == b.salt and np.array_equal(look_vector(a), look_vector(b))


def look_descriptors(seed_a: int, pool_a: int, seed_b: int, used_b: Sequence[int]) -> Dict[str, Any]:
    """Scene looks of target corpus ``seed_b`` (the pool indices its sessions used) against the whole pool
    (``pool_a`` looks) of pretraining corpus ``seed_a``: how many are identical, and the mean colour
    distance from each used target look to its nearest pretraining look."""
    pool = [shared_look(seed_a, k) for k in range(pool_a)]
    used = [shared_look(seed_b, k) for k in sorted(set(int(k) for k in used_b)) if k >= 0]
    if not pool or not used:
        return {"look_identical": 0, "look_distance": None, "looks_used": len(used)}
    va = np.stack([look_vector(x) for x in pool])
    nearest = [float(np.min(np.linalg.norm(va - look_vector(x), axis=1))) for x in used]
    return {"look_identical": sum(any(same_look(x, y) for y in pool) for x in used),
            "look_distance": float(np.mean(nearest)), "looks_used": len(used)}


# ------------------------------------------------------------------------------------ a corpus

def simulation_summary(sim_dir: PathLike) -> Dict[str, Any]:
    """Seed, look pool size, the looks the sessions used and seconds per activity, from ``simulation.json``."""
    sim = json.loads((Path(sim_dir) / "simulation.json").read_text(encoding="utf-8"))
    seconds: Dict[str, float] = {}
    used = set()
    for s in sim["sessions"]:
        for b in s["bouts"]:
            seconds[b["label"]] = seconds.get(b["label"], 0.0) + float(b["end"]) - float(b["start"])
        used.update(int(k) for _, k in s.get("looks", []))
    return {"seed": int(sim["seed"]), "looks": int(sim["config"]["looks"]), "looks_used": sorted(used),
            "activity_seconds": seconds}


def activity_shares(seconds: Mapping[str, float]) -> Dict[str, float]:
    total = sum(seconds.values())
    return {k: v / total for k, v in sorted(seconds.items())} if total > 0 else {}


def tv_distance(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """Total-variation distance of two share dicts (0 = the same mix, 1 = nothing in common)."""
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q))


def window_gyro(imu: np.ndarray) -> np.ndarray:
    """[N] mean |gyro| per window (rad/s) of ``imu`` [N, W, 6] (acc g, gyro rad/s)."""
    return np.linalg.norm(np.asarray(imu, dtype=np.float64)[..., 3:6], axis=-1).mean(axis=1)


def store_groups(store: WindowStore) -> np.ndarray:
    names = store.class_names
    return np.array([activity_group(names[i]) if i >= 0 else "other" for i in store.labels])


def corpus_descriptors(sim_dir: PathLike, store_dir: PathLike) -> Dict[str, Any]:
    """One corpus: activity shares, locomotion share of time, mean |gyro| (all windows, still windows) and
    the number of windows of its store, with ``simulation_summary``'s seed and looks."""
    summary = simulation_summary(sim_dir)
    store = WindowStore(store_dir)
    gyro = window_gyro(np.asarray(store.imu))
    groups = store_groups(store)
    shares = activity_shares(summary.pop("activity_seconds"))
    return {**summary, "activity_shares": shares, "windows": int(len(store)),
            "locomotion_share": float(sum(v for k, v in shares.items() if k in LOCOMOTION)),
            "gyro_mean": float(gyro.mean()),
            "gyro_still": float(gyro[groups == "still"].mean()) if (groups == "still").any() else None}


def feature_gap(store_a: PathLike, store_b: PathLike) -> Optional[float]:
    """Distance between two embedding stores' mean video features, in units of their within-corpus spread
    (RMS distance of a window's mean frame feature from its corpus mean); None for frames stores."""
    feats = []
    for path in (store_a, store_b):
        s = WindowStore(path)
        if s.video_mode != "embeddings":
            return None
        v = np.asarray(s.video, dtype=np.float64)
        feats.append(v.mean(axis=1) if v.ndim == 3 else v)
    (a, b) = feats
    spread = np.sqrt(0.5 * (np.mean(np.sum((a - a.mean(0)) ** 2, 1)) + np.mean(np.sum((b - b.mean(0)) ** 2, 1))))
    return float(np.linalg.norm(a.mean(0) - b.mean(0)) / spread) if spread > 0 else None


def pair_descriptors(pre: Mapping[str, Any], tgt: Mapping[str, Any]) -> Dict[str, Any]:
    """Descriptors of (pretraining corpus, target corpus), each from :func:`corpus_descriptors`."""
    looks = look_descriptors(pre["seed"], pre["looks"], tgt["seed"], tgt["looks_used"])
    return {"look_identical": looks["look_identical"], "look_distance": looks["look_distance"],
            "activity_tv": tv_distance(pre["activity_shares"], tgt["activity_shares"]),
            "target_locomotion": tgt["locomotion_share"],
            "locomotion_diff": abs(pre["locomotion_share"] - tgt["locomotion_share"]),
            "target_gyro": tgt["gyro_mean"], "gyro_ratio": tgt["gyro_mean"] / pre["gyro_mean"],
            "target_gyro_still": tgt["gyro_still"], "target_windows": tgt["windows"],
            "chance_R@1": 1.0 / tgt["windows"]}


# --------------------------------------------------------------------------- retrieval per window

def rank_breakdown(run_dir: PathLike, store_dir: PathLike, batch_size: int = 64) -> Dict[str, Any]:
    """IMU→video ranks of every window of ``store_dir`` under run ``run_dir`` (the zero-shot retrieval of
    ``zeroshot --split all``), split by activity group: windows, R@1/chance and MRR/chance per group
    (chance of the whole gallery: 1/N and H_N/N), and Spearman's rho of 1/rank with the window's |gyro|."""
    model, _ = load_run(run_dir, "cpu")
    store = WindowStore(store_dir)
    emb = embed_dataset(model, PairedWindowDataset(store, frame_sampling="centre"), batch_size, "cpu")
    ranks = true_match_ranks(emb["imu"], emb["video"])
    idx = np.asarray(emb["index"])
    n = len(ranks)
    chance_r1, chance_mrr = 1.0 / n, float(np.sum(1.0 / np.arange(1, n + 1)) / n)
    groups = store_groups(store)[idx]
    out: Dict[str, Any] = {"n": n, "R@1": float(np.mean(ranks <= 1)), "MRR": float(np.mean(1.0 / ranks)),
                           "groups": {}}
    for g in GROUPS:
        m = groups == g
        out["groups"][g] = {"windows": int(m.sum()),
                            "R@1/chance": float(np.mean(ranks[m] <= 1) / chance_r1) if m.any() else None,
                            "MRR/chance": float(np.mean(1.0 / ranks[m]) / chance_mrr) if m.any() else None}
    gyro = window_gyro(np.asarray(store.imu)[idx])
    out["rho_rr_gyro"] = spearman(1.0 / ranks, gyro)["rho"]
    return out


# --------------------------------------------------------------------------------- correlation

def spearman(x: Sequence[Optional[float]], y: Sequence[Optional[float]]) -> Dict[str, Any]:
    """Spearman's rho and its two-sided p over the entries where both are given; rho None when fewer
    than 3 remain or either side is constant."""
    pairs = [(float(a), float(b)) for a, b in zip(x, y) if a is not None and b is not None]
    if len(pairs) < 3 or len({a for a, _ in pairs}) < 2 or len({b for _, b in pairs}) < 2:
        return {"rho": None, "p": None, "n": len(pairs)}
    r = stats.spearmanr([a for a, _ in pairs], [b for _, b in pairs])
    return {"rho": float(r.statistic), "p": float(r.pvalue), "n": len(pairs)}


def correlations(rows: Sequence[Mapping[str, Any]], target: str, keys: Sequence[str]) -> List[Dict[str, Any]]:
    """Spearman's rho of ``row[target]`` with each ``row[key]`` across ``rows`` (one per corpus pair)."""
    return [{"descriptor": k, **spearman([r.get(target) for r in rows], [r.get(k) for r in rows])} for k in keys]
