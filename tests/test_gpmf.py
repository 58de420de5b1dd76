"""GPMF parser and GoPro timing on hand-built payloads (bytes assembled here, no files)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from crossmodal_har.errors import DataError
from crossmodal_har.pairs import gpmf
from crossmodal_har.pairs.gopro.source import canonical_arrays
from crossmodal_har.pairs.gopro.telemetry import MediaInfo, Payload, telemetry_from_payloads
from crossmodal_har.signals.types import STANDARD_GRAVITY

PAD = b"\xaa"  # GPMF padding may be any byte: junk here, so a parser that reads it fails


def klv(key: str, type_: str, size: int, repeat: int, data: bytes) -> bytes:
    assert len(data) == size * repeat
    pad = (-len(data)) % 4
    return key.encode() + type_.encode() + bytes([size]) + struct.pack(">H", repeat) + data + PAD * pad


def nest(key: str, *children: bytes) -> bytes:
    body = b"".join(children)
    assert len(body) % 4 == 0
    return key.encode() + b"\0" + bytes([4]) + struct.pack(">H", len(body) // 4) + body


def text(key: str, s: str, per: int = 0) -> bytes:
    """A 'c' item: one string (size 1), or ``per``-wide strings repeated (size ``per``)."""
    b = s.encode("latin-1")
    if per:
        return klv(key, "c", per, len(b) // per, b)
    return klv(key, "c", 1, len(b), b)


def u32(key: str, v: int) -> bytes:
    return klv(key, "L", 4, 1, struct.pack(">L", v))


def u64(key: str, v: int) -> bytes:
    return klv(key, "J", 8, 1, struct.pack(">Q", v))


def shorts(key: str, rows) -> bytes:
    rows = np.asarray(rows, dtype=">i2")
    return klv(key, "s", 2 * rows.shape[1], rows.shape[0], rows.tobytes())


# ------------------------------------------------------------------------------- the parser


def _payload() -> bytes:
    # Complex struct: float, short, signed byte, uint32 = 11 bytes -> 3 samples = 33 bytes (3 pad).
    complex_rows = b"".join(struct.pack(">fhbL", 1.5 * i, -2 * i, i - 1, 1000 + i) for i in range(3))
    return nest(
        "DEVC",
        u32("DVID", 1),
        text("DVNM", "Camera"),  # 6 bytes -> 2 pad
        nest(
            "STRM",
            u32("TSMP", 5),
            text("STNM", "Accelerometer (odd)"),  # 19 bytes -> 1 pad
            text("SIUN", "m/s\u00b2", per=4),  # 'c' 4 1, latin-1 superscript two
            klv("SCAL", "s", 2, 1, struct.pack(">h", 100)),
            shorts("ACCL", [[981, 0, -5], [100, 200, 300], [1, 2, 3], [-1, -2, -3], [0, 0, 981]]),  # 30 -> 2 pad
        ),
        nest(
            "STRM",
            text("SIUN", "rad/srad/srad/s", per=5),  # per-axis units, 'c' 5 3
            klv("SCAL", "s", 2, 3, struct.pack(">hhh", 10, 100, 1000)),  # per-axis divisors
            shorts("GYRO", [[10, 100, 1000], [20, 300, -4000], [0, 0, 5]]),
        ),
        nest(
            "STRM",
            text("TYPE", "fsbL"),
            klv("SCAL", "l", 4, 4, struct.pack(">llll", 1, 2, 1, 10)),
            klv("UNIT", "c", 3, 4, b"m\0\0s\0\0deg" + b"Hz\0"),
            klv("KBAT", "?", 11, 3, complex_rows),
        ),
        nest(
            "STRM",
            klv("BYTE", "b", 1, 15, bytes(range(15))),  # 15 bytes -> 1 pad
            klv("QNUM", "q", 4, 2, struct.pack(">ll", 3 * 65536 + 32768, -65536)),  # 3.5, -1.0
            text("ORIN", "YxZ", per=3),
            klv("ARRY", "?", 16, 1, struct.pack(">fffL", 1, 2, 3, 7)),  # no TYPE before it
        ),
    )


def test_parse_nested_structure_and_alignment():
    buf = _payload()
    assert len(buf) % 4 == 0
    (devc,) = gpmf.parse(buf)
    assert devc.key == "DEVC" and devc.nested
    assert [c.key for c in devc.children] == ["DVID", "DVNM", "STRM", "STRM", "STRM", "STRM"]
    assert devc.find("DVNM")[0].text() == "Camera"
    s1, s2, s3, s4 = devc.find("STRM")
    assert [c.key for c in s1.children] == ["TSMP", "STNM", "SIUN", "SCAL", "ACCL"]
    assert s1.children[1].text() == "Accelerometer (odd)"  # padding junk not part of the string
    accl = s1.children[-1]
    assert (accl.type, accl.size, accl.repeat) == ("s", 6, 5)
    np.testing.assert_array_equal(accl.values()[1], [100, 200, 300])
    byte = s4.children[0]
    assert byte.repeat == 15 and byte.values().ravel().tolist() == list(range(15))
    np.testing.assert_allclose(s4.children[1].values().ravel(), [3.5, -1.0])
    # every item starts on a 32-bit boundary
    offsets = [c.offset for s in (s1, s2, s3, s4) for c in s.children]
    assert all(o % 4 == 0 for o in offsets)


def test_sensor_blocks_scale_units_and_complex_types():
    blocks = {b.key: b for b in gpmf.iter_samples(gpmf.parse(_payload()))}
    acc = blocks["ACCL"]
    assert acc.device_id == 1 and acc.device_name == "Camera"
    assert acc.units() == "m/s\u00b2"
    assert acc.prop_number("TSMP") == 5
    np.testing.assert_allclose(acc.values()[0], [9.81, 0.0, -0.05])  # scalar SCAL 100
    gyro = blocks["GYRO"]
    assert gyro.units() == "rad/s"  # per-axis list that agrees collapses to one string
    np.testing.assert_allclose(gyro.values(), [[1, 1, 1], [2, 3, -4], [0, 0, 0.005]])  # per-axis SCAL
    kbat = blocks["KBAT"]
    assert kbat.typedef() == "fsbL" and kbat.units() == ["m", "s", "deg", "Hz"]
    vals = kbat.values()
    assert vals.shape == (3, 4)
    np.testing.assert_allclose(vals[2], [3.0 / 1, -4 / 2, 1 / 1, 1002 / 10])
    with pytest.raises(gpmf.GpmfError, match="without a preceding TYPE"):
        blocks["ARRY"].values()


def test_typedef_arrays_and_text_members():
    assert gpmf.parse_typedef("f[3]L") == ["f", "f", "f", "L"]
    item = gpmf.parse(klv("ARRY", "?", 16, 2, struct.pack(">fffLfffL", 1, 2, 3, 7, 4, 5, 6, 8)))[0]
    np.testing.assert_allclose(item.values("f[3]L"), [[1, 2, 3, 7], [4, 5, 6, 8]])
    with pytest.raises(gpmf.GpmfError, match="bytes but samples are"):
        item.values("f[2]L")
    with pytest.raises(gpmf.GpmfError):
        gpmf.parse_typedef("f[3")


def test_properties_apply_only_to_later_data():
    buf = nest("DEVC", nest("STRM", shorts("ACCL", [[100, 100, 100]]), klv("SCAL", "s", 2, 1, struct.pack(">h", 100)),
                            shorts("ACCL", [[100, 100, 100]])))
    first, second = list(gpmf.iter_samples(gpmf.parse(buf), keys=["ACCL"]))
    np.testing.assert_allclose(first.values(), [[100, 100, 100]])
    np.testing.assert_allclose(second.values(), [[1, 1, 1]])


def test_scal_mismatch_and_zero():
    vals = np.ones((2, 3))
    bad = gpmf.parse(klv("SCAL", "s", 2, 2, struct.pack(">hh", 1, 2)))[0]
    with pytest.raises(gpmf.GpmfError, match="2 divisors for 3"):
        gpmf.scaled(vals, bad)
    zero = gpmf.parse(klv("SCAL", "s", 2, 1, struct.pack(">h", 0)))[0]
    with pytest.raises(gpmf.GpmfError, match="zero"):
        gpmf.scaled(vals, zero)


def test_malformed_buffers():
    buf = _payload()
    with pytest.raises(gpmf.GpmfError, match="truncated"):
        gpmf.parse(buf[: len(buf) - 40])
    with pytest.raises(gpmf.GpmfError, match="invalid FourCC"):
        gpmf.parse(b"\x01\x02\x03\x04" + buf[4:])
    with pytest.raises(gpmf.GpmfError, match="unknown type"):
        gpmf.parse(klv("ABCD", "Z", 1, 4, b"abcd"))
    # trailing zero padding ends the list quietly
    assert [k.key for k in gpmf.parse(buf + b"\0" * 8)] == ["DEVC"]


@pytest.mark.parametrize("orin, expect", [
    ("ZXY", [2.0, 3.0, 1.0]),  # HERO5: stored Z, X, Y -> X = ch1, Y = ch2, Z = ch0
    ("YxZ", [-2.0, 1.0, 3.0]),  # HERO6: stored Y, -X, Z -> X = -ch1, Y = ch0, Z = ch2
    ("XzY", [1.0, 3.0, -2.0]),  # MAX: stored X, -Z, Y -> X = ch0, Y = ch2, Z = -ch1
])
def test_axis_map(orin, expect):
    stored = np.array([[1.0, 2.0, 3.0]])  # channel i holds i + 1
    np.testing.assert_allclose(gpmf.apply_axis_map(stored, gpmf.axis_map(orin))[0], expect)
    # to another output order, lowercase negating the output
    np.testing.assert_allclose(gpmf.apply_axis_map(stored, gpmf.axis_map(orin, "zXY"))[0],
                               [-expect[2], expect[0], expect[1]])
    with pytest.raises(gpmf.GpmfError):
        gpmf.axis_map("XXY")


# ------------------------------------------------------------------------------- GoPro timing


def _imu_payload(n_acc: int, n_gyro: int, tsmp_acc: int, tsmp_gyro: int, *, acc_unit="m/s\u00b2",
                 gyro_unit="rad/s", stmp_us=None, orin="ZXY", extra: bytes = b"") -> bytes:
    def strm(key, n, tsmp, unit, scal, row):
        items = [u32("TSMP", tsmp)]
        if stmp_us is not None:
            items.insert(0, u64("STMP", stmp_us))
        items += [text("ORIN", orin, per=3)] if orin else []
        items += [text("SIUN", unit, per=len(unit)),
                  klv("SCAL", "s", 2, 1, struct.pack(">h", scal)), shorts(key, np.tile(row, (n, 1)))]
        return nest("STRM", *items)

    # stored order Z, X, Y: an upright camera, gravity on Z, slow yaw (Z) rotation
    acc = strm("ACCL", n_acc, tsmp_acc, acc_unit, 1000, [int(STANDARD_GRAVITY * 1000), 0, 0])
    gyr = strm("GYRO", n_gyro, tsmp_gyro, gyro_unit, 1000, [500, 0, 0])
    return nest("DEVC", u32("DVID", 1), text("DVNM", "Camera"), acc, gyr, extra)


def test_timing_from_payload_times_ignores_padded_last_duration():
    # 100 Hz for 2 full payloads of 1 s, then a last payload holding only 0.3 s of data whose
    # track duration (1 s) runs past the end of the video, as on real cameras.
    payloads = [Payload(i * 1.0, 1.0, _imu_payload(n, n, tot, tot))
                for i, (n, tot) in enumerate([(100, 100), (100, 200), (30, 230)])]
    tele = telemetry_from_payloads(payloads, media=MediaInfo(firmware="HD5.02"))
    acc = tele.streams["ACCL"]
    assert tele.camera == "HERO5 Black" and acc.timing == "payload" and acc.axis_order == "ZXY"
    assert len(acc.t) == 230 and acc.declared_total == 230
    np.testing.assert_allclose(acc.t, np.arange(230) * 0.01, atol=1e-9)
    assert acc.rate_hz == pytest.approx(100.0)
    t, data = canonical_arrays(tele)
    np.testing.assert_allclose(data[:, :3], np.tile([0, 0, 1.0], (230, 1)), atol=1e-4)  # 1 g on +Z
    np.testing.assert_allclose(data[:, 3:], np.tile([0, 0, 0.5], (230, 1)), atol=1e-9)


@pytest.mark.parametrize("firmware, order, acc_xyz", [
    ("HD5.02.02.00.00", "ZXY", [0, 0, 1]),  # HERO5: stored Z, X, Y
    ("HD6.01.61.00.00", "YxZ", [0, 1, 0]),  # HERO6: stored Y, -X, Z
    ("XYZ.1", "stored", [1, 0, 0]),  # unknown camera, no ORIN: stored order kept (warned)
])
def test_axis_order_without_orin_comes_from_the_camera_model(firmware, order, acc_xyz):
    payloads = [Payload(float(i), 1.0, _imu_payload(100, 100, 100 * (i + 1), 100 * (i + 1), orin=None))
                for i in range(2)]
    tele = telemetry_from_payloads(payloads, media=MediaInfo(firmware=firmware))
    assert tele.streams["ACCL"].axis_order == order
    _, data = canonical_arrays(tele)
    np.testing.assert_allclose(data[0, :3], acc_xyz, atol=1e-4)


def test_different_rates_and_units():
    # ACCL 100 Hz in g, GYRO 200 Hz in deg/s: the accelerometer is interpolated onto gyro times.
    payloads = [Payload(float(i), 1.0, _imu_payload(100, 200, 100 * (i + 1), 200 * (i + 1), acc_unit="g",
                                                    gyro_unit="\u00b0/s")) for i in range(3)]
    tele = telemetry_from_payloads(payloads)
    assert tele.streams["GYRO"].unit == "deg/s" and tele.streams["ACCL"].unit == "g"
    t, data = canonical_arrays(tele)
    assert np.all(np.diff(t) > 0)
    np.testing.assert_allclose(np.diff(t), 0.005, atol=1e-9)  # the faster stream's grid
    assert t[0] >= tele.streams["ACCL"].t[0] and t[-1] <= tele.streams["ACCL"].t[-1]
    np.testing.assert_allclose(data[:, 2], STANDARD_GRAVITY, rtol=1e-4)  # acc declared in g, raw 9.807
    np.testing.assert_allclose(data[:, 5], np.deg2rad(0.5), rtol=1e-9)


def test_stmp_timing_with_frame_locked_stream():
    # The camera clock (STMP, us) runs 80 ms ahead of the video clock; SHUT (one sample per video
    # frame at 10 fps) starts each payload exactly at its presentation time.
    payloads = []
    for i in range(3):
        shut = nest("STRM", u64("STMP", 80_000 + i * 1_000_000), u32("TSMP", 10 * (i + 1)),
                    klv("SHUT", "f", 4, 10, np.full(10, 0.01, ">f4").tobytes()))
        data = _imu_payload(100, 100, 100 * (i + 1), 100 * (i + 1), stmp_us=75_000 + i * 1_000_000,
                            orin="XzY", extra=shut)
        payloads.append(Payload(float(i), 1.0, data))
    tele = telemetry_from_payloads(payloads)
    acc = tele.streams["ACCL"]
    assert acc.timing == "stmp" and acc.axis_order == "XzY"
    np.testing.assert_allclose(acc.t, -0.005 + np.arange(300) * 0.01, atol=1e-9)
    # same data, STMP ignored: payload-time fit puts sample 0 at the first payload's start
    plain = telemetry_from_payloads(payloads, use_stmp=False).streams["ACCL"]
    np.testing.assert_allclose(plain.t, np.arange(300) * 0.01, atol=1e-9)
    # stored (X, -Z, Y) = (9.8, 0, 0) -> camera X = 9.8
    np.testing.assert_allclose(acc.values[0], [STANDARD_GRAVITY, 0, 0], atol=1e-3)


def test_tsmp_gap_keeps_later_samples_in_place():
    # payload 1 of 3 is missing from the file: TSMP jumps from 100 to 300
    payloads = [Payload(0.0, 1.0, _imu_payload(100, 100, 100, 100)),
                Payload(2.0, 1.0, _imu_payload(100, 100, 300, 300)),
                Payload(3.0, 1.0, _imu_payload(100, 100, 400, 400))]
    acc = telemetry_from_payloads(payloads).streams["ACCL"]
    np.testing.assert_allclose(acc.t[100], 2.0, atol=1e-9)
    assert np.diff(acc.t).max() == pytest.approx(1.01)


def test_errors_name_the_file():
    good = _imu_payload(100, 100, 100, 100)
    with pytest.raises(DataError, match=r"clip\.mp4: telemetry payload 1 .*truncated"):
        telemetry_from_payloads([Payload(0, 1, good), Payload(1, 1, good[:-50])], source="clip.mp4")
    no_gyro = nest("DEVC", u32("DVID", 1), nest("STRM", shorts("ACCL", [[1, 2, 3]] * 10)))
    with pytest.raises(DataError, match="no GYRO"):
        telemetry_from_payloads([Payload(0, 1, no_gyro)], source="clip.mp4")
