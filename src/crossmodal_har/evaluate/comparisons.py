"""Paired comparisons of methods against a reference (issue 12).

Every method evaluated with the same seeds sees the same subject splits and the same few-shot
draws (``splits.derive_seed``, ``fewshot.sample_shots``): a paired design. For each method ×
protocol × shots, the runs are paired with the reference's runs of the same unit (:func:`unit_key`:
the seed, or with folds the fold, whose seeds are averaged first) and the same test subjects; on the
differences d_i = method_i − reference_i (balanced accuracy by default):

- ``mean_diff``: mean of d;
- ``ci_low``, ``ci_high``: two-sided 95 % Student-t interval ``mean ± t(0.975, n−1)·sd(d)/√n``
  (``None`` with one pair);
- ``p_value``: two-sided paired sign-flip permutation test of "no difference": the share of sign
  patterns s ∈ {−1, +1}^n with |mean(s·d)| ≥ |mean(d)| (the observed pattern included). Exact
  enumeration of all 2^n patterns for n ≤ 12 pairs (so the smallest p is 2/2^n: 0.25 with 3 pairs,
  0.0625 with 5); otherwise Monte Carlo with 20 000 random patterns from ``numpy.random.default_rng(0)``
  and ``p = (1 + hits) / (1 + resamples)``. ``p_method`` says which; ``p_min`` is the smallest p the
  number of pairs allows (2/2^n exact, 1/(1 + resamples) Monte Carlo): above 0.05 no difference can be
  significant, whatever the data (:func:`seeds_for_p`: how many pairs would allow it).

Pretraining seeds: runs of a method pretrained with several seeds carry ``pretrain_seed``. Inside a
unit the method's value is the mean over its pretraining seeds; when the reference has pretraining
seeds too (a method against its shuffled-pairs control), only the seeds both have are used, so
pretraining seed p of the method meets pretraining seed p of the reference at the same split and
draw. The CI and p-value stay over units (splits and draws; pretraining seeds averaged inside, so
they do not cover pretraining-seed variation); ``pretrain_mean_diffs`` gives each pretraining seed's
own mean difference over the units, and ``pretrain_diff_std``/``_min``/``_max`` their spread.

The reference (``--reference NAME``) defaults to ``random``, else ``supervised`` when present, else the
first method given. A reference evaluated with a single protocol (e.g. ``supervised``) is compared at
the same shots whatever the method's protocol (``reference_protocol`` says so). With one method but
several protocols, each protocol is compared against that method's ``supervised`` protocol.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from crossmodal_har.errors import UserError
from crossmodal_har.evaluate.fewshot import shots_key
from crossmodal_har.evaluate.metrics import t_critical

log = logging.getLogger(__name__)

EXACT_MAX_PAIRS = 12
MC_RESAMPLES = 20000
MC_SEED = 0


def paired_test(diffs: Sequence[float], *, confidence: float = 0.95, exact_max: int = EXACT_MAX_PAIRS,
                n_resamples: int = MC_RESAMPLES, seed: int = MC_SEED) -> Dict[str, Any]:
    """Mean paired difference, its Student-t CI and the sign-flip permutation p-value (module docstring)."""
    d = np.asarray([x for x in diffs if x is not None and not math.isnan(x)], dtype=np.float64)
    n = len(d)
    out: Dict[str, Any] = {"n_pairs": n, "mean_diff": None, "ci_low": None, "ci_high": None, "p_value": None,
                           "p_method": None, "p_min": None}
    if n == 0:
        return out
    out["p_min"] = smallest_p(n, exact_max=exact_max, n_resamples=n_resamples)
    mean = float(d.mean())
    out["mean_diff"] = mean
    if n > 1:
        half = t_critical(n, confidence) * float(d.std(ddof=1)) / math.sqrt(n)
        out["ci_low"], out["ci_high"] = mean - half, mean + half
    obs = abs(mean) * (1 - 1e-12)  # ties count as extreme, robust to rounding
    if n <= exact_max:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        hits = int(np.sum(np.abs(signs @ d) / n >= obs))
        out["p_value"], out["p_method"] = hits / len(signs), "exact"
    else:
        rng = np.random.default_rng(seed)
        hits = 0
        done = 0
        while done < n_resamples:  # in chunks: bounded memory for many pairs
            b = min(4096, n_resamples - done)
            signs = rng.choice((-1.0, 1.0), size=(b, n))
            hits += int(np.sum(np.abs(signs @ d) / n >= obs))
            done += b
        out["p_value"], out["p_method"] = (1 + hits) / (1 + n_resamples), "monte-carlo"
    return out


def smallest_p(n_pairs: int, *, exact_max: int = EXACT_MAX_PAIRS, n_resamples: int = MC_RESAMPLES) -> float:
    """The smallest p-value :func:`paired_test` can give with ``n_pairs`` pairs (all differences one sign)."""
    return 2.0 / 2 ** n_pairs if n_pairs <= exact_max else 1.0 / (1 + n_resamples)


def seeds_for_p(alpha: float = 0.05) -> int:
    """The fewest pairs (seeds or folds) whose smallest possible p is at most ``alpha`` (6 for 0.05)."""
    n = 1
    while smallest_p(n) > alpha:
        n += 1
    return n


def choose_reference(methods: Sequence[str], requested: Optional[str] = None) -> Optional[str]:
    """``requested`` (must be one of ``methods``), else ``random``, else ``supervised``, else the first."""
    if requested:
        if requested not in methods:
            raise UserError(f"--reference {requested!r} is not among the methods: {', '.join(methods) or 'none'}")
        return requested
    for name in ("random", "supervised"):
        if name in methods:
            return name
    return methods[0] if methods else None


def unit_key(run: Dict[str, Any]) -> tuple:
    """The independent unit a run belongs to: ``("fold", f)`` with folds (seeds are averaged inside a
    fold), else ``("seed", s)`` (one subject split and one draw per seed)."""
    if run.get("fold") is not None:
        return ("fold", run["fold"])
    return ("seed", run.get("seed"))


def run_units(runs: Sequence[Dict[str, Any]]) -> "OrderedDict[tuple, List[Dict[str, Any]]]":
    """Runs grouped by :func:`unit_key`, in order of first appearance."""
    units: "OrderedDict[tuple, List[Dict[str, Any]]]" = OrderedDict()
    for r in runs:
        units.setdefault(unit_key(r), []).append(r)
    return units


def unit_value(unit_runs: Sequence[Dict[str, Any]], metric: str) -> Optional[float]:
    """Mean test ``metric`` over one unit's runs (NaN/None ignored; None when none is left)."""
    v = [r["test"][metric] for r in unit_runs if r["test"].get(metric) is not None]
    v = [x for x in v if not (isinstance(x, float) and np.isnan(x))]
    return float(np.mean(v)) if v else None


def _pseeds(runs: Sequence[Dict[str, Any]]) -> List[Any]:
    return sorted({r["pretrain_seed"] for r in runs if r.get("pretrain_seed") is not None}, key=str)


def _compare(method: str, runs: Sequence[Dict[str, Any]], reference: str, ref_runs: Sequence[Dict[str, Any]],
             protocol: str, shots: Any, ref_protocol: str, metric: str) -> Dict[str, Any]:
    mine, theirs = run_units(runs), run_units(ref_runs)
    # both sides pretrained with seeds (a method and its control): pair pretraining seed p with p
    by_pseed = bool(_pseeds(runs)) and bool(_pseeds(ref_runs))
    diffs, unmatched = [], 0
    per_pseed: "OrderedDict[Any, List[float]]" = OrderedDict()
    for key, rs in mine.items():
        if key not in theirs:
            unmatched += 1
            continue
        ref_rs = theirs[key]
        subjects, ref_subjects = rs[0].get("test_subjects"), ref_rs[0].get("test_subjects")
        if subjects is not None and ref_subjects is not None and list(subjects) != list(ref_subjects):
            unmatched += 1  # same seed but other test people: not a pair
            continue
        if by_pseed:
            common = set(_pseeds(rs)) & set(_pseeds(ref_rs))
            if not common:
                unmatched += 1  # no pretraining seed in common at this unit
                continue
            rs = [r for r in rs if r.get("pretrain_seed") in common]
            ref_rs = [r for r in ref_rs if r.get("pretrain_seed") in common]
        value, ref_value = unit_value(rs, metric), unit_value(ref_rs, metric)
        if value is None or ref_value is None:
            continue
        diffs.append(value - ref_value)
        for p in _pseeds(rs):
            v = unit_value([r for r in rs if r.get("pretrain_seed") == p], metric)
            rv = unit_value([r for r in ref_rs if r.get("pretrain_seed") == p], metric) if by_pseed else ref_value
            if v is not None and rv is not None:
                per_pseed.setdefault(p, []).append(v - rv)
    stats = paired_test(diffs)
    unit = "fold" if any(r.get("fold") is not None for r in runs) else "seed"
    out = {"method": method, "reference": reference, "protocol": protocol, "shots": shots,
           "reference_protocol": ref_protocol, "metric": metric, "unit": unit, **stats, "n_unpaired": unmatched}
    if per_pseed:
        means = [float(np.mean(v)) for v in per_pseed.values()]
        out.update({
            "n_pretrain_seeds": len(per_pseed), "pretrain_seeds": list(per_pseed),
            "paired_by_pretrain_seed": by_pseed,
            "pretrain_mean_diffs": [{"pretrain_seed": p, "mean_diff": m, "n_pairs": len(v)}
                                    for (p, v), m in zip(per_pseed.items(), means)],
            "pretrain_diff_std": float(np.std(means, ddof=1)) if len(means) > 1 else None,
            "pretrain_diff_min": min(means), "pretrain_diff_max": max(means)})
    return out


def compute_comparisons(runs: Sequence[Dict[str, Any]], reference: Optional[str] = None,
                        metric: str = "balanced_accuracy", *,
                        within_method: bool = True) -> Tuple[List[Dict[str, Any]], Optional[str]]:
    """All paired comparisons of ``runs`` (several methods, or one with several protocols; ``within_method``
    False: not the latter — a random encoder's protocols against each other compare a method with itself).
    A comparison of a method and protocol with that same method and protocol is never made.

    Returns (entries, reference name). Entries: ``method, reference, protocol, shots, n_pairs,
    mean_diff, ci_low, ci_high, p_value`` plus ``reference_protocol, metric, unit, p_method,
    n_unpaired``; ordered by method, protocol, shots. An entry without a single pair is left out.
    """
    groups: "OrderedDict[tuple, List[Dict[str, Any]]]" = OrderedDict()
    methods: List[str] = []
    for r in runs:
        m = r.get("method", "")
        if m not in methods:
            methods.append(m)
        groups.setdefault((m, r["protocol"], r["shots"]), []).append(r)
    ref = choose_reference(methods, reference)
    out: List[Dict[str, Any]] = []
    if ref is None:
        return out, None

    def order(k: tuple) -> tuple:
        return (methods.index(k[0]), k[1], shots_key(k[2]))

    if len(methods) == 1 and not within_method:
        return out, ref
    if len(methods) == 1:  # one evaluation: its protocols against its own supervised training
        for (m, p, k) in sorted(groups, key=order):
            if p != "supervised" and (m, "supervised", k) in groups:
                out.append(_compare(m, groups[(m, p, k)], m, groups[(m, "supervised", k)], p, k, "supervised",
                                    metric))
    else:
        ref_protocols = sorted({p for (m, p, _) in groups if m == ref})
        for (m, p, k) in sorted(groups, key=order):
            if m == ref:
                continue
            rp = p if p in ref_protocols else (ref_protocols[0] if len(ref_protocols) == 1 else None)
            if rp is None or (ref, rp, k) not in groups:
                continue
            out.append(_compare(m, groups[(m, p, k)], ref, groups[(ref, rp, k)], p, k, rp, metric))
    kept = [c for c in out if c["n_pairs"] > 0]
    for c in out:
        if c["n_pairs"] == 0:
            log.warning("%s vs %s (%s, shots %s): no run pairs with the same seed and test subjects", c["method"],
                        c["reference"], c["protocol"], c["shots"])
    return kept, ref

