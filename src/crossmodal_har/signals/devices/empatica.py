"""Reader for empatica device files (work in progress: being written in this change)."""

from __future__ import annotations

from crossmodal_har.signals.devices.base import DeviceReader


class EmpaticaReader(DeviceReader):
    format = "empatica"
    suffixes = (".avro",)
