"""Subject-disjoint train / validation / test splits: the one split configuration and splitter.

Nobody's windows appear in two splits: a model is always scored on people it never saw. Both the
pretraining run (``PretrainConfig.split``, on a window store) and the few-shot evaluation
(``EvaluateConfig.split``, on a labelled dataset) split with :func:`subject_split`; they differ only
in their default fractions (pretraining 70/15/15 %, evaluation 65/15/20 % of subjects) and in
whether labels are given (evaluation: the split also keeps every class in every part).

The algorithm, a deterministic function of the sorted subject ids and ``seed``:

1. Explicit ``val_subjects`` / ``test_subjects`` are taken as given; the other subjects form the pool.
2. Counts: a fraction > 0 gives ``round(fraction × all subjects)`` subjects, at least 1 (Python's
   ``round``, halves to even); a fraction of 0 gives none; counts shrink (test first while it is the
   larger) until at least one training subject is left.
3. The pool is permuted with ``numpy.random.default_rng(seed)`` and laid out train | val | test.
   With labels, further permutations are drawn until every class occurs in train, validation and test
   (at most ``max_tries``; failing that, the permutation covering most classes, train first), so a rare
   class does not silently vanish from training.

The one split that is *not* subject-disjoint, :func:`paper_split`, is the paper's own few-shot
protocol, offered by name (``evaluate --split paper``) so its numbers can be compared, and marked
optimistic wherever it is reported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from crossmodal_har.errors import ConfigError, UserError

log = logging.getLogger(__name__)


@dataclass
class SplitConfig:
    """How subjects (not windows) are split. The class defaults are the evaluation's; a pretraining
    run's default (``train.config.PretrainConfig.split``) has ``test_fraction=0.15``.

    Attributes:
        val_subjects: explicit validation subjects (then ``val_fraction`` is not used).
        test_subjects: explicit test subjects (then ``test_fraction`` is not used).
        val_fraction: fraction of all subjects for validation (model selection, early stopping).
        test_fraction: fraction of all subjects for test (scored once); 0 = no test split.
        seed: seed of the subject permutation.
        max_tries: with labels: permutations tried to find one that puts every class everywhere.
        shuffle_train_pairs: pretraining only, the control experiment: the video side of the
            *training* pairs is permuted across windows (a fixed permutation with no fixed point,
            drawn with ``seed``), so nothing links an IMU window to its video; validation and test
            windows keep their true pairs. ``train.data.StoreSource`` honours it.
    """

    val_subjects: List[str] = field(default_factory=list)
    test_subjects: List[str] = field(default_factory=list)
    val_fraction: float = 0.15
    test_fraction: float = 0.20
    seed: int = 0
    max_tries: int = 200
    shuffle_train_pairs: bool = False

    def validate(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"split.val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0.0 <= self.test_fraction < 1.0:  # 0: train/val only (e.g. train-classifier)
            raise ConfigError(f"split.test_fraction must be in [0, 1), got {self.test_fraction}")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ConfigError("split.val_fraction + split.test_fraction must be < 1")
        if self.max_tries < 1:
            raise ConfigError("split.max_tries must be >= 1")
        both = set(self.val_subjects) & set(self.test_subjects)
        if both:
            raise ConfigError(f"split: subjects in both val and test: {sorted(both)}")


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


def split_counts(n_subjects: int, cfg: SplitConfig, *, allow_fewer: bool = False) -> Tuple[int, int, int]:
    """(n_train, n_val, n_test) subjects for a split by fractions (explicit lists count as given).

    Each part asked for (a fraction > 0, or an explicit list) gets at least one subject. Too few
    subjects for every part raise ``UserError``, or with ``allow_fewer`` (pretraining, where
    validation and test are optional) drop the test part, then the validation part, with a warning.
    """
    want_test = bool(cfg.test_subjects) or cfg.test_fraction > 0
    want_val = bool(cfg.val_subjects) or cfg.val_fraction > 0
    need = 1 + int(want_val) + int(want_test)
    if n_subjects < need and allow_fewer:  # drop the parts asked for by fraction: test first
        dropped = []
        if want_test and not cfg.test_subjects:
            want_test, need = False, need - 1
            dropped.append("test")
        if n_subjects < need and want_val and not cfg.val_subjects:
            want_val, need = False, need - 1
            dropped.append("validation")
        if n_subjects >= need:
            log.warning("only %d subject(s): no %s subjects", n_subjects, " or ".join(dropped))
    if n_subjects < need:
        raise UserError(
            f"a subject-disjoint {'train/val/test' if need == 3 else 'train/val'} split needs at least {need} "
            f"subjects, the dataset has {n_subjects} (give labels.csv a 'subject' column, or recordings from "
            f"more people)"
        )
    n_test = len(cfg.test_subjects) or (max(1, int(round(n_subjects * cfg.test_fraction))) if want_test else 0)
    n_val = len(cfg.val_subjects) or (max(1, int(round(n_subjects * cfg.val_fraction))) if want_val else 0)
    fixed_test, fixed_val = bool(cfg.test_subjects), bool(cfg.val_subjects)
    while n_subjects - n_test - n_val < 1:
        can_test, can_val = not fixed_test and n_test > 1, not fixed_val and n_val > 1
        if not (can_test or can_val):
            raise UserError(f"split leaves no training subjects ({n_subjects} subjects, {n_val} validation, "
                            f"{n_test} test)")
        if can_test and (n_test >= n_val or not can_val):
            n_test -= 1
        else:
            n_val -= 1
    return n_subjects - n_test - n_val, n_val, n_test


def subject_split(subject: Sequence[str], cfg: SplitConfig, y: Optional[np.ndarray] = None,
                  n_classes: Optional[int] = None, *, allow_fewer: bool = False) -> SubjectSplit:
    """Split windows by subject (the algorithm is in the module docstring).

    Args:
        subject: [N] subject id of each window (a list of subject names works too).
        cfg: fractions, explicit subject lists, seed.
        y: [N] class indices; given, the split searches for one that covers every class.
        n_classes: number of classes (with ``y``; default ``y.max() + 1``).
        allow_fewer: with too few subjects, leave test (then validation) empty instead of failing.

    Raises:
        UserError: explicit subjects missing from the data, or too few subjects.
    """
    subject = np.asarray(subject).astype(str)
    uniq = np.unique(subject)  # sorted: the split does not depend on window order
    explicit = set(cfg.val_subjects) | set(cfg.test_subjects)
    unknown = explicit - set(uniq.tolist())
    if unknown:
        raise UserError(f"split: subjects not in the data: {sorted(unknown)}; available: {uniq.tolist()}")
    n_train, n_val, n_test = split_counts(len(uniq), cfg, allow_fewer=allow_fewer)
    fixed_val = sorted(set(cfg.val_subjects))
    fixed_test = sorted(set(cfg.test_subjects))
    pool = np.array([s for s in uniq if s not in explicit], dtype=uniq.dtype)
    k_val = 0 if fixed_val else n_val  # pool subjects going to validation / test
    k_test = 0 if fixed_test else n_test
    labelled = y is not None
    if labelled:
        y = np.asarray(y)
        n_classes = int(n_classes) if n_classes is not None else int(y.max()) + 1
        classes_of = {s: set(np.unique(y[subject == s]).tolist()) for s in uniq}
    rng = np.random.default_rng(cfg.seed)
    best, best_score = None, None
    for _ in range(cfg.max_tries if labelled else 1):
        perm = rng.permutation(len(pool))
        n_pool_train = len(pool) - k_val - k_test
        groups = (pool[perm[:n_pool_train]].tolist(),
                  fixed_val or pool[perm[n_pool_train:n_pool_train + k_val]].tolist(),
                  fixed_test or pool[perm[n_pool_train + k_val:]].tolist())
        if not labelled:
            best = groups
            break
        cover = [len(set().union(*(classes_of[s] for s in g))) for g in groups]
        if n_test == 0:
            cover[2] = n_classes
        score = (cover[0], cover[1] + cover[2])
        if best_score is None or score > best_score:
            best, best_score = groups, score
        if all(c == n_classes for c in cover):
            break
    train_s, val_s, test_s = (sorted(g) for g in best)
    if labelled:
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


# ------------------------------------------------------------------------- resampling over people
def derive_seed(base: int, *parts: int) -> int:
    """A split seed derived from ``base`` (``split.seed``) and e.g. the run seed (and fold): the same
    inputs give the same seed on every machine (``numpy.random.SeedSequence``), so every method
    evaluated with the same seeds gets the same subject splits."""
    return int(np.random.SeedSequence([int(base), *(int(p) for p in parts)]).generate_state(1)[0])


def parse_folds(value: object) -> Optional[object]:
    """``None``/``""``/``0`` = no folds; an int >= 2; or ``"loso"`` (leave one subject out)."""
    if value is None or value == "" or value == 0 or value == "0":
        return None
    if isinstance(value, str) and value.strip().lower() == "loso":
        return "loso"
    try:
        k = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"folds: {value!r} is neither an integer >= 2 nor 'loso'") from None
    if k < 2:
        raise ConfigError(f"folds must be >= 2 (or 'loso'), got {k}")
    return k


def fold_splits(subject: Sequence[str], folds: object, cfg: SplitConfig, y: Optional[np.ndarray] = None,
                n_classes: Optional[int] = None, *, inner_seed: int = 0) -> List[SubjectSplit]:
    """Grouped K-fold over subjects (``folds`` an int >= 2, or ``"loso"``: one fold per subject).

    The sorted subjects are permuted with ``seed`` and cut into K near-equal folds
    (``numpy.array_split``); fold i's subjects are the test subjects of split i. The remaining subjects
    are split into train / validation by :func:`subject_split` (``val_fraction`` of all subjects, at
    least 1, seed ``derive_seed(cfg.seed, inner_seed, i)``). Every subject is a test subject exactly once.

    Raises:
        UserError: K > number of subjects, or a fold that leaves fewer than 2 subjects for train + val.
        ConfigError: a bad ``folds`` value, or explicit val/test subjects (they contradict folds).
    """
    k = parse_folds(folds)
    if k is None:
        raise ConfigError("fold_splits needs folds >= 2 or 'loso'")
    if cfg.val_subjects or cfg.test_subjects:
        raise ConfigError("split.val_subjects / split.test_subjects cannot be combined with folds")
    subject = np.asarray(subject).astype(str)
    uniq = np.unique(subject)
    n = len(uniq)
    k = n if k == "loso" else int(k)
    if k > n:
        raise UserError(f"--folds {k}: the dataset has only {n} subjects")
    groups = np.array_split(uniq[np.random.default_rng(cfg.seed).permutation(n)], k)
    n_val = max(1, int(round(n * cfg.val_fraction))) if cfg.val_fraction > 0 else 1
    out: List[SubjectSplit] = []
    idx = np.arange(len(subject))
    for i, g in enumerate(groups):
        test_s = sorted(g.tolist())
        rest = ~np.isin(subject, test_s)
        n_rest = len(np.unique(subject[rest]))
        if n_rest < 2:
            raise UserError(f"fold {i} leaves {n_rest} subject(s) for train and validation; need at least 2 "
                            f"(use fewer folds)")
        inner_cfg = SplitConfig(val_fraction=min(n_val, n_rest - 1) / n_rest, test_fraction=0.0,
                                seed=derive_seed(cfg.seed, inner_seed, i), max_tries=cfg.max_tries)
        inner = subject_split(subject[rest], inner_cfg, None if y is None else np.asarray(y)[rest], n_classes)
        rest_idx = idx[rest]
        out.append(SubjectSplit(train=rest_idx[inner.train], val=rest_idx[inner.val], test=idx[~rest],
                                subjects={"train": inner.subjects["train"], "val": inner.subjects["val"],
                                          "test": test_s}))
    return out


#: the paper's few-shot protocol: test windows per class (official downstream.py ``--val_samples 20``)
PAPER_TEST_PER_CLASS = 20


def paper_split(y: np.ndarray, subject: Sequence[str], n_classes: int, seed: int,
                test_per_class: int = PAPER_TEST_PER_CLASS) -> SubjectSplit:
    """The paper's split (Cheshmi et al. 2025, official ``downstream.py``): per class, the windows are
    shuffled with ``seed`` and the first ``test_per_class`` are the test windows (half of a class with
    fewer than twice that many, logged); the rest are the training pool (the few-shot draw takes k of them). Windows, not people, are split: one person's
    windows (even overlapping windows of one recording) can be in both. There is no validation part:
    the paper picks the best epoch on the test windows, so ``val`` is ``test`` here. Optimistic by
    construction; ``subjects["shared"]`` lists the people in both parts.
    """
    y = np.asarray(y)
    subject = np.asarray(subject).astype(str)
    rng = np.random.default_rng([int(seed), int(test_per_class)])
    test, train = [], []
    for c in range(n_classes):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        k = test_per_class
        if 2 * k > len(idx):  # keep half of a small class for training rather than none
            k = len(idx) // 2
            log.warning("class %d has only %d windows: %d test windows instead of %d, %d left to train on", c,
                        len(idx), k, test_per_class, len(idx) - k)
        test.append(idx[:k])
        train.append(idx[k:])
    te, tr = np.sort(np.concatenate(test)), np.sort(np.concatenate(train))
    s_tr, s_te = sorted(set(subject[tr])), sorted(set(subject[te]))
    return SubjectSplit(train=tr, val=te, test=te, subjects={"train": s_tr, "val": s_te, "test": s_te,
                                                             "shared": sorted(set(s_tr) & set(s_te))})
