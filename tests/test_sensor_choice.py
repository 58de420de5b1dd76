"""Choose a sensor (issue 19 item 4): an APDM file with six Opals is read at any of them by
``predict --sensor`` and ``embed --sensor``, by ``dataset.json``'s ``sensor`` and by a paired
session's ``session.json`` ``sensor``; an unknown label is refused in one line listing the labels.
The real six-Opal file is not among ../shared/data/devices (see its PROVENANCE.md); these files are
written in APDM's v5 layout (tests/helpers), which tests/test_devices_apdm.py checks against skdh."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from crossmodal_har.cli import main
from crossmodal_har.errors import DataError, UserError
from crossmodal_har.signals.devices.apdm import ApdmReader
from crossmodal_har.signals.recording import read_recording
from crossmodal_har.signals.units import Units
from helpers.bundles import embed_recording, make_bundle, make_recording, predict_recording
from helpers.files_actigraph_apdm_empatica import apdm_sensor, write_apdm_v5

pytest.importorskip("h5py")

RATE = 128
T0_US = 1_717_000_000_000_000
LABELS = ["Lumbar", "Sternum", "Left Wrist", "Right Wrist", "Left Foot", "Right Foot"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("opals")
    h5 = d / "six.h5"
    write_apdm_v5(h5, [apdm_sensor(f"XI-{i}", lab, RATE * 40, RATE, T0_US, 10 * i) for i, lab in enumerate(LABELS)])
    return {"d": d, "h5": h5, "bundle": make_bundle(d / "bundle")}


def test_read_recording_reads_the_chosen_sensor(env):
    for label in ("Right Wrist", "left foot", "XI-1"):
        rec = read_recording(env["h5"], Units(), sensor=label)
        reader = ApdmReader(env["h5"], sensor=label)
        t, x = zip(*reader.iter_chunks(10_000))
        assert np.array_equal(rec.data, np.concatenate(x)) and np.array_equal(rec.t, np.concatenate(t))
    assert not np.array_equal(read_recording(env["h5"], Units(), sensor="Left Wrist").data,
                              read_recording(env["h5"], Units(), sensor="Right Wrist").data)


def test_predict_and_embed_with_a_sensor(env):
    d = env["d"]
    wrist = predict_recording(env["bundle"], env["h5"], d / "wrist.csv", sensor="Right Wrist", **{"calibration.mode": "off"})
    lumbar = predict_recording(env["bundle"], env["h5"], d / "lumbar.csv", **{"calibration.mode": "off"})
    assert wrist.summary["device"]["device"]["label"] == "Right Wrist"
    assert lumbar.summary["device"]["device"]["label"] == "Lumbar"  # the default of a file with a lumbar Opal
    pw, pl = pd.read_csv(d / "wrist.csv"), pd.read_csv(d / "lumbar.csv")
    assert len(pw) == len(pl) > 5 and not np.allclose(pw["p_rest"], pl["p_rest"], equal_nan=True)
    e1 = embed_recording(env["h5"], d / "wrist.npy", model=env["bundle"], sensor="Right Wrist")
    e2 = embed_recording(env["h5"], d / "foot.npy", model=env["bundle"], sensor="Left Foot")
    assert e1.windows == e2.windows > 5
    assert not np.allclose(np.load(d / "wrist.npy"), np.load(d / "foot.npy"))


def test_unknown_sensor_lists_the_labels_in_one_line(env, capsys):
    rc = main(["predict", "--model", str(env["bundle"]), "--input", str(env["h5"]), "--out",
               str(env["d"] / "x.csv"), "--sensor", "Left Knee"])
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith(("INFO", "WARNING"))]
    assert rc == 2 and len(err) == 1 and "Left Knee" in err[0] and str(env["h5"]) in err[0]
    assert all(lab in err[0] for lab in LABELS)
    rc = main(["embed", "--model", str(env["bundle"]), "--input", str(env["h5"]), "--out",
               str(env["d"] / "x.npy"), "--sensor", "Left Knee"])
    assert rc == 2 and "Right Foot" in capsys.readouterr().err
    csv = make_recording(env["d"] / "table.csv", seconds=30.0)
    with pytest.raises(UserError, match="a table holds one sensor"):
        read_recording(csv, Units(), sensor="Lumbar")


def test_dataset_json_and_session_json_choose_the_sensor(env, tmp_path):
    from crossmodal_har.pairs.sources import iter_sessions
    from crossmodal_har.signals.datasets import load_generic
    from crossmodal_har.signals.types import PreprocessConfig

    root = tmp_path / "ds"
    (root / "recordings").mkdir(parents=True)
    (root / "recordings" / "r1.h5").symlink_to(env["h5"])
    (root / "labels.csv").write_text("recording,start,end,label\nr1,1717000000,1717000040,walk\n")
    windows = {}
    for label in ("Left Foot", "Sternum"):
        (root / "dataset.json").write_text(json.dumps({"acc_unit": "g", "gyro_unit": "rad/s", "time_unit": "s",
                                                       "sensor": label}))
        windows[label] = load_generic(root, PreprocessConfig(), progress=False).x
    n = min(len(windows["Sternum"]), len(windows["Left Foot"]))
    assert n > 5 and not np.allclose(windows["Sternum"][:n], windows["Left Foot"][:n])
    (root / "dataset.json").write_text(json.dumps({"acc_unit": "g", "gyro_unit": "rad/s", "time_unit": "s",
                                                   "sensor": "Chest"}))
    with pytest.raises(DataError, match="no single sensor 'Chest'.*Lumbar.*Right Foot"):
        load_generic(root, PreprocessConfig(), progress=False)

    sess = tmp_path / "pairs" / "s1"
    sess.mkdir(parents=True)
    (sess / "video.mp4").write_bytes(b"")
    (sess / "imu.h5").symlink_to(env["h5"])
    (sess / "session.json").write_text(json.dumps({"sensor": "Left Wrist"}))
    spec, = iter_sessions("paired", tmp_path / "pairs")
    rec = spec.load_imu()
    assert np.array_equal(rec.data, read_recording(env["h5"], Units(), sensor="Left Wrist").data)
    assert spec.meta["sensor"] == "Left Wrist"
