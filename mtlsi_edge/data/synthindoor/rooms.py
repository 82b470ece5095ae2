"""SynthIndoor room recipes: what goes where in each room type, and ``make_scene``.

Each recipe (bedroom, living room, kitchen, office, bathroom) places furniture from
``furniture`` with a ``RoomBuilder``: anchor pieces first (bed, sofa, counter, desks), then
pieces arranged around them (night stands, coffee table, chairs), then random extras and
wall items. Every random draw comes from the builder's generator, in a fixed order, so a seed
always gives the same room.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from mtlsi_edge.data.synthindoor import furniture
from mtlsi_edge.data.synthindoor.layout import Assembly, RoomBuilder
from mtlsi_edge.data.synthindoor.scene import (
    ROOM_TYPE_PROBS,
    ROOM_TYPES,
    Placed,
    RoomFace,
    Scene,
    Wall,
)


def _chairs_around(room: RoomBuilder, table: Placed, n: int) -> None:
    rng = room.rng
    x0, z0, x1, z1 = table.aabb
    cx, cz = (x0 + x1) / 2, (z0 + z1) / 2
    sides = [(0, -1), (0, 1), (-1, 0), (1, 0)]
    rng.shuffle(sides)
    col = room.color(str(rng.choice(["wood", "dark", "white"])))
    for sx, sz in sides[:n]:
        chair = furniture.chair(room, col)
        px = cx + sx * ((x1 - x0) / 2 + 0.26) + (rng.uniform(-0.15, 0.15) if sz else 0)
        pz = cz + sz * ((z1 - z0) / 2 + 0.26) + (rng.uniform(-0.15, 0.15) if sx else 0)
        yaw = math.atan2(sx, sz) + rng.uniform(-0.3, 0.3)  # front (−z local) faces the table
        aabb = room.footprint((px, pz), yaw, chair.w, chair.d)
        if room.fits(aabb, margin=0.0):
            room.add(chair, (px, pz), yaw)


def _openings(room: RoomBuilder) -> None:
    rng = room.rng
    door = furniture.door(room)
    res = room.try_wall(door, tries=30, item=True)
    if res is not None:
        _, wall, s = res
        pos, yaw = room.wall_pose(wall, s, 0.9, 0.0)
        room.blocked.append(room.footprint(pos, yaw, door.w + 0.1, 0.9))
    for _ in range(int(rng.choice([0, 1, 1, 2, 2]))):
        sill = rng.uniform(0.75, 1.0)
        h = min(room.height - sill - 0.2, rng.uniform(1.0, 1.5))
        win, y0 = furniture.window(room, h, sill)
        room.try_wall(win, y0=y0, item=True, tries=15)


def _wall_items(room: RoomBuilder, n: int) -> None:
    rng = room.rng
    for _ in range(n):
        pic = furniture.picture(room)
        h = pic.height
        room.try_wall(pic, y0=rng.uniform(1.35, 1.85) - h / 2, item=True, tries=10)


def _bedroom(room: RoomBuilder) -> None:
    rng = room.rng
    bed = furniture.bed(room)
    walls = sorted(Wall, key=lambda w: -room.wall_len(w))
    res = room.try_wall(bed, walls=walls[:2] if rng.random() < 0.7 else None, tries=30)
    if res is not None:
        placed, wall, s = res
        for side in (-1, 1):
            if rng.random() < 0.75:
                ns = furniture.night_stand(room)
                room.try_wall(ns, walls=[wall], s=s + side * (bed.w / 2 + 0.06 + ns.w / 2))
        if rng.random() < 0.5:
            x0, z0, x1, z1 = placed.aabb
            room.try_free(furniture.mat(room, rng.uniform(0.8, 1.4), rng.uniform(0.6, 1.0)),
                          blocks=False, region=(x0, z0, x1, z1))  # fmt: skip
        hb_top = placed.height
        if rng.random() < 0.6:
            pic = furniture.picture(room)
            room.try_wall(pic, walls=[wall], s=s, y0=max(hb_top + 0.15, 1.2), item=True)
    res = room.try_wall(furniture.dresser(room))
    if res is not None and rng.random() < 0.5:
        placed, wall, s = res
        room.try_wall(furniture.board(room, mirror=True), walls=[wall], s=s, y0=placed.height + 0.2,
                      item=True)  # fmt: skip
    for _ in range(int(rng.integers(0, 3))):
        room.try_wall(furniture.cabinet(room, tall=rng.random() < 0.6))
    if rng.random() < 0.4:
        res = room.try_wall(furniture.desk(room))
        if res is not None:
            _desk_chair(room, res[0])
    if rng.random() < 0.3:
        room.try_free(furniture.chair(room))
    if rng.random() < 0.3:
        room.try_wall(furniture.floor_lamp(room), tries=10)
    _extras(room, ["box", "bag", "plant", "shelves", "otherfurniture"], int(rng.integers(1, 4)))
    _wall_items(room, int(rng.integers(1, 4)))


def _desk_chair(room: RoomBuilder, desk: Placed) -> None:
    rng = room.rng
    x0, z0, x1, z1 = desk.aabb
    p = desk.prims[0]
    # desk front (local −z) direction in world
    fx, fz = -p.sin, -p.cos
    cx, cz = (x0 + x1) / 2, (z0 + z1) / 2
    depth = abs(fx) * (x1 - x0) + abs(fz) * (z1 - z0)
    pos = (cx + fx * (depth / 2 + 0.3), cz + fz * (depth / 2 + 0.3))
    chair = furniture.chair(room)
    yaw = math.atan2(fx, fz) + rng.uniform(-0.4, 0.4)  # chair front (local −z) faces the desk
    if room.fits(room.footprint(pos, yaw, chair.w, chair.d), margin=0.0):
        room.add(chair, pos, yaw)


def _living(room: RoomBuilder) -> None:
    rng = room.rng
    res = room.try_wall(furniture.sofa(room), tries=30)
    if res is not None:
        placed, wall, s = res
        x0, z0, x1, z1 = placed.aabb
        p = placed.prims[0]
        fx, fz = -p.sin, -p.cos
        cx, cz = (x0 + x1) / 2, (z0 + z1) / 2
        depth = abs(fx) * (x1 - x0) + abs(fz) * (z1 - z0)
        table = furniture.table(room, coffee=True)
        dist = depth / 2 + 0.45 + table.d / 2
        pos = (cx + fx * dist, cz + fz * dist)
        yaw = math.atan2(-fx, -fz)
        if rng.random() < 0.6:
            mat = furniture.mat(room, table.w + rng.uniform(0.6, 1.2),
                                table.d + rng.uniform(0.6, 1.2))  # fmt: skip
            if room.fits(room.footprint(pos, yaw, mat.w, mat.d), margin=-10.0):
                room.add(mat, pos, yaw, blocks=False, grounded=False)
        if room.fits(room.footprint(pos, yaw, table.w, table.d)):
            room.add(table, pos, yaw)
        opposite = wall.turned(2)
        tv = furniture.cabinet(room, tall=False) if rng.random() < 0.5 else furniture.dresser(room)
        room.try_wall(tv, walls=[opposite], tries=10)
        if rng.random() < 0.5:
            pic = furniture.picture(room)
            room.try_wall(pic, walls=[wall], s=s, y0=1.25, item=True)
    for _ in range(int(rng.integers(0, 3))):
        room.try_wall(furniture.bookshelf(room))
    for _ in range(int(rng.integers(0, 3))):
        room.try_free(furniture.chair(room))
    if rng.random() < 0.5:
        room.try_wall(furniture.floor_lamp(room), tries=10)
    if rng.random() < 0.3:
        room.try_free(furniture.otherfurniture(room))
    _extras(room, ["plant", "box", "shelves", "cabinet", "bag"], int(rng.integers(1, 4)))
    _wall_items(room, int(rng.integers(1, 4)))


def _kitchen(room: RoomBuilder) -> None:
    rng = room.rng
    wall = Wall(int(rng.integers(len(Wall))))
    length = min(room.wall_len(wall) - 0.2, rng.uniform(1.5, 3.5))
    res = room.try_wall(furniture.counter(room, length), walls=[wall], tries=10)
    if res is not None:
        _, wall, s = res
        if rng.random() < 0.7:
            up = furniture.upper_cabinets(room, length * rng.uniform(0.6, 1.0))
            room.try_wall(up, walls=[wall], s=s, y0=rng.uniform(1.45, 1.55), item=True)
        room.try_wall(furniture.fridge(room), walls=[wall, wall.turned(1), wall.turned(3)],
                      tries=15)  # fmt: skip
    if rng.random() < 0.5:
        side_wall = wall.turned(int(rng.choice([1, 3])))
        length = min(room.wall_len(side_wall) - 0.3, rng.uniform(1.0, 2.2))
        room.try_wall(furniture.counter(room, length), walls=[side_wall])
    table = room.try_free(furniture.table(room), yaw=float(rng.choice([0.0, math.pi / 2])))
    if table is not None:
        _chairs_around(room, table, int(rng.integers(1, 5)))
    _extras(room, ["box", "cabinet", "plant", "bag", "shelves"], int(rng.integers(1, 4)))
    _wall_items(room, int(rng.integers(0, 3)))


def _office(room: RoomBuilder) -> None:
    rng = room.rng
    for _ in range(int(rng.integers(1, 3))):
        res = room.try_wall(furniture.desk(room))
        if res is not None:
            _desk_chair(room, res[0])
    for _ in range(int(rng.integers(0, 3))):
        room.try_wall(furniture.bookshelf(room))
    if rng.random() < 0.6:
        wb = furniture.board(room, mirror=False)
        room.try_wall(wb, y0=rng.uniform(0.85, 1.0), item=True, tries=15)
    for _ in range(int(rng.integers(0, 3))):
        room.try_wall(furniture.cabinet(room))
    if rng.random() < 0.4:
        table = room.try_free(furniture.table(room), yaw=float(rng.choice([0.0, math.pi / 2])))
        if table is not None:
            _chairs_around(room, table, int(rng.integers(1, 4)))
    _extras(room, ["box", "box", "bag", "plant", "shelves", "otherfurniture"],
            int(rng.integers(2, 5)))  # fmt: skip
    _wall_items(room, int(rng.integers(0, 3)))


def _bathroom(room: RoomBuilder) -> None:
    rng = room.rng
    room.try_wall(furniture.toilet(room), tries=30)
    res = room.try_wall(furniture.vanity(room), tries=30)
    if res is not None:
        _, wall, s = res
        room.try_wall(furniture.board(room, mirror=True), walls=[wall], s=s,
                      y0=rng.uniform(1.05, 1.2), item=True)  # fmt: skip
    if rng.random() < 0.7:
        room.try_wall(furniture.bathtub(room), tries=20)
    for _ in range(int(rng.integers(1, 3))):
        room.try_wall(furniture.towel(room), y0=rng.uniform(0.9, 1.2), item=True, tries=10)
    if rng.random() < 0.5:
        room.try_free(furniture.mat(room, rng.uniform(0.5, 0.8), rng.uniform(0.4, 0.6)),
                      blocks=False)  # fmt: skip
    if rng.random() < 0.3:
        room.try_wall(furniture.cabinet(room, tall=False))
    _extras(room, ["plant", "bag", "box"], int(rng.integers(0, 2)))


def _extras(room: RoomBuilder, kinds: list[str], n: int) -> None:
    rng = room.rng
    for _ in range(n):
        k = kinds[int(rng.integers(len(kinds)))]
        if k == "box":
            obj = furniture.boxes(room)
            if rng.random() < 0.6:
                room.try_wall(obj, tries=10)
            else:
                room.try_free(obj)
        elif k == "bag":
            room.try_free(furniture.bag(room))
        elif k == "plant":
            room.try_wall(furniture.plant(room), tries=10)
        elif k == "shelves":
            sh = furniture.shelves(room)
            room.try_wall(sh, y0=rng.uniform(1.0, 1.5), item=True, tries=10)
        elif k == "cabinet":
            room.try_wall(furniture.cabinet(room), tries=10)
        elif k == "otherfurniture":
            room.try_free(furniture.otherfurniture(room))
    if rng.random() < 0.12:  # a structural column / duct in a corner
        s = rng.uniform(0.25, 0.5)
        column = Assembly(s, s)
        column.box("otherstructure", 0, 0, 0, s, room.height, s, room.room_wall_color, key=0)
        corner = [(s / 2, s / 2), (room.width - s / 2, s / 2), (s / 2, room.depth - s / 2),
                  (room.width - s / 2, room.depth - s / 2)][int(rng.integers(4))]  # fmt: skip
        if room.fits(room.footprint(corner, 0.0, s, s)):
            room.add(column, corner, 0.0)


_RECIPES: dict[str, Callable[[RoomBuilder], None]] = {
    "bedroom": _bedroom,
    "living": _living,
    "kitchen": _kitchen,
    "office": _office,
    "bathroom": _bathroom,
}


def make_scene(rng: np.random.Generator, kind: str | None = None) -> Scene:
    """A random furnished room of type ``kind`` (one of ``ROOM_TYPES``; None draws one)."""
    if kind is None:
        kind = ROOM_TYPES[int(rng.choice(len(ROOM_TYPES), p=ROOM_TYPE_PROBS))]
    room = RoomBuilder(rng, kind)
    faces = room.shell()
    room.room_wall_color = faces[RoomFace.X_LO].color
    _openings(room)
    _RECIPES[kind](room)
    return Scene(
        dims=(room.width, room.height, room.depth),
        faces=faces,
        objects=room.objects,
        ambient=float(rng.uniform(0.42, 0.58)),
        light_pos=np.array([rng.uniform(0.25, 0.75) * room.width, room.height - 0.25,
                            rng.uniform(0.25, 0.75) * room.depth]),  # fmt: skip
        light_power=float(rng.uniform(0.45, 0.8)),
        light_range=float(rng.uniform(2.5, 4.0)),
        sun_dir=_unit(np.array([rng.uniform(-1, 1), rng.uniform(-1.2, -0.3), rng.uniform(-1, 1)])),
        sun_power=float(rng.uniform(0.1, 0.35)),
        tint=np.clip(1 + rng.uniform(-0.06, 0.06, 3), 0.9, 1.1),
        kind=kind,
    )


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)
