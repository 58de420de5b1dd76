"""IMU synthesis from a :class:`~.motion.Trajectory`: ideal readings, then bias, noise and units."""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np

from crossmodal_har.simulator.body import STANDARD_GRAVITY, Body
from crossmodal_har.simulator.subjects import SubjectParams


def imu_sample_times(rng: np.random.Generator, duration_s: float, rate_hz: float) -> np.ndarray:
    """Sample instants (s, video clock) at ``rate_hz`` covering ``[0, duration_s]``, random phase."""
    phase = float(rng.uniform(0.0, 1.0 / rate_hz))
    n = int(math.floor((duration_s - phase) * rate_hz)) + 1
    return phase + np.arange(n) / rate_hz


def synthesize_imu(
    body: Body, subject: SubjectParams, times: np.ndarray, rng: np.random.Generator, *, noise: bool = True,
    site: Optional[str] = None,
) -> np.ndarray:
    """IMU readings [n, 6] in canonical units (acc in g with gravity, gyro in rad/s), sensor frame.

    The ideal specific force and angular rate come from the segment the IMU at ``site`` (default: the
    subject's ``mounting``) is strapped to, posed by the same body that places the camera; the
    subject's constant bias and white noise are added when ``noise`` is true.
    """
    site = site or subject.mounting
    f, w = body.site(site).specific_force_and_rate(times, subject.R_mount_at(site))
    acc = f / STANDARD_GRAVITY
    if noise:
        acc = acc + np.asarray(subject.acc_bias_g) + subject.acc_noise_g * rng.standard_normal(acc.shape)
        w = w + np.asarray(subject.gyro_bias_rad_s) + subject.gyro_noise_rad_s * rng.standard_normal(w.shape)
    return np.concatenate([acc, w], axis=1)


def to_declared_units(data: np.ndarray, times: np.ndarray, acc_unit: str, gyro_unit: str,
                      time_unit: str) -> Tuple[np.ndarray, np.ndarray]:
    """Convert canonical (g, rad/s, s) to the units a session.json declares."""
    out = np.array(data, dtype=np.float64, copy=True)
    if acc_unit == "m/s^2":
        out[:, :3] *= STANDARD_GRAVITY
    if gyro_unit == "deg/s":
        out[:, 3:] *= 180.0 / math.pi
    t = np.asarray(times, dtype=np.float64) * (1000.0 if time_unit == "ms" else 1.0)
    return out, t
