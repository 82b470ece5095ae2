"""SynthIndoor furniture recipes: one function per kind of object, built from boxes/cylinders.

Each recipe draws its sizes, colours and optional decorations (lamps, books, a television...)
from ``room.rng`` and returns an ``Assembly`` in its local frame, not yet placed. Wall-hung items
(pictures, windows, doors, boards, towels, shelves) use x along the wall, y up, z into the wall,
with thickness ``obj.d``.
"""

from __future__ import annotations

import numpy as np

from mtlsi_edge.data.synthindoor.layout import Assembly, RoomBuilder
from mtlsi_edge.data.synthindoor.scene import SOLID_WOOD, Tex


def _lamp_parts(room: RoomBuilder, obj: Assembly, x: float, y0: float, z: float,
                key: int) -> None:  # fmt: skip
    rng = room.rng
    h = rng.uniform(0.2, 0.3)
    obj.cyl("lamp", x, y0, z, rng.uniform(0.04, 0.07), h, room.color("metal"), key=key)
    obj.cyl("lamp", x, y0 + h, z, rng.uniform(0.11, 0.16), rng.uniform(0.16, 0.22),
            room.color("sheet"), Tex.FABRIC, emis=0.45, key=key)  # fmt: skip


def bed(room: RoomBuilder) -> Assembly:
    rng = room.rng
    w = float(rng.choice([0.95, 1.4, 1.6, 1.8])) * rng.uniform(0.95, 1.05)
    length = rng.uniform(1.95, 2.15)
    obj = Assembly(w + 0.06, length)
    wood = room.color("wood")
    fh, mh = rng.uniform(0.18, 0.32), rng.uniform(0.18, 0.26)
    top = fh + mh
    obj.box("bed", 0, 0, 0, w, fh, length, wood, Tex.WOOD, scale=SOLID_WOOD)
    obj.box("bed", 0, fh, 0, w - 0.04, mh, length - 0.06, room.color("sheet"), Tex.FABRIC)
    bl = length * rng.uniform(0.55, 0.7)
    blanket = room.color("fabric")
    tex = Tex.STRIPES if rng.random() < 0.3 else Tex.FABRIC
    obj.box("bed", 0, fh + 0.04, -length / 2 + bl / 2 - 0.01, w + 0.03, mh + 0.0, bl, blanket, tex,
            color2=blanket * 0.7, scale=0.15)  # fmt: skip
    obj.box("bed", 0, 0, length / 2 - 0.03, w + 0.06, rng.uniform(0.85, 1.2), 0.06, wood, Tex.WOOD,
            scale=SOLID_WOOD)  # fmt: skip
    n = 2 if w > 1.2 else 1
    pcol = room.color("sheet")
    for i in range(n):
        x = (i - (n - 1) / 2) * (w / n)
        pw = min(0.6, w / n - 0.1)
        obj.box("pillow", x, top, length / 2 - 0.27, pw, 0.13, 0.36, pcol, Tex.FABRIC, key=1 + i)
    if rng.random() < 0.3:
        obj.box("clothes", rng.uniform(-w / 4, w / 4), top + 0.04, -length / 4, 0.4, 0.04, 0.35,
                room.color("fabric"), Tex.FABRIC, key=5)  # fmt: skip
    return obj


def night_stand(room: RoomBuilder) -> Assembly:
    rng = room.rng
    w, d, h = rng.uniform(0.4, 0.55), rng.uniform(0.35, 0.45), rng.uniform(0.5, 0.65)
    obj = Assembly(w, d)
    obj.box("night stand", 0, 0, 0, w, h, d, room.color("wood"), Tex.DRAWERS, scale=h / 2)
    if rng.random() < 0.75:
        _lamp_parts(room, obj, 0, h, 0.03, key=1)
    return obj


def dresser(room: RoomBuilder) -> Assembly:
    rng = room.rng
    w, d, h = rng.uniform(0.8, 1.5), rng.uniform(0.42, 0.55), rng.uniform(0.75, 1.05)
    obj = Assembly(w, d)
    col = room.color("wood") if rng.random() < 0.7 else room.color("white")
    obj.box("dresser", 0, 0, 0, w, h, d, col, Tex.DRAWERS, scale=h / int(rng.integers(3, 6)))
    _on_top(room, obj, w, d, h)
    return obj


def _on_top(room: RoomBuilder, obj: Assembly, w: float, d: float, h: float,
            tv: bool = True) -> None:  # fmt: skip
    """Decorate the top of a cabinet or dresser at height ``h``: a TV, a lamp, a box..."""
    rng = room.rng
    u = rng.random()
    if tv and u < 0.4 and w > 0.7:
        tw = min(w - 0.1, rng.uniform(0.7, 1.2))
        th = tw * 0.58
        obj.box("television", 0, h, d / 2 - 0.2, 0.3, 0.04, 0.18, room.color("dark"), key=1)
        obj.box("television", 0, h + 0.04, d / 2 - 0.2, 0.06, 0.08, 0.04, room.color("dark"), key=1)
        obj.box("television", 0, h + 0.1, d / 2 - 0.2, tw, th, 0.05, room.color("dark"), Tex.SCREEN,
                color2=room.color("dark"), emis=0.6 if rng.random() < 0.4 else 0.0,
                key=1)  # fmt: skip
        return
    x = rng.uniform(-w / 2 + 0.2, w / 2 - 0.2)
    if u < 0.65:
        _lamp_parts(room, obj, x, h, 0.0, key=2)
    elif u < 0.8:
        s = rng.uniform(0.2, 0.35)
        obj.box("box", x, h, 0, s, s * rng.uniform(0.5, 1), s, room.color("cardboard"), key=3)
    else:
        obj.cyl("otherprop", x, h, 0, rng.uniform(0.04, 0.08), rng.uniform(0.1, 0.3),
                room.color("bright"), key=4)  # fmt: skip
    if rng.random() < 0.4:
        x2 = -x * 0.8
        obj.box("books", x2, h, 0, 0.22, rng.uniform(0.05, 0.15), 0.28, room.color("bright"),
                Tex.STRIPES, color2=room.color("bright"), scale=-0.03, key=5)  # fmt: skip


def cabinet(room: RoomBuilder, tall: bool | None = None) -> Assembly:
    rng = room.rng
    tall = rng.random() < 0.5 if tall is None else tall
    w, d = rng.uniform(0.5, 1.2), rng.uniform(0.4, 0.6)
    h = rng.uniform(1.7, 2.1) if tall else rng.uniform(0.6, 0.95)
    obj = Assembly(w, d)
    col = room.color("wood") if rng.random() < 0.6 else room.color("white")
    obj.box("cabinet", 0, 0, 0, w, h, d, col, Tex.DOORS, scale=w / max(1, round(w / 0.5)))
    if not tall and rng.random() < 0.5:
        _on_top(room, obj, w, d, h)
    return obj


def bookshelf(room: RoomBuilder) -> Assembly:
    rng = room.rng
    w, d, h = rng.uniform(0.6, 1.2), rng.uniform(0.28, 0.38), rng.uniform(1.0, 2.1)
    obj = Assembly(w, d)
    obj.box("bookshelf", 0, 0, 0, w, h, d, room.color("wood"), Tex.WOOD, scale=SOLID_WOOD)
    n = max(1, int((h - 0.1) / 0.36))
    rh = (h - 0.06) / n
    for i in range(n):
        if rng.random() < 0.85:
            obj.box("books", 0, 0.05 + i * rh, -0.01 - 0.02, w - 0.06, rh - 0.07, d - 0.04,
                    room.color("bright"), Tex.BOOKS, color2=room.color("dark"),
                    scale=rng.uniform(0.025, 0.05), key=1 + i)  # fmt: skip
    return obj


def table(room: RoomBuilder, coffee: bool = False) -> Assembly:
    rng = room.rng
    if coffee:
        w, d, h = rng.uniform(0.8, 1.2), rng.uniform(0.5, 0.7), rng.uniform(0.38, 0.48)
    else:
        w, d, h = rng.uniform(0.9, 1.6), rng.uniform(0.75, 1.0), rng.uniform(0.72, 0.77)
    obj = Assembly(w, d)
    if rng.random() < 0.7:
        col = room.color("wood")
    else:
        col = room.color(str(rng.choice(["white", "dark"])))
    t = rng.uniform(0.03, 0.05)
    obj.box("table", 0, h - t, 0, w, t, d, col, Tex.WOOD, scale=SOLID_WOOD)
    style = rng.random()
    if style < 0.65:
        for sx in (-1, 1):
            for sz in (-1, 1):
                obj.box("table", sx * (w / 2 - 0.06), 0, sz * (d / 2 - 0.06), 0.05, h - t, 0.05,
                        col * 0.9)  # fmt: skip
    elif style < 0.85:
        for sx in (-1, 1):
            obj.box("table", sx * (w / 2 - 0.05), 0, 0, 0.04, h - t, d - 0.1, col * 0.9)
    else:
        obj.cyl("table", 0, 0, 0, 0.05, h - t, col * 0.9)
        obj.cyl("table", 0, 0, 0, min(w, d) * 0.3, 0.03, col * 0.8)
    for key, cls in ((1, "otherprop"), (2, "paper"), (3, "books")):
        if rng.random() < 0.35:
            x, z = rng.uniform(-w / 2 + 0.15,
                               w / 2 - 0.15), rng.uniform(-d / 2 + 0.12, d / 2 - 0.12)  # fmt: skip
            if cls == "otherprop":
                obj.cyl(cls, x, h, z, rng.uniform(0.03, 0.07), rng.uniform(0.08, 0.25),
                        room.color("bright"), key=key)  # fmt: skip
            elif cls == "paper":
                obj.box(cls, x, h, z, 0.21, 0.004, 0.297, room.color("white", 0.03), key=key)
            else:
                obj.box(cls, x, h, z, 0.2, rng.uniform(0.03, 0.1), 0.26, room.color("bright"),
                        Tex.STRIPES, color2=room.color("bright"), scale=-0.025,
                        key=key)  # fmt: skip
    return obj


def desk(room: RoomBuilder) -> Assembly:
    rng = room.rng
    w, d, h = rng.uniform(1.0, 1.6), rng.uniform(0.6, 0.75), rng.uniform(0.72, 0.76)
    obj = Assembly(w, d)
    if rng.random() < 0.6:
        col = room.color("wood")
    else:
        col = room.color(str(rng.choice(["white", "grey"])))
    obj.box("desk", 0, h - 0.03, 0, w, 0.03, d, col, Tex.WOOD, scale=SOLID_WOOD)
    obj.box("desk", -w / 2 + 0.02, 0, 0, 0.03, h - 0.03, d - 0.04, col * 0.92)
    if rng.random() < 0.6:
        obj.box("desk", w / 2 - 0.22, 0, 0, 0.42, h - 0.03, d - 0.04, col * 0.95, Tex.DRAWERS,
                scale=(h - 0.03) / 3)  # fmt: skip
    else:
        obj.box("desk", w / 2 - 0.02, 0, 0, 0.03, h - 0.03, d - 0.04, col * 0.92)
    x = rng.uniform(-0.15, 0.15) * w
    if rng.random() < 0.75:
        dark = room.color("dark")
        obj.box("television", x, h, d / 2 - 0.18, 0.22, 0.02, 0.16, dark, key=1)
        obj.box("television", x, h + 0.02, d / 2 - 0.15, 0.04, 0.14, 0.03, dark, key=1)
        obj.box("television", x, h + 0.1, d / 2 - 0.17, rng.uniform(0.45, 0.6), 0.32, 0.03, dark,
                Tex.SCREEN, color2=dark, emis=0.55 if rng.random() < 0.6 else 0.0,
                key=1)  # fmt: skip
        obj.box("otherprop", x, h, -d / 2 + 0.2, 0.42, 0.02, 0.14, room.color("grey"), key=2)
    if rng.random() < 0.5:
        obj.box("paper", -w / 2 + 0.25, h, -0.05, 0.21, 0.004, 0.297, room.color("white", 0.03),
                key=3)  # fmt: skip
    if rng.random() < 0.4:
        _lamp_parts(room, obj, w / 2 - 0.15, h, d / 2 - 0.15, key=4)
    return obj


def chair(room: RoomBuilder, col: np.ndarray | None = None) -> Assembly:
    rng = room.rng
    w, d, sh = rng.uniform(0.42, 0.5), rng.uniform(0.42, 0.5), rng.uniform(0.43, 0.48)
    obj = Assembly(w, d)
    if rng.random() < 0.7:
        col = room.color(str(rng.choice(["wood", "dark", "white"]))) if col is None else col
        obj.box("chair", 0, sh - 0.05, 0, w, 0.05, d, col, Tex.WOOD, scale=SOLID_WOOD)
        obj.box("chair", 0, sh, d / 2 - 0.03, w, rng.uniform(0.35, 0.5), 0.04, col, Tex.WOOD,
                scale=SOLID_WOOD)  # fmt: skip
        for sx in (-1, 1):
            for sz in (-1, 1):
                obj.box("chair", sx * (w / 2 - 0.03), 0, sz * (d / 2 - 0.03), 0.035, sh - 0.05,
                        0.035, col * 0.85)  # fmt: skip
    else:
        col = room.color("fabric") if col is None else col
        obj.box("chair", 0, sh - 0.08, 0, w, 0.08, d, col, Tex.FABRIC)
        obj.box("chair", 0, sh, d / 2 - 0.04, w * 0.95, rng.uniform(0.4, 0.55), 0.06, col,
                Tex.FABRIC)  # fmt: skip
        obj.cyl("chair", 0, 0.06, 0, 0.025, sh - 0.14, room.color("metal"))
        obj.cyl("chair", 0, 0, 0, min(w, d) / 2, 0.06, room.color("dark"))
    return obj


def sofa(room: RoomBuilder) -> Assembly:
    rng = room.rng
    w, d = rng.uniform(1.5, 2.4), rng.uniform(0.8, 0.95)
    obj = Assembly(w, d)
    col = room.color("fabric")
    sh, bh, ah = rng.uniform(0.38, 0.45), rng.uniform(0.78, 0.9), rng.uniform(0.55, 0.65)
    obj.box("sofa", 0, 0, 0, w - 0.3, sh, d - 0.05, col, Tex.FABRIC)
    obj.box("sofa", 0, 0, d / 2 - 0.11, w, bh, 0.22, col * 0.95, Tex.FABRIC)
    for sx in (-1, 1):
        obj.box("sofa", sx * (w / 2 - 0.1), 0, 0, 0.2, ah, d, col * 0.97, Tex.FABRIC)
    pcol = room.color("fabric")
    for i in range(int(rng.integers(0, 3))):
        x = (i - 0.5) * (w - 0.7) if i < 2 else 0.0
        obj.box("pillow", x, sh, d / 2 - 0.3, 0.42, 0.4, 0.13, pcol, Tex.FABRIC, key=1 + i)
    return obj


def counter(room: RoomBuilder, length: float) -> Assembly:
    rng = room.rng
    obj = Assembly(length, 0.62)
    cab = room.color("wood") if rng.random() < 0.5 else room.color("white")
    obj.box("cabinet", 0, 0, 0.01, length, 0.86, 0.58, cab, Tex.DOORS,
            scale=length / max(1, round(length / 0.5)))  # fmt: skip
    top = room.color(str(rng.choice(["grey", "white", "dark"])))
    obj.box("counter", 0, 0.86, 0, length + 0.02, 0.04, 0.62, top, Tex.FABRIC)
    if rng.random() < 0.8 and length > 1.0:
        x = rng.uniform(-length / 2 + 0.35, length / 2 - 0.35)
        obj.box("sink", x, 0.9, -0.02, 0.52, 0.006, 0.4, room.color("metal"), key=1)
        obj.cyl("sink", x, 0.9, 0.22, 0.015, 0.25, room.color("metal"), key=1)
    for key in (2, 3):
        if rng.random() < 0.5:
            x = rng.uniform(-length / 2 + 0.1, length / 2 - 0.1)
            obj.cyl("otherprop", x, 0.9, 0.12, rng.uniform(0.04, 0.1), rng.uniform(0.1, 0.3),
                    room.color("bright"), key=key)  # fmt: skip
    return obj


def upper_cabinets(room: RoomBuilder, length: float) -> Assembly:
    obj = Assembly(length, 0.35)
    col = room.color("wood") if room.rng.random() < 0.5 else room.color("white")
    obj.box("cabinet", 0, 0, 0, length, room.rng.uniform(0.6, 0.8), 0.35, col, Tex.DOORS,
            scale=length / max(1, round(length / 0.5)))  # fmt: skip
    return obj


def fridge(room: RoomBuilder) -> Assembly:
    rng = room.rng
    w, d, h = rng.uniform(0.6, 0.8), rng.uniform(0.65, 0.75), rng.uniform(1.7, 1.9)
    obj = Assembly(w, d)
    obj.box("refrigerator", 0, 0, 0, w, h, d, room.color(str(rng.choice(["white", "metal"]))),
            Tex.DRAWERS, scale=h * rng.uniform(0.33, 0.4))  # fmt: skip
    return obj


def toilet(room: RoomBuilder) -> Assembly:
    rng = room.rng
    obj = Assembly(0.42, 0.7)
    col = room.color("white", 0.04)
    obj.box("toilet", 0, 0.38, 0.26, 0.42, 0.4, 0.18, col)
    obj.cyl("toilet", 0, 0, -0.05, 0.13, 0.28, col)
    obj.cyl("toilet", 0, 0.26, -0.08, rng.uniform(0.18, 0.21), 0.14, col)
    return obj


def vanity(room: RoomBuilder) -> Assembly:
    rng = room.rng
    w, d = rng.uniform(0.6, 1.0), rng.uniform(0.45, 0.55)
    obj = Assembly(w, d)
    obj.box("cabinet", 0, 0, 0, w, 0.8, d, room.color(str(rng.choice(["white", "wood"]))),
            Tex.DOORS, scale=w / 2)  # fmt: skip
    obj.box("counter", 0, 0.8, 0, w + 0.02, 0.03, d + 0.01, room.color("white"), Tex.FABRIC)
    obj.cyl("sink", 0, 0.83, -0.02, min(w, d) * 0.35, 0.1, room.color("white", 0.03), key=1)
    obj.cyl("sink", 0, 0.83, d / 2 - 0.07, 0.015, 0.2, room.color("metal"), key=1)
    return obj


def bathtub(room: RoomBuilder) -> Assembly:
    rng = room.rng
    w, d = rng.uniform(1.4, 1.7), rng.uniform(0.7, 0.8)
    obj = Assembly(w, d)
    col = room.color("white", 0.04)
    obj.box("bathtub", 0, 0, 0, w, 0.55, d, col)
    obj.box("bathtub", 0, 0.55, 0, w - 0.12, 0.003, d - 0.12, col * 0.85)
    if rng.random() < 0.6:
        obj.box("shower curtain", -w * 0.2, 0.6, -d / 2 + 0.02, w * 0.6, 1.4, 0.02,
                room.color("sheet"), Tex.CURTAIN, key=1)  # fmt: skip
    return obj


def floor_lamp(room: RoomBuilder) -> Assembly:
    rng = room.rng
    obj = Assembly(0.4, 0.4)
    h = rng.uniform(1.3, 1.6)
    obj.cyl("lamp", 0, 0, 0, 0.15, 0.03, room.color("dark"))
    obj.cyl("lamp", 0, 0.03, 0, 0.015, h, room.color("metal"))
    obj.cyl("lamp", 0, h, 0, rng.uniform(0.15, 0.2), rng.uniform(0.25, 0.32), room.color("sheet"),
            Tex.FABRIC, emis=0.45)  # fmt: skip
    return obj


def plant(room: RoomBuilder) -> Assembly:
    rng = room.rng
    obj = Assembly(0.5, 0.5)
    ph = rng.uniform(0.25, 0.4)
    obj.cyl("otherprop", 0, 0, 0, rng.uniform(0.12, 0.17), ph,
            room.color(str(rng.choice(["white", "cardboard", "dark"]))))  # fmt: skip
    obj.cyl("otherprop", 0, ph, 0, rng.uniform(0.18, 0.25), rng.uniform(0.3, 0.8),
            room.color("plant"), Tex.FABRIC)  # fmt: skip
    return obj


def boxes(room: RoomBuilder) -> Assembly:
    rng = room.rng
    s = rng.uniform(0.3, 0.6)
    obj = Assembly(s, s)
    h = s * rng.uniform(0.6, 1.0)
    col = room.color("cardboard")
    obj.box("box", 0, 0, 0, s, h, s, col, key=0)
    if rng.random() < 0.4:
        s2 = s * rng.uniform(0.6, 0.9)
        obj.box("box", 0, h, 0, s2, s2 * 0.8, s2, col * 0.95, key=1)
    return obj


def bag(room: RoomBuilder) -> Assembly:
    rng = room.rng
    obj = Assembly(0.35, 0.2)
    obj.box("bag", 0, 0, 0, 0.35, rng.uniform(0.3, 0.45), 0.2, room.color("fabric"), Tex.FABRIC)
    return obj


def otherfurniture(room: RoomBuilder) -> Assembly:
    rng = room.rng
    obj = Assembly(0.45, 0.45)
    if rng.random() < 0.5:
        obj.cyl("otherfurniture", 0, 0, 0, 0.2, rng.uniform(0.4, 0.5), room.color("fabric"),
                Tex.FABRIC)  # fmt: skip
    else:
        obj.box("otherfurniture", 0, 0, 0, 0.45, rng.uniform(0.4, 0.7), 0.45, room.color("wood"),
                Tex.WOOD, scale=SOLID_WOOD)  # fmt: skip
    return obj


# wall-hung items (see module docstring for their frame)


def picture(room: RoomBuilder) -> Assembly:
    rng = room.rng
    w, h, t = rng.uniform(0.3, 1.0), rng.uniform(0.25, 0.8), rng.uniform(0.02, 0.04)
    obj = Assembly(w, t)
    obj.box("picture", 0, 0, 0, w, h, t, room.color("bright"), Tex.PICTURE,
            color2=room.color(str(rng.choice(["wood", "dark", "white"]))),
            scale=rng.uniform(0.2, 0.6))  # fmt: skip
    return obj


def window(room: RoomBuilder, h: float, sill: float) -> tuple[Assembly, float]:
    """A window (optionally with blinds or curtains on a rod); returns (object, mount height).

    With floor-length curtains the object is built from the floor up (mounted at 0) so that its
    wall rectangle keeps furniture away from the curtains; otherwise it is mounted at the sill.
    """
    rng = room.rng
    w = rng.uniform(0.8, 1.8)
    u = rng.random()
    floor_len = 0.45 <= u < 0.75 and rng.random() < 0.6
    y = sill if floor_len else 0.0  # local height of the sill
    obj = Assembly(w + 0.9, 0.12)
    obj.box("window", 0, y, 0.05, w, h, 0.02, room.color("sky"), Tex.WINDOW,
            color2=room.color("white"), scale=float(rng.random() < 0.6), emis=0.85)  # fmt: skip
    if u < 0.45:
        bh = h * rng.uniform(0.25, 1.0)
        obj.box("blinds", 0, y + h - bh + 0.02, 0.03, w + 0.06, bh, 0.02, room.color("white"),
                Tex.BLINDS, emis=0.15, key=1)  # fmt: skip
    elif u < 0.75:
        cw = rng.uniform(0.3, 0.45)
        ctop = y + h + 0.15
        y0 = 0.01 if floor_len else y - rng.uniform(0.05, 0.15)
        col = room.color("fabric")
        for i, sx in enumerate((-1, 1)):
            obj.box("curtain", sx * (w / 2 + cw / 2 - 0.1), y0, -0.03, cw, ctop - y0, 0.06, col,
                    Tex.CURTAIN, key=2 + i)  # fmt: skip
        obj.box("otherprop", 0, ctop, -0.01, w + 2 * cw, 0.025, 0.025, room.color("metal"), key=4)
    return obj, (0.0 if floor_len else sill)


def door(room: RoomBuilder) -> Assembly:
    rng = room.rng
    w, h = rng.uniform(0.8, 0.95), rng.uniform(2.0, 2.1)
    obj = Assembly(w, 0.045)
    col = room.color("wood") if rng.random() < 0.6 else room.color("white")
    obj.box("door", 0, 0, 0, w, h, 0.045, col, Tex.DOOR, color2=room.color("metal"))
    return obj


def board(room: RoomBuilder, mirror: bool) -> Assembly:
    rng = room.rng
    if mirror:
        w, h = rng.uniform(0.5, 1.0), rng.uniform(0.6, 1.0)
        obj = Assembly(w, 0.02)
        obj.box("mirror", 0, 0, 0, w, h, 0.02, np.array([0.55, 0.62, 0.68]) * rng.uniform(0.8, 1.1),
                Tex.BOARD, color2=room.color(str(rng.choice(["wood", "metal", "dark"]))),
                scale=1.0)  # fmt: skip
    else:
        w, h = rng.uniform(1.2, 2.0), rng.uniform(0.9, 1.2)
        obj = Assembly(w, 0.02)
        obj.box("whiteboard", 0, 0, 0, w, h, 0.02, room.color("white", 0.03), Tex.BOARD,
                color2=room.color("metal"), scale=0.0)  # fmt: skip
    return obj


def towel(room: RoomBuilder) -> Assembly:
    rng = room.rng
    w, h = rng.uniform(0.35, 0.6), rng.uniform(0.5, 0.8)
    obj = Assembly(w, 0.03)
    col = room.color(str(rng.choice(["sheet", "fabric"])))
    obj.box("towel", 0, 0, 0, w, h, 0.03, col, Tex.STRIPES if rng.random() < 0.4 else Tex.FABRIC,
            color2=col * 0.8, scale=-0.08)  # fmt: skip
    return obj


def shelves(room: RoomBuilder) -> Assembly:
    rng = room.rng
    w, d = rng.uniform(0.6, 1.2), rng.uniform(0.2, 0.28)
    obj = Assembly(w, d)
    col = room.color(str(rng.choice(["wood", "white"])))
    n = int(rng.integers(1, 4))
    for i in range(n):
        y = i * 0.35
        obj.box("shelves", 0, y, 0, w, 0.025, d, col, Tex.WOOD, scale=SOLID_WOOD)
        if rng.random() < 0.6:
            bw = w * rng.uniform(0.3, 0.8)
            obj.box("books", -w / 2 + bw / 2 + 0.03, y + 0.025, 0.0, bw, rng.uniform(0.16, 0.24),
                    d - 0.04, room.color("bright"), Tex.BOOKS, color2=col * 0.5,
                    scale=rng.uniform(0.025, 0.045), key=1 + i)  # fmt: skip
        elif rng.random() < 0.5:
            obj.cyl("otherprop", rng.uniform(-w / 3, w / 3), y + 0.025, 0.0, 0.05,
                    rng.uniform(0.1, 0.2), room.color("bright"), key=1 + i)  # fmt: skip
    return obj


def mat(room: RoomBuilder, w: float, d: float) -> Assembly:
    obj = Assembly(w, d)
    col = room.color(str(room.rng.choice(["fabric", "carpet"])))
    obj.box("floor mat", 0, 0, 0, w, 0.012, d, col,
            Tex.STRIPES if room.rng.random() < 0.4 else Tex.FABRIC, color2=col * 0.7,
            scale=0.1)  # fmt: skip
    return obj

