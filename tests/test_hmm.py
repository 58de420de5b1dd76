"""HMM smoothing (issue 14 item 6): Viterbi and transition estimates against brute force, the bundle's
``hmm`` section and its schema check, and ``predict --smooth hmm`` end to end."""

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from crossmodal_har.cli import main
from crossmodal_har.errors import DataError
from crossmodal_har.models.smoothing import (StreamingViterbi, estimate_prior, estimate_transitions,
                                            majority_smooth, viterbi)
from helpers.bundles import CLASSES, UNIT_KEYS, UNITS, make_bundle, make_recording, predict_recording


def brute_force(E, logA, logpi):
    N, C = E.shape
    best, arg = -np.inf, None
    for path in itertools.product(range(C), repeat=N):
        s = logpi[path[0]] + sum(E[t, path[t]] for t in range(N)) + \
            sum(logA[path[t - 1], path[t]] for t in range(1, N))
        if s > best + 1e-12:
            best, arg = s, path
    return np.array(arg)


@pytest.mark.parametrize("seed", range(12))
def test_viterbi_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    C, N = int(rng.integers(2, 4)), int(rng.integers(1, 7))
    A = rng.dirichlet(np.ones(C) * 0.7, size=C)
    pi = rng.dirichlet(np.ones(C))
    P = rng.dirichlet(np.ones(C) * 0.5, size=N)
    got = viterbi(np.log(P), np.log(A), np.log(pi))
    assert got.tolist() == brute_force(np.log(P), np.log(A), np.log(pi)).tolist()


def test_viterbi_is_numerically_safe_with_zeros_and_long_chains():
    A = np.array([[0.999, 0.001, 0.0], [0.001, 0.998, 0.001], [0.0, 0.5, 0.5]])
    pi = np.array([1.0, 0.0, 0.0])
    P = np.tile([0.6, 0.4, 0.0], (50_000, 1))  # zero probabilities and a chain whose raw score is -1e5
    with np.errstate(divide="ignore"):
        path = viterbi(np.log(P), np.log(A), np.log(pi))
    assert (path == 0).all()
    # a single strong contrary window is absorbed by a sticky chain; a long one is not
    P = np.full((40, 2), [0.7, 0.3])
    P[10] = [0.2, 0.8]
    P[25:35] = [0.2, 0.8]
    A2 = np.array([[0.95, 0.05], [0.05, 0.95]])
    path = viterbi(np.log(P), np.log(A2), np.log([0.5, 0.5]))
    assert path[10] == 0 and (path[26:34] == 1).all()


def test_streaming_viterbi_equals_one_shot_and_breaks_at_bad_windows():
    rng = np.random.default_rng(3)
    C, N = 4, 300
    A = rng.dirichlet(np.ones(C) * 0.3, size=C) * 0.3 + np.eye(C) * 0.7
    pi = rng.dirichlet(np.ones(C))
    P = rng.dirichlet(np.ones(C) * 0.6, size=N)
    ok = rng.random(N) > 0.05
    ok[100:110] = False
    expect = np.full(N, -1)
    idx = np.flatnonzero(ok)
    runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
    for r in runs:
        expect[r] = viterbi(np.log(P[r]), np.log(A), np.log(pi))
    for pieces in ([N], [1] * N, [7, 50, 1, 242], [150, 150]):
        v = StreamingViterbi(A, pi)
        out, i = [], 0
        for k in pieces:
            out.append(v.push(P[i:i + k].argmax(1), ok[i:i + k], P[i:i + k]))
            i += k
        out.append(v.finish())
        got = np.concatenate(out)
        assert got.tolist() == expect.tolist()
    assert StreamingViterbi(A, pi).bp_dtype == np.uint8


def test_estimate_transitions_and_prior_add_one():
    seqs = [np.array([0, 0, 1, 1, 1]), np.array([2]), np.array([1, 0])]
    A = estimate_transitions(seqs, 3, prior=1.0)
    counts = np.array([[1, 1, 0], [1, 2, 0], [0, 0, 0]], float) + 1.0
    assert np.allclose(A, counts / counts.sum(1, keepdims=True))
    assert np.allclose(A[2], 1 / 3)  # never a source: uniform
    pi = estimate_prior(seqs, 3, prior=1.0)
    assert np.allclose(pi, (np.array([3, 4, 1]) + 1.0) / 11.0)
    with pytest.raises(ValueError):
        estimate_transitions([np.array([0, 3])], 3)
    with pytest.raises(ValueError):
        estimate_transitions(seqs, 3, prior=0.0)


# ------------------------------------------------------------------------- bundle and predict

@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("hmm")
    bundle = make_bundle(d / "bundle")
    meta = json.loads((bundle / "bundle.json").read_text())
    C = len(CLASSES)
    A = np.full((C, C), 0.02 / (C - 1)) + np.eye(C) * (0.98 - 0.02 / (C - 1))
    meta["hmm"] = {"transitions": A.tolist(), "prior": [1 / C] * C, "pseudo_count": 1.0,
                   "source": "test"}
    (bundle / "bundle.json").write_text(json.dumps(meta))
    return {"bundle": bundle, "plain": make_bundle(d / "plain"), "csv": make_recording(d / "rec.csv"), "dir": d}


def _meta_with(env, hmm):
    from crossmodal_har.models.bundle import parse_bundle_file

    meta = json.loads((env["bundle"] / "bundle.json").read_text())
    meta["hmm"] = hmm
    return parse_bundle_file(meta, env["dir"] / "bundle.json")


def test_bundle_hmm_section_is_validated(env):
    from crossmodal_har.models.bundle import bundle_hmm, read_bundle

    b = read_bundle(env["bundle"], with_model=False)
    A, pi = bundle_hmm(b)
    assert A.shape == (3, 3) and np.allclose(A.sum(1), 1) and np.allclose(pi.sum(), 1)
    assert bundle_hmm(read_bundle(env["plain"], with_model=False)) is None
    good = {"transitions": A.tolist(), "prior": pi.tolist()}
    for bad, words in [
        ({**good, "transitions": A[:2].tolist()}, "3 x 3"),
        ({**good, "transitions": (A * 0.9).tolist()}, "sum to 1"),
        ({**good, "prior": [0.5, 0.5]}, "3 numbers"),
        ({**good, "prior": [1.5, -0.25, -0.25]}, "[0, 1]"),
        ({**good, "transitions": [[float("nan")] * 3] * 3}, "finite"),
        ({**good, "extra": 1}, "unknown key"),
        ({"prior": pi.tolist()}, "missing key 'transitions'"),
        ([1, 2], "expected a JSON object"),
    ]:
        with pytest.raises(DataError, match="hmm"):
            try:
                _meta_with(env, bad)
            except DataError as exc:
                assert words in str(exc), (words, str(exc))
                raise


def predict(env, bundle, out, **keys):
    res = predict_recording(bundle, env["csv"], out, **UNIT_KEYS, **keys)
    assert res.summary_path == out.with_name(out.stem + ".summary.json")
    return pd.read_csv(out, keep_default_na=False), json.loads(res.summary_path.read_text())


def test_the_bundle_owns_its_smoother(env):
    from crossmodal_har.errors import UserError
    from crossmodal_har.models.bundle import read_bundle
    from crossmodal_har.models.smoothing import StreamingSmoother

    b = read_bundle(env["bundle"], with_model=False)
    hmm = b.smoother("hmm")
    assert isinstance(hmm, StreamingViterbi) and hmm.changes_labels
    assert np.allclose(np.exp(hmm.logA), json.loads((env["bundle"] / "bundle.json").read_text())["hmm"]["transitions"])
    for n, h, changes in ((0, 0, False), (1, 0, False), (5, 2, True)):
        m = b.smoother(n)
        assert isinstance(m, StreamingSmoother) and m.h == h and m.changes_labels == changes and m.C == len(CLASSES)
    with pytest.raises(UserError, match="no hmm section") as e:
        read_bundle(env["plain"], with_model=False).smoother("hmm")
    assert "train-classifier" in str(e.value) and "\n" not in str(e.value)


def test_predict_smooth_hmm(env):
    d = env["dir"]
    raw, _ = predict(env, env["bundle"], d / "raw.csv")
    hmm, s = predict(env, env["bundle"], d / "hmm.csv", smooth="hmm", chunk_rows=997)
    hmm2, _ = predict(env, env["bundle"], d / "hmm2.csv", smooth="hmm", chunk_rows=1000000)
    assert (d / "hmm.csv").read_bytes() == (d / "hmm2.csv").read_bytes()
    assert s["smooth"] == "hmm"
    assert hmm["status"].tolist() == raw["status"].tolist()
    assert hmm["label_raw"].tolist() == raw["label"].tolist()
    bad = hmm["status"] != "ok"
    assert (hmm.loc[bad, "label"] == "").all()
    # the same Viterbi, chain by chain, over the written probabilities
    P = hmm[[f"p_{c}" for c in CLASSES]].replace("", np.nan).astype(float).to_numpy()
    ok = ~bad.to_numpy()
    A = np.array(json.loads((env["bundle"] / "bundle.json").read_text())["hmm"]["transitions"])
    v = StreamingViterbi(A, np.full(3, 1 / 3))
    expect = np.concatenate([v.push(np.zeros(len(ok), int), ok, np.nan_to_num(P)), v.finish()])
    names = np.array(CLASSES + [""])
    assert hmm["label"].tolist() == names[expect].tolist()
    # majority stays as it was, by number and by name
    m3, _ = predict(env, env["bundle"], d / "m3.csv", smooth="3")
    mj, _ = predict(env, env["bundle"], d / "mj.csv", smooth="majority:3")
    assert m3["label"].tolist() == mj["label"].tolist()


def test_predict_smooth_hmm_without_hmm_section_refuses(env, capsys):
    rc = main(["predict", "--model", str(env["plain"]), "--input", str(env["csv"]), "--out",
               str(env["dir"] / "no.csv"), *UNITS, "--smooth", "hmm"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "hmm" in err and "train-classifier" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_train_classifier_stores_the_hmm_and_predict_uses_it(tmp_path):
    from helpers.bundles import train_bundle
    from test_bundle_export import make_dataset

    from crossmodal_har.models.bundle import bundle_hmm, read_bundle

    ds = make_dataset(tmp_path / "ds")
    out = tmp_path / "model"
    assert not train_bundle(ds, out, encoder="random", model="patchtst-tiny", protocol="knn").skipped_recordings
    b = read_bundle(out, with_model=False)
    A, pi = bundle_hmm(b)
    C = len(b.class_names)
    assert A.shape == (C, C) and np.allclose(A.sum(1), 1) and np.isclose(pi.sum(), 1)
    h = b.meta["hmm"]
    assert h["pseudo_count"] == 1.0 and h["sequences"] == len(b.meta["provenance"]["subjects"]["train"])
    # postures hold for many windows: staying is far likelier than switching
    assert (np.diag(A) > 0.8).all()
    rec = tmp_path / "new.csv"
    pd.read_csv(ds / "recordings" / "r0.csv").to_csv(rec, index=False)
    assert predict_recording(out, rec, tmp_path / "p.csv", smooth="hmm").summary["smooth"] == "hmm"
    p = pd.read_csv(tmp_path / "p.csv", keep_default_na=False)
    assert "label_raw" in p.columns and (p.loc[p["status"] == "ok", "label"] != "").all()


def test_smooth_flag_values(env, capsys):
    from crossmodal_har.infer.predict_config import parse_smooth

    assert parse_smooth("0") == 0 and parse_smooth("5") == 5 and parse_smooth("majority") == 5
    assert parse_smooth("majority:7") == 7 and parse_smooth("HMM") == "hmm"
    rc = main(["predict", "--model", str(env["bundle"]), "--input", str(env["csv"]), "--out",
               str(env["dir"] / "x.csv"), *UNITS, "--smooth", "kalman"])
    assert rc == 2 and "--smooth" in capsys.readouterr().err
    assert viterbi(np.empty((0, 2)), np.log(np.full((2, 2), 0.5)), np.log([0.5, 0.5])).shape == (0,)
