"""SynthIndoor scene description: named constants, primitive types and the scene dataclasses.

A scene is a room box (six ``RoomFace`` primitives, always first) plus placed objects made of
boxes and vertical cylinders (``Shape``), each with a NYUD-40 class, an instance id and a
procedural texture (``Tex``). ``Scene.packed`` turns it into the arrays the ray caster reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from mtlsi_edge.tasks import NYUD_CLASSES

CLASS_ID = {name: i for i, name in enumerate(NYUD_CLASSES)}  # NYUD-40 class name -> index
ROOM_TYPES = ("bedroom", "living", "kitchen", "office", "bathroom")
ROOM_TYPE_PROBS = (0.26, 0.26, 0.18, 0.2, 0.1)
FOCAL_AT_640 = 518.8  # NYU Kinect focal length at 640×480


class Shape(IntEnum):
    """Geometric kind of a primitive."""

    BOX = 0  # possibly rotated about the vertical axis
    CYLINDER = 1  # vertical axis; half extents (r, h/2, r)


class RoomFace(IntEnum):
    """The six room-box faces; they are primitives 0..5 of every scene, in this order."""

    X_LO = 0
    X_HI = 1
    FLOOR = 2
    CEILING = 3
    Z_LO = 4
    Z_HI = 5


N_ROOM_FACES = len(RoomFace)  # primitive index >= N_ROOM_FACES: furniture


class Wall(IntEnum):
    """The four walls objects are placed against, numbered going round the room."""

    Z_LO = 0  # z = 0
    X_HI = 1  # x = Wx
    Z_HI = 2  # z = Dz
    X_LO = 3  # x = 0

    def turned(self, quarter_turns: int) -> Wall:
        """The wall ``quarter_turns`` further round the room (2: the opposite wall)."""
        return Wall((self + quarter_turns) % len(Wall))


class Tex(IntEnum):
    """Procedural texture of a primitive (see ``textures.apply_textures``)."""

    PLAIN = 0
    STRIPES = 1
    TILES = 2
    FABRIC = 3
    WOOD = 4
    DRAWERS = 5
    DOORS = 6
    DOOR = 7
    PICTURE = 8
    WINDOW = 9
    BOOKS = 10
    SCREEN = 11
    BOARD = 12
    BLINDS = 13
    CURTAIN = 14


SOLID_WOOD = 100.0  # Tex.WOOD scale large enough that no plank gaps are drawn

# base colours (RGB 0..255) by material
PALETTE: dict[str, list[tuple[int, int, int]]] = {
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
    intrinsics: np.ndarray = field(default_factory=lambda: np.eye(3, dtype=np.float32))


def intrinsics(size: tuple[int, int]) -> np.ndarray:
    """NYU-like pinhole matrix ``3×3`` float32 for ``size = (H, W)``: fx = fy = 518.8·W/640."""
    h, w = size
    f = FOCAL_AT_640 * w / 640.0
    return np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]], np.float32)


def sample_seed(seed: int, i: int) -> int:
    """Seed of sample ``i`` of a dataset generated with ``seed`` (``seed·1000003 + i``)."""
    return int(seed) * 1_000_003 + int(i)


@dataclass
class Part:
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
class Primitive:
    """A primitive in world coordinates (rotated by yaw about its centre's vertical axis)."""

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
    tex_offset: np.ndarray  # (3,) texture offset

    def corners(self) -> np.ndarray:
        """``8×3`` world corners of a bounding box of the primitive."""
        sx = np.array([-1, 1, -1, 1, -1, 1, -1, 1], np.float64)
        sy = np.array([-1, -1, 1, 1, -1, -1, 1, 1], np.float64)
        sz = np.array([-1, -1, -1, -1, 1, 1, 1, 1], np.float64)
        hx, hy, hz = self.half
        lx, ly, lz = sx * hx, sy * hy, sz * hz
        if self.kind == Shape.BOX:
            wx = self.cos * lx + self.sin * lz
            wz = -self.sin * lx + self.cos * lz
        else:
            wx, wz = lx, lz
        return np.stack([wx, ly, wz], 1) + self.center


@dataclass
class Placed:
    """A placed object: its floor footprint AABB and its primitives."""

    aabb: tuple[float, float, float, float]  # x0, z0, x1, z1
    height: float
    prims: list[Primitive]
    blocks: bool  # camera and furniture may not overlap it (mats do not block)
    grounded: bool  # casts a contact shadow on the floor


@dataclass
class Scene:
    """A furnished room with its lights; ``faces`` are indexed by ``RoomFace``."""

    dims: tuple[float, float, float]  # Wx, Hy, Dz (room spans [0,Wx]×[0,Hy]×[0,Dz])
    faces: list[Primitive]  # the six room faces, in RoomFace order
    objects: list[Placed]
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
        int8, ``cls`` uint8, ``inst`` int32, ``color color2 tex_offset`` ``P×3`` float32;
        ``prims`` the list itself; ``corners`` ``(P−N_ROOM_FACES)×8×3`` float64 (furniture
        only); ``shadow`` ``S×4`` floor footprints of grounded objects.
        """
        if self._packed is None:
            prims = self.faces + [p for o in self.objects for p in o.prims]
            f = np.float32
            center = np.array([p.center for p in prims], f)
            half = np.array([p.half for p in prims], f)
            packed = {
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
                "tex_offset": np.array([p.tex_offset for p in prims], f),
                "prims": prims,
                "corners": np.stack([p.corners() for p in prims[N_ROOM_FACES:]])
                if len(prims) > N_ROOM_FACES
                else np.zeros((0, 8, 3)),
                "shadow": np.array(
                    [o.aabb for o in self.objects if o.grounded] or np.zeros((0, 4)), f
                ).reshape(-1, 4),
            }
            for i, k in enumerate("xyz"):
                packed["c" + k] = np.ascontiguousarray(center[:, i])
                packed["h" + k] = np.ascontiguousarray(half[:, i])
            self._packed = packed
        return self._packed

    def remove(self, objects: list[Placed]) -> None:
        """Remove ``objects`` (by identity) from the scene and drop the cached packed arrays."""
        self.objects = [o for o in self.objects if not any(o is x for x in objects)]
        self._packed = None


