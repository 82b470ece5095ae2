"""SynthIndoor: procedurally generated indoor rooms with exact dense ground truth.

There is no NYUDv2 on this machine, so the project renders its own NYUD-like data. Each sample is
one random room (bedroom, living room, kitchen, office or bathroom) furnished with boxes and
vertical cylinders labelled with the 40 NYUD classes (``mtlsi_edge.tasks.NYUD_CLASSES``), seen
from a random camera pose inside the room, and rendered by vectorised ray casting in numpy:

- the room is a box seen from inside (walls, floor, ceiling): one analytic exit test for all rays;
- every furniture primitive is an axis-aligned box (slab method), a box rotated about the vertical
  axis (rays transformed into the box frame) or a vertical cylinder; each primitive is tested only
  on the rays of its projected screen rectangle and skipped when that rectangle is already covered
  by nearer hits; the nearest hit wins;
- normals, textures (procedural stripes, tiles, wood planks, fabric, drawers, books, pictures,
  windows, screens...) and Lambertian shading (ambient + a ceiling point light + a directional
  light, soft room-corner occlusion and contact shadows) are evaluated once on the visible hits.

Ground truth per image (``SynthSample``), ``H×W`` at the requested size:

- ``image_rgb``: ``H×W×3`` uint8 RGB;
- ``semseg``: ``H×W`` uint8 NYUD-40 class index 0..39 (255 where no surface was hit, which does
  not happen inside the closed room);
- ``depth``: ``H×W`` float32 metric z-depth along the optical axis (as NYUD), > 0;
- ``normals``: ``H×W×3`` float32 unit surface normals in the camera frame (OpenCV: x right,
  y down, z forward), oriented towards the camera (``n · ray < 0``);
- ``boundary``: ``H×W`` uint8 0/1, one pixel wide, on the nearer side of every label, instance or
  depth discontinuity (relative jump > 5 % between different surfaces);
- ``intrinsics``: ``3×3`` float32 pinhole matrix (NYU-like: fx = fy = 518.8·W/640, principal point
  at the image centre).

``render_sample(seed)`` is deterministic; ``write_dataset`` writes the NYUD "NYUDv2" layout read by
``mtlsi_edge.data.datasets.NYUDDataset``; ``render_walkthrough`` writes an mp4 camera loop through
one room.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from mtlsi_edge.tasks import IGNORE_INDEX, NYUD_CLASSES

__all__ = [
    "SynthSample",
    "render_sample",
    "write_dataset",
    "render_walkthrough",
    "sample_seed",
    "intrinsics",
    "encode_normals",
    "ROOM_TYPES",
]

_C = {name: i for i, name in enumerate(NYUD_CLASSES)}
ROOM_TYPES = ("bedroom", "living", "kitchen", "office", "bathroom")
_ROOM_P = (0.26, 0.26, 0.18, 0.2, 0.1)
_FX_640 = 518.8  # NYU Kinect focal length at 640×480

# texture codes
(
    _T_PLAIN, _T_STRIPES, _T_TILES, _T_FABRIC, _T_WOOD, _T_DRAWERS, _T_DOORS, _T_DOOR,
    _T_PICTURE, _T_WINDOW, _T_BOOKS, _T_SCREEN, _T_BOARD, _T_BLINDS, _T_CURTAIN,
) = range(15)  # fmt: skip

_BOX, _CYL = 0, 1
_F32 = np.float32

# base colours (RGB 0..255) by material
_PAL: dict[str, list[tuple[int, int, int]]] = {
    "wall": [(236, 232, 222), (222, 216, 200), (204, 212, 216), (232, 222, 200), (212, 202, 190),
             (194, 204, 182), (242, 242, 238), (218, 194, 172), (186, 196, 210), (230, 210, 205)],
    "ceiling": [(242, 242, 240), (232, 230, 224), (236, 236, 232)],
    "floor_wood": [(150, 105, 70), (172, 128, 86), (122, 86, 56), (186, 150, 110), (160, 120, 95)],
    "floor_tile": [(205, 203, 196), (172, 166, 158), (140, 132, 122), (215, 208, 190)],
    "carpet": [(122, 112, 102), (92, 97, 112), (152, 142, 126), (112, 62, 56), (80, 90, 80)],
    "wood": [(142, 96, 60), (112, 76, 46), (176, 136, 96), (92, 62, 42), (202, 172, 132),
             (160, 110, 70)],
    "white": [(232, 232, 226), (222, 220, 212), (240, 238, 232)],
    "grey": [(120, 122, 126), (150, 150, 152), (90, 92, 96)],
    "dark": [(42, 42, 44), (30, 32, 36), (58, 54, 50)],
    "fabric": [(152, 42, 42), (62, 82, 122), (92, 112, 82), (202, 192, 172), (112, 102, 96),
               (62, 62, 66), (172, 132, 92), (132, 82, 122), (52, 102, 112), (182, 152, 72)],
    "sheet": [(242, 242, 236), (222, 228, 238), (236, 216, 202), (202, 212, 226), (232, 226, 206)],
    "metal": [(182, 184, 188), (152, 152, 158), (200, 200, 204)],
    "cardboard": [(182, 142, 96), (166, 126, 82), (196, 160, 112)],
    "bright": [(202, 52, 42), (42, 102, 182), (52, 152, 72), (222, 182, 42), (122, 62, 152),
               (232, 122, 42), (42, 162, 172), (182, 62, 112)],
    "sky": [(176, 210, 240), (200, 224, 245), (220, 232, 240), (160, 196, 230)],
    "plant": [(52, 112, 42), (72, 132, 52), (42, 92, 52)],
}  # fmt: skip


@dataclass
class SynthSample:
    """One rendered view with exact ground truth (see module docstring for conventions).

    image_rgb: ``H×W×3`` uint8 RGB. semseg: ``H×W`` uint8 0..39, 255 = none. depth: ``H×W``
    float32 metres (z-depth). normals: ``H×W×3`` float32 unit camera-frame normals facing the
    camera. boundary: ``H×W`` uint8 0/1. intrinsics: ``3×3`` float32.
    """

    image_rgb: np.ndarray
    semseg: np.ndarray
    depth: np.ndarray
    normals: np.ndarray
    boundary: np.ndarray
    intrinsics: np.ndarray = field(default_factory=lambda: np.eye(3, dtype=_F32))


def intrinsics(size: tuple[int, int]) -> np.ndarray:
    """NYU-like pinhole matrix ``3×3`` float32 for ``size = (H, W)``: fx = fy = 518.8·W/640."""
    h, w = size
    f = _FX_640 * w / 640.0
    return np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]], _F32)


def sample_seed(seed: int, i: int) -> int:
    """Seed of sample ``i`` of a dataset generated with ``seed`` (``seed·1000003 + i``)."""
    return int(seed) * 1_000_003 + int(i)


# ------------------------------------------------------------------------------------------------
# scene description
# ------------------------------------------------------------------------------------------------


@dataclass
class _Part:
    """A primitive in its object's local frame (origin on the floor, front towards −z)."""

    kind: int
    center: tuple[float, float, float]
    half: tuple[float, float, float]  # box half extents; cylinder (r, h/2, r)
    cls: int
    color: np.ndarray
    color2: np.ndarray
    tex: int
    scale: float
    emis: float
    key: int  # parts of one object with the same key form one instance


@dataclass
class _Prim:
    kind: int
    center: np.ndarray  # (3,) world
    half: np.ndarray  # (3,) in the primitive's own frame
    cos: float
    sin: float
    cls: int
    inst: int
    color: np.ndarray
    color2: np.ndarray
    tex: int
    scale: float
    emis: float
    toff: np.ndarray  # (3,) texture offset

    def corners(self) -> np.ndarray:
        """``8×3`` world corners of a bounding box of the primitive."""
        sx = np.array([-1, 1, -1, 1, -1, 1, -1, 1], np.float64)
        sy = np.array([-1, -1, 1, 1, -1, -1, 1, 1], np.float64)
        sz = np.array([-1, -1, -1, -1, 1, 1, 1, 1], np.float64)
        hx, hy, hz = self.half
        lx, ly, lz = sx * hx, sy * hy, sz * hz
        if self.kind == _BOX:
            wx = self.cos * lx + self.sin * lz
            wz = -self.sin * lx + self.cos * lz
        else:
            wx, wz = lx, lz
        return np.stack([wx, ly, wz], 1) + self.center


@dataclass
class _Placed:
    """A placed object: its floor footprint AABB and its primitives."""

    aabb: tuple[float, float, float, float]  # x0, z0, x1, z1
    height: float
    prims: list[_Prim]
    blocks: bool  # camera and furniture may not overlap it (mats do not block)
    grounded: bool  # casts a contact shadow on the floor


@dataclass
class _Scene:
    dims: tuple[float, float, float]  # Wx, Hy, Dz (room spans [0,Wx]×[0,Hy]×[0,Dz])
    room: list[_Prim]  # 6 faces: x-lo, x-hi, floor, ceiling, z-lo, z-hi
    objects: list[_Placed]
    ambient: float
    light_pos: np.ndarray
    light_power: float
    light_range: float
    sun_dir: np.ndarray  # direction the light travels
    sun_power: float
    tint: np.ndarray
    kind: str = ""
    _packed: dict | None = None

    def packed(self) -> dict:
        """Structure-of-arrays view of all primitives (room faces first), cached.

        Per primitive (length P): ``cx cy cz hx hy hz cos sin scale emis`` float32, ``kind tex``
        int8, ``cls`` uint8, ``inst`` int32, ``color color2`` ``P×3`` float32, ``toff`` ``P×3``;
        ``corners`` ``(P−6)×8×3`` float64 (furniture only); ``shadow`` ``S×4`` footprints.
        """
        if self._packed is None:
            prims = self.room + [p for o in self.objects for p in o.prims]
            f = _F32
            center = np.array([p.center for p in prims], f)
            half = np.array([p.half for p in prims], f)
            pk = {
                "kind": np.array([p.kind for p in prims], np.int8),
                "cls": np.array([p.cls for p in prims], np.uint8),
                "inst": np.array([p.inst for p in prims], np.int32),
                "cos": np.array([p.cos for p in prims], f),
                "sin": np.array([p.sin for p in prims], f),
                "color": np.array([p.color for p in prims], f),
                "color2": np.array([p.color2 for p in prims], f),
                "tex": np.array([p.tex for p in prims], np.int8),
                "scale": np.array([p.scale for p in prims], f),
                "emis": np.array([p.emis for p in prims], f),
                "toff": np.array([p.toff for p in prims], f),
                "prims": prims,
                "corners": np.stack([p.corners() for p in prims[6:]])
                if len(prims) > 6
                else np.zeros((0, 8, 3)),
                "shadow": np.array(
                    [o.aabb for o in self.objects if o.grounded] or np.zeros((0, 4)), f
                ).reshape(-1, 4),
            }
            for i, k in enumerate("xyz"):
                pk["c" + k] = np.ascontiguousarray(center[:, i])
                pk["h" + k] = np.ascontiguousarray(half[:, i])
            self._packed = pk
        return self._packed


class _Obj:
    """Object under construction in its local frame (x along the width, y up, back at +z)."""

    def __init__(self, w: float, d: float):
        self.w, self.d = w, d
        self.parts: list[_Part] = []
        self.height = 0.0

    def box(self, cls, x, y0, z, w, h, d, color, tex=_T_PLAIN, color2=None, scale=1.0, emis=0.0,
            key=0) -> None:  # fmt: skip
        c2 = color * 0.55 if color2 is None else color2
        self.parts.append(
            _Part(
                _BOX,
                (x, y0 + h / 2, z),
                (w / 2, h / 2, d / 2),
                cls,
                color,
                c2,
                tex,
                scale,
                emis,
                key,
            )  # fmt: skip
        )
        self.height = max(self.height, y0 + h)

    def cyl(self, cls, x, y0, z, r, h, color, tex=_T_PLAIN, color2=None, scale=1.0, emis=0.0,
            key=0) -> None:  # fmt: skip
        c2 = color * 0.55 if color2 is None else color2
        self.parts.append(
            _Part(_CYL, (x, y0 + h / 2, z), (r, h / 2, r), cls, color, c2, tex, scale, emis, key)
        )
        self.height = max(self.height, y0 + h)


def _aabb_overlap(a, b, margin: float = 0.0) -> bool:
    return (
        a[0] < b[2] + margin and b[0] < a[2] + margin and a[1] < b[3] + margin
        and b[1] < a[3] + margin
    )  # fmt: skip


class _Builder:
    """Random room layout: walls, openings, furniture placed without overlaps."""

    def __init__(self, rng: np.random.Generator, kind: str):
        self.rng = rng
        self.kind = kind
        r = rng
        if kind == "bathroom":
            wx, dz = r.uniform(2.2, 3.2), r.uniform(2.4, 3.6)
        elif kind == "living":
            wx, dz = r.uniform(3.8, 6.0), r.uniform(4.0, 6.5)
        elif kind == "bedroom":
            wx, dz = r.uniform(3.2, 4.8), r.uniform(3.4, 5.2)
        else:
            wx, dz = r.uniform(3.0, 5.5), r.uniform(3.2, 6.0)
        if r.random() < 0.5:
            wx, dz = dz, wx
        self.wx, self.dz, self.hy = float(wx), float(dz), float(r.uniform(2.4, 3.0))
        self.objects: list[_Placed] = []
        self.blocked: list[tuple[float, float, float, float]] = []
        self.wall_rects: dict[int, list[tuple[float, float, float, float]]] = {
            0: [], 1: [], 2: [], 3: []
        }  # fmt: skip
        self.next_inst = 16
        self.room_wall_color = np.ones(3)

    # -- colours --------------------------------------------------------------------------------
    def col(self, name: str, jitter: float = 0.12) -> np.ndarray:
        choices = _PAL[name]
        c = np.array(choices[self.rng.integers(len(choices))], np.float64) / 255.0
        c = c * self.rng.uniform(1 - jitter, 1 + jitter) * self.rng.uniform(0.95, 1.05, 3)
        return np.clip(c, 0.02, 1.0)

    # -- geometry helpers ------------------------------------------------------------------------
    def wall_len(self, wall: int) -> float:
        return self.wx if wall in (0, 2) else self.dz

    def wall_pose(self, wall: int, s: float, depth: float, offset: float = 0.0):
        """World (x, z) centre and yaw of an object with its back against ``wall`` at ``s``."""
        # wall 0: z=0, 1: x=Wx, 2: z=Dz, 3: x=0; s runs along the object's local +x
        if wall == 0:
            start, tang, n_in, yaw = (self.wx, 0.0), (-1.0, 0.0), (0.0, 1.0), math.pi
        elif wall == 1:
            start, tang, n_in, yaw = (self.wx, self.dz), (0.0, -1.0), (-1.0, 0.0), math.pi / 2
        elif wall == 2:
            start, tang, n_in, yaw = (0.0, self.dz), (1.0, 0.0), (0.0, -1.0), 0.0
        else:
            start, tang, n_in, yaw = (0.0, 0.0), (0.0, 1.0), (1.0, 0.0), -math.pi / 2
        k = depth / 2 + offset
        return (start[0] + s * tang[0] + n_in[0] * k, start[1] + s * tang[1] + n_in[1] * k), yaw

    @staticmethod
    def footprint(pos, yaw: float, w: float, d: float):
        c, s = math.cos(yaw), math.sin(yaw)
        xs, zs = [], []
        for lx in (-w / 2, w / 2):
            for lz in (-d / 2, d / 2):
                xs.append(pos[0] + c * lx + s * lz)
                zs.append(pos[1] - s * lx + c * lz)
        return (min(xs), min(zs), max(xs), max(zs))

    def fits(self, aabb, margin: float = 0.03, ignore=()) -> bool:
        eps = 1e-6
        if aabb[0] < -eps or aabb[1] < -eps or aabb[2] > self.wx + eps or aabb[3] > self.dz + eps:
            return False
        for o in self.objects:
            if o.blocks and o not in ignore and _aabb_overlap(aabb, o.aabb, margin):
                return False
        return not any(_aabb_overlap(aabb, b, 0.0) for b in self.blocked)

    def wall_free(self, wall: int, s0: float, s1: float, y0: float, y1: float) -> bool:
        return not any(
            s0 < b[1] and b[0] < s1 and y0 < b[3] and b[2] < y1 for b in self.wall_rects[wall]
        )

    # -- placement -------------------------------------------------------------------------------
    def add(self, obj: _Obj, pos, yaw: float, blocks: bool = True, grounded: bool = True,
            y_base: float = 0.0) -> _Placed:  # fmt: skip
        c, s = math.cos(yaw), math.sin(yaw)
        if abs(c) < 1e-9:
            c = 0.0
        if abs(s) < 1e-9:
            s = 0.0
        insts: dict[int, int] = {}
        prims = []
        for p in obj.parts:
            if p.key not in insts:
                insts[p.key] = self.next_inst
                self.next_inst += 1
            lx, ly, lz = p.center
            center = np.array([pos[0] + c * lx + s * lz, y_base + ly, pos[1] - s * lx + c * lz])
            prims.append(
                _Prim(
                    p.kind,
                    center,
                    np.array(p.half, np.float64),
                    c,
                    s,
                    p.cls,
                    insts[p.key],
                    p.color,
                    p.color2,
                    p.tex,
                    p.scale,
                    p.emis,
                    self.rng.uniform(-50, 50, 3),
                )  # fmt: skip
            )
        placed = _Placed(self.footprint(pos, yaw, obj.w, obj.d), y_base + obj.height, prims,
                         blocks, grounded)  # fmt: skip
        self.objects.append(placed)
        return placed

    def try_wall(self, obj: _Obj, walls=None, tries: int = 25, s: float | None = None,
                 y0: float = 0.0, offset: float = 0.0, item: bool = False,
                 margin: float = 0.05):  # fmt: skip
        """Place ``obj`` with its back on a wall; ``item`` = wall-hung (no floor footprint)."""
        walls = list(range(4)) if walls is None else list(walls)
        for _ in range(tries if s is None else 1):
            wall = walls[int(self.rng.integers(len(walls)))]
            length = self.wall_len(wall)
            if obj.w + 2 * margin > length:
                continue
            ss = s if s is not None else self.rng.uniform(obj.w / 2 + margin,
                                                          length - obj.w / 2 - margin)  # fmt: skip
            if ss - obj.w / 2 < 0 or ss + obj.w / 2 > length:
                continue
            pos, yaw = self.wall_pose(wall, ss, obj.d, offset)
            aabb = self.footprint(pos, yaw, obj.w, obj.d)
            if not item and not self.fits(aabb):
                continue
            if y0 + obj.height > self.hy - 0.02:
                continue
            if not self.wall_free(wall, ss - obj.w / 2, ss + obj.w / 2, y0, y0 + obj.height):
                continue
            placed = self.add(obj, pos, yaw, blocks=not item, grounded=not item and y0 == 0,
                              y_base=y0)  # fmt: skip
            self.wall_rects[wall].append((ss - obj.w / 2, ss + obj.w / 2, y0, y0 + obj.height))
            return placed, wall, ss
        return None

    def try_free(self, obj: _Obj, yaw: float | None = None, tries: int = 25, region=None,
                 blocks: bool = True, ignore=()) -> _Placed | None:  # fmt: skip
        for _ in range(tries):
            x0, z0, x1, z1 = region or (0.0, 0.0, self.wx, self.dz)
            pos = (self.rng.uniform(x0, x1), self.rng.uniform(z0, z1))
            y = self.rng.uniform(-math.pi, math.pi) if yaw is None else yaw
            aabb = self.footprint(pos, y, obj.w, obj.d)
            if blocks and not self.fits(aabb, ignore=ignore):
                continue
            if not blocks and not self.fits(aabb, margin=-10.0):
                continue
            return self.add(obj, pos, y, blocks=blocks, grounded=blocks)
        return None

    # -- room shell ------------------------------------------------------------------------------
    def room(self) -> list[_Prim]:
        r = self.rng
        wall_col = self.col("wall", 0.08)
        wall_tex, wall2 = _T_PLAIN, wall_col * 0.9
        wall_scale = 1.0
        if self.kind == "bathroom":
            wall_tex, wall_col, wall_scale = _T_TILES, self.col("white"), r.uniform(0.15, 0.3)
            wall2 = wall_col * 0.82
        elif r.random() < 0.15:
            wall_tex, wall2, wall_scale = _T_STRIPES, wall_col * r.uniform(0.8, 0.92), 0.12
        kind = self.kind
        fr = r.random()
        if kind in ("bathroom", "kitchen") and fr < 0.8:
            floor = (self.col("floor_tile"), _T_TILES, r.uniform(0.3, 0.6))
        elif fr < 0.55:
            floor = (self.col("floor_wood"), _T_WOOD, r.uniform(0.1, 0.2))
        elif fr < 0.8:
            floor = (self.col("carpet"), _T_FABRIC, 1.0)
        else:
            floor = (self.col("floor_tile"), _T_TILES, r.uniform(0.3, 0.6))
        ceil_col = self.col("ceiling", 0.04)
        c = np.array([self.wx / 2, self.hy / 2, self.dz / 2])
        half = np.array([self.wx / 2, self.hy / 2, self.dz / 2])
        faces = []
        for face in range(6):
            if face == 2:
                cls, col, tex, sc = _C["floor"], floor[0], floor[1], floor[2]
                col2 = col * 0.55 if tex == _T_WOOD else col * 0.75
            elif face == 3:
                cls, col, tex, sc, col2 = _C["ceiling"], ceil_col, _T_PLAIN, 1.0, ceil_col
            else:
                cls, col, tex, sc, col2 = _C["wall"], wall_col, wall_tex, wall_scale, wall2
            faces.append(
                _Prim(
                    _BOX,
                    c,
                    half,
                    1.0,
                    0.0,
                    cls,
                    1 + face,
                    col,
                    col2,
                    tex,
                    sc,
                    0.0,
                    r.uniform(-50, 50, 3),
                )  # fmt: skip
            )
        return faces


# ------------------------------------------------------------------------------------------------
# furniture recipes
# ------------------------------------------------------------------------------------------------


def _lamp_parts(b: _Builder, o: _Obj, x: float, y0: float, z: float, key: int) -> None:
    r = b.rng
    h = r.uniform(0.2, 0.3)
    o.cyl(_C["lamp"], x, y0, z, r.uniform(0.04, 0.07), h, b.col("metal"), key=key)
    o.cyl(_C["lamp"], x, y0 + h, z, r.uniform(0.11, 0.16), r.uniform(0.16, 0.22),
          b.col("sheet"), _T_FABRIC, emis=0.45, key=key)  # fmt: skip


def _bed(b: _Builder) -> _Obj:
    r = b.rng
    w = float(r.choice([0.95, 1.4, 1.6, 1.8])) * r.uniform(0.95, 1.05)
    length = r.uniform(1.95, 2.15)
    o = _Obj(w + 0.06, length)
    wood = b.col("wood")
    fh, mh = r.uniform(0.18, 0.32), r.uniform(0.18, 0.26)
    top = fh + mh
    o.box(_C["bed"], 0, 0, 0, w, fh, length, wood, _T_WOOD, scale=100.0)
    o.box(_C["bed"], 0, fh, 0, w - 0.04, mh, length - 0.06, b.col("sheet"), _T_FABRIC)
    bl = length * r.uniform(0.55, 0.7)
    blanket = b.col("fabric")
    tex = _T_STRIPES if r.random() < 0.3 else _T_FABRIC
    o.box(_C["bed"], 0, fh + 0.04, -length / 2 + bl / 2 - 0.01, w + 0.03, mh + 0.0, bl, blanket,
          tex, color2=blanket * 0.7, scale=0.15)  # fmt: skip
    o.box(_C["bed"], 0, 0, length / 2 - 0.03, w + 0.06, r.uniform(0.85, 1.2), 0.06, wood, _T_WOOD,
          scale=100.0)  # fmt: skip
    n = 2 if w > 1.2 else 1
    pcol = b.col("sheet")
    for i in range(n):
        x = (i - (n - 1) / 2) * (w / n)
        pw = min(0.6, w / n - 0.1)
        o.box(_C["pillow"], x, top, length / 2 - 0.27, pw, 0.13, 0.36, pcol, _T_FABRIC, key=1 + i)
    if r.random() < 0.3:
        o.box(_C["clothes"], r.uniform(-w / 4, w / 4), top + 0.04, -length / 4, 0.4, 0.04, 0.35,
              b.col("fabric"), _T_FABRIC, key=5)  # fmt: skip
    return o


def _night_stand(b: _Builder) -> _Obj:
    r = b.rng
    w, d, h = r.uniform(0.4, 0.55), r.uniform(0.35, 0.45), r.uniform(0.5, 0.65)
    o = _Obj(w, d)
    o.box(_C["night stand"], 0, 0, 0, w, h, d, b.col("wood"), _T_DRAWERS, scale=h / 2)
    if r.random() < 0.75:
        _lamp_parts(b, o, 0, h, 0.03, key=1)
    return o


def _dresser(b: _Builder) -> _Obj:
    r = b.rng
    w, d, h = r.uniform(0.8, 1.5), r.uniform(0.42, 0.55), r.uniform(0.75, 1.05)
    o = _Obj(w, d)
    col = b.col("wood") if r.random() < 0.7 else b.col("white")
    o.box(_C["dresser"], 0, 0, 0, w, h, d, col, _T_DRAWERS, scale=h / int(r.integers(3, 6)))
    _on_top(b, o, w, d, h)
    return o


def _on_top(b: _Builder, o: _Obj, w: float, d: float, h: float, tv: bool = True) -> None:
    r = b.rng
    u = r.random()
    if tv and u < 0.4 and w > 0.7:
        tw = min(w - 0.1, r.uniform(0.7, 1.2))
        th = tw * 0.58
        o.box(_C["television"], 0, h, d / 2 - 0.2, 0.3, 0.04, 0.18, b.col("dark"), key=1)
        o.box(_C["television"], 0, h + 0.04, d / 2 - 0.2, 0.06, 0.08, 0.04, b.col("dark"), key=1)
        o.box(_C["television"], 0, h + 0.1, d / 2 - 0.2, tw, th, 0.05, b.col("dark"), _T_SCREEN,
              color2=b.col("dark"), emis=0.6 if r.random() < 0.4 else 0.0, key=1)  # fmt: skip
        return
    x = r.uniform(-w / 2 + 0.2, w / 2 - 0.2)
    if u < 0.65:
        _lamp_parts(b, o, x, h, 0.0, key=2)
    elif u < 0.8:
        s = r.uniform(0.2, 0.35)
        o.box(_C["box"], x, h, 0, s, s * r.uniform(0.5, 1), s, b.col("cardboard"), key=3)
    else:
        o.cyl(_C["otherprop"], x, h, 0, r.uniform(0.04, 0.08), r.uniform(0.1, 0.3),
              b.col("bright"), key=4)  # fmt: skip
    if r.random() < 0.4:
        x2 = -x * 0.8
        o.box(_C["books"], x2, h, 0, 0.22, r.uniform(0.05, 0.15), 0.28, b.col("bright"),
              _T_STRIPES, color2=b.col("bright"), scale=-0.03, key=5)  # fmt: skip


def _cabinet(b: _Builder, tall: bool | None = None) -> _Obj:
    r = b.rng
    tall = r.random() < 0.5 if tall is None else tall
    w, d = r.uniform(0.5, 1.2), r.uniform(0.4, 0.6)
    h = r.uniform(1.7, 2.1) if tall else r.uniform(0.6, 0.95)
    o = _Obj(w, d)
    col = b.col("wood") if r.random() < 0.6 else b.col("white")
    o.box(_C["cabinet"], 0, 0, 0, w, h, d, col, _T_DOORS, scale=w / max(1, round(w / 0.5)))
    if not tall and r.random() < 0.5:
        _on_top(b, o, w, d, h)
    return o


def _bookshelf(b: _Builder) -> _Obj:
    r = b.rng
    w, d, h = r.uniform(0.6, 1.2), r.uniform(0.28, 0.38), r.uniform(1.0, 2.1)
    o = _Obj(w, d)
    o.box(_C["bookshelf"], 0, 0, 0, w, h, d, b.col("wood"), _T_WOOD, scale=100.0)
    n = max(1, int((h - 0.1) / 0.36))
    rh = (h - 0.06) / n
    for i in range(n):
        if r.random() < 0.85:
            o.box(_C["books"], 0, 0.05 + i * rh, -0.01 - 0.02, w - 0.06, rh - 0.07, d - 0.04,
                  b.col("bright"), _T_BOOKS, color2=b.col("dark"),
                  scale=r.uniform(0.025, 0.05), key=1 + i)  # fmt: skip
    return o


def _table(b: _Builder, coffee: bool = False) -> _Obj:
    r = b.rng
    if coffee:
        w, d, h = r.uniform(0.8, 1.2), r.uniform(0.5, 0.7), r.uniform(0.38, 0.48)
    else:
        w, d, h = r.uniform(0.9, 1.6), r.uniform(0.75, 1.0), r.uniform(0.72, 0.77)
    o = _Obj(w, d)
    col = b.col("wood") if r.random() < 0.7 else b.col(str(r.choice(["white", "dark"])))
    t = r.uniform(0.03, 0.05)
    o.box(_C["table"], 0, h - t, 0, w, t, d, col, _T_WOOD, scale=100.0)
    style = r.random()
    if style < 0.65:
        for sx in (-1, 1):
            for sz in (-1, 1):
                o.box(_C["table"], sx * (w / 2 - 0.06), 0, sz * (d / 2 - 0.06), 0.05, h - t, 0.05,
                      col * 0.9)  # fmt: skip
    elif style < 0.85:
        for sx in (-1, 1):
            o.box(_C["table"], sx * (w / 2 - 0.05), 0, 0, 0.04, h - t, d - 0.1, col * 0.9)
    else:
        o.cyl(_C["table"], 0, 0, 0, 0.05, h - t, col * 0.9)
        o.cyl(_C["table"], 0, 0, 0, min(w, d) * 0.3, 0.03, col * 0.8)
    for key, cls in ((1, "otherprop"), (2, "paper"), (3, "books")):
        if r.random() < 0.35:
            x, z = r.uniform(-w / 2 + 0.15, w / 2 - 0.15), r.uniform(-d / 2 + 0.12, d / 2 - 0.12)
            if cls == "otherprop":
                o.cyl(_C[cls], x, h, z, r.uniform(0.03, 0.07), r.uniform(0.08, 0.25),
                      b.col("bright"), key=key)  # fmt: skip
            elif cls == "paper":
                o.box(_C[cls], x, h, z, 0.21, 0.004, 0.297, b.col("white", 0.03), key=key)
            else:
                o.box(_C[cls], x, h, z, 0.2, r.uniform(0.03, 0.1), 0.26, b.col("bright"),
                      _T_STRIPES, color2=b.col("bright"), scale=-0.025, key=key)  # fmt: skip
    return o


def _desk(b: _Builder) -> _Obj:
    r = b.rng
    w, d, h = r.uniform(1.0, 1.6), r.uniform(0.6, 0.75), r.uniform(0.72, 0.76)
    o = _Obj(w, d)
    col = b.col("wood") if r.random() < 0.6 else b.col(str(r.choice(["white", "grey"])))
    o.box(_C["desk"], 0, h - 0.03, 0, w, 0.03, d, col, _T_WOOD, scale=100.0)
    o.box(_C["desk"], -w / 2 + 0.02, 0, 0, 0.03, h - 0.03, d - 0.04, col * 0.92)
    if r.random() < 0.6:
        o.box(_C["desk"], w / 2 - 0.22, 0, 0, 0.42, h - 0.03, d - 0.04, col * 0.95, _T_DRAWERS,
              scale=(h - 0.03) / 3)  # fmt: skip
    else:
        o.box(_C["desk"], w / 2 - 0.02, 0, 0, 0.03, h - 0.03, d - 0.04, col * 0.92)
    x = r.uniform(-0.15, 0.15) * w
    if r.random() < 0.75:
        dark = b.col("dark")
        o.box(_C["television"], x, h, d / 2 - 0.18, 0.22, 0.02, 0.16, dark, key=1)
        o.box(_C["television"], x, h + 0.02, d / 2 - 0.15, 0.04, 0.14, 0.03, dark, key=1)
        o.box(_C["television"], x, h + 0.1, d / 2 - 0.17, r.uniform(0.45, 0.6), 0.32, 0.03, dark,
              _T_SCREEN, color2=dark, emis=0.55 if r.random() < 0.6 else 0.0, key=1)  # fmt: skip
        o.box(_C["otherprop"], x, h, -d / 2 + 0.2, 0.42, 0.02, 0.14, b.col("grey"), key=2)
    if r.random() < 0.5:
        o.box(_C["paper"], -w / 2 + 0.25, h, -0.05, 0.21, 0.004, 0.297, b.col("white", 0.03), key=3)
    if r.random() < 0.4:
        _lamp_parts(b, o, w / 2 - 0.15, h, d / 2 - 0.15, key=4)
    return o


def _chair(b: _Builder, col: np.ndarray | None = None) -> _Obj:
    r = b.rng
    w, d, sh = r.uniform(0.42, 0.5), r.uniform(0.42, 0.5), r.uniform(0.43, 0.48)
    o = _Obj(w, d)
    if r.random() < 0.7:
        col = b.col(str(r.choice(["wood", "dark", "white"]))) if col is None else col
        o.box(_C["chair"], 0, sh - 0.05, 0, w, 0.05, d, col, _T_WOOD, scale=100.0)
        o.box(_C["chair"], 0, sh, d / 2 - 0.03, w, r.uniform(0.35, 0.5), 0.04, col, _T_WOOD,
              scale=100.0)  # fmt: skip
        for sx in (-1, 1):
            for sz in (-1, 1):
                o.box(_C["chair"], sx * (w / 2 - 0.03), 0, sz * (d / 2 - 0.03), 0.035, sh - 0.05,
                      0.035, col * 0.85)  # fmt: skip
    else:
        col = b.col("fabric") if col is None else col
        o.box(_C["chair"], 0, sh - 0.08, 0, w, 0.08, d, col, _T_FABRIC)
        o.box(_C["chair"], 0, sh, d / 2 - 0.04, w * 0.95, r.uniform(0.4, 0.55), 0.06, col,
              _T_FABRIC)  # fmt: skip
        o.cyl(_C["chair"], 0, 0.06, 0, 0.025, sh - 0.14, b.col("metal"))
        o.cyl(_C["chair"], 0, 0, 0, min(w, d) / 2, 0.06, b.col("dark"))
    return o


def _sofa(b: _Builder) -> _Obj:
    r = b.rng
    w, d = r.uniform(1.5, 2.4), r.uniform(0.8, 0.95)
    o = _Obj(w, d)
    col = b.col("fabric")
    sh, bh, ah = r.uniform(0.38, 0.45), r.uniform(0.78, 0.9), r.uniform(0.55, 0.65)
    o.box(_C["sofa"], 0, 0, 0, w - 0.3, sh, d - 0.05, col, _T_FABRIC)
    o.box(_C["sofa"], 0, 0, d / 2 - 0.11, w, bh, 0.22, col * 0.95, _T_FABRIC)
    for sx in (-1, 1):
        o.box(_C["sofa"], sx * (w / 2 - 0.1), 0, 0, 0.2, ah, d, col * 0.97, _T_FABRIC)
    pcol = b.col("fabric")
    for i in range(int(r.integers(0, 3))):
        x = (i - 0.5) * (w - 0.7) if i < 2 else 0.0
        o.box(_C["pillow"], x, sh, d / 2 - 0.3, 0.42, 0.4, 0.13, pcol, _T_FABRIC, key=1 + i)
    return o


def _counter(b: _Builder, length: float) -> _Obj:
    r = b.rng
    o = _Obj(length, 0.62)
    cab = b.col("wood") if r.random() < 0.5 else b.col("white")
    o.box(_C["cabinet"], 0, 0, 0.01, length, 0.86, 0.58, cab, _T_DOORS,
          scale=length / max(1, round(length / 0.5)))  # fmt: skip
    top = b.col(str(r.choice(["grey", "white", "dark"])))
    o.box(_C["counter"], 0, 0.86, 0, length + 0.02, 0.04, 0.62, top, _T_FABRIC)
    if r.random() < 0.8 and length > 1.0:
        x = r.uniform(-length / 2 + 0.35, length / 2 - 0.35)
        o.box(_C["sink"], x, 0.9, -0.02, 0.52, 0.006, 0.4, b.col("metal"), key=1)
        o.cyl(_C["sink"], x, 0.9, 0.22, 0.015, 0.25, b.col("metal"), key=1)
    for key in (2, 3):
        if r.random() < 0.5:
            x = r.uniform(-length / 2 + 0.1, length / 2 - 0.1)
            o.cyl(_C["otherprop"], x, 0.9, 0.12, r.uniform(0.04, 0.1), r.uniform(0.1, 0.3),
                  b.col("bright"), key=key)  # fmt: skip
    return o


def _upper_cabinets(b: _Builder, length: float) -> _Obj:
    o = _Obj(length, 0.35)
    col = b.col("wood") if b.rng.random() < 0.5 else b.col("white")
    o.box(_C["cabinet"], 0, 0, 0, length, b.rng.uniform(0.6, 0.8), 0.35, col, _T_DOORS,
          scale=length / max(1, round(length / 0.5)))  # fmt: skip
    return o


def _fridge(b: _Builder) -> _Obj:
    r = b.rng
    w, d, h = r.uniform(0.6, 0.8), r.uniform(0.65, 0.75), r.uniform(1.7, 1.9)
    o = _Obj(w, d)
    o.box(_C["refrigerator"], 0, 0, 0, w, h, d, b.col(str(r.choice(["white", "metal"]))),
          _T_DRAWERS, scale=h * r.uniform(0.33, 0.4))  # fmt: skip
    return o


def _toilet(b: _Builder) -> _Obj:
    r = b.rng
    o = _Obj(0.42, 0.7)
    col = b.col("white", 0.04)
    o.box(_C["toilet"], 0, 0.38, 0.26, 0.42, 0.4, 0.18, col)
    o.cyl(_C["toilet"], 0, 0, -0.05, 0.13, 0.28, col)
    o.cyl(_C["toilet"], 0, 0.26, -0.08, r.uniform(0.18, 0.21), 0.14, col)
    return o


def _vanity(b: _Builder) -> _Obj:
    r = b.rng
    w, d = r.uniform(0.6, 1.0), r.uniform(0.45, 0.55)
    o = _Obj(w, d)
    o.box(_C["cabinet"], 0, 0, 0, w, 0.8, d, b.col(str(r.choice(["white", "wood"]))), _T_DOORS,
          scale=w / 2)  # fmt: skip
    o.box(_C["counter"], 0, 0.8, 0, w + 0.02, 0.03, d + 0.01, b.col("white"), _T_FABRIC)
    o.cyl(_C["sink"], 0, 0.83, -0.02, min(w, d) * 0.35, 0.1, b.col("white", 0.03), key=1)
    o.cyl(_C["sink"], 0, 0.83, d / 2 - 0.07, 0.015, 0.2, b.col("metal"), key=1)
    return o


def _bathtub(b: _Builder) -> _Obj:
    r = b.rng
    w, d = r.uniform(1.4, 1.7), r.uniform(0.7, 0.8)
    o = _Obj(w, d)
    col = b.col("white", 0.04)
    o.box(_C["bathtub"], 0, 0, 0, w, 0.55, d, col)
    o.box(_C["bathtub"], 0, 0.55, 0, w - 0.12, 0.003, d - 0.12, col * 0.85)
    if r.random() < 0.6:
        o.box(_C["shower curtain"], -w * 0.2, 0.6, -d / 2 + 0.02, w * 0.6, 1.4, 0.02,
              b.col("sheet"), _T_CURTAIN, key=1)  # fmt: skip
    return o


def _floor_lamp(b: _Builder) -> _Obj:
    r = b.rng
    o = _Obj(0.4, 0.4)
    h = r.uniform(1.3, 1.6)
    o.cyl(_C["lamp"], 0, 0, 0, 0.15, 0.03, b.col("dark"))
    o.cyl(_C["lamp"], 0, 0.03, 0, 0.015, h, b.col("metal"))
    o.cyl(_C["lamp"], 0, h, 0, r.uniform(0.15, 0.2), r.uniform(0.25, 0.32), b.col("sheet"),
          _T_FABRIC, emis=0.45)  # fmt: skip
    return o


def _plant(b: _Builder) -> _Obj:
    r = b.rng
    o = _Obj(0.5, 0.5)
    ph = r.uniform(0.25, 0.4)
    o.cyl(_C["otherprop"], 0, 0, 0, r.uniform(0.12, 0.17), ph, b.col(str(r.choice(["white",
          "cardboard", "dark"]))))  # fmt: skip
    o.cyl(_C["otherprop"], 0, ph, 0, r.uniform(0.18, 0.25), r.uniform(0.3, 0.8), b.col("plant"),
          _T_FABRIC)  # fmt: skip
    return o


def _boxes(b: _Builder) -> _Obj:
    r = b.rng
    s = r.uniform(0.3, 0.6)
    o = _Obj(s, s)
    h = s * r.uniform(0.6, 1.0)
    col = b.col("cardboard")
    o.box(_C["box"], 0, 0, 0, s, h, s, col, key=0)
    if r.random() < 0.4:
        s2 = s * r.uniform(0.6, 0.9)
        o.box(_C["box"], 0, h, 0, s2, s2 * 0.8, s2, col * 0.95, key=1)
    return o


def _bag(b: _Builder) -> _Obj:
    r = b.rng
    o = _Obj(0.35, 0.2)
    o.box(_C["bag"], 0, 0, 0, 0.35, r.uniform(0.3, 0.45), 0.2, b.col("fabric"), _T_FABRIC)
    return o


def _otherfurniture(b: _Builder) -> _Obj:
    r = b.rng
    o = _Obj(0.45, 0.45)
    if r.random() < 0.5:
        o.cyl(_C["otherfurniture"], 0, 0, 0, 0.2, r.uniform(0.4, 0.5), b.col("fabric"), _T_FABRIC)
    else:
        o.box(_C["otherfurniture"], 0, 0, 0, 0.45, r.uniform(0.4, 0.7), 0.45, b.col("wood"),
              _T_WOOD, scale=100.0)  # fmt: skip
    return o


# wall-hung items: local frame x along the wall, y up, z into the wall, thickness = obj.d


def _picture(b: _Builder) -> _Obj:
    r = b.rng
    w, h, t = r.uniform(0.3, 1.0), r.uniform(0.25, 0.8), r.uniform(0.02, 0.04)
    o = _Obj(w, t)
    o.box(_C["picture"], 0, 0, 0, w, h, t, b.col("bright"),
          _T_PICTURE, color2=b.col(str(r.choice(["wood", "dark", "white"]))),
          scale=r.uniform(0.2, 0.6))  # fmt: skip
    return o


def _window(b: _Builder, h: float, sill: float) -> tuple[_Obj, float]:
    """A window (optionally with blinds or curtains on a rod); returns (object, mount height).

    With floor-length curtains the object is built from the floor up (mounted at 0) so that its
    wall rectangle keeps furniture away from the curtains; otherwise it is mounted at the sill.
    """
    r = b.rng
    w = r.uniform(0.8, 1.8)
    u = r.random()
    floor_len = 0.45 <= u < 0.75 and r.random() < 0.6
    y = sill if floor_len else 0.0  # local height of the sill
    o = _Obj(w + 0.9, 0.12)
    o.box(_C["window"], 0, y, 0.05, w, h, 0.02, b.col("sky"), _T_WINDOW,
          color2=b.col("white"), scale=float(r.random() < 0.6), emis=0.85)  # fmt: skip
    if u < 0.45:
        bh = h * r.uniform(0.25, 1.0)
        o.box(_C["blinds"], 0, y + h - bh + 0.02, 0.03, w + 0.06, bh, 0.02, b.col("white"),
              _T_BLINDS, emis=0.15, key=1)  # fmt: skip
    elif u < 0.75:
        cw = r.uniform(0.3, 0.45)
        ctop = y + h + 0.15
        y0 = 0.01 if floor_len else y - r.uniform(0.05, 0.15)
        col = b.col("fabric")
        for i, sx in enumerate((-1, 1)):
            o.box(_C["curtain"], sx * (w / 2 + cw / 2 - 0.1), y0, -0.03, cw, ctop - y0, 0.06,
                  col, _T_CURTAIN, key=2 + i)  # fmt: skip
        o.box(_C["otherprop"], 0, ctop, -0.01, w + 2 * cw, 0.025, 0.025, b.col("metal"), key=4)
    return o, (0.0 if floor_len else sill)


def _door(b: _Builder) -> _Obj:
    r = b.rng
    w, h = r.uniform(0.8, 0.95), r.uniform(2.0, 2.1)
    o = _Obj(w, 0.045)
    col = b.col("wood") if r.random() < 0.6 else b.col("white")
    o.box(_C["door"], 0, 0, 0, w, h, 0.045, col, _T_DOOR, color2=b.col("metal"))
    return o


def _board(b: _Builder, mirror: bool) -> _Obj:
    r = b.rng
    if mirror:
        w, h = r.uniform(0.5, 1.0), r.uniform(0.6, 1.0)
        o = _Obj(w, 0.02)
        o.box(_C["mirror"], 0, 0, 0, w, h, 0.02, np.array([0.55, 0.62, 0.68]) * r.uniform(0.8, 1.1),
              _T_BOARD, color2=b.col(str(r.choice(["wood", "metal", "dark"]))),
              scale=1.0)  # fmt: skip
    else:
        w, h = r.uniform(1.2, 2.0), r.uniform(0.9, 1.2)
        o = _Obj(w, 0.02)
        o.box(_C["whiteboard"], 0, 0, 0, w, h, 0.02, b.col("white", 0.03), _T_BOARD,
              color2=b.col("metal"), scale=0.0)  # fmt: skip
    return o


def _towel(b: _Builder) -> _Obj:
    r = b.rng
    w, h = r.uniform(0.35, 0.6), r.uniform(0.5, 0.8)
    o = _Obj(w, 0.03)
    col = b.col(str(r.choice(["sheet", "fabric"])))
    o.box(_C["towel"], 0, 0, 0, w, h, 0.03, col, _T_STRIPES if r.random() < 0.4 else _T_FABRIC,
          color2=col * 0.8, scale=-0.08)  # fmt: skip
    return o


def _shelves(b: _Builder) -> _Obj:
    r = b.rng
    w, d = r.uniform(0.6, 1.2), r.uniform(0.2, 0.28)
    o = _Obj(w, d)
    col = b.col(str(r.choice(["wood", "white"])))
    n = int(r.integers(1, 4))
    for i in range(n):
        y = i * 0.35
        o.box(_C["shelves"], 0, y, 0, w, 0.025, d, col, _T_WOOD, scale=100.0)
        if r.random() < 0.6:
            bw = w * r.uniform(0.3, 0.8)
            o.box(_C["books"], -w / 2 + bw / 2 + 0.03, y + 0.025, 0.0, bw, r.uniform(0.16, 0.24),
                  d - 0.04, b.col("bright"), _T_BOOKS, color2=col * 0.5,
                  scale=r.uniform(0.025, 0.045), key=1 + i)  # fmt: skip
        elif r.random() < 0.5:
            o.cyl(_C["otherprop"], r.uniform(-w / 3, w / 3), y + 0.025, 0.0, 0.05,
                  r.uniform(0.1, 0.2), b.col("bright"), key=1 + i)  # fmt: skip
    return o


def _mat(b: _Builder, w: float, d: float) -> _Obj:
    o = _Obj(w, d)
    col = b.col(str(b.rng.choice(["fabric", "carpet"])))
    o.box(_C["floor mat"], 0, 0, 0, w, 0.012, d, col,
          _T_STRIPES if b.rng.random() < 0.4 else _T_FABRIC, color2=col * 0.7,
          scale=0.1)  # fmt: skip
    return o


# ------------------------------------------------------------------------------------------------
# room recipes
# ------------------------------------------------------------------------------------------------


def _chairs_around(b: _Builder, table: _Placed, n: int) -> None:
    r = b.rng
    x0, z0, x1, z1 = table.aabb
    cx, cz = (x0 + x1) / 2, (z0 + z1) / 2
    sides = [(0, -1), (0, 1), (-1, 0), (1, 0)]
    r.shuffle(sides)
    col = b.col(str(r.choice(["wood", "dark", "white"])))
    for sx, sz in sides[:n]:
        chair = _chair(b, col)
        px = cx + sx * ((x1 - x0) / 2 + 0.26) + (r.uniform(-0.15, 0.15) if sz else 0)
        pz = cz + sz * ((z1 - z0) / 2 + 0.26) + (r.uniform(-0.15, 0.15) if sx else 0)
        yaw = math.atan2(sx, sz) + r.uniform(-0.3, 0.3)  # front (−z local) faces the table
        aabb = b.footprint((px, pz), yaw, chair.w, chair.d)
        if b.fits(aabb, margin=0.0):
            b.add(chair, (px, pz), yaw)


def _openings(b: _Builder) -> None:
    r = b.rng
    door = _door(b)
    res = b.try_wall(door, tries=30, item=True)
    if res is not None:
        _, wall, s = res
        pos, yaw = b.wall_pose(wall, s, 0.9, 0.0)
        b.blocked.append(b.footprint(pos, yaw, door.w + 0.1, 0.9))
    for _ in range(int(r.choice([0, 1, 1, 2, 2]))):
        sill = r.uniform(0.75, 1.0)
        h = min(b.hy - sill - 0.2, r.uniform(1.0, 1.5))
        win, y0 = _window(b, h, sill)
        b.try_wall(win, y0=y0, item=True, tries=15)


def _wall_items(b: _Builder, n: int) -> None:
    r = b.rng
    for _ in range(n):
        pic = _picture(b)
        h = pic.height
        b.try_wall(pic, y0=r.uniform(1.35, 1.85) - h / 2, item=True, tries=10)


def _bedroom(b: _Builder) -> None:
    r = b.rng
    bed = _bed(b)
    walls = sorted(range(4), key=lambda w: -b.wall_len(w))
    res = b.try_wall(bed, walls=walls[:2] if r.random() < 0.7 else None, tries=30)
    if res is not None:
        placed, wall, s = res
        for side in (-1, 1):
            if r.random() < 0.75:
                ns = _night_stand(b)
                b.try_wall(ns, walls=[wall], s=s + side * (bed.w / 2 + 0.06 + ns.w / 2))
        if r.random() < 0.5:
            x0, z0, x1, z1 = placed.aabb
            b.try_free(_mat(b, r.uniform(0.8, 1.4), r.uniform(0.6, 1.0)), blocks=False,
                       region=(x0, z0, x1, z1))  # fmt: skip
        hb_top = placed.height
        if r.random() < 0.6:
            pic = _picture(b)
            b.try_wall(pic, walls=[wall], s=s, y0=max(hb_top + 0.15, 1.2), item=True)
    res = b.try_wall(_dresser(b))
    if res is not None and r.random() < 0.5:
        placed, wall, s = res
        b.try_wall(_board(b, mirror=True), walls=[wall], s=s, y0=placed.height + 0.2, item=True)
    for _ in range(int(r.integers(0, 3))):
        b.try_wall(_cabinet(b, tall=r.random() < 0.6))
    if r.random() < 0.4:
        res = b.try_wall(_desk(b))
        if res is not None:
            _desk_chair(b, res[0])
    if r.random() < 0.3:
        b.try_free(_chair(b))
    if r.random() < 0.3:
        b.try_wall(_floor_lamp(b), tries=10)
    _extras(b, ["box", "bag", "plant", "shelves", "otherfurniture"], int(r.integers(1, 4)))
    _wall_items(b, int(r.integers(1, 4)))


def _desk_chair(b: _Builder, desk: _Placed) -> None:
    r = b.rng
    x0, z0, x1, z1 = desk.aabb
    p = desk.prims[0]
    # desk front (local −z) direction in world
    fx, fz = -p.sin, -p.cos
    cx, cz = (x0 + x1) / 2, (z0 + z1) / 2
    depth = abs(fx) * (x1 - x0) + abs(fz) * (z1 - z0)
    pos = (cx + fx * (depth / 2 + 0.3), cz + fz * (depth / 2 + 0.3))
    chair = _chair(b)
    yaw = math.atan2(fx, fz) + r.uniform(-0.4, 0.4)  # chair front (local −z) faces the desk
    if b.fits(b.footprint(pos, yaw, chair.w, chair.d), margin=0.0):
        b.add(chair, pos, yaw)


def _living(b: _Builder) -> None:
    r = b.rng
    res = b.try_wall(_sofa(b), tries=30)
    if res is not None:
        placed, wall, s = res
        x0, z0, x1, z1 = placed.aabb
        p = placed.prims[0]
        fx, fz = -p.sin, -p.cos
        cx, cz = (x0 + x1) / 2, (z0 + z1) / 2
        depth = abs(fx) * (x1 - x0) + abs(fz) * (z1 - z0)
        table = _table(b, coffee=True)
        dist = depth / 2 + 0.45 + table.d / 2
        pos = (cx + fx * dist, cz + fz * dist)
        yaw = math.atan2(-fx, -fz)
        if r.random() < 0.6:
            mat = _mat(b, table.w + r.uniform(0.6, 1.2), table.d + r.uniform(0.6, 1.2))
            if b.fits(b.footprint(pos, yaw, mat.w, mat.d), margin=-10.0):
                b.add(mat, pos, yaw, blocks=False, grounded=False)
        if b.fits(b.footprint(pos, yaw, table.w, table.d)):
            b.add(table, pos, yaw)
        opp = (wall + 2) % 4
        tv = _cabinet(b, tall=False) if r.random() < 0.5 else _dresser(b)
        b.try_wall(tv, walls=[opp], tries=10)
        if r.random() < 0.5:
            pic = _picture(b)
            b.try_wall(pic, walls=[wall], s=s, y0=1.25, item=True)
    for _ in range(int(r.integers(0, 3))):
        b.try_wall(_bookshelf(b))
    for _ in range(int(r.integers(0, 3))):
        b.try_free(_chair(b))
    if r.random() < 0.5:
        b.try_wall(_floor_lamp(b), tries=10)
    if r.random() < 0.3:
        b.try_free(_otherfurniture(b))
    _extras(b, ["plant", "box", "shelves", "cabinet", "bag"], int(r.integers(1, 4)))
    _wall_items(b, int(r.integers(1, 4)))


def _kitchen(b: _Builder) -> None:
    r = b.rng
    wall = int(r.integers(4))
    length = min(b.wall_len(wall) - 0.2, r.uniform(1.5, 3.5))
    res = b.try_wall(_counter(b, length), walls=[wall], tries=10)
    if res is not None:
        _, wall, s = res
        if r.random() < 0.7:
            up = _upper_cabinets(b, length * r.uniform(0.6, 1.0))
            b.try_wall(up, walls=[wall], s=s, y0=r.uniform(1.45, 1.55), item=True)
        b.try_wall(_fridge(b), walls=[wall, (wall + 1) % 4, (wall + 3) % 4], tries=15)
    if r.random() < 0.5:
        w2 = (wall + int(r.choice([1, 3]))) % 4
        b.try_wall(_counter(b, min(b.wall_len(w2) - 0.3, r.uniform(1.0, 2.2))), walls=[w2])
    table = b.try_free(_table(b), yaw=float(r.choice([0.0, math.pi / 2])))
    if table is not None:
        _chairs_around(b, table, int(r.integers(1, 5)))
    _extras(b, ["box", "cabinet", "plant", "bag", "shelves"], int(r.integers(1, 4)))
    _wall_items(b, int(r.integers(0, 3)))


def _office(b: _Builder) -> None:
    r = b.rng
    for _ in range(int(r.integers(1, 3))):
        res = b.try_wall(_desk(b))
        if res is not None:
            _desk_chair(b, res[0])
    for _ in range(int(r.integers(0, 3))):
        b.try_wall(_bookshelf(b))
    if r.random() < 0.6:
        wb = _board(b, mirror=False)
        b.try_wall(wb, y0=r.uniform(0.85, 1.0), item=True, tries=15)
    for _ in range(int(r.integers(0, 3))):
        b.try_wall(_cabinet(b))
    if r.random() < 0.4:
        table = b.try_free(_table(b), yaw=float(r.choice([0.0, math.pi / 2])))
        if table is not None:
            _chairs_around(b, table, int(r.integers(1, 4)))
    _extras(b, ["box", "box", "bag", "plant", "shelves", "otherfurniture"], int(r.integers(2, 5)))
    _wall_items(b, int(r.integers(0, 3)))


def _bathroom(b: _Builder) -> None:
    r = b.rng
    b.try_wall(_toilet(b), tries=30)
    res = b.try_wall(_vanity(b), tries=30)
    if res is not None:
        _, wall, s = res
        b.try_wall(_board(b, mirror=True), walls=[wall], s=s, y0=r.uniform(1.05, 1.2), item=True)
    if r.random() < 0.7:
        b.try_wall(_bathtub(b), tries=20)
    for _ in range(int(r.integers(1, 3))):
        b.try_wall(_towel(b), y0=r.uniform(0.9, 1.2), item=True, tries=10)
    if r.random() < 0.5:
        b.try_free(_mat(b, r.uniform(0.5, 0.8), r.uniform(0.4, 0.6)), blocks=False)
    if r.random() < 0.3:
        b.try_wall(_cabinet(b, tall=False))
    _extras(b, ["plant", "bag", "box"], int(r.integers(0, 2)))


def _extras(b: _Builder, kinds: list[str], n: int) -> None:
    r = b.rng
    for _ in range(n):
        k = kinds[int(r.integers(len(kinds)))]
        if k == "box":
            obj = _boxes(b)
            if r.random() < 0.6:
                b.try_wall(obj, tries=10)
            else:
                b.try_free(obj)
        elif k == "bag":
            b.try_free(_bag(b))
        elif k == "plant":
            b.try_wall(_plant(b), tries=10)
        elif k == "shelves":
            sh = _shelves(b)
            b.try_wall(sh, y0=r.uniform(1.0, 1.5), item=True, tries=10)
        elif k == "cabinet":
            b.try_wall(_cabinet(b), tries=10)
        elif k == "otherfurniture":
            b.try_free(_otherfurniture(b))
    if r.random() < 0.12:  # a structural column / duct in a corner
        s = r.uniform(0.25, 0.5)
        o = _Obj(s, s)
        o.box(_C["otherstructure"], 0, 0, 0, s, b.hy, s, b.room_wall_color, key=0)
        corner = [(s / 2, s / 2), (b.wx - s / 2, s / 2), (s / 2, b.dz - s / 2),
                  (b.wx - s / 2, b.dz - s / 2)][int(r.integers(4))]  # fmt: skip
        if b.fits(b.footprint(corner, 0.0, s, s)):
            b.add(o, corner, 0.0)


_RECIPES: dict[str, Callable[[_Builder], None]] = {
    "bedroom": _bedroom,
    "living": _living,
    "kitchen": _kitchen,
    "office": _office,
    "bathroom": _bathroom,
}


def _make_scene(rng: np.random.Generator, kind: str | None = None) -> _Scene:
    if kind is None:
        kind = ROOM_TYPES[int(rng.choice(len(ROOM_TYPES), p=_ROOM_P))]
    b = _Builder(rng, kind)
    room = b.room()
    b.room_wall_color = room[0].color
    _openings(b)
    _RECIPES[kind](b)
    r = rng
    return _Scene(
        dims=(b.wx, b.hy, b.dz),
        room=room,
        objects=b.objects,
        ambient=float(r.uniform(0.42, 0.58)),
        light_pos=np.array(
            [r.uniform(0.25, 0.75) * b.wx, b.hy - 0.25, r.uniform(0.25, 0.75) * b.dz]
        ),
        light_power=float(r.uniform(0.45, 0.8)),
        light_range=float(r.uniform(2.5, 4.0)),
        sun_dir=_unit(np.array([r.uniform(-1, 1), r.uniform(-1.2, -0.3), r.uniform(-1, 1)])),
        sun_power=float(r.uniform(0.1, 0.35)),
        tint=np.clip(1 + r.uniform(-0.06, 0.06, 3), 0.9, 1.1),
        kind=kind,
    )


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


# ------------------------------------------------------------------------------------------------
# camera
# ------------------------------------------------------------------------------------------------


def _cam_rot(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera-to-world rotation ``3×3`` (camera: x right, y down, z forward; world: y up).

    yaw turns about the world vertical (forward = (sin yaw, 0, cos yaw)), pitch > 0 looks up,
    roll about the optical axis.
    """
    cy, sy = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cr, sr = math.cos(roll), math.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r0 = np.diag([-1.0, -1.0, 1.0])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return ry @ r0 @ rx @ rz


def _view_scores(scene: _Scene, xs: np.ndarray, zs: np.ndarray, yaws: np.ndarray) -> np.ndarray:
    """Score ``K×Y`` of looking along ``yaws`` (K×Y) from floor positions ``xs, zs`` (K,).

    Sum of the size weights of the objects within ±29° of the view direction and 0.7–6 m away,
    damped when a wall is closer than 2.5 m straight ahead.
    """
    wx, _, dz = scene.dims
    allb = np.array([o.aabb for o in scene.objects] or np.zeros((0, 4)))
    centres = np.stack([(allb[:, 0] + allb[:, 2]) / 2, (allb[:, 1] + allb[:, 3]) / 2], 1)
    weights = np.minimum((allb[:, 2] - allb[:, 0]) * (allb[:, 3] - allb[:, 1]) + 0.3, 1.5)
    ddx = centres[None, :, 0] - xs[:, None]
    ddz = centres[None, :, 1] - zs[:, None]
    dist = np.hypot(ddx, ddz)
    ang = np.arctan2(ddx, ddz)
    diff = (ang[:, None, :] - yaws[:, :, None] + math.pi) % (2 * math.pi) - math.pi
    vis = (np.abs(diff) < 0.5) & (dist[:, None, :] > 0.7) & (dist[:, None, :] < 6.0)
    score = (vis * weights).sum(-1)
    fx, fz = np.sin(yaws), np.cos(yaws)
    with np.errstate(divide="ignore", invalid="ignore"):
        ax = np.where(fx > 0, (wx - xs[:, None]) / fx, -xs[:, None] / fx)
        az = np.where(fz > 0, (dz - zs[:, None]) / fz, -zs[:, None] / fz)
    ahead = np.nan_to_num(np.minimum(np.abs(ax), np.abs(az)), nan=10.0, posinf=10.0)
    return (score + 0.2) * np.clip(ahead / 2.5, 0.1, 1.0)


def _sample_camera(scene: _Scene, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random pose: position (3,) and camera-to-world rotation (3×3).

    Candidate (position, yaw) pairs in the free floor space are scored by the furniture they
    see (objects within ±29° of the view direction, 0.7–6 m away, weighted by size) and by the
    free distance ahead; one of the best few is drawn, so views look into the furnished room.
    """
    wx, hy, dz = scene.dims
    blocking = np.array([o.aabb for o in scene.objects if o.blocks] or np.zeros((0, 4)))
    xs = zs = np.zeros(0)
    for margin in (0.45, 0.3, 0.15):
        xs = rng.uniform(margin, max(wx - margin, margin + 1e-3), 64)
        zs = rng.uniform(margin, max(dz - margin, margin + 1e-3), 64)
        inside = (
            (xs[:, None] > blocking[:, 0] - margin) & (xs[:, None] < blocking[:, 2] + margin)
            & (zs[:, None] > blocking[:, 1] - margin) & (zs[:, None] < blocking[:, 3] + margin)
        ).any(1)  # fmt: skip
        xs, zs = xs[~inside], zs[~inside]
        if xs.size:
            break
    if xs.size == 0:  # degenerate layout: stand in the middle
        xs, zs = np.array([wx / 2]), np.array([dz / 2])
    ny = 6
    yaws = rng.uniform(-math.pi, math.pi, (xs.size, ny))
    score = _view_scores(scene, xs, zs, yaws)
    flat = score.ravel()
    top = np.argsort(-flat)[:5]
    pick = int(top[int(rng.integers(top.size))])
    i, j = divmod(pick, ny)
    y = rng.uniform(1.2, 1.8)
    pitch = float(np.clip(rng.normal(-0.17, 0.1), -0.45, 0.12))
    roll = rng.uniform(-0.05, 0.05)
    return np.array([xs[i], min(y, hy - 0.3), zs[i]]), _cam_rot(float(yaws[i, j]), pitch, roll)


# ------------------------------------------------------------------------------------------------
# ray casting
# ------------------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _ray_grid(h: int, w: int) -> np.ndarray:
    """Camera-frame ray directions ``3×H×W`` float32 with z = 1 (so t is the z-depth)."""
    k = intrinsics((h, w))
    u = (np.arange(w, dtype=np.float64) - k[0, 2]) / k[0, 0]
    v = (np.arange(h, dtype=np.float64) - k[1, 2]) / k[1, 1]
    d = np.empty((3, h, w), _F32)
    d[0] = u[None, :]
    d[1] = v[:, None]
    d[2] = 1.0
    d.setflags(write=False)
    return d


@lru_cache(maxsize=8)
def _vignette(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(_F32)
    r2 = ((xx - (w - 1) / 2) / (w / 2)) ** 2 + ((yy - (h - 1) / 2) / (h / 2)) ** 2
    v = (r2 / 2).astype(_F32)
    v.setflags(write=False)
    return v


def _room_hits(dims, o: np.ndarray, inv: np.ndarray, d: np.ndarray):
    """Exit distance (z-depth) ``H×W`` float32 and face index ``H×W`` int16 for the room box."""
    t = []
    for k in range(3):
        lo, hi = -float(o[k]), dims[k] - float(o[k])
        t.append(np.maximum(lo * inv[k], hi * inv[k]))
    tx, ty, tz = t
    tyz = np.minimum(ty, tz)
    best = np.minimum(tx, tyz)
    pos_y = np.where(ty <= tz, 2 + (d[1] > 0), 4 + (d[2] > 0))
    face = np.where(tx <= tyz, (d[0] > 0).astype(np.int16), pos_y.astype(np.int16))
    return best, face.astype(np.int16)


def _hit_box(ox, oy, oz, dx, dy, dz, ix, iy, iz, hx, hy, hz) -> np.ndarray:
    """Slab test in the box frame (origin relative to the box centre); miss → inf."""
    t1 = (-hx - ox) * ix
    t2 = (hx - ox) * ix
    tn = np.minimum(t1, t2)
    tf = np.maximum(t1, t2)
    t1 = (-hy - oy) * iy
    t2 = (hy - oy) * iy
    np.maximum(tn, np.minimum(t1, t2), out=tn)
    np.minimum(tf, np.maximum(t1, t2), out=tf)
    t1 = (-hz - oz) * iz
    t2 = (hz - oz) * iz
    np.maximum(tn, np.minimum(t1, t2), out=tn)
    np.minimum(tf, np.maximum(t1, t2), out=tf)
    tn[(tn > tf) | (tn <= 1e-4)] = np.inf
    return tn


def _hit_cyl(ox, oy, oz, dx, dy, dz, iy, r, hh) -> np.ndarray:
    """Vertical cylinder (axis y, origin relative to its centre): nearest hit, miss → inf."""
    a = dx * dx + dz * dz
    bh = ox * dx + oz * dz
    c = ox * ox + oz * oz - r * r
    disc = bh * bh - a * c
    hit = disc >= 0
    ts = (-bh - np.sqrt(np.maximum(disc, 0))) / a
    ys = oy + ts * dy
    hit &= (ts > 1e-4) & (np.abs(ys) <= hh)
    out = np.where(hit, ts, np.float32(np.inf)).astype(_F32, copy=False)
    if abs(oy) > hh:  # the cap facing the camera is visible
        yc = hh if oy > hh else -hh
        tc = (yc - oy) * iy
        xc = ox + tc * dx
        zc = oz + tc * dz
        cap = (tc > 1e-4) & (xc * xc + zc * zc <= r * r) & ~hit
        out[cap] = tc[cap]
    return out


def _cast(scene: _Scene, o: np.ndarray, rot: np.ndarray, d: np.ndarray, inv: np.ndarray,
          k: np.ndarray):  # fmt: skip
    """Nearest hit per pixel: z-depth ``H×W`` float32 and primitive index ``H×W`` int16."""
    pk = scene.packed()
    best, pid = _room_hits(scene.dims, o, inv, d)
    _, h, w = d.shape
    corners = pk["corners"]
    if len(corners) == 0:
        return best, pid
    cam = (corners - o) @ rot  # (M, 8, 3) camera coordinates
    z = cam[..., 2]
    zmin, zmax = z.min(1), z.max(1)
    zs = np.maximum(z, 1e-3)
    u = k[0, 0] * cam[..., 0] / zs + k[0, 2]
    v = k[1, 1] * cam[..., 1] / zs + k[1, 2]
    umin, umax, vmin, vmax = u.min(1), u.max(1), v.min(1), v.max(1)
    near = 0.02
    order = np.argsort(zmin)
    prims = pk["prims"]
    of, f32 = o.astype(_F32), np.float32
    for m in order:
        if zmax[m] <= near:
            continue
        if zmin[m] <= near:
            r0, r1, c0, c1 = 0, h, 0, w
        else:
            c0, c1 = max(math.floor(umin[m]), 0), min(math.ceil(umax[m]) + 1, w)
            r0, r1 = max(math.floor(vmin[m]), 0), min(math.ceil(vmax[m]) + 1, h)
            if c0 >= c1 or r0 >= r1:
                continue
        bsub = best[r0:r1, c0:c1]
        if zmin[m] > near and bsub.max() <= zmin[m]:
            continue  # already covered by nearer surfaces
        p = prims[6 + m]
        oc = of - p.center.astype(_F32)
        dx, dy, dz = d[0, r0:r1, c0:c1], d[1, r0:r1, c0:c1], d[2, r0:r1, c0:c1]
        hx, hy, hz = (f32(x) for x in p.half)
        if p.kind == _CYL:
            t = _hit_cyl(oc[0], oc[1], oc[2], dx, dy, dz, inv[1, r0:r1, c0:c1], hx, hy)
        elif p.sin == 0.0 or p.cos == 0.0:  # axis aligned (possibly quarter-turned)
            if p.cos == 0.0:
                hx, hz = hz, hx
            t = _hit_box(oc[0], oc[1], oc[2], dx, dy, dz, inv[0, r0:r1, c0:c1],
                         inv[1, r0:r1, c0:c1], inv[2, r0:r1, c0:c1], hx, hy, hz)  # fmt: skip
        else:
            c, s = f32(p.cos), f32(p.sin)
            lx = c * dx - s * dz
            lz = s * dx + c * dz
            olx = c * oc[0] - s * oc[2]
            olz = s * oc[0] + c * oc[2]
            t = _hit_box(olx, oc[1], olz, lx, dy, lz, 1.0 / lx, inv[1, r0:r1, c0:c1], 1.0 / lz,
                         hx, hy, hz)  # fmt: skip
        closer = t < bsub
        np.copyto(bsub, t, where=closer)
        np.copyto(pid[r0:r1, c0:c1], np.int16(6 + m), where=closer)
    return best, pid


# ------------------------------------------------------------------------------------------------
# textures
# ------------------------------------------------------------------------------------------------


def _hash(a: np.ndarray, b: np.ndarray | int = 0) -> np.ndarray:
    """Integer hash of integer-valued arrays, float32 in [0, 1)."""
    h = a.astype(np.int64) * 73856093 ^ (np.asarray(b).astype(np.int64) * 19349663)
    h ^= h >> 13
    h *= 1274126177
    h ^= h >> 16
    return (h & 0xFFFF).astype(_F32) * _F32(1.0 / 65536)


def _noise(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Smooth band-limited 2-D pattern in about [−1, 1] (sum of three oblique sines)."""
    return (
        np.sin(1.71 * x + 0.93 * y) + np.sin(-0.87 * x + 2.13 * y + 1.3)
        + np.sin(2.91 * x - 1.37 * y + 4.1)
    ) * _F32(1 / 3)  # fmt: skip


def _apply_textures(alb: np.ndarray, emis: np.ndarray, texp: np.ndarray, pidx: np.ndarray,
                    u: np.ndarray, v: np.ndarray, hu_all: np.ndarray, hv_all: np.ndarray,
                    fax: np.ndarray, pk: dict) -> None:  # fmt: skip
    """Modulate albedo ``N×3`` (and emission ``N``) in place, texture by texture.

    u, v: face coordinates (metres, centred on the primitive); hu_all, hv_all: face half sizes;
    fax: face axis per pixel (0/1/2 box face normal axis, 3 cylinder side); all length N.
    """
    present = np.unique(pk["tex"][np.unique(pidx)])
    for code in present:
        ii = np.nonzero(texp == code)[0]
        if ii.size == 0:
            continue
        p = pidx[ii]
        uu, vv = u[ii], v[ii]
        off = np.take(pk["toff"], p, axis=0)
        if code == _T_PLAIN:
            alb[ii] *= (1 + 0.035 * _noise(uu * 2.5 + off[:, 0], vv * 2.5 + off[:, 1]))[:, None]
            continue
        hu, hv = hu_all[ii], hv_all[ii]
        c1 = alb[ii]
        c2 = np.take(pk["color2"], p, axis=0)
        sc = np.take(pk["scale"], p)
        o0, o1 = off[:, 0], off[:, 1]
        front = fax[ii] == 2
        if code == _T_STRIPES:
            coord = np.where(sc < 0, vv, uu)
            m = (coord / np.abs(sc) + o0) % 1 < 0.5
            out = np.where(m[:, None], c2, c1)
        elif code == _T_TILES:
            fu, fv = uu / sc + o0, vv / sc + o1
            ti, tj = np.floor(fu), np.floor(fv)
            var = 1 + 0.1 * (_hash(ti, tj) - 0.5)
            g = 0.02 / sc
            grout = ((fu - ti) < g) | ((fv - tj) < g)
            out = np.where(grout[:, None], c2, c1 * var[:, None])
        elif code == _T_FABRIC:
            n = _noise(uu * 5 + o0, vv * 5 + o1)
            fine = _hash(np.floor(uu * 180), np.floor(vv * 180)) - 0.5
            out = c1 * (1 + 0.09 * n + 0.07 * fine)[:, None]
        elif code == _T_WOOD:
            fv = vv / sc + o1
            row = np.floor(fv)
            shift = _hash(row, 7) * 3.0
            fu = (uu + shift) / 1.2
            seg = np.floor(fu)
            grain = np.sin(vv * 90.0 + 5.0 * _noise(uu * 0.8 + shift + o0, vv * 6 + row))
            var = 1 + 0.16 * (_hash(row, seg) - 0.5)
            mix = 0.28 * (0.5 + 0.5 * grain) ** 2
            out = (c1 + (c2 - c1) * mix[:, None]) * var[:, None]
            gap = (((fv - row) < 0.035) | ((fu - seg) < 0.004)) & (sc < 10)
            out[gap] *= 0.55
        elif code in (_T_DRAWERS, _T_DOORS):
            coord = (vv + hv) if code == _T_DRAWERS else (uu + hu)
            rel = coord % sc
            groove = (rel < 0.012) & front
            knob_pos = sc / 2 if code == _T_DRAWERS else 0.05
            other = uu if code == _T_DRAWERS else vv - hv * 0.2
            knob = front & (np.abs(rel - knob_pos) < 0.018) & (np.abs(other) < 0.05)
            out = c1.copy()
            out[groove] *= 0.45
            out[knob] = out[knob] * 0.3 + 0.25
        elif code == _T_DOOR:
            border = (np.abs(uu) > hu - 0.09) | (np.abs(vv) > hv - 0.09)
            mid = np.abs(vv - hv * 0.15) < 0.05
            out = c1.copy()
            out[front & ~border & ~mid] *= 0.88
            knob = front & (np.abs(uu - (hu - 0.08)) < 0.025) & (np.abs(vv + 0.05) < 0.025)
            out[knob] = c2[knob]
        elif code == _T_PICTURE:
            bw = np.minimum(0.05, 0.12 * np.minimum(hu, hv))
            frame = (np.abs(uu) > hu - bw) | (np.abs(vv) > hv - bw) | ~front
            f = 3.0 / sc
            n1 = 0.5 + 0.5 * _noise(uu * f + o0, vv * f + o1)
            n2 = 0.5 + 0.5 * _noise(vv * f * 1.7 + off[:, 2], uu * f * 1.3)
            cb = 1 - c1 * 0.8
            img = (c1 + (cb - c1) * n1[:, None]) * (0.7 + 0.4 * n2)[:, None]
            out = np.where(frame[:, None], c2, img)
        elif code == _T_WINDOW:
            frame = (np.abs(uu) > hu - 0.05) | (np.abs(vv) > hv - 0.05) | ~front
            frame |= (sc > 0.5) & ((np.abs(uu) < 0.025) | (np.abs(vv - hv * 0.2) < 0.025))
            sky = c1 + (1 - c1) * (np.clip(0.5 - vv / (2 * hv), 0, 1) * 0.8)[:, None]
            out = np.where(frame[:, None], c2, sky)
            emis[ii[frame]] = 0.0
        elif code == _T_BOOKS:
            fu = uu / sc + o0
            idx = np.floor(fu)
            col = np.stack([0.12 + 0.7 * _hash(idx, 1), 0.12 + 0.6 * _hash(idx, 2),
                            0.12 + 0.55 * _hash(idx, 3)], 1)  # fmt: skip
            col = col * 0.6 + c1 * 0.4
            col[(fu - idx) < 0.1] *= 0.6
            top = (vv + hv) > 2 * hv * (0.6 + 0.4 * _hash(idx, 4))
            out = np.where(top[:, None], c2, col)
        elif code == _T_SCREEN:
            bez = (np.abs(uu) > hu - 0.025) | (np.abs(vv) > hv - 0.025) | ~front
            on = emis[ii] > 0
            n1 = _noise(uu * 6 + o0, vv * 6 + o1)
            lit = np.stack([0.3 + 0.3 * n1, 0.45 + 0.2 * n1, 0.7 - 0.2 * n1], 1)
            dark = c1 * (1.1 + 0.5 * (uu / hu * 0.3 + vv / hv * 0.3))[:, None]
            img = np.where(on[:, None], lit, dark)
            out = np.where(bez[:, None], c2, img)
            emis[ii[bez]] = 0.0
        elif code == _T_BOARD:
            frame = (np.abs(uu) > hu - 0.025) | (np.abs(vv) > hv - 0.025) | ~front
            refl = 0.85 + 0.3 * (0.5 + 0.5 * _noise(uu * 1.5 + o0, vv * 1.5))
            flat = 0.97 + 0.03 * _noise(uu * 3, vv * 3)
            out = c1 * np.where(sc > 0.5, refl, flat)[:, None]
            out[frame] = c2[frame]
        elif code == _T_BLINDS:
            out = c1 * (0.72 + 0.35 * ((vv / 0.035 + o0) % 1))[:, None]
        elif code == _T_CURTAIN:
            out = c1 * (0.72 + 0.14 * (1 + np.sin(uu * (2 * np.pi / 0.14) + o0)))[:, None]
        else:
            out = c1
        alb[ii] = out


# ------------------------------------------------------------------------------------------------
# rendering
# ------------------------------------------------------------------------------------------------


def _boundary(sem: np.ndarray, inst: np.ndarray, pid: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """One-pixel boundary ``H×W`` uint8 0/1 on the nearer side of each discontinuity."""
    b = np.zeros(sem.shape, np.uint8)
    for axis in (0, 1):
        sl_a = (slice(None), slice(None, -1)) if axis else (slice(None, -1), slice(None))
        sl_b = (slice(None), slice(1, None)) if axis else (slice(1, None), slice(None))
        da, db = depth[sl_a], depth[sl_b]
        jump = np.abs(da - db) > 0.05 * np.minimum(da, db)
        e = (sem[sl_a] != sem[sl_b]) | (inst[sl_a] != inst[sl_b])
        e |= (pid[sl_a] != pid[sl_b]) & jump
        a_near = da <= db
        b[sl_a] |= e & a_near
        b[sl_b] |= e & ~a_near
    return b


@lru_cache(maxsize=4)
def _noise_tile(h: int, w: int) -> np.ndarray:
    """Fixed ``(H+64)×(W+64)×3`` float32 N(0,1) field; images use random crops of it (fast)."""
    t = np.random.default_rng(20240601).standard_normal((h + 64, w + 64, 3), dtype=_F32)
    t.setflags(write=False)
    return t


def _render(scene: _Scene, pos: np.ndarray, rot: np.ndarray, size: tuple[int, int],
            noise_rng: np.random.Generator | None, blur: bool = True) -> SynthSample:  # fmt: skip
    """Ray cast ``scene`` from ``pos`` (3,) with camera-to-world ``rot`` (3×3) at ``size``."""
    h, w = size
    k = intrinsics(size)
    dcam = _ray_grid(h, w)
    n = h * w
    rf = rot.astype(_F32)
    d = np.empty((3, h, w), _F32)
    xs, ys = dcam[0, 0], dcam[1, :, 0]
    for i in range(3):  # world ray directions, exploiting the separable camera grid
        d[i] = rf[i, 0] * xs[None, :] + (rf[i, 1] * ys + rf[i, 2])[:, None]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inv = 1.0 / d
        best, pid = _cast(scene, pos, rot, d, inv, k)
    pk = scene.packed()
    p = pid.ravel().astype(np.intp)
    t = best.ravel()
    valid = np.isfinite(t)
    all_valid = bool(valid.all())
    if not all_valid:  # cannot happen inside the closed room; keep arrays well defined
        t = np.where(valid, t, 0.0).astype(_F32)
    dx, dy, dz = d.reshape(3, n)
    o = pos.astype(_F32)
    px, py, pz = o[0] + t * dx, o[1] + t * dy, o[2] + t * dz  # world hit points
    g0, g1, g2 = px - np.take(pk["cx"], p), py - np.take(pk["cy"], p), pz - np.take(pk["cz"], p)
    c, s = np.take(pk["cos"], p), np.take(pk["sin"], p)
    qx = c * g0 - s * g2  # primitive-frame coordinates
    qy = g1
    qz = s * g0 + c * g2
    hx, hy, hz = np.take(pk["hx"], p), np.take(pk["hy"], p), np.take(pk["hz"], p)
    ax, ay, az = np.abs(qx) / hx, np.abs(qy) / hy, np.abs(qz) / hz
    m0 = (ax >= ay) & (ax >= az)
    m1 = ~m0 & (ay >= az)
    m2 = ~(m0 | m1)
    fax = m1.astype(np.int8) + 2 * m2.astype(np.int8)
    nl0, nl1, nl2 = m0 * np.sign(qx), m1 * np.sign(qy), m2 * np.sign(qz)
    u = np.where(m0, qz, qx)
    v = np.where(m1, qz, qy)
    hu = np.where(m0, hz, hx)
    hv = np.where(m1, hz, hy)
    cyl = np.nonzero(np.take(pk["kind"], p) == _CYL)[0]
    if cyl.size:
        cx, cy, cz = qx[cyl], qy[cyl], qz[cyl]
        rad = np.sqrt(cx * cx + cz * cz)
        r = hx[cyl]
        cap = ay[cyl] > rad / r
        rs = np.maximum(rad, 1e-6)
        nl0[cyl] = np.where(cap, 0, cx / rs)
        nl1[cyl] = np.where(cap, np.sign(cy), 0)
        nl2[cyl] = np.where(cap, 0, cz / rs)
        fax[cyl] = np.where(cap, 1, 3)
        u[cyl] = np.where(cap, cx, np.arctan2(cz, cx) * r)
        v[cyl] = np.where(cap, cz, cy)
        hu[cyl] = r
        hv[cyl] = np.where(cap, r, hy[cyl])
    # world normals, oriented towards the camera
    nw0 = c * nl0 + s * nl2
    nw1 = nl1
    nw2 = -s * nl0 + c * nl2
    sgn = 1 - 2 * (nw0 * dx + nw1 * dy + nw2 * dz > 0).astype(_F32)
    nw0 *= sgn
    nw1 = nw1 * sgn
    nw2 *= sgn
    normals = np.empty((n, 3), _F32)
    for i in range(3):  # camera frame: R^T n
        normals[:, i] = rf[0, i] * nw0 + rf[1, i] * nw1 + rf[2, i] * nw2

    sem = np.take(pk["cls"], p)
    inst = np.take(pk["inst"], p)
    if not all_valid:
        sem = np.where(valid, sem, IGNORE_INDEX).astype(np.uint8)

    # albedo (N×3) and emission
    alb = np.take(pk["color"], p, axis=0)
    emis = np.take(pk["emis"], p)
    _apply_textures(alb, emis, np.take(pk["tex"], p), p, u, v, hu, hv, fax, pk)

    # shading: ambient + point light + directional light
    lx, ly, lz = (float(x) for x in scene.light_pos)
    vx, vy, vz = lx - px, ly - py, lz - pz
    dist2 = vx * vx + vy * vy + vz * vz
    ndl = np.maximum(nw0 * vx + nw1 * vy + nw2 * vz, 0) / np.sqrt(dist2)
    shade = scene.ambient + scene.light_power * ndl / (1 + dist2 * (1 / scene.light_range**2))
    sx, sy, sz = (-float(x) for x in scene.sun_dir)
    shade += scene.sun_power * np.maximum(nw0 * sx + nw1 * sy + nw2 * sz, 0)
    ri = np.nonzero(p < 6)[0]
    if ri.size:  # soft darkening towards the room's edges and corners
        wx, hy_, dz_ = scene.dims
        ex = wx / 2 - np.abs(qx[ri])
        ey = hy_ / 2 - np.abs(qy[ri])
        ez = dz_ / 2 - np.abs(qz[ri])
        e = np.choose(fax[ri], [np.minimum(ey, ez), np.minimum(ex, ez), np.minimum(ex, ey)])
        shade[ri] *= 1 - 0.28 / (1 + (e * (1 / 0.3)) ** 2)
    fl = np.nonzero(p == 2)[0]
    sh = pk["shadow"]
    if fl.size and len(sh):  # contact shadows of grounded furniture on the floor
        x, z = px[fl], pz[fl]
        occ = np.ones(fl.size, _F32)
        for x0, z0, x1, z1 in sh.tolist():
            ddx = np.maximum(np.maximum(x0 - x, x - x1), 0)
            ddz = np.maximum(np.maximum(z0 - z, z - z1), 0)
            occ *= 1 - 0.45 / (1 + (ddx * ddx + ddz * ddz) * 50.0)
        shade[fl] *= occ
    light = shade * (1 - emis) + 1.15 * emis
    rng = noise_rng
    if rng is not None:
        light *= 1 - rng.uniform(0.1, 0.35) * _vignette(h, w).ravel()
        light *= rng.uniform(0.88, 1.12)
    alb *= light[:, None]
    alb *= (scene.tint * 255).astype(_F32)
    img = alb.reshape(h, w, 3)
    if rng is not None:
        if blur and rng.random() < 0.6:
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 0.9))
        sigma = rng.uniform(1.0, 3.5)
        oy_, ox_ = rng.integers(0, 64, 2)
        img += _noise_tile(h, w)[oy_ : oy_ + h, ox_ : ox_ + w] * _F32(sigma)
    img += 0.5
    np.clip(img, 0, 255, out=img)
    img8 = img.astype(np.uint8)

    depth = best if all_valid else np.where(np.isfinite(best), best, 0).astype(_F32)
    sem2 = sem.reshape(h, w)
    bnd = _boundary(sem2, inst.reshape(h, w), pid, depth)
    return SynthSample(img8, sem2, depth, normals.reshape(h, w, 3), bnd, k)


def render_sample(seed: int, size: tuple[int, int] = (240, 320), noise: bool = True,
                  blur: bool = True, room: str | None = None) -> SynthSample:  # fmt: skip
    """Render one random room view; the same ``seed`` gives identical arrays.

    size: ``(H, W)``. noise: photometric variation (exposure, vignetting) and Gaussian sensor noise.
    blur: random slight Gaussian blur (only when ``noise``). room: one of ``ROOM_TYPES`` or None
    (random). Returns a ``SynthSample`` (RGB ``H×W×3`` uint8, semseg ``H×W`` uint8, depth ``H×W``
    float32, normals ``H×W×3`` float32, boundary ``H×W`` uint8, intrinsics ``3×3`` float32).
    """
    seed = int(seed) % (1 << 63)
    rng = np.random.default_rng(seed)
    scene = _make_scene(rng, room)
    pos, rot = _sample_camera(scene, rng)
    noise_rng = np.random.default_rng([seed, 1]) if noise else None
    return _render(scene, pos, rot, (int(size[0]), int(size[1])), noise_rng, blur)


# ------------------------------------------------------------------------------------------------
# dataset writer
# ------------------------------------------------------------------------------------------------


def _atomic_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _atomic_png(path: Path, img: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise RuntimeError(f"{path}: PNG encoding failed")
    _atomic_bytes(path, buf.tobytes())


def _atomic_npy(path: Path, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    _atomic_bytes(path, buf.getvalue())


def encode_normals(normals: np.ndarray) -> np.ndarray:
    """``H×W×3`` float normals → ``H×W×3`` uint8 RGB, v = round((n+1)/2·255)."""
    return np.clip(np.rint((normals + 1.0) * 127.5), 0, 255).astype(np.uint8)


def _write_one(args: tuple[str, int, int, tuple[int, int], bool]) -> int:
    root, i, s, size, noise = args
    out = Path(root)
    smp = render_sample(s, size, noise=noise)
    sid = f"synth_{i:06d}"
    _atomic_png(out / "images" / f"{sid}.png", cv2.cvtColor(smp.image_rgb, cv2.COLOR_RGB2BGR))
    seg = np.where(smp.semseg == IGNORE_INDEX, 0, smp.semseg.astype(np.int16) + 1).astype(np.uint8)
    _atomic_png(out / "segmentation" / f"{sid}.png", seg)
    _atomic_npy(out / "depth" / f"{sid}.npy", smp.depth.astype(_F32))
    _atomic_png(out / "normals" / f"{sid}.png", encode_normals(smp.normals)[..., ::-1].copy())
    _atomic_png(out / "edge" / f"{sid}.png", (smp.boundary * 255).astype(np.uint8))
    return i


def write_dataset(out: Path, n: int, size: tuple[int, int], seed: int, val_fraction: float = 0.2,
                  progress: Callable[[int, int], None] | None = None, noise: bool = True,
                  workers: int | None = None) -> Path:  # fmt: skip
    """Render ``n`` samples into the NYUD "NYUDv2" layout under ``out`` and return ``out``.

    Files (ids ``synth_000000``...): ``images/{id}.png`` (RGB image, stored BGR by cv2),
    ``segmentation/{id}.png`` uint8 (0 = unlabeled, class+1), ``depth/{id}.npy`` float32 metres
    ``H×W`` (0 = invalid), ``normals/{id}.png`` (RGB channels = camera xyz, v = round((n+1)/2·255),
    decode n = 2v/255 − 1), ``edge/{id}.png`` 0/255, ``gt_sets/{train,val}.txt``. Sample ``i`` uses
    ``sample_seed(seed, i)``; the split is a seeded permutation (``round(n·val_fraction)`` val ids,
    at least one of each when n ≥ 2). Every file is written atomically. ``progress(done, n)`` is
    called after each sample. ``workers``: processes (default 2 when n ≥ 64 and 2+ CPUs, else 1).
    """
    out = Path(out)
    for sub in ("images", "segmentation", "depth", "normals", "edge", "gt_sets"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    size = (int(size[0]), int(size[1]))
    jobs = [(str(out), i, sample_seed(seed, i), size, noise) for i in range(n)]
    if workers is None:
        workers = 2 if n >= 64 and (os.cpu_count() or 1) >= 2 else 1
    done = 0
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(_write_one, jobs, chunksize=4):
                done += 1
                if progress is not None:
                    progress(done, n)
    else:
        for job in jobs:
            _write_one(job)
            done += 1
            if progress is not None:
                progress(done, n)
    ids = [f"synth_{i:06d}" for i in range(n)]
    n_val = int(round(n * val_fraction))
    if n >= 2:
        n_val = min(max(n_val, 1 if val_fraction > 0 else 0), n - 1)
    perm = np.random.default_rng([int(seed) % (1 << 63), 2]).permutation(n)
    val = sorted(ids[j] for j in perm[:n_val])
    train = sorted(ids[j] for j in perm[n_val:])
    _atomic_bytes(out / "gt_sets" / "train.txt", "".join(f"{i}\n" for i in train).encode())
    _atomic_bytes(out / "gt_sets" / "val.txt", "".join(f"{i}\n" for i in val).encode())
    return out


# ------------------------------------------------------------------------------------------------
# walkthrough video
# ------------------------------------------------------------------------------------------------


def _loop(scene: _Scene, rng: np.random.Generator) -> tuple[float, ...]:
    """Pick an elliptical camera loop ``(cx, cz, rx, rz, wobble, phase)`` in free floor space.

    Random ellipses are tested against the furniture footprints (0.35 m clearance); the largest
    collision-free one wins. If none is free, the cheapest one is used and the furniture it
    crosses is removed from the scene.
    """
    wx, _, dz = scene.dims
    ts = np.linspace(0, 1, 180, endpoint=False)
    ab = np.array([o.aabb for o in scene.objects if o.blocks] or np.zeros((0, 4)))
    blocking = [o for o in scene.objects if o.blocks]
    best_free, best_cost = None, None
    for _ in range(300):
        cx = wx / 2 + rng.uniform(-0.3, 0.3) * wx
        cz = dz / 2 + rng.uniform(-0.3, 0.3) * dz
        rx = min(rng.uniform(0.2, 0.4) * wx, cx - 0.5, wx - cx - 0.5)
        rz = min(rng.uniform(0.2, 0.4) * dz, cz - 0.5, dz - cz - 0.5)
        if rx < 0.2 or rz < 0.2:
            continue
        wob, ph = rng.uniform(0.0, 0.12), rng.uniform(0, 2 * math.pi)
        rad = 1 + wob * np.sin(2 * np.pi * 2 * ts + ph)
        xs = cx + rx * rad * np.cos(2 * np.pi * ts)
        zs = cz + rz * rad * np.sin(2 * np.pi * ts)
        m = 0.35
        hit = ((xs[:, None] > ab[:, 0] - m) & (xs[:, None] < ab[:, 2] + m)
               & (zs[:, None] > ab[:, 1] - m) & (zs[:, None] < ab[:, 3] + m)).any(0)  # fmt: skip
        params = (cx, cz, rx, rz, wob, ph)
        if not hit.any():
            if best_free is None or rx + rz > best_free[0]:
                best_free = (rx + rz, params)
        else:
            area = (ab[hit, 2] - ab[hit, 0]) * (ab[hit, 3] - ab[hit, 1])
            cost = float((area + 0.2).sum())
            if best_cost is None or cost < best_cost[0]:
                best_cost = (cost, params, [blocking[i] for i in np.nonzero(hit)[0]])
    if best_free is not None and (best_free[0] > 0.8 or best_cost is None):
        return best_free[1]
    if best_cost is None:  # tiny room: a small loop around the centre
        return (wx / 2, dz / 2, 0.2, 0.2, 0.0, 0.0)
    _, params, hit_objs = best_cost
    scene.objects = [o for o in scene.objects if not any(o is x for x in hit_objs)]
    scene._packed = None
    return params


def render_walkthrough(out: Path, seconds: float = 6, fps: int = 15,
                       size: tuple[int, int] = (240, 320), seed: int = 0,
                       noise: bool = False) -> Path:  # fmt: skip
    """Render a smooth camera loop through one room to an mp4 (fourcc 'mp4v') and return ``out``.

    The camera circles an ellipse through the room's free floor space (see ``_loop``) at a gently
    varying height; its yaw follows the furniture (smoothed along the loop) and its pitch
    oscillates slightly. ``round(seconds·fps)`` frames of ``size = (H, W)``; written to a
    temporary file, read back with ``cv2.VideoCapture`` to check the frame count, then moved to
    ``out``.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    h, w = int(size[0]), int(size[1])
    rng = np.random.default_rng([int(seed) % (1 << 63), 3])
    scene = _make_scene(rng)
    cx, cz, rx, rz, wob, ph = _loop(scene, rng)
    n = max(1, int(round(seconds * fps)))
    # per frame: the yaw that sees the most furniture (scores smoothed along the loop), then the
    # view direction itself smoothed circularly so that the camera turns gently
    a = 2 * np.pi * np.arange(n) / n
    rad = 1 + wob * np.sin(2 * a + ph)
    xs, zs = cx + rx * rad * np.cos(a), cz + rz * rad * np.sin(a)
    cand = np.linspace(-np.pi, np.pi, 48, endpoint=False)
    scores = _view_scores(scene, xs, zs, np.broadcast_to(cand, (n, cand.size)).copy())
    scores = scores + 0.3 * np.cos(cand[None, :] - np.arctan2(cx - xs, cz - zs)[:, None])
    lag = np.arange(n)
    kern = np.exp(-0.5 * (np.minimum(lag, n - lag) / max(n / 10, 1.0)) ** 2)
    kf = np.fft.fft(kern)[:, None]
    scores = np.real(np.fft.ifft(np.fft.fft(scores, axis=0) * kf, axis=0))
    best = cand[np.argmax(scores, 1)]
    vec = np.stack([np.cos(best), np.sin(best)], 1)
    vec = np.real(np.fft.ifft(np.fft.fft(vec, axis=0) * kf, axis=0))
    yaws = np.arctan2(vec[:, 1], vec[:, 0])
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp.mp4")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"{tmp}: cv2.VideoWriter (mp4v) failed to open")
    ph2, ph3 = rng.uniform(0, 2 * math.pi, 2)
    try:
        for i in range(n):
            yaw = float(yaws[i]) + 0.2 * math.sin(2 * a[i] + ph2)
            pitch = -0.15 + 0.06 * math.sin(3 * a[i] + ph3)
            y = min(1.5 + 0.1 * math.sin(2 * a[i]), scene.dims[1] - 0.3)
            rot = _cam_rot(yaw, pitch, 0.02 * math.sin(a[i]))
            nrng = np.random.default_rng([int(seed) % (1 << 63), 4, i]) if noise else None
            smp = _render(scene, np.array([xs[i], y, zs[i]]), rot, (h, w), nrng, blur=False)
            writer.write(cv2.cvtColor(smp.image_rgb, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    cap = cv2.VideoCapture(str(tmp))
    frames = 0
    try:
        while cap.isOpened():
            ok, _ = cap.read()
            if not ok:
                break
            frames += 1
    finally:
        cap.release()
    if frames != n:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"{out}: wrote {n} frames but read back {frames}")
    os.replace(tmp, out)
    return out
