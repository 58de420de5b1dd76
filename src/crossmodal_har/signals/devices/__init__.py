"""Device files in: one reader per format behind one interface (:mod:`.base`).

  cwa        Axivity AX3 / AX6 (.cwa)
  geneactiv  GENEActiv (.bin)
  genea      the older GENEA (.bin starting with ``GENEA/``)
  apdm       APDM Opal (.h5)
  gt3x       ActiGraph (.gt3x)
  empatica   Empatica exports

``READERS`` maps each format name to its reader class; :func:`open_device` picks one by
``fmt`` or by the file's suffix (where readers share a suffix, by the file's first bytes: a reader's
``magic``). See docs/data-formats.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Type, Union

from crossmodal_har.errors import DataError, UserError
from crossmodal_har.signals.devices.actigraph import Gt3xReader
from crossmodal_har.signals.devices.apdm import ApdmReader
from crossmodal_har.signals.devices.base import (DAMAGE_POLICIES, DEFAULT_CHUNK_SAMPLES, DeviceInfo, DeviceReader,
                                                 Skipped)
from crossmodal_har.signals.devices.cwa import CwaReader
from crossmodal_har.signals.devices.empatica import EmpaticaReader
from crossmodal_har.signals.devices.genea import GeneaReader
from crossmodal_har.signals.devices.geneactiv import GeneactivReader

READERS: Dict[str, Type[DeviceReader]] = {
    r.format: r for r in (CwaReader, GeneactivReader, GeneaReader, ApdmReader, Gt3xReader, EmpaticaReader)}

#: table formats read by :mod:`crossmodal_har.signals.tables` (not device files)
TABLE_FORMATS = ("csv", "parquet")
# never chosen by suffix for a device reader: these are tables unless --format says otherwise
_TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


def device_suffixes() -> Dict[str, str]:
    """``{suffix: format}`` of every registered reader (lower case, with the dot); a suffix that
    several readers share maps to its default reader (the one without ``magic``)."""
    return {suf: name for name, r in READERS.items() for suf in r.suffixes
            if suf not in _TABLE_SUFFIXES and not r.magic}


def _by_magic(path: Path, default: str) -> str:
    """Among the readers of ``path``'s suffix, the one whose ``magic`` the file starts with, else
    ``default`` (also when the file cannot be read: the reader then says why)."""
    suffix = path.suffix.lower()
    magic = {name: r.magic for name, r in READERS.items() if r.magic and suffix in r.suffixes}
    if not magic:
        return default
    try:
        with open(path, "rb") as fh:
            head = fh.read(max(len(m) for m in magic.values()))
    except OSError:
        return default
    return next((name for name, m in magic.items() if head.startswith(m)), default)


def device_format(path: Union[str, Path], fmt: Optional[str] = None) -> Optional[str]:
    """The device format of ``path`` (``fmt`` if given, else by suffix and, where readers share the
    suffix, by the file's first bytes), or None for a table file.

    Raises:
        UserError: ``fmt`` is not a known format name.
    """
    if fmt is not None:
        if fmt in READERS:
            return fmt
        if fmt in TABLE_FORMATS:
            return None
        raise UserError(f"unknown --format {fmt!r}; supported: {', '.join(list(TABLE_FORMATS) + list(READERS))}")
    name = device_suffixes().get(Path(path).suffix.lower())
    return None if name is None else _by_magic(Path(path), name)


def open_device(path: Union[str, Path], fmt: Optional[str] = None, tz: str = "UTC",
                damaged: str = "refuse", sensor: Optional[str] = None) -> DeviceReader:
    """Open a device file with the reader for ``fmt`` (a registry name) or for its suffix.

    The reader checks the header at once (``reader.info``); samples come from ``reader.iter_chunks``.
    ``damaged``: ``refuse`` a file with a damaged part, or ``skip`` the part and list it in
    ``reader.info.skipped`` (:mod:`.base`). ``sensor``: which sensor of a file that holds several
    (APDM ``.h5``: a label such as ``Lumbar`` or an id; an unknown one is refused with the file's
    labels); a UserError for a format with one sensor.

    Raises:
        DataError: unknown suffix (the message lists the supported formats), or a bad file.
        UserError: unknown ``fmt`` name or time zone.
    """
    path = Path(path)
    name = device_format(path, fmt)
    if name is None:
        sufs = ", ".join(f"{s} ({n})" for s, n in device_suffixes().items())
        raise DataError(path, f"not a device file: unknown suffix {path.suffix.lower() or '(none)'!r}; supported "
                              f"device formats: {sufs} (or pass --format NAME)")
    if not path.exists():  # a folder is a valid input for some formats (Empatica exports)
        raise DataError(path, "file not found")
    if sensor is None:
        return READERS[name](path, tz=tz, damaged=damaged)
    if not READERS[name].multi_sensor:
        raise UserError(f"{path}: sensor {sensor!r} chosen, but a {name} file holds one sensor (several: "
                        f"{', '.join(n for n, r in READERS.items() if r.multi_sensor)})")
    return READERS[name](path, tz=tz, damaged=damaged, sensor=sensor)


__all__ = ["READERS", "DAMAGE_POLICIES", "DEFAULT_CHUNK_SAMPLES", "DeviceInfo", "DeviceReader", "Skipped",
           "TABLE_FORMATS", "device_format",
           "device_suffixes", "open_device"]
