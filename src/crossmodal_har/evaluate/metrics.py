"""Classification metrics and across-seed summaries (numpy only, tested on hand-computed cases).

One :func:`classification_metrics` serves the few-shot evaluation (Table 3) and the zero-shot
classification (Table 4). Conventions (scikit-learn's defaults, so numbers are comparable with papers
using it):
- ``balanced_accuracy``: mean recall over the classes present in ``y_true``.
- ``macro_f1``: mean F1 over the classes present in ``y_true`` or ``y_pred``; a class never
  predicted has F1 = 0, a predicted class absent from ``y_true`` has F1 = 0 too.
- ``per_class_recall``: one entry per class; ``None`` for a class absent from ``y_true``.
- a window with ``y_true < 0`` is unlabelled and left out; ``y_pred < 0`` is "no prediction"
  (zero-shot: no prototype): wrong for its true class, and no class's prediction.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence

import numpy as np
import scipy.stats

# the test metrics every evaluation run records and every summary row summarises
METRICS = ("accuracy", "balanced_accuracy", "macro_f1")


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """[n_classes, n_classes] int64 counts; row = true class, column = predicted class."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape")
    if len(y_true) and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes})")
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def metrics_from_confusion(cm: np.ndarray, unpredicted: Optional[np.ndarray] = None) -> Dict[str, Any]:
    """Accuracy, balanced accuracy, macro-F1 and per-class recall from a confusion matrix.

    ``unpredicted``: [n_classes] windows per true class that got no prediction (counted wrong).
    """
    cm = np.asarray(cm, dtype=np.float64)
    missed = np.zeros(len(cm)) if unpredicted is None else np.asarray(unpredicted, dtype=np.float64)
    total = cm.sum() + missed.sum()
    tp = np.diag(cm)
    support = cm.sum(axis=1) + missed  # true counts
    predicted = cm.sum(axis=0)
    present = support > 0
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=present)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    f1_classes = present | (predicted > 0)
    return {
        "accuracy": float(tp.sum() / total) if total else float("nan"),
        "balanced_accuracy": float(recall[present].mean()) if present.any() else float("nan"),
        "macro_f1": float(f1[f1_classes].mean()) if f1_classes.any() else float("nan"),
        "per_class_recall": [float(r) if p else None for r, p in zip(recall, present)],
        "n": int(total),
    }


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: Optional[int] = None
                           ) -> Dict[str, Any]:
    """All metrics of one run, including the confusion matrix as a nested list (JSON-ready).

    ``n_classes`` defaults to the largest label seen + 1. Unlabelled windows (``y_true < 0``) are
    left out, windows without a prediction (``y_pred < 0``) count as wrong (module docstring).
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape")
    labelled = y_true >= 0
    y_true, y_pred = y_true[labelled], y_pred[labelled]
    if n_classes is None:
        n_classes = int(max(y_true.max(initial=-1), y_pred.max(initial=-1))) + 1
    none = y_pred < 0
    cm = confusion_matrix(y_true[~none], y_pred[~none], n_classes)
    out = metrics_from_confusion(cm, np.bincount(y_true[none], minlength=n_classes) if none.any() else None)
    out["confusion_matrix"] = cm.tolist()
    return out


def t_critical(n: int, confidence: float = 0.95) -> float:
    """Two-sided Student-t critical value for ``n`` samples (n - 1 degrees of freedom)."""
    return float(scipy.stats.t.ppf(0.5 + confidence / 2.0, n - 1))


def summarize(values: Sequence[float], confidence: float = 0.95) -> Dict[str, Optional[float]]:
    """Mean, sample std (ddof=1) and a t-distribution confidence interval of the mean over seeds.

    With one value the std is 0.0 and the interval is undefined (``None``); NaN values are
    ignored (and counted out of ``n``).
    """
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=np.float64)
    n = len(v)
    if n == 0:
        return {"mean": None, "std": None, "ci95_low": None, "ci95_high": None, "ci95_half_width": None, "n": 0}
    mean = float(v.mean())
    if n == 1:
        return {"mean": mean, "std": 0.0, "ci95_low": None, "ci95_high": None, "ci95_half_width": None, "n": 1}
    std = float(v.std(ddof=1))
    half = t_critical(n, confidence) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "ci95_low": mean - half, "ci95_high": mean + half,
            "ci95_half_width": half, "n": n}


def welch_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Dict[str, Optional[float]]:
    """Mean of ``a`` minus mean of ``b`` for two independent samples, with Welch's t-interval
    (unequal variances, Welch-Satterthwaite degrees of freedom). Interval ``None`` with fewer than two
    values on either side or no spread at all."""
    x = np.asarray([v for v in a if v is not None and not math.isnan(v)], dtype=np.float64)
    y = np.asarray([v for v in b if v is not None and not math.isnan(v)], dtype=np.float64)
    if not len(x) or not len(y):
        return {"diff": None, "ci95_low": None, "ci95_high": None, "df": None, "n_a": len(x), "n_b": len(y)}
    diff = float(x.mean() - y.mean())
    out: Dict[str, Optional[float]] = {"diff": diff, "ci95_low": None, "ci95_high": None, "df": None,
                                       "n_a": len(x), "n_b": len(y)}
    if len(x) < 2 or len(y) < 2:
        return out
    va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se2 = va + vb
    if se2 <= 0:
        return out
    df = se2 ** 2 / (va ** 2 / (len(x) - 1) + vb ** 2 / (len(y) - 1))
    half = float(scipy.stats.t.ppf(0.5 + confidence / 2, df) * math.sqrt(se2))
    out.update({"ci95_low": diff - half, "ci95_high": diff + half, "df": float(df)})
    return out
