"""Every numeric flag and header value range-checked (issue 23, item 5): finite, positive where it must
be, bounded where a loop or an allocation depends on it; one line naming the flag, key or file, never a
traceback and never an output."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers.bundles import UNITS, make_bundle, make_recording
from helpers.files_actigraph_apdm_empatica import write_e4_zip, write_gt3x
from helpers.files_axivity_geneactiv import make_signal, write_geneactiv

from crossmodal_har.cli import main
from crossmodal_har.config import build_config
from crossmodal_har.demo import run_demo
from crossmodal_har.errors import ConfigError, DataError, UserError
from crossmodal_har.infer.predict_config import PredictConfig
from crossmodal_har.signals.devices import open_device


def one_line(capsys, *words):
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], lines[0]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("ranges")
    return {"bundle": make_bundle(d / "bundle"), "rec": make_recording(d / "rec.csv", seconds=20)}


@pytest.mark.parametrize("flags,words", [
    (["--stride", "inf"], ["stride_s", "not a finite number"]),
    (["--stride", "nan"], ["stride"]),
    (["--smooth", "majority:100000000000000000000"], ["--smooth", "between 0 and"]),
    (["--threads", "100000000000"], ["--threads", "between 1 and"]),
    (["--chunk-rows", "100000000000000000000"], ["chunk_rows", "out of range"]),
    (["--nonwear-range", "inf"], ["range_g", "not a finite number"]),
    (["--nonwear-std", "nan"], ["std_g"]),
])
def test_predict_numeric_flags_are_range_checked(env, tmp_path, capsys, flags, words):
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", str(env["bundle"]), "--input", str(env["rec"]), "--out", str(out), *UNITS,
                 *flags]) == 2
    one_line(capsys, *words)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_every_number_of_a_command_config_is_finite_and_bounded():
    for key, bad in (("stride_s", float("inf")), ("nonwear.std_g", float("nan")), ("batch_size", 10 ** 30)):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            build_config(PredictConfig, flags={"model": "m", "input": "i", "out": "o", key: bad}, where="predict")


def test_absurd_header_sample_rates_are_one_line(tmp_path):
    g = write_geneactiv(tmp_path / "g.bin", make_signal(300 * 2, 100.0)[:, :3], 1.7e9, 100.0)
    text = g.read_bytes().replace(b"Measurement Frequency:100 Hz", b"Measurement Frequency:1000000000000 Hz")
    assert text != g.read_bytes()
    g.write_bytes(text)
    with pytest.raises(DataError, match=r"g.bin: header Measurement Frequency: sample rate .* is not valid"):
        open_device(g)
    e4 = tmp_path / "e.zip"
    write_e4_zip(e4, np.zeros((64, 3)), 1.7e9, rate=1e300)
    with pytest.raises(DataError, match=r"e.zip: ACC.csv row 2: sample rate"):
        open_device(e4)


def test_gt3x_absurd_rate_is_one_line(tmp_path):
    f = tmp_path / "a.gt3x"
    write_gt3x(f, np.tile([0.0, 0.0, 1.0], (30 * 4, 1)), 30, 1_700_000_000)
    import zipfile

    with zipfile.ZipFile(f) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members["info.txt"] = members["info.txt"].replace(b"Sample Rate: 30", b"Sample Rate: 2000000000")
    with zipfile.ZipFile(f, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)
    with pytest.raises(DataError, match=r"a.gt3x: info.txt Sample Rate: sample rate"):
        open_device(f)


@pytest.mark.parametrize("budget", [float("nan"), float("inf"), -1.0, 1e9])
def test_demo_budget_is_range_checked(tmp_path, budget):
    with pytest.raises(UserError, match="--budget-minutes must be > 0"):
        run_demo(tmp_path / "d", budget, runner=lambda argv: 0)
    assert not (tmp_path / "d").exists()


def test_demo_out_that_is_a_file_and_a_corrupt_plan_are_one_line(tmp_path, capsys):
    f = tmp_path / "x.csv"
    f.write_text("keep me")
    assert main(["demo", "--out", str(f)]) == 2
    one_line(capsys, str(f), "not a directory")
    assert f.read_text() == "keep me"
    d = tmp_path / "d"
    d.mkdir()
    (d / "plan.json").write_text('{"budget_minutes": [1')
    assert main(["demo", "--out", str(d)]) == 2
    one_line(capsys, "plan.json", "invalid JSON")
    (d / "plan.json").write_text(json.dumps([1, 2]))
    assert main(["demo", "--out", str(d)]) == 2
    one_line(capsys, "plan.json", "not a demo plan")
