"""Reader for apdm device files (work in progress: being written in this change)."""

from __future__ import annotations

from crossmodal_har.signals.devices.base import DeviceReader


class ApdmReader(DeviceReader):
    format = "apdm"
    suffixes = (".h5",)
