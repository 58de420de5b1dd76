"""GENEActiv ``.bin`` files, read page by page in bounded memory.

Our own reader, written from the format as the manufacturer's software writes it (and as GGIR,
actipy and scikit-digital-health read it): a text header of ``Key:Value`` lines in sections
(``Device Identity``, ``Configuration Info`` with ``Measurement Frequency`` and ``Time Zone:GMT
+hh:mm``, ``Calibration Data`` with ``x gain``, ``x offset`` .. ``Volts``, ``Lux``, ``Memory Status``
with ``Number of Pages``), then pages of 10 lines: ``Recorded Data``, serial, ``Sequence Number``,
``Page Time:YYYY-MM-DD hh:mm:ss:mmm`` (device local time), ``Unassigned``, ``Temperature``,
``Battery voltage``, ``Device Status``, ``Measurement Frequency`` and one line of 3600 hex digits:
300 samples of 48 bits (x, y, z as 12-bit two's complement, then 10 bits of light, button, reserved).
Acceleration in g is ``(raw * 100 - offset) / gain`` per axis. GENEActiv has no gyroscope:
``channels="acc"``, gyroscope columns NaN.

Why not ``skdh.io.ReadBin``: it reads the whole file at once (a week at 100 Hz is ~60 M samples),
and it finds the header fields by line number. It is the second, independent reader in the tests.

Time: sample ``i`` of the file is at the first page's time + ``i / rate`` (the pages are
contiguous; page times carry whole seconds on some firmware, so they are not used per page; their
largest disagreement with that grid is kept in ``device["page_time_drift_max_s"]``). The header's
``Time Zone`` (UTC offset) turns the device's local time into UTC; without one, the local time is
read in ``tz``. A page with a wrong field, or a data line that is not 3600 hex digits, is a
DataError naming the file and the line. A file that ends before the pages its header announces
(cut inside a page, or whole pages missing) is one too, or, with ``damaged="skip"``, is read up to
its last complete page and the rest listed in ``info.skipped`` (GGIRread also reads such files).
"""

from __future__ import annotations

import calendar
import logging
import io
import re
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from crossmodal_har.errors import DataError
from crossmodal_har.signals.clock import format_offset, local_to_utc_offset_s
from crossmodal_har.signals.containers import MAX_LINE_BYTES, BoundedReader
from crossmodal_har.signals.devices.base import (DEFAULT_CHUNK_SAMPLES, DeviceInfo, DeviceReader, check_chunk_samples,
                                                 check_rate, split_rows)

log = logging.getLogger(__name__)

PAGE_LINES = 10
PAGE_SAMPLES = 300
HEX_CHARS = PAGE_SAMPLES * 12
_TIME_RE = re.compile(r"^\s*(\d{4})-(\d{1,2})-(\d{1,2}) (\d{1,2}):(\d{1,2}):(\d{1,2})(?::(\d{1,3}))?\s*$")
_TZ_RE = re.compile(r"^\s*(?:GMT|UTC)?\s*([+-])\s*(\d{1,2}):(\d{2})\s*$")
_HEX = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789ABCDEF"):
    _HEX[_c] = _i
for _i, _c in enumerate(b"abcdef"):
    _HEX[_c] = 10 + _i


def parse_time(text: str) -> Optional[float]:
    """``YYYY-MM-DD hh:mm:ss:mmm`` -> wall-clock seconds since 1970 (as if UTC), or None."""
    m = _TIME_RE.match(text)
    if not m:
        return None
    y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
    ms = m.group(7)
    try:
        base = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 61):
        return None
    return base + (int(ms.ljust(3, "0")) / 1000.0 if ms else 0.0)


def _number(text: str) -> Optional[float]:
    m = re.match(r"^\s*([-+]?\d+(?:[.,]\d+)?)", text)
    return float(m.group(1).replace(",", ".")) if m else None


class GeneactivReader(DeviceReader):
    format = "geneactiv"
    suffixes = (".bin",)

    def __init__(self, path: Path, *, tz: str = "UTC", damaged: str = "refuse"):
        super().__init__(path, tz=tz, damaged=damaged)
        p = self.path
        head, _ = self._read_head(16384)
        if head.startswith(b"\xef\xbb\xbf"):
            head = head[3:]
        if head.startswith(b"GENEA/"):  # only with --format geneactiv: by suffix, genea.py reads it
            raise DataError(p, "an older GENEA .bin file, not GENEActiv: leave --format out, or give --format genea")
        if not head.lstrip().startswith(b"Device Identity"):
            raise DataError(p, "not a GENEActiv .bin file (the first line is not 'Device Identity')")
        header: Dict[str, Dict[str, str]] = {}
        section = ""
        self.header_lines = 0
        lines = head.split(b"\n")
        found_data = False
        for i, raw in enumerate(lines[:-1]):  # the last piece may be cut
            line = raw.decode("latin-1").rstrip("\r")
            if line.strip() == "Recorded Data":
                self.header_lines = i
                found_data = True
                break
            if ":" in line:
                k, _, v = line.partition(":")
                header.setdefault(section, {})[k.strip()] = v.strip()
            elif line.strip():
                section = line.strip()
        if not found_data:
            raise DataError(p, "truncated or not a GENEActiv .bin file: no 'Recorded Data' page after the header")
        self.header = header

        def field(sec: str, key: str, required: bool = True) -> Optional[str]:
            v = header.get(sec, {}).get(key)
            if v is None and required:
                raise DataError(p, f"GENEActiv header lacks '{key}' in section '{sec}'")
            return v

        rate = _number(field("Configuration Info", "Measurement Frequency") or "")
        if rate is None or not rate > 0:
            raise DataError(p, f"bad Measurement Frequency {field('Configuration Info', 'Measurement Frequency')!r}")
        rate = check_rate(p, rate, "header Measurement Frequency")
        cal = {}
        for key in ("x gain", "x offset", "y gain", "y offset", "z gain", "z offset"):
            v = _number(field("Calibration Data", key) or "")
            if v is None:
                raise DataError(p, f"bad calibration value {key}: {field('Calibration Data', key)!r}")
            cal[key] = v
        if not all(cal[f"{a} gain"] != 0 for a in "xyz"):
            raise DataError(p, "calibration gain of 0 in the header")
        self.gain = np.array([cal[f"{a} gain"] for a in "xyz"])
        self.offset = np.array([cal[f"{a} offset"] for a in "xyz"])
        pages = _number(field("Memory Status", "Number of Pages") or "")
        if pages is None or pages < 1:
            raise DataError(p, f"bad Number of Pages {field('Memory Status', 'Number of Pages')!r}")
        self.n_pages = int(pages)
        self._rate = float(rate)
        # the first page gives the start time
        first_page = [ln.decode("latin-1").rstrip("\r")
                      for ln in lines[self.header_lines:self.header_lines + PAGE_LINES]]
        if len(first_page) < 4 or not first_page[3].startswith("Page Time:"):
            raise DataError(p, "truncated GENEActiv .bin file: first page has no 'Page Time'",
                            line=self.header_lines + 4)
        t_local0 = parse_time(first_page[3].partition(":")[2])
        if t_local0 is None:
            raise DataError(p, f"cannot parse page time {first_page[3]!r}", line=self.header_lines + 4)
        self.t_local0 = t_local0
        tz_field = field("Configuration Info", "Time Zone", required=False)
        m = _TZ_RE.match(tz_field) if tz_field else None
        if m:
            self.utc_offset_s = (1 if m.group(1) == "+" else -1) * (int(m.group(2)) * 3600 + int(m.group(3)) * 60)
            source = f"file header (page times in device local time, Time Zone UTC{format_offset(self.utc_offset_s)})"
        else:
            self.utc_offset_s = local_to_utc_offset_s(t_local0, tz)
            source = (f"device local time read in --tz {tz} (UTC{format_offset(self.utc_offset_s)} at the start; "
                      f"the header has no usable Time Zone{'' if not tz_field else ': ' + repr(tz_field)})")
        ident = header.get("Device Identity", {})
        caps = header.get("Device Capabilities", {})
        device: Dict[str, Any] = {
            "model": " ".join(x for x in (ident.get("Device Type", "GENEActiv"), ident.get("Device Model", "")) if x),
            "serial": ident.get("Device Unique Serial Code", ""),
            "firmware": ident.get("Device Firmware Version", ident.get("Device Firmware", "")),
            "acc_range": caps.get("Accelerometer Range", ""), "pages": self.n_pages,
            "calibration": {k: cal[k] for k in cal},
            "stored_units": "12-bit counts; g = (count * 100 - offset) / gain",
        }
        if tz_field:
            device["time_zone"] = tz_field
        self.info = DeviceInfo(format=self.format, path=p, rate_hz=self._rate, channels="acc",
                               start_time_s=float(t_local0 - self.utc_offset_s), start_time_source=source,
                               n_samples=self.n_pages * PAGE_SAMPLES, device=device)

    def _cut(self, page: int, message: str, line: int) -> None:
        """The file ends inside page ``page`` (0-based): refused, or the rest listed as skipped."""
        if self.damaged == "refuse":
            raise DataError(self.path, message, line=line)
        missing = self.n_pages - page
        self._damage(message, reason=f"the file ends inside page {page + 1} of the {self.n_pages} its header "
                                     "announces", unit="page", first=page + 1, count=missing,
                     at_sample=page * PAGE_SAMPLES, missing_samples=missing * PAGE_SAMPLES)

    def iter_chunks(self, chunk_samples: int = DEFAULT_CHUNK_SAMPLES) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        chunk_samples = check_chunk_samples(chunk_samples)
        self.info.skipped.clear()
        pages_per_block = max(1, chunk_samples // PAGE_SAMPLES)
        t0 = self.t_local0 - self.utc_offset_s
        drift = 0.0
        page = 0
        # lines bounded (a file with no newline is refused, not read whole)
        fh = io.BufferedReader(BoundedReader(self._open(), self.path, what="GENEActiv .bin", max_line=MAX_LINE_BYTES))
        with fh:
            for _ in range(self.header_lines):
                fh.readline()
            line_no = self.header_lines  # lines read so far
            while page < self.n_pages:
                k = min(pages_per_block, self.n_pages - page)
                hexes: List[bytes] = []
                cut = False
                for q in range(k):
                    lines = [fh.readline() for _ in range(PAGE_LINES)]
                    first = line_no + 1
                    if not lines[-1]:
                        got = sum(1 for ln in lines if ln)
                        self._cut(page + q, f"truncated GENEActiv .bin file: the header announces {self.n_pages} "
                                            f"pages, page {page + q + 1} is incomplete or missing ({got} of "
                                            f"{PAGE_LINES} lines)", first + got)
                        cut = True
                        break
                    text = [ln.decode("latin-1").rstrip("\r\n") for ln in lines[:PAGE_LINES - 1]]
                    if text[0].strip() != "Recorded Data":
                        raise DataError(self.path, f"corrupt GENEActiv page {page + q + 1}: expected 'Recorded Data', "
                                                   f"found {text[0][:40]!r}", line=first)
                    if not text[3].startswith("Page Time:"):
                        raise DataError(self.path, f"corrupt GENEActiv page {page + q + 1}: no Page Time",
                                        line=first + 3)
                    pt = parse_time(text[3].partition(":")[2])
                    if pt is None:
                        raise DataError(self.path, f"cannot parse page time {text[3][:60]!r}", line=first + 3)
                    fs = _number(text[8].partition(":")[2]) if text[8].startswith("Measurement Frequency") else None
                    if fs is None or abs(fs - self._rate) > 1e-6 * self._rate:
                        raise DataError(self.path, f"page {page + q + 1}: measurement frequency {text[8][:60]!r} "
                                                   f"differs from the header's {self._rate:g} Hz", line=first + 8)
                    drift = max(drift, abs(pt - (self.t_local0 + (page + q) * PAGE_SAMPLES / self._rate)))
                    data = lines[-1].rstrip(b"\r\n")
                    if len(data) != HEX_CHARS:
                        message = (f"corrupt GENEActiv page {page + q + 1}: data line has {len(data)} characters, "
                                   f"expected {HEX_CHARS} hex digits")
                        if len(data) > HEX_CHARS or fh.read(1):  # not the end of the file: corrupt, refused
                            raise DataError(self.path, message, line=first + 9)
                        self._cut(page + q, message, first + 9)
                        cut = True
                        break
                    hexes.append(data)
                    line_no += PAGE_LINES
                k = len(hexes)
                if not k:
                    break
                nib = _HEX[np.frombuffer(b"".join(hexes), dtype=np.uint8)]
                if (nib == 255).any():
                    bad = int(np.flatnonzero(nib == 255)[0]) // HEX_CHARS
                    raise DataError(self.path, f"corrupt GENEActiv page {page + bad + 1}: non-hex character in the "
                                               "data line", line=line_no - (k - bad) * PAGE_LINES + PAGE_LINES)
                nib = nib.reshape(-1, 12).astype(np.int64)
                acc = np.empty((len(nib), 3))
                for j in range(3):
                    v = (nib[:, 3 * j] << 8) | (nib[:, 3 * j + 1] << 4) | nib[:, 3 * j + 2]
                    v = np.where(v > 2047, v - 4096, v)
                    acc[:, j] = (v * 100.0 - self.offset[j]) / self.gain[j]
                data6 = np.full((len(acc), 6), np.nan)
                data6[:, :3] = acc
                idx = np.arange(page * PAGE_SAMPLES, (page + k) * PAGE_SAMPLES, dtype=np.float64)
                t = t0 + idx / self._rate
                page += k
                yield from split_rows(t, data6, chunk_samples)
                if cut:
                    break
        self.info.device["page_time_drift_max_s"] = round(drift, 6)
        if drift > 2.0:
            log.warning("%s: page times drift up to %.1f s from the nominal %g Hz grid", self.path, drift, self._rate)
