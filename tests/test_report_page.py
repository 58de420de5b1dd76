"""report.html (issue 21 item 1): an autoescaped Jinja2 page whose headline comes first and agrees with
summary.json, read back from what headless Chromium renders; a hostile class name stays text."""

import datetime as dt
import html as htmllib
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers.bundles import predict_recording

HOSTILE = "<img src=x onerror=alert(1)>"
CLASSES = ["rest", HOSTILE, "walk"]
COLS = ["time", "acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]


def make_bundle(out: Path) -> Path:
    import torch

    from crossmodal_har.models.bundle import save_bundle
    from crossmodal_har.models.classifier import WindowClassifier, build_head
    from crossmodal_har.models.registry import create_model
    from crossmodal_har.signals.types import PreprocessConfig

    torch.manual_seed(0)
    enc = create_model("patchtst-tiny")
    spec = {"type": "linear", "in_features": enc.embed_dim, "num_classes": len(CLASSES)}
    head = build_head(spec)
    save_bundle(out, WindowClassifier(enc, head, "none"), encoder_name="patchtst-tiny", encoder_config=enc.model_cfg,
                head_spec=spec, preprocess=PreprocessConfig(normalization="none"), class_names=CLASSES,
                metrics={"balanced_accuracy": 0.61, "per_class_recall": [0.5, 0.6, 0.7],
                         "confusion_matrix": [[5, 3, 2], [2, 6, 2], [1, 2, 7]], "n": 30},
                provenance={"dataset": "hapt", "protocol": "supervised", "subjects": {"train": ["1", "2"], "val": ["3"]}})
    return out


def recording(path: Path, hours: float = 30.0, rate: float = 5.0) -> Path:
    """``hours`` of a wrist that changes orientation every 10 min, is still 2 of every 8 min, and has an offset
    error (so that autocalibration applies); off the wrist (flat on a table) for 3 h from hour 20."""
    rng = np.random.default_rng(1)
    t = np.arange(int(hours * 3600 * rate)) / rate
    seg = (t // 600).astype(np.int64)
    phi, cz = (seg * 2.399963) % (2 * np.pi), ((seg * 0.618034) % 2.0) - 1.0
    g = np.stack([np.sqrt(1 - cz ** 2) * np.cos(phi), np.sqrt(1 - cz ** 2) * np.sin(phi), cz], axis=1)
    x = np.zeros((len(t), 6))
    x[:, :3] = g + rng.normal(0, 0.003, (len(t), 3))
    moving = (t // 60).astype(np.int64) % 8 >= 2
    x[moving, :3] += rng.normal(0, 0.08, (int(moving.sum()), 3))
    x[:, 3:] = rng.normal(0, 0.01, (len(t), 3)) + moving[:, None] * rng.normal(0, 0.3, (len(t), 3))
    table = (t >= 20 * 3600) & (t < 23 * 3600)
    x[table, :3] = [0.0, 0.0, 1.0] + rng.normal(0, 0.002, (int(table.sum()), 3))
    x[table, 3:] = rng.normal(0, 0.002, (int(table.sum()), 3))
    x[:, :3] += [0.04, -0.03, 0.02]
    pd.DataFrame(np.column_stack([t, x]), columns=COLS).to_parquet(path, index=False)
    return path


def chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium not installed (apt-get install chromium; .ci/run installs it)")
    return exe


def rendered_dom(page: Path) -> str:
    r = subprocess.run([chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--dump-dom", page.resolve().as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert "<body" in r.stdout, r.stderr[-2000:]
    return r.stdout


def hhmm(minutes: float) -> str:
    m = int(round(minutes))
    return f"{m // 60}:{m % 60:02d}"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("page")
    bundle = make_bundle(tmp / "bundle")
    rec = recording(tmp / "wrist.parquet")
    res = predict_recording(bundle, rec, tmp / "p.csv", stride_s=5, start="2026-03-06T18:00:00", tz="Europe/Berlin",
                            report=tmp / "rep")
    return tmp, json.loads(res.summary_path.read_text())


def test_headline_first_and_its_numbers_are_summary_json(run):
    tmp, s = run
    dom = rendered_dom(tmp / "rep" / "report.html")
    body = dom.split("<body", 1)[1]
    assert body.index('class="headline"') < body.index("<h2")  # the headline before any section
    head = {htmllib.unescape(k): htmllib.unescape(v) for k, v in re.findall(
        r'data-key="([^"]+)"><b>[^<]*</b><span>([^<]*)</span>', dom)}
    assert list(head) == ["Recording", "Participant", "Period", "Days / valid days", "Wear", "Calibration",
                          "Data quality", "Exit status"]
    assert head["Recording"].startswith("wrist.parquet")
    when = [f"{dt.datetime.fromisoformat(s[k]):%a %Y-%m-%d %H:%M}" for k in ("start_time", "end_time")]
    assert when == ["Fri 2026-03-06 18:00", "Sat 2026-03-07 23:59"]
    assert head["Period"].startswith(f"{when[0]} → {when[1]} (Europe/Berlin; {hhmm(s['duration_s'] / 60)} h:mm)")
    n, ok = s["windows"] - s["windows_skipped"].get("nonwear", 0), s["windows_ok"]  # worn windows
    assert head["Data quality"].startswith(f"{100 * ok / n:.1f} % of {n:,} worn windows classified")
    assert f"{hhmm(s['nonwear']['seconds'] / 60)} not worn" in head["Wear"]
    assert s["nonwear"]["seconds"] == pytest.approx(3 * 3600, abs=1800)  # the 3 h on the table
    worn = sum(s["seconds_per_activity"].values()) / 60  # every worn window was classified here
    assert head["Wear"].startswith(f"{hhmm(worn)} worn")
    c = s["calibration"]
    assert c["applied"]
    assert head["Calibration"] == f"OK: error {1000 * c['error_before_g']:.1f} mg → {1000 * c['error_after_g']:.1f} mg"
    days = s.get("days")  # valid-day rules (daily_summary's valid column) where the run has them
    n_days = days["days"] if isinstance(days, dict) else 2
    assert head["Days / valid days"].startswith(f"{n_days} ")
    assert head["Exit status"] == "0 (complete)"
    # weekend days marked: 2026-03-07 is a Saturday (a local day of Europe/Berlin), 03-06 a Friday
    assert re.search(r'class="day weekend">\s*<div class="lab">2026-03-07<small>Saturday \(weekend\)', dom)
    assert "Friday" in dom and 'class="day weekend">\n  <div class="lab">2026-03-06' not in dom


def test_hostile_class_name_is_text_everywhere(run):
    tmp, _ = run
    page = (tmp / "rep" / "report.html").read_text()
    assert HOSTILE not in page and htmllib.escape(HOSTILE) in page
    dom = rendered_dom(tmp / "rep" / "report.html")
    assert "<img" not in dom and "onerror=alert(1)&gt;" in dom  # the browser made no element of it
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")


def test_uncertainty_warnings_and_model_card_in_words(run):
    tmp, s = run
    page = htmllib.unescape((tmp / "rep" / "report.html").read_text())
    assert "mean top-class probability" in page
    # every class that got no time is named in the warnings, and only those
    zero = [c for c, v in s["seconds_per_activity"].items() if v == 0]
    warn = page.split("Check before use", 1)[1].split("</ul>", 1)[0] if "Check before use" in page else ""
    for c in CLASSES:
        assert (f"{c}: 0 minutes over the whole recording" in warn) == (c in zero), c
    # per-day mean top-class probability: numbers in 1/C..100 %
    probs = [float(p) for p in re.findall(r"<td class=\"(?:low)?\">(\d+) %</td>", page)]
    assert probs and all(100 / len(CLASSES) - 1 <= p <= 100 for p in probs)
    assert "This model tells apart 3 activities" in page and "balanced accuracy was 61.0 %" in page
    assert "waist (smartphone on a belt, UCI HAPT)" in page and "2 training and 1 validation subjects" in page
    assert "<details>" in page and "mg" in page


def test_top_class_probability_aggregated_per_day_and_class():
    from crossmodal_har.infer.clinical_report import DayAggregator
    from crossmodal_har.signals.clock import TimeBase

    agg = DayAggregator(["a", "b"], 10.0, TimeBase(origin_s=0.0, tz="UTC", source="test"))
    start = np.array([0.0, 10.0, 20.0, 86400.0 + 5, 86400.0 + 15])
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [np.nan, np.nan], [0.6, 0.4], [0.8, 0.2]])
    agg.add(start, np.array(["ok", "ok", "gap", "ok", "ok"]), np.array([0, 1, -1, 0, 0]), probs)
    np.testing.assert_allclose(agg.top_p[0], [[0.9, 1], [0.7, 1]])
    np.testing.assert_allclose(agg.top_p[1], [[1.4, 2], [0.0, 0]])
