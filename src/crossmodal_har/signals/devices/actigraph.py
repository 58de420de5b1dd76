"""Reader for gt3x device files (work in progress: being written in this change)."""

from __future__ import annotations

from crossmodal_har.signals.devices.base import DeviceReader


class Gt3xReader(DeviceReader):
    format = "gt3x"
    suffixes = (".gt3x",)
