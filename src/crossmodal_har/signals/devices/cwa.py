"""Axivity AX3 / AX6 ``.cwa`` files, read sector by sector in bounded memory.

Our own reader, written from the public format description (OpenMovement ``Docs/ax3/cwa.h``):
a 1024-byte header (``MD``) followed by 512-byte data sectors (``AX``), each with a sequence id,
a packed RTC timestamp of device *local* time, the sample index at which that timestamp is valid
(``timestampOffset``, refined by a 15-bit fraction of a second when the top bit of
``deviceFractional`` is set), a rate code (rate = 3200 / 2^(15 - code & 15) Hz, acc range
16 >> (code >> 6) g), the accelerometer scale (1 / 2^(8 + n) g per unit, top 3 bits of
``lightScale``), the gyroscope range (8000 / 2^n deg/s full scale, next 3 bits), and either packed
samples (AX3: 3 x 10-bit + 2-bit exponent in 32 bits, 120 per sector) or 16-bit samples (AX3: 80
per sector; AX6: 40 per sector, gyro x/y/z then acc x/y/z). Each sector's 16-bit word sum is zero.

Why not ``skdh.io.ReadCwa``: it reads the whole file into memory at once (a 7-day 100 Hz AX6
file is ~2.9 GB of float64), and it ignores the fractional timestamps. It is used in the tests as
the second, independent reader of the same files.

Time: each sector's timestamp is an anchor ``(sample index, time)``; sample times are linear
between consecutive anchors (the device's real rate, which drifts slightly from the nominal), and
use the nominal rate across a break (a gap in sequence ids, a restart, or an implied rate off by
more than 2x). The device clock has no time zone: its times are read as local time in ``tz``
(default UTC), with the zone's UTC offset at the first sample applied to the whole file (the
device clock does not follow daylight-saving changes). ``DeviceInfo.start_time_source`` says so.

Strict: a file that is not a CWA file, a truncated last sector, a bad checksum, a non-data
sector, or a change of format mid-file is a DataError naming the file and the sector. Trailing
erased sectors (all 0x00 or 0xFF bytes) are ignored.
"""

from __future__ import annotations

import logging
import os
import urllib.parse
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import numpy as np

from crossmodal_har.errors import DataError
from crossmodal_har.signals.clock import format_offset, local_to_utc_offset_s
from crossmodal_har.signals.devices.base import (DEFAULT_CHUNK_SAMPLES, DeviceInfo, DeviceReader, check_chunk_samples,
                                                 days_from_civil, split_rows)

log = logging.getLogger(__name__)

SECTOR = 512
HEADER_MD = 0x444D  # "MD"
HEADER_AX = 0x5841  # "AX"
DEG = np.pi / 180.0

# one data sector, little-endian, tightly packed (cwa.h OM_READER_DATA_PACKET)
SECTOR_DTYPE = np.dtype([
    ("header", "<u2"), ("length", "<u2"), ("device_fractional", "<u2"), ("session_id", "<u4"),
    ("sequence_id", "<u4"), ("timestamp", "<u4"), ("light_scale", "<u2"), ("temperature", "<u2"),
    ("events", "u1"), ("battery", "u1"), ("rate_code", "u1"), ("num_axes_bps", "u1"),
    ("timestamp_offset", "<i2"), ("sample_count", "<u2"), ("raw", "V480"), ("checksum", "<u2"),
])
assert SECTOR_DTYPE.itemsize == SECTOR


def rate_from_code(code: int) -> float:
    return 3200.0 / (1 << (15 - (code & 0x0F)))


def decode_timestamps(packed: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Packed ``YYYYYYMM MMDDDDDh hhhhmmmm mmssssss`` values -> (wall-clock seconds since 1970 as if
    UTC, valid mask)."""
    v = packed.astype(np.int64)
    year = ((v >> 26) & 0x3F) + 2000
    month = (v >> 22) & 0x0F
    day = (v >> 17) & 0x1F
    hour = (v >> 12) & 0x1F
    minute = (v >> 6) & 0x3F
    sec = v & 0x3F
    ok = (month >= 1) & (month <= 12) & (day >= 1) & (day <= 31) & (hour < 24) & (minute < 60) & (sec < 60)
    days = days_from_civil(year, np.clip(month, 1, 12), np.clip(day, 1, 31))
    return (days * 86400 + hour * 3600 + minute * 60 + sec).astype(np.float64), ok


def _metadata(raw: bytes) -> Dict[str, str]:
    text = raw.decode("ascii", errors="replace").rstrip("\x20\x00\xff\ufffd")
    out: Dict[str, str] = {}
    for pair in text.split("&"):
        if not pair:
            continue
        k, _, v = pair.partition("=")
        k = urllib.parse.unquote_plus(k)
        if k:
            out[k] = urllib.parse.unquote_plus(v)
    return out


class CwaReader(DeviceReader):
    format = "cwa"
    suffixes = (".cwa",)

    def __init__(self, path: Path, *, tz: str = "UTC"):
        super().__init__(path, tz=tz)
        p = self.path
        if not p.is_file():
            raise DataError(p, "file not found")
        try:
            self.size = os.path.getsize(p)
            with open(p, "rb") as fh:
                head = fh.read(1024 + SECTOR)
        except OSError as exc:
            raise DataError(p, f"cannot read file: {exc.strerror or exc}") from None
        if len(head) < 64 or int.from_bytes(head[0:2], "little") != HEADER_MD:
            raise DataError(p, "not an Axivity .cwa file (no 'MD' header block at offset 0)")
        length = int.from_bytes(head[2:4], "little")
        self.data_offset = ((length + 4 + SECTOR - 1) // SECTOR) * SECTOR
        if self.data_offset < 1024:
            self.data_offset = 1024
        if len(head) < self.data_offset + SECTOR:
            raise DataError(p, "truncated .cwa file: no data sector after the header")
        n_bytes = self.size - self.data_offset
        if n_bytes % SECTOR:
            raise DataError(p, f"truncated .cwa file: {self.size} bytes is not the header plus whole 512-byte "
                               f"sectors (last sector has {n_bytes % SECTOR} bytes)")
        self.n_sectors = n_bytes // SECTOR
        hardware = head[4]
        sensor_config = head[35]
        rate_code = head[36]
        first_raw = head[self.data_offset:self.data_offset + SECTOR]
        first = np.frombuffer(first_raw, dtype=SECTOR_DTYPE)[0]
        if not self._check_sectors(np.frombuffer(first_raw, dtype=SECTOR_DTYPE), first_raw, 0)[0]:
            raise DataError(p, "no data in the .cwa file: the first data sector is erased")
        if int(first["rate_code"]) == 0:
            raise DataError(p, "unsupported very old .cwa format (sector rate code 0)")
        self.rate_code = int(first["rate_code"])
        self.num_axes_bps = int(first["num_axes_bps"])
        self.axes = self.num_axes_bps >> 4
        packing = self.num_axes_bps & 0x0F
        if packing == 0 and self.axes == 3:
            self.packed, self.per_sector = True, 120
        elif packing == 2 and self.axes in (3, 6, 9):
            self.packed, self.per_sector = False, 480 // (2 * self.axes)
        else:
            raise DataError(p, f"unsupported sample format 0x{self.num_axes_bps:02x} in the first data sector")
        rate = rate_from_code(self.rate_code)
        has_gyro = self.axes >= 6
        if has_gyro and sensor_config in (0x00, 0xFF):
            log.debug("%s: header says accelerometer only but sectors carry %d axes", p, self.axes)
        model = {0x64: "AX6"}.get(hardware, "AX3" if hardware in (0x00, 0xFF, 0x17) else f"0x{hardware:02x}")
        device_id = int.from_bytes(head[5:7], "little")
        upper = int.from_bytes(head[11:13], "little")
        if upper != 0xFFFF:
            device_id |= upper << 16
        acc_scale_bits = (int(first["light_scale"]) >> 13) & 0x07
        gyro_bits = (int(first["light_scale"]) >> 10) & 0x07
        device: Dict[str, Any] = {
            "model": model, "device_id": device_id, "session_id": int.from_bytes(head[7:11], "little"),
            "firmware": int(head[41]), "acc_range_g": 16 >> (rate_code >> 6) if rate_code else None,
            "acc_units_per_g": 1 << (8 + acc_scale_bits),
            "packing": "packed 10-bit" if self.packed else "16-bit", "axes": self.axes, "sectors": self.n_sectors,
            "stored_units": "acc: 1/2^(8+n) g per unit; gyro: full scale / 32768 deg/s per unit",
        }
        if has_gyro:
            device["gyro_range_dps"] = 8000 // (1 << gyro_bits) if gyro_bits else 2000
        meta = _metadata(head[64:512])
        if meta:
            device["metadata"] = meta
        # start time: the first sector's anchor, wall clock of the device
        t_local0 = self._sector_times(np.frombuffer(first_raw, dtype=SECTOR_DTYPE), 0)[0]
        self.utc_offset_s = local_to_utc_offset_s(t_local0, tz)
        start = t_local0 - self.utc_offset_s
        source = (f"device clock (local time, no zone in the file) read in --tz {tz} "
                  f"(UTC{format_offset(self.utc_offset_s)} at the start, applied to the whole file)")
        self.info = DeviceInfo(format=self.format, path=p, rate_hz=rate, channels="acc+gyro" if has_gyro else "acc",
                               start_time_s=float(start), start_time_source=source, n_samples=None, device=device)
        self._rate = rate

    # ------------------------------------------------------------------------- sector checks

    def _check_sectors(self, sec: np.ndarray, raw: bytes, first_index: int) -> np.ndarray:
        """Mask of data sectors; erased sectors are False; anything else bad raises."""
        words = np.frombuffer(raw, dtype="<u2").reshape(len(sec), SECTOR // 2)
        erased = np.all(words == 0, axis=1) | np.all(words == 0xFFFF, axis=1)
        is_ax = (sec["header"] == HEADER_AX) & (sec["length"] == 508)
        bad = ~is_ax & ~erased
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise DataError(self.path, f"corrupt .cwa file: sector {first_index + k} (byte "
                                       f"{self.data_offset + (first_index + k) * SECTOR}) is not a data sector")
        csum = (words.sum(axis=1, dtype=np.uint64) & 0xFFFF)
        badsum = is_ax & (csum != 0)
        if badsum.any():
            k = int(np.flatnonzero(badsum)[0])
            raise DataError(self.path, f"corrupt .cwa file: checksum mismatch in sector {first_index + k} (byte "
                                       f"{self.data_offset + (first_index + k) * SECTOR})")
        return is_ax

    def _sector_times(self, sec: np.ndarray, first_index: int) -> np.ndarray:
        """Wall-clock time (s) of each sector's sample 0 at the nominal rate (the start time)."""
        t, idx = self._anchors(sec, first_index)
        return t - idx / rate_from_code(int(sec["rate_code"][0]) or 1)

    def _anchors(self, sec: np.ndarray, first_index: int) -> Tuple[np.ndarray, np.ndarray]:
        """Per sector: (wall-clock time of the anchor, anchor's sample index within the sector)."""
        t, ok = decode_timestamps(sec["timestamp"])
        if not ok.all():
            k = int(np.flatnonzero(~ok)[0])
            raise DataError(self.path, f"corrupt .cwa file: invalid timestamp 0x{int(sec['timestamp'][k]):08x} in "
                                       f"sector {first_index + k}")
        offset = sec["timestamp_offset"].astype(np.float64)
        frac_set = (sec["device_fractional"] & 0x8000) != 0
        if frac_set.any():
            frac16 = ((sec["device_fractional"].astype(np.int64) & 0x7FFF) << 1)
            rate_int = int(rate_from_code(int(sec["rate_code"][0])))
            undo = (frac16 * rate_int) >> 16  # the firmware's backwards-compatible shift of the offset
            offset = np.where(frac_set, offset + undo, offset)
            t = np.where(frac_set, t + frac16 / 65536.0, t)
        return t, offset

    # ----------------------------------------------------------------------------- samples

    def _samples(self, sec: np.ndarray, first_index: int) -> Tuple[np.ndarray, np.ndarray]:
        """Decode sectors -> (values [S, per_sector, 6] canonical, counts [S])."""
        fmt = sec["num_axes_bps"]
        if np.any(fmt != self.num_axes_bps) or np.any(sec["rate_code"] != self.rate_code):
            k = int(np.flatnonzero((fmt != self.num_axes_bps) | (sec["rate_code"] != self.rate_code))[0])
            raise DataError(self.path, f"sector {first_index + k}: sample format or rate changes within the file "
                                       "(not supported)")
        counts = sec["sample_count"].astype(np.int64)
        if np.any(counts > self.per_sector):
            k = int(np.flatnonzero(counts > self.per_sector)[0])
            raise DataError(self.path, f"corrupt .cwa file: sector {first_index + k} claims {int(counts[k])} samples "
                                       f"(at most {self.per_sector})")
        raw = np.frombuffer(sec["raw"].tobytes(), dtype=np.uint8).reshape(len(sec), 480)
        acc_div = (1 << (8 + ((sec["light_scale"].astype(np.int64) >> 13) & 0x07))).astype(np.float64)
        out = np.full((len(sec), self.per_sector, 6), np.nan)
        if self.packed:
            v = raw.view("<u4").astype(np.int64)  # [S, 120]
            e = v >> 30
            for j, shift in enumerate((0, 10, 20)):
                a = (((v >> shift) & 0x3FF) ^ 0x200) - 0x200
                out[:, :, j] = (a << e) / acc_div[:, None]
        else:
            v = raw[:, :self.per_sector * self.axes * 2].view("<i2").reshape(len(sec), self.per_sector, self.axes)
            v = v.astype(np.float64)
            if self.axes == 3:
                out[:, :, :3] = v / acc_div[:, None, None]
            else:
                g_bits = (sec["light_scale"].astype(np.int64) >> 10) & 0x07
                g_range = np.where(g_bits > 0, 8000.0 / (1 << g_bits), 2000.0)
                out[:, :, :3] = v[:, :, 3:6] / acc_div[:, None, None]
                out[:, :, 3:6] = v[:, :, 0:3] * (g_range / 32768.0 * DEG)[:, None, None]
        return out, counts

    def iter_chunks(self, chunk_samples: int = DEFAULT_CHUNK_SAMPLES) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        chunk_samples = check_chunk_samples(chunk_samples)
        block = max(1, chunk_samples // self.per_sector)
        n_before = 0  # samples of the file before the current block
        carry: Optional[Dict[str, np.ndarray]] = None  # last sector, waiting for the next anchor
        last_rate = self._rate
        done_data = False
        try:
            fh = open(self.path, "rb")
        except OSError as exc:
            raise DataError(self.path, f"cannot read file: {exc.strerror or exc}") from None
        with fh:
            s = 0
            while s < self.n_sectors:
                k = min(block, self.n_sectors - s)
                fh.seek(self.data_offset + s * SECTOR)
                raw = fh.read(k * SECTOR)
                if len(raw) != k * SECTOR:
                    raise DataError(self.path, f"truncated .cwa file: short read at sector {s}")
                sec = np.frombuffer(raw, dtype=SECTOR_DTYPE)
                is_ax = self._check_sectors(sec, raw, s)
                if done_data and is_ax.any():
                    raise DataError(self.path, f"corrupt .cwa file: data sector {s + int(np.flatnonzero(is_ax)[0])} "
                                               "after erased sectors")
                if not is_ax.all():  # erased flash: accepted only at the end of the file
                    done_data = True
                    first_erased = int(np.flatnonzero(~is_ax)[0])
                    if is_ax[first_erased:].any():
                        raise DataError(self.path, f"corrupt .cwa file: data sector after erased sector "
                                                   f"{s + first_erased}")
                    sec = sec[:first_erased]
                if len(sec):
                    t_anchor, off = self._anchors(sec, s)
                    values, counts = self._samples(sec, s)
                    n0 = n_before + np.concatenate([[0], np.cumsum(counts)[:-1]])
                    n_before += int(counts.sum())
                    cur = {"t": t_anchor, "a": n0 + off, "n0": n0.astype(np.float64), "count": counts,
                           "seq": sec["sequence_id"].astype(np.int64), "resume": (sec["events"] & 0x01) != 0,
                           "values": values}
                    if carry is not None:
                        cur = {key: np.concatenate([carry[key], cur[key]]) for key in cur}
                    rates = self._interval_rates(cur)
                    good = np.flatnonzero(np.isfinite(rates))
                    if len(good):
                        last_rate = float(rates[good[-1]])
                    emit = {key: v[:-1] for key, v in cur.items()}
                    carry = {key: v[-1:] for key, v in cur.items()}
                    if len(emit["t"]):
                        yield from split_rows(*self._emit(emit, np.where(np.isfinite(rates), rates, self._rate)),
                                              chunk_samples)
                s += k
        if carry is not None:
            yield from split_rows(*self._emit(carry, np.array([last_rate])), chunk_samples)

    def _interval_rates(self, c: Dict[str, np.ndarray]) -> np.ndarray:
        """Sample rate implied by each pair of consecutive anchors (NaN across a break)."""
        dt = np.diff(c["t"])
        dn = np.diff(c["a"])
        with np.errstate(divide="ignore", invalid="ignore"):
            r = dn / dt
        ok = (np.diff(c["seq"]) == 1) & ~c["resume"][1:] & (dt > 0) & (dn > 0)
        ok &= (r >= 0.5 * self._rate) & (r <= 2.0 * self._rate)
        return np.where(ok, r, np.nan)

    def _emit(self, c: Dict[str, np.ndarray], rates: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        counts = c["count"]
        per = self.per_sector
        keep = (np.arange(per)[None, :] < counts[:, None])  # [S, per]
        j = np.arange(per, dtype=np.float64)[None, :]
        t = c["t"][:, None] + (c["n0"][:, None] + j - c["a"][:, None]) / rates[:, None] - self.utc_offset_s
        return t[keep], c["values"][keep]
