"""APDM Opal ``.h5`` files (Mobility Lab / Moveo / Motion Studio exports): accelerometer + gyroscope.

Layout, file format version 5 (the current one)::

    /                         attrs FileFormatVersion = 5, CaseIdList, MonitorLabelList
    /Sensors/<id>/Accelerometer   [N, 3] m/s^2
    /Sensors/<id>/Gyroscope       [N, 3] rad/s
    /Sensors/<id>/Time            [N] uint64, microseconds since the Unix epoch (UTC)
    /Sensors/<id>/Configuration   attrs "Label 0" (e.g. Lumbar), "Sample Rate" (Hz), "Timezone Offset" (h)

The older layout (versions 2-4: ``/CaseIdList``, ``/<case>/Calibrated/Accelerometers`` and
``Gyroscopes``, ``/<case>/Time``, rate in the case group's ``SampleRate`` attribute) is read too;
anything else is a DataError that says what was found.

Reader choice. ``scikit-digital-health`` (``skdh.io.ReadApdmH5``) reads these files, but whole
datasets at once (``[()]``) and only the v5 layout; this reader slices the same HDF5 datasets with
``h5py`` chunk by chunk (``dataset[i:j]``), so a week at 128 Hz stays in bounded memory. The tests
check it against ``skdh.io.ReadApdmH5`` on the same files.

Sensor choice. A file may hold several Opals (feet, wrists, lumbar, sternum). ``sensor=`` picks one
by label (``Lumbar``, case-insensitive) or by id; without it a file with one sensor reads that
sensor, a file with several reads the one labelled lumbar/waist if exactly one is, and otherwise
refuses with the list of labels. The chosen id and label are in ``info.device``.

Units and time. m/s^2 / 9.80665 -> g; rad/s kept. ``t`` is the file's own ``Time`` dataset (UTC;
APDM writes real per-sample times, so gaps and jitter are the device's), never rebuilt from the rate.
``Timezone Offset`` is reported in ``info.device`` only. A ``Time`` that does not increase is a
DataError naming the sample.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from crossmodal_har.errors import DataError, UserError
from crossmodal_har.signals.devices.base import DEFAULT_CHUNK_SAMPLES, DeviceInfo, DeviceReader, check_rate
from crossmodal_har.signals.text import exception_line
from crossmodal_har.signals.types import STANDARD_GRAVITY

log = logging.getLogger(__name__)

PREFERRED_LABELS = ("lumbar", "waist")
ACC_UNITS = {"m/s^2": 1.0 / STANDARD_GRAVITY, "m/s2": 1.0 / STANDARD_GRAVITY, "g": 1.0}
GYRO_UNITS = {"rad/s": 1.0, "deg/s": np.pi / 180.0, "degrees/s": np.pi / 180.0}
# plausible Unix-epoch range for the first sample (µs): 2000-01-01 .. 2100-01-01
_EPOCH_US = (946684800e6, 4102444800e6)


def _h5py():
    try:
        import h5py
    except ImportError as e:
        raise UserError("reading APDM .h5 files needs the h5py package: pip install h5py") from e
    return h5py


def _text(value: Any) -> str:
    """An HDF5 attribute (bytes, numpy bytes/str, 1-element array) as a str."""
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size == 1 else value.tolist()
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", "replace").rstrip("\x00").strip()
    return str(value).strip()


def _number(value: Any) -> Optional[float]:
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return None
    return float(arr[0]) if arr.size == 1 and np.isfinite(arr[0]) else None


def _scalar_attrs(attrs: Any) -> Dict[str, Any]:
    """Small scalar attributes, decoded, for the report (skips arrays and anything odd)."""
    out: Dict[str, Any] = {}
    for key in list(attrs.keys())[:64]:
        try:
            v = attrs[key]
        except (OSError, KeyError, TypeError):
            continue
        if isinstance(v, np.ndarray) and v.size != 1:
            continue
        num = _number(v) if not isinstance(v, (bytes, np.bytes_, str)) else None
        out[str(key)] = num if num is not None else _text(v)[:200]
    return out


class _Stream:
    """Where one sensor's samples live in the file."""

    def __init__(self, sensor_id: str, label: str, acc: str, gyro: Optional[str], time: str,
                 rate: Optional[float], config: Dict[str, Any]):
        self.sensor_id, self.label = sensor_id, label
        self.acc, self.gyro, self.time = acc, gyro, time
        self.rate, self.config = rate, config


class ApdmReader(DeviceReader):
    """APDM Opal ``.h5`` (v5 ``/Sensors`` layout, and the v2-v4 ``/CaseIdList`` layout)."""

    format = "apdm"
    suffixes = (".h5",)
    multi_sensor = True

    def __init__(self, path: Path, *, tz: str = "UTC", sensor: Optional[str] = None, damaged: str = "refuse"):
        super().__init__(path, tz=tz, damaged=damaged)
        h5py = _h5py()
        try:
            with h5py.File(self.path, "r") as f:
                version = _number(f.attrs.get("FileFormatVersion", f.attrs.get("File_Format_Version")))
                streams = self._streams(f, version)
                chosen = self._choose(streams, sensor)
                self._stream = chosen
                acc_ds, time_ds = f[chosen.acc], f[chosen.time]
                n = int(time_ds.shape[0]) if time_ds.ndim == 1 else -1
                if acc_ds.ndim != 2 or acc_ds.shape[1] != 3 or n < 0 or acc_ds.shape[0] != n:
                    raise DataError(self.path, f"{chosen.acc} is {acc_ds.shape} and {chosen.time} is "
                                               f"{time_ds.shape}; expected [N, 3] and [N]")
                if n == 0:
                    raise DataError(self.path, f"{chosen.acc} holds no samples")
                gyro_ok = False
                if chosen.gyro is not None:
                    g = f[chosen.gyro]
                    if g.ndim == 2 and g.shape == acc_ds.shape:
                        gyro_ok = True
                    else:
                        raise DataError(self.path, f"{chosen.gyro} is {g.shape}; expected {acc_ds.shape}")
                self._acc_factor = self._unit(acc_ds, ACC_UNITS, "m/s^2", chosen.acc)
                self._gyro_factor = self._unit(f[chosen.gyro], GYRO_UNITS, "rad/s", chosen.gyro) if gyro_ok else 1.0
                t0_us = float(time_ds[0])
                head = np.asarray(time_ds[:min(n, 4096)], dtype=np.float64)
        except DataError:
            raise
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
            raise DataError(self.path, f"not a readable APDM .h5 file ({exception_line(e)})") from None

        if not _EPOCH_US[0] <= t0_us <= _EPOCH_US[1]:
            raise DataError(self.path, f"{chosen.time}[0] = {t0_us:.0f} is not a time in microseconds "
                                       "since 1970 (2000..2100)")
        rate = chosen.rate
        rate_source = "Configuration Sample Rate"
        if rate is None or rate <= 0:
            steps = np.diff(head)
            steps = steps[steps > 0]
            if steps.size == 0:
                raise DataError(self.path, "no sample rate attribute and too few samples to estimate one")
            rate, rate_source = 1e6 / float(np.median(steps)), "estimated from Time"
        rate = check_rate(self.path, rate, rate_source)
        self.n = n
        self.gyro = gyro_ok
        device: Dict[str, Any] = {
            "model": "APDM Opal", "sensor_id": chosen.sensor_id, "label": chosen.label,
            "file_format_version": version, "rate_source": rate_source,
            "sensors_in_file": [s.label or s.sensor_id for s in streams],
            "units_as_stored": "acc m/s^2, gyro rad/s" if gyro_ok else "acc m/s^2",
        }
        tz_offset = _number(chosen.config.get("Timezone Offset"))
        if tz_offset is not None:
            device["timezone_offset_h"] = tz_offset
        device["configuration"] = chosen.config
        self.info = DeviceInfo(
            format=self.format, path=self.path, rate_hz=float(rate),
            channels="acc+gyro" if gyro_ok else "acc", start_time_s=t0_us / 1e6,
            start_time_source=f"file: {chosen.time} (microseconds since the Unix epoch, UTC)",
            n_samples=n, device=device)

    # -- header -----------------------------------------------------------------------------------

    def _streams(self, f: Any, version: Optional[float]) -> List[_Stream]:
        if "Sensors" in f:
            out = []
            for sid in f["Sensors"]:
                grp = f["Sensors"][sid]
                cfg = _scalar_attrs(grp["Configuration"].attrs) if "Configuration" in grp else {}
                if "Accelerometer" not in grp or "Time" not in grp:
                    log.warning("%s: /Sensors/%s has no Accelerometer or Time; ignored", self.path, sid)
                    continue
                enabled = cfg.get("Gyroscope Enabled")
                gyro = f"/Sensors/{sid}/Gyroscope" if "Gyroscope" in grp and enabled not in (0, 0.0, "0") else None
                rate = cfg.get("Sample Rate")
                out.append(_Stream(str(sid), str(cfg.get("Label 0", "")), f"/Sensors/{sid}/Accelerometer", gyro,
                                   f"/Sensors/{sid}/Time", rate if isinstance(rate, float) else None, cfg))
            if not out:
                raise DataError(self.path, "APDM file has a /Sensors group but no sensor with Accelerometer and Time")
            return out
        if "CaseIdList" in f:
            cases = [_text(c) for c in np.asarray(f["CaseIdList"][()]).reshape(-1)]
            labels = ([_text(c) for c in np.asarray(f["MonitorLabelList"][()]).reshape(-1)]
                      if "MonitorLabelList" in f else [""] * len(cases))
            out = []
            for case, label in zip(cases, labels + [""] * (len(cases) - len(labels))):
                if case not in f or "Calibrated/Accelerometers" not in f[case] or "Time" not in f[case]:
                    raise DataError(self.path, f"APDM v{version or '?'} file: case {case!r} has no "
                                               "Calibrated/Accelerometers or Time")
                grp = f[case]
                cfg = _scalar_attrs(grp.attrs)
                gyro = f"/{case}/Calibrated/Gyroscopes" if "Calibrated/Gyroscopes" in grp else None
                rate = cfg.get("SampleRate")
                out.append(_Stream(case, label, f"/{case}/Calibrated/Accelerometers", gyro, f"/{case}/Time",
                                   rate if isinstance(rate, float) else None, cfg))
            if not out:
                raise DataError(self.path, "APDM file lists no cases in /CaseIdList")
            return out
        raise DataError(self.path, f"not an APDM Opal file: no /Sensors group (format v5) and no /CaseIdList "
                                   f"(v2-v4); FileFormatVersion {version if version is not None else 'missing'}")

    def _choose(self, streams: List[_Stream], sensor: Optional[str]) -> _Stream:
        names = ", ".join(f"{s.label or '?'} ({s.sensor_id})" for s in streams)
        if sensor is not None:
            want = sensor.strip().lower()
            hits = [s for s in streams if s.label.lower() == want or s.sensor_id.lower() == want]
            if len(hits) != 1:
                raise DataError(self.path, f"no single sensor {sensor!r} in the file; it has {names}")
            return hits[0]
        if len(streams) == 1:
            return streams[0]
        preferred = [s for s in streams if any(p in s.label.lower() for p in PREFERRED_LABELS)]
        if len(preferred) == 1:
            log.info("%s: %d sensors; reading %s (%s)", self.path, len(streams), preferred[0].label,
                     preferred[0].sensor_id)
            return preferred[0]
        raise DataError(self.path, f"the file holds {len(streams)} sensors ({names}); choose one by label "
                                   "(--sensor LABEL, or sensor in dataset.json / session.json)")

    def _unit(self, ds: Any, table: Dict[str, float], default: str, name: str) -> float:
        raw = ds.attrs.get("Units", ds.attrs.get("units"))
        if raw is None:
            return table[default]
        unit = _text(raw).replace(" ", "").replace("²", "^2").lower()
        for key, factor in table.items():
            if unit == key.lower():
                return factor
        raise DataError(self.path, f"{name} is in {_text(raw)!r}; expected one of {', '.join(table)}")

    # -- samples ----------------------------------------------------------------------------------

    def iter_chunks(self, chunk_samples: int = DEFAULT_CHUNK_SAMPLES) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        if chunk_samples < 1:
            raise ValueError("chunk_samples must be >= 1")
        h5py = _h5py()
        s = self._stream
        last_t = -np.inf
        try:
            with h5py.File(self.path, "r") as f:
                acc_ds, time_ds = f[s.acc], f[s.time]
                gyro_ds = f[s.gyro] if self.gyro else None
                for i in range(0, self.n, chunk_samples):
                    j = min(self.n, i + chunk_samples)
                    t = np.asarray(time_ds[i:j], dtype=np.float64) / 1e6
                    steps = np.diff(t, prepend=last_t)
                    if not np.all(steps > 0):
                        k = i + int(np.argmax(~(steps > 0)))
                        raise DataError(self.path, f"{s.time} does not increase at sample {k}")
                    last_t = t[-1]
                    data = np.full((j - i, 6), np.nan)
                    data[:, :3] = np.asarray(acc_ds[i:j], dtype=np.float64) * self._acc_factor
                    if gyro_ds is not None:
                        data[:, 3:] = np.asarray(gyro_ds[i:j], dtype=np.float64) * self._gyro_factor
                    yield t, data
        except DataError:
            raise
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
            raise DataError(self.path, f"cannot read samples ({exception_line(e)})") from None
