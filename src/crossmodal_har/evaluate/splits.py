"""Subject-disjoint train / validation / test splits.

Nobody's windows appear in two splits: a model is always scored on people it never saw.
Default fractions of *subjects*: 65 % train, 15 % validation (model selection and early stopping
only), 20 % test (scored once per run). The split is a deterministic function of the sorted subject
ids and ``seed``; among random permutations it takes the first one in which every class occurs in
train, validation and test (or, failing that after ``max_tries``, the one covering most classes,
train first), so a rare class does not silently vanish from training.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, List

import numpy as np

from crossmodal_har.errors import ConfigError, UserError

log = logging.getLogger(__name__)


@dataclass
class SplitConfig:
    """Fractions of subjects (not windows) per split, and the split seed."""

    val_fraction: float = 0.15
    test_fraction: float = 0.20
    seed: int = 0
    max_tries: int = 200

    def validate(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"split.val_fraction must be in (0, 1), got {self.val_fraction}")
        if not 0.0 <= self.test_fraction < 1.0:  # 0: train/val only (e.g. train-classifier)
            raise ConfigError(f"split.test_fraction must be in [0, 1), got {self.test_fraction}")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ConfigError("split.val_fraction + split.test_fraction must be < 1")
        if self.max_tries < 1:
            raise ConfigError("split.max_tries must be >= 1")


@dataclass
class SubjectSplit:
    """Window indices and subject ids per split."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    subjects: Dict[str, List[str]]

    def to_dict(self) -> Dict[str, object]:
        return {
            "subjects": self.subjects,
            "windows": {"train": int(len(self.train)), "val": int(len(self.val)), "test": int(len(self.test))},
        }


def split_counts(n_subjects: int, cfg: SplitConfig) -> tuple:
    """(n_train, n_val, n_test) subjects; each at least 1 (n_test 0 when test_fraction is 0).
    Needs >= 3 subjects (2 without a test split)."""
    need = 3 if cfg.test_fraction > 0 else 2
    if n_subjects < need:
        raise UserError(
            f"a subject-disjoint {'train/val/test' if need == 3 else 'train/val'} split needs at least {need} "
            f"subjects, the dataset has {n_subjects} (give labels.csv a 'subject' column, or recordings from "
            f"more people)"
        )
    n_test = max(1, int(round(n_subjects * cfg.test_fraction))) if cfg.test_fraction > 0 else 0
    n_val = max(1, int(round(n_subjects * cfg.val_fraction)))
    while n_subjects - n_test - n_val < 1:
        if n_test >= n_val and n_test > 1 or (n_val <= 1 and n_test > 1):
            n_test -= 1
        else:
            n_val -= 1
    return n_subjects - n_test - n_val, n_val, n_test


def subject_split(subject: np.ndarray, y: np.ndarray, n_classes: int, cfg: SplitConfig) -> SubjectSplit:
    """Split windows by subject. ``subject`` [N] ids, ``y`` [N] class indices."""
    subject = np.asarray(subject).astype(str)
    y = np.asarray(y)
    uniq = np.unique(subject)  # sorted: the split does not depend on window order
    n_train, n_val, n_test = split_counts(len(uniq), cfg)
    classes_of = {s: set(np.unique(y[subject == s]).tolist()) for s in uniq}
    rng = np.random.default_rng(cfg.seed)
    best, best_score = None, None
    for _ in range(cfg.max_tries):
        perm = rng.permutation(len(uniq))
        groups = (uniq[perm[:n_train]], uniq[perm[n_train:n_train + n_val]], uniq[perm[n_train + n_val:]])
        cover = [len(set().union(*(classes_of[s] for s in g))) for g in groups]
        if n_test == 0:
            cover[2] = n_classes
        score = (cover[0], cover[1] + cover[2])
        if best_score is None or score > best_score:
            best, best_score = groups, score
        if all(c == n_classes for c in cover):
            break
    train_s, val_s, test_s = (sorted(g.tolist()) for g in best)
    if best_score[0] < n_classes:
        log.warning("no subject split puts every class in train; %d of %d classes in train",
                    best_score[0], n_classes)
    elif best_score[1] < 2 * n_classes:
        log.warning("some classes are missing from the validation or test subjects")
    idx = np.arange(len(subject))
    return SubjectSplit(
        train=idx[np.isin(subject, train_s)],
        val=idx[np.isin(subject, val_s)],
        test=idx[np.isin(subject, test_s)],
        subjects={"train": train_s, "val": val_s, "test": test_s},
    )
