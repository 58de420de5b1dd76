"""Writers of small device files that follow each format's public description, for the tests.

No sample device files exist on the test machines, so tests write their own from known signals
and read them back (with our reader and, where one exists, a second independent reader).

* :func:`write_cwa`: Axivity ``.cwa`` (OpenMovement ``cwa.h``): AX3 (packed or 16-bit) and AX6.
* :func:`write_geneactiv`: GENEActiv ``.bin`` (the 59-line header and 10-line pages of the
  manufacturer's software).

Times given here are the device's *wall clock* (local time), in seconds since 1970-01-01 00:00
of that clock, as the devices store them.
"""

from __future__ import annotations

import datetime as dt
import math
import urllib.parse
from pathlib import Path
from typing import Dict, Optional

import numpy as np

SECTOR = 512


# --------------------------------------------------------------------------------------- CWA

def cwa_timestamp(wall_s: float) -> int:
    """Packed ``YYYYYYMM MMDDDDDh hhhhmmmm mmssssss`` of a whole-second wall-clock time."""
    t = dt.datetime(1970, 1, 1) + dt.timedelta(seconds=int(wall_s))
    return ((t.year - 2000) << 26) | (t.month << 22) | (t.day << 17) | (t.hour << 12) | (t.minute << 6) | t.second


def _rate_code(rate_hz: float, acc_range_g: int) -> int:
    k = round(math.log2(3200.0 / rate_hz))
    assert abs(3200.0 / 2 ** k - rate_hz) < 1e-9, f"rate {rate_hz} is not 3200 / 2^k"
    rng = {16: 0, 8: 1, 4: 2, 2: 3}[acc_range_g]
    return (rng << 6) | (15 - k)


def _finish_sector(buf: bytearray) -> bytes:
    words = np.frombuffer(bytes(buf[:510]), dtype="<u2")
    buf[510:512] = int((-int(words.sum(dtype=np.uint64))) & 0xFFFF).to_bytes(2, "little")
    return bytes(buf)


def write_cwa(path: Path, acc_g: np.ndarray, start_wall_s: float, rate_hz: float = 100.0, *,
              gyro_dps: Optional[np.ndarray] = None, packed: bool = False, fractional: bool = True,
              acc_range_g: int = 8, gyro_range_dps: int = 2000, session_id: int = 1234, device_id: int = 42,
              metadata: Optional[Dict[str, str]] = None, true_rate_hz: Optional[float] = None) -> Path:
    """Write an AX3 (``gyro_dps`` None) or AX6 file; ``len(acc_g)`` must fill whole sectors
    (AX3 packed 120, AX3 16-bit 80, AX6 40 samples per sector).

    ``fractional``: timestamps with the 15-bit fraction of a second (current firmware); otherwise
    whole-second timestamps at the sample index where they are valid (old firmware).
    ``true_rate_hz``: the rate the device really sampled at (timestamps follow it; the header and
    sectors still say ``rate_hz``), as a drifting oscillator does."""
    acc_g = np.asarray(acc_g, np.float64)
    ax6 = gyro_dps is not None
    assert not (ax6 and packed)
    per = 40 if ax6 else (120 if packed else 80)
    n = len(acc_g)
    assert n % per == 0 and n > 0, f"{n} samples do not fill whole sectors of {per}"
    acc_n = 4 if ax6 else 0  # accel scale 1/2^(8+n) g per unit
    gyro_bits = int(round(math.log2(8000 / gyro_range_dps))) if ax6 else 0
    code = _rate_code(rate_hz, acc_range_g)
    hdr = bytearray(b"\xff" * 1024)
    hdr[0:2] = b"MD"
    hdr[2:4] = (1020).to_bytes(2, "little")
    hdr[4] = 0x64 if ax6 else 0x17
    hdr[5:7] = device_id.to_bytes(2, "little")
    hdr[7:11] = session_id.to_bytes(4, "little")
    hdr[11:13] = (0).to_bytes(2, "little")
    hdr[13:17] = (0).to_bytes(4, "little")
    hdr[17:21] = (0xFFFFFFFF).to_bytes(4, "little")
    hdr[21:25] = (0).to_bytes(4, "little")
    hdr[25] = 0
    hdr[26] = 0
    hdr[35] = gyro_bits if ax6 else 0x00
    hdr[36] = code
    hdr[37:41] = cwa_timestamp(start_wall_s).to_bytes(4, "little")
    hdr[41] = 45
    hdr[42:44] = (0xFFFF).to_bytes(2, "little")
    hdr[44:64] = b"\x00" * 20
    meta = "&".join(f"{urllib.parse.quote_plus(k)}={urllib.parse.quote_plus(v)}"
                    for k, v in (metadata or {"_sc": "subject01"}).items()).encode("ascii")
    hdr[64:512] = meta.ljust(448, b" ")
    out = [bytes(hdr)]
    acc_raw = np.round(acc_g * (1 << (8 + acc_n))).astype(np.int64)
    gyro_raw = np.round(np.asarray(gyro_dps, np.float64) * 32768.0 / gyro_range_dps).astype(np.int64) if ax6 else None
    for k in range(n // per):
        i0 = k * per
        t_first = start_wall_s + i0 / (true_rate_hz or rate_hz)
        if fractional:
            whole = math.floor(t_first)
            frac16 = int(round((t_first - whole) * 65536)) & 0xFFFE
            if frac16 >= 65536:
                whole, frac16 = whole + 1, 0
            ts, dev_frac = whole, 0x8000 | (frac16 >> 1)
            offset = -((frac16 * int(rate_hz)) >> 16)
        else:
            ts = math.ceil(t_first - 1e-9)
            offset = int(round((ts - t_first) * (true_rate_hz or rate_hz)))
            dev_frac = device_id & 0x7FFF
        buf = bytearray(SECTOR)
        buf[0:2] = b"AX"
        buf[2:4] = (508).to_bytes(2, "little")
        buf[4:6] = dev_frac.to_bytes(2, "little")
        buf[6:10] = session_id.to_bytes(4, "little")
        buf[10:14] = k.to_bytes(4, "little")
        buf[14:18] = cwa_timestamp(ts).to_bytes(4, "little")
        buf[18:20] = ((acc_n << 13) | (gyro_bits << 10) | 100).to_bytes(2, "little")
        buf[20:22] = (300).to_bytes(2, "little")
        buf[22] = 0
        buf[23] = 200
        buf[24] = code
        buf[25] = (0x60 | 2) if ax6 else (0x30 | (0 if packed else 2))
        buf[26:28] = int(offset).to_bytes(2, "little", signed=True)
        buf[28:30] = per.to_bytes(2, "little")
        a = acc_raw[i0:i0 + per]
        if packed:
            words = []
            for x, y, z in a:
                e = 0
                while any(v >> e > 511 or v >> e < -512 for v in (x, y, z)):
                    e += 1
                assert e <= 3
                words.append((e << 30) | (((z >> e) & 0x3FF) << 20) | (((y >> e) & 0x3FF) << 10) | ((x >> e) & 0x3FF))
            buf[30:510] = np.array(words, dtype="<u4").tobytes()
        elif ax6:
            vals = np.column_stack([gyro_raw[i0:i0 + per], a])
            buf[30:510] = np.clip(vals, -32768, 32767).astype("<i2").tobytes()
        else:
            buf[30:30 + per * 6] = np.clip(a, -32768, 32767).astype("<i2").tobytes()
        out.append(_finish_sector(buf))
    Path(path).write_bytes(b"".join(out))
    return Path(path)


def cwa_packed_quantised(acc_g: np.ndarray) -> np.ndarray:
    """What a packed AX3 file stores for ``acc_g`` (10-bit mantissa, shared exponent), in g."""
    raw = np.round(np.asarray(acc_g, np.float64) * 256).astype(np.int64)
    out = np.empty_like(raw)
    for i, row in enumerate(raw):
        e = 0
        while any(v >> e > 511 or v >> e < -512 for v in row):
            e += 1
        out[i] = (row >> e) << e
    return out / 256.0


# ---------------------------------------------------------------------------------- GENEActiv

def _gn_time(wall_s: float) -> str:
    t = dt.datetime(1970, 1, 1) + dt.timedelta(seconds=round(wall_s * 1000) / 1000)
    return t.strftime("%Y-%m-%d %H:%M:%S") + f":{t.microsecond // 1000:03d}"


def write_geneactiv(path: Path, acc_g: np.ndarray, start_wall_s: float, rate_hz: float = 100.0, *,
                    time_zone: Optional[str] = "GMT +00:00", gains=(25548, 25770, 25460), offsets=(57, -351, 287),
                    n_pages_header: Optional[int] = None, serial: str = "034984") -> Path:
    """Write a GENEActiv .bin with ``len(acc_g)`` (a multiple of 300) samples. ``time_zone`` None
    leaves the header's Time Zone line empty. ``n_pages_header`` overrides the page count the
    header announces (to fake a truncated download)."""
    acc_g = np.asarray(acc_g, np.float64)
    n = len(acc_g)
    assert n % 300 == 0 and n > 0
    pages = n // 300
    gains = np.asarray(gains, np.float64)
    offsets = np.asarray(offsets, np.float64)
    raw = np.clip(np.round((acc_g * gains + offsets) / 100.0), -2048, 2047).astype(np.int64)
    lines = [
        "Device Identity", f"Device Unique Serial Code:{serial}", "Device Type:GENEActiv", "Device Model:1.1",
        "Device Firmware:Ver06.17 15June2016", "Calibration Date:2016-06-21 13:53:00:000", "",
        "Device Capabilities", "Accelerometer Range:-8 to 8", "Accelerometer Resolution:0.0039",
        "Accelerometer Units:g", "Light Meter Range:0 to 2500", "Light Meter Resolution:5", "Light Meter Units:lux",
        "Temperature Sensor Range:-30 to 70", "Temperature Sensor Resolution:0.25",
        "Temperature Sensor Units:deg. C", "",
        "Configuration Info", f"Measurement Frequency:{rate_hz:g} Hz", "Measurement Period:168 Hours",
        f"Start Time:{_gn_time(start_wall_s)}", f"Time Zone:{time_zone or ''}", "",
        "Trial Info", "Study Centre:", "Study Code:", "Investigator ID:", "Exercise Type:", "Config Operator ID:",
        f"Config Time:{_gn_time(start_wall_s - 3600)}", "Config Notes:", "Extract Operator ID:", "Extract Time:",
        "Extract Notes:(device clock drift 0.000s)", "",
        "Subject Info", "Device Location Code:left wrist", "Subject Code:s01", "Date of Birth:1900-01-01", "Sex:",
        "Height:", "Weight:", "Handedness Code:", "Subject Notes:", "",
        "Calibration Data",
        f"x gain:{gains[0]:.0f}", f"x offset:{offsets[0]:.0f}", f"y gain:{gains[1]:.0f}",
        f"y offset:{offsets[1]:.0f}", f"z gain:{gains[2]:.0f}", f"z offset:{offsets[2]:.0f}", "Volts:300",
        "Lux:800", "",
        "Memory Status", f"Number of Pages:{n_pages_header if n_pages_header is not None else pages}", "",
    ]
    assert len(lines) == 59, len(lines)
    u = raw & 0xFFF
    for p in range(pages):
        block = u[p * 300:(p + 1) * 300]
        words = (block[:, 0] << 36) | (block[:, 1] << 24) | (block[:, 2] << 12) | (0 << 2)
        hexline = "".join(f"{int(w):012X}" for w in words)
        lines += ["Recorded Data", f"Device Unique Serial Code:{serial}", f"Sequence Number:{p}",
                  f"Page Time:{_gn_time(start_wall_s + p * 300 / rate_hz)}", "Unassigned:", "Temperature:25.0",
                  "Battery voltage:4.1", "Device Status:Recording", f"Measurement Frequency:{rate_hz:.1f}", hexline]
    Path(path).write_bytes(("\r\n".join(lines) + "\r\n").encode("ascii"))
    return Path(path)


def geneactiv_quantised(acc_g: np.ndarray, gains=(25548, 25770, 25460), offsets=(57, -351, 287)) -> np.ndarray:
    """The acceleration (g) a GENEActiv file stores for ``acc_g``."""
    gains = np.asarray(gains, np.float64)
    offsets = np.asarray(offsets, np.float64)
    raw = np.clip(np.round((np.asarray(acc_g, np.float64) * gains + offsets) / 100.0), -2048, 2047)
    return (raw * 100.0 - offsets) / gains


def make_signal(n: int, rate_hz: float, seed: int = 0) -> np.ndarray:
    """[n, 6]: acc (g, gravity on z plus motion) and gyro (deg/s), smooth and deterministic."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate_hz
    f = rng.uniform(0.5, 3.0, size=6)
    ph = rng.uniform(0, 2 * np.pi, size=6)
    x = np.sin(2 * np.pi * f[None, :] * t[:, None] + ph[None, :])
    acc = 0.6 * x[:, :3] + np.array([0.0, 0.0, 1.0])
    gyro = 150.0 * x[:, 3:]
    return np.column_stack([acc, gyro])
