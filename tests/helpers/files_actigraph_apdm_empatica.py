"""Writers of small device files that follow each format's public specification, from known signals.

No sample device files exist on the test machines, so these writers are the reference: each writes
exactly what the published layout says (ActiGraph's GT3X-File-Format docs; APDM's HDF5 layout v5 and
the older CaseIdList layout; Empatica's E4 export description and EmbracePlus Avro fields) so the
readers can be checked against known values, and against a second reader (pygt3x, skdh) on the
same bytes.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

STANDARD_GRAVITY = 9.80665
DOTNET_EPOCH_TICKS = 621355968000000000


def smooth_signal(n: int, rate: float, seed: int, amp: float = 0.8) -> np.ndarray:
    """[n, 3] smooth, distinct per-axis signal around gravity on z (g)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    f = rng.uniform(0.3, 2.0, size=3)
    ph = rng.uniform(0, 2 * np.pi, size=3)
    x = amp * np.sin(2 * np.pi * f[None, :] * t[:, None] + ph[None, :])
    x[:, 2] += 1.0
    return x


# ------------------------------------------------------------------------------------------------
# ActiGraph .gt3x (github.com/actigraph/GT3X-File-Format)

def _checksum(header: bytes, payload: bytes) -> int:
    x = 0
    for b in header + payload:
        x ^= b
    return (~x) & 0xFF


def gt3x_record(rtype: int, ts: int, payload: bytes, *, corrupt_checksum: bool = False) -> bytes:
    header = struct.pack("<BBIH", 0x1E, rtype, ts, len(payload))
    chk = _checksum(header, payload) ^ (0xFF if corrupt_checksum else 0)
    return header + payload + bytes([chk])


def pack12(values: np.ndarray) -> bytes:
    """Sequence of signed 12-bit ints -> big-endian bit-packed bytes (two values per 3 bytes)."""
    u = (np.asarray(values, dtype=np.int64) & 0xFFF).tolist()
    out = bytearray()
    for i in range(0, len(u) - 1, 2):
        a, b = u[i], u[i + 1]
        out += bytes([a >> 4, ((a & 0xF) << 4) | (b >> 8), b & 0xFF])
    if len(u) % 2:
        a = u[-1]
        out += bytes([a >> 4, (a & 0xF) << 4])
    return bytes(out)


def encode_param_float(f: float) -> int:
    """PARAMETERS float encoding (spec's SspCodec.Encode)."""
    sig = abs(f)
    if sig < 2.0 ** -23:
        return 0
    exp = 0
    while sig >= 1.0:
        sig /= 2.0
        exp += 1
    while sig < 0.5:
        sig *= 2.0
        exp -= 1
    code = int(sig * 8388608.0)
    if f < 0:
        code = (-code) & 0xFFFFFFFF
    code &= 0x00FFFFFF
    code |= ((exp & 0xFF) << 24)
    return code


def ticks(unix_seconds: float) -> int:
    return DOTNET_EPOCH_TICKS + int(round(unix_seconds * 1e7))


def write_gt3x(path: Path, acc_g: np.ndarray, rate: int, start_local: int, *, serial: str = "MOS2E22180349",
               scale: float = 256.0, record_type: int = 0x1A, timezone: Optional[str] = "-04:00:00",
               scale_in_info: bool = True, ism: Sequence[Tuple[int, int]] = (), bad_checksum_seconds: Iterable[int] = (),
               zero_padding: bool = False, log_bytes: Optional[bytes] = None,
               calibration: Optional[Dict] = None) -> Dict[str, np.ndarray]:
    """Write a .gt3x from ``acc_g`` [rate * seconds, 3] g; record timestamps are local wall-clock seconds.

    ``ism``: (first, stop) second indices during which the device is in idle-sleep mode: no
    activity records, an EVENT 08h at ``first`` and 09h at ``stop``.
    Returns the counts written and which seconds carry activity records.
    """
    n_sec = len(acc_g) // rate
    assert n_sec * rate == len(acc_g)
    lim = 32767 if record_type == 0x1A else 2047
    counts = np.clip(np.round(acc_g * scale), -lim - 1, lim).astype(np.int64)
    asleep = np.zeros(n_sec, bool)
    for a, b in ism:
        asleep[a:b] = True
    bad = set(bad_checksum_seconds)
    log = bytearray()
    meta = json.dumps({"MetadataType": "Bio", "SubjectName": "test"}).encode()
    log += gt3x_record(0x06, start_local, meta)
    params = struct.pack("<HHI", 1, 10, rate)  # SAMPLE_RATE
    params += struct.pack("<HHI", 0, 55, encode_param_float(scale))  # ACCEL_SCALE
    params += struct.pack("<HHI", 1, 2, 0x04)  # FEATURE_ENABLE: sleep mode
    log += gt3x_record(0x15, start_local, params)
    ism_starts = {a for a, _ in ism}
    ism_stops = {b for _, b in ism}
    for s in range(n_sec):
        ts = start_local + s
        if s in ism_starts:
            log += gt3x_record(0x03, ts, b"\x08")
        if s in ism_stops:
            log += gt3x_record(0x03, ts, b"\x09")
        if asleep[s]:
            continue
        c = counts[s * rate:(s + 1) * rate]
        if record_type == 0x1A:
            payload = c.astype("<i2").tobytes()
        elif record_type == 0x00:
            payload = pack12(c[:, [1, 0, 2]].reshape(-1))  # YXZ
        else:
            payload = pack12(c.reshape(-1))
        log += gt3x_record(record_type, ts, payload, corrupt_checksum=s in bad)
        if zero_padding and s % 7 == 3:
            log += b"\x00\x00\x00"
    stop_local = start_local + n_sec
    if any(b >= n_sec for _, b in ism):
        log += gt3x_record(0x02, stop_local, struct.pack("<H", 4100))  # battery, closes the file
    info = [f"Serial Number: {serial}", "Device Type: wGT3XBT", "Firmware: 1.9.2", "Battery Voltage: 4,12",
            f"Sample Rate: {rate}", f"Start Date: {ticks(start_local)}", "Stop Date: 0",
            f"Last Sample Time: {ticks(stop_local)}", f"Download Date: {ticks(stop_local + 60)}",
            "Board Revision: 4", "Unexpected Resets: 0", "Acceleration Min: -8.0", "Acceleration Max: 8.0",
            "Subject Name: test"]
    if scale_in_info:
        info.append(f"Acceleration Scale: {scale:g}")
    if timezone is not None:
        info.append(f"TimeZone: {timezone}")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("info.txt", "\r\n".join(info) + "\r\n")
        zf.writestr("log.bin", bytes(log) if log_bytes is None else log_bytes)
        if calibration is not None:
            zf.writestr("calibration.json", json.dumps(calibration))
    return {"counts": counts, "awake_seconds": np.flatnonzero(~asleep), "log": np.frombuffer(bytes(log), np.uint8)}


# ------------------------------------------------------------------------------------------------
# APDM Opal .h5

def write_apdm_v5(path: Path, sensors: List[Dict], *, version: int = 5) -> None:
    """``sensors``: dicts with id, label, acc_ms2 [N,3], gyro [N,3] or None, time_us [N] uint64, rate, tz_h.
    Attribute types as in a real Mobility Lab export (skdh's six-Opal sample in ../shared): uint32
    version and rate, the timezone offset as text (``b"-4.00"``), ``Units`` on each dataset."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["FileFormatVersion"] = np.uint32(version)
        f.attrs["CaseIdList"] = np.array([s["id"].encode() for s in sensors])
        f.attrs["MonitorLabelList"] = np.array([s["label"].encode() for s in sensors])
        f.create_group("Annotations")
        for s in sensors:
            g = f.create_group(f"Sensors/{s['id']}")
            n = len(s["time_us"])
            acc = g.create_dataset("Accelerometer", data=np.asarray(s["acc_ms2"], np.float32), chunks=(min(n, 64), 3))
            acc.attrs["Units"] = np.bytes_("m/s^2")
            if s.get("gyro") is not None:
                gyro = g.create_dataset("Gyroscope", data=np.asarray(s["gyro"], np.float32), chunks=(min(n, 64), 3))
                gyro.attrs["Units"] = np.bytes_("rad/s")
            g.create_dataset("Magnetometer", data=np.zeros((n, 3), np.float32))
            g.create_dataset("Temperature", data=np.full(n, 31.5, np.float32))
            g.create_dataset("Time", data=np.asarray(s["time_us"], np.uint64), chunks=(min(n, 64),)
                             ).attrs["Units"] = np.bytes_("microseconds")
            c = g.create_group("Configuration")
            c.attrs["Label 0"] = np.bytes_(s["label"])  # fixed-length ASCII, as APDM writes
            c.attrs["Sample Rate"] = np.uint32(s["rate"])
            c.attrs["Timezone Offset"] = np.bytes_(f"{s.get('tz_h', 0):.2f}")
            c.attrs["Accelerometer Enabled"] = np.uint8(1)
            c.attrs["Gyroscope Enabled"] = np.uint8(1 if s.get("gyro") is not None else 0)
            f.create_group(f"Processed/{s['id']}").create_dataset("Orientation", data=np.zeros((n, 4), np.float32))


def write_apdm_legacy(path: Path, sensors: List[Dict], *, version: int = 4) -> None:
    """The older (v2-v4) layout: /CaseIdList, /<case>/Calibrated/Accelerometers|Gyroscopes, /<case>/Time."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["FileFormatVersion"] = np.int32(version)
        f.create_dataset("CaseIdList", data=np.array([s["id"].encode() for s in sensors]))
        f.create_dataset("MonitorLabelList", data=np.array([s["label"].encode() for s in sensors]))
        for s in sensors:
            g = f.create_group(s["id"])
            g.attrs["SampleRate"] = np.uint16(s["rate"])
            g.create_dataset("Calibrated/Accelerometers", data=np.asarray(s["acc_ms2"], np.float64))
            if s.get("gyro") is not None:
                g.create_dataset("Calibrated/Gyroscopes", data=np.asarray(s["gyro"], np.float64))
            g.create_dataset("Time", data=np.asarray(s["time_us"], np.uint64))


def apdm_sensor(sid: str, label: str, n: int, rate: int, t0_us: int, seed: int, gyro: bool = True) -> Dict:
    acc_g = smooth_signal(n, rate, seed)
    rng = np.random.default_rng(seed + 1)
    # APDM time stamps are per sample, with the device's jitter
    time_us = t0_us + np.round(np.arange(n) * 1e6 / rate + rng.uniform(-50, 50, n)).astype(np.int64)
    return {"id": sid, "label": label, "acc_ms2": (acc_g * STANDARD_GRAVITY).astype(np.float32),
            "gyro": rng.normal(0, 1.5, (n, 3)).astype(np.float32) if gyro else None,
            "time_us": time_us.astype(np.uint64), "rate": rate, "tz_h": 1}


# ------------------------------------------------------------------------------------------------
# Empatica E4 (ACC.csv in the session zip)

def e4_acc_csv(counts: np.ndarray, start: float, rate: float = 32.0) -> str:
    lines = [f"{start:.6f}, {start:.6f}, {start:.6f}", f"{rate:.6f}, {rate:.6f}, {rate:.6f}"]
    lines += [f"{x},{y},{z}" for x, y, z in np.asarray(counts, np.int64).tolist()]
    return "\n".join(lines) + "\n"


def write_e4_zip(path: Path, counts: np.ndarray, start: float, rate: float = 32.0, *,
                 acc_text: Optional[str] = None) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ACC.csv", acc_text if acc_text is not None else e4_acc_csv(counts, start, rate))
        zf.writestr("TEMP.csv", f"{start:.6f}\n4.000000\n31.5\n31.6\n")
        zf.writestr("tags.csv", "")
        zf.writestr("info.txt", ".csv files in this archive are in the following format: ...\n")


# ------------------------------------------------------------------------------------------------
# Empatica EmbracePlus raw data (Avro)

def _imu(name: str) -> Dict:
    return {"name": name, "type": {"type": "record", "name": name + "Record", "fields": [
        {"name": "timestampStart", "type": "long"}, {"name": "samplingFrequency", "type": "float"},
        {"name": "imuParams", "type": {"type": "record", "name": name + "Params", "fields": [
            {"name": n, "type": "int"} for n in ("physicalMin", "physicalMax", "digitalMin", "digitalMax")]}},
        {"name": "x", "type": {"type": "array", "items": "int"}},
        {"name": "y", "type": {"type": "array", "items": "int"}},
        {"name": "z", "type": {"type": "array", "items": "int"}}]}}


def _values(name: str, item: str) -> Dict:
    return {"name": name, "type": {"type": "record", "name": name + "Record", "fields": [
        {"name": "timestampStart", "type": "long"}, {"name": "samplingFrequency", "type": "float"},
        {"name": "values", "type": {"type": "array", "items": item}}]}}


EMBRACEPLUS_SCHEMA = {
    "type": "record", "name": "Session", "namespace": "empatica.format.avro", "fields": [
        {"name": "schemaVersion", "type": {"type": "record", "name": "Version", "fields": [
            {"name": "major", "type": "int"}, {"name": "minor", "type": "int"}, {"name": "patch", "type": "int"}]}},
        {"name": "fwVersion", "type": "string"}, {"name": "hwVersion", "type": "string"},
        {"name": "algoVersion", "type": "string"}, {"name": "timezone", "type": "int"},
        {"name": "enrollment", "type": {"type": "record", "name": "Enrollment", "fields": [
            {"name": n, "type": "string"} for n in ("participantID", "siteID", "studyID", "organizationID")]}},
        {"name": "deviceSn", "type": "string"}, {"name": "deviceModel", "type": "string"},
        {"name": "rawData", "type": {"type": "record", "name": "RawData", "fields": [
            _imu("accelerometer"), _imu("gyroscope"), _values("eda", "float"), _values("temperature", "float"),
            {"name": "tags", "type": {"type": "record", "name": "Tags", "fields": [
                {"name": "tagsTimeMicros", "type": {"type": "array", "items": "long"}}]}},
            _values("bvp", "float"),
            {"name": "systolicPeaks", "type": {"type": "record", "name": "SystolicPeaks", "fields": [
                {"name": "peaksTimeNanos", "type": {"type": "array", "items": "long"}}]}},
            _values("steps", "int")]}}]}


def embraceplus_record(counts: np.ndarray, start_us: int, rate: float, *, gyro_counts: Optional[np.ndarray] = None,
                       phys: int = 16, dig: int = 2048, gphys: int = 2000, gdig: int = 32768,
                       timezone_s: int = 3600) -> Dict:
    def imu(c, pmax, dmax):
        c = np.asarray(c, np.int64) if c is not None else np.zeros((0, 3), np.int64)
        return {"timestampStart": int(start_us), "samplingFrequency": float(rate),
                "imuParams": {"physicalMin": -pmax, "physicalMax": pmax, "digitalMin": -dmax, "digitalMax": dmax},
                "x": c[:, 0].tolist(), "y": c[:, 1].tolist(), "z": c[:, 2].tolist()}

    empty = {"timestampStart": int(start_us), "samplingFrequency": 4.0, "values": []}
    return {"schemaVersion": {"major": 6, "minor": 4, "patch": 0}, "fwVersion": "2.1.0", "hwVersion": "1.0",
            "algoVersion": "1.0", "timezone": int(timezone_s),
            "enrollment": {"participantID": "P001", "siteID": "S1", "studyID": "ST1", "organizationID": "O1"},
            "deviceSn": "3YK3J151VJ", "deviceModel": "EmbracePlus",
            "rawData": {"accelerometer": imu(counts, phys, dig), "gyroscope": imu(gyro_counts, gphys, gdig),
                        "eda": dict(empty), "temperature": dict(empty), "tags": {"tagsTimeMicros": []},
                        "bvp": dict(empty), "systolicPeaks": {"peaksTimeNanos": []}, "steps": dict(empty)}}


def avro_bytes(record: Dict) -> bytes:
    """One EmbracePlus-style Avro file, written with Apache's ``avro`` (the reader decodes with fastavro)."""
    import pytest

    pytest.importorskip("avro")
    from avro.datafile import DataFileWriter
    from avro.io import DatumWriter
    from avro.schema import parse

    buf = io.BytesIO()
    writer = DataFileWriter(buf, DatumWriter(), parse(json.dumps(EMBRACEPLUS_SCHEMA)))
    writer.append(record)
    writer.flush()
    data = buf.getvalue()
    writer.close()
    return data
