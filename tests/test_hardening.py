"""Property-based hardening: readers fed random malformed inputs either return a valid result or
raise a clean one-line DataError naming the file — never another exception, never a silent wrong
result."""

from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossmodal_har.errors import DataError, UserError
from crossmodal_har.signals.types import CHANNELS, ImuRecording
from crossmodal_har.signals.units import Units

HEADER = ["time", *CHANNELS]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

junk_cell = st.one_of(
    st.sampled_from(["", "nan", "NaN", "inf", "-inf", "abc", "1e400", "1,5", "0x10", " ", "--1", "1.2.3", "None"]),
    st.text(alphabet=string.printable, max_size=6),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


@st.composite
def imu_csv(draw):
    """A valid 50 Hz IMU CSV, then zero or more corruptions of its text."""
    n = draw(st.integers(0, 40))
    t = np.arange(n) * 0.02
    rows = [[f"{ti:.3f}"] + [f"{v:.4f}" for v in np.sin(ti + np.arange(6))] for ti in t]
    header = list(HEADER)
    ops = draw(st.lists(st.sampled_from(
        ["cell", "drop_col", "rename_col", "swap_rows", "dup_time", "short_row", "long_row", "blank_line",
         "nan_row", "bom", "binary", "truncate", "reorder_cols"]), max_size=3))
    text_tail = ""
    raw_bytes = None
    for op in ops:
        if op == "cell" and rows:
            i = draw(st.integers(0, len(rows) - 1))
            j = draw(st.integers(0, 6))
            if j < len(rows[i]):  # an earlier short_row may have cut the row
                rows[i][j] = draw(junk_cell)
        elif op == "drop_col":
            j = draw(st.integers(0, 6))
            header.pop(j) if j < len(header) else None
        elif op == "rename_col":
            j = draw(st.integers(0, len(header) - 1)) if header else 0
            if header:
                header[j] = draw(st.text(alphabet=string.ascii_letters + "_ ", max_size=8))
        elif op == "swap_rows" and len(rows) > 2:
            i = draw(st.integers(0, len(rows) - 2))
            rows[i], rows[i + 1] = rows[i + 1], rows[i]
        elif op == "dup_time" and len(rows) > 2:
            i = draw(st.integers(1, len(rows) - 1))
            if rows[i] and rows[i - 1]:
                rows[i][0] = rows[i - 1][0]
        elif op == "short_row" and rows:
            i = draw(st.integers(0, len(rows) - 1))
            rows[i] = rows[i][: draw(st.integers(0, 6))]
        elif op == "long_row" and rows:
            i = draw(st.integers(0, len(rows) - 1))
            rows[i] = rows[i] + ["1.0"]
        elif op == "blank_line":
            text_tail += "\n"
        elif op == "nan_row" and rows:
            i = draw(st.integers(0, len(rows) - 1))
            rows[i] = rows[i][:1] + ["nan"] * 6
        elif op == "reorder_cols":
            perm = draw(st.permutations(range(7)))
            if len(header) == 7:
                header = [header[p] for p in perm]
                rows = [[r[p] for p in perm] if len(r) == 7 else r for r in rows]
        elif op == "binary":
            raw_bytes = draw(st.binary(min_size=0, max_size=64)) + b"\x00\xff"
        elif op == "bom":
            header[0] = "\ufeff" + header[0] if header else "\ufeff"
    text = ",".join(header) + "\n" + "\n".join(",".join(r) for r in rows) + ("\n" if rows else "") + text_tail
    if "truncate" in ops and len(text) > 3:
        text = text[: draw(st.integers(1, len(text) - 1))]
    return raw_bytes if raw_bytes is not None else text.encode("utf-8")


def _assert_clean_error(exc: BaseException, path: Path) -> None:
    msg = str(exc)
    assert isinstance(exc, DataError), f"{type(exc).__name__}: {msg}"
    assert "\n" not in msg, f"multi-line error: {msg!r}"
    assert str(path) in msg, f"error does not name the file: {msg!r}"


def _assert_valid_recording(rec: ImuRecording) -> None:
    assert rec.data.ndim == 2 and rec.data.shape[1] == 6
    assert len(rec.t) == len(rec.data)
    assert np.all(np.diff(rec.t) > 0), "timestamps must be strictly increasing"
    assert np.all(np.isfinite(rec.t))


@SETTINGS
@given(content=imu_csv())
def test_imu_reader_valid_or_clean_error(tmp_path, content):
    from crossmodal_har.signals.recording import read_recording

    path = tmp_path / "rec.csv"
    path.write_bytes(content)
    try:
        rec = read_recording(path, Units("g", "rad/s", "s"))
    except Exception as exc:  # noqa: BLE001 - the property is about which exceptions escape
        _assert_clean_error(exc, path)
    else:
        _assert_valid_recording(rec)
        assert np.all(np.isfinite(rec.data)), "NaN rows must be an error, not silently kept"


@st.composite
def labels_csv(draw):
    header = draw(st.sampled_from([
        "recording,start,end,label", "recording,start,end,label,subject", "recording,start,label",
        "rec,start,end,label", "recording,start,end,label,subject,extra"]))
    rows = []
    for _ in range(draw(st.integers(0, 6))):
        rec = draw(st.sampled_from(["a", "b", "c", "zz", ""]))
        start = draw(st.one_of(st.integers(-5, 50).map(str), junk_cell))
        end = draw(st.one_of(st.integers(-5, 60).map(str), junk_cell))
        label = draw(st.sampled_from(["walk", "sit", "", "run"]))
        row = [rec, start, end, label]
        if header.endswith("subject"):
            row.append(draw(st.sampled_from(["p1", "p2", ""])))
        rows.append(",".join(row))
    return (header + "\n" + "\n".join(rows) + "\n").encode()


@SETTINGS
@given(content=labels_csv())
def test_labels_reader_valid_or_clean_error(tmp_path, content):
    from crossmodal_har.signals.generic import read_labels

    path = tmp_path / "labels.csv"
    path.write_bytes(content)
    try:
        labels = read_labels(path, ["a", "b", "c"], Units("g", "rad/s", "s"))
    except Exception as exc:  # noqa: BLE001
        _assert_clean_error(exc, path)
    else:
        for seg_list in getattr(labels, "segments", {}).values():
            for seg in seg_list:
                assert seg.start_s < seg.end_s


session_json = st.one_of(
    st.just(None),
    st.binary(max_size=30),
    st.dictionaries(
        st.sampled_from(["imu_offset_s", "acc_unit", "gyro_unit", "time_unit", "subject", "other"]),
        st.one_of(st.floats(allow_nan=True), st.sampled_from(["g", "m/s^2", "rad/s", "deg/s", "s", "ms", "furlong"]),
                  st.integers(), st.none(), st.lists(st.integers(), max_size=2)),
        max_size=5,
    ).map(lambda d: json.dumps(d).encode()),
)


@SETTINGS
@given(content=imu_csv(), meta=session_json, video=st.binary(max_size=64))
def test_paired_session_folder_valid_or_clean_error(tmp_path, content, meta, video):
    """A session folder with random session.json / imu.csv: a valid IMU recording or a clean error."""
    from crossmodal_har.pairs.sources import iter_sessions

    root = tmp_path / "root"
    sess = root / "s1"
    sess.mkdir(parents=True, exist_ok=True)
    for f in sess.iterdir():
        f.unlink()
    (sess / "imu.csv").write_bytes(content)
    (sess / "video.mp4").write_bytes(video)
    if meta is not None:
        (sess / "session.json").write_bytes(meta)
    try:
        specs = list(iter_sessions("paired", root))
        assert len(specs) == 1
        rec = specs[0].load_imu()
    except UserError as exc:
        msg = str(exc)
        assert "\n" not in msg and str(sess) in msg, msg
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"{type(exc).__name__} escaped: {exc}")
    else:
        _assert_valid_recording(rec)


@settings(max_examples=25, deadline=None)
@given(data=st.binary(max_size=2048))
def test_video_decoder_on_garbage_is_a_clean_error(tmp_path_factory, data):
    from crossmodal_har.pairs.video import iter_nearest_frames

    path = tmp_path_factory.mktemp("v") / "video.mp4"
    path.write_bytes(data)
    try:
        list(iter_nearest_frames(path, np.array([0.1, 0.5]), 16))
    except Exception as exc:  # noqa: BLE001
        _assert_clean_error(exc, path)
