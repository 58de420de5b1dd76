"""A small numpy ray caster: textured ground plane, arena walls, box pillars, sky with a sun.

Every pixel's ray is intersected with the ground (z = 0), the four walls of a square arena and the
nearest boxes, vectorised over pixels. Textures are procedural (integer hashes of world
coordinates), so the picture depends on where the camera is and where it looks: ground tiles flow
past when walking, the horizon tilts with roll and moves with pitch and height, the sun and the
walls' colours give the heading.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

_BIG = np.float32(1e9)


@dataclass
class Look:
    """How a scene is painted (colours, sky, sun, texture salt), separate from its geometry, so
    that one pool of looks can be shared by every subject (appearance then says nothing about
    who is moving)."""

    wall_colors: np.ndarray  # [4, 3]
    ground_colors: np.ndarray  # [3, 3]
    box_palette: np.ndarray  # [8, 3]
    sky_horizon: np.ndarray
    sky_zenith: np.ndarray
    sun_dir: np.ndarray
    salt: int


@dataclass
class Scene:
    """A procedural world.

    Attributes:
        half_size: the arena is ``[-half_size, half_size]^2`` (m).
        wall_height: height of the arena walls (m).
        boxes: [K, 5] float32 xmin, xmax, ymin, ymax, zmax (m); every box stands on the ground.
        box_colors: [K, 3] float32 RGB in [0, 1].
        wall_colors: [4, 3] colours of the walls at +x, -x, +y, -y.
        ground_colors: [3, 3] ground palette.
        sky_horizon, sky_zenith: [3] sky colours; sun_dir: [3] unit vector to the sun.
        salt: integer mixed into the texture hashes.
    """

    half_size: float
    wall_height: float
    boxes: np.ndarray
    box_colors: np.ndarray
    wall_colors: np.ndarray
    ground_colors: np.ndarray
    sky_horizon: np.ndarray
    sky_zenith: np.ndarray
    sun_dir: np.ndarray
    salt: int
    box_tone: Optional[np.ndarray] = None  # [K] index into a look's box palette
    box_shade: Optional[np.ndarray] = None  # [K] brightness factor of each box

    def to_dict(self) -> dict:
        return {"half_size": self.half_size, "wall_height": self.wall_height,
                "n_boxes": int(len(self.boxes)), "salt": self.salt}

    def with_look(self, look: Look) -> "Scene":
        """The same geometry painted with ``look``."""
        tone = self.box_tone if self.box_tone is not None else np.zeros(len(self.boxes), dtype=np.int64)
        shade = self.box_shade if self.box_shade is not None else np.ones(len(self.boxes), dtype=np.float32)
        return dataclasses.replace(
            self, box_colors=(look.box_palette[tone] * shade[:, None]).astype(np.float32),
            wall_colors=look.wall_colors, ground_colors=look.ground_colors, sky_horizon=look.sky_horizon,
            sky_zenith=look.sky_zenith, sun_dir=look.sun_dir, salt=look.salt)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    import colorsys

    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def make_look(rng: np.random.Generator) -> Look:
    """Draw a random look: wall, ground, pillar and sky colours, sun direction, texture salt."""
    base_h = rng.uniform()
    wall_colors = np.stack([_hsv(base_h + i / 4 + rng.uniform(-0.05, 0.05), rng.uniform(0.35, 0.7),
                                 rng.uniform(0.55, 0.9)) for i in range(4)])
    gh = rng.uniform()
    ground_colors = np.stack([_hsv(gh + rng.uniform(-0.12, 0.12), rng.uniform(0.2, 0.6), rng.uniform(0.35, 0.7))
                              for _ in range(3)])
    box_palette = np.stack([_hsv(rng.uniform(), rng.uniform(0.3, 0.9), rng.uniform(0.6, 0.95)) for _ in range(8)])
    sun_az = rng.uniform(0, 2 * math.pi)
    sun_el = rng.uniform(0.15, 0.6)
    sun = np.array([math.cos(sun_az) * math.cos(sun_el), math.sin(sun_az) * math.cos(sun_el), math.sin(sun_el)],
                   dtype=np.float32)
    return Look(
        wall_colors=wall_colors.astype(np.float32), ground_colors=ground_colors.astype(np.float32),
        box_palette=box_palette.astype(np.float32),
        sky_horizon=_hsv(rng.uniform(0.5, 0.65), rng.uniform(0.1, 0.3), 0.95),
        sky_zenith=_hsv(rng.uniform(0.55, 0.68), rng.uniform(0.4, 0.7), rng.uniform(0.6, 0.85)),
        sun_dir=sun, salt=int(rng.integers(0, 2**31 - 1)),
    )


def make_scene(rng: np.random.Generator, half_size: float | None = None, n_boxes: int | None = None) -> Scene:
    """Draw a random arena: size, palette, sun direction and pillars (kept off the centre).

    ``Scene.with_look`` repaints the same geometry with another :class:`Look`.
    """
    L = float(half_size if half_size is not None else rng.uniform(14.0, 22.0))
    k = int(n_boxes if n_boxes is not None else rng.integers(int(L * 1.2), int(L * 2.2)))
    boxes = []
    while len(boxes) < k:
        cx, cy = rng.uniform(-L + 2.0, L - 2.0, 2)
        if math.hypot(cx, cy) < 3.0:  # the start position stays free
            continue
        w, d = rng.uniform(0.4, 2.0, 2)
        hgt = rng.choice([rng.uniform(0.5, 1.2), rng.uniform(1.8, 4.0)])
        boxes.append([cx - w / 2, cx + w / 2, cy - d / 2, cy + d / 2, hgt])
    base_h = rng.uniform()
    box_colors = np.stack([_hsv(rng.uniform(), rng.uniform(0.3, 0.9), rng.uniform(0.45, 0.95)) for _ in range(k)])
    wall_colors = np.stack([_hsv(base_h + i / 4 + rng.uniform(-0.05, 0.05), rng.uniform(0.35, 0.7),
                                 rng.uniform(0.55, 0.9)) for i in range(4)])
    gh = rng.uniform()
    ground_colors = np.stack([_hsv(gh + rng.uniform(-0.12, 0.12), rng.uniform(0.2, 0.6), rng.uniform(0.35, 0.7))
                              for _ in range(3)])
    sun_az = rng.uniform(0, 2 * math.pi)
    sun_el = rng.uniform(0.15, 0.6)
    sun = np.array([math.cos(sun_az) * math.cos(sun_el), math.sin(sun_az) * math.cos(sun_el), math.sin(sun_el)],
                   dtype=np.float32)
    tone = rng.integers(0, 8, k)
    shade = rng.uniform(0.7, 1.0, k).astype(np.float32)
    return Scene(
        box_tone=tone, box_shade=shade,
        half_size=L, wall_height=float(rng.uniform(2.5, 4.5)),
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 5), box_colors=box_colors.astype(np.float32),
        wall_colors=wall_colors.astype(np.float32), ground_colors=ground_colors.astype(np.float32),
        sky_horizon=_hsv(rng.uniform(0.5, 0.65), rng.uniform(0.1, 0.3), 0.95),
        sky_zenith=_hsv(rng.uniform(0.55, 0.68), rng.uniform(0.4, 0.7), rng.uniform(0.6, 0.85)),
        sun_dir=sun, salt=int(rng.integers(0, 2**31 - 1)),
    )


def _hash01(ix: np.ndarray, iy: np.ndarray, salt: int) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) per integer cell (float32)."""
    h = ix.astype(np.int64) * 374761393 + iy.astype(np.int64) * 668265263 + (salt & 0x7FFFFFFF)
    h = (h ^ (h >> 13)) * 1274126177
    h = h ^ (h >> 16)
    return ((h & 0xFFFF).astype(np.float32)) * np.float32(1.0 / 65536.0)


class Renderer:
    """Renders ``size x size`` RGB frames of a :class:`Scene` from a camera pose.

    The camera looks along body +x with body +z up; pixel (row v, column u) sees the body direction
    ``(1, -(u - c)/f, -(v - c)/f)`` with focal length ``f = (size / 2) / tan(hfov / 2)`` pixels.
    """

    def __init__(self, scene: Scene, size: int = 64, hfov_deg: float = 90.0, max_boxes: int = 16,
                 fog_m: float = 45.0):
        self.scene = scene
        self.size = int(size)
        self.focal = (size / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
        c = (size - 1) / 2.0
        v, u = np.mgrid[0:size, 0:size].astype(np.float64)
        d = np.stack([np.ones_like(u), -(u - c) / self.focal, -(v - c) / self.focal], axis=-1).reshape(-1, 3)
        self.dirs_body = (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)
        self._dirs_T = np.ascontiguousarray(self.dirs_body.T)  # [3, P]
        self._arange = np.arange(size * size)
        self.max_boxes = max_boxes
        self.fog_m = fog_m
        b = scene.boxes
        self._bmin = np.stack([b[:, 0], b[:, 2], np.zeros(len(b), np.float32)], axis=-1)
        self._bmax = np.stack([b[:, 1], b[:, 3], b[:, 4]], axis=-1)
        self._bcen = 0.5 * (self._bmin + self._bmax)
        self._brad = 0.5 * np.linalg.norm(self._bmax - self._bmin, axis=1)
        self._cos_half_diag = math.cos(math.atan(math.sqrt(2) * math.tan(math.radians(hfov_deg) / 2)))

    def _visible_boxes(self, o: np.ndarray, fwd: np.ndarray) -> np.ndarray:
        rel = self._bcen - o
        dist = np.linalg.norm(rel, axis=1)
        # keep boxes in the view cone (widened by their radius) and not hidden in fog
        cosang = (rel[:, 0] * fwd[0] + rel[:, 1] * fwd[1] + rel[:, 2] * fwd[2]) / np.maximum(dist, 1e-6)
        sin_margin = np.clip(self._brad / np.maximum(dist, 1e-6), 0, 1)
        cone = cosang > (self._cos_half_diag - sin_margin - 0.05)
        keep = (cone | (dist < self._brad + 0.5)) & (dist < 3.0 * self.fog_m)
        idx = np.nonzero(keep)[0]
        if len(idx) > self.max_boxes:
            idx = idx[np.argsort(dist[idx])[: self.max_boxes]]
        return idx

    def render(self, pos: np.ndarray, R: np.ndarray) -> np.ndarray:
        """One frame [size, size, 3] uint8 from camera position ``pos`` (m) and rotation ``R`` (body→world).

        Every surface is shaded for every pixel and the nearest is selected arithmetically: with
        4096 pixels, boolean-masked numpy indexing costs more than the extra arithmetic.
        """
        sc = self.scene
        f32 = np.float32
        # A lying body reaches about a metre from where it lay down: a head against a wall is drawn
        # from just inside it (the walls are the arena's edge; the IMU's physics is not touched).
        edge = float(sc.half_size) - 0.05
        o = np.asarray([min(max(float(pos[0]), -edge), edge), min(max(float(pos[1]), -edge), edge), pos[2]],
                       dtype=f32)
        Rm = np.asarray(R, dtype=f32)
        # [3, P] world ray directions. Written out instead of ``Rm @ dirs``: BLAS may pick a
        # different kernel from call to call, and 1-ulp differences would flip texture cells.
        d0, d1, d2 = self._dirs_T
        D = np.stack([Rm[k, 0] * d0 + Rm[k, 1] * d1 + Rm[k, 2] * d2 for k in range(3)])
        D += (D == 0) * f32(1e-7)
        dx, dy, dz = D
        ox, oy, oz = (f32(v) for v in o)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            inv = f32(1.0) / D
            # ground z = 0 (seen only from above)
            t_ground = -oz * inv[2]
            t_ground = t_ground + _BIG * (t_ground <= 0) if oz > 0 else np.full_like(dz, _BIG)
            # arena walls (the camera is inside the arena)
            L = f32(sc.half_size)
            tx = (np.copysign(L, dx) - ox) * inv[0]
            ty = (np.copysign(L, dy) - oy) * inv[1]
            wall_is_x = tx < ty
            t_wall = np.minimum(tx, ty)
            t_wall = t_wall + _BIG * ((oz + t_wall * dz) >= sc.wall_height)
            # boxes: slab test against the visible ones
            bidx = self._visible_boxes(o, Rm[:, 0])
            ar = self._arange
            if len(bidx):
                lo = self._bmin[bidx] - o
                hi = self._bmax[bidx] - o
                a = lo[:, 0:1] * inv[0]
                b = hi[:, 0:1] * inv[0]
                nx, fx = np.minimum(a, b), np.maximum(a, b)
                a = lo[:, 1:2] * inv[1]
                b = hi[:, 1:2] * inv[1]
                ny, fy = np.minimum(a, b), np.maximum(a, b)
                a = lo[:, 2:3] * inv[2]
                b = hi[:, 2:3] * inv[2]
                nz, fz = np.minimum(a, b), np.maximum(a, b)
                tnear = np.maximum(np.maximum(nx, ny), nz)
                tfar = np.minimum(np.minimum(fx, fy), fz)
                tb = tnear + _BIG * ((tnear > tfar) | (tnear <= f32(1e-3)))
                kbest = tb.argmin(axis=0)
                t_box = tb[kbest, ar]
                face_z = nz[kbest, ar] >= t_box  # top face
                face_x = (nx[kbest, ar] >= t_box) & ~face_z
                box_k = bidx[kbest]
            else:
                t_box = np.full_like(dz, _BIG)
                face_z = face_x = np.zeros(dz.shape, dtype=bool)
                box_k = np.zeros(dz.shape, dtype=np.int64)
        is_ground = (t_ground <= t_wall) & (t_ground <= t_box)
        is_wall = ~is_ground & (t_wall <= t_box)
        t = np.minimum(np.minimum(t_ground, t_wall), t_box)
        is_sky = t >= f32(1e8)
        is_box = ~(is_ground | is_wall | is_sky)
        is_wall &= ~is_sky
        is_ground &= ~is_sky
        t = np.minimum(t, f32(1e4))
        hx = ox + t * dx
        hy = oy + t * dy
        hz = oz + t * dz

        # sky: horizon→zenith gradient, a sun glow and a faint azimuthal band (heading cue)
        elev = np.clip(dz, 0.0, 1.0) ** f32(0.6)
        sd = sc.sun_dir
        sun = np.clip(sd[0] * dx + sd[1] * dy + sd[2] * dz, 0.0, 1.0) ** 12
        az_band = f32(0.06) * np.sin(3 * np.arctan2(dy, dx) + f32(sc.salt % 7)) * (1 - elev)
        sky = (sc.sky_horizon[:, None] + (sc.sky_zenith - sc.sky_horizon)[:, None] * elev) * (1 + az_band) \
            + f32(0.6) * sun

        # ground: 5 m patches (palette), 1 m tiles with grout, a fine checker near the camera
        fx_, fy_ = np.floor(hx), np.floor(hy)
        patch = _hash01(np.floor(hx * f32(0.2)), np.floor(hy * f32(0.2)), sc.salt)
        pal = sc.ground_colors[np.minimum((patch * 3).astype(np.int64), 2)].T  # [3, P]
        tile = _hash01(fx_, fy_, sc.salt + 1)
        grout = ((hx - fx_) < 0.06) | ((hy - fy_) < 0.06)
        checker = (fx_ + np.floor(hx * 4) + np.floor(hy * 4)) % 2
        near = np.exp(-t * f32(0.1))
        ground = pal * (1 + near * (f32(0.45) * (tile - f32(0.5)) - f32(0.35) * grout)
                        + np.exp(-t * f32(0.25)) * f32(0.12) * (checker - f32(0.5)))

        # walls: a colour per wall, 1.5 m panels, a dark rail at hip height
        wid = np.where(wall_is_x, (dx <= 0).astype(np.int64), 2 + (dy <= 0))
        s = np.where(wall_is_x, hy, hx) * f32(1 / 1.5)
        panel = _hash01(np.floor(s), wid, sc.salt + 2)
        seam = (s - np.floor(s)) < 0.06
        wshade = (f32(0.75) + f32(0.35) * panel - f32(0.35) * ((hz > 0.9) & (hz < 1.15))
                  - np.exp(-t * f32(1 / 15)) * f32(0.3) * seam + f32(0.1) * (hz > 2.2))
        wall = sc.wall_colors[wid].T * wshade

        # boxes: own colour, shaded by face, horizontal stripes on the sides
        side_pos = np.where(face_x, dx, dy) > 0
        fshade = np.where(face_z, f32(1.1), np.where(face_x, np.where(side_pos, f32(0.95), f32(0.75)),
                                                     np.where(side_pos, f32(0.85), f32(0.6))))
        stripe = (np.floor(hz * f32(2.5)) % 2) * ~face_z
        box = sc.box_colors[box_k].T * (fshade * (f32(0.9) + f32(0.15) * stripe))

        col = sky * is_sky + ground * is_ground + wall * is_wall + box * is_box
        # distance fog to the horizon colour (also hides far-field aliasing)
        fog = (1 - np.exp(-t * f32(1 / self.fog_m))) * ~is_sky
        col = col * (1 - fog) + sc.sky_horizon[:, None] * fog
        img = np.clip(col * f32(255) + f32(0.5), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(img.T).reshape(self.size, self.size, 3)
