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

Time: each sector's timestamp is an anchor ``(sample index, time)`` (the index may lie in the
sector before or after); every sample's time is piecewise linear between consecutive anchors (the
device's real rate, which drifts slightly from the nominal), so the sample at an anchor gets
exactly its timestamp and times increase strictly. Before the first and after the last anchor of a
stretch of connected sectors, the stretch's first / last rate continues it (the nominal rate for a
lone anchor); a break (a gap in sequence ids, a skipped sector, a restart, time or index not
increasing, an implied rate off by more than 2x) starts a new stretch. ``info.start_time_s`` is the
first sample's time. OpenMovement's reader also interpolates between sector timestamps; skdh's
``ReadCwa`` ignores the fractional timestamps (on the real files its times differ from ours by at
most 1.4 samples, values identical). The device clock has no time zone: its times are read as
local time in ``tz`` (default UTC), with the zone's UTC offset at the first sample applied to the
whole file (the device clock does not follow daylight-saving changes). ``DeviceInfo.start_time_source``
says so.

Damage: a sector with a bad checksum, a non-data sector or erased sectors followed by data are a
DataError naming the file and the sector, or with ``damaged="skip"`` left out and listed in
``info.skipped``. A file that is not a CWA file, a truncated last sector, an invalid timestamp or a
change of format mid-file is always a DataError. Trailing erased sectors (all 0x00 or 0xFF bytes)
are ignored.
"""

from __future__ import annotations

import logging
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

    def __init__(self, path: Path, *, tz: str = "UTC", damaged: str = "refuse"):
        super().__init__(path, tz=tz, damaged=damaged)
        p = self.path
        head, self.size = self._read_head(1024 + SECTOR)
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
        first_index, first_raw = self._first_valid()
        first = np.frombuffer(first_raw, dtype=SECTOR_DTYPE)[0]
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
        # the zone's offset at the first sector's anchor (wall clock of the device)
        t_local0 = self._sector_times(np.frombuffer(first_raw, dtype=SECTOR_DTYPE), first_index)[0]
        self.utc_offset_s = local_to_utc_offset_s(t_local0, tz)
        source = (f"device clock (local time, no zone in the file) read in --tz {tz} "
                  f"(UTC{format_offset(self.utc_offset_s)} at the start, applied to the whole file)")
        self.info = DeviceInfo(format=self.format, path=p, rate_hz=rate, channels="acc+gyro" if has_gyro else "acc",
                               start_time_s=None, start_time_source=source, n_samples=None, device=device)
        self._rate = rate
        # the start time is the first sample's time, as iter_chunks gives it (the first few sectors;
        # damage there is found again, and refused or listed, when the samples are read)
        policy, self.damaged = self.damaged, "skip"
        probe = self.iter_chunks(self.per_sector)
        try:
            first = next(probe, None)
        finally:
            probe.close()
            self.damaged = policy
        if first is None:
            raise DataError(p, "no samples in the .cwa file")
        self.info.start_time_s = float(first[0][0])
        self.info.skipped.clear()

    # ------------------------------------------------------------------------- sector checks

    def _classify(self, sec: np.ndarray, raw: bytes) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per sector: (valid data sector, erased (all 0x00 or 0xFF), bad checksum). A sector that
        is none of these is not a data sector."""
        words = np.frombuffer(raw, dtype="<u2").reshape(len(sec), SECTOR // 2)
        erased = np.all(words == 0, axis=1) | np.all(words == 0xFFFF, axis=1)
        is_ax = (sec["header"] == HEADER_AX) & (sec["length"] == 508)
        badsum = is_ax & ((words.sum(axis=1, dtype=np.uint64) & 0xFFFF) != 0)
        return is_ax & ~badsum, erased, badsum

    def _first_valid(self) -> Tuple[int, bytes]:
        """Index and bytes of the first valid data sector (the format is read from it). With
        ``damaged="refuse"`` that is sector 0; with ``skip``, damaged sectors before it are passed."""
        with open(self.path, "rb") as fh:
            for s in range(self.n_sectors):
                fh.seek(self.data_offset + s * SECTOR)
                raw = fh.read(SECTOR)
                sec = np.frombuffer(raw, dtype=SECTOR_DTYPE)
                valid, erased, badsum = self._classify(sec, raw)
                if valid[0]:
                    return s, raw
                if erased[0]:
                    break
                if self.damaged == "refuse":
                    self._refuse_sector(s, bool(badsum[0]))
        raise DataError(self.path, "no data in the .cwa file: the first data sector is erased"
                        if self.damaged == "refuse" else "no valid data sector in the .cwa file")

    def _refuse_sector(self, s: int, badsum: bool) -> None:
        where = f"sector {s} (byte {self.data_offset + s * SECTOR})"
        raise DataError(self.path, f"corrupt .cwa file: checksum mismatch in {where}" if badsum else
                        f"corrupt .cwa file: {where} is not a data sector")

    def _sector_times(self, sec: np.ndarray, first_index: int) -> np.ndarray:
        """Wall-clock time (s) of each sector's sample 0 at the nominal rate (the device's start
        time for the UTC offset; sample times are :meth:`_times`')."""
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
            # int16 -> float64 inside the ufuncs, written into ``out``: no float64 copy of the block
            v = raw[:, :self.per_sector * self.axes * 2].view("<i2").reshape(len(sec), self.per_sector, self.axes)
            if self.axes == 3:
                np.divide(v, acc_div[:, None, None], out=out[:, :, :3], dtype=np.float64)
            else:
                g_bits = (sec["light_scale"].astype(np.int64) >> 10) & 0x07
                g_range = np.where(g_bits > 0, 8000.0 / (1 << g_bits), 2000.0)
                np.divide(v[:, :, 3:6], acc_div[:, None, None], out=out[:, :, :3], dtype=np.float64)
                np.multiply(v[:, :, 0:3], (g_range / 32768.0 * DEG)[:, None, None], out=out[:, :, 3:6],
                            dtype=np.float64)
        return out, counts

    def iter_chunks(self, chunk_samples: int = DEFAULT_CHUNK_SAMPLES) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        chunk_samples = check_chunk_samples(chunk_samples)
        self.info.skipped.clear()
        block = max(1, chunk_samples // self.per_sector)
        n_before = 0  # samples of the valid sectors before the current block
        held: Optional[Dict[str, np.ndarray]] = None  # context (emitted) + pending sectors
        n_ctx = 0  # leading sectors of ``held`` already emitted (anchors for the next ones)
        erased_run: Optional[Tuple[int, int]] = None  # (first, count) of erased sectors not yet followed by data
        with self._open() as fh:
            s = 0
            while s < self.n_sectors:
                k = min(block, self.n_sectors - s)
                fh.seek(self.data_offset + s * SECTOR)
                raw = fh.read(k * SECTOR)
                if len(raw) != k * SECTOR:
                    raise DataError(self.path, f"truncated .cwa file: short read at sector {s}")
                sec = np.frombuffer(raw, dtype=SECTOR_DTYPE)
                valid, erased, badsum = self._classify(sec, raw)
                counts = np.where(valid, sec["sample_count"], 0).astype(np.int64)
                before = n_before + np.concatenate([[0], np.cumsum(counts)[:-1]])
                # sectors that are not valid data, and each valid one that follows one of them
                resumes = valid & ~np.concatenate([[erased_run is None], valid[:-1]])
                for j in np.flatnonzero(~valid | resumes):
                    if erased[j]:  # erased flash: accepted only at the end of the file
                        erased_run = (erased_run[0], erased_run[1] + 1) if erased_run else (s + int(j), 1)
                        continue
                    erased_run = self._erased_before_data(erased_run, int(before[j]))
                    if not valid[j]:
                        self._bad_sector(s + int(j), bool(badsum[j]), int(before[j]))
                idx = np.flatnonzero(valid)
                if len(idx):
                    cur = self._sector_arrays(sec[idx], s + idx, n_before)
                    n_before += int(cur["count"].sum())
                    held = cur if held is None else {key: np.concatenate([held[key], cur[key]]) for key in cur}
                    del cur, sec, raw  # not kept alive while the chunks are yielded (memory)
                    n_emit = len(held["t"]) - _LOOKAHEAD
                    if n_emit > n_ctx:
                        yield from split_rows(*self._times(held, n_ctx, n_emit), chunk_samples)
                        keep = max(0, n_emit - _CONTEXT)
                        held = {key: v[keep:] for key, v in held.items()}
                        n_ctx = n_emit - keep
                s += k
        if held is not None and len(held["t"]) > n_ctx:
            yield from split_rows(*self._times(held, n_ctx, len(held["t"])), chunk_samples)

    def _bad_sector(self, s: int, badsum: bool, at_sample: int) -> None:
        if self.damaged == "refuse":
            self._refuse_sector(s, badsum)
        self._damage("", reason="checksum mismatch" if badsum else "not a data sector", unit="sector", first=s,
                     count=1, at_sample=at_sample)

    def _erased_before_data(self, run: Optional[Tuple[int, int]], at_sample: int) -> None:
        """Erased sectors followed by data: damage (refused, or skipped and listed)."""
        if run is not None:
            self._damage(f"corrupt .cwa file: data sector after erased sector {run[0]}", reason="erased sector",
                         unit="sector", first=run[0], count=run[1], at_sample=at_sample)
        return None

    def _sector_arrays(self, sec: np.ndarray, index: np.ndarray, n_before: int) -> Dict[str, np.ndarray]:
        """Valid sectors -> anchors (global sample index ``a``, time ``t``), first sample index
        ``n0``, counts, sequence ids, resume flags and values."""
        t_anchor, off = self._anchors(sec, int(index[0]))
        values, counts = self._samples(sec, int(index[0]))
        n0 = n_before + np.concatenate([[0], np.cumsum(counts)[:-1]])
        return {"t": t_anchor, "a": n0 + off, "n0": n0.astype(np.float64), "count": counts,
                "seq": sec["sequence_id"].astype(np.int64), "resume": (sec["events"] & 0x01) != 0, "values": values}

    def _interval_rates(self, c: Dict[str, np.ndarray]) -> np.ndarray:
        """Sample rate implied by each pair of consecutive anchors (NaN across a break: a gap in
        sequence ids, a restart, time or sample index not increasing, or a rate off by over 2x)."""
        dt = np.diff(c["t"])
        dn = np.diff(c["a"])
        with np.errstate(divide="ignore", invalid="ignore"):
            r = dn / dt
        ok = (np.diff(c["seq"]) == 1) & ~c["resume"][1:] & (dt > 0) & (dn > 0)
        ok &= (r >= 0.5 * self._rate) & (r <= 2.0 * self._rate)
        return np.where(ok, r, np.nan)

    def _times(self, c: Dict[str, np.ndarray], lo: int, hi: int) -> Tuple[np.ndarray, np.ndarray]:
        """Times and values of the samples of sectors ``lo:hi`` of ``c``: piecewise linear between the
        anchors of their stretch of connected sectors (extrapolated at the stretch's first/last rate
        before its first and after its last anchor; the nominal rate for a lone anchor)."""
        rates = self._interval_rates(c)
        seg = np.concatenate([[0], np.cumsum(~np.isfinite(rates))])  # stretch id of each sector
        per = self.per_sector
        ts, xs = [], []
        for g in np.unique(seg[lo:hi]):
            members = np.flatnonzero(seg == g)
            a, t = c["a"][members], c["t"][members]
            r = rates[members[:-1]]
            first_rate = r[0] if len(r) else self._rate
            last_rate = r[-1] if len(r) else self._rate
            mine = members[(members >= lo) & (members < hi)]
            i = c["n0"][mine][:, None] + np.arange(per, dtype=np.float64)[None, :]
            keep = np.arange(per)[None, :] < c["count"][mine][:, None]
            full = bool(keep.all())
            i = i.reshape(-1) if full else i[keep]
            left = np.clip(np.searchsorted(a, i, side="right") - 1, 0, len(a) - 1)
            step = np.where(i < a[0], first_rate, last_rate)  # outside the anchors
            inner = (i >= a[0]) & (left < len(a) - 1)
            step[inner] = r[left[inner]]
            ts.append(t[left] + (i - a[left]) / step - self.utc_offset_s)
            xs.append(_rows(c["values"], mine, None if full else keep))
        # one stretch (the usual case): its arrays as they are, not copied once more
        return (ts[0], xs[0]) if len(ts) == 1 else (np.concatenate(ts), np.concatenate(xs))


def _rows(values: np.ndarray, sectors: np.ndarray, keep: Optional[np.ndarray]) -> np.ndarray:
    """The samples [n, 6] of ``sectors`` (sorted indices into ``values`` [S, per_sector, 6]; ``keep``
    [len(sectors), per_sector]: the samples each holds, None = all), copied once."""
    if keep is None:
        if sectors[-1] - sectors[0] + 1 == len(sectors):  # consecutive: one copy of a slice
            return values[sectors[0]:sectors[-1] + 1].reshape(-1, values.shape[2]).copy()
        return values[sectors].reshape(-1, values.shape[2])
    return values[sectors][keep]


#: sectors held back until the anchors after them are read, and kept as anchors before the next
#: ones (timestamp offsets can point a sector or more away from the sector that carries them)
_LOOKAHEAD = 3
_CONTEXT = 3
