"""Every public real device file in ``../shared/data/devices`` (issue 19 item 1), read by our reader
(through :mod:`crossmodal_har.signals.recording`) and by the independent reader its PROVENANCE.md
names: skdh (Axivity, GENEActiv, APDM), ActiGraph's pygt3x, Apache avro (EmbracePlus), the E4
export's own CSV rules, ActiLife's CSV export. Sample count, rate, start time, units (channels and
g), values and strictly increasing times are compared; where the reference refuses a file, ours
refuses it in one line naming it, and a damaged file is read in part with what was skipped listed.

The files are other projects' data: they are read in place, never copied here. Without
``../shared`` (a checkout without the data) every test skips and says why.
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import warnings
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional

import h5py
import numpy as np
import pytest

from crossmodal_har.errors import DataError
from crossmodal_har.signals.devices import device_suffixes, open_device
from crossmodal_har.signals.devices.cwa import SECTOR, SECTOR_DTYPE, decode_timestamps, rate_from_code
from crossmodal_har.signals.devices.genea import chunk_crc
from crossmodal_har.signals.recording import STRICT, iter_chunks
from crossmodal_har.signals.units import Units
from helpers.real_data import APDM_FETCH, DEVICES, apdm_sample

ABSENT = f"real device files not found at <repo>/../shared/data/devices ({DEVICES})"
requires_files = pytest.mark.skipif(not DEVICES.is_dir(), reason=ABSENT)
APDM_SIX = apdm_sample()
requires_apdm = pytest.mark.skipif(APDM_SIX is None, reason=f"skdh's APDM sample not fetched: run `{APDM_FETCH}`")

#: damaged files (PROVENANCE.md) -> the intact file they were made from
INTACT_TWIN = {"ggirread_ax3_corrupt_blocks.cwa": "cwa/ggirread_ax3_testfile.cwa",
               "ggirread_GENEActiv_testfile.bin": "geneactiv/ggirread_GENEActiv_testfile_16pages.bin"}
#: damaged files with no intact twin: GGIRread's GENEA file ends 1626 bytes into a page
CUT_WITHOUT_TWIN = {"ggirread_genea_testfile.bin"}
SLOW_BYTES = 1_000_000  # files above this are marked slow


def _device_files() -> List[Any]:
    """One param ``(path, sensor)`` per real file, and per sensor of a file that holds several (APDM
    ``.h5``: each ``Label 0``, listed with h5py, not with our reader; ``sensor`` None elsewhere)."""
    if not DEVICES.is_dir():
        return [pytest.param(None, None, id="no-shared-data", marks=pytest.mark.skip(reason=ABSENT))]
    sufs = device_suffixes()
    found = [p for p in sorted(DEVICES.rglob("*"))
             if (p.is_file() and p.suffix.lower() in sufs) or (p.is_dir() and (p / "ACC.csv").is_file())]
    if APDM_SIX is not None and APDM_SIX not in found:  # fetched from skdh's sdist, not in ../shared
        found.append(APDM_SIX)
    out = []
    for p in found:
        marks = [pytest.mark.slow] if p.is_file() and p.stat().st_size > SLOW_BYTES else []
        name = str(p.relative_to(DEVICES)) if p.is_relative_to(DEVICES) else f"apdm/{p.name}"
        labels = apdm_labels(p) if p.suffix.lower() == ".h5" else []
        if len(labels) > 1:
            out += [pytest.param(p, lab, id=f"{name}[{lab}]", marks=marks) for lab in labels]
        else:
            out.append(pytest.param(p, None, id=name, marks=marks))
    return out


def apdm_labels(path: Path) -> List[str]:
    """The ``Label 0`` of each sensor of an APDM v5 file, read with h5py directly."""
    with h5py.File(path, "r") as f:
        if "Sensors" not in f:
            return []
        return [f["Sensors"][sid]["Configuration"].attrs["Label 0"].decode() for sid in f["Sensors"]]


def _fmt(path: Path) -> Optional[str]:
    return "empatica" if path.is_dir() else None


@dataclass
class Ours:
    t: np.ndarray
    data: np.ndarray
    info: Any


def read_ours(path: Path, damaged: str = "refuse", sensor: Optional[str] = None) -> Ours:
    extra: Dict[str, Any] = {"damaged": damaged} if damaged != "refuse" else {}  # refuse: strict's default
    if sensor is not None:
        extra["sensor"] = sensor
    chunks = list(iter_chunks(path, Units(), 100_000, fmt=_fmt(path), policy=STRICT, **extra))
    return Ours(np.concatenate([c.t for c in chunks]), np.concatenate([c.data for c in chunks]), chunks[0].device)


class Refused(Exception):
    """The reference reader does not read the file."""


@dataclass
class Ref:
    t: np.ndarray  # UTC seconds
    acc: np.ndarray  # g
    gyro: Optional[np.ndarray]  # rad/s, None without a gyroscope
    fs: float
    t_tol: float  # s, per sample
    acc_tol: float  # g
    note: str = ""


# ------------------------------------------------------------------------------- reference readers

def _skdh(cls_name: str, path: Path, **kw) -> Dict[str, Any]:
    skdh_io = pytest.importorskip("skdh.io")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return getattr(skdh_io, cls_name)().predict(file=str(path), **kw)
        except Exception as e:  # noqa: BLE001 - any refusal of the reference counts as a refusal
            raise Refused(f"skdh.io.{cls_name}: {e}") from None


def ref_cwa(path: Path, ours: Ours) -> Ref:
    r = _skdh("ReadCwa", path)  # naive device-local times; ours are read in UTC (--tz default)
    # skdh ignores the fractional timestamps and extrapolates its own way at the file's start:
    # measured up to 14 ms (1.4 samples) apart at 100 Hz, 2 samples is the bound
    return Ref(r["time"], r["accel"], np.deg2rad(r["gyro"]) if "gyro" in r else None, float(r["fs"]),
               t_tol=2.0 / r["fs"], acc_tol=0.0)


def ref_geneactiv(path: Path, ours: Ours) -> Ref:
    if not path.read_bytes()[:64].lstrip(b"\xef\xbb\xbf").startswith(b"Device Identity"):
        # the older GENEA format: skdh's ReadBin crashes the interpreter on it (segfault), so ask it
        # in a subprocess. Ours reads it (genea.py) but, strictly, refuses it for its cut last page;
        # GGIRread's own test facts are the check of its values (test_genea_* below)
        code = "import sys, skdh.io; skdh.io.ReadBin().predict(file=sys.argv[1])"
        res = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=120)
        if res.returncode != 0:
            raise Refused(f"skdh.io.ReadBin exits with status {res.returncode}")
    r = _skdh("ReadBin", path)
    offset = ours.info.start_time_s - _geneactiv_local_start(path)  # skdh gives local times
    return Ref(r["time"] + offset, r["accel"], None, float(r["fs"]), t_tol=0.5, acc_tol=1e-12,
               note="GENEActiv page times have 0.5 s resolution")


def _geneactiv_local_start(path: Path) -> float:
    """The first page's time (``Page Time:2013-05-29 13:52:54:500``) as wall-clock epoch seconds."""
    with open(path, "rb") as fh:
        for line in fh:
            if line.startswith(b"Page Time:"):
                text = line.decode("latin-1").strip()[len("Page Time:"):]
                day, ms = text[:19], text[20:]
                when = datetime.strptime(day, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
                return when.timestamp() + int(ms or 0) / 1000.0
    raise AssertionError("no page time")


DOTNET_EPOCH_TICKS = 621355968000000000  # .NET ticks (100 ns from year 1) at 1970-01-01


def _utc_offset_s(text: str) -> int:
    """info.txt's ``TimeZone`` (``-06:00:00``) in seconds east of UTC."""
    sign = -1 if text.startswith("-") else 1
    h, m, *_ = (int(v) for v in text.lstrip("+-").split(":"))
    return sign * (h * 3600 + m * 60)


def ref_gt3x(path: Path, ours: Ours) -> Ref:
    reader = pytest.importorskip("pygt3x.reader")
    try:
        with reader.FileReader(str(path)) as f:
            df = f.to_pandas()
            info = f.info
    except Exception as e:  # noqa: BLE001
        raise Refused(f"pygt3x: {e}") from None
    offset = _utc_offset_s(info.timezone)
    acc = df[["X", "Y", "Z"]].to_numpy(np.float64)
    if f.nhanes:  # pygt3x reads .NET ticks as ns here (year 1990): time from info.txt's Start Date
        start = (info.start_date - DOTNET_EPOCH_TICKS) / 1e7 - offset
        return Ref(start + np.arange(len(df)) / info.sample_rate, acc, None, float(info.sample_rate), t_tol=1e-6,
                   acc_tol=5e-4 + 1e-9, note="pygt3x rounds NHANES-layout values to 3 decimals")
    return Ref(df.index.to_numpy(np.float64) - offset, acc, None, float(info.sample_rate), t_tol=1e-6, acc_tol=1e-6)


def ref_avro(path: Path, ours: Ours) -> Ref:
    """Apache avro's reader, and Empatica's documented conversion (schema >= 6.5: conversionFactor)."""
    from avro.datafile import DataFileReader
    from avro.io import DatumReader
    ts, accs = [], []
    with open(path, "rb") as fh:
        for rec in DataFileReader(fh, DatumReader()):
            a = rec["rawData"]["accelerometer"]
            imu = a["imuParams"]
            v = rec["schemaVersion"]
            factor = imu["conversionFactor"] if (v["major"], v["minor"]) >= (6, 5) else \
                (imu["physicalMax"] - imu["physicalMin"]) / (imu["digitalMax"] - imu["digitalMin"])
            accs.append(np.stack([a["x"], a["y"], a["z"]], axis=1) * factor)
            fs = a["samplingFrequency"]
            ts.append(a["timestampStart"] / 1e6 + np.arange(len(a["x"])) / fs)
    return Ref(np.concatenate(ts), np.concatenate(accs), None, float(fs), t_tol=1e-6, acc_tol=1e-9)


def ref_e4(path: Path, ours: Ours) -> Ref:
    """An E4 export's ACC.csv by its published rules (row 1 the UTC start, row 2 the rate, 1/64 g)."""
    if path.is_dir():
        text = (path / "ACC.csv").read_text()
    else:
        with zipfile.ZipFile(path) as zf:
            text = zf.read("ACC.csv").decode()
    rows = list(csv.reader(io.StringIO(text)))
    start, fs = float(rows[0][0]), float(rows[1][0])
    acc = np.array([[float(v) for v in r] for r in rows[2:] if r], np.float64) / 64.0
    return Ref(start + np.arange(len(acc)) / fs, acc, None, fs, t_tol=1e-6, acc_tol=1e-12)


def ref_apdm(path: Path, ours: Ours, sensor: str = "Lumbar") -> Ref:
    # skdh picks the sensor by its Label 0; UTC times (not shifted by the file's Timezone Offset);
    # its rate is the file's Configuration "Sample Rate", read here with h5py (skdh returns none)
    g = 9.80665  # ours; skdh's default is 9.81
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            r = pytest.importorskip("skdh.io").ReadApdmH5(sensor, localize_timestamps=False,
                                                           gravity_acceleration=g).predict(file=str(path))
        except Exception as e:  # noqa: BLE001 - any refusal of the reference counts as a refusal
            raise Refused(f"skdh.io.ReadApdmH5: {e}") from None
    with h5py.File(path, "r") as f:
        (sid,) = [k for k in f["Sensors"] if f["Sensors"][k]["Configuration"].attrs["Label 0"].decode() == sensor]
        fs = float(f["Sensors"][sid]["Configuration"].attrs["Sample Rate"])
    return Ref(r["time"], r["accel"], r["gyro"], fs, t_tol=1e-9, acc_tol=1e-12)


REFERENCES = {".cwa": ref_cwa, ".bin": ref_geneactiv, ".gt3x": ref_gt3x, ".avro": ref_avro, ".zip": ref_e4,
              ".h5": ref_apdm}


def _reference(path: Path, ours: Optional[Ours], sensor: Optional[str] = None) -> Ref:
    key = ".zip" if path.is_dir() else path.suffix.lower()
    if key == ".zip" and not path.is_dir():
        with zipfile.ZipFile(path) as zf:
            if "ACC.csv" not in zf.namelist():
                pytest.skip(f"{path.name}: a zip of EmbracePlus .avro files has no reference reader here")
    return REFERENCES[key](path, ours, **({"sensor": sensor} if sensor else {}))


def _one_line(err: Exception, path: Path) -> None:
    text = str(err)
    assert text.startswith(str(path)) and "\n" not in text and len(text) < 400, text


# ------------------------------------------------------------------------------------------ tests

@pytest.mark.parametrize("path, sensor", _device_files())
def test_read_equal_to_the_reference(path, sensor):
    try:
        ours: Optional[Ours] = read_ours(path, sensor=sensor)
        err = None
    except DataError as e:
        ours, err = None, e
    try:
        ref = _reference(path, ours, sensor)
    except Refused as why:
        # the reference refuses: ours refuses in one line naming the file (a damaged file is then
        # read in part by predict's default, tested below)
        assert err is not None, f"{path.name}: the reference refuses ({why}) but ours reads it"
        _one_line(err, path)
        return
    assert err is None, f"the reference reads {path.name} but ours refuses it: {err}"
    n = len(ref.t)
    assert len(ours.t) == n, (len(ours.t), n)
    assert ours.info.rate_hz == pytest.approx(ref.fs, rel=1e-6)
    assert np.all(np.diff(ours.t) > 0)
    assert ours.info.start_time_s == ours.t[0]
    assert np.abs(ours.t - ref.t).max() <= ref.t_tol, ref.note
    assert np.median(np.abs(ours.t - ref.t)) <= max(ref.t_tol / 2, 1e-6)
    np.testing.assert_allclose(ours.data[:, :3], ref.acc, rtol=0, atol=ref.acc_tol, err_msg=ref.note)
    if ref.gyro is None:
        assert ours.info.channels == "acc" and np.isnan(ours.data[:, 3:]).all()
    else:
        assert ours.info.channels == "acc+gyro"
        np.testing.assert_allclose(ours.data[:, 3:], ref.gyro, rtol=0, atol=1e-9)
    if sensor is not None:
        assert ours.info.device["label"] == sensor
    # units: a worn or resting device reads about 1 g (m/s^2 would be ~9.8)
    assert 0.5 < np.median(np.linalg.norm(ours.data[:, :3], axis=1)) < 1.6


@requires_apdm
def test_apdm_six_opals_default_sensor_id_and_unknown_label():
    """skdh's six-Opal file: without a choice the lumbar Opal is read; a sensor id reads the same
    samples as its label; an unknown label is refused in one line listing the six labels and ids."""
    with h5py.File(APDM_SIX, "r") as f:
        ids = {f["Sensors"][k]["Configuration"].attrs["Label 0"].decode(): k for k in f["Sensors"]}
    assert sorted(ids) == ["Left Foot", "Left Wrist", "Lumbar", "Right Foot", "Right Wrist", "Sternum"]
    default = read_ours(APDM_SIX)
    lumbar = read_ours(APDM_SIX, sensor="lumbar")  # case-insensitive
    assert default.info.device["sensor_id"] == ids["Lumbar"] == lumbar.info.device["sensor_id"]
    np.testing.assert_array_equal(default.data, lumbar.data)
    by_id = read_ours(APDM_SIX, sensor=ids["Right Wrist"])
    by_label = read_ours(APDM_SIX, sensor="Right Wrist")
    np.testing.assert_array_equal(by_id.data, by_label.data)
    assert not np.array_equal(by_label.data, lumbar.data)  # another Opal, other samples
    assert default.info.device["timezone_offset_h"] == -4.0
    with pytest.raises(DataError) as e:
        read_ours(APDM_SIX, sensor="Head")
    _one_line(e.value, APDM_SIX)
    assert all(f"{lab} ({sid})" in str(e.value) for lab, sid in ids.items())


@requires_files
@pytest.mark.parametrize("name", sorted(INTACT_TWIN))
def test_damaged_file_is_read_in_part_with_the_skipped_part_listed(name):
    path = next(DEVICES.rglob(name))
    with pytest.raises(DataError) as e:  # strict (and --strict): refused in one line
        read_ours(path)
    _one_line(e.value, path)
    part = read_ours(path, damaged="skip")
    whole = read_ours(DEVICES / INTACT_TWIN[name])
    skipped = part.info.skipped
    assert skipped and all(s.line() for s in skipped)
    assert np.all(np.diff(part.t) > 0) and part.info.start_time_s == part.t[0]
    if path.suffix == ".cwa":
        # GGIRread's copy with sectors 0, 13, 14, 142, 143, 144 damaged: 120 samples each
        assert [(s.first, s.count) for s in skipped] == [(0, 1), (13, 2), (142, 3)]
        assert all(s.reason == "checksum mismatch" for s in skipped)
        keep = np.ones(len(whole.t), bool)
        for s in skipped:
            keep[s.first * 120:(s.first + s.count) * 120] = False
        np.testing.assert_array_equal(part.data, whole.data[keep])
        # the samples keep their times (within a sample: the timestamps around a hole are not joined)
        assert np.abs(part.t - whole.t[keep]).max() < 0.01
        # the times around each hole are listed (none before the first, none after the last)
        assert skipped[0].after_s is None and skipped[0].before_s == part.t[0]
        assert skipped[1].after_s == part.t[13 * 120 - 121] and skipped[1].before_s == part.t[13 * 120 - 120]
        assert skipped[2].after_s == part.t[-1] and skipped[2].before_s is None
        # the hole spans the two sectors' time in the intact file
        assert skipped[1].before_s - skipped[1].after_s == pytest.approx(
            whole.t[15 * 120] - whole.t[13 * 120 - 1], abs=0.01)
    else:
        # GENEActiv: the file ends inside page 17 of the 222048 its header announces
        np.testing.assert_array_equal(part.t, whole.t)
        np.testing.assert_array_equal(part.data, whole.data)
        (s,) = skipped
        assert (s.unit, s.first, s.count, s.at_sample) == ("page", 17, 222048 - 16, 16 * 300)
        assert s.missing_samples == (222048 - 16) * 300 and s.after_s == part.t[-1] and s.before_s is None


def _cwa_anchors(path: Path):
    """Per data sector, independently of the reader: (sample index of its timestamp in the file,
    the timestamp in s), from cwa.h's fields (timestampOffset, 15-bit fraction of deviceFractional)."""
    raw = path.read_bytes()
    sec = np.frombuffer(raw[1024:], dtype=SECTOR_DTYPE)
    assert len(raw) == 1024 + len(sec) * SECTOR
    counts = sec["sample_count"].astype(np.int64)
    n0 = np.concatenate([[0], np.cumsum(counts)[:-1]])
    t, ok = decode_timestamps(sec["timestamp"])
    assert ok.all()
    offset = sec["timestamp_offset"].astype(np.int64)
    frac = (sec["device_fractional"].astype(np.int64) & 0x7FFF) << 1
    has = (sec["device_fractional"] & 0x8000) != 0
    rate = int(rate_from_code(int(sec["rate_code"][0])))
    offset = np.where(has, offset + ((frac * rate) >> 16), offset)
    return n0 + offset, np.where(has, t + frac / 65536.0, t), int(counts.sum())


@requires_files
@pytest.mark.parametrize("name", ["ggirread_ax6_testfile.cwa", "openmovement_example-610-steps.cwa",
                                  "ggirread_ax3_testfile.cwa", "paradigma_test_data.CWA"])
def test_cwa_times_are_piecewise_linear_between_the_sector_timestamps(name):
    """Issue 19 item 2: read (the first two used to be refused: "time goes backwards"), strictly
    increasing, each sector's timestamp at its sample, linear in between, start = first sample."""
    path = DEVICES / "cwa" / name
    ours = read_ours(path)
    a, ta, n = _cwa_anchors(path)
    assert len(ours.t) == n and np.all(np.diff(ours.t) > 0)
    assert ours.info.start_time_s == ours.t[0]
    inside = (a >= 0) & (a < n)
    np.testing.assert_allclose(ours.t[a[inside]], ta[inside], rtol=0, atol=2e-6)
    # linear between consecutive anchors: every sample on the line through its two anchors
    ai, ti = a[inside], ta[inside]
    i = np.arange(ai[0], ai[-1])
    k = np.searchsorted(ai, i, side="right") - 1
    line = ti[k] + (i - ai[k]) * (ti[k + 1] - ti[k]) / (ai[k + 1] - ai[k])
    np.testing.assert_allclose(ours.t[i], line, rtol=0, atol=2e-6)


@requires_files
@pytest.mark.parametrize("name", ["pygt3x_ISM_Enabled.gt3x", "readgt3x_TAS1H30182785_2019-09-17.gt3x",
                                  "ggir_actigraph_testfile.gt3x"])
def test_gt3x_idle_sleep_stretches_are_pygt3x_idle_sleep_samples(name):
    reader = pytest.importorskip("pygt3x.reader")
    path = DEVICES / "gt3x" / name
    r = open_device(path)
    t = np.concatenate([tc for tc, _ in r.iter_chunks(10_000)])
    asleep = np.zeros(len(t), bool)
    for a, b in r.info.idle_sleep:
        asleep |= (t >= a) & (t < b)
    with reader.FileReader(str(path)) as f:
        ref = f.to_pandas()["IdleSleepMode"].to_numpy(bool)
    assert asleep.any()
    np.testing.assert_array_equal(asleep, ref)


@requires_files
def test_gt3x_agrees_with_the_actilife_csv_export():
    """read.gt3x's file and ActiLife 6.13.3's CSV export of it: ActiLife's values (3 decimals) at
    100 Hz from the same start. ActiLife's rows are every 10 ms to the download time: it fills a
    gap in the records (6 s after a USB connect event) and the time after the last record with the
    last value, where we leave a gap in ``t`` (and end at the last record, as pygt3x does): 700
    rows in the gap, 24,600 after the last record."""
    path = DEVICES / "gt3x" / "readgt3x_TAS1H30182785_2019-09-17.gt3x"
    import gzip
    with gzip.open(path.with_name(path.name.replace(".gt3x", ".actilife.csv.gz")), "rt") as fh:
        lines = fh.read().splitlines()
    assert "at 100 Hz" in lines[0] and lines[2] == "Start Time 18:40:00" and lines[3] == "Start Date 9/17/2019"
    acti = np.array([[float(v) for v in ln.split(",")] for ln in lines[11:]])
    ours = read_ours(path)
    assert ours.info.rate_hz == 100.0
    # 2019-09-17 18:40:00 at the file's TimeZone -04:00 is 22:40:00 UTC
    assert ours.t[0] == 1568760000.0
    row = np.round((ours.t - ours.t[0]) * 100).astype(np.int64)  # ActiLife's row of each of our samples
    np.testing.assert_allclose(ours.t, ours.t[0] + row / 100, rtol=0, atol=1e-6)
    assert row[-1] < len(acti)
    np.testing.assert_allclose(ours.data[:, :3], acti[row], rtol=0, atol=5e-4 + 1e-9)
    filled = np.setdiff1d(np.arange(len(acti)), row)
    assert len(filled) == len(acti) - len(row) > 0
    # each a copy of the row before, except one row of zeros ActiLife writes at each 1-byte record
    # (USB connect, 2141 s and 2159 s after the start), which we and pygt3x skip
    differs = filled[np.any(acti[filled] != acti[filled - 1], axis=1)]
    assert differs.tolist() == [214100, 215900] and not acti[differs].any()


@requires_files
def test_nhanes_layout_is_read_with_its_start_from_info_txt():
    """pygt3x_neo.gt3x (GT3X+ firmware 2.5.0, activity.bin): used to be refused."""
    path = DEVICES / "gt3x" / "pygt3x_neo.gt3x"
    ours = read_ours(path)
    assert ours.info.device["layout"].startswith("NHANES")
    assert len(ours.t) == 18004 and ours.info.n_samples == 18004
    # Start Date 637755981000000000 ticks = 2021-12-20 11:55:00 local, TimeZone -06:00 -> 17:55 UTC
    assert ours.t[0] == 1640022900.0
    np.testing.assert_allclose(np.diff(ours.t), 1 / 30, rtol=0, atol=1e-6)


@requires_files
@pytest.mark.parametrize("name", ["ggirread_ax6_testfile.cwa", "ggirread_ax3_corrupt_blocks.cwa"])
def test_cwa_chunk_size_does_not_change_times_or_values(name):
    """The times of a sector depend on the sectors around it (held back across chunk borders)."""
    path = DEVICES / "cwa" / name

    def read(chunk):
        r = open_device(path, damaged="skip")
        parts = list(r.iter_chunks(chunk))
        return (np.concatenate([t for t, _ in parts]), np.concatenate([x for _, x in parts]),
                [(s.first, s.count, s.at_sample) for s in r.info.skipped])

    ref = read(10 ** 6)
    for chunk in (1, 41, 119, 121, 1000):
        got = read(chunk)
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])
        assert got[2] == ref[2]


# ------------------------------------------------------------------------- GENEA (older format)

GENEA = DEVICES / "geneactiv" / "ggirread_genea_testfile.bin"


def _genea_pages(dest: Path, first: int, end: int) -> Path:
    """A copy of the GENEA file's header and its pages ``first .. end-1`` (2048 bytes each, right
    after the header's blank line): what GGIRread reads with ``start = first, end = end``."""
    raw = GENEA.read_bytes()
    body = raw.index(b"\r\n\r\n") + 4
    dest.write_bytes(raw[:body] + raw[body + first * 2048:body + end * 2048])
    return dest


def _ggirread_mg(acc_g: np.ndarray) -> np.ndarray:
    """GGIRread's integers from our unrounded g: it rounds ``(count + offset) * gain / 8192`` to a
    whole number, then that * 1000 / 340 to whole mg (R's and numpy's round both go to even)."""
    scaled = np.round(acc_g * 340 * 8192) / 8192  # exact: (count + offset) * gain is an integer
    return np.round(np.round(scaled) * 1000 / 340)


@requires_files
@pytest.mark.parametrize("first, end, rows, total, t100, source", [
    (0, 4, 1329, 1374990, 1269950918, "tests/testthat/test_readGenea.R: readGenea(start = 0, end = 4)"),
    (1, 4, 993, 1058559, 1269950922, "tests/testthat/test_GeneaBinReader.R: GeneaBinReader(start = 1, end = 4)"),
])
def test_genea_reproduces_ggirread_test_facts(tmp_path, first, end, rows, total, t100, source):
    """GGIRread (wadpac/GGIRread @ 45ef623c) asserts these numbers about this very file; we read
    the same pages. Its rows stop at the sample its last timestamp stamps (it drops the samples
    after the last whole second), so the count is of our samples up to that second."""
    path = _genea_pages(tmp_path / f"pages_{first}_{end}.bin", first, end)
    r = open_device(path)
    assert r.format == "genea" and len(r.header) == 18 and list(r.header)[15] == "Sample-Rate", source
    ours = read_ours(path)  # whole pages: nothing damaged
    assert ours.info.rate_hz == 80.0 and ours.info.channels == "acc"
    n = int(np.count_nonzero(ours.t <= np.floor(ours.t[-1])))
    assert n == rows, source
    assert _ggirread_mg(ours.data[:n, :3]).sum() == total, source
    # testthat's expect_equal(timestamps1[100], ...) holds within a relative 1.5e-8 (+-19 s): ours
    # within a second (GGIRread's own interpolation gives 1269950917.6375 for the first case)
    assert abs(ours.t[99] - t100) < 1.0, source
    assert datetime.fromtimestamp(ours.t[99], tz=timezone.utc).year == 2010, source


@requires_files
def test_genea_whole_file_times_values_and_its_cut_last_page():
    ours = read_ours(GENEA, damaged="skip")
    dev = ours.info.device
    assert ours.info.format == "genea" and dev["serial"] == "01275" and dev["pages"] == 127
    assert dev["calibration"] == {"x gain": 8144, "x offset": 1, "y gain": 8132, "y offset": -3,
                                  "z gain": 8004, "z offset": -13}
    # 532 timestamps, one a second, exactly 80 samples apart: the samples are on the 80 Hz grid
    assert (dev["timestamps"], dev["clock_gaps"], dev["rate_from_timestamps_hz"]) == (532, 0, 80.0)
    assert len(ours.t) == 42598 and ours.info.start_time_s == ours.t[0]
    np.testing.assert_allclose(np.diff(ours.t), 1 / 80, rtol=0, atol=1e-6)
    # the first timestamp (2010-03-30 12:08:37, the header's Trial-Start 12:08:36 a second before)
    # stamps sample 48; --tz UTC reads the device clock as UTC
    assert ours.t[48] == 1269950917.0 and ours.t[0] == 1269950917.0 - 48 / 80
    assert 0.95 < np.median(np.linalg.norm(ours.data[:, :3], axis=1)) < 1.05
    (s,) = ours.info.skipped
    assert (s.unit, s.first, s.count, s.at_sample, s.after_s, s.before_s) == ("page", 128, 1, 42598, ours.t[-1], None)
    with pytest.raises(DataError) as e:  # strictly: refused in one line
        read_ours(GENEA)
    _one_line(e.value, GENEA)
    assert "truncated GENEA .bin file: the file ends 1626 bytes into page 128" in str(e.value)


@requires_files
def test_genea_damaged_copies_are_one_line_errors_or_skipped_pages(tmp_path):
    whole = read_ours(_genea_pages(tmp_path / "whole.bin", 0, 127))
    raw = (tmp_path / "whole.bin").read_bytes()
    body = raw.index(b"\r\n\r\n") + 4
    # one flipped bit in page 11 (a chunk's CRC-8 no longer holds)
    bad = tmp_path / "flipped.bin"
    at = body + 10 * 2048 + 6 * 100 + 3
    bad.write_bytes(raw[:at] + bytes([raw[at] ^ 0x10]) + raw[at + 1:])
    with pytest.raises(DataError) as e:
        read_ours(bad)
    _one_line(e.value, bad)
    assert f"corrupt GENEA page 11: chunk 100 (byte {at - 3}) fails its CRC-8 check" in str(e.value)
    part = read_ours(bad, damaged="skip")
    (s,) = part.info.skipped
    assert (s.unit, s.first, s.reason) == ("page", 11, "CRC-8 mismatch")
    lost = len(whole.t) - len(part.t)
    assert 330 < lost < 342 and s.at_sample + lost == int(np.count_nonzero(whole.t < s.before_s))
    keep = np.ones(len(whole.t), bool)
    keep[s.at_sample:s.at_sample + lost] = False
    np.testing.assert_array_equal(part.data, whole.data[keep])
    np.testing.assert_allclose(part.t, whole.t[keep], rtol=0, atol=1e-6)  # the hole is a gap in t
    # an erased page followed by data; a header cut short; not a GENEA header at all
    erased = tmp_path / "erased.bin"
    erased.write_bytes(raw[:body + 5 * 2048] + b"\xff" * 2048 + raw[body + 6 * 2048:])
    cut_header = tmp_path / "cut_header.bin"
    cut_header.write_bytes(raw[:200])
    no_rate = tmp_path / "no_rate.bin"
    no_rate.write_bytes(raw.replace(b"Sample-Rate:80Hz\r\n", b""))
    for path, text in [(erased, "page 6 (byte"), (cut_header, "no blank line ends it"),
                       (no_rate, "GENEA header lacks 'Sample-Rate'")]:
        with pytest.raises(DataError) as e:
            read_ours(path)
        _one_line(e.value, path)
        assert text in str(e.value)
    # trailing erased pages are the end of the recording, not damage
    tail = tmp_path / "erased_tail.bin"
    tail.write_bytes(raw + b"\xff" * 4096)
    ended = read_ours(tail)
    np.testing.assert_array_equal(ended.t, whole.t)
    assert ended.info.device["erased_pages_at_end"] == 2


def _genea_restamped(dest: Path, shift_s: int, from_page: int, only_one: bool = False) -> Path:
    """A copy of the GENEA file's 127 whole pages with its timestamp chunks from page ``from_page``
    (0-based) moved by ``shift_s`` (the first of them only, with ``only_one``), CRC-8s rewritten."""
    raw = GENEA.read_bytes()
    body = raw.index(b"\r\n\r\n") + 4
    pages = np.frombuffer(raw[body:body + 127 * 2048], np.uint8).reshape(127, 2048).copy()
    ch = pages[from_page:, :341 * 6].reshape(-1, 6)
    stamps = np.flatnonzero(ch[:, 1] >> 4 == 2)[:1 if only_one else None]
    value = ch[stamps, 2:6].astype(np.int64) @ np.array([1 << 24, 1 << 16, 1 << 8, 1]) + shift_s
    ch[stamps, 2:6] = (value[:, None] >> np.array([24, 16, 8, 0])) & 0xFF
    ch[stamps, 0] = chunk_crc(ch[stamps])
    pages[from_page:, :341 * 6] = ch.reshape(-1, 341 * 6)
    dest.write_bytes(raw[:body] + pages.tobytes())
    return dest


@requires_files
def test_genea_clock_gap_and_clock_going_back(tmp_path):
    """The timing rules on copies whose timestamps were moved (CRC-8 rewritten, so not damage):
    an hour later from page 51 on is a gap in t, every sample keeps its value and 1/80 s spacing
    either side; one timestamp 10 s back is a one-line error naming the file."""
    whole = read_ours(_genea_pages(tmp_path / "whole.bin", 0, 127))
    later = read_ours(_genea_restamped(tmp_path / "later.bin", 3600, 50))
    np.testing.assert_array_equal(later.data, whole.data)
    step = np.diff(later.t)
    jump = int(np.argmax(step))
    assert step[jump] == pytest.approx(3600 + 1 / 80, abs=1e-6) and later.info.device["clock_gaps"] == 1
    np.testing.assert_allclose(np.delete(step, jump), 1 / 80, rtol=0, atol=1e-6)
    np.testing.assert_allclose(later.t[jump + 1:] - 3600, whole.t[jump + 1:], rtol=0, atol=1e-6)
    back = _genea_restamped(tmp_path / "back.bin", -10, 50, only_one=True)
    with pytest.raises(DataError) as e:
        read_ours(back)
    _one_line(e.value, back)
    assert "the device clock stands still or jumps back" in str(e.value)
