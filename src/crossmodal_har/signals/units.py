"""Declared source units and conversion to the canonical sample (g, rad/s, seconds)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Literal, Mapping, Optional, Tuple, Union

import numpy as np

from crossmodal_har.errors import ConfigError, DataError
from crossmodal_har.signals.text import read_text, short_number
from crossmodal_har.signals.types import STANDARD_GRAVITY

# Factor that turns a value in the declared unit into the canonical unit.
ACC_UNITS = {"g": 1.0, "m/s^2": 1.0 / STANDARD_GRAVITY}
GYRO_UNITS = {"rad/s": 1.0, "deg/s": math.pi / 180.0}
TIME_UNITS = {"s": 1.0, "ms": 1e-3}

_KINDS = {"acc_unit": ACC_UNITS, "gyro_unit": GYRO_UNITS, "time_unit": TIME_UNITS}

# Other spellings of the units above that files write in their own unit fields (GoPro's GPMF SIUN:
# "m/s2", "degree/s"). Accepted where a unit string is read from a file's telemetry
# (:func:`declared_unit_factor`), not as the names of a source's declared units (:class:`Units`).
UNIT_SPELLINGS: Dict[str, str] = {"m/s2": "m/s^2", "degree/s": "deg/s"}

PathLike = Union[str, "os.PathLike[str]"]


def _unit_problem(key: str, value: Any) -> Optional[str]:
    table = _KINDS[key]
    if not isinstance(value, str) or value not in table:
        return f"unknown {key} {short_number(value)}; expected one of {' | '.join(table)}"
    return None


@dataclass(frozen=True)
class Units:
    """Units a source declares. Canonical is ``Units("g", "rad/s", "s")``.

    Attributes:
        acc_unit: ``g`` or ``m/s^2`` (standard gravity 9.80665 m/s^2 = 1 g).
        gyro_unit: ``rad/s`` or ``deg/s``.
        time_unit: ``s`` or ``ms``.
    """

    acc_unit: str = "g"
    gyro_unit: str = "rad/s"
    time_unit: str = "s"

    def __post_init__(self) -> None:
        for key in _KINDS:
            problem = _unit_problem(key, getattr(self, key))
            if problem:
                raise ConfigError(problem)

    @property
    def time_scale(self) -> float:
        """Seconds per unit of the declared time column."""
        return TIME_UNITS[self.time_unit]

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], path: Optional[PathLike] = None) -> "Units":
        """Build from a dict (e.g. ``dataset.json``); problems are DataErrors naming ``path``.

        Keys other than the three unit keys are ignored here (the caller validates its file).
        """
        text = None
        if path is not None:
            try:
                text = read_text(path)
            except DataError:
                text = None
        kwargs = {}
        for key in _KINDS:
            if key not in data:
                raise DataError(path, f"missing key {key!r} (expected {' | '.join(_KINDS[key])})")
            problem = _unit_problem(key, data[key])
            if problem:
                raise DataError(path, problem, line=_line_of(text, key))
            kwargs[key] = data[key]
        return cls(**kwargs)

    def to_dict(self) -> dict:
        return {"acc_unit": self.acc_unit, "gyro_unit": self.gyro_unit, "time_unit": self.time_unit}


@dataclass
class UnitSettings:
    """A table's units as a command is given them (``--acc-unit``, ``--gyro-unit``, ``--time-unit``, or
    ``--meta``: a ``dataset.json`` naming all three; not both). None = not given: g, rad/s, s.
    :func:`crossmodal_har.signals.recording.declared_units` turns them into :class:`Units`."""

    acc_unit: Optional[Literal["g", "m/s^2"]] = None
    gyro_unit: Optional[Literal["rad/s", "deg/s"]] = None
    time_unit: Optional[Literal["s", "ms"]] = None
    meta: Optional[str] = None

    def given(self) -> bool:
        """Whether any unit (or ``meta``) was given."""
        return self.meta is not None or any(getattr(self, k) is not None for k in _KINDS)


def _line_of(text: Optional[str], key: str) -> Optional[int]:
    """1-based line of the first occurrence of ``"key"`` in a JSON text, for error messages."""
    if not text:
        return None
    needle = f'"{key}"'
    for i, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return i
    return None


def to_canonical(time: np.ndarray, acc: np.ndarray, gyro: np.ndarray, units: Units) -> Tuple[np.ndarray, np.ndarray]:
    """Convert declared units to canonical ones.

    Args:
        time: [T] timestamps in ``units.time_unit``.
        acc: [T, 3] accelerometer in ``units.acc_unit``.
        gyro: [T, 3] gyroscope in ``units.gyro_unit``.

    Returns:
        ``(t, data)``: ``t`` [T] float64 seconds; ``data`` [T, 6] float64, acc in g then gyro in rad/s.
    """
    t = np.asarray(time, dtype=np.float64) * TIME_UNITS[units.time_unit]
    acc = np.asarray(acc, dtype=np.float64)
    gyro = np.asarray(gyro, dtype=np.float64)
    if acc.ndim != 2 or acc.shape[1] != 3 or gyro.shape != acc.shape or t.shape != (acc.shape[0],):
        raise ValueError(f"shape mismatch: time {t.shape}, acc {acc.shape}, gyro {gyro.shape}")
    data = np.empty((len(t), 6), dtype=np.float64)
    data[:, :3] = acc * ACC_UNITS[units.acc_unit]
    data[:, 3:] = gyro * GYRO_UNITS[units.gyro_unit]
    return t, data


def _with_spellings(table: Mapping[str, float]) -> Dict[str, float]:
    out = dict(table)
    out.update({alias: table[unit] for alias, unit in UNIT_SPELLINGS.items() if unit in table})
    return out


def declared_unit_names(kind: str) -> List[str]:
    """Every unit string :func:`declared_unit_factor` understands for ``kind`` (``acc``/``gyro``), sorted."""
    return sorted(_with_spellings(_KINDS[f"{kind}_unit"]))


def declared_unit_factor(kind: str, unit: str) -> Optional[float]:
    """Factor that turns a value in ``unit`` into the canonical unit of ``kind`` (``acc`` -> g,
    ``gyro`` -> rad/s), accepting the spellings of :data:`UNIT_SPELLINGS`; None when ``unit`` is not
    understood."""
    return _with_spellings(_KINDS[f"{kind}_unit"]).get(unit)
