"""Empatica exports: E4 (zip or folder of CSVs) and EmbracePlus raw data (Avro files).

Supported inputs (``suffixes`` = ``.zip``, ``.avro``; a folder with ``--format empatica``):

* **E4** session export, a ``.zip`` as E4 connect downloads it (``<unix start>_<device id>.zip``) or
  the unzipped folder. Only ``ACC.csv`` is read: row 1 = start time (Unix epoch seconds, UTC) in each
  of 3 columns, row 2 = sample rate (32 Hz), then one ``x,y,z`` row per sample in 1/64 g (the
  accelerometer is set to +-2 g). Sample ``i`` is at ``start + i / rate``.
* **EmbracePlus** raw data: one ``.avro`` file (``<participant>_<utc start>.avro``, one every
  ~30 min), or a ``.zip``/folder of them, read as one recording in time order. Each holds
  ``rawData.accelerometer`` with ``timestampStart`` (µs, UTC), ``samplingFrequency`` (Hz, e.g.
  63.9999), ``imuParams`` and integer ``x``/``y``/``z``; g = count * (physicalMax - physicalMin) /
  (digitalMax - digitalMin) before schema 6.5 and count * ``imuParams.conversionFactor`` from 6.5,
  as in Empatica's own example code. A non-empty ``rawData.gyroscope`` (deg/s) is read too (-> rad/s).

``.csv`` is not claimed: it is the generic table format; ``.zip`` is claimed because both E4
downloads and bundles of EmbracePlus files arrive as zips, and the contents tell which.

Reader choice. ``skdh.io.ReadEmpaticaAvro`` reads one Avro file whole (with Apache's pure-Python
``avro``, ~1 s per 30-min file: a week would take ~6 min) and skdh has no E4 CSV reader. So Avro
files are decoded here one at a time with ``fastavro`` (C; ~0.1 s per file), falling back to
``avro`` when only that is installed, and E4's ``ACC.csv`` is parsed in bounded chunks with pandas'
C parser: a week stays in bounded memory. The tests check the Avro path against
``skdh.io.ReadEmpaticaAvro`` and both decoders against each other.

All Empatica times are UTC; ``t`` is Unix epoch seconds. EmbracePlus' ``timezone`` field (seconds
east of UTC) is reported in ``info.device`` only. Samples of a later Avro file that overlap the one
before are dropped (with a warning) so ``t`` keeps increasing.
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from crossmodal_har.errors import DataError, UserError
from crossmodal_har.signals.containers import (MAX_AVRO_FILE_BYTES, MAX_LINE_BYTES, BoundedReader, check_avro,
                                               check_zip, open_member, read_line)
from crossmodal_har.signals.devices.base import DEFAULT_CHUNK_SAMPLES, DeviceInfo, DeviceReader, check_rate
from crossmodal_har.signals.text import exception_line

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

E4_ACC_UNITS_PER_G = 64.0
_E4_NAME = re.compile(r"^(\d{9,11})_([A-Za-z0-9]+)$")  # <unix start>_<device id>
_AVRO_START = re.compile(r"_(\d{10,17})$")  # <participant>_<utc start>
_CSV_ROWS = 200_000


def _backend() -> Tuple[str, Callable[[bytes], Iterator[Dict[str, Any]]]]:
    """The Avro decoder: ``fastavro`` (C, ~12x faster) when installed, else Apache's ``avro``."""
    try:
        import fastavro

        return "fastavro", lambda data: fastavro.reader(io.BytesIO(data))
    except ImportError:
        pass
    try:
        from avro.datafile import DataFileReader
        from avro.io import DatumReader
    except ImportError as e:
        raise UserError("reading Empatica .avro files needs the fastavro (or avro) package: "
                        "pip install fastavro") from e

    def decode(data: bytes) -> Iterator[Dict[str, Any]]:
        reader = DataFileReader(io.BytesIO(data), DatumReader())
        try:
            yield from reader
        finally:
            reader.close()

    return "avro", decode


@dataclass
class _Member:
    """One input file: on disk (``zip_name`` None) or inside the zip at ``path``."""

    name: str
    zip_name: Optional[str] = None
    disk: Optional[Path] = None


class EmpaticaReader(DeviceReader):
    """Empatica E4 (ACC.csv in a zip/folder) and EmbracePlus (.avro, or a zip/folder of them)."""

    format = "empatica"
    suffixes = (".avro", ".zip")

    def __init__(self, path: Path, *, tz: str = "UTC", damaged: str = "refuse"):
        super().__init__(path, tz=tz, damaged=damaged)
        self._kind, self._members = self._find_inputs()
        if self._kind == "e4":
            self.info = self._e4_header()
        else:
            self.info = self._avro_header()

    # -- which files ------------------------------------------------------------------------------

    def _find_inputs(self) -> Tuple[str, List[_Member]]:
        p = self.path
        if p.is_dir():
            if (p / "ACC.csv").is_file():
                return "e4", [_Member("ACC.csv", disk=p / "ACC.csv")]
            avros = sorted(q for q in p.iterdir() if q.suffix.lower() == ".avro" and q.is_file())
            if not avros:
                raise DataError(p, "folder has neither ACC.csv (Empatica E4) nor .avro files (EmbracePlus)")
            return "avro", self._ordered([_Member(q.name, disk=q) for q in avros])
        if not p.is_file():
            raise DataError(p, "file not found")
        if p.suffix.lower() == ".avro":
            return "avro", [_Member(p.name, disk=p)]
        try:
            with zipfile.ZipFile(p) as zf:
                check_zip(zf, p)
                names = [n for n in zf.namelist() if not n.endswith("/")]
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as e:
            raise DataError(p, f"not a readable zip archive ({exception_line(e)})") from None
        acc = [n for n in names if n.rsplit("/", 1)[-1] == "ACC.csv"]
        if len(acc) == 1:
            return "e4", [_Member(acc[0], zip_name=acc[0])]
        if len(acc) > 1:
            raise DataError(p, f"zip holds {len(acc)} ACC.csv files (several E4 sessions); unzip and give one")
        avros = [n for n in names if n.lower().endswith(".avro")]
        if not avros:
            raise DataError(p, "zip has neither ACC.csv (Empatica E4) nor .avro files (EmbracePlus)")
        return "avro", self._ordered([_Member(n.rsplit("/", 1)[-1], zip_name=n) for n in avros])

    def _ordered(self, members: List[_Member]) -> List[_Member]:
        """Time order from Empatica's file names (``<participant>_<utc start>.avro``), else by name.

        Files are also checked for order as they are read (a later file starting before the one
        before ends loses its overlapping samples), so a name that lies cannot reorder time.
        """
        keys = [_AVRO_START.search(Path(m.name).stem) for m in members]
        if all(keys):
            return [m for _, m in sorted(zip([int(k.group(1)) for k in keys], members), key=lambda km: km[0])]
        return sorted(members, key=lambda m: m.name)

    def _open(self, member: _Member, zf: Optional[zipfile.ZipFile]) -> io.BufferedIOBase:
        """The member as a bounded stream (:mod:`..containers`); E4's text with bounded lines."""
        max_line = MAX_LINE_BYTES if self._kind == "e4" else None
        if member.disk is not None:
            return io.BufferedReader(BoundedReader(open(member.disk, "rb"), self.path, what=member.name,
                                                   max_line=max_line))
        assert zf is not None and member.zip_name is not None
        return open_member(zf, member.zip_name, self.path, max_line=max_line)

    def _where(self, member: _Member) -> str:
        """Prefix naming a file inside the input ("" when the input is that file)."""
        if member.disk is not None and member.disk == self.path:
            return ""
        return f"{member.zip_name or member.name}: "

    def _zip(self) -> Optional[zipfile.ZipFile]:
        if not (self.path.is_file() and self.path.suffix.lower() != ".avro"):
            return None
        zf = zipfile.ZipFile(self.path)
        check_zip(zf, self.path)
        return zf

    # -- E4 ---------------------------------------------------------------------------------------

    def _e4_header(self) -> DeviceInfo:
        member = self._members[0]
        try:
            zf = self._zip()
            try:
                with self._open(member, zf) as f:
                    head = [read_line(f, self.path, "ACC.csv") for _ in range(2)]
            finally:
                if zf is not None:
                    zf.close()
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError, RuntimeError) as e:
            raise DataError(self.path, f"ACC.csv cannot be read ({exception_line(e)})") from None
        try:
            start_row = [float(v) for v in head[0].decode("ascii").strip().split(",")]
            rate_row = [float(v) for v in head[1].decode("ascii").strip().split(",")]
        except (UnicodeDecodeError, ValueError, IndexError):
            raise DataError(self.path, "ACC.csv must start with the start time (row 1) and the sample rate "
                                       "(row 2), 3 numbers each") from None
        if len(start_row) != 3 or len(rate_row) != 3:
            raise DataError(self.path, "ACC.csv rows 1-2 must hold 3 values (x, y, z)")
        start, rate = start_row[0], rate_row[0]
        if not 9.5e8 < start < 4.2e9:
            raise DataError(self.path, f"ACC.csv row 1: start time {start} is not Unix epoch seconds")
        rate = check_rate(self.path, rate, "ACC.csv row 2")
        device: Dict[str, Any] = {"model": "Empatica E4", "units_as_stored": "1/64 g (+-2 g)",
                                  "acc_range_g": 2.0, "file": member.zip_name or member.name}
        m = _E4_NAME.match(self.path.stem)
        if m:
            device["serial"] = m.group(2)
        self._e4_start, self._e4_rate = start, rate
        return DeviceInfo(format=self.format, path=self.path, rate_hz=rate, channels="acc",
                          start_time_s=start, start_time_source="file: ACC.csv row 1 (Unix epoch seconds, UTC)",
                          n_samples=None, device=device)

    def _e4_frames(self, dtype: Any) -> Iterator[Tuple[int, pd.DataFrame]]:
        """``(index of the frame's first sample, frame)`` from ACC.csv, _CSV_ROWS rows at a time."""
        import pandas as pd  # lazy: the CLI imports the device registry at start-up

        member = self._members[0]
        done = 0
        zf = self._zip()
        try:
            with self._open(member, zf) as raw:
                for frame in pd.read_csv(raw, header=None, skiprows=2, chunksize=_CSV_ROWS, dtype=dtype,
                                         skip_blank_lines=True, engine="c"):
                    if frame.shape[1] != 3:
                        raise DataError(self.path, f"ACC.csv has {frame.shape[1]} columns; expected 3 (x, y, z)",
                                        line=3 + done)
                    yield done, frame
                    done += len(frame)
        finally:
            if zf is not None:
                zf.close()

    def _e4_bad_row(self, done: int, frame: pd.DataFrame) -> None:
        """Raise a DataError naming the first row of ``frame`` that is not 3 numbers, if any."""
        import pandas as pd  # lazy: the CLI imports the device registry at start-up

        values = frame.apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(values).all(axis=1)
        if bad.any():
            k = int(np.argmax(bad))
            row = ",".join("" if pd.isna(v) else str(v) for v in frame.iloc[k].tolist())
            raise DataError(self.path, f"ACC.csv: row is not 3 numbers: {row!r} (truncated or corrupt file?)",
                            line=3 + done + k)

    def _e4_chunks(self, chunk_samples: int) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        import pandas as pd  # lazy: the CLI imports the device registry at start-up

        n_read = 0
        try:
            try:
                for done, frame in self._e4_frames(np.float64):  # fast path: C parser straight to float
                    values = frame.to_numpy(np.float64)
                    if not np.isfinite(values).all():
                        self._e4_bad_row(done, frame.astype(str).where(frame.notna()))
                    n = len(values)
                    t = self._e4_start + (done + np.arange(n)) / self._e4_rate
                    data = np.full((n, 6), np.nan)
                    data[:, :3] = values / E4_ACC_UNITS_PER_G
                    n_read = done + n
                    for i in range(0, n, chunk_samples):
                        yield t[i:i + chunk_samples], data[i:i + chunk_samples]
            except ValueError:  # a value that is not a number: find its line (slow path, errors only)
                for done, frame in self._e4_frames(str):
                    self._e4_bad_row(done, frame)
                raise DataError(self.path, "ACC.csv holds a value that is not a number") from None
        except DataError:
            raise
        except pd.errors.ParserError as e:
            raise DataError(self.path, f"ACC.csv is malformed ({exception_line(e)})") from None
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, UnicodeDecodeError, NotImplementedError,
                RuntimeError) as e:
            raise DataError(self.path, f"ACC.csv cannot be read ({exception_line(e)})") from None
        if n_read == 0:
            raise DataError(self.path, "ACC.csv holds no samples")

    # -- EmbracePlus (Avro) -----------------------------------------------------------------------

    def _records(self) -> Iterator[Tuple[_Member, Dict[str, Any]]]:
        _, decode = _backend()
        zf = self._zip()
        try:
            for member in self._members:
                where = self._where(member)
                try:
                    with self._open(member, zf) as raw:
                        data = raw.read(MAX_AVRO_FILE_BYTES + 1)  # one ~30-min file (a few MB)
                    check_avro(data, self.path, where)
                    records = iter(decode(data))
                except DataError:
                    raise
                except Exception as e:  # Avro decoders raise many kinds (ValueError, EOFError, struct.error, ...)
                    raise DataError(self.path, f"{where}not a readable Avro file ({exception_line(e)})") from None
                while True:
                    try:
                        rec = next(records)
                    except StopIteration:
                        break
                    except Exception as e:  # as above, raised while decoding a later block
                        raise DataError(self.path, f"{where}not a readable Avro file ({exception_line(e)})") from None
                    yield member, rec
        finally:
            if zf is not None:
                zf.close()

    def _acc_block(self, member: _Member, rec: Any) -> Optional[Tuple[float, float, np.ndarray, Optional[np.ndarray]]]:
        """``(start s, rate Hz, acc [n, 3] g, gyro [n, 3] rad/s or None)``; None when no samples."""
        where = self._where(member)
        try:
            raw = rec["rawData"]
            acc = raw["accelerometer"]
        except (KeyError, TypeError):
            raise DataError(self.path, f"{where}not EmbracePlus raw data (no rawData.accelerometer)") from None
        version = _schema_version(rec)
        try:
            xyz = np.column_stack([np.asarray(acc[k], dtype=np.float64) for k in ("x", "y", "z")])
            if len(xyz) == 0:
                return None
            start = float(acc["timestampStart"]) / 1e6
            rate = float(acc["samplingFrequency"])
            acc_g = xyz * _conversion(acc["imuParams"], version)
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
            raise DataError(self.path, f"{where}rawData.accelerometer is incomplete ({exception_line(e)})") from None
        rate = check_rate(self.path, rate, f"{where}rawData.accelerometer.samplingFrequency")
        if not 9.5e8 < start < 4.2e9:
            raise DataError(self.path, f"{where}accelerometer start {start} s / rate {rate} Hz not valid")
        gyro = None
        g = raw.get("gyroscope") if isinstance(raw, dict) else None
        if isinstance(g, dict) and g.get("x"):
            try:
                gxyz = np.column_stack([np.asarray(g[k], dtype=np.float64) for k in ("x", "y", "z")])
                g_rate = float(g["samplingFrequency"])
                g_start = float(g["timestampStart"]) / 1e6
                if (len(gxyz) == len(xyz) and abs(g_rate - rate) < 1e-3 * rate
                        and abs(g_start - start) < 0.5 / rate):
                    gyro = np.deg2rad(gxyz * _conversion(g["imuParams"], version))
                else:
                    log.warning("%s: %sgyroscope not aligned with the accelerometer; not read", self.path, where)
            except (KeyError, TypeError, ValueError, ZeroDivisionError):
                log.warning("%s: %sgyroscope block is incomplete; not read", self.path, where)
        return start, rate, acc_g, gyro

    def _avro_header(self) -> DeviceInfo:
        for member, rec in self._records():
            block = self._acc_block(member, rec)
            if block is None:
                continue
            start, rate, _, gyro = block
            device: Dict[str, Any] = {"model": str(rec.get("deviceModel") or "Empatica EmbracePlus"),
                                      "units_as_stored": "counts (imuParams)", "files": len(self._members)}
            for key, name in (("deviceSn", "serial"), ("fwVersion", "firmware"), ("timezone", "timezone_offset_s")):
                if rec.get(key) is not None:
                    device[name] = rec[key] if not isinstance(rec[key], dict) else _version_text(rec[key])
            version = _schema_version(rec)
            if version:
                device["schema_version"] = ".".join(map(str, version))
            participant = (rec.get("enrollment") or {}).get("participantID") if isinstance(rec.get("enrollment"), dict) else None
            if participant:
                device["participant"] = participant
            self._channels = "acc+gyro" if gyro is not None else "acc"
            return DeviceInfo(format=self.format, path=self.path, rate_hz=rate, channels=self._channels,
                              start_time_s=start,
                              start_time_source="file: rawData.accelerometer.timestampStart (µs, UTC)",
                              n_samples=None, device=device)
        raise DataError(self.path, "no accelerometer samples in the Avro file(s)")

    def _avro_chunks(self, chunk_samples: int) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        last_t = -np.inf
        dropped = 0
        pending_t: List[np.ndarray] = []
        pending_d: List[np.ndarray] = []
        held = 0
        for member, rec in self._records():
            block = self._acc_block(member, rec)
            if block is None:
                continue
            start, rate, acc_g, gyro = block
            t = start + np.arange(len(acc_g)) / rate
            keep = t > last_t
            if not keep.all():
                dropped += int((~keep).sum())
                t, acc_g = t[keep], acc_g[keep]
                gyro = gyro[keep] if gyro is not None else None
            if len(t) == 0:
                continue
            data = np.full((len(t), 6), np.nan)
            data[:, :3] = acc_g
            if gyro is not None and self._channels == "acc+gyro":
                data[:, 3:] = gyro
            elif gyro is None and self._channels == "acc+gyro":
                # the first file had a gyroscope, this one has none: its rows are NaN gyroscope (a
                # 6-channel model marks them non_finite, an acc model zeroes them), and it is said
                log.warning("%s: %sno gyroscope samples (the first file had them): %d rows with NaN gyroscope",
                            self.path, self._where(member), len(t))
            last_t = t[-1]
            pending_t.append(t)
            pending_d.append(data)
            held += len(t)
            while held >= chunk_samples:
                ta, da = np.concatenate(pending_t), np.concatenate(pending_d)
                yield ta[:chunk_samples], da[:chunk_samples]
                pending_t, pending_d = [ta[chunk_samples:]], [da[chunk_samples:]]
                held -= chunk_samples
        if held:
            yield np.concatenate(pending_t), np.concatenate(pending_d)
        if dropped:
            log.warning("%s: %d samples overlapping an earlier Avro file were dropped", self.path, dropped)

    def iter_chunks(self, chunk_samples: int = DEFAULT_CHUNK_SAMPLES) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        if chunk_samples < 1:
            raise ValueError("chunk_samples must be >= 1")
        if self._kind == "e4":
            yield from self._e4_chunks(chunk_samples)
        else:
            yield from self._avro_chunks(chunk_samples)


def _schema_version(rec: Any) -> Tuple[int, ...]:
    v = rec.get("schemaVersion") if isinstance(rec, dict) else None
    if isinstance(v, dict):
        try:
            return (int(v.get("major", 0)), int(v.get("minor", 0)), int(v.get("patch", 0)))
        except (TypeError, ValueError):
            return ()
    return ()


def _version_text(v: Dict[str, Any]) -> str:
    return ".".join(str(v.get(k, 0)) for k in ("major", "minor", "patch"))


def _conversion(imu: Dict[str, Any], version: Tuple[int, ...]) -> float:
    """Counts -> physical units, as Empatica's example code does for each schema version."""
    if version >= (6, 5, 0) and imu.get("conversionFactor") is not None:
        return float(imu["conversionFactor"])
    return (float(imu["physicalMax"]) - float(imu["physicalMin"])) / (
        float(imu["digitalMax"]) - float(imu["digitalMin"]))
