"""Activity motion models and the camera/IMU trajectory.

One job (over 450 lines because each activity has its own motion model): turning a plan of bouts into
one trajectory that the camera and the IMU both sample.

World frame: x, y horizontal, z up (m); gravity (0, 0, -9.80665) m/s^2. Body (= camera) frame:
x forward, y left, z up. Orientation is ZYX Euler (yaw about z, then pitch about y — positive
pitch looks down —, then roll about x): ``R = Rz(yaw) Ry(pitch) Rx(roll)`` maps body to world.

A session is a list of :class:`Bout` (one activity each). :func:`build_trajectory` turns the bouts
into a smooth pose ``p(t), R(t)`` on a fine time grid and differentiates it there; the camera and
the IMU are both sampled from that one :class:`Trajectory`, which is what makes them agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Protocol, Tuple

import numpy as np
from scipy.ndimage import gaussian_filter1d

from crossmodal_har.simulator.subjects import SubjectParams

GRAVITY = np.array([0.0, 0.0, -9.80665])  # m/s^2, world frame
STANDARD_GRAVITY = 9.80665

FLOOR_EYE_HEIGHT = 0.30  # camera height when lying on the floor after a fall (m)
STAIR_RISE = 0.17  # m per step
STAIR_TREAD = 0.28  # m per step

# Bout length ranges (s).
_DURATIONS = {
    "walk": (8.0, 30.0), "run": (5.0, 15.0), "stand": (5.0, 20.0), "sit": (5.0, 30.0),
    "turn": (4.0, 8.0), "stairs_up": (5.0, 12.0), "stairs_down": (5.0, 12.0),
    "sit_down": (2.0, 3.0), "stand_up": (2.0, 3.0), "fall": (3.0, 6.0),
}
# Next-activity weights while standing.
_FROM_STANDING = {
    "walk": 0.27, "run": 0.10, "stand": 0.13, "turn": 0.13, "stairs_up": 0.12, "sit_down": 0.12,
    "fall": 0.05,
}


class ArenaLike(Protocol):
    """What steering needs of a scene (e.g. :class:`~.render.Scene`)."""

    half_size: float  # walls at x, y = ±half_size (m)
    boxes: np.ndarray  # [K, 5] xmin, xmax, ymin, ymax, zmax (m)


@dataclass
class Bout:
    """One activity from ``start`` to ``end`` (s, video clock); ``params`` are its random choices."""

    label: str
    start: float
    end: float
    params: Dict = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return self.end - self.start


def stair_cadence(subject: SubjectParams) -> float:
    """Steps per second on stairs (Hz)."""
    return 0.85 * subject.cadence_hz


def plan_bouts(rng: np.random.Generator, duration_s: float, subject: SubjectParams) -> List[Bout]:
    """A random but plausible sequence of bouts covering ``[0, duration_s]``.

    Postures are tracked so that ``sit`` only follows ``sit_down``, ``stand_up`` follows ``sit`` or
    ``fall``, and stairs never take the person below the ground floor.
    """
    bouts: List[Bout] = []
    t = 0.0
    posture = "standing"  # standing | sitting | floor
    elevation = 0.0  # m above the ground plane
    prev = ""
    rise_rate = STAIR_RISE * stair_cadence(subject)  # m/s
    while t < duration_s - 1e-9:
        if posture == "sitting":
            label = "sit" if prev == "sit_down" else "stand_up"
        elif posture == "floor":
            label = "stand_up"
        else:
            weights = dict(_FROM_STANDING)
            if elevation > 0.3:
                weights["stairs_down"] = 0.35 + 0.1 * elevation
            if elevation > 3.0:
                weights.pop("stairs_up")
            weights.pop(prev, None)  # no two bouts of the same activity in a row
            if prev in ("stand_up",):
                weights.pop("sit_down", None)
            names = list(weights)
            p = np.array([weights[n] for n in names])
            label = names[int(rng.choice(len(names), p=p / p.sum()))]
        lo, hi = _DURATIONS[label]
        dur = float(rng.uniform(lo, hi))
        params: Dict = {}
        if label == "stairs_down":
            dur = min(dur, elevation / rise_rate)
            if dur < 2.0:  # not enough height to go down: walk instead
                label, dur = "walk", float(rng.uniform(*_DURATIONS["walk"]))
        if label == "stand_up" and posture == "floor":
            dur = float(rng.uniform(2.5, 3.5))
            params["from_floor"] = True
        if label == "turn":
            params["turns"] = _plan_turns(rng, dur)
        if label == "fall":
            params["direction"] = str(rng.choice(["forward", "forward", "left", "right", "backward"]))
            params["onset"] = float(rng.uniform(0.2, 0.5))
            params["fall_s"] = float(rng.uniform(0.6, 0.9))
        if label == "walk":
            params["speed_scale"] = float(rng.uniform(0.85, 1.15))
        # boundaries on a 1 ms grid (labels.csv precision); no sliver bout at the session end
        end = min(round(t + dur, 3), duration_s)
        if duration_s - end < 0.5:
            end = duration_s
        bouts.append(Bout(label, t, end, params))
        if label == "stairs_up":
            elevation += rise_rate * (end - t)
        elif label == "stairs_down":
            elevation = max(0.0, elevation - rise_rate * (end - t))
        posture = {"sit_down": "sitting", "fall": "floor", "stand_up": "standing"}.get(label, posture)
        prev = label
        t = end
    return bouts


def _plan_turns(rng: np.random.Generator, dur: float) -> List[Tuple[float, float, float]]:
    """Turns in place within a bout: (start offset s, duration s, angle rad) each."""
    turns = []
    t = float(rng.uniform(0.2, 0.8))
    while True:
        angle = float(rng.uniform(math.radians(60), math.radians(180))) * float(rng.choice([-1.0, 1.0]))
        rate = float(rng.uniform(1.2, 2.4))  # mean yaw rate (rad/s)
        td = abs(angle) / rate
        if t + td > dur - 0.2:
            break
        turns.append((t, td, angle))
        t += td + float(rng.uniform(0.4, 1.5))
    if not turns:  # bout too short for the drawn turn: one quick quarter turn
        td = min(1.0, max(0.3, dur - 0.4))
        turns.append((0.2, td, math.radians(90) * float(rng.choice([-1.0, 1.0]))))
    return turns


def smoothstep(x: np.ndarray) -> np.ndarray:
    """C1 ramp 0 → 1 on x in [0, 1] (clipped outside)."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def euler_to_R(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """[N, 3, 3] body-to-world rotations ``Rz(yaw) Ry(pitch) Rx(roll)`` (angles in rad)."""
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    R = np.empty(np.shape(yaw) + (3, 3))
    R[..., 0, 0] = cy * cp
    R[..., 0, 1] = cy * sp * sr - sy * cr
    R[..., 0, 2] = cy * sp * cr + sy * sr
    R[..., 1, 0] = sy * cp
    R[..., 1, 1] = sy * sp * sr + cy * cr
    R[..., 1, 2] = sy * sp * cr - cy * sr
    R[..., 2, 0] = -sp
    R[..., 2, 1] = cp * sr
    R[..., 2, 2] = cp * cr
    return R


def euler_rates_to_body(pitch, roll, dyaw, dpitch, droll) -> np.ndarray:
    """Body-frame angular velocity [N, 3] (rad/s) from ZYX Euler angles and their rates."""
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    wx = droll - dyaw * sp
    wy = dpitch * cr + dyaw * cp * sr
    wz = dyaw * cp * cr - dpitch * sr
    return np.stack([wx, wy, wz], axis=-1)


@dataclass
class Trajectory:
    """Camera (= IMU) pose on a fine uniform time grid, with its derivatives.

    Attributes:
        t: [N] time (s, video clock), uniform at ``rate_hz``.
        pos: [N, 3] camera position (m, world).
        euler: [N, 3] yaw, pitch, roll (rad; yaw unwrapped).
        acc: [N, 3] linear acceleration of the camera (m/s^2, world; gravity not included).
        omega: [N, 3] angular velocity in the body (camera) frame (rad/s).
    """

    t: np.ndarray
    pos: np.ndarray
    euler: np.ndarray
    acc: np.ndarray
    omega: np.ndarray

    @property
    def rate_hz(self) -> float:
        return float(1.0 / (self.t[1] - self.t[0]))

    def _interp(self, arr: np.ndarray, times: np.ndarray) -> np.ndarray:
        times = np.asarray(times, dtype=np.float64)
        return np.stack([np.interp(times, self.t, arr[:, k]) for k in range(arr.shape[1])], axis=-1)

    def pose_at(self, times: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Camera position [n, 3] (m) and body-to-world rotation [n, 3, 3] at ``times`` (s)."""
        pos = self._interp(self.pos, times)
        e = self._interp(self.euler, times)
        return pos, euler_to_R(e[:, 0], e[:, 1], e[:, 2])

    def specific_force_and_rate(self, times: np.ndarray, R_mount: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Ideal IMU readings at ``times``: specific force (m/s^2) and angular rate (rad/s), sensor frame.

        ``f = R_s^T (a - g)`` with ``R_s = R_body R_mount``, so a sensor at rest reads +9.81 m/s^2
        along its world-up axis; ``omega_s = R_mount^T omega_body``.
        """
        _, R = self.pose_at(times)
        a = self._interp(self.acc, times) - GRAVITY
        f_body = _mul_T(R, a)
        w_body = self._interp(self.omega, times)
        Rm = np.broadcast_to(np.asarray(R_mount, dtype=np.float64), R.shape)
        return _mul_T(Rm, f_body), _mul_T(Rm, w_body)


def _mul_T(R: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``R[n]^T v[n]`` for each n, elementwise (no BLAS: bit-identical from run to run)."""
    return np.stack([R[:, 0, i] * v[:, 0] + R[:, 1, i] * v[:, 1] + R[:, 2, i] * v[:, 2] for i in range(3)], axis=-1)


def _smooth(x: np.ndarray, sigma: float, circular: bool = False) -> np.ndarray:
    """Gaussian smoothing (sigma in samples); edges extended with the end values, or wrapped around.

    Wide kernels go through the FFT: the direct filter costs O(n * sigma), which dominated the
    trajectory time for minutes-long sessions at 400 Hz.
    """
    if sigma < 25:
        return gaussian_filter1d(x, sigma, mode="wrap" if circular else "nearest")
    from scipy.fft import next_fast_len

    if circular:
        n, pad, xp = len(x), 0, x
    else:
        pad = int(4 * sigma) + 1
        n = next_fast_len(len(x) + 2 * pad, real=True)
        xp = np.concatenate([np.full(pad, x[0]), x, np.full(n - len(x) - pad, x[-1])])
    f = np.fft.rfftfreq(n)
    y = np.fft.irfft(np.fft.rfft(xp) * np.exp(-0.5 * (2 * np.pi * f * sigma) ** 2), n)
    return y[pad:pad + len(x)]


def _filtered_noise(rng: np.random.Generator, n: int, sigma_samples: float) -> np.ndarray:
    """Zero-mean, unit-std smooth noise (white noise through a Gaussian filter)."""
    # circular smoothing of a longer draw, keeping a stretch away from the wrap-around seam
    m = int(4 * sigma_samples)
    x = _smooth(rng.standard_normal(n + 2 * m), sigma_samples, circular=True)[m: m + n]
    s = x.std()
    return x / s if s > 0 else x


@dataclass
class _Channels:
    """Per-sample control signals before smoothing/integration."""

    speed: np.ndarray
    yaw_rate: np.ndarray
    posture_h: np.ndarray
    elev_rate: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray
    gait_amp: np.ndarray
    cadence: np.ndarray
    sway: np.ndarray
    moving: np.ndarray
    lateral_speed: np.ndarray


def _fill_channels(bouts: List[Bout], subject: SubjectParams, t: np.ndarray) -> _Channels:
    n = len(t)
    z = lambda: np.zeros(n)  # noqa: E731
    ch = _Channels(z(), z(), np.full(n, subject.eye_height_m), z(), z(), z(), z(),
                   np.full(n, subject.cadence_hz), z(), z(), z())
    H = subject.eye_height_m
    Hs = H - subject.seated_drop_m
    state_h, state_pitch, state_roll = H, 0.0, 0.0
    for i, b in enumerate(bouts):
        end = b.end if i < len(bouts) - 1 else t[-1] + 1.0
        start = b.start if i > 0 else t[0] - 1.0
        sl = slice(int(np.searchsorted(t, start)), int(np.searchsorted(t, end)))
        tt = t[sl] - b.start  # time into the bout (s)
        d = b.duration
        lab = b.label
        ch.posture_h[sl] = state_h
        ch.pitch[sl] = state_pitch
        ch.roll[sl] = state_roll
        if lab in ("walk", "run", "stairs_up", "stairs_down"):
            ch.moving[sl] = 1.0
            if lab == "walk":
                ch.speed[sl] = subject.walk_speed * b.params.get("speed_scale", 1.0)
                ch.gait_amp[sl] = subject.bounce_m
                ch.cadence[sl] = subject.cadence_hz
                ch.sway[sl] = 1.0
            elif lab == "run":
                ch.speed[sl] = subject.run_speed
                ch.gait_amp[sl] = subject.run_bounce_m
                ch.cadence[sl] = subject.run_cadence_hz
                ch.sway[sl] = 0.6
                ch.pitch[sl] = state_pitch + 0.08
            else:
                c = stair_cadence(subject)
                up = lab == "stairs_up"
                ch.speed[sl] = STAIR_TREAD * c
                ch.elev_rate[sl] = (STAIR_RISE if up else -STAIR_RISE) * c
                ch.gait_amp[sl] = subject.bounce_m * 1.3
                ch.cadence[sl] = c
                ch.sway[sl] = 1.2
                ch.pitch[sl] = state_pitch + (0.20 if up else 0.35)  # watching the steps
        elif lab == "turn":
            for (ts, td, angle) in b.params["turns"]:
                x = (tt - ts) / td
                inside = (x >= 0) & (x <= 1)
                # raised-cosine yaw rate whose integral over the turn is ``angle``
                ch.yaw_rate[sl] += np.where(inside, angle / td * (1 - np.cos(2 * np.pi * x)), 0.0)
                ch.gait_amp[sl] += np.where(inside, 0.4 * subject.bounce_m, 0.0)
            ch.cadence[sl] = subject.cadence_hz
        elif lab == "sit_down":
            s = tt / d
            ch.posture_h[sl] = state_h + (Hs - state_h) * smoothstep(s)
            seated_pitch = 0.1  # looking slightly down when seated
            ch.pitch[sl] = (state_pitch + (seated_pitch - state_pitch) * smoothstep(s)
                            + 0.45 * np.sin(np.pi * np.clip(s, 0, 1)))  # trunk lean
            state_h, state_pitch = Hs, seated_pitch
        elif lab == "sit":
            ch.posture_h[sl] = Hs
        elif lab == "stand_up":
            s = tt / d
            ch.posture_h[sl] = state_h + (H - state_h) * smoothstep(s)
            if b.params.get("from_floor"):
                # pitch/roll recover first (getting onto the knees), then the rise
                s2 = smoothstep(tt / (0.6 * d))
                ch.pitch[sl] = state_pitch * (1 - s2) + 0.5 * np.sin(np.pi * np.clip(s, 0, 1))
                ch.roll[sl] = state_roll * (1 - s2)
            else:
                ch.pitch[sl] = state_pitch * (1 - smoothstep(s)) + 0.45 * np.sin(np.pi * np.clip(s, 0, 1))
            state_h, state_pitch, state_roll = H, 0.0, 0.0
        elif lab == "fall":
            on, tf = b.params["onset"], b.params["fall_s"]
            x = np.clip((tt - on) / tf, 0.0, 1.0)
            q = x * x  # accelerating collapse, stopped by the floor at x = 1 (the impact)
            direction = b.params["direction"]
            tgt_pitch, tgt_roll, v = 0.0, 0.0, 0.0
            if direction == "forward":
                tgt_pitch, v = 1.2, 1.2
            elif direction == "backward":
                tgt_pitch, v = -0.9, -0.6
            else:
                tgt_roll = 1.3 if direction == "right" else -1.3
                ch.lateral_speed[sl] = np.where((x > 0) & (x < 1), (-0.8 if direction == "right" else 0.8), 0.0)
            ch.posture_h[sl] = state_h + (FLOOR_EYE_HEIGHT - state_h) * q
            ch.pitch[sl] = state_pitch + (tgt_pitch - state_pitch) * q
            ch.roll[sl] = state_roll + (tgt_roll - state_roll) * q
            ch.speed[sl] = np.where((x > 0) & (x < 1), v, 0.0)
            # a stumble step before the collapse
            ch.gait_amp[sl] = np.where(tt < on, subject.bounce_m, 0.0)
            state_h, state_pitch, state_roll = FLOOR_EYE_HEIGHT, tgt_pitch, tgt_roll
    return ch


def build_trajectory(
    bouts: List[Bout],
    subject: SubjectParams,
    rng: np.random.Generator,
    *,
    fine_hz: float = 400.0,
    arena: Optional[ArenaLike] = None,
    pad_s: float = 1.0,
    start_xy: Tuple[float, float] = (0.0, 0.0),
    start_yaw: float = 0.0,
    look_around: bool = True,
) -> Trajectory:
    """Integrate the bouts into a smooth pose on a ``fine_hz`` grid covering the session ± ``pad_s``.

    Args:
        arena: obstacles to steer around (walls and boxes); None = open ground.
        look_around: add slow random head yaw/pitch (off for scripted tests).
    """
    t0 = bouts[0].start - pad_s
    t1 = bouts[-1].end + pad_s
    dt = 1.0 / fine_hz
    n = int(math.ceil((t1 - t0) * fine_hz)) + 1
    t = t0 + np.arange(n) * dt
    ch = _fill_channels(bouts, subject, t)
    sec = fine_hz  # samples per second

    speed = _smooth(ch.speed, 0.35 * sec)
    lateral = _smooth(ch.lateral_speed, 0.05 * sec)
    moving = _smooth(ch.moving, 0.3 * sec)
    gait_amp = _smooth(ch.gait_amp, 0.25 * sec)
    cadence = _smooth(ch.cadence, 0.3 * sec)
    sway = _smooth(ch.sway, 0.3 * sec) * gait_amp / max(subject.bounce_m, 1e-6)
    elev_rate = _smooth(ch.elev_rate, 0.3 * sec)
    posture_h = _smooth(ch.posture_h, 0.02 * sec)
    pitch_base = _smooth(ch.pitch, 0.03 * sec)
    roll_base = _smooth(ch.roll, 0.03 * sec)

    # Heading: scripted turns + wander while moving + steering away from walls and boxes.
    wander = subject.wander_rad_s * _filtered_noise(rng, n, 1.5 * sec) * moving
    yaw_script = _smooth(ch.yaw_rate, 0.04 * sec)
    heading_rate = yaw_script + wander
    if arena is not None:
        heading_rate = heading_rate + _steer(t, speed, heading_rate, arena, start_xy, start_yaw, lateral)
    heading = start_yaw + np.cumsum(heading_rate) * dt

    # Gait: phase advances with cadence (steps/s); one vertical bob per step, one sway per stride.
    phase = 2 * np.pi * np.cumsum(cadence) * dt
    bob = gait_amp * (-np.cos(phase) + 0.1 * np.cos(2 * phase))
    lat_sway = 0.5 * gait_amp * sway * np.sin(0.5 * phase)  # m, toward body-left
    elevation = np.cumsum(elev_rate) * dt

    ch_, sh_ = np.cos(heading), np.sin(heading)
    vx = speed * ch_ - lateral * sh_
    vy = speed * sh_ + lateral * ch_
    x = start_xy[0] + np.cumsum(vx) * dt - sh_ * lat_sway
    y = start_xy[1] + np.cumsum(vy) * dt + ch_ * lat_sway
    zpos = elevation + posture_h + bob

    # Head orientation on top of the heading.
    # Slow look-around: glances sideways (less while moving), up/down (fast and slow parts: looking
    # at the ground for a while), and small head tilts. The pitch and roll parts move the horizon in
    # the picture and the gravity direction in the accelerometer together.
    look_y = look_p = look_r = 0.0
    if look_around:
        a = subject.head_look_rad
        look_y = a * _filtered_noise(rng, n, 0.8 * sec) * (1.0 - 0.6 * moving)
        look_p = 0.5 * a * _filtered_noise(rng, n, 0.8 * sec) + 0.6 * a * _filtered_noise(rng, n, 3.0 * sec)
        look_r = 0.25 * a * _filtered_noise(rng, n, 1.5 * sec)
    yaw = heading + look_y + 0.3 * subject.sway_rad * sway * np.sin(0.5 * phase)
    pitch = pitch_base + look_p + 1.5 * gait_amp * np.cos(phase)  # head nods with each step
    roll = roll_base + look_r + subject.sway_rad * sway * np.sin(0.5 * phase + 0.3)

    pos = np.stack([x, y, zpos], axis=-1)
    vel = np.gradient(pos, dt, axis=0)
    acc = np.gradient(vel, dt, axis=0)
    dyaw, dpitch, droll = (np.gradient(a, dt) for a in (yaw, pitch, roll))
    omega = euler_rates_to_body(pitch, roll, dyaw, dpitch, droll)
    return Trajectory(t=t, pos=pos, euler=np.stack([yaw, pitch, roll], axis=-1), acc=acc, omega=omega)


def _steer(t, speed, heading_rate, arena, start_xy, start_yaw, lateral) -> np.ndarray:
    """Extra yaw rate (rad/s) that keeps a moving person inside the arena and off the boxes.

    Runs a coarse (20 Hz) sequential controller on the planned speed and turn rate, then returns
    its correction smoothed onto the fine grid.
    """
    fine_dt = t[1] - t[0]
    step = max(1, int(round(0.05 / fine_dt)))
    idx = np.arange(0, len(t), step)
    dt = step * fine_dt
    L = arena.half_size
    boxes = arena.boxes
    centres = np.stack([(boxes[:, 0] + boxes[:, 1]) / 2, (boxes[:, 2] + boxes[:, 3]) / 2], axis=-1)
    radii = 0.5 * np.hypot(boxes[:, 1] - boxes[:, 0], boxes[:, 3] - boxes[:, 2]) + 0.7
    x, y, h = float(start_xy[0]), float(start_xy[1]), float(start_yaw)
    corr = np.zeros(len(idx))
    sp = speed[idx]
    hr = heading_rate[idx]
    c_state = 0.0
    homing = False  # turning back toward the middle until facing it (hysteresis)
    for j in range(len(idx)):
        v = sp[j]
        c = 0.0
        if v > 0.15:
            look = 2.0 + 1.5 * v
            ax, ay = x + look * math.cos(h), y + look * math.sin(h)
            margin = L - 1.5
            want = math.atan2(-y, -x)
            err = (want - h + math.pi) % (2 * math.pi) - math.pi
            if abs(ax) > margin or abs(ay) > margin:
                homing = True
            elif abs(err) < 0.5:
                homing = False
            if homing:
                c = 1.5 * math.copysign(min(1.0, abs(err) + 0.3), err)
            else:
                dx = centres[:, 0] - x
                dy = centres[:, 1] - y
                ahead = dx * math.cos(h) + dy * math.sin(h)
                side = -dx * math.sin(h) + dy * math.cos(h)
                hit = (ahead > 0) & (ahead < look + radii) & (np.abs(side) < radii)
                if hit.any():
                    k = int(np.argmin(np.where(hit, ahead, np.inf)))
                    c = -1.2 * (1.0 if side[k] >= 0 else -1.0)  # turn away from the box's side
        # smooth the controller output so its own derivative stays plausible
        c_state += (c - c_state) * min(1.0, dt / 0.3)
        corr[j] = c_state
        h += (hr[j] + c_state) * dt
        x += v * math.cos(h) * dt
        y += v * math.sin(h) * dt
    out = np.interp(t, t[idx], corr)
    return _smooth(out, 0.1 / fine_dt)
