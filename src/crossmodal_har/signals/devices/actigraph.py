"""ActiGraph ``.gt3x`` files (GT3X+, wGT3X+, wGT3X-BT, ActiSleep+, GT9X Link): accelerometer only.

Format (ActiGraph's public spec, github.com/actigraph/GT3X-File-Format): a zip archive holding
``info.txt`` (``key: value`` lines: Serial Number, Sample Rate in Hz, Start Date in .NET ticks,
Acceleration Scale, optionally TimeZone) and ``log.bin``, a sequence of records
``1Eh | type u8 | timestamp u32 (s) | size u16 | payload | checksum u8`` (checksum = ones' complement
of the XOR of header and payload). One ACTIVITY record (0x00: 12-bit packed, YXZ), ACTIVITY2 (0x1A:
int16 XYZ) or ACTIVITY3 (0x1B: 12-bit packed XYZ) holds one second of samples; sample ``i`` of a
record is at ``timestamp + i / rate``. Counts / scale = g.

Reader choice. ActiGraph's own ``pygt3x`` is used for everything it exposes per record: ``info.txt``
(``pygt3x.components.Info``), the 12-bit unpacking (``pygt3x.activity_payload``) and the factory
calibration of files with an uncalibrated ``calibration.json`` (``pygt3x.calibration``). Its
``FileReader`` is not used to walk the file because it holds the whole recording in memory (a list
of per-second arrays, then ``np.unique`` over all of them): measured on a 24 h, 100 Hz file, 1.45 GB
peak RSS and 28 s, growing with length (~10 GB for 7 days). The record framing (8-byte header,
payload, checksum) is walked here instead, streaming ``log.bin`` out of the zip: 225 MB peak and
4.5 s for the same file, and the same 225 MB for 72 h. The tests check the result against
``pygt3x.FileReader`` on the same files.

Conventions, as ``pygt3x``/ActiLife: idle-sleep mode (EVENT record payload 08h ... 09h) is filled
with the last sample before it, once per second, so a device asleep on a table reads as flat
(non-wear) rather than as a gap, and is listed in ``info.idle_sleep``; seconds missing for any other
reason stay a gap in ``t``; records with a bad checksum are skipped with a warning (their second
becomes a gap) and listed in ``info.skipped``, under either ``damaged`` policy; a record not later than
the one before it is skipped. Values are not rounded to 3 decimals (ActiLife's display rounding).
Framing errors (bad separator, a record cut off at the end of ``log.bin``) are a DataError.

Time. Record timestamps are the device's wall clock, set to local time when it was initialised,
with no zone. ``info.txt``'s ``TimeZone`` (``-04:00:00``), where present, gives the UTC offset;
otherwise the local time is read in ``tz``, with the offset at the first sample held for the whole
recording (the device clock does not follow daylight-saving changes). ``info.start_time_source``
says which.

The older NHANES layout (GT3X+ firmware <= 2.5: ``activity.bin`` instead of ``log.bin``) has no
records: one stream of 12-bit packed YXZ samples (unpacked by pygt3x, as the records are), sample
``i`` at info.txt's Start Date + ``i / rate``, scale 341 counts/g (the NEO serials' default). pygt3x
reads the same values (rounded to 3 decimals) but times them from the Start Date's .NET ticks taken
as nanoseconds (1990 instead of 2021 for its neo.gt3x); the tests compare values and counts only.
"""

from __future__ import annotations

import io
import json
import logging
import re
import struct
import zipfile
import zlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from crossmodal_har.errors import DataError, UserError
from crossmodal_har.signals.clock import MAX_JUMP_S, format_offset, local_to_utc_offset_s
from crossmodal_har.signals.containers import check_zip, open_member
from crossmodal_har.signals.devices.base import DEFAULT_CHUNK_SAMPLES, DeviceInfo, DeviceReader, Skipped, check_rate
from crossmodal_har.signals.text import exception_line

log = logging.getLogger(__name__)

SEPARATOR = 0x1E
EVENT, PARAMETERS = 0x03, 0x15
ACTIVITY, ACTIVITY2, ACTIVITY3 = 0x00, 0x1A, 0x1B
ACTIVITY_TYPES = (ACTIVITY, ACTIVITY2, ACTIVITY3)
ISM_ENTER, ISM_EXIT = b"\x08", b"\x09"
DOTNET_EPOCH_TICKS = 621355968000000000  # .NET ticks (100 ns) at 1970-01-01T00:00:00
# ACTIVITY2 spec: NEO/CLE serials 341 LSB/g (+-6 g), MOS serials 256 LSB/g (+-8 g)
SCALE_BY_SERIAL = (("NEO", 341.0), ("CLE", 341.0), ("MOS", 256.0))
_READ_BLOCK = 1 << 20
_NHANES_BLOCK_S = 3600  # seconds of activity.bin unpacked at once


def _pygt3x():
    try:
        import pygt3x.activity_payload as payload
        import pygt3x.calibration as calibration
        import pygt3x.components as components
    except ImportError as e:
        raise UserError("reading ActiGraph .gt3x files needs the pygt3x package: pip install pygt3x") from e
    return payload, calibration, components


def _parse_utc_offset(text: str) -> Optional[int]:
    """``-04:00:00`` / ``05:30`` / ``+01:00:00`` -> seconds east of UTC; None when unparseable."""
    m = re.fullmatch(r"\s*([+-]?)(\d{1,2}):(\d{2})(?::(\d{2}))?\s*", text or "")
    if not m:
        return None
    sign = -1 if m.group(1) == "-" else 1
    return sign * (int(m.group(2)) * 3600 + int(m.group(3)) * 60 + int(m.group(4) or 0))


def _decode_param_float(value: int) -> float:
    """PARAMETERS float: 24-bit two's-complement fraction / 2^23 times 2^(signed 8-bit exponent)."""
    exponent = (value >> 24) & 0xFF
    exponent = exponent - 256 if exponent & 0x80 else exponent
    fraction = value & 0xFFFFFF
    fraction = fraction - (1 << 24) if fraction & 0x800000 else fraction
    return fraction / float(1 << 23) * 2.0 ** exponent


def _checksum_ok(header: bytes, payload: bytes, checksum: int) -> bool:
    x = np.bitwise_xor.reduce(np.frombuffer(header + payload, dtype=np.uint8))
    return (~int(x)) & 0xFF == checksum


class _LogStream:
    """Walks ``log.bin`` record by record from an open (streaming) file object."""

    def __init__(self, path: Path, f: io.BufferedIOBase):
        self.path, self.f = path, f
        self.buf = b""
        self.pos = 0
        self.offset = 0  # byte offset in log.bin of buf[0]
        self.bad_checksums = 0
        self.count = 0  # records walked so far
        #: called with (record index, byte offset) of each record skipped for its checksum
        self.on_bad: Optional[Callable[[int, int], None]] = None

    def _fill(self, n: int) -> bool:
        """Ensure n bytes are available from pos; False at end of file."""
        while len(self.buf) - self.pos < n:
            more = self.f.read(_READ_BLOCK)
            if not more:
                return False
            self.offset += self.pos
            self.buf = self.buf[self.pos:] + more
            self.pos = 0
        return True

    def records(self) -> Iterator[Tuple[int, int, bytes]]:
        """Yield ``(type, timestamp, payload)`` of each record with a valid checksum."""
        while True:
            if not self._fill(1):
                return
            if self.buf[self.pos] == 0:  # spec: stray zero bytes may sit between records
                self.pos += 1
                continue
            at = self.offset + self.pos
            if self.buf[self.pos] != SEPARATOR:
                raise DataError(self.path, f"log.bin is corrupt: no record separator (1Eh) at byte {at}")
            if not self._fill(8):
                raise DataError(self.path, f"log.bin is truncated: record header at byte {at} is incomplete")
            header = self.buf[self.pos:self.pos + 8]
            _, rtype, ts, size = struct.unpack("<BBIH", header)
            if not self._fill(9 + size):
                raise DataError(self.path, f"log.bin is truncated: the record at byte {at} is cut off")
            payload = self.buf[self.pos + 8:self.pos + 8 + size]
            checksum = self.buf[self.pos + 8 + size]
            self.pos += 9 + size
            self.count += 1
            if not _checksum_ok(header, payload, checksum):
                if self.on_bad is not None:
                    self.on_bad(self.count - 1, at)
                self.bad_checksums += 1
                if self.bad_checksums <= 3:
                    log.warning("%s: log.bin record at byte %d (type %d) has a bad checksum; skipped",
                                self.path, at, rtype)
                continue
            yield rtype, ts, payload


class Gt3xReader(DeviceReader):
    """ActiGraph ``.gt3x`` (log.bin layout). Accelerometer only: gyroscope columns are NaN."""

    format = "gt3x"
    suffixes = (".gt3x",)

    def __init__(self, path: Path, *, tz: str = "UTC", damaged: str = "refuse"):
        super().__init__(path, tz=tz, damaged=damaged)
        self._payload, calibration_mod, components = _pygt3x()
        try:
            with zipfile.ZipFile(self.path) as zf:
                check_zip(zf, self.path)
                names = set(zf.namelist())
                self.nhanes = "log.bin" not in names and "activity.bin" in names
                if "log.bin" not in names and not self.nhanes:
                    raise DataError(self.path, "not an ActiGraph .gt3x file: the zip has neither log.bin nor "
                                               "activity.bin")
                if "info.txt" not in names:
                    raise DataError(self.path, "not an ActiGraph .gt3x file: the zip has no info.txt")
                info = components.Info.read_zip(zf)
                calibration = self._read_json(zf, "calibration.json") if "calibration.json" in names else None
                if self.nhanes:
                    params, first = {}, self._nhanes_start(info.start_date)
                    n_samples: Optional[int] = zf.getinfo("activity.bin").file_size * 2 // 9
                else:
                    n_samples = None
                    with zf.open("log.bin") as f:
                        params, first = self._scan_head(_LogStream(self.path, f))
        except DataError:
            raise
        except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError,
                NotImplementedError, RuntimeError) as e:  # unsupported compression, encrypted zip
            raise DataError(self.path, f"not a readable .gt3x zip archive ({exception_line(e)})") from None
        except (ValueError, KeyError, UnicodeDecodeError) as e:
            raise DataError(self.path, f"info.txt is malformed ({exception_line(e)})") from None

        rate = int(check_rate(self.path, info.sample_rate, "info.txt Sample Rate"))
        if rate <= 0:
            raise DataError(self.path, "info.txt has no valid Sample Rate")
        if first is None:
            raise DataError(self.path, "activity.bin holds no samples" if self.nhanes else
                            "log.bin has no accelerometer (ACTIVITY) records")
        self.rate = rate
        self._start_ticks = info.start_date
        self.scale, scale_source = self._scale(info, params)
        self._calibrate = None
        if calibration is not None and calibration.get("isCalibrated") is False:
            method = calibration.get("calibrationMethod")
            if method != 2:
                raise DataError(self.path, f"calibration.json uses calibration method {method!r}; "
                                           "only method 2 is supported")
            try:
                self._calibrate = calibration_mod.CalibrationV2Service(calibration, rate).calibrate_samples
            except (KeyError, ValueError, TypeError) as e:
                raise DataError(self.path, f"calibration.json is incomplete ({exception_line(e)})") from None

        # local wall clock -> UTC
        offset = _parse_utc_offset(info.timezone) if info.timezone else None
        clock = "info.txt Start Date (activity.bin)" if self.nhanes else "log.bin"
        if offset is not None:
            source = (f"file: {clock} local time, UTC offset {format_offset(offset)} from info.txt TimeZone")
        else:
            offset = int(local_to_utc_offset_s(first, tz))
            source = (f"file: {clock} local time without a zone, read in --tz {tz} "
                      f"(UTC{format_offset(offset)} at the start, held for the whole recording)")
        self.utc_offset_s = offset

        device: Dict[str, Any] = {
            "model": info.device_type, "serial": info.serial_number, "firmware": info.firmware,
            "board_revision": info.board_revision, "acc_scale_lsb_per_g": self.scale,
            "acc_scale_source": scale_source, "acc_range_g": [info.acceleration_min, info.acceleration_max],
            "units_as_stored": f"counts ({self.scale:g} per g)",
            "calibration": "calibration.json method 2 (pygt3x)" if self._calibrate else "factory-calibrated",
            "start_date_local": _ticks_to_iso(info.start_date),
            "utc_offset_s": offset, "layout": "NHANES (activity.bin)" if self.nhanes else "log.bin",
        }
        if not self.nhanes:
            device["idle_sleep_mode_fill"] = "last sample"
        if info.timezone:
            device["timezone_field"] = info.timezone
        self.info = DeviceInfo(format=self.format, path=self.path, rate_hz=float(rate), channels="acc",
                               start_time_s=float(first - offset), start_time_source=source,
                               n_samples=n_samples, device={k: v for k, v in device.items() if v is not None})

    # -- header -----------------------------------------------------------------------------------

    def _read_json(self, zf: zipfile.ZipFile, name: str) -> Dict[str, Any]:
        try:
            with zf.open(name) as f:
                obj = json.load(f)
        except (ValueError, UnicodeDecodeError) as e:
            raise DataError(self.path, f"{name} is not valid JSON ({exception_line(e)})") from None
        if not isinstance(obj, dict):
            raise DataError(self.path, f"{name} is not a JSON object")
        return obj

    def _scan_head(self, stream: _LogStream) -> Tuple[Dict[Tuple[int, int], int], Optional[int]]:
        """PARAMETERS (address, id) -> raw u32, and the timestamp of the first activity record."""
        params: Dict[Tuple[int, int], int] = {}
        for rtype, ts, payload in stream.records():
            if rtype == PARAMETERS:
                n = len(payload) // 8
                for address, ident, value in struct.iter_unpack("<HHI", payload[:8 * n]):
                    params[(address, ident)] = value
            elif rtype in ACTIVITY_TYPES and len(payload) > 1:
                return params, ts
        return params, None

    def _nhanes_start(self, ticks: int) -> int:
        """info.txt's Start Date (.NET ticks, device local time) -> local seconds since 1970 (whole
        seconds: ActiLife starts recordings on a whole second)."""
        if not ticks or ticks <= DOTNET_EPOCH_TICKS:
            raise DataError(self.path, "info.txt has no valid Start Date (needed for the activity.bin layout)")
        return (ticks - DOTNET_EPOCH_TICKS) // 10_000_000

    def _scale(self, info: Any, params: Dict[Tuple[int, int], int]) -> Tuple[float, str]:
        if info.acceleration_scale and info.acceleration_scale > 0:
            return float(info.acceleration_scale), "info.txt Acceleration Scale"
        if (0, 55) in params:
            value = _decode_param_float(params[(0, 55)])
            if value > 0:
                return value, "log.bin PARAMETERS ACCEL_SCALE"
        serial = (info.serial_number or "").upper()
        for prefix, scale in SCALE_BY_SERIAL:
            if serial.startswith(prefix):
                return scale, f"default for {prefix} serial numbers (spec)"
        raise DataError(self.path, "cannot tell the accelerometer scale: no Acceleration Scale in info.txt, "
                                   "no ACCEL_SCALE parameter and an unknown serial number")

    # -- samples ----------------------------------------------------------------------------------

    def _decode(self, rtype: int, payload: bytes) -> np.ndarray:
        """One activity record -> [n, 3] float64 counts in XYZ order."""
        if rtype == ACTIVITY2:
            usable = len(payload) - len(payload) % 6
            xyz = np.frombuffer(payload[:usable], dtype="<i2").reshape(-1, 3)
        else:
            n = (len(payload) * 2) // 9  # 36 bits per sample
            xyz = self._payload.unpack_bitpack_acceleration(payload)[:n]
            if rtype == ACTIVITY:  # YXZ on disk
                xyz = xyz[:, [1, 0, 2]]
        return xyz.astype(np.float64)

    def _to_g(self, counts: np.ndarray) -> np.ndarray:
        if self._calibrate is not None:
            return np.asarray(self._calibrate(counts), dtype=np.float64)
        return counts / self.scale

    def _seconds(self) -> Iterator[Tuple[int, np.ndarray]]:
        """Yield ``(local second, [n, 3] g)`` blocks in time order, sample ``i`` of a block at
        ``second + i / rate``; idle-sleep seconds filled."""
        if self.nhanes:
            yield from self._activity_bin()
            return
        rate = self.rate
        last_ts: Optional[int] = None
        last_value: Optional[np.ndarray] = None
        ism_since: Optional[int] = None
        record_ts = 0  # timestamp of the latest record of any type
        skipped = short = 0
        n_samples = [0]  # samples yielded so far
        try:
            with zipfile.ZipFile(self.path) as zf, open_member(zf, "log.bin", self.path) as f:
                stream = _LogStream(self.path, f)
                stream.on_bad = lambda index, at: self._listed(index, at, n_samples)
                for rtype, ts, payload in stream.records():
                    record_ts = ts
                    if rtype == EVENT and payload in (ISM_ENTER, ISM_EXIT):
                        if payload == ISM_ENTER:
                            ism_since = ts
                        elif ism_since is not None and last_value is not None and last_ts is not None:
                            yield from self._fill(last_ts + 1, ts, last_value, n_samples)
                            last_ts = max(last_ts, ts - 1)
                            ism_since = None
                        continue
                    if rtype not in ACTIVITY_TYPES or len(payload) <= 1:  # 1 byte: USB connect event
                        continue
                    if last_ts is not None and ts <= last_ts:
                        skipped += 1
                        continue
                    g = self._to_g(self._decode(rtype, payload))
                    if len(g) > rate:
                        raise DataError(self.path, f"log.bin record at {ts} holds {len(g)} samples, "
                                                   f"more than the sample rate {rate} Hz")
                    if len(g) == 0:
                        continue
                    short += len(g) < rate
                    ism_since = None
                    n_samples[0] += len(g)
                    yield ts, g
                    last_ts, last_value = ts, g[-1]
                if ism_since is not None and last_value is not None and last_ts is not None:
                    # asleep when the log ends: fill up to the last record's time, as pygt3x does
                    yield from self._fill(last_ts + 1, record_ts, last_value, n_samples)
        except DataError:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError) as e:
            raise DataError(self.path, f"log.bin cannot be read ({exception_line(e)})") from None
        if skipped:
            log.warning("%s: %d activity records not later than the one before were skipped", self.path, skipped)
        if short:
            log.warning("%s: %d activity records held fewer samples than the sample rate", self.path, short)

    def _activity_bin(self) -> Iterator[Tuple[int, np.ndarray]]:
        """NHANES layout: ``activity.bin`` is one stream of 12-bit packed YXZ samples, contiguous from
        info.txt's Start Date (no records, no timestamps); read in blocks of whole seconds."""
        first = self._nhanes_start(self._start_ticks)
        block_bytes = 9 * self.rate * _NHANES_BLOCK_S  # 2 samples per 9 bytes: whole samples, whole seconds
        second = first
        try:
            with zipfile.ZipFile(self.path) as zf, open_member(zf, "activity.bin", self.path) as f:
                while True:
                    raw = f.read(block_bytes)
                    n = len(raw) * 2 // 9
                    if not n:
                        break
                    counts = self._payload.unpack_bitpack_acceleration(raw)[:n][:, [1, 0, 2]]
                    yield second, self._to_g(counts.astype(np.float64))
                    second += n // self.rate
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError) as e:
            raise DataError(self.path, f"activity.bin cannot be read ({exception_line(e)})") from None

    def _fill(self, start: int, stop: int, value: np.ndarray, n_samples: List[int]) -> Iterator[Tuple[int, np.ndarray]]:
        """Idle-sleep fill: seconds ``start .. stop-1``, each ``rate`` copies of ``value``; the
        stretch is listed in ``info.idle_sleep`` first. A span longer than the clock's
        :data:`MAX_JUMP_S` is not filled (nor listed): it is a jump that splits the recording."""
        if stop - start > MAX_JUMP_S:
            log.warning("%s: idle sleep of %.4g days (local second %d to %d) is longer than %g days: not "
                        "filled, the recording is split there", self.path, (stop - start) / 86400.0, start, stop,
                        MAX_JUMP_S / 86400.0)
            return
        if stop > start:
            self.info.idle_sleep.append((float(start - self.utc_offset_s), float(stop - self.utc_offset_s)))
        block = np.broadcast_to(value, (self.rate, 3))
        for s in range(start, stop):
            n_samples[0] += self.rate
            yield s, block

    def _listed(self, index: int, at_byte: int, n_samples: List[int]) -> None:
        """A record skipped for its bad checksum (as pygt3x skips it, whatever ``damaged`` says):
        listed in ``info.skipped``."""
        skipped = self.info.skipped
        last = skipped[-1] if skipped else None
        if last is not None and last.first + last.count == index and last.at_sample == n_samples[0]:
            last.count += 1
        else:
            skipped.append(Skipped(reason=f"bad checksum (log.bin byte {at_byte})", unit="record", first=index,
                                   count=1, at_sample=n_samples[0]))

    def iter_chunks(self, chunk_samples: int = DEFAULT_CHUNK_SAMPLES) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        if chunk_samples < 1:
            raise ValueError("chunk_samples must be >= 1")
        self.info.idle_sleep.clear()
        self.info.skipped.clear()
        step = 1.0 / self.rate
        ts_parts: List[np.ndarray] = []
        g_parts: List[np.ndarray] = []
        held = 0
        for second, g in self._seconds():
            ts_parts.append((second - self.utc_offset_s) + np.arange(len(g)) * step)
            g_parts.append(g)
            held += len(g)
            while held >= chunk_samples:
                t_all, g_all = np.concatenate(ts_parts), np.concatenate(g_parts)
                yield t_all[:chunk_samples], _canonical(g_all[:chunk_samples])
                ts_parts, g_parts = [t_all[chunk_samples:]], [g_all[chunk_samples:]]
                held -= chunk_samples
        if held:
            yield np.concatenate(ts_parts), _canonical(np.concatenate(g_parts))


def _canonical(g: np.ndarray) -> np.ndarray:
    out = np.full((len(g), 6), np.nan)
    out[:, :3] = g
    return out


def _ticks_to_iso(ticks: int) -> Optional[str]:
    if not ticks or ticks <= DOTNET_EPOCH_TICKS:
        return None
    try:
        return (datetime(1970, 1, 1) + timedelta(microseconds=(ticks - DOTNET_EPOCH_TICKS) // 10)).isoformat()
    except OverflowError:
        return None
