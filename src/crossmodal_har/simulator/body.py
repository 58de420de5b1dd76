"""The kinematic body: rotations, one segment's trajectory, and the chain pelvis → trunk → head / arm.

One job: turning the slow posture and gait signals that :mod:`.motion` fills into the pose of every
body segment on one fine time grid, and sampling a segment's ideal IMU readings from that pose.

Frames. World: x, y horizontal, z up (m); gravity (0, 0, -9.80665) m/s^2. Every segment frame is the
body frame of a person standing upright: x forward, y left, z up (along the segment towards the head;
for the arm, from the wrist towards the shoulder). Rotations are composed as matrices, never as one
set of Euler angles, so a person lying on the back (pelvis pitched by -90°) is no singularity.

Segments (all sampled from one set of signals, so they always agree with each other):

- ``pelvis``: the belt. Path (heading, speed) + posture height + gait: vertical bob once per step
  with heel-strike harmonics, lateral sway once per stride, forward speed surge per step, pelvic
  rotation (yaw) and obliquity (roll) per stride, tilt (pitch) per step; posture tilt (posterior
  when seated; ±90° when lying).
- ``trunk``: on the pelvis, flexed at the hips (leaning forward to stand up; upright when seated),
  counter-rotating against the pelvis in gait.
- ``head``: on the neck at the top of the trunk; its orientation is the trunk's posture plus the
  head's own look-around, nod and sway (the head stabilises against the pelvis's gait rotations). The
  camera is on the head.
- ``wrist``: the left forearm: the upper arm hangs from the shoulder and swings in gait; the forearm
  rests on the lap when seated and makes small hand movements at rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np

GRAVITY = np.array([0.0, 0.0, -9.80665])  # m/s^2, world frame
STANDARD_GRAVITY = 9.80665
SEGMENTS = ("pelvis", "trunk", "head", "wrist")
# IMU sites and the segment each one reads
SITE_SEGMENT = {"head": "head", "waist": "pelvis", "wrist": "wrist"}
SITES = tuple(SITE_SEGMENT)


def rot_x(a) -> np.ndarray:
    """[..., 3, 3] rotations about x by ``a`` (rad; scalar or array)."""
    a = np.asarray(a, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def rot_y(a) -> np.ndarray:
    """[..., 3, 3] rotations about y by ``a`` (rad); positive pitch turns x (forward) downwards."""
    a = np.asarray(a, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def rot_z(a) -> np.ndarray:
    """[..., 3, 3] rotations about z by ``a`` (rad)."""
    a = np.asarray(a, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def euler_to_R(yaw, pitch, roll) -> np.ndarray:
    """[N, 3, 3] body-to-world rotations ``Rz(yaw) Ry(pitch) Rx(roll)`` (angles in rad)."""
    return mul(mul(rot_z(yaw), rot_y(pitch)), rot_x(roll))


def mul(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Batched ``A @ B`` for [..., 3, 3] (elementwise sums, no BLAS: bit-identical from run to run)."""
    return np.stack([np.stack([A[..., i, 0] * B[..., 0, j] + A[..., i, 1] * B[..., 1, j] + A[..., i, 2] * B[..., 2, j]
                               for j in range(3)], -1) for i in range(3)], -2)


def apply(R: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Batched ``R @ v`` for R [..., 3, 3], v [..., 3]."""
    return np.stack([R[..., i, 0] * v[..., 0] + R[..., i, 1] * v[..., 1] + R[..., i, 2] * v[..., 2]
                     for i in range(3)], -1)


def apply_T(R: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Batched ``R^T @ v``."""
    return np.stack([R[..., 0, i] * v[..., 0] + R[..., 1, i] * v[..., 1] + R[..., 2, i] * v[..., 2]
                     for i in range(3)], -1)


def R_to_quat(R: np.ndarray) -> np.ndarray:
    """[N, 4] unit quaternions (w, x, y, z) of rotations [N, 3, 3], signs kept continuous along N."""
    m = R
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    cands = np.stack([
        np.stack([1 + tr, m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], -1),
        np.stack([m[:, 2, 1] - m[:, 1, 2], 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2], m[:, 0, 1] + m[:, 1, 0],
                  m[:, 0, 2] + m[:, 2, 0]], -1),
        np.stack([m[:, 0, 2] - m[:, 2, 0], m[:, 0, 1] + m[:, 1, 0], 1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2],
                  m[:, 1, 2] + m[:, 2, 1]], -1),
        np.stack([m[:, 1, 0] - m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1],
                  1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], -1),
    ], 1)  # [N, 4 candidates, 4]; the candidate with the largest diagonal term is well conditioned
    diag = np.stack([1 + tr, 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2], 1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2],
                     1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], -1)
    q = cands[np.arange(len(R)), np.argmax(diag, axis=1)]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q[q[:, 0] < 0] *= -1.0
    # continuity: no sign flip between neighbours (so interpolation takes the short way)
    flips = np.concatenate([[False], np.einsum("ij,ij->i", q[1:], q[:-1]) < 0])
    sign = np.where(np.cumsum(flips) % 2 == 1, -1.0, 1.0)
    return q * sign[:, None]


def quat_to_R(q: np.ndarray) -> np.ndarray:
    """[N, 3, 3] rotations of quaternions (w, x, y, z) [N, 4] (normalised first)."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def body_rate(R: np.ndarray, dt: float) -> np.ndarray:
    """Angular velocity [N, 3] in the rotating (body) frame: ``vee(R^T dR/dt)``, central differences
    (one-sided at the ends), skew part only (so it stays a rate even with rounding)."""
    dR = np.gradient(R, dt, axis=0)
    W = np.einsum("nji,njk->nik", R, dR)
    return 0.5 * np.stack([W[:, 2, 1] - W[:, 1, 2], W[:, 0, 2] - W[:, 2, 0], W[:, 1, 0] - W[:, 0, 1]], -1)


@dataclass
class Trajectory:
    """One segment's pose on a fine uniform time grid, with its derivatives.

    Attributes:
        t: [N] time (s, video clock), uniform at ``rate_hz``.
        pos: [N, 3] segment (sensor) position (m, world).
        quat: [N, 4] segment-to-world rotation as unit quaternions (w, x, y, z), sign-continuous.
        acc: [N, 3] linear acceleration (m/s^2, world; gravity not included).
        omega: [N, 3] angular velocity in the segment frame (rad/s).
    """

    t: np.ndarray
    pos: np.ndarray
    quat: np.ndarray
    acc: np.ndarray
    omega: np.ndarray

    @classmethod
    def from_pose(cls, t: np.ndarray, pos: np.ndarray, R: np.ndarray) -> "Trajectory":
        dt = float(t[1] - t[0])
        vel = np.gradient(pos, dt, axis=0)
        return cls(t=t, pos=pos, quat=R_to_quat(R), acc=np.gradient(vel, dt, axis=0), omega=body_rate(R, dt))

    @property
    def rate_hz(self) -> float:
        return float(1.0 / (self.t[1] - self.t[0]))

    @property
    def R(self) -> np.ndarray:
        """[N, 3, 3] segment-to-world rotations on the grid."""
        return quat_to_R(self.quat)

    def _interp(self, arr: np.ndarray, times: np.ndarray) -> np.ndarray:
        times = np.asarray(times, dtype=np.float64)
        return np.stack([np.interp(times, self.t, arr[:, k]) for k in range(arr.shape[1])], axis=-1)

    def pose_at(self, times: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Position [n, 3] (m) and segment-to-world rotation [n, 3, 3] at ``times`` (s)."""
        return self._interp(self.pos, times), quat_to_R(self._interp(self.quat, times))

    def specific_force_and_rate(self, times: np.ndarray, R_mount: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Ideal IMU readings at ``times``: specific force (m/s^2) and angular rate (rad/s), sensor frame.

        ``f = R_s^T (a - g)`` with ``R_s = R_segment R_mount``, so a sensor at rest reads +9.81 m/s^2
        along its world-up axis; ``omega_s = R_mount^T omega_segment``.
        """
        _, R = self.pose_at(times)
        a = self._interp(self.acc, times) - GRAVITY
        f_seg = apply_T(R, a)
        w_seg = self._interp(self.omega, times)
        Rm = np.broadcast_to(np.asarray(R_mount, dtype=np.float64), R.shape)
        return apply_T(Rm, f_seg), apply_T(Rm, w_seg)


@dataclass
class Body:
    """Every segment's :class:`Trajectory` on one grid; the camera is the head's."""

    segments: Dict[str, Trajectory]

    @property
    def camera(self) -> Trajectory:
        return self.segments["head"]

    @property
    def t(self) -> np.ndarray:
        return self.camera.t

    def site(self, site: str) -> Trajectory:
        """The segment an IMU at ``site`` (head, waist, wrist) reads."""
        return self.segments[SITE_SEGMENT[site]]

    def pose_at(self, times: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """The camera's pose (see :meth:`Trajectory.pose_at`)."""
        return self.camera.pose_at(times)


@dataclass
class Dimensions:
    """Segment lengths of one person (m), from the standing eye height."""

    pelvis_h: float  # belt height standing
    trunk: float  # belt to the base of the neck
    neck: float  # base of the neck to the eyes, vertically
    eye_forward: float  # eyes ahead of the neck's axis
    shoulder_width: float  # half the distance between the shoulders
    upper_arm: float
    forearm: float

    @classmethod
    def from_eye_height(cls, eye_h: float) -> "Dimensions":
        stature = eye_h / 0.936  # eye height is ~93.6 % of stature (anthropometric tables)
        pelvis_h = 0.57 * stature  # belt at the iliac crest
        neck = 0.105 * stature
        return cls(pelvis_h=pelvis_h, trunk=eye_h - pelvis_h - neck, neck=neck, eye_forward=0.08,
                   shoulder_width=0.11 * stature, upper_arm=0.17 * stature, forearm=0.16 * stature)


@dataclass
class BodySignals:
    """Slow and gait signals on the fine grid that pose the body (all [N]; angles in rad)."""

    x: np.ndarray  # pelvis path in the world (m)
    y: np.ndarray
    heading: np.ndarray  # direction of travel / facing (rad)
    pelvis_z: np.ndarray  # belt height above the floor incl. stairs' elevation, without gait (m)
    pelvis_pitch: np.ndarray  # posture tilt (+ forward; -pi/2 lying on the back)
    pelvis_roll: np.ndarray  # posture roll (+ pi/2 lying on the left side... see motion)
    trunk_flex: np.ndarray  # trunk pitch relative to the pelvis (+ leaning forward)
    head_pitch: np.ndarray  # head pitch relative to the trunk from the activity (+ looking down)
    phase: np.ndarray  # gait phase: 2 pi per step
    gait: np.ndarray  # gait amplitude: vertical bob (m, fundamental) of the pelvis
    moving: np.ndarray  # 0..1, walking-like activity
    arm_rest: np.ndarray  # 0 hanging arm .. 1 forearm on the lap (seated)
    look: Tuple[np.ndarray, np.ndarray, np.ndarray]  # head look-around yaw, pitch, roll (rad)
    sway: Tuple[np.ndarray, np.ndarray]  # standing postural sway of the pelvis: pitch, roll (rad)
    hand: Tuple[np.ndarray, np.ndarray]  # small hand movements at rest: forearm pitch, roll (rad)


def pose_body(sig: BodySignals, dims: Dimensions, gait_shape, t: np.ndarray) -> Body:
    """Pose every segment from ``sig`` and return their trajectories.

    ``t`` is the uniform grid the signals are sampled on (s). ``gait_shape`` is the person's :class:`~.subjects.SubjectParams` (its gait_* attributes: harmonic
    content of the bob, forward surge, pelvic rotation, obliquity, tilt, arm swing, head sway).
    """
    g = gait_shape
    ph, amp = sig.phase, sig.gait
    rel = amp / max(g.bounce_m, 1e-6)  # 1 at the person's walking bob
    stride = 0.5 * ph
    # --- pelvis: gait on top of the path and the posture
    bob_fund = amp * -np.cos(ph)
    # heel strikes: the 2nd and 3rd harmonics, and a tail of higher ones (their acceleration falling
    # by 0.65 per harmonic): an impact is broadband, so its power above 3.5 Hz does not hinge on cadence
    heel = g.gait_h2 * np.cos(2 * ph + g.gait_h2_phase) + g.gait_h3 * np.cos(3 * ph + g.gait_h3_phase)
    for k in (4, 5, 6):
        heel = heel + g.gait_h3 * 9.0 * 0.65 ** (k - 3) / k ** 2 * np.cos(k * ph + (k - 2) * g.gait_h3_phase)
    bob = bob_fund + amp * heel
    lateral = g.gait_lateral * rel * np.sin(stride)  # m, to the left
    surge = g.gait_surge * rel * np.sin(ph + 0.6) / (2 * np.pi * max(g.cadence_hz, 0.5))  # m, forward
    rot = g.gait_rotation * rel * np.sin(stride)
    obliq = g.gait_obliquity * rel * np.sin(stride + 0.5 * np.pi)
    tilt = g.gait_tilt * rel * np.cos(ph + 0.4)
    ch, sh = np.cos(sig.heading), np.sin(sig.heading)
    x = sig.x + ch * surge - sh * lateral
    y = sig.y + sh * surge + ch * lateral
    pel_base = np.stack([sig.x - sh * lateral, sig.y + ch * lateral, sig.pelvis_z + bob_fund], -1)
    pel_pos = np.stack([x, y, sig.pelvis_z + bob], -1)
    R_heading = rot_z(sig.heading)
    R_posture = mul(rot_y(sig.pelvis_pitch), rot_x(sig.pelvis_roll))
    R_pelvis = mul(mul(R_heading, R_posture), mul(mul(rot_z(rot), rot_y(tilt + sig.sway[0])), rot_x(obliq + sig.sway[1])))
    # --- trunk: flexed at the hips, counter-rotating in gait; based on the pelvis path without the
    # heel-strike harmonics (the spine damps them before they reach the head)
    R_trunk_post = mul(R_posture, rot_y(sig.trunk_flex))
    R_trunk = mul(mul(R_heading, R_trunk_post), mul(rot_z(-0.6 * rot), rot_x(0.3 * obliq)))
    neck = pel_base + apply(R_trunk, np.broadcast_to([0.0, 0.0, dims.trunk], pel_base.shape))
    # --- head: the trunk's posture (not its gait rotations) + the head's own motion
    look_y, look_p, look_r = sig.look
    head_local = mul(mul(rot_z(look_y + 0.3 * g.sway_rad * rel * np.sin(stride)),
                         rot_y(sig.head_pitch + look_p + 1.5 * amp * np.cos(ph))),
                     rot_x(look_r + g.sway_rad * rel * np.sin(stride + 0.3)))
    R_head = mul(mul(R_heading, R_trunk_post), head_local)
    eye = neck + apply(R_head, np.broadcast_to([dims.eye_forward, 0.0, dims.neck], neck.shape))
    # --- left arm: upper arm swings from the shoulder (opposite to the left leg), forearm on the lap
    # when seated (elbow bent ~80°), small hand movements at rest
    swing = g.arm_swing * sig.moving * np.sin(stride + np.pi)
    shoulder = neck + apply(R_trunk, np.broadcast_to([0.0, dims.shoulder_width, -0.03], neck.shape))
    R_upper = mul(R_trunk, rot_y(-swing * 0.8 + 0.15 * sig.arm_rest))
    elbow_flex = sig.arm_rest * 1.4 + 0.25 * sig.moving + sig.hand[0]
    R_fore = mul(mul(R_upper, rot_y(-elbow_flex - swing * 0.3)), rot_x(sig.hand[1]))
    elbow = shoulder + apply(R_upper, np.broadcast_to([0.0, 0.0, -dims.upper_arm], neck.shape))
    wrist = elbow + apply(R_fore, np.broadcast_to([0.0, 0.0, -dims.forearm], neck.shape))
    segs = {
        "pelvis": Trajectory.from_pose(t, pel_pos, R_pelvis),
        "trunk": Trajectory.from_pose(t, neck, R_trunk),
        "head": Trajectory.from_pose(t, eye, R_head),
        "wrist": Trajectory.from_pose(t, wrist, R_fore),
    }
    return Body(segs)
