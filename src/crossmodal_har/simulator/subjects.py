"""Per-subject parameters: gait, posture, sensor mounting, IMU rate/units/noise."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Dict, List

import numpy as np

# Native IMU rates (Hz): deliberately not 50, so ingestion must resample.
IMU_RATES = (100.0, 60.0, 200.0, 120.0, 75.0)
# Declared units of the written CSV, cycled over subjects so every combination appears.
UNIT_SETS = (
    ("g", "rad/s", "s"),
    ("m/s^2", "rad/s", "s"),
    ("g", "deg/s", "s"),
    ("m/s^2", "deg/s", "ms"),
    ("g", "rad/s", "ms"),
)


def rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=np.float64)


def rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=np.float64)


def rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)


# Nominal sensor-in-camera rotations. Camera/body frame: x forward, y left, z up.
# Columns are the sensor's x, y, z axes written in the camera frame (right-handed, det = +1).
# "waist": a phone in a belt clip, long axis vertical (sensor x = right, y = up, z = backward).
# "wrist": a watch on a hanging arm (sensor x = down, y = forward, z = right).
_NOMINAL = {
    "head": np.eye(3),
    "waist": np.array([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
    "wrist": np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]]),
}


@dataclass
class SubjectParams:
    """One simulated person and their sensor.

    Attributes:
        name: subject id written to session.json and labels.csv.
        eye_height_m: camera height when standing (m).
        seated_drop_m: how much lower the camera is when seated (m).
        walk_speed: walking speed (m/s); run_speed likewise.
        cadence_hz: walking steps per second; run_cadence_hz for running.
        bounce_m: vertical bob amplitude when walking (m, half peak-to-peak); run_bounce_m running.
        sway_rad: lateral head roll sway amplitude at stride frequency (rad).
        head_look_rad: amplitude (std) of slow look-around head yaw (rad); pitch and roll scale with it.
        wander_rad_s: heading drift (rad/s, std) while walking.
        mounting: mounting name; mount_R: 3x3 rotation, sensor axes expressed in the camera frame.
        imu_rate_hz: native IMU sample rate (Hz).
        acc_unit, gyro_unit, time_unit: units written to imu.csv and declared in session.json.
        acc_noise_g, gyro_noise_rad_s: white-noise std per sample (g, rad/s).
        acc_bias_g [3], gyro_bias_rad_s [3]: constant biases (g, rad/s) in the sensor frame.
    """

    name: str
    eye_height_m: float
    seated_drop_m: float
    walk_speed: float
    run_speed: float
    cadence_hz: float
    run_cadence_hz: float
    bounce_m: float
    run_bounce_m: float
    sway_rad: float
    head_look_rad: float
    wander_rad_s: float
    mounting: str
    mount_R: List[List[float]]
    imu_rate_hz: float
    acc_unit: str
    gyro_unit: str
    time_unit: str
    acc_noise_g: float
    gyro_noise_rad_s: float
    acc_bias_g: List[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    gyro_bias_rad_s: List[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])

    @property
    def R_mount(self) -> np.ndarray:
        return np.asarray(self.mount_R, dtype=np.float64)

    def to_dict(self) -> Dict:
        return asdict(self)


def sample_subject(index: int, seed: int, mounting: str = "head") -> SubjectParams:
    """Draw subject ``index``'s parameters; a pure function of (index, seed, mounting)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7919, int(index)]))
    u = rng.uniform
    if mounting == "mixed":
        mounting = ("head", "waist", "wrist")[index % 3]
    # A few degrees of per-person misalignment on top of the nominal mounting.
    jitter = rot_z(u(-0.1, 0.1)) @ rot_y(u(-0.1, 0.1)) @ rot_x(u(-0.1, 0.1))
    mount = _NOMINAL[mounting] @ jitter
    acc_unit, gyro_unit, time_unit = UNIT_SETS[index % len(UNIT_SETS)]
    return SubjectParams(
        name=f"sub{index + 1:02d}",
        eye_height_m=float(u(1.50, 1.80)),
        seated_drop_m=float(u(0.40, 0.55)),
        walk_speed=float(u(1.0, 1.6)),
        run_speed=float(u(2.4, 3.6)),
        cadence_hz=float(u(1.6, 2.1)),
        run_cadence_hz=float(u(2.5, 3.1)),
        bounce_m=float(u(0.012, 0.03)),
        run_bounce_m=float(u(0.025, 0.045)),
        sway_rad=float(u(0.01, 0.05)),
        head_look_rad=float(u(0.08, 0.25)),
        wander_rad_s=float(u(0.05, 0.25)),
        mounting=mounting,
        mount_R=mount.tolist(),
        imu_rate_hz=float(IMU_RATES[index % len(IMU_RATES)]),
        acc_unit=acc_unit,
        gyro_unit=gyro_unit,
        time_unit=time_unit,
        acc_noise_g=float(u(0.003, 0.02)),
        gyro_noise_rad_s=float(u(0.002, 0.012)),
        acc_bias_g=rng.uniform(-0.02, 0.02, 3).tolist(),
        gyro_bias_rad_s=rng.uniform(-0.01, 0.01, 3).tolist(),
    )
