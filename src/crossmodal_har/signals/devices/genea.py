"""Older GENEA ``.bin`` files (the GENEActiv's predecessor), read page by page in bounded memory.

A ``.bin`` file that starts with ``GENEA/`` is read here, any other ``.bin`` by :mod:`.geneactiv`
(:func:`crossmodal_har.signals.devices.device_format` looks at the first bytes).

The layout, as GGIRread's ``readGenea`` / ``GeneaBinReader`` read it (learned from their
description and checked on GGIRread's ``genea_testfile.bin``; our own code): a text header
``GENEA/1.00`` and ``Key:Value`` lines (CR LF) up to a blank line (``Serial-Number``,
``Firmware-Version``, ``Body-Location``, ``Trial-Start``, ``Accel-Offsets`` and ``Accel-Gains``
with three integers each, ``Sample-Rate:80Hz``, ``Upload-Time``). Right after the blank line come
pages of 2048 bytes: 341 chunks of 6 bytes, then 2 bytes of padding. The high nibble of a chunk's
byte 1 is its type: 0 one accelerometer sample (x = the low nibble of byte 1 and byte 2; y = byte 3
and the high nibble of byte 4; z = the low nibble of byte 4 and byte 5; 12-bit two's complement),
2 a timestamp (bytes 2-5, big-endian whole seconds since 1970 of the device's wall clock), 4 the
battery voltage (byte 2). Byte 0 of every chunk is a CRC-8 (polynomial 0x85, initial value 0, most
significant bit first) of bytes 1-5: GGIRread ignores it; we found it by testing CRC-8 variants on
the test file, where it holds for all 43,578 chunks, and check it.

Acceleration as GGIRread calibrates it: x and z negated, then ``g = (count + offset) * gain / 8192 /
340`` per axis (``Accel-Offsets``, ``Accel-Gains``; 340 counts per g at the nominal gain 8192).
GGIRread rounds to whole counts after the gain and to whole mg after that; we keep the unrounded
values (GGIRread's integers are ours rounded the same two ways: tested). A header without gains or
offsets gets GGIRread's defaults (8192, 0), with a warning. No gyroscope, temperature or light:
``channels="acc"``; the battery chunks are not returned (the GENEActiv reader returns no extra
channels either).

Time: a timestamp is the time of the accelerometer sample that follows it (an anchor; GGIRread's
rule too). Between consecutive anchors the samples are spaced linearly (the device's own rate; on
the test file exactly 80 samples per second, so this is the nominal grid); before the first anchor
of a stretch and after its last they continue at the header's rate. A step between anchors longer
than twice the samples' span at the header's rate plus the 1 s resolution is a gap: the samples
keep the header's rate after the earlier anchor. A timestamp that does not increase is a DataError
(the device clock jumps back). The header carries no time zone: the clock is read as local time in
``tz`` (default UTC, which gives GGIRread's numbers), the zone's offset at the first sample applied
to the whole file. ``info.start_time_s`` is the first sample's time.

Damage: a page with a chunk whose CRC fails, an erased page (all 0x00 or 0xFF bytes) followed by
data, and a last page cut short are a DataError naming the file and the page, or with
``damaged="skip"`` left out and listed in ``info.skipped`` (the samples after a skipped page are
timed from their own anchors, so the hole is a gap in ``t``). Erased pages at the end are the end of
the recording. A chunk of another type with a good CRC is ignored (as GGIRread does) and counted in
``device["other_chunks"]``. The header does not say how many pages follow: ``n_samples`` is None.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from crossmodal_har.errors import DataError
from crossmodal_har.signals.clock import format_offset, local_to_utc_offset_s
from crossmodal_har.signals.devices.base import (DEFAULT_CHUNK_SAMPLES, DeviceInfo, DeviceReader, check_chunk_samples,
                                                 check_rate, split_rows)

log = logging.getLogger(__name__)

MAGIC = b"GENEA/"
PAGE_BYTES = 2048
CHUNK_BYTES = 6
PAGE_CHUNKS = 341  # 2046 bytes of chunks, then 2 bytes of padding
ACC, TIME, BATTERY = 0, 2, 4  # chunk types (the battery voltage is not returned)
COUNTS_PER_G = 340
NOMINAL_GAIN = 8192
AXIS_SIGN = np.array([-1, 1, -1], dtype=np.int64)  # x and z are negated (GGIRread)
MAX_HEADER_BYTES = 16384
#: samples of a stretch held back while no timestamp says their time (~1 h at 100 Hz) before the
#: file is refused: the device writes one timestamp a second
MAX_UNTIMED_SAMPLES = 360_000


def _crc8_table(poly: int = 0x85) -> np.ndarray:
    table = np.zeros(256, dtype=np.uint8)
    for i in range(256):
        c = i
        for _ in range(8):
            c = ((c << 1) ^ poly) & 0xFF if c & 0x80 else (c << 1) & 0xFF
        table[i] = c
    return table


_CRC8 = _crc8_table()


def chunk_crc(chunks: np.ndarray) -> np.ndarray:
    """CRC-8 (polynomial 0x85, initial 0, MSB first) of bytes 1-5 of each chunk ``[n, 6]`` uint8;
    a good chunk carries it in byte 0."""
    c = np.zeros(len(chunks), dtype=np.uint8)
    for j in range(1, CHUNK_BYTES):
        c = _CRC8[c ^ chunks[:, j]]
    return c


def _utc_text(local_s: float) -> str:
    return datetime.fromtimestamp(local_s, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _ints(path: Path, key: str, text: str) -> np.ndarray:
    parts = text.split()
    if len(parts) != 3 or not all(re.fullmatch(r"[-+]?\d+", x) for x in parts):
        raise DataError(path, f"bad {key} {text!r} in the GENEA header (expected 3 integers)")
    return np.array([int(x) for x in parts], dtype=np.int64)


class GeneaReader(DeviceReader):
    format = "genea"
    suffixes = (".bin",)
    magic = MAGIC

    def __init__(self, path: Path, *, tz: str = "UTC", damaged: str = "refuse"):
        super().__init__(path, tz=tz, damaged=damaged)
        p = self.path
        head, size = self._read_head(MAX_HEADER_BYTES)
        self.header, version, self.data_start = self._header(head)
        rate_text = self.header.get("Sample-Rate")
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:Hz)?\s*", rate_text or "", flags=re.IGNORECASE)
        if not m:
            raise DataError(p, "GENEA header lacks 'Sample-Rate'" if rate_text is None
                            else f"bad Sample-Rate {rate_text!r} in the GENEA header")
        self._rate = check_rate(p, float(m.group(1)), "GENEA header Sample-Rate")
        cal_source = "file header"
        if "Accel-Gains" in self.header and "Accel-Offsets" in self.header:
            self.gain = _ints(p, "Accel-Gains", self.header["Accel-Gains"])
            self.offset = _ints(p, "Accel-Offsets", self.header["Accel-Offsets"])
            if np.any(self.gain == 0):
                raise DataError(p, "calibration gain of 0 in the GENEA header (Accel-Gains)")
        else:
            self.gain, self.offset = np.full(3, NOMINAL_GAIN, dtype=np.int64), np.zeros(3, dtype=np.int64)
            cal_source = "GGIRread's defaults (gain 8192, offset 0): the header has none"
            log.warning("%s: no Accel-Gains/Accel-Offsets in the GENEA header; using gain 8192, offset 0", p)
        self.n_pages, self.cut_bytes, erased_tail = self._extent(size)
        self.utc_offset_s = 0.0
        device: Dict[str, Any] = {
            "model": "GENEA", "format_version": version, "serial": self.header.get("Serial-Number", ""),
            "firmware": self.header.get("Firmware-Version", ""), "pages": self.n_pages,
            "calibration": {f"{a} {k}": int(v[j]) for j, a in enumerate("xyz")
                            for k, v in (("gain", self.gain), ("offset", self.offset))},
            "calibration_source": cal_source,
            "stored_units": "12-bit counts; g = (count + offset) * gain / 8192 / 340, x and z negated",
        }
        for key in ("Body-Location", "Trial-Start", "Upload-Time"):
            if self.header.get(key):
                device[key.lower().replace("-", "_")] = self.header[key]
        if erased_tail:
            device["erased_pages_at_end"] = erased_tail
        self.info = DeviceInfo(format=self.format, path=p, rate_hz=self._rate, channels="acc", start_time_s=None,
                               start_time_source="", n_samples=None, device=device)
        # the first sample's local time, as iter_chunks gives it (damage there is found again, and
        # refused or listed, when the samples are read)
        policy, self.damaged = self.damaged, "skip"
        probe = self.iter_chunks(1000)
        try:
            first = next(probe, None)
        finally:
            probe.close()
            self.damaged = policy
        self.info.skipped.clear()
        if first is None:
            raise DataError(p, "no samples in the GENEA file")
        t_local0 = float(first[0][0])
        self.utc_offset_s = local_to_utc_offset_s(t_local0, tz)
        self.info.start_time_s = t_local0 - self.utc_offset_s
        self.info.start_time_source = (
            f"device clock (local time, no zone in the file) read in --tz {tz} "
            f"(UTC{format_offset(self.utc_offset_s)} at the start, applied to the whole file)")

    def _header(self, head: bytes) -> Tuple[Dict[str, str], str, int]:
        """(the header's fields in file order, format version, byte offset of the first page)."""
        p = self.path
        if not head.startswith(MAGIC):
            raise DataError(p, "not a GENEA .bin file (it does not start with 'GENEA/')")
        fields: Dict[str, str] = {}
        pos, version = 0, ""
        for number, raw in enumerate(head.split(b"\n")[:-1], start=1):  # the last piece may be cut
            pos += len(raw) + 1
            line = raw.rstrip(b"\r").decode("latin-1")
            if number == 1:
                version = line[len(MAGIC):].strip()
                if not re.fullmatch(r"1(\.\d+)?", version):
                    raise DataError(p, f"GENEA format version {version!r} is not known (1.x is read)", line=1)
                continue
            if not line.strip():
                return fields, version, pos
            key, sep, value = line.partition(":")
            if not sep or not key.strip() or re.search(r"[\x00-\x08\x0a-\x1f\x7f]", line):
                raise DataError(p, f"corrupt GENEA header: {line[:40]!r} is not a 'Key:Value' line", line=number)
            fields[key.strip()] = value.strip()
        raise DataError(p, f"truncated or corrupt GENEA header: no blank line ends it in the first "
                           f"{MAX_HEADER_BYTES} bytes")

    def _extent(self, size: int) -> Tuple[int, int, int]:
        """(pages to read, bytes of a cut last page (0: none), erased pages at the end, left out)."""
        body = size - self.data_start
        full, cut = divmod(body, PAGE_BYTES)
        with open(self.path, "rb") as fh:
            if cut:
                fh.seek(self.data_start + full * PAGE_BYTES)
                tail = np.frombuffer(fh.read(cut), dtype=np.uint8)
                if not (np.all(tail == 0) or np.all(tail == 0xFF)):
                    return full, cut, 0
            n = full
            while n > 0:  # erased pages at the end: the recording ended before them
                fh.seek(self.data_start + (n - 1) * PAGE_BYTES)
                page = np.frombuffer(fh.read(PAGE_BYTES), dtype=np.uint8)
                if not (np.all(page == 0) or np.all(page == 0xFF)):
                    break
                n -= 1
        if n == 0:
            raise DataError(self.path, "no data pages after the GENEA header (empty or erased)")
        return n, 0, full - n

    def _bad_pages(self, pages: np.ndarray, first: int) -> Dict[int, Tuple[str, str]]:
        """Damaged pages of a block: ``{index in block: (reason, message)}``."""
        erased = np.all(pages == 0, axis=1) | np.all(pages == 0xFF, axis=1)
        ch = pages[:, :PAGE_CHUNKS * CHUNK_BYTES].reshape(-1, CHUNK_BYTES)
        crc_bad = (chunk_crc(ch) != ch[:, 0]).reshape(len(pages), PAGE_CHUNKS)
        bad: Dict[int, Tuple[str, str]] = {}
        for q in np.flatnonzero(erased | crc_bad.any(axis=1)):
            page = first + int(q)
            at = self.data_start + page * PAGE_BYTES
            if erased[q]:
                bad[int(q)] = ("erased page", f"corrupt GENEA file: page {page + 1} (byte {at}) is erased but data "
                                              "follows it")
            else:
                j = int(np.flatnonzero(crc_bad[q])[0])
                bad[int(q)] = ("CRC-8 mismatch", f"corrupt GENEA page {page + 1}: chunk {j} (byte "
                                                 f"{at + j * CHUNK_BYTES}) fails its CRC-8 check")
        return bad

    def _decode(self, pages: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Good pages -> (acc [n, 3] g, anchors: index in acc of the sample after each timestamp,
        the timestamps as wall-clock seconds)."""
        ch = pages[:, :PAGE_CHUNKS * CHUNK_BYTES].reshape(-1, CHUNK_BYTES)
        kind = ch[:, 1] >> 4
        is_acc, is_time = kind == ACC, kind == TIME
        self._other_chunks += int(np.count_nonzero(~is_acc & ~is_time & (kind != BATTERY)))
        a = ch[is_acc].astype(np.int64)
        counts = np.stack([((a[:, 1] & 15) << 8) | a[:, 2], (a[:, 3] << 4) | (a[:, 4] >> 4),
                           ((a[:, 4] & 15) << 8) | a[:, 5]], axis=1)
        counts = np.where(counts > 2047, counts - 4096, counts)
        acc = ((counts * AXIS_SIGN + self.offset) * self.gain) / float(NOMINAL_GAIN * COUNTS_PER_G)
        s = ch[is_time].astype(np.int64)
        stamps = ((s[:, 2] << 24) | (s[:, 3] << 16) | (s[:, 4] << 8) | s[:, 5]).astype(np.float64)
        return acc, np.cumsum(is_acc)[is_time], stamps

    def iter_chunks(self, chunk_samples: int = DEFAULT_CHUNK_SAMPLES) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        chunk_samples = check_chunk_samples(chunk_samples)
        self.info.skipped.clear()
        self._other_chunks = 0
        timer = _Timer(self.path, self._rate)
        block = max(1, chunk_samples // PAGE_CHUNKS)
        with self._open() as fh:
            for first in range(0, self.n_pages, block):
                k = min(block, self.n_pages - first)
                fh.seek(self.data_start + first * PAGE_BYTES)
                raw = fh.read(k * PAGE_BYTES)
                if len(raw) != k * PAGE_BYTES:
                    raise DataError(self.path, f"short read at GENEA page {first + 1}: the file changed while read")
                pages = np.frombuffer(raw, dtype=np.uint8).reshape(k, PAGE_BYTES)
                bad = self._bad_pages(pages, first)
                start = 0
                for q in sorted(bad) + [k]:
                    if q > start:
                        acc, anchors, stamps = self._decode(pages[start:q])
                        yield from self._emit(timer.add(acc, anchors, stamps), chunk_samples)
                    if q < k:
                        reason, message = bad[q]  # listed before the samples around it pass
                        self._damage(message, reason=reason, unit="page", first=first + q + 1, count=1,
                                     at_sample=timer.count)
                        yield from self._emit(timer.stop(f"before page {first + q + 1}"), chunk_samples)
                    start = q + 1
        if self.cut_bytes:
            self._damage(f"truncated GENEA .bin file: the file ends {self.cut_bytes} bytes into page "
                         f"{self.n_pages + 1} (of {PAGE_BYTES})", reason="cut off at the end of the file", unit="page",
                         first=self.n_pages + 1, count=1, at_sample=timer.count)
        yield from self._emit(timer.stop("at the end of the file"), chunk_samples)
        self.info.device.update(timer.facts())
        if self._other_chunks:
            self.info.device["other_chunks"] = self._other_chunks
            log.info("%s: %d chunks of unknown type ignored", self.path, self._other_chunks)

    def _emit(self, timed: Optional[Tuple[np.ndarray, np.ndarray]],
              chunk_samples: int) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        if timed is None:
            return
        t_local, acc = timed
        data = np.full((len(acc), 6), np.nan)
        data[:, :3] = acc
        yield from split_rows(t_local - self.utc_offset_s, data, chunk_samples)


class _Timer:
    """Gives the accelerometer samples their times from the timestamps around them (see the module
    docstring); holds back the samples after the last timestamp until the next one, a damaged page
    (:meth:`stop`) or the end of the file says their time. Times are the device's wall clock."""

    def __init__(self, path: Path, rate: float):
        self.path, self.rate = path, rate
        self.count = 0  # samples added
        self.done = 0  # samples timed and handed out
        self.held: List[np.ndarray] = []  # samples done.. count
        self.anchor: Optional[Tuple[int, float]] = None  # the stretch's last (sample index, time)
        self.last_t = -np.inf
        self.stamps = 0
        self.gaps = 0
        self.spans: List[Tuple[int, float]] = []  # (samples, seconds) between anchors, without gaps

    def add(self, acc: np.ndarray, at: np.ndarray, stamps: np.ndarray) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        base = self.count
        self.held.append(acc)
        self.count += len(acc)
        if not len(stamps):
            if self.count - self.done > MAX_UNTIMED_SAMPLES:
                raise DataError(self.path, f"corrupt GENEA file: no timestamp for {self.count - self.done} samples "
                                           f"(one a second is written)")
            return None
        self.stamps += len(stamps)
        pos, t = base + at.astype(np.int64), stamps
        if self.anchor is not None:
            pos, t = np.concatenate([[self.anchor[0]], pos]), np.concatenate([[self.anchor[1]], t])
        n, dt = np.diff(pos), np.diff(t)
        back = np.flatnonzero((dt < 0) | ((dt == 0) & (n > 0)))
        if len(back):
            j = int(back[0])
            raise DataError(self.path, f"GENEA timestamp {_utc_text(t[j + 1])} (device clock) {int(n[j])} samples "
                                       f"after {_utc_text(t[j])}: the device clock stands still or jumps back")
        keep = np.concatenate([[True], n > 0])  # of timestamps with no sample between, the first counts
        pos, t = pos[keep], t[keep]
        n, dt = np.diff(pos), np.diff(t)
        gap = dt > 2 * n / self.rate + 1.0
        self.gaps += int(np.count_nonzero(gap))
        self.spans.append((int(n[~gap].sum()), float(dt[~gap].sum())))
        step = np.where(gap, 1.0 / self.rate, dt / np.maximum(n, 1))
        i = np.arange(self.done, pos[-1], dtype=np.int64)
        k = np.searchsorted(pos, i, side="right") - 1
        times = np.empty(len(i))
        pre = k < 0  # a stretch's samples before its first timestamp: the header's rate back from it
        times[pre] = t[0] - (pos[0] - i[pre]) / self.rate
        k, j = k[~pre], i[~pre]
        times[~pre] = t[k] + (j - pos[k]) * step[k]
        self.anchor = (int(pos[-1]), float(t[-1]))
        return self._hand_out(times)

    def stop(self, where: str) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """A damaged page or the end: the held samples continue the last timestamp at the header's rate."""
        if self.count == self.done:
            self.anchor = None
            return None
        if self.anchor is None:
            raise DataError(self.path, f"corrupt GENEA file: {self.count - self.done} samples {where} carry no "
                                       "timestamp")
        i = np.arange(self.done, self.count, dtype=np.int64)
        times = self.anchor[1] + (i - self.anchor[0]) / self.rate
        self.anchor = None
        return self._hand_out(times)

    def _hand_out(self, times: np.ndarray) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        if not len(times):
            return None
        if times[0] <= self.last_t:
            raise DataError(self.path, f"GENEA sample {self.done} at {_utc_text(times[0])} is not after the sample "
                                       "before it (across a damaged page): the device clock jumps back")
        held = np.concatenate(self.held) if len(self.held) > 1 else self.held[0]
        m = len(times)
        out, rest = held[:m], held[m:]
        self.held = [rest] if len(rest) else []
        self.done += m
        self.last_t = float(times[-1])
        return times, out

    def facts(self) -> Dict[str, Any]:
        """For ``info.device``: timestamps read, gaps between them, the rate they imply."""
        facts: Dict[str, Any] = {"timestamps": self.stamps, "clock_gaps": self.gaps}
        samples, seconds = (sum(x) for x in zip(*self.spans)) if self.spans else (0, 0.0)
        if seconds > 0:
            facts["rate_from_timestamps_hz"] = round(samples / seconds, 4)
            if abs(samples / seconds / self.rate - 1) > 0.01:
                log.warning("%s: the timestamps imply %.3f Hz, the header says %g Hz", self.path,
                            samples / seconds, self.rate)
        if self.gaps:
            log.warning("%s: %d gap(s) between GENEA timestamps", self.path, self.gaps)
        return facts
