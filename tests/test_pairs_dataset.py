"""``crossmodal-har pairs-dataset``: a paired corpus's IMU and labels as a labelled dataset (the demo's and
the placement study's held-out evaluation): units from each session.json, the chosen site's file, labels
and subjects kept, windows identical to the paired reader's, and an unrelated --out never replaced."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from crossmodal_har.cli import main
from crossmodal_har.pairs.sources import iter_paired_sessions
from crossmodal_har.signals.datasets import load_labelled
from helpers.sessions import make_session


def test_pairs_dataset_reads_each_session_in_its_units_and_keeps_labels(tmp_path, capsys):
    src = tmp_path / "src"
    make_session(src, "a", seconds=16, fps=10, seed=1, session_json={"subject": "p1"})
    d = make_session(src, "b", seconds=16, fps=10, seed=2, session_json={"subject": "p2", "acc_unit": "m/s^2"})
    imu = pd.read_csv(d / "imu.csv")
    imu[["acc_x", "acc_y", "acc_z"]] *= 9.80665  # b's file is in m/s^2, as its session.json says
    imu.to_csv(d / "imu.csv", index=False)
    (d / "imu-waist.csv").write_bytes((d / "imu.csv").read_bytes())
    (src / "labels.csv").write_text("session,start,end,label,subject\na,0,6,walk,p1\na,6,16,sit,p1\nb,0,16,walk,p2\n")
    out = tmp_path / "ds"
    assert main(["-q", "pairs-dataset", "--src", str(src), "--out", str(out)]) == 0
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["acc_unit"] == "g" and meta["source"] == str(src)
    labels = pd.read_csv(out / "labels.csv")
    assert list(labels["recording"]) == ["a", "a", "b"] and list(labels["subject"]) == ["p1", "p1", "p2"]
    ws = load_labelled(out, progress=False)
    assert sorted(set(ws.subject)) == ["p1", "p2"] and set(ws.class_names) == {"sit", "walk"}
    # b's windows are in g like a's (|acc| about 1), not 9.8
    b = ws.x[ws.recording == "b"]
    assert len(b) and 0.5 < float(np.linalg.norm(b[:, :, :3], axis=2).mean()) < 1.5
    specs = {s.name: s for s in iter_paired_sessions(src)}
    np.testing.assert_allclose(pd.read_csv(out / "recordings" / "b.csv")[["acc_x", "acc_y", "acc_z"]].to_numpy(),
                               specs["b"].load_imu().data[:, :3], rtol=1e-6)
    # the same source again replaces it; an unrelated existing --out is refused, untouched
    assert main(["-q", "pairs-dataset", "--src", str(src), "--out", str(out)]) == 0
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    capsys.readouterr()
    assert main(["-q", "pairs-dataset", "--src", str(src), "--out", str(other)]) == 2
    assert "is not a dataset made from" in capsys.readouterr().err and (other / "notes.txt").read_text() == "keep"
    # a site's file: only b has imu-waist.csv, so a fails naming its missing file
    capsys.readouterr()
    assert main(["-q", "pairs-dataset", "--src", str(src), "--out", str(tmp_path / "w"), "--imu-site", "waist"]) == 2
    assert str(src / "a" / "imu-waist.csv") in capsys.readouterr().err
