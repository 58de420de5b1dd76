"""Options of the egomotion simulator (a strict dataclass: unknown keys are errors)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from crossmodal_har.errors import ConfigError

ACTIVITIES = (
    "walk", "run", "stand", "sit_down", "sit", "stand_up", "turn", "stairs_up", "stairs_down", "fall",
    "lie_down", "lie", "get_up",
)
MOUNTINGS = ("head", "waist", "wrist", "mixed")  # or several sites: "head,waist"
CORRUPT_MODES = ("none", "zero", "noise", "truncate")


@dataclass
class SimConfig:
    """Everything that shapes a simulated corpus besides ``out_dir``.

    Attributes:
        subjects: number of simulated people.
        minutes: total minutes of paired data across all subjects.
        seed: master seed; the output is a pure function of the config.
        size: square frame size in pixels (even, 32..256).
        fps: video frame rate (Hz).
        hfov_deg: horizontal field of view of the pinhole camera (degrees).
        session_minutes: longest session; each subject's share is split into sessions of at most this.
        mounting: where the IMU is worn: ``head`` (on the camera), ``waist`` (a phone on the belt: the
            pelvis), ``wrist`` (a watch on the left forearm), ``mixed`` (one of the three per subject),
            or several sites separated by commas (``head,waist``: one IMU file per site,
            ``imu-<site>.csv``, all from the same body).
        fine_hz: rate of the internal time grid the trajectory is differentiated on (Hz).
        workers: processes across sessions (1 = in-process).
        crf: x264 constant rate factor (quality; lower = larger files).
        sync_offset_s: fault: IMU timestamps written ``offset`` seconds late (``time = true + offset``).
        dropouts: fault: number of stretches of IMU samples removed per faulted session.
        dropout_s: fault: length of each removed stretch (s).
        corrupt_video: fault: ``zero`` (black frames), ``noise`` (garbage frames), ``truncate``
            (the mp4 file cut short), ``none``.
        corrupt_frames: fault: number of frames made black/garbage per faulted session.
        fault_fraction: fraction of sessions (chosen by seed, at least one) that get the faults.
        declare_offset: write the injected offset into session.json ``imu_offset_s`` as the
            correction a user would declare (``-sync_offset_s``), instead of 0.
        looks: size of the pool of scene looks (colours, sky, sun, textures) shared by all subjects;
            each session is repainted with a look drawn from it every ``look_every_s`` or so (at a
            bout boundary), so that appearance does not identify the person. 0 = one look per
            session, its own.
        look_every_s: mean time between look changes within a session (s).
        progress: show a tqdm bar (``None`` = only on a TTY).
        resume: reuse sessions an identical earlier (e.g. interrupted) run already finished.
    """

    subjects: int = 4
    minutes: float = 10.0
    seed: int = 0
    size: int = 64
    fps: float = 10.0
    hfov_deg: float = 90.0
    session_minutes: float = 5.0
    mounting: str = "head"
    fine_hz: float = 400.0
    workers: int = 1
    crf: int = 23
    sync_offset_s: float = 0.0
    dropouts: int = 0
    dropout_s: float = 1.0
    corrupt_video: Literal["none", "zero", "noise", "truncate"] = "none"
    corrupt_frames: int = 5
    fault_fraction: float = 1.0
    declare_offset: bool = False
    looks: int = 16
    look_every_s: float = 60.0
    progress: Optional[bool] = None
    resume: bool = True

    def validate(self) -> None:
        if self.subjects < 1:
            raise ConfigError(f"subjects must be >= 1, got {self.subjects}")
        if not self.minutes > 0:
            raise ConfigError(f"minutes must be > 0, got {self.minutes}")
        if self.size % 2 or not 16 <= self.size <= 256:
            raise ConfigError(f"size must be even and in 16..256, got {self.size}")
        if not 1.0 <= self.fps <= 60.0:
            raise ConfigError(f"fps must be in 1..60, got {self.fps}")
        if not 20.0 <= self.hfov_deg <= 150.0:
            raise ConfigError(f"hfov_deg must be in 20..150, got {self.hfov_deg}")
        if not self.session_minutes > 0:
            raise ConfigError(f"session_minutes must be > 0, got {self.session_minutes}")
        sites = self.sites
        if not sites or len(set(sites)) != len(sites) or (len(sites) > 1 and "mixed" in sites) or any(
                s not in MOUNTINGS for s in sites):
            raise ConfigError(f"mounting must be one of {', '.join(MOUNTINGS)} or several of head, waist, wrist "
                              f"separated by commas (e.g. head,waist), got {self.mounting!r}")
        if self.fine_hz < 200:
            raise ConfigError(f"fine_hz must be >= 200, got {self.fine_hz}")
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        if not 0 <= self.crf <= 51:
            raise ConfigError(f"crf must be in 0..51, got {self.crf}")
        if self.dropouts < 0 or not self.dropout_s > 0:
            raise ConfigError("dropouts must be >= 0 and dropout_s > 0")
        if self.corrupt_video not in CORRUPT_MODES:
            raise ConfigError(f"corrupt_video must be one of {CORRUPT_MODES}, got {self.corrupt_video!r}")
        if self.corrupt_frames < 0:
            raise ConfigError("corrupt_frames must be >= 0")
        if self.looks < 0 or not self.look_every_s > 0:
            raise ConfigError("looks must be >= 0 and look_every_s > 0")
        if not 0.0 < self.fault_fraction <= 1.0:
            raise ConfigError(f"fault_fraction must be in (0, 1], got {self.fault_fraction}")

    @property
    def sites(self) -> tuple:
        """The IMU sites of every session (``("mixed",)`` for one site per subject)."""
        return tuple(s.strip() for s in str(self.mounting).split(",") if s.strip())

    @property
    def has_faults(self) -> bool:
        return bool(self.sync_offset_s or self.dropouts or self.corrupt_video != "none")
