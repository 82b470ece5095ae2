"""SynthIndoor room layout: objects assembled from parts, placed without overlaps.

``Assembly`` collects the boxes and cylinders of one object in its local frame; ``RoomBuilder``
draws the room size and its shell (walls, floor, ceiling) and places assemblies against a
``Wall`` or freely on the floor, rejecting overlaps with earlier objects, doors and wall items.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from mtlsi_edge.data.synthindoor.scene import (
    CLASS_ID,
    PALETTE,
    Part,
    Placed,
    Primitive,
    RoomFace,
    Shape,
    Tex,
    Wall,
)

FIRST_OBJECT_INSTANCE = 16  # instance ids 1..6 are the room faces


class Box(NamedTuple):
    """A box part in its assembly's frame: base centred at (x, z) on height ``y0``, size w×h×d."""

    x: float
    y0: float
    z: float
    w: float
    h: float
    d: float


class Cylinder(NamedTuple):
    """A vertical cylinder part: base centred at (x, z) on height ``y0``, radius r, height h."""

    x: float
    y0: float
    z: float
    r: float
    h: float


class Finish(NamedTuple):
    """How a part looks and groups: colour, ``Tex`` texture, texture colour and scale, emission,
    and ``key`` (parts of one assembly sharing a key form one instance). ``color2`` is the
    texture's second colour; None: a darker ``color``."""

    color: np.ndarray
    tex: int = Tex.PLAIN
    color2: np.ndarray | None = None
    scale: float = 1.0
    emis: float = 0.0
    key: int = 0


class Assembly:
    """Object under construction in its local frame (x along the width, y up, back at +z).

    ``add_part`` puts a ``Box`` or ``Cylinder`` part with its ``Finish`` into it; ``cls`` is a
    NYUD-40 class name. ``box`` and ``cyl`` are the recipes' shorthand for the same, with the
    records' fields flattened into one positional list (the records check the count and names).
    """

    def __init__(self, w: float, d: float):
        self.w, self.d = w, d
        self.parts: list[Part] = []
        self.height = 0.0

    def add_part(self, cls: str, shape: Box | Cylinder, finish: Finish) -> None:
        """Add one part; the assembly's height grows to its top."""
        c2 = finish.color * 0.55 if finish.color2 is None else finish.color2
        x, y0, z, h = shape.x, shape.y0, shape.z, shape.h
        if isinstance(shape, Box):
            kind, half = Shape.BOX, (shape.w / 2, h / 2, shape.d / 2)
        else:
            kind, half = Shape.CYLINDER, (shape.r, h / 2, shape.r)
        self.parts.append(Part(kind, (x, y0 + h / 2, z), half, CLASS_ID[cls], finish.color, c2,
                               finish.tex, finish.scale, finish.emis, finish.key))  # fmt: skip
        self.height = max(self.height, y0 + h)

    def box(self, cls: str, *spec, **finish) -> None:
        """``box(cls, x, y0, z, w, h, d, color, tex=PLAIN, color2=None, scale=1, emis=0, key=0)``:
        ``add_part(cls, Box(x, y0, z, w, h, d), Finish(color, ...))``."""
        self.add_part(cls, Box(*spec[:6]), Finish(*spec[6:], **finish))

    def cyl(self, cls: str, *spec, **finish) -> None:
        """``cyl(cls, x, y0, z, r, h, color, tex=PLAIN, color2=None, scale=1, emis=0, key=0)``:
        ``add_part(cls, Cylinder(x, y0, z, r, h), Finish(color, ...))``."""
        self.add_part(cls, Cylinder(*spec[:5]), Finish(*spec[5:], **finish))


def _aabb_overlap(a, b, margin: float = 0.0) -> bool:
    return (
        a[0] < b[2] + margin and b[0] < a[2] + margin and a[1] < b[3] + margin
        and b[1] < a[3] + margin
    )  # fmt: skip


class RoomBuilder:
    """Random room layout: walls, openings, furniture placed without overlaps."""

    def __init__(self, rng: np.random.Generator, kind: str):
        self.rng = rng
        self.kind = kind
        if kind == "bathroom":
            wx, dz = rng.uniform(2.2, 3.2), rng.uniform(2.4, 3.6)
        elif kind == "living":
            wx, dz = rng.uniform(3.8, 6.0), rng.uniform(4.0, 6.5)
        elif kind == "bedroom":
            wx, dz = rng.uniform(3.2, 4.8), rng.uniform(3.4, 5.2)
        else:
            wx, dz = rng.uniform(3.0, 5.5), rng.uniform(3.2, 6.0)
        if rng.random() < 0.5:
            wx, dz = dz, wx
        self.width, self.depth, self.height = float(wx), float(dz), float(rng.uniform(2.4, 3.0))
        self.objects: list[Placed] = []
        self.blocked: list[tuple[float, float, float, float]] = []
        # per wall: occupied (s0, s1, y0, y1) rectangles, s along the wall
        self.wall_rects: dict[int, list[tuple[float, float, float, float]]] = {w: [] for w in Wall}
        self.next_inst = FIRST_OBJECT_INSTANCE
        self.room_wall_color = np.ones(3)

    # -- colours --------------------------------------------------------------------------------
    def color(self, name: str, jitter: float = 0.12) -> np.ndarray:
        choices = PALETTE[name]
        c = np.array(choices[self.rng.integers(len(choices))], np.float64) / 255.0
        c = c * self.rng.uniform(1 - jitter, 1 + jitter) * self.rng.uniform(0.95, 1.05, 3)
        return np.clip(c, 0.02, 1.0)

    # -- geometry helpers ------------------------------------------------------------------------
    def wall_len(self, wall: int) -> float:
        return self.width if wall in (Wall.Z_LO, Wall.Z_HI) else self.depth

    def wall_pose(self, wall: int, s: float, depth: float, offset: float = 0.0):
        """World (x, z) centre and yaw of an object with its back against ``wall`` at ``s``."""
        # s runs along the object's local +x: walls are walked anticlockwise seen from above
        wx, dz = self.width, self.depth
        if wall == Wall.Z_LO:
            start, tangent, inward, yaw = (wx, 0.0), (-1.0, 0.0), (0.0, 1.0), math.pi
        elif wall == Wall.X_HI:
            start, tangent, inward, yaw = (wx, dz), (0.0, -1.0), (-1.0, 0.0), math.pi / 2
        elif wall == Wall.Z_HI:
            start, tangent, inward, yaw = (0.0, dz), (1.0, 0.0), (0.0, -1.0), 0.0
        else:
            start, tangent, inward, yaw = (0.0, 0.0), (0.0, 1.0), (1.0, 0.0), -math.pi / 2
        k = depth / 2 + offset
        x = start[0] + s * tangent[0] + inward[0] * k
        z = start[1] + s * tangent[1] + inward[1] * k
        return (x, z), yaw

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
        if (aabb[0] < -eps or aabb[1] < -eps or aabb[2] > self.width + eps
                or aabb[3] > self.depth + eps):  # fmt: skip
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
    def add(self, obj: Assembly, pos, yaw: float, blocks: bool = True, grounded: bool = True,
            y_base: float = 0.0) -> Placed:  # fmt: skip
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
                Primitive(
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
        placed = Placed(self.footprint(pos, yaw, obj.w, obj.d), y_base + obj.height, prims,
                         blocks, grounded)  # fmt: skip
        self.objects.append(placed)
        return placed

    def try_wall(self, obj: Assembly, walls=None, tries: int = 25, s: float | None = None,
                 y0: float = 0.0, offset: float = 0.0, item: bool = False,
                 margin: float = 0.05):  # fmt: skip
        """Place ``obj`` with its back on a wall; ``item`` = wall-hung (no floor footprint)."""
        walls = list(Wall) if walls is None else list(walls)
        for _ in range(tries if s is None else 1):
            wall = walls[int(self.rng.integers(len(walls)))]
            length = self.wall_len(wall)
            if obj.w + 2 * margin > length:
                continue
            if s is None:
                along = self.rng.uniform(obj.w / 2 + margin, length - obj.w / 2 - margin)
            else:
                along = s
            s0, s1 = along - obj.w / 2, along + obj.w / 2  # extent along the wall
            if s0 < 0 or s1 > length:
                continue
            pos, yaw = self.wall_pose(wall, along, obj.d, offset)
            aabb = self.footprint(pos, yaw, obj.w, obj.d)
            if not item and not self.fits(aabb):
                continue
            if y0 + obj.height > self.height - 0.02:
                continue
            if not self.wall_free(wall, s0, s1, y0, y0 + obj.height):
                continue
            placed = self.add(obj, pos, yaw, blocks=not item, grounded=not item and y0 == 0,
                              y_base=y0)  # fmt: skip
            self.wall_rects[wall].append((s0, s1, y0, y0 + obj.height))
            return placed, wall, along
        return None

    def try_free(self, obj: Assembly, yaw: float | None = None, tries: int = 25, region=None,
                 blocks: bool = True, ignore=()) -> Placed | None:  # fmt: skip
        for _ in range(tries):
            x0, z0, x1, z1 = region or (0.0, 0.0, self.width, self.depth)
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
    def shell(self) -> list[Primitive]:
        """The six room faces (``RoomFace`` order): wall, floor and ceiling materials."""
        rng = self.rng
        wall_col = self.color("wall", 0.08)
        wall_tex, wall2 = Tex.PLAIN, wall_col * 0.9
        wall_scale = 1.0
        if self.kind == "bathroom":
            wall_tex, wall_col, wall_scale = Tex.TILES, self.color("white"), rng.uniform(0.15, 0.3)
            wall2 = wall_col * 0.82
        elif rng.random() < 0.15:
            wall_tex, wall2, wall_scale = Tex.STRIPES, wall_col * rng.uniform(0.8, 0.92), 0.12
        kind = self.kind
        floor_draw = rng.random()
        if kind in ("bathroom", "kitchen") and floor_draw < 0.8:
            floor = (self.color("floor_tile"), Tex.TILES, rng.uniform(0.3, 0.6))
        elif floor_draw < 0.55:
            floor = (self.color("floor_wood"), Tex.WOOD, rng.uniform(0.1, 0.2))
        elif floor_draw < 0.8:
            floor = (self.color("carpet"), Tex.FABRIC, 1.0)
        else:
            floor = (self.color("floor_tile"), Tex.TILES, rng.uniform(0.3, 0.6))
        ceil_col = self.color("ceiling", 0.04)
        c = np.array([self.width / 2, self.height / 2, self.depth / 2])
        half = np.array([self.width / 2, self.height / 2, self.depth / 2])
        faces = []
        for face in RoomFace:
            if face == RoomFace.FLOOR:
                cls, col, tex, sc = CLASS_ID["floor"], floor[0], floor[1], floor[2]
                col2 = col * 0.55 if tex == Tex.WOOD else col * 0.75
            elif face == RoomFace.CEILING:
                cls, col, tex, sc, col2 = CLASS_ID["ceiling"], ceil_col, Tex.PLAIN, 1.0, ceil_col
            else:
                cls, col, tex, sc, col2 = CLASS_ID["wall"], wall_col, wall_tex, wall_scale, wall2
            faces.append(
                Primitive(
                    Shape.BOX,
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
                    rng.uniform(-50, 50, 3),
                )  # fmt: skip
            )
        return faces


