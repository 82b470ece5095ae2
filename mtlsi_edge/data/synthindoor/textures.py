"""SynthIndoor procedural textures: one branch per ``Tex`` code, evaluated on visible hits only.

Patterns are functions of face coordinates (u, v in metres) plus a per-primitive random offset,
so they stay fixed to surfaces as the camera moves (walkthrough frames do not shimmer).
"""

from __future__ import annotations

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


def apply_textures(albedo: np.ndarray, emission: np.ndarray, tex_codes: np.ndarray,
                   prim_idx: np.ndarray, u: np.ndarray, v: np.ndarray, half_u: np.ndarray,
                   half_v: np.ndarray, face_axis: np.ndarray, packed: dict) -> None:  # fmt: skip
    """Modulate albedo ``N×3`` (and emission ``N``) in place, texture by texture.

    tex_codes, prim_idx: ``Tex`` code and primitive index per hit; u, v: face coordinates
    (metres, centred on the face); half_u, half_v: face half sizes; face_axis: 0/1/2 box face
    normal axis, 3 cylinder side; all length N. ``packed``: ``Scene.packed()``.
    """
    codes = np.unique(packed["tex"][np.unique(prim_idx)])
    for code in codes:
        sel = np.nonzero(tex_codes == code)[0]
        if sel.size == 0:
            continue
        p = prim_idx[sel]
        uu, vv = u[sel], v[sel]
        offset = np.take(packed["tex_offset"], p, axis=0)
        o0, o1 = offset[:, 0], offset[:, 1]
        if code == Tex.PLAIN:
            albedo[sel] *= (1 + 0.035 * _noise(uu * 2.5 + o0, vv * 2.5 + o1))[:, None]
            continue
        hu, hv = half_u[sel], half_v[sel]
        c1 = albedo[sel]
        c2 = np.take(packed["color2"], p, axis=0)
        scale = np.take(packed["scale"], p)
        front = face_axis[sel] == 2
        if code == Tex.STRIPES:
            coord = np.where(scale < 0, vv, uu)
            m = (coord / np.abs(scale) + o0) % 1 < 0.5
            out = np.where(m[:, None], c2, c1)
        elif code == Tex.TILES:
            fu, fv = uu / scale + o0, vv / scale + o1
            ti, tj = np.floor(fu), np.floor(fv)
            var = 1 + 0.1 * (_hash(ti, tj) - 0.5)
            g = 0.02 / scale
            grout = ((fu - ti) < g) | ((fv - tj) < g)
            out = np.where(grout[:, None], c2, c1 * var[:, None])
        elif code == Tex.FABRIC:
            n = _noise(uu * 5 + o0, vv * 5 + o1)
            fine = _hash(np.floor(uu * 180), np.floor(vv * 180)) - 0.5
            out = c1 * (1 + 0.09 * n + 0.07 * fine)[:, None]
        elif code == Tex.WOOD:
            fv = vv / scale + o1
            row = np.floor(fv)
            shift = _hash(row, 7) * 3.0
            fu = (uu + shift) / 1.2
            seg = np.floor(fu)
            grain = np.sin(vv * 90.0 + 5.0 * _noise(uu * 0.8 + shift + o0, vv * 6 + row))
            var = 1 + 0.16 * (_hash(row, seg) - 0.5)
            mix = 0.28 * (0.5 + 0.5 * grain) ** 2
            out = (c1 + (c2 - c1) * mix[:, None]) * var[:, None]
            gap = (((fv - row) < 0.035) | ((fu - seg) < 0.004)) & (scale < 10)
            out[gap] *= 0.55
        elif code in (Tex.DRAWERS, Tex.DOORS):
            coord = (vv + hv) if code == Tex.DRAWERS else (uu + hu)
            rel = coord % scale
            groove = (rel < 0.012) & front
            knob_pos = scale / 2 if code == Tex.DRAWERS else 0.05
            other = uu if code == Tex.DRAWERS else vv - hv * 0.2
            knob = front & (np.abs(rel - knob_pos) < 0.018) & (np.abs(other) < 0.05)
            out = c1.copy()
            out[groove] *= 0.45
            out[knob] = out[knob] * 0.3 + 0.25
        elif code == Tex.DOOR:
            border = (np.abs(uu) > hu - 0.09) | (np.abs(vv) > hv - 0.09)
            mid = np.abs(vv - hv * 0.15) < 0.05
            out = c1.copy()
            out[front & ~border & ~mid] *= 0.88
            knob = front & (np.abs(uu - (hu - 0.08)) < 0.025) & (np.abs(vv + 0.05) < 0.025)
            out[knob] = c2[knob]
        elif code == Tex.PICTURE:
            bw = np.minimum(0.05, 0.12 * np.minimum(hu, hv))
            frame = (np.abs(uu) > hu - bw) | (np.abs(vv) > hv - bw) | ~front
            f = 3.0 / scale
            n1 = 0.5 + 0.5 * _noise(uu * f + o0, vv * f + o1)
            n2 = 0.5 + 0.5 * _noise(vv * f * 1.7 + offset[:, 2], uu * f * 1.3)
            cb = 1 - c1 * 0.8
            img = (c1 + (cb - c1) * n1[:, None]) * (0.7 + 0.4 * n2)[:, None]
            out = np.where(frame[:, None], c2, img)
        elif code == Tex.WINDOW:
            frame = (np.abs(uu) > hu - 0.05) | (np.abs(vv) > hv - 0.05) | ~front
            frame |= (scale > 0.5) & ((np.abs(uu) < 0.025) | (np.abs(vv - hv * 0.2) < 0.025))
            sky = c1 + (1 - c1) * (np.clip(0.5 - vv / (2 * hv), 0, 1) * 0.8)[:, None]
            out = np.where(frame[:, None], c2, sky)
            emission[sel[frame]] = 0.0
        elif code == Tex.BOOKS:
            fu = uu / scale + o0
            idx = np.floor(fu)
            col = np.stack([0.12 + 0.7 * _hash(idx, 1), 0.12 + 0.6 * _hash(idx, 2),
                            0.12 + 0.55 * _hash(idx, 3)], 1)  # fmt: skip
            col = col * 0.6 + c1 * 0.4
            col[(fu - idx) < 0.1] *= 0.6
            top = (vv + hv) > 2 * hv * (0.6 + 0.4 * _hash(idx, 4))
            out = np.where(top[:, None], c2, col)
        elif code == Tex.SCREEN:
            bez = (np.abs(uu) > hu - 0.025) | (np.abs(vv) > hv - 0.025) | ~front
            on = emission[sel] > 0
            n1 = _noise(uu * 6 + o0, vv * 6 + o1)
            lit = np.stack([0.3 + 0.3 * n1, 0.45 + 0.2 * n1, 0.7 - 0.2 * n1], 1)
            dark = c1 * (1.1 + 0.5 * (uu / hu * 0.3 + vv / hv * 0.3))[:, None]
            img = np.where(on[:, None], lit, dark)
            out = np.where(bez[:, None], c2, img)
            emission[sel[bez]] = 0.0
        elif code == Tex.BOARD:
            frame = (np.abs(uu) > hu - 0.025) | (np.abs(vv) > hv - 0.025) | ~front
            refl = 0.85 + 0.3 * (0.5 + 0.5 * _noise(uu * 1.5 + o0, vv * 1.5))
            flat = 0.97 + 0.03 * _noise(uu * 3, vv * 3)
            out = c1 * np.where(scale > 0.5, refl, flat)[:, None]
            out[frame] = c2[frame]
        elif code == Tex.BLINDS:
            out = c1 * (0.72 + 0.35 * ((vv / 0.035 + o0) % 1))[:, None]
        elif code == Tex.CURTAIN:
            out = c1 * (0.72 + 0.14 * (1 + np.sin(uu * (2 * np.pi / 0.14) + o0)))[:, None]
        else:
            out = c1
        albedo[sel] = out

