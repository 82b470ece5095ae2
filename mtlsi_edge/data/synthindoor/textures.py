"""SynthIndoor procedural textures: one branch per ``Tex`` code, evaluated on visible hits only.

Patterns are functions of face coordinates (u, v in metres) plus a per-primitive random offset,
so they stay fixed to surfaces as the camera moves (walkthrough frames do not shimmer).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from mtlsi_edge.data.synthindoor.scene import Tex


def _hash(a: np.ndarray, b: np.ndarray | int = 0) -> np.ndarray:
    """Integer hash of integer-valued arrays, float32 in [0, 1)."""
    h = a.astype(np.int64) * 73856093 ^ (np.asarray(b).astype(np.int64) * 19349663)
    h ^= h >> 13
    h *= 1274126177
    h ^= h >> 16
    return (h & 0xFFFF).astype(np.float32) * np.float32(1.0 / 65536)


def _noise(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Smooth band-limited 2-D pattern in about [−1, 1] (sum of three oblique sines)."""
    return (
        np.sin(1.71 * x + 0.93 * y) + np.sin(-0.87 * x + 2.13 * y + 1.3)
        + np.sin(2.91 * x - 1.37 * y + 4.1)
    ) * np.float32(1 / 3)  # fmt: skip


class FaceCoords(NamedTuple):
    """Where each hit lies on its face, all length N: ``u``, ``v`` face coordinates (metres,
    centred on the face), ``half_u``, ``half_v`` the face's half sizes and ``axis`` the face
    normal's axis (0/1/2 box face, 3 cylinder side)."""

    u: np.ndarray
    v: np.ndarray
    half_u: np.ndarray
    half_v: np.ndarray
    axis: np.ndarray


class _Patch(NamedTuple):
    """The hits of one texture code: indices ``sel`` into the N hits, face coordinates and half
    sizes, base and second colour (``c1``, ``c2``: ``n×3``), scale, ``front`` (on a z face,
    face axis 2, where fronts are drawn), the per-primitive texture ``offset`` (``n×3``), and
    the whole ``emission`` array (windows and screens switch off their frames)."""

    sel: np.ndarray
    u: np.ndarray
    v: np.ndarray
    hu: np.ndarray
    hv: np.ndarray
    c1: np.ndarray
    c2: np.ndarray
    scale: np.ndarray
    front: np.ndarray
    offset: np.ndarray
    emission: np.ndarray

    @property
    def o0(self) -> np.ndarray:
        return self.offset[:, 0]

    @property
    def o1(self) -> np.ndarray:
        return self.offset[:, 1]


def _stripes(q: _Patch) -> np.ndarray:
    """Two-colour stripes across u (along v for a negative scale)."""
    coord = np.where(q.scale < 0, q.v, q.u)
    m = (coord / np.abs(q.scale) + q.o0) % 1 < 0.5
    return np.where(m[:, None], q.c2, q.c1)


def _tiles(q: _Patch) -> np.ndarray:
    """Square tiles of side ``scale`` with a slight per-tile shade and ``c2`` grout."""
    fu, fv = q.u / q.scale + q.o0, q.v / q.scale + q.o1
    ti, tj = np.floor(fu), np.floor(fv)
    var = 1 + 0.1 * (_hash(ti, tj) - 0.5)
    g = 0.02 / q.scale
    grout = ((fu - ti) < g) | ((fv - tj) < g)
    return np.where(grout[:, None], q.c2, q.c1 * var[:, None])


def _fabric(q: _Patch) -> np.ndarray:
    """Smooth mottling plus a fine weave."""
    uu, vv = q.u, q.v
    n = _noise(uu * 5 + q.o0, vv * 5 + q.o1)
    fine = _hash(np.floor(uu * 180), np.floor(vv * 180)) - 0.5
    return q.c1 * (1 + 0.09 * n + 0.07 * fine)[:, None]


def _wood(q: _Patch) -> np.ndarray:
    """Planks ``scale`` wide with grain and gaps (no gaps at ``SOLID_WOOD`` scale)."""
    uu, vv, scale, c1, c2 = q.u, q.v, q.scale, q.c1, q.c2
    fv = vv / scale + q.o1
    row = np.floor(fv)
    shift = _hash(row, 7) * 3.0
    fu = (uu + shift) / 1.2
    seg = np.floor(fu)
    grain = np.sin(vv * 90.0 + 5.0 * _noise(uu * 0.8 + shift + q.o0, vv * 6 + row))
    var = 1 + 0.16 * (_hash(row, seg) - 0.5)
    mix = 0.28 * (0.5 + 0.5 * grain) ** 2
    out = (c1 + (c2 - c1) * mix[:, None]) * var[:, None]
    gap = (((fv - row) < 0.035) | ((fu - seg) < 0.004)) & (scale < 10)
    out[gap] *= 0.55
    return out


def _panels(q: _Patch, drawers: bool) -> np.ndarray:
    """Drawer fronts stacked every ``scale`` up (``drawers``) or doors every ``scale`` across,
    with grooves and knobs on the front face."""
    uu, vv, hu, hv, scale, front = q.u, q.v, q.hu, q.hv, q.scale, q.front
    coord = (vv + hv) if drawers else (uu + hu)
    rel = coord % scale
    groove = (rel < 0.012) & front
    knob_pos = scale / 2 if drawers else 0.05
    other = uu if drawers else vv - hv * 0.2
    knob = front & (np.abs(rel - knob_pos) < 0.018) & (np.abs(other) < 0.05)
    out = q.c1.copy()
    out[groove] *= 0.45
    out[knob] = out[knob] * 0.3 + 0.25
    return out


def _door(q: _Patch) -> np.ndarray:
    """A panelled door with a ``c2`` knob."""
    uu, vv, hu, hv, front = q.u, q.v, q.hu, q.hv, q.front
    border = (np.abs(uu) > hu - 0.09) | (np.abs(vv) > hv - 0.09)
    mid = np.abs(vv - hv * 0.15) < 0.05
    out = q.c1.copy()
    out[front & ~border & ~mid] *= 0.88
    knob = front & (np.abs(uu - (hu - 0.08)) < 0.025) & (np.abs(vv + 0.05) < 0.025)
    out[knob] = q.c2[knob]
    return out


def _picture(q: _Patch) -> np.ndarray:
    """A smooth random image in a ``c2`` frame."""
    uu, vv, hu, hv, scale, c1 = q.u, q.v, q.hu, q.hv, q.scale, q.c1
    bw = np.minimum(0.05, 0.12 * np.minimum(hu, hv))
    frame = (np.abs(uu) > hu - bw) | (np.abs(vv) > hv - bw) | ~q.front
    f = 3.0 / scale
    n1 = 0.5 + 0.5 * _noise(uu * f + q.o0, vv * f + q.o1)
    n2 = 0.5 + 0.5 * _noise(vv * f * 1.7 + q.offset[:, 2], uu * f * 1.3)
    cb = 1 - c1 * 0.8
    img = (c1 + (cb - c1) * n1[:, None]) * (0.7 + 0.4 * n2)[:, None]
    return np.where(frame[:, None], q.c2, img)


def _window(q: _Patch) -> np.ndarray:
    """Sky behind a ``c2`` frame (mullions when ``scale`` > 0.5); the frame does not glow."""
    uu, vv, hu, hv, c1 = q.u, q.v, q.hu, q.hv, q.c1
    frame = (np.abs(uu) > hu - 0.05) | (np.abs(vv) > hv - 0.05) | ~q.front
    frame |= (q.scale > 0.5) & ((np.abs(uu) < 0.025) | (np.abs(vv - hv * 0.2) < 0.025))
    sky = c1 + (1 - c1) * (np.clip(0.5 - vv / (2 * hv), 0, 1) * 0.8)[:, None]
    out = np.where(frame[:, None], q.c2, sky)
    q.emission[q.sel[frame]] = 0.0
    return out


def _books(q: _Patch) -> np.ndarray:
    """A row of spines ``scale`` wide, random colours and heights."""
    vv, hv = q.v, q.hv
    fu = q.u / q.scale + q.o0
    idx = np.floor(fu)
    col = np.stack([0.12 + 0.7 * _hash(idx, 1), 0.12 + 0.6 * _hash(idx, 2),
                    0.12 + 0.55 * _hash(idx, 3)], 1)  # fmt: skip
    col = col * 0.6 + q.c1 * 0.4
    col[(fu - idx) < 0.1] *= 0.6
    top = (vv + hv) > 2 * hv * (0.6 + 0.4 * _hash(idx, 4))
    return np.where(top[:, None], q.c2, col)


def _screen(q: _Patch) -> np.ndarray:
    """A lit (emissive) or dark screen in a ``c2`` bezel; the bezel does not glow."""
    uu, vv, hu, hv, c1 = q.u, q.v, q.hu, q.hv, q.c1
    bez = (np.abs(uu) > hu - 0.025) | (np.abs(vv) > hv - 0.025) | ~q.front
    on = q.emission[q.sel] > 0
    n1 = _noise(uu * 6 + q.o0, vv * 6 + q.o1)
    lit = np.stack([0.3 + 0.3 * n1, 0.45 + 0.2 * n1, 0.7 - 0.2 * n1], 1)
    dark = c1 * (1.1 + 0.5 * (uu / hu * 0.3 + vv / hv * 0.3))[:, None]
    img = np.where(on[:, None], lit, dark)
    out = np.where(bez[:, None], q.c2, img)
    q.emission[q.sel[bez]] = 0.0
    return out


def _board(q: _Patch) -> np.ndarray:
    """A white- or blackboard (reflective when ``scale`` > 0.5) in a ``c2`` frame."""
    uu, vv = q.u, q.v
    frame = (np.abs(uu) > q.hu - 0.025) | (np.abs(vv) > q.hv - 0.025) | ~q.front
    refl = 0.85 + 0.3 * (0.5 + 0.5 * _noise(uu * 1.5 + q.o0, vv * 1.5))
    flat = 0.97 + 0.03 * _noise(uu * 3, vv * 3)
    out = q.c1 * np.where(q.scale > 0.5, refl, flat)[:, None]
    out[frame] = q.c2[frame]
    return out


def _blinds(q: _Patch) -> np.ndarray:
    """Horizontal slats 3.5 cm apart."""
    return q.c1 * (0.72 + 0.35 * ((q.v / 0.035 + q.o0) % 1))[:, None]


def _curtain(q: _Patch) -> np.ndarray:
    """Vertical folds 14 cm apart."""
    return q.c1 * (0.72 + 0.14 * (1 + np.sin(q.u * (2 * np.pi / 0.14) + q.o0)))[:, None]


#: Texture code → its pattern (``Tex.PLAIN`` is handled apart: it needs no colours).
_PATTERNS = {
    Tex.STRIPES: _stripes,
    Tex.TILES: _tiles,
    Tex.FABRIC: _fabric,
    Tex.WOOD: _wood,
    Tex.DRAWERS: functools.partial(_panels, drawers=True),
    Tex.DOORS: functools.partial(_panels, drawers=False),
    Tex.DOOR: _door,
    Tex.PICTURE: _picture,
    Tex.WINDOW: _window,
    Tex.BOOKS: _books,
    Tex.SCREEN: _screen,
    Tex.BOARD: _board,
    Tex.BLINDS: _blinds,
    Tex.CURTAIN: _curtain,
}


def apply_textures(albedo: np.ndarray, emission: np.ndarray, tex_codes: np.ndarray,
                   prim_idx: np.ndarray, faces: FaceCoords, packed: dict) -> None:  # fmt: skip
    """Modulate albedo ``N×3`` (and emission ``N``) in place, texture by texture.

    tex_codes, prim_idx: ``Tex`` code and primitive index per hit; faces: where each hit lies
    on its face; all length N. ``packed``: ``Scene.packed()``.
    """
    codes = np.unique(packed["tex"][np.unique(prim_idx)])
    for code in codes:
        sel = np.nonzero(tex_codes == code)[0]
        if sel.size == 0:
            continue
        p = prim_idx[sel]
        uu, vv = faces.u[sel], faces.v[sel]
        offset = np.take(packed["tex_offset"], p, axis=0)
        if code == Tex.PLAIN:
            albedo[sel] *= (1 + 0.035 * _noise(uu * 2.5 + offset[:, 0],
                                               vv * 2.5 + offset[:, 1]))[:, None]  # fmt: skip
            continue
        patch = _Patch(sel, uu, vv, faces.half_u[sel], faces.half_v[sel], albedo[sel],
                       np.take(packed["color2"], p, axis=0), np.take(packed["scale"], p),
                       faces.axis[sel] == 2, offset, emission)  # fmt: skip
        pattern = _PATTERNS.get(int(code))
        albedo[sel] = patch.c1 if pattern is None else pattern(patch)
