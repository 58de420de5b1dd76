"""Classification metrics and across-seed summaries (numpy only, tested on hand-computed cases).

Conventions (the same as scikit-learn's defaults, so numbers are comparable with papers using it):
- ``balanced_accuracy``: mean recall over the classes present in ``y_true``.
- ``macro_f1``: mean F1 over the classes present in ``y_true`` or ``y_pred``; a class never
  predicted has F1 = 0.
- ``per_class_recall``: one entry per class; ``None`` for a class absent from ``y_true``.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

import numpy as np


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


def metrics_from_confusion(cm: np.ndarray) -> Dict[str, Any]:
    """Accuracy, balanced accuracy, macro-F1 and per-class recall from a confusion matrix."""
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum()
    tp = np.diag(cm)
    support = cm.sum(axis=1)  # true counts
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


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> Dict[str, Any]:
    """All metrics of one run, including the confusion matrix as a nested list (JSON-ready)."""
    cm = confusion_matrix(y_true, y_pred, n_classes)
    out = metrics_from_confusion(cm)
    out["confusion_matrix"] = cm.tolist()
    return out


def t_critical(n: int, confidence: float = 0.95) -> float:
    """Two-sided Student-t critical value for ``n`` samples (n - 1 degrees of freedom)."""
    from scipy.stats import t

    return float(t.ppf(0.5 + confidence / 2.0, n - 1))


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


def mean_confusion(matrices: List[List[List[int]]]) -> np.ndarray:
    """Sum of confusion matrices over runs (counts; normalise per row for display)."""
    return np.sum(np.asarray(matrices, dtype=np.int64), axis=0)
