"""Activity motion models: a plan of bouts, and the signals that pose the body.

One job (over 450 lines because each activity has its own motion model): turning a plan of bouts into
the path, posture and gait of one person, which :mod:`.body` turns into every segment's pose.

World frame: x, y horizontal, z up (m); gravity (0, 0, -9.80665) m/s^2. Segment frames: x forward,
y left, z up; positive pitch turns x (forward; the camera's view) downwards.

A session is a list of :class:`Bout` (one activity each). :func:`build_trajectory` turns the bouts
into smooth control signals on a fine time grid, integrates heading and position, and poses the
body (:func:`.body.pose_body`): the camera (head) and every IMU site are sampled from that one
:class:`~.body.Body`, which is what makes them agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Protocol, Tuple

import numpy as np
from scipy.ndimage import gaussian_filter1d

from crossmodal_har.simulator.body import Body, BodySignals, Dimensions, pose_body
from crossmodal_har.simulator.subjects import SubjectParams

FLOOR_PELVIS_HEIGHT = 0.12  # belt height when lying on the floor after a fall (m)
STAIR_RISE = 0.17  # m per step
STAIR_TREAD = 0.28  # m per step

# Bout length ranges (s).
_DURATIONS = {
    "walk": (8.0, 30.0), "run": (5.0, 15.0), "stand": (5.0, 20.0), "sit": (5.0, 30.0),
    "turn": (4.0, 8.0), "stairs_up": (5.0, 12.0), "stairs_down": (5.0, 12.0),
    "sit_down": (2.0, 3.0), "stand_up": (2.0, 3.0), "fall": (3.0, 6.0),
    "lie_down": (2.5, 4.0), "lie": (10.0, 40.0), "get_up": (2.5, 4.0),
}
# Next activity from a seated posture: after ``sit`` (after ``sit_down`` or ``get_up`` it is ``sit``)
_FROM_SITTING = {"stand_up": 0.55, "lie_down": 0.45}
# Lying on the back, or on one side (``lie_down`` draws one; ``lie`` and ``get_up`` keep it)
_LIE_POSES = ("back", "back", "back", "left", "right")
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

    Postures are tracked so that ``sit`` only follows ``sit_down`` or ``get_up``, ``lie_down`` only
    follows ``sit`` (sitting on the bed first), ``lie`` only follows ``lie_down`` and ``get_up`` only
    ``lie`` (back to sitting), ``stand_up`` follows a seated posture or ``fall``, and stairs never
    take the person below the ground floor.
    """
    bouts: List[Bout] = []
    t = 0.0
    posture = "standing"  # standing | sitting | lying | floor
    elevation = 0.0  # m above the ground plane
    prev = ""
    lie_pose = "back"
    rise_rate = STAIR_RISE * stair_cadence(subject)  # m/s
    while t < duration_s - 1e-9:
        if posture == "sitting":
            if prev == "sit_down":
                label = "sit"
            elif prev == "get_up":
                label = "sit" if rng.uniform() < 0.5 else "stand_up"
            else:
                names = list(_FROM_SITTING)
                p = np.array([_FROM_SITTING[n] for n in names])
                label = names[int(rng.choice(len(names), p=p / p.sum()))]
        elif posture == "lying":
            label = "lie" if prev == "lie_down" else "get_up"
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
        if label == "lie_down":
            lie_pose = str(_LIE_POSES[int(rng.integers(len(_LIE_POSES)))])
        if label in ("lie_down", "lie", "get_up"):
            params["pose"] = lie_pose
        # boundaries on a 1 ms grid (labels.csv precision); no sliver bout at the session end
        end = min(round(t + dur, 3), duration_s)
        if duration_s - end < 0.5:
            end = duration_s
        bouts.append(Bout(label, t, end, params))
        if label == "stairs_up":
            elevation += rise_rate * (end - t)
        elif label == "stairs_down":
            elevation = max(0.0, elevation - rise_rate * (end - t))
        posture = {"sit_down": "sitting", "fall": "floor", "stand_up": "standing", "lie_down": "lying",
                   "get_up": "sitting"}.get(label, posture)
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
    """Per-sample control signals before smoothing/integration (heights in m, angles in rad)."""

    speed: np.ndarray
    yaw_rate: np.ndarray
    elev_rate: np.ndarray
    gait_amp: np.ndarray
    cadence: np.ndarray
    moving: np.ndarray
    lateral_speed: np.ndarray
    pelvis_h: np.ndarray  # belt height above the floor (without stairs)
    pelvis_pitch: np.ndarray
    pelvis_roll: np.ndarray
    trunk_flex: np.ndarray
    head_pitch: np.ndarray
    arm_rest: np.ndarray
    still: np.ndarray  # 1 standing or seated still (postural sway, hand movements), 0 moving/lying


@dataclass
class _Posture:
    """Where a posture puts the body: belt height, pelvis pitch/roll, trunk flexion, head pitch, arm."""

    h: float
    pitch: float = 0.0
    roll: float = 0.0
    flex: float = 0.0
    head: float = 0.0
    arm: float = 0.0

    def blend(self, other: "_Posture", s: np.ndarray) -> Dict[str, np.ndarray]:
        w = smoothstep(s)
        return {k: getattr(self, k) + (getattr(other, k) - getattr(self, k)) * w
                for k in ("h", "pitch", "roll", "flex", "head", "arm")}


def _postures(subject: SubjectParams, dims: Dimensions) -> Dict[str, _Posture]:
    tilt = subject.sit_tilt_rad
    bed = subject.bed_height_m
    return {
        "standing": _Posture(dims.pelvis_h),
        # seated: the pelvis tilts back, the trunk stays near upright, the head looks slightly down
        "sitting": _Posture(dims.pelvis_h - subject.seated_drop_m, -tilt, 0.0, 0.8 * tilt, 0.1 + 0.2 * tilt, 1.0),
        # on the back the pelvis sinks into the mattress a little past horizontal (HAPT's waist phone:
        # 94° from standing, docs/simulator.md); the head on a pillow looks up towards the feet
        "back": _Posture(bed, -0.5 * np.pi - 0.06, 0.0, 0.0, 0.35, 0.3),
        "left": _Posture(bed, 0.0, 0.5 * np.pi, 0.25, 0.1, 0.5),  # lying on the left side, curled a little
        "right": _Posture(bed, 0.0, -0.5 * np.pi, 0.25, 0.1, 0.5),
    }


def _fill_channels(bouts: List[Bout], subject: SubjectParams, dims: Dimensions, t: np.ndarray) -> _Channels:
    n = len(t)
    z = lambda: np.zeros(n)  # noqa: E731
    ch = _Channels(z(), z(), z(), z(), np.full(n, subject.cadence_hz), z(), z(),
                   np.full(n, dims.pelvis_h), z(), z(), z(), z(), z(), np.ones(n))
    postures = _postures(subject, dims)
    state = postures["standing"]
    seated = postures["sitting"]

    def put(sl, values: Dict[str, np.ndarray]) -> None:
        ch.pelvis_h[sl], ch.pelvis_pitch[sl], ch.pelvis_roll[sl] = values["h"], values["pitch"], values["roll"]
        ch.trunk_flex[sl], ch.head_pitch[sl], ch.arm_rest[sl] = values["flex"], values["head"], values["arm"]

    for i, b in enumerate(bouts):
        end = b.end if i < len(bouts) - 1 else t[-1] + 1.0
        start = b.start if i > 0 else t[0] - 1.0
        sl = slice(int(np.searchsorted(t, start)), int(np.searchsorted(t, end)))
        tt = t[sl] - b.start  # time into the bout (s)
        d = b.duration
        lab = b.label
        s = np.clip(tt / d, 0.0, 1.0)
        bump = np.sin(np.pi * s)
        put(sl, state.blend(state, s))
        if lab in ("walk", "run", "stairs_up", "stairs_down"):
            ch.moving[sl] = 1.0
            ch.still[sl] = 0.0
            if lab == "walk":
                ch.speed[sl] = subject.walk_speed * b.params.get("speed_scale", 1.0)
                ch.gait_amp[sl] = subject.bounce_m
                ch.cadence[sl] = subject.cadence_hz
            elif lab == "run":
                ch.speed[sl] = subject.run_speed
                ch.gait_amp[sl] = subject.run_bounce_m
                ch.cadence[sl] = subject.run_cadence_hz
                ch.pelvis_pitch[sl] += 0.05
                ch.trunk_flex[sl] += 0.10  # leaning into the run
                ch.head_pitch[sl] += -0.07
            else:
                c = stair_cadence(subject)
                up = lab == "stairs_up"
                ch.speed[sl] = STAIR_TREAD * c
                ch.elev_rate[sl] = (STAIR_RISE if up else -STAIR_RISE) * c
                ch.gait_amp[sl] = subject.bounce_m * 1.3
                ch.cadence[sl] = c
                ch.trunk_flex[sl] += 0.12 if up else 0.05
                ch.head_pitch[sl] += 0.10 if up else 0.30  # watching the steps
        elif lab == "turn":
            for (ts, td, angle) in b.params["turns"]:
                x = (tt - ts) / td
                inside = (x >= 0) & (x <= 1)
                # raised-cosine yaw rate whose integral over the turn is ``angle``
                ch.yaw_rate[sl] += np.where(inside, angle / td * (1 - np.cos(2 * np.pi * x)), 0.0)
                ch.gait_amp[sl] += np.where(inside, 0.4 * subject.bounce_m, 0.0)
                ch.still[sl] = np.where(inside, 0.0, ch.still[sl])
            ch.cadence[sl] = subject.cadence_hz
        elif lab in ("sit_down", "stand_up", "lie_down", "get_up"):
            target = {"sit_down": seated, "stand_up": postures["standing"], "get_up": seated,
                      "lie_down": postures[b.params.get("pose", "back")]}[lab]
            v = state.blend(target, s)
            if lab == "stand_up" and b.params.get("from_floor"):
                # pitch/roll recover first (getting onto the knees), then the rise
                early = state.blend(target, np.clip(tt / (0.6 * d), 0.0, 1.0))
                v.update(pitch=early["pitch"] + 0.4 * bump, roll=early["roll"], flex=early["flex"] + 0.3 * bump)
            elif lab in ("sit_down", "stand_up"):
                # hips flex and the pelvis tips forward mid-way; the head keeps looking ahead
                v.update(pitch=v["pitch"] + 0.25 * bump, flex=v["flex"] + 0.45 * bump, head=v["head"] - 0.3 * bump)
            else:  # lying down / sitting up: the trunk swings through, propped on an arm
                v.update(flex=v["flex"] + 0.2 * bump)
            put(sl, v)
            ch.still[sl] = 0.0
            state = target
        elif lab == "lie":
            ch.still[sl] = 0.0
        elif lab == "fall":
            on, tf = b.params["onset"], b.params["fall_s"]
            x = np.clip((tt - on) / tf, 0.0, 1.0)
            q = x * x  # accelerating collapse, stopped by the floor at x = 1 (the impact)
            direction = b.params["direction"]
            tgt = _Posture(FLOOR_PELVIS_HEIGHT)
            v = 0.0
            if direction == "forward":
                tgt.pitch, tgt.head, v = 1.35, -0.6, 1.2
            elif direction == "backward":
                tgt.pitch, tgt.head, v = -1.3, 0.4, -0.6
            else:
                tgt.roll = 1.35 if direction == "right" else -1.35
                ch.lateral_speed[sl] = np.where((x > 0) & (x < 1), (-0.8 if direction == "right" else 0.8), 0.0)
            put(sl, {k: getattr(state, k) + (getattr(tgt, k) - getattr(state, k)) * q
                     for k in ("h", "pitch", "roll", "flex", "head", "arm")})
            ch.speed[sl] = np.where((x > 0) & (x < 1), v, 0.0)
            # a stumble step before the collapse
            ch.gait_amp[sl] = np.where(tt < on, subject.bounce_m, 0.0)
            ch.still[sl] = 0.0
            state = tgt
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
) -> Body:
    """Integrate the bouts into every body segment's pose on a ``fine_hz`` grid (session ± ``pad_s``).

    Args:
        arena: obstacles to steer around (walls and boxes); None = open ground.
        look_around: add slow random head yaw/pitch, postural sway and hand movements (off for
            scripted tests).
    """
    t0 = bouts[0].start - pad_s
    t1 = bouts[-1].end + pad_s
    dt = 1.0 / fine_hz
    n = int(math.ceil((t1 - t0) * fine_hz)) + 1
    t = t0 + np.arange(n) * dt
    dims = Dimensions.from_eye_height(subject.eye_height_m)
    ch = _fill_channels(bouts, subject, dims, t)
    sec = fine_hz  # samples per second

    speed = _smooth(ch.speed, 0.35 * sec)
    lateral = _smooth(ch.lateral_speed, 0.05 * sec)
    moving = _smooth(ch.moving, 0.3 * sec)
    gait_amp = _smooth(ch.gait_amp, 0.25 * sec)
    cadence = _smooth(ch.cadence, 0.3 * sec)
    elev_rate = _smooth(ch.elev_rate, 0.3 * sec)
    still = _smooth(ch.still, 0.3 * sec)

    # Heading: scripted turns + wander while moving + steering away from walls and boxes.
    wander = subject.wander_rad_s * _filtered_noise(rng, n, 1.5 * sec) * moving
    yaw_script = _smooth(ch.yaw_rate, 0.04 * sec)
    heading_rate = yaw_script + wander
    if arena is not None:
        heading_rate = heading_rate + _steer(t, speed, heading_rate, arena, start_xy, start_yaw, lateral)
    heading = start_yaw + np.cumsum(heading_rate) * dt

    # Gait phase advances with cadence (2 pi per step). Stairs raise the pelvis step by step: the
    # climb rate peaks once per step (push-off) and its mean is the staircase's.
    phase = 2 * np.pi * np.cumsum(cadence) * dt
    elevation = np.cumsum(elev_rate * (1.0 + 0.9 * np.cos(phase + 0.5))) * dt

    ch_, sh_ = np.cos(heading), np.sin(heading)
    x = start_xy[0] + np.cumsum(speed * ch_ - lateral * sh_) * dt
    y = start_xy[1] + np.cumsum(speed * sh_ + lateral * ch_) * dt

    # Slow look-around of the head: glances sideways (less while moving), up/down (fast and slow
    # parts: looking at the ground for a while), and small head tilts. The pitch and roll parts move
    # the horizon in the picture and gravity in the head IMU together; the pelvis does not follow.
    zero = np.zeros(n)
    look = (zero, zero, zero)
    sway = (zero, zero)
    hand = (zero, zero)
    if look_around:
        a = subject.head_look_rad
        look = (a * _filtered_noise(rng, n, 0.8 * sec) * (1.0 - 0.6 * moving),
                0.5 * a * _filtered_noise(rng, n, 0.8 * sec) + 0.6 * a * _filtered_noise(rng, n, 3.0 * sec),
                0.25 * a * _filtered_noise(rng, n, 1.5 * sec))
        # standing/seated postural sway of the pelvis (a few tenths of a degree) and hand movements
        sway = (0.006 * _filtered_noise(rng, n, 0.8 * sec) * still, 0.006 * _filtered_noise(rng, n, 0.8 * sec) * still)
        hand = (0.12 * _filtered_noise(rng, n, 0.7 * sec) * still, 0.15 * _filtered_noise(rng, n, 0.9 * sec) * still)
    sig = BodySignals(
        x=x, y=y, heading=heading,
        pelvis_z=elevation + _smooth(ch.pelvis_h, 0.02 * sec),
        pelvis_pitch=_smooth(ch.pelvis_pitch, 0.03 * sec),
        pelvis_roll=_smooth(ch.pelvis_roll, 0.03 * sec),
        trunk_flex=_smooth(ch.trunk_flex, 0.03 * sec),
        head_pitch=_smooth(ch.head_pitch, 0.03 * sec),
        phase=phase, gait=gait_amp, moving=moving,
        arm_rest=_smooth(ch.arm_rest, 0.1 * sec),
        look=look, sway=sway, hand=hand,
    )
    return pose_body(sig, dims, subject, t)


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
