"""SynthIndoor ray casting: nearest hit per pixel against the room box and its furniture.

Rays are per-pixel directions with camera z = 1, so the hit distance ``t`` is the z-depth.
Boxes use the slab test (rotated boxes in their own frame), cylinders the analytic quadric
plus the cap facing the camera.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from mtlsi_edge.data.synthindoor.scene import (
    N_ROOM_FACES,
    Primitive,
    RoomFace,
    Scene,
    Shape,
    intrinsics,
)


@lru_cache(maxsize=8)
def ray_grid(h: int, w: int) -> np.ndarray:
    """Camera-frame ray directions ``3×H×W`` float32 with z = 1 (so t is the z-depth)."""
    k = intrinsics((h, w))
    u = (np.arange(w, dtype=np.float64) - k[0, 2]) / k[0, 0]
    v = (np.arange(h, dtype=np.float64) - k[1, 2]) / k[1, 1]
    d = np.empty((3, h, w), np.float32)
    d[0] = u[None, :]
    d[1] = v[:, None]
    d[2] = 1.0
    d.setflags(write=False)
    return d


def _room_hits(dims, o: np.ndarray, inv: np.ndarray, d: np.ndarray):
    """Exit distance (z-depth) ``H×W`` float32 and face index ``H×W`` int16 for the room box."""
    t = []
    for k in range(3):
        lo, hi = -float(o[k]), dims[k] - float(o[k])
        t.append(np.maximum(lo * inv[k], hi * inv[k]))
    tx, ty, tz = t
    tyz = np.minimum(ty, tz)
    best = np.minimum(tx, tyz)
    # the exit face: the x, y or z pair whose slab ends first, lo or hi by the ray's sign
    face_yz = np.where(ty <= tz, RoomFace.FLOOR + (d[1] > 0), RoomFace.Z_LO + (d[2] > 0))
    face_x = (RoomFace.X_LO + (d[0] > 0)).astype(np.int16)
    face = np.where(tx <= tyz, face_x, face_yz.astype(np.int16))
    return best, face.astype(np.int16)


Vec3 = tuple[np.ndarray, np.ndarray, np.ndarray]  # x, y, z components (arrays or scalars)


class Rays(NamedTuple):
    """A window of rays in a primitive's frame: the origin relative to the primitive's centre
    (float32 scalars), the directions and their inverses (``h×w`` float32 arrays)."""

    origin: Vec3
    dirs: Vec3
    inv: Vec3


def _hit_box(rays: Rays, half: Vec3) -> np.ndarray:
    """Slab test of the box with half extents ``half`` centred at the frame origin; miss → inf."""
    (ox, oy, oz), (ix, iy, iz) = rays.origin, rays.inv
    hx, hy, hz = half
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


def _hit_cyl(rays: Rays, r: np.float32, hh: np.float32) -> np.ndarray:
    """Vertical cylinder (axis y, radius ``r``, half height ``hh``, centred at the frame origin):
    nearest hit, miss → inf."""
    (ox, oy, oz), (dx, dy, dz), iy = rays.origin, rays.dirs, rays.inv[1]
    a = dx * dx + dz * dz
    bh = ox * dx + oz * dz
    c = ox * ox + oz * oz - r * r
    disc = bh * bh - a * c
    hit = disc >= 0
    ts = (-bh - np.sqrt(np.maximum(disc, 0))) / a
    ys = oy + ts * dy
    hit &= (ts > 1e-4) & (np.abs(ys) <= hh)
    out = np.where(hit, ts, np.float32(np.inf)).astype(np.float32, copy=False)
    if abs(oy) > hh:  # the cap facing the camera is visible
        yc = hh if oy > hh else -hh
        tc = (yc - oy) * iy
        xc = ox + tc * dx
        zc = oz + tc * dz
        cap = (tc > 1e-4) & (xc * xc + zc * zc <= r * r) & ~hit
        out[cap] = tc[cap]
    return out


def _hit_primitive(p: Primitive, origin: np.ndarray, d: np.ndarray,
                   inv: np.ndarray) -> np.ndarray:  # fmt: skip
    """Hit distances ``h×w`` of primitive ``p`` (miss → inf) for a window of rays: ``d`` and
    ``inv`` are ``3×h×w`` views of the directions and their inverses, ``origin`` the camera
    position (float32)."""
    f32 = np.float32
    oc = origin - p.center.astype(np.float32)  # origin in the primitive's frame
    dx, dy, dz = d
    hx, hy, hz = (f32(x) for x in p.half)
    if p.kind == Shape.CYLINDER:
        return _hit_cyl(Rays(tuple(oc), tuple(d), tuple(inv)), hx, hy)
    if p.sin == 0.0 or p.cos == 0.0:  # axis aligned (possibly quarter-turned)
        if p.cos == 0.0:
            hx, hz = hz, hx
        return _hit_box(Rays(tuple(oc), tuple(d), tuple(inv)), (hx, hy, hz))
    # rotated about the vertical axis: the rays in the box's frame
    c, s = f32(p.cos), f32(p.sin)
    lx = c * dx - s * dz
    lz = s * dx + c * dz
    olx = c * oc[0] - s * oc[2]
    olz = s * oc[0] + c * oc[2]
    rays = Rays((olx, oc[1], olz), (lx, dy, lz), (1.0 / lx, inv[1], 1.0 / lz))
    return _hit_box(rays, (hx, hy, hz))


def cast_rays(scene: Scene, o: np.ndarray, rot: np.ndarray, d: np.ndarray, inv: np.ndarray,
              k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Nearest hit per pixel: z-depth ``H×W`` float32 and primitive index ``H×W`` int16.

    o: camera position (3,); rot: camera-to-world rotation; d: world ray directions ``3×H×W``
    (camera z = 1); inv: ``1 / d``; k: intrinsics. Furniture is tested nearest-first, each
    primitive only on its projected screen rectangle, skipped when nearer hits already cover it.
    """
    packed = scene.packed()
    best, prim_idx = _room_hits(scene.dims, o, inv, d)
    _, h, w = d.shape
    corners = packed["corners"]
    if len(corners) == 0:
        return best, prim_idx
    cam = (corners - o) @ rot  # (M, 8, 3) camera coordinates
    z = cam[..., 2]
    zmin, zmax = z.min(1), z.max(1)
    zs = np.maximum(z, 1e-3)
    u = k[0, 0] * cam[..., 0] / zs + k[0, 2]
    v = k[1, 1] * cam[..., 1] / zs + k[1, 2]
    umin, umax, vmin, vmax = u.min(1), u.max(1), v.min(1), v.max(1)
    near = 0.02
    order = np.argsort(zmin)
    prims = packed["prims"]
    origin32 = o.astype(np.float32)
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
        best_win = best[r0:r1, c0:c1]
        if zmin[m] > near and best_win.max() <= zmin[m]:
            continue  # already covered by nearer surfaces
        t = _hit_primitive(prims[N_ROOM_FACES + m], origin32, d[:, r0:r1, c0:c1],
                           inv[:, r0:r1, c0:c1])
        closer = t < best_win
        np.copyto(best_win, t, where=closer)
        np.copyto(prim_idx[r0:r1, c0:c1], np.int16(N_ROOM_FACES + m), where=closer)
    return best, prim_idx

