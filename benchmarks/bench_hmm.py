"""How each smoother changes balanced accuracy on held-out HAPT subjects (issue 14, item 6).

    python benchmarks/bench_hmm.py                      # seeds 0,1; patchtst-tiny supervised, 3 epochs
    python benchmarks/bench_hmm.py --seeds 0,1,2 --epochs 5 --test-subjects 6

Per seed: ``--test-subjects`` subjects are held out (drawn with the seed); a generic dataset made of
the other subjects' recordings (links, not copies) is given to ``crossmodal-har train-classifier``
(which splits it further into training/validation subjects and stores the HMM in the bundle);
then ``crossmodal-har predict`` runs over every held-out recording, whole and in order (unlabelled
stretches between activities included, as on a real device), with ``--smooth 0`` (raw),
``--smooth majority:5`` and ``--smooth hmm``. Scored: the ok windows lying wholly inside one labelled
activity, balanced accuracy (mean recall over the classes present) over all held-out recordings.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from crossmodal_har.cli import main
from crossmodal_har.signals import hapt
from crossmodal_har.signals.datasets import default_cache_dir

SMOOTHERS = {"raw": "0", "majority:5": "majority:5", "hmm": "hmm"}


def balanced_accuracy(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean([(p[y == c] == c).mean() for c in np.unique(y)]))


def score(pred: pd.DataFrame, segs: pd.DataFrame, names: list):
    ok = pred[pred["status"] == "ok"]
    s, e = ok["start"].to_numpy(), ok["end"].to_numpy()
    truth = np.full(len(ok), -1)
    for seg in segs.itertuples():
        inside = (s >= seg.start - 1e-9) & (e <= seg.end + 1e-9)
        truth[inside] = names.index(seg.label)
    keep = truth >= 0
    return truth[keep], ok["label"].to_numpy()[keep]


def run_seed(seed: int, src: Path, work: Path, args) -> dict:
    labels = pd.read_csv(src / "labels.csv", dtype={"subject": str})
    meta = json.loads((src / "dataset.json").read_text())
    names = list(meta["classes"])
    labels = labels[labels["label"].isin(names)]
    subjects = sorted(labels["subject"].unique())
    rng = np.random.default_rng(seed)
    test = sorted(rng.choice(subjects, args.test_subjects, replace=False).tolist())
    ds = work / f"train_s{seed}"
    (ds / "recordings").mkdir(parents=True)
    (ds / "dataset.json").write_text(json.dumps(meta))
    train_labels = labels[~labels["subject"].isin(test)]
    train_labels.to_csv(ds / "labels.csv", index=False)
    for rec in sorted(train_labels["recording"].unique()):
        os.symlink(src / "recordings" / f"{rec}.parquet", ds / "recordings" / f"{rec}.parquet")
    bundle = work / f"model_s{seed}"
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        rc = main(["-q", "train-classifier", "--dataset", str(ds), "--encoder", "random", "--model", args.model,
                   "--protocol", "supervised", "--epochs", str(args.epochs), "--seed", str(seed),
                   "--out", str(bundle), "--no-progress", "--cache-dir", str(work / "cache")])
    assert rc == 0
    fit_s = time.perf_counter() - t0
    hmm = json.loads((bundle / "bundle.json").read_text())["hmm"]
    ys = {k: [] for k in SMOOTHERS}
    ps = {k: [] for k in SMOOTHERS}
    test_labels = labels[labels["subject"].isin(test)]
    for rec in sorted(test_labels["recording"].unique()):
        segs = test_labels[test_labels["recording"] == rec]
        for key, flag in SMOOTHERS.items():
            out = work / f"p_s{seed}_{rec}_{key.replace(':', '')}.csv"
            with contextlib.redirect_stdout(io.StringIO()):
                rc = main(["-q", "predict", "--model", str(bundle), "--input",
                           str(src / "recordings" / f"{rec}.parquet"), "--out", str(out), "--smooth", flag,
                           "--acc-unit", "g", "--gyro-unit", "rad/s", "--time-unit", "s", "--threads", "1"])
            assert rc == 0
            pred = pd.read_csv(out, keep_default_na=False)
            y, lab = score(pred, segs, names)
            ys[key].append(y)
            ps[key].append(np.array([names.index(v) for v in lab]))
    res = {"seed": seed, "test_subjects": test, "fit_s": round(fit_s, 1),
           "hmm_transitions_counted": hmm["transitions_counted"],
           "self_transition_mean": float(np.mean(np.diag(np.array(hmm["transitions"]))))}
    for key in SMOOTHERS:
        y, p = np.concatenate(ys[key]), np.concatenate(ps[key])
        res[key] = {"balanced_accuracy": round(balanced_accuracy(y, p), 4), "accuracy": round(float((y == p).mean()), 4),
                    "windows": int(len(y))}
    return res


def main_(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--model", default="patchtst-tiny")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--test-subjects", type=int, default=6)
    ap.add_argument("--hapt", default=None, help="converted HAPT dir (default: the cache's, via hapt.convert_hapt)")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--workdir", default=None, help="keep bundles and predictions here (default: a temporary dir)")
    args = ap.parse_args(argv)
    if args.hapt:
        src = Path(args.hapt)
    else:
        src = Path(hapt.convert_hapt(default_cache_dir(), progress=False))
    results = []
    with (contextlib.nullcontext(args.workdir) if args.workdir else
          tempfile.TemporaryDirectory(prefix="bench_hmm_")) as tmp:
        for seed in [int(s) for s in args.seeds.split(",")]:
            r = run_seed(seed, src, Path(tmp), args)
            results.append(r)
            print(json.dumps(r), flush=True)
    print(f"\n{'seed':>4} | {'windows':>7} | " + " | ".join(f"{k:>10}" for k in SMOOTHERS) + "   (balanced accuracy)")
    for r in results:
        print(f"{r['seed']:>4} | {r['raw']['windows']:>7} | " +
              " | ".join(f"{r[k]['balanced_accuracy']:>10.3f}" for k in SMOOTHERS))
    if len(results) > 1:
        print("mean |         | " + " | ".join(f"{np.mean([r[k]['balanced_accuracy'] for r in results]):>10.3f}"
                                               for k in SMOOTHERS))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main_())
