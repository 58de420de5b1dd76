"""Evaluation building blocks: splits, few-shot draws, metrics, CIs, protocols."""

from __future__ import annotations

import math

import numpy as np
import pytest

from crossmodal_har.errors import ConfigError, UserError
from crossmodal_har.evaluate.fewshot import parse_shots, sample_shots
from crossmodal_har.evaluate.metrics import classification_metrics, confusion_matrix, summarize, t_critical
from crossmodal_har.signals.types import PreprocessConfig, WindowSet
from crossmodal_har.splits import SplitConfig, split_counts, subject_split


# ------------------------------------------------------------------------------------------- splits
def _labels(n_subjects=30, per_class=5, n_classes=6, seed=0):
    rng = np.random.default_rng(seed)
    subj, y = [], []
    for s in range(n_subjects):
        for c in range(n_classes):
            k = per_class + int(rng.integers(0, 3))
            subj += [f"u{s:02d}"] * k
            y += [c] * k
    order = rng.permutation(len(y))
    return np.array(subj, dtype=object)[order], np.array(y)[order]


def test_split_is_subject_disjoint_and_complete():
    subj, y = _labels()
    sp = subject_split(subj, SplitConfig(), y, 6)
    sets = [set(subj[sp.train]), set(subj[sp.val]), set(subj[sp.test])]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert len(sp.train) + len(sp.val) + len(sp.test) == len(y)
    assert sorted(np.concatenate([sp.train, sp.val, sp.test]).tolist()) == list(range(len(y)))
    assert [len(s) for s in sets] == [20, 4, 6]  # 65 / 15 / 20 % of 30 subjects
    assert sets[0] == set(sp.subjects["train"]) and sets[2] == set(sp.subjects["test"])


def test_split_deterministic_and_seed_dependent():
    subj, y = _labels()
    a = subject_split(subj, SplitConfig(seed=3), y, 6)
    b = subject_split(subj[::-1], SplitConfig(seed=3), y[::-1], 6)  # window order does not matter
    assert a.subjects == b.subjects
    c = subject_split(subj, SplitConfig(seed=4), y, 6)
    assert c.subjects != a.subjects


def test_split_keeps_rare_class_in_train():
    subj, y = _labels(n_subjects=10)
    rare = np.isin(subj, ["u00", "u01", "u02", "u03"]) | (y != 5)  # class 5 only in 4 subjects
    subj, y = subj[rare], y[rare]
    sp = subject_split(subj, SplitConfig(seed=0), y, 6)
    assert 5 in set(y[sp.train])


def test_split_needs_three_subjects():
    with pytest.raises(UserError, match="at least 3 subjects"):
        split_counts(2, SplitConfig())
    assert split_counts(3, SplitConfig()) == (1, 1, 1)
    with pytest.raises(ConfigError):
        SplitConfig(val_fraction=0.5, test_fraction=0.5).validate()
    # train/val only (train-classifier): no test subjects
    assert split_counts(10, SplitConfig(test_fraction=0.0)) == (8, 2, 0)
    subj, y = _labels(n_subjects=10)
    sp = subject_split(subj, SplitConfig(test_fraction=0.0), y, 6)
    assert len(sp.test) == 0 and len(sp.train) + len(sp.val) == len(y)
    assert not set(subj[sp.train]) & set(subj[sp.val])


def test_split_explicit_subjects_and_unlabelled_pretraining_mode():
    names = [f"p{i:02d}" for i in range(8)]
    sp = subject_split(names, SplitConfig(test_subjects=["p07"], val_fraction=0.25, seed=1))
    assert sp.subjects["test"] == ["p07"] and len(sp.subjects["val"]) == 2 and len(sp.subjects["train"]) == 5
    assert "p07" not in sp.subjects["train"] + sp.subjects["val"]
    with pytest.raises(UserError, match="not in the data"):
        subject_split(names, SplitConfig(val_subjects=["zz"]))
    with pytest.raises(ConfigError, match="both val and test"):
        SplitConfig(val_subjects=["p01"], test_subjects=["p01"]).validate()
    # without labels one permutation decides; same seed, same split
    same = subject_split(names[::-1], SplitConfig(seed=2)).subjects
    assert subject_split(names, SplitConfig(seed=2)).subjects == same
    # pretraining tolerates too few subjects: test, then validation, are left empty
    with pytest.raises(UserError, match="at least 3 subjects"):
        subject_split(names[:2], SplitConfig())
    two = subject_split(names[:2], SplitConfig(), allow_fewer=True).subjects
    assert len(two["train"]) == len(two["val"]) == 1 and two["test"] == []
    assert subject_split(names[:1], SplitConfig(), allow_fewer=True).subjects == {"train": ["p00"], "val": [],
                                                                                  "test": []}
    # a fraction of 0 means no such split
    assert subject_split(names, SplitConfig(val_fraction=0.0)).subjects["val"] == []


# ---------------------------------------------------------------------------------------- few-shot
def test_fewshot_exactly_k_per_class_from_train_subjects_only():
    subj, y = _labels()
    sp = subject_split(subj, SplitConfig(), y, 6)
    for k in (1, 5, 10):
        idx, counts = sample_shots(y, sp.train, k, seed=7, n_classes=6)
        assert np.bincount(y[idx], minlength=6).tolist() == [k] * 6
        assert set(idx) <= set(sp.train.tolist())
        assert set(subj[idx]) <= set(sp.subjects["train"])
        assert len(set(idx.tolist())) == len(idx)
        assert counts == {str(c): k for c in range(6)}
    a, _ = sample_shots(y, sp.train, 5, seed=1, n_classes=6)
    b, _ = sample_shots(y, sp.train, 5, seed=1, n_classes=6)
    c, _ = sample_shots(y, sp.train, 5, seed=2, n_classes=6)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    full, _ = sample_shots(y, sp.train, "all", seed=0, n_classes=6)
    assert np.array_equal(full, np.sort(sp.train))


def test_fewshot_short_class_uses_what_exists():
    y = np.array([0] * 10 + [1] * 2)
    idx, counts = sample_shots(y, np.arange(12), 5, seed=0, n_classes=3)
    assert counts == {"0": 5, "1": 2, "2": 0}
    assert len(idx) == 7


def test_parse_shots():
    assert parse_shots("1,5, all,5") == [1, 5, "all"]
    assert parse_shots(["10", "ALL"]) == [10, "all"]
    for bad in ("0", "x", ""):
        with pytest.raises(UserError):
            parse_shots(bad)


# ------------------------------------------------------------------------------------------ metrics
def test_metrics_hand_computed():
    # true: 0 0 0 0 1 1 2 2 ; pred: 0 0 0 1 1 2 2 0
    y = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    p = np.array([0, 0, 0, 1, 1, 2, 2, 0])
    m = classification_metrics(y, p, 3)
    assert m["confusion_matrix"] == [[3, 1, 0], [0, 1, 1], [1, 0, 1]]
    assert m["accuracy"] == pytest.approx(5 / 8)
    # recalls 3/4, 1/2, 1/2
    assert m["per_class_recall"] == pytest.approx([0.75, 0.5, 0.5])
    assert m["balanced_accuracy"] == pytest.approx((0.75 + 0.5 + 0.5) / 3)
    # precisions 3/4, 1/2, 1/2 -> F1 = 0.75, 0.5, 0.5
    assert m["macro_f1"] == pytest.approx((0.75 + 0.5 + 0.5) / 3)


def test_metrics_absent_class_and_never_predicted():
    # class 2 never occurs in y_true (excluded from balanced accuracy; recall None);
    # class 1 never predicted (F1 = 0, still in macro-F1)
    y = np.array([0, 0, 1, 1])
    p = np.array([0, 0, 0, 2])
    m = classification_metrics(y, p, 3)
    assert m["per_class_recall"] == [1.0, 0.0, None]
    assert m["balanced_accuracy"] == pytest.approx(0.5)
    f1_0 = 2 * (2 / 3) * 1.0 / (2 / 3 + 1.0)  # precision 2/3, recall 1
    assert m["macro_f1"] == pytest.approx((f1_0 + 0 + 0) / 3)  # class 2 predicted once: F1 0, counted
    assert m["accuracy"] == 0.5


def test_metrics_match_sklearn():
    from sklearn.metrics import balanced_accuracy_score, f1_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 200)
    p = np.where(rng.random(200) < 0.6, y, rng.integers(0, 5, 200))
    m = classification_metrics(y, p, 5)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, p))
    assert m["macro_f1"] == pytest.approx(f1_score(y, p, average="macro"))


def test_confusion_rejects_out_of_range():
    with pytest.raises(ValueError):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)


def test_ci_t_distribution():
    # values 0.8, 0.9, 1.0: mean 0.9, sample std 0.1, t(0.975, 2) = 4.302653
    s = summarize([0.8, 0.9, 1.0])
    assert s["mean"] == pytest.approx(0.9)
    assert s["std"] == pytest.approx(0.1)
    half = 4.302652729911275 * 0.1 / math.sqrt(3)
    assert s["ci95_low"] == pytest.approx(0.9 - half)
    assert s["ci95_high"] == pytest.approx(0.9 + half)
    assert t_critical(3) == pytest.approx(4.302652729911275)
    one = summarize([0.7])
    assert one["std"] == 0.0 and one["ci95_low"] is None and one["n"] == 1
    assert summarize([0.5, float("nan"), 0.7])["n"] == 2


# ---------------------------------------------------------------------------------------- protocols
def _toy_windowset(n_subjects=6, per_class=8, seed=0) -> WindowSet:
    """3 separable classes: static (gravity on z), 2 Hz and 4 Hz oscillation; [N, 250, 6] in g/rad/s."""
    rng = np.random.default_rng(seed)
    t = np.arange(250) / 50.0
    xs, ys, ss = [], [], []
    for s in range(n_subjects):
        for c in range(3):
            for _ in range(per_class):
                x = rng.normal(0, 0.02, (250, 6))
                x[:, 2] += 1.0
                if c > 0:
                    f = 2.0 * c
                    x[:, 0] += 0.5 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6))
                    x[:, 4] += 1.0 * np.cos(2 * np.pi * f * t)
                xs.append(x)
                ys.append(c)
                ss.append(f"s{s}")
    n = len(ys)
    return WindowSet(x=np.array(xs, np.float32), y=np.array(ys), subject=np.array(ss, dtype=object),
                     recording=np.array(ss, dtype=object), start_s=np.zeros(n), end_s=np.full(n, 5.0),
                     class_names=["still", "slow", "fast"], preprocess=PreprocessConfig(normalization="none"))


def _tiny_fit_cfg(**kw):
    from crossmodal_har.evaluate.protocol_config import FinetuneConfig, FitConfig, ProbeConfig

    return FitConfig(supervised=FinetuneConfig(epochs=6, min_steps_per_epoch=4, batch_size=16, lr=3e-3, **kw),
                     finetune=FinetuneConfig(epochs=2, min_steps_per_epoch=2, batch_size=16, lr=1e-3, backbone_lr=1e-4),
                     linear_probe=ProbeConfig(steps=60, eval_every=10))


@pytest.mark.slow  # imports transformers (PatchTST: batch-norm buffers make eval mode observable)
def test_linear_probe_keeps_encoder_frozen(monkeypatch):
    import torch

    from crossmodal_har.evaluate import fitting
    from crossmodal_har.evaluate.protocols import EncoderSource, fit_protocol

    ws = _toy_windowset()
    source = EncoderSource.random("patchtst-tiny", ws.preprocess)
    torch.manual_seed(0)
    reference = source.build()
    source._state = {k: v.clone() for k, v in reference.state_dict().items()}  # a "pretrained" encoder
    groups_seen = []
    real = fitting.build_optimizer

    def spy(groups, wd):
        groups_seen.append([p for g in groups for p in g["params"]])
        return real(groups, wd)

    monkeypatch.setattr(fitting, "build_optimizer", spy)
    fitted = fit_protocol("linear-probe", source, ws.subset(np.arange(0, len(ws), 2)),
                          ws.subset(np.arange(1, len(ws), 2)), _tiny_fit_cfg(), seed=0, progress=False)
    enc = fitted.module.encoder
    after = enc.state_dict()
    assert all(torch.equal(after[k], v) for k, v in source._state.items())  # bit-identical
    assert all(not p.requires_grad for p in enc.parameters())
    assert not enc.training
    fitted.module.train()  # asking for train mode leaves the frozen encoder in eval mode
    assert not enc.training and fitted.module.head.training
    enc_ids = {id(p) for p in enc.parameters()}
    assert groups_seen and all(id(p) not in enc_ids for ps in groups_seen for p in ps)
    assert fitted.val_metrics["balanced_accuracy"] > 0.6  # a linear head on random features separates these


def test_finetune_uses_two_learning_rates_and_supervised_is_random_init(monkeypatch):
    import torch

    from crossmodal_har.evaluate import fitting
    from crossmodal_har.evaluate.protocols import EncoderSource, fit_protocol

    ws = _toy_windowset(n_subjects=3, per_class=4)
    source = EncoderSource.random("convgru-tiny", ws.preprocess)
    torch.manual_seed(123)
    source._state = {k: torch.full_like(v, 0.01) if v.is_floating_point() else v
                     for k, v in source.build().state_dict().items()}
    seen = []
    real = fitting.build_optimizer
    monkeypatch.setattr(fitting, "build_optimizer", lambda g, wd: seen.append(g) or real(g, wd))
    cfg = _tiny_fit_cfg()
    ft = fit_protocol("finetune", source, ws, ws, cfg, seed=0, progress=False)
    lrs = sorted({g["base_lr"] for g in seen[-1]})
    assert lrs == [1e-4, 1e-3]
    sup = fit_protocol("supervised", source, ws, ws, cfg, seed=0, progress=False)
    # supervised starts from random init, not from the (constant) "pretrained" weights
    w_sup = [v for k, v in sup.module.encoder.state_dict().items() if v.is_floating_point() and v.numel() > 10]
    assert any(v.std() > 0.02 for v in w_sup)
    assert ft.module(torch.as_tensor(ws.x[:4])).shape == (4, 3)


def test_supervised_learns_and_knn_works():
    from crossmodal_har.evaluate.protocols import EncoderSource, fit_protocol

    ws = _toy_windowset()
    tr, va = ws.subset(np.flatnonzero(np.isin(ws.subject, ["s0", "s1", "s2", "s3"]))), \
        ws.subset(np.flatnonzero(np.isin(ws.subject, ["s4", "s5"])))
    source = EncoderSource.random("convgru-tiny", ws.preprocess)
    sup = fit_protocol("supervised", source, tr, va, _tiny_fit_cfg(), seed=0, progress=False)
    acc = (sup.predict(va.x) == va.y).mean()
    assert acc > 0.9
    knn = fit_protocol("knn", source, tr, va, _tiny_fit_cfg(), seed=0, progress=False)
    assert knn.predict_scores(va.x).shape == (len(va), 3)
    assert (knn.predict(va.x) == va.y).mean() > 0.6


def test_cached_frozen_embeddings_give_the_same_classifier():
    import torch

    from crossmodal_har.evaluate.protocols import EncoderSource, fit_protocol
    from crossmodal_har.models.classifier import embed_windows

    ws = _toy_windowset(n_subjects=3, per_class=4)
    source = EncoderSource.random("convgru-tiny", ws.preprocess)
    torch.manual_seed(5)
    source._state = {k: v.clone() for k, v in source.build().state_dict().items()}
    tr, va = ws.subset(np.arange(0, len(ws), 2)), ws.subset(np.arange(1, len(ws), 2))
    enc = source.build()
    z = embed_windows(enc, ws.x, "none")
    a = fit_protocol("linear-probe", source, tr, va, _tiny_fit_cfg(), seed=0, progress=False)
    b = fit_protocol("linear-probe", source, tr, va, _tiny_fit_cfg(), seed=0, progress=False,
                     frozen_embeddings=(z[::2], z[1::2]), encoder=enc)
    assert np.allclose(a.predict_scores(va.x), b.predict_scores(va.x), atol=1e-4)
    with torch.no_grad():
        cached = b.module.head(torch.as_tensor(z[1::2])).numpy()
    assert np.allclose(cached, b.predict_scores(va.x), atol=1e-4)


def test_finetune_starts_from_the_linear_probe_head():
    """LP-FT: with learning rates ~0, fine-tuning returns the linear probe's classifier; the
    encoder stays trainable (not frozen by the probe run)."""
    from crossmodal_har.evaluate.protocol_config import FinetuneConfig, FitConfig, ProbeConfig
    from crossmodal_har.evaluate.protocols import EncoderSource, fit_protocol

    ws = _toy_windowset(n_subjects=3, per_class=4)
    tr, va = ws.subset(np.arange(0, len(ws), 2)), ws.subset(np.arange(1, len(ws), 2))
    source = EncoderSource.random("convgru-tiny", ws.preprocess)
    frozen_lr = FinetuneConfig(epochs=1, min_steps_per_epoch=1, batch_size=8, lr=1e-12, backbone_lr=1e-12,
                            augment=False, weight_decay=0.0)
    cfg = FitConfig(finetune=frozen_lr, linear_probe=ProbeConfig(steps=60, eval_every=10))
    probe = fit_protocol("linear-probe", source, tr, va, cfg, seed=0, progress=False)
    ft = fit_protocol("finetune", source, tr, va, cfg, seed=0, progress=False)
    assert np.allclose(ft.predict_scores(va.x), probe.predict_scores(va.x), atol=1e-3)
    assert all(p.requires_grad for p in ft.module.encoder.parameters())
    no_lpft = FitConfig(finetune=FinetuneConfig(**{**frozen_lr.__dict__, "init_head_from_probe": False}),
                        linear_probe=cfg.linear_probe)
    cold = fit_protocol("finetune", source, tr, va, no_lpft, seed=0, progress=False)
    assert not np.allclose(cold.predict_scores(va.x), probe.predict_scores(va.x), atol=1e-3)


def test_end_to_end_training_decays_kernels_only(monkeypatch):
    """Issue 12, item 7: like pretraining (train.methods param_groups), finetune and supervised put
    weight decay on kernels (ndim >= 2) only, none on biases and norm weights."""
    from crossmodal_har.evaluate import fitting
    from crossmodal_har.evaluate.protocols import EncoderSource, fit_protocol

    ws = _toy_windowset(n_subjects=3, per_class=4)
    source = EncoderSource.random("convgru-tiny", ws.preprocess)
    seen = []
    real = fitting.build_optimizer
    monkeypatch.setattr(fitting, "build_optimizer", lambda g, wd: seen.append((g, wd)) or real(g, wd))
    cfg = _tiny_fit_cfg()
    for protocol in ("finetune", "supervised"):
        fit_protocol(protocol, source, ws, ws, cfg, seed=0, progress=False)
        groups, wd = seen[-1]
        assert wd > 0
        n_small = n_big = 0
        for g in groups:
            for p in g["params"]:
                if p.ndim >= 2:
                    n_big += 1
                    assert g.get("weight_decay", wd) == wd
                else:
                    n_small += 1
                    assert g.get("weight_decay", wd) == 0.0, (protocol, p.shape)
        assert n_small and n_big
