"""Device files in: one reader per format behind one interface (:mod:`.base`).

  cwa        Axivity AX3 / AX6 (.cwa)
  geneactiv  GENEActiv (.bin)
  apdm       APDM Opal (.h5)
  gt3x       ActiGraph (.gt3x)
  empatica   Empatica exports

``READERS`` maps each format name to its reader class; :func:`open_device` picks one by
``fmt`` or by the file's suffix. See docs/data-formats.md.
"""

from __future__ import annotations

from typing import Dict, Type

from crossmodal_har.signals.devices.actigraph import Gt3xReader
from crossmodal_har.signals.devices.apdm import ApdmReader
from crossmodal_har.signals.devices.base import DEFAULT_CHUNK_SAMPLES, DeviceInfo, DeviceReader
from crossmodal_har.signals.devices.cwa import CwaReader
from crossmodal_har.signals.devices.empatica import EmpaticaReader
from crossmodal_har.signals.devices.geneactiv import GeneactivReader

READERS: Dict[str, Type[DeviceReader]] = {
    r.format: r for r in (CwaReader, GeneactivReader, ApdmReader, Gt3xReader, EmpaticaReader)}

__all__ = ["READERS", "DEFAULT_CHUNK_SAMPLES", "DeviceInfo", "DeviceReader"]
