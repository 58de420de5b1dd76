"""Absolute time, non-wear detection (van Hees et al. 2013 as GGIR does it) and `predict --report`."""

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from crossmodal_har.cli import main
from crossmodal_har.infer.nonwear import NonwearConfig, NonwearDetector
from helpers.bundles import CLASSES, COLS, make_bundle, predict_recording

G_UNITS = ["--acc-unit", "g", "--gyro-unit", "rad/s", "--time-unit", "s"]
G_UNIT_KEYS = {"units.acc_unit": "g", "units.gyro_unit": "rad/s", "units.time_unit": "s"}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("nw") / "bundle")


def simulate(hours: float, still: list, rate: float = 10.0, seed: int = 0, t0: float = 0.0):
    """Worn: orientation drifting, walking bursts, 50 mg noise; ``still`` = [(h0, h1)] hours lying on a
    table (gravity on z + 2 mg sensor noise). Returns (t [n], x [n, 6] in g and rad/s)."""
    rng = np.random.default_rng(seed)
    n = int(hours * 3600 * rate)
    t = np.arange(n) / rate
    x = rng.normal(0, 0.05, (n, 6))
    ang = np.cumsum(rng.normal(0, 0.01, n))  # slow posture changes
    x[:, 0] += np.sin(ang) * 0.7
    x[:, 2] += np.cos(ang) * 0.7
    walk = (t // 300).astype(int) % 4 == 1
    x[walk, 0] += 0.5 * np.sin(2 * np.pi * 1.8 * t[walk])
    for h0, h1 in still:
        m = (t >= h0 * 3600) & (t < h1 * 3600)
        x[m] = rng.normal(0, 0.002, (int(m.sum()), 6))
        x[m, 2] += 1.0
        x[m, 3:] = rng.normal(0, 0.002, (int(m.sum()), 3))
    return t + t0, x


def write(path, t, x):
    df = pd.DataFrame(np.column_stack([t, x]), columns=COLS)
    if path.suffix == ".parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False, float_format="%.6f")
    return path


def predict(bundle, rec, out, **keys):
    res = predict_recording(bundle, rec, out, **G_UNIT_KEYS, stride_s=5, **keys)  # stride = window: windows tile the time
    assert res.summary_path == out.with_name(out.stem + ".summary.json")
    return pd.read_csv(out, keep_default_na=False), json.loads(res.summary_path.read_text())


# --------------------------------------------------------------------------------- detector

def test_detector_rule_two_of_three_axes_and_chunking():
    rate = 5.0
    t, x = simulate(4, [(1, 3)], rate=rate)
    acc = x[:, :3].copy()
    d1 = NonwearDetector(NonwearConfig())
    d1.push(t, acc)
    d1.finish()
    d2 = NonwearDetector(NonwearConfig())
    for a in range(0, len(t), 9_999):
        d2.push(t[a:a + 9_999], acc[a:a + 9_999])
    d2.finish()
    assert d1.intervals == d2.intervals == [[3600.0, 3 * 3600.0]]
    # one axis moving (above 13 mg std) during the still hours: 2 of 3 still -> still non-wear
    m = (t >= 3600) & (t < 3 * 3600)
    one = acc.copy()
    one[m, 0] += 0.1 * np.sin(2 * np.pi * 0.5 * t[m])
    d = NonwearDetector(NonwearConfig())
    d.push(t, one)
    d.finish()
    assert d.intervals == [[3600.0, 3 * 3600.0]]
    two = one.copy()
    two[m, 1] += 0.1 * np.sin(2 * np.pi * 0.5 * t[m])
    d = NonwearDetector(NonwearConfig())
    d.push(t, two)
    d.finish()
    assert d.intervals == []
    # thresholds: 20 mg noise is wear with GGIR's 13 mg, non-wear with a 30 mg threshold
    noisy = acc.copy()
    noisy[m] = np.random.default_rng(1).normal(0, 0.02, (int(m.sum()), 3)) + [0, 0, 1]
    for std_g, range_g, expect in ((0.013, 0.05, []), (0.03, 0.2, [[3600.0, 3 * 3600.0]])):
        d = NonwearDetector(NonwearConfig(std_g=std_g, range_g=range_g))
        d.push(t, noisy)
        d.finish()
        assert d.intervals == expect
    # 2013: the 60-min window is centred on its 15-min step, only that step is flagged
    d = NonwearDetector(NonwearConfig(approach="2013"))
    d.push(t, acc)
    d.finish()
    assert d.intervals == [[5400.0, 9000.0]]  # steps whose centred hour lies within 1-3 h


def test_edges_refined_to_the_minute_off_grid():
    """A still stretch off the 15-min grid: GGIR's grid alone flags only the 60-min windows that fit
    inside it (225 of 240 min here); the edge refinement finds its edges to the minute."""
    t, x = simulate(8, [(2.1, 6.1)], rate=5.0, seed=4)  # 6 min off the grid at both ends
    acc = x[:, :3].copy()
    res = {}
    for edge in (60.0, 0.0):
        d = NonwearDetector(NonwearConfig(edge_step_s=edge))
        probe = np.arange(0, 8 * 3600, 30.0)
        for a in range(0, len(t), 7_777):
            fu, before = d.final_until(), d.is_nonwear(probe)
            d.push(t[a:a + 7_777], acc[a:a + 7_777])
            decided = probe < fu  # what final_until said was decided must not change (the gate relies on it)
            assert np.array_equal(d.is_nonwear(probe)[decided], before[decided])
        d.finish()
        res[edge] = d.intervals
    assert res[0.0] == [[2.25 * 3600, 6.0 * 3600]]  # the grid: 225 min
    (a, b), = res[60.0]
    assert abs(a - 2.1 * 3600) <= 60 and abs(b - 6.1 * 3600) <= 60  # 240 min, edges within 1 min
    # nothing is flagged beyond the still data: worn minutes next to it stay worn
    assert a >= 2.1 * 3600 - 1 and b <= 6.1 * 3600 + 1
    with pytest.raises(ValueError, match="edge_step_s"):
        NonwearConfig(edge_step_s=420.0).validate()


def test_bundle_nonwear_section_sets_the_defaults(tmp_path, capsys):
    """A bundle may carry the non-wear settings it was validated with; predict uses them unless flags
    override, and says where the settings came from. Old bundles (no section) keep GGIR's defaults."""
    b = make_bundle(tmp_path / "b")
    t, x = simulate(3, [(1, 2.5)], rate=5.0)
    m = (t >= 3600) & (t < 2.5 * 3600)
    x[m, :3] = np.random.default_rng(1).normal(0, 0.02, (int(m.sum()), 3)) + [0, 0, 1]  # 20 mg: wear for GGIR
    rec = write(tmp_path / "r.parquet", t, x)
    df, s = predict(b, rec, tmp_path / "default.csv")
    assert not (df["status"] == "nonwear").any() and s["nonwear"]["settings_from"] == "defaults"
    meta = json.loads((b / "bundle.json").read_text())
    meta["nonwear"] = {**NonwearConfig(std_g=0.03, range_g=0.2).to_dict()}  # as to_dict writes it
    (b / "bundle.json").write_text(json.dumps(meta))
    df, s = predict(b, rec, tmp_path / "bundle.csv")
    assert (df["status"] == "nonwear").sum() > 0.9 * 1.5 * 3600 / 5
    assert s["nonwear"]["std_g"] == 0.03 and "bundle" in s["nonwear"]["settings_from"]
    df, s = predict(b, rec, tmp_path / "flag.csv", **{"nonwear.std_g": 0.013, "nonwear.range_g": 0.05})
    assert not (df["status"] == "nonwear").any() and "flags" in s["nonwear"]["settings_from"]
    for bad, words in (([1, 2], "nonwear: expected a JSON object"), ({"std_gg": 1.0}, "std_gg")):
        meta["nonwear"] = bad
        (b / "bundle.json").write_text(json.dumps(meta))
        rc = main(["predict", "--model", str(b), "--input", str(rec), "--out", str(tmp_path / "x.csv"), *G_UNITS])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and words in err[-1] and "bundle.json" in err[-1], err


# --------------------------------------------------------------------------------- time

def test_start_and_tz_give_iso_timestamps_across_dst(bundle, tmp_path, capsys):
    # Europe/London switches to BST at 2026-03-29 01:00 UTC
    t, x = simulate(0.5, [], rate=10.0)
    rec = write(tmp_path / "rel.parquet", t + 5.0, x)
    df, s = predict(bundle, rec, tmp_path / "p.csv", start="2026-03-29T00:50:00", tz="Europe/London")
    assert list(df.columns[:4]) == ["start", "end", "timestamp", "status"]
    first = df.iloc[0]
    assert first["timestamp"].startswith("2026-03-29T00:50:0") and first["timestamp"].endswith("+00:00")
    late = df[df["start"] >= 5.0 + 15 * 60].iloc[0]  # 01:05 UTC = 02:05 BST
    assert late["timestamp"].startswith("2026-03-29T02:0") and late["timestamp"].endswith("+01:00")
    assert s["time"]["tz"] == "Europe/London" and s["start_time"].startswith("2026-03-29T00:50:00")
    # epoch times in the file: detected, no --start needed; --start then refused
    ep = write(tmp_path / "epoch.parquet", t + 1_780_000_000.0, x)
    df2, s2 = predict(bundle, ep, tmp_path / "e.csv")
    assert df2["timestamp"].iloc[0].startswith("2026-05-28T") and df2["timestamp"].iloc[0].endswith("+00:00")
    assert "epoch" in s2["time"]["start_source"]
    rc = main(["predict", "--model", str(bundle), "--input", str(ep), "--out", str(tmp_path / "x.csv"),
               *G_UNITS, "--start", "2026-01-01T00:00:00Z"])
    assert rc == 2 and "drop --start" in capsys.readouterr().err
    rc = main(["predict", "--model", str(bundle), "--input", str(rec), "--out", str(tmp_path / "x.csv"),
               *G_UNITS, "--tz", "Mars/Olympus"])
    assert rc == 2 and "unknown time zone" in capsys.readouterr().err


# --------------------------------------------------------------------------------- non-wear + report

def check_rendering(html_path, tmp_path):
    """Render in headless Chromium: a screenshot that is not blank, and no console errors."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium not installed (apt-get install chromium; .ci/run installs it)")
    png = tmp_path / "shot.png"
    r = subprocess.run([exe, "--headless", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr", "--v=0",
                        f"--screenshot={png}", "--window-size=1200,900", html_path.resolve().as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert png.is_file(), r.stderr[-2000:]
    console = [ln for ln in r.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln or "net::ERR" in ln]
    assert not console, console
    from PIL import Image

    px = np.asarray(Image.open(png).convert("L"), dtype=np.float64)
    assert px.shape[0] >= 800 and px.std() > 10, px.std()  # not blank
    return png


def test_nonwear_marks_windows_and_report_is_written(bundle, tmp_path, capsys):
    t, x = simulate(3, [(1, 2.5)])
    rec = write(tmp_path / "r.parquet", t, x)
    rep = tmp_path / "report"
    res = predict_recording(bundle, rec, tmp_path / "p.csv", **G_UNIT_KEYS, stride_s=5,
                            start="2026-03-01T23:00:00+01:00", tz="Europe/Berlin", report=rep, smooth="3")
    df, s = pd.read_csv(tmp_path / "p.csv", keep_default_na=False), json.loads(res.summary_path.read_text())
    nw = df["status"] == "nonwear"
    mid = (df["start"] + df["end"]) / 2
    inside = (mid >= 3600) & (mid < 2.5 * 3600)
    assert nw[inside].mean() == 1.0 and not nw[~inside].any()
    assert (df.loc[nw, "label"] == "").all() and (df.loc[nw, "p_rest"] == "").all()
    assert s["nonwear"]["std_g"] == 0.013 and s["nonwear"]["range_g"] == 0.05
    assert s["nonwear"]["seconds"] == pytest.approx(5400, abs=20)
    printed = res.text()  # what the command prints
    assert "non-wear: 1h30m" in printed and "std < 0.013 g and range < 0.05 g" in printed
    daily = pd.read_csv(rep / "daily_summary.csv")
    assert list(daily.columns) == ["day", "valid", "wear_hours", "wear_min", "nonwear_min"] + [
        f"{c}_min" for c in CLASSES]
    assert daily["valid"].tolist() == [False, False]  # a few hours each: under GGIR's 16 h
    assert daily["wear_hours"].tolist() == pytest.approx((daily["wear_min"] / 60).tolist(), abs=0.01)
    assert s["days"]["days"] == 2 and s["days"]["valid_days"] == 0 and s["days"]["min_wear_hours"] == 16.0
    assert daily["day"].tolist() == ["2026-03-01", "2026-03-02"]
    assert daily["nonwear_min"].sum() == pytest.approx(90, abs=0.5)
    assert daily["nonwear_min"].iloc[0] == pytest.approx(0, abs=0.5)  # 23:00-00:00 is worn
    hourly = pd.read_csv(rep / "hourly_summary.csv")
    assert hourly["nonwear_min"].sum() == pytest.approx(90, abs=0.5)
    assert hourly[(hourly["day"] == "2026-03-02") & (hourly["hour"] == 0)]["nonwear_min"].iloc[0] == \
        pytest.approx(60, abs=0.5)
    page = (rep / "report.html").read_text()
    for words in ("0.013", "0.05", "Model card", "balanced accuracy", "<svg", "Europe/Berlin", "rest"):
        assert words in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "https://" not in page
    # streaming: the output does not depend on the chunking (rows wait ~1 h for the detector)
    predict(bundle, rec, tmp_path / "p2.csv", start="2026-03-01T23:00:00+01:00", tz="Europe/Berlin", smooth="3",
            chunk_rows=7000)
    assert (tmp_path / "p2.csv").read_bytes() == (tmp_path / "p.csv").read_bytes()
    # the report's files are outputs: replaced only with --force
    rc = main(["predict", "--model", str(bundle), "--input", str(rec), "--out", str(tmp_path / "p3.csv"),
               *G_UNITS, "--report", str(rep)])
    assert rc == 2 and "daily_summary.csv" in capsys.readouterr().err
    predict(bundle, rec, tmp_path / "p3.csv", report=rep, force=True)
    assert pd.read_csv(rep / "daily_summary.csv")["day"].tolist() == ["day 1"]  # no start: own clock
    # off: no non-wear rows
    df_off, _ = predict(bundle, rec, tmp_path / "off.csv", **{"nonwear.enabled": False})
    assert not (df_off["status"] == "nonwear").any()


def test_report_renders_in_headless_chromium(bundle, tmp_path):
    t, x = simulate(2, [(0.5, 1.5)], rate=5.0)
    rec = write(tmp_path / "r.parquet", t, x)
    predict(bundle, rec, tmp_path / "p.csv", start="2026-03-01T08:00:00Z", report=tmp_path / "rep")
    check_rendering(tmp_path / "rep" / "report.html", tmp_path)


@pytest.mark.slow
def test_acceptance_24h_with_4h_still(bundle, tmp_path):
    """The issue's acceptance: 24 h at 10 Hz, 4 h lying still -> >= 90 % of those windows non-wear,
    < 5 % false non-wear elsewhere, daily_summary accounts for 240 min, report renders."""
    t, x = simulate(24, [(13.1, 17.1)], rate=10.0, seed=3)  # 6 min off the 15-min grid
    rec = write(tmp_path / "day.parquet", t, x)
    rep = tmp_path / "rep"
    df, s = predict(bundle, rec, tmp_path / "p.csv", start="2026-03-01T07:07:00", tz="Europe/London", report=rep)
    win = ~df["status"].isin(["gap", "non_finite", "short"])
    mid = (df["start"] + df["end"]) / 2
    inside = win & (mid >= 13.1 * 3600) & (mid < 17.1 * 3600)
    outside = win & ~inside
    nw = df["status"] == "nonwear"
    hit, false = nw[inside].mean(), nw[outside].mean()
    daily = pd.read_csv(rep / "daily_summary.csv")
    print(f"non-wear: {100 * hit:.1f} % of the still hours' windows, {100 * false:.2f} % false elsewhere, "
          f"{daily['nonwear_min'].sum():.1f} nonwear_min")
    assert hit >= 0.90 and false < 0.05
    # the still stretch is off the 15-min grid; its edges are refined to the minute (GGIR's grid alone: 225)
    assert daily["nonwear_min"].sum() == pytest.approx(240, abs=3)
    assert s["nonwear"]["edge_refinement_min"] == pytest.approx(15, abs=2)
    assert daily["nonwear_min"].sum() + daily["wear_min"].sum() == pytest.approx(24 * 60, abs=2)
    check_rendering(rep / "report.html", tmp_path)


def test_nonwear_windows_never_reach_the_model(bundle, tmp_path, monkeypatch):
    """Windows wait for the non-wear decision before the model: a window later marked ``nonwear`` is
    never classified, and the output equals the model-first order's (which classifies it and then
    drops its result)."""
    from crossmodal_har.infer import predict as predict_mod
    from crossmodal_har.infer.runtime import BatchedRunner

    seen = []
    call = BatchedRunner._call
    monkeypatch.setattr(BatchedRunner, "_call", lambda self, batch: (seen.append(len(batch)), call(self, batch))[1])
    t, x = simulate(3, [(1, 2.5)])
    rec = write(tmp_path / "r.parquet", t, x)
    df, s = predict(bundle, rec, tmp_path / "skip.csv", smooth="3")
    n_ok, n_nw = int((df["status"] == "ok").sum()), int((df["status"] == "nonwear").sum())
    assert n_nw > 1000 and s["nonwear"]["model_skipped"] is True
    assert sum(seen) == n_ok  # not one non-wear window was classified
    seen.clear()
    monkeypatch.setattr(predict_mod, "gate_before_model", lambda det, pre: False)
    df_first, s_first = predict(bundle, rec, tmp_path / "first.csv", smooth="3")
    assert s_first["nonwear"]["model_skipped"] is False and sum(seen) > n_ok
    assert df_first["status"].tolist() == df["status"].tolist()
    assert df_first["label"].tolist() == df["label"].tolist()
    p = [c for c in df.columns if c.startswith("p_")]
    ok = df["status"] == "ok"
    assert np.abs(df_first.loc[ok, p].astype(float).to_numpy() - df.loc[ok, p].astype(float).to_numpy()).max() <= 1e-5
    assert (df.loc[~ok, p] == "").all().all() and (df_first.loc[~ok, p] == "").all().all()


def test_gate_before_model_only_where_the_waiting_windows_fit():
    from crossmodal_har.infer.predict import gate_before_model
    from crossmodal_har.signals.types import PreprocessConfig

    det = NonwearDetector(NonwearConfig())
    assert gate_before_model(det, PreprocessConfig()) is True  # 2.5-s stride: ~40 MB wait
    assert gate_before_model(det, PreprocessConfig(stride_s=0.02)) is False  # one window per sample: GBs
    assert gate_before_model(None, PreprocessConfig()) is False  # nothing to wait for
