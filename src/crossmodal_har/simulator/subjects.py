"""Per-subject parameters: gait, posture, sensor mounting, IMU rate/units/noise."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Tuple

import numpy as np

from crossmodal_har.simulator.body import SITES, rot_x, rot_y, rot_z

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


# Nominal sensor-in-segment rotations. Segment frame: x forward, y left, z up (see body.py).
# Columns are the sensor's x, y, z axes written in the segment frame (right-handed, det = +1).
# "head": on the camera (the head segment). "waist": a phone in a belt clip on the pelvis, long axis
# vertical (sensor x = right, y = up, z = backward). "wrist": a watch on the left forearm (sensor
# x = towards the hand, y = forward, z = right, for a hanging arm).
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
        mounting: the site of ``imu.csv`` (head, waist or wrist); mount_R: 3x3 rotation, sensor axes
            expressed in that site's segment frame. site_mounts: every site's rotation (the same
            person can wear several IMUs: one file per site).
        sit_tilt_rad: posterior pelvis tilt when seated (rad); the belt sensor turns with it.
        bed_height_m: belt height when lying (m).
        gait_h2, gait_h3 (+ _phase): 2nd/3rd harmonic of the pelvis bob relative to its fundamental
            (heel strikes), and their phases (rad).
        gait_lateral: pelvis lateral sway amplitude per stride (m); gait_surge: forward speed surge
            per step (m/s); gait_rotation, gait_obliquity: pelvis yaw/roll per stride (rad);
            gait_tilt: pelvis pitch per step (rad); arm_swing: upper-arm swing amplitude (rad).
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
    sit_tilt_rad: float = 0.3
    bed_height_m: float = 0.55
    gait_h2: float = 0.1
    gait_h2_phase: float = 0.0
    gait_h3: float = 0.04
    gait_h3_phase: float = 0.0
    gait_lateral: float = 0.02
    gait_surge: float = 0.15
    gait_rotation: float = 0.07
    gait_obliquity: float = 0.06
    gait_tilt: float = 0.025
    arm_swing: float = 0.3
    site_mounts: Dict[str, List[List[float]]] = field(default_factory=dict)

    @property
    def R_mount(self) -> np.ndarray:
        return np.asarray(self.mount_R, dtype=np.float64)

    def sites(self) -> Tuple[str, ...]:
        """The IMU sites this person wears (``mounting`` first)."""
        return tuple(self.site_mounts) or (self.mounting,)

    def R_mount_at(self, site: str) -> np.ndarray:
        """The mounting rotation of the IMU at ``site``; a site this person does not wear is an error."""
        if site not in self.sites():
            raise ValueError(f"{self.name} wears no IMU at {site!r} (sites: {', '.join(self.sites())})")
        return np.asarray(self.site_mounts.get(site, self.mount_R), dtype=np.float64)

    def to_dict(self) -> Dict:
        return asdict(self)


def parse_sites(mounting: str) -> Tuple[str, ...]:
    """``head``, ``waist,head``, ... → the sites in order (``mixed`` → one per person, see below)."""
    return tuple(s.strip() for s in str(mounting).split(",") if s.strip())


def sample_subject(index: int, seed: int, mounting: str = "head") -> SubjectParams:
    """Draw subject ``index``'s parameters; a pure function of (index, seed, mounting).

    ``mounting`` is one site (head, waist, wrist), several separated by commas (one IMU each, the
    first is ``mounting``), or ``mixed`` (head, waist, wrist in turn over subjects).
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7919, int(index)]))
    u = rng.uniform
    sites = (("head", "waist", "wrist")[index % 3],) if mounting == "mixed" else parse_sites(mounting)
    unknown = [s for s in sites if s not in SITES]
    if not sites or unknown:
        raise ValueError(f"unknown IMU site(s) {unknown or [mounting]}; known: {', '.join(SITES)}")
    # A few degrees of per-person misalignment on top of the nominal mounting.
    jitter = rot_z(u(-0.1, 0.1)) @ rot_y(u(-0.1, 0.1)) @ rot_x(u(-0.1, 0.1))
    mount = _NOMINAL[sites[0]] @ jitter
    acc_unit, gyro_unit, time_unit = UNIT_SETS[index % len(UNIT_SETS)]
    p = SubjectParams(
        name=f"sub{index + 1:02d}",
        eye_height_m=float(u(1.50, 1.80)),
        seated_drop_m=float(u(0.40, 0.55)),
        walk_speed=float(u(1.0, 1.6)),
        run_speed=float(u(2.4, 3.6)),
        cadence_hz=float(u(1.6, 2.1)),
        run_cadence_hz=float(u(2.5, 3.1)),
        bounce_m=float(u(0.014, 0.027)),
        run_bounce_m=float(u(0.025, 0.045)),
        sway_rad=float(u(0.01, 0.05)),
        head_look_rad=float(u(0.08, 0.25)),
        wander_rad_s=float(u(0.05, 0.25)),
        mounting=sites[0],
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
    # the body (drawn after everything above, so earlier parameters keep their values)
    p.sit_tilt_rad = float(u(0.20, 0.45))
    p.bed_height_m = float(u(0.45, 0.65))
    p.gait_h2, p.gait_h2_phase = float(u(0.07, 0.14)), float(u(-0.6, 0.6))
    p.gait_h3, p.gait_h3_phase = float(u(0.03, 0.065)), float(u(-0.6, 0.6))
    p.gait_lateral = float(u(0.015, 0.03))
    p.gait_surge = float(u(0.10, 0.20))
    p.gait_rotation = float(u(0.06, 0.11))
    p.gait_obliquity = float(u(0.05, 0.09))
    p.gait_tilt = float(u(0.015, 0.04))
    p.arm_swing = float(u(0.20, 0.45))
    if len(sites) > 1:
        mounts = {sites[0]: mount}
        for site in sites[1:]:
            j = rot_z(u(-0.1, 0.1)) @ rot_y(u(-0.1, 0.1)) @ rot_x(u(-0.1, 0.1))
            mounts[site] = _NOMINAL[site] @ j
        p.site_mounts = {k: v.tolist() for k, v in mounts.items()}
    return p
