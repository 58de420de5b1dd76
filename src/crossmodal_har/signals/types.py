"""Core signal types shared by every stage.

Canonical IMU sample (everywhere after reading): 6 channels in this order
    acc_x, acc_y, acc_z  in g (standard gravity, 9.80665 m/s^2), gravity included
    gyro_x, gyro_y, gyro_z in rad/s
and timestamps in seconds (float64).

Accelerometer-only recordings (most clinical devices have no gyroscope) keep this 6-column layout
with the gyroscope columns NaN and ``channels="acc"``: a stage that forgets to check the channels
sees non-finite windows, never silent zeros. Models declare the channels they read through
``PreprocessConfig.channels`` (``acc`` = the first 3 columns, ``acc+gyro`` = all 6).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional

import numpy as np

from crossmodal_har.errors import ConfigError
from crossmodal_har.signals.normalize import MODES as NORMALIZATION_MODES

CHANNELS = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
ACC_CHANNELS = CHANNELS[:3]
# channel sets a recording has or a model reads -> number of leading canonical columns
CHANNEL_SETS = {"acc": 3, "acc+gyro": 6}
STANDARD_GRAVITY = 9.80665  # m/s^2 per g


@dataclass
class PreprocessConfig:
    """How raw IMU becomes model input. Saved with every run, encoder, bundle and store.

    Attributes:
        rate_hz: target sampling rate after resampling (Hz).
        window_s: window length (s); 5 s at 50 Hz = 250 samples (the paper's).
        stride_s: step between window starts (s).
        normalization: ``zscore`` (per window and channel, at model input), ``recording`` (per
            channel over the whole recording before windowing: the paper's official code; applied
            when windows are cut) or ``none`` (physical units g and rad/s, gravity kept). See
            :mod:`crossmodal_har.signals.normalize`.
        median_kernel: odd median-filter kernel in samples at ``rate_hz`` (paper: 5); 0 or 1 = off.
        gap_tolerance_s: a time step longer than this splits a recording into segments.
        flat_std_g: a window whose every accelerometer channel has std below this (g) is a dead sensor.
        acc_saturation_g: |acc| at or above this on >= saturation_fraction of samples = clipped.
        gyro_saturation_rad_s: same for the gyroscope (rad/s).
        saturation_fraction: fraction of samples at the rail that marks a window saturated.
        channels: what the model reads: ``acc+gyro`` (6 channels, the paper's) or ``acc``
            (accelerometer only, 3 channels: the first 3 canonical columns).
    """

    rate_hz: float = 50.0
    window_s: float = 5.0
    stride_s: float = 2.5
    normalization: Literal["zscore", "recording", "none"] = "zscore"
    median_kernel: int = 5
    gap_tolerance_s: float = 0.25
    flat_std_g: float = 1e-4
    acc_saturation_g: Optional[float] = None
    gyro_saturation_rad_s: Optional[float] = None
    saturation_fraction: float = 0.02
    channels: Literal["acc", "acc+gyro"] = "acc+gyro"

    @property
    def n_channels(self) -> int:
        return CHANNEL_SETS[self.channels]

    @property
    def window_samples(self) -> int:
        return int(round(self.window_s * self.rate_hz))

    @property
    def stride_samples(self) -> int:
        return max(1, int(round(self.stride_s * self.rate_hz)))

    def validate(self) -> None:
        if not self.rate_hz > 0:
            raise ConfigError(f"preprocess.rate_hz must be > 0, got {self.rate_hz}")
        if not self.window_s > 0 or self.window_samples < 2:
            raise ConfigError(f"preprocess.window_s too short: {self.window_s}")
        if not self.stride_s > 0:
            raise ConfigError(f"preprocess.stride_s must be > 0, got {self.stride_s}")
        if self.normalization not in NORMALIZATION_MODES:
            raise ConfigError(f"preprocess.normalization must be zscore|recording|none, got {self.normalization!r}")
        if self.median_kernel < 0 or (self.median_kernel > 1 and self.median_kernel % 2 == 0):
            raise ConfigError(f"preprocess.median_kernel must be 0, 1 or odd, got {self.median_kernel}")
        if not self.gap_tolerance_s > 0:
            raise ConfigError("preprocess.gap_tolerance_s must be > 0")
        if self.channels not in CHANNEL_SETS:
            raise ConfigError(f"preprocess.channels must be acc|acc+gyro, got {self.channels!r}")


@dataclass
class ImuRecording:
    """One continuous-or-gappy IMU recording in canonical units.

    Attributes:
        name: recording id (file stem for the generic format).
        t: [T] float64 timestamps in seconds, strictly increasing.
        data: [T, 6] float64 canonical channels (g, rad/s); gyroscope NaN when ``channels="acc"``.
        subject: person id (defaults to ``name``).
        source: file it came from, for error messages.
        channels: what the sensor measured: ``acc+gyro`` or ``acc`` (no gyroscope).
    """

    name: str
    t: np.ndarray
    data: np.ndarray
    subject: str = ""
    source: Optional[Path] = None
    channels: str = "acc+gyro"

    def __post_init__(self) -> None:
        if not self.subject:
            self.subject = self.name


@dataclass
class Segment:
    """A gap-free stretch resampled onto a uniform grid: sample i is at ``t0 + i / rate_hz``."""

    t0: float
    rate_hz: float
    data: np.ndarray  # [n, 6] float32, canonical units

    @property
    def duration_s(self) -> float:
        return len(self.data) / self.rate_hz


@dataclass
class DatasetReport:
    """What went in and what was left out, by reason. Every evaluation report includes it."""

    recordings_read: int = 0
    windows_kept: int = 0
    windows_excluded: Dict[str, int] = field(default_factory=dict)  # reason -> count
    skipped_recordings: List[Dict[str, str]] = field(default_factory=list)  # {"path", "error"}
    short_recordings: List[str] = field(default_factory=list)  # shorter than one window
    unlabelled_windows: int = 0  # windows not wholly inside one labelled segment (not used)

    def exclude(self, reason: str, n: int = 1) -> None:
        self.windows_excluded[reason] = self.windows_excluded.get(reason, 0) + int(n)


@dataclass
class WindowSet:
    """Labelled windows of a dataset, ready for splitting and models.

    ``x`` is in physical units (g, rad/s) after resampling and median filtering; normalisation
    (``preprocess.normalization``) is applied at model input by
    :func:`crossmodal_har.signals.normalize.normalize_windows`, except ``recording``, whose windows
    are already z-scored with their recording's statistics (unitless).
    """

    x: np.ndarray  # [N, W, 6] float32
    y: np.ndarray  # [N] int64 class index
    subject: np.ndarray  # [N] object (str)
    recording: np.ndarray  # [N] object (str)
    start_s: np.ndarray  # [N] float64, window start on the recording's clock
    end_s: np.ndarray  # [N] float64
    class_names: List[str]
    preprocess: PreprocessConfig
    report: DatasetReport = field(default_factory=DatasetReport)
    name: str = ""

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: np.ndarray) -> "WindowSet":
        return WindowSet(
            x=self.x[idx], y=self.y[idx], subject=self.subject[idx], recording=self.recording[idx],
            start_s=self.start_s[idx], end_s=self.end_s[idx], class_names=list(self.class_names),
            preprocess=self.preprocess, report=self.report, name=self.name,
        )
