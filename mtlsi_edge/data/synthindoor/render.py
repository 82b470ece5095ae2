"""SynthIndoor rendering: ray cast a view, then normals, textures, lighting and sensor noise.

``render_view`` renders a scene from a given pose; ``render_sample(seed)`` draws a room and a
camera pose from the seed and renders it. All ground truth comes from the same ray cast.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import cv2
import numpy as np

from mtlsi_edge.data.synthindoor.camera import sample_camera
from mtlsi_edge.data.synthindoor.raycast import Vec3, cast_rays, ray_grid
from mtlsi_edge.data.synthindoor.rooms import make_scene
from mtlsi_edge.data.synthindoor.scene import (
    N_ROOM_FACES,
    RoomFace,
    Scene,
    Shape,
    SynthSample,
    intrinsics,
)
from mtlsi_edge.data.synthindoor.textures import FaceCoords, apply_textures
from mtlsi_edge.tasks import IGNORE_INDEX


@lru_cache(maxsize=8)
def _vignette(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - (w - 1) / 2) / (w / 2)) ** 2 + ((yy - (h - 1) / 2) / (h / 2)) ** 2
    v = (r2 / 2).astype(np.float32)
    v.setflags(write=False)
    return v


def _boundary(sem: np.ndarray, inst: np.ndarray, prim_idx: np.ndarray,
              depth: np.ndarray) -> np.ndarray:  # fmt: skip
    """One-pixel boundary ``H×W`` uint8 0/1 on the nearer side of each discontinuity."""
    b = np.zeros(sem.shape, np.uint8)
    for axis in (0, 1):
        sl_a = (slice(None), slice(None, -1)) if axis else (slice(None, -1), slice(None))
        sl_b = (slice(None), slice(1, None)) if axis else (slice(1, None), slice(None))
        da, db = depth[sl_a], depth[sl_b]
        jump = np.abs(da - db) > 0.05 * np.minimum(da, db)
        e = (sem[sl_a] != sem[sl_b]) | (inst[sl_a] != inst[sl_b])
        e |= (prim_idx[sl_a] != prim_idx[sl_b]) & jump
        a_near = da <= db
        b[sl_a] |= e & a_near
        b[sl_b] |= e & ~a_near
    return b


@lru_cache(maxsize=4)
def _noise_tile(h: int, w: int) -> np.ndarray:
    """Fixed ``(H+64)×(W+64)×3`` float32 N(0,1) field; images use random crops of it (fast)."""
    t = np.random.default_rng(20240601).standard_normal((h + 64, w + 64, 3), dtype=np.float32)
    t.setflags(write=False)
    return t


def _world_rays(rot: np.ndarray, h: int, w: int) -> np.ndarray:
    """World ray directions ``3×H×W`` float32 (camera z = 1) for camera-to-world ``rot``."""
    dcam = ray_grid(h, w)
    rf = rot.astype(np.float32)
    d = np.empty((3, h, w), np.float32)
    xs, ys = dcam[0, 0], dcam[1, :, 0]
    for i in range(3):  # exploiting the separable camera grid
        d[i] = rf[i, 0] * xs[None, :] + (rf[i, 1] * ys + rf[i, 2])[:, None]
    return d


class _Hits(NamedTuple):
    """The nearest hit of every pixel, flattened (length N = H·W).

    p: primitive index; t: z-depth (0 where nothing was hit); valid: something was hit;
    all_valid: everywhere; world: the world hit point; local: the hit point in the primitive's
    frame (relative to its centre); cos, sin: the primitive's yaw.
    """

    p: np.ndarray
    t: np.ndarray
    valid: np.ndarray
    all_valid: bool
    world: Vec3
    local: Vec3
    cos: np.ndarray
    sin: np.ndarray


class _Surface(NamedTuple):
    """Per hit: the unit surface normal in the primitive's frame and the face coordinates."""

    normal: Vec3
    faces: FaceCoords


def _locate_hits(packed: dict, pos: np.ndarray, best: np.ndarray, prim_idx: np.ndarray,
                 d: np.ndarray) -> _Hits:  # fmt: skip
    """World and primitive-frame hit points of the ray cast (``best``, ``prim_idx``)."""
    p = prim_idx.ravel().astype(np.intp)
    t = best.ravel()
    valid = np.isfinite(t)
    all_valid = bool(valid.all())
    if not all_valid:  # cannot happen inside the closed room; keep arrays well defined
        t = np.where(valid, t, 0.0).astype(np.float32)
    dx, dy, dz = d.reshape(3, t.size)
    o = pos.astype(np.float32)
    px, py, pz = o[0] + t * dx, o[1] + t * dy, o[2] + t * dz  # world hit points
    gx = px - np.take(packed["cx"], p)  # hit point relative to the primitive centre
    gy = py - np.take(packed["cy"], p)
    gz = pz - np.take(packed["cz"], p)
    c, s = np.take(packed["cos"], p), np.take(packed["sin"], p)
    qx = c * gx - s * gz  # primitive-frame coordinates
    qy = gy
    qz = s * gx + c * gz
    return _Hits(p, t, valid, all_valid, (px, py, pz), (qx, qy, qz), c, s)


def _surface(packed: dict, hits: _Hits) -> _Surface:
    """Normal and face coordinates of every hit: box faces, then cylinder sides and caps."""
    p = hits.p
    qx, qy, qz = hits.local
    hx, hy, hz = np.take(packed["hx"], p), np.take(packed["hy"], p), np.take(packed["hz"], p)
    ax, ay, az = np.abs(qx) / hx, np.abs(qy) / hy, np.abs(qz) / hz
    # box face hit: the axis along which the point is relatively farthest out
    m0 = (ax >= ay) & (ax >= az)
    m1 = ~m0 & (ay >= az)
    m2 = ~(m0 | m1)
    face_axis = m1.astype(np.int8) + 2 * m2.astype(np.int8)
    nl0, nl1, nl2 = m0 * np.sign(qx), m1 * np.sign(qy), m2 * np.sign(qz)
    u = np.where(m0, qz, qx)
    v = np.where(m1, qz, qy)
    hu = np.where(m0, hz, hx)
    hv = np.where(m1, hz, hy)
    surf = _Surface((nl0, nl1, nl2), FaceCoords(u, v, hu, hv, face_axis))
    cyl = np.nonzero(np.take(packed["kind"], p) == Shape.CYLINDER)[0]
    if cyl.size:
        _cylinder_surface(surf, cyl, hits.local, (hx, hy), ay)
    return surf


def _cylinder_surface(surf: _Surface, cyl: np.ndarray, local: Vec3,
                      half_xy: tuple[np.ndarray, np.ndarray], ay: np.ndarray) -> None:  # fmt: skip
    """Overwrite ``surf`` (in place) on the hits ``cyl`` of cylinders: side (face axis 3,
    u = arc length, v = height) or cap (axis 1). ``half_xy``: radius and half height per hit;
    ``ay``: |y| relative to the half height."""
    (nl0, nl1, nl2), faces = surf
    cx, cy, cz = local[0][cyl], local[1][cyl], local[2][cyl]
    rad = np.sqrt(cx * cx + cz * cz)
    r = half_xy[0][cyl]
    cap = ay[cyl] > rad / r
    rs = np.maximum(rad, 1e-6)
    nl0[cyl] = np.where(cap, 0, cx / rs)
    nl1[cyl] = np.where(cap, np.sign(cy), 0)
    nl2[cyl] = np.where(cap, 0, cz / rs)
    faces.axis[cyl] = np.where(cap, 1, 3)
    faces.u[cyl] = np.where(cap, cx, np.arctan2(cz, cx) * r)
    faces.v[cyl] = np.where(cap, cz, cy)
    faces.half_u[cyl] = r
    faces.half_v[cyl] = np.where(cap, r, half_xy[1][cyl])


def _facing_normals(hits: _Hits, normal: Vec3, d: np.ndarray) -> Vec3:
    """World normals, oriented towards the camera (against the rays ``d``)."""
    c, s = hits.cos, hits.sin
    nl0, nl1, nl2 = normal
    dx, dy, dz = d.reshape(3, hits.t.size)
    nw0 = c * nl0 + s * nl2
    nw1 = nl1
    nw2 = -s * nl0 + c * nl2
    sgn = 1 - 2 * (nw0 * dx + nw1 * dy + nw2 * dz > 0).astype(np.float32)
    nw0 *= sgn
    nw1 = nw1 * sgn
    nw2 *= sgn
    return nw0, nw1, nw2


def _camera_normals(rot: np.ndarray, nw: Vec3) -> np.ndarray:
    """``N×3`` float32 normals in the camera frame (Rᵀ n) from world normals ``nw``."""
    rf = rot.astype(np.float32)
    nw0, nw1, nw2 = nw
    normals = np.empty((nw0.size, 3), np.float32)
    for i in range(3):
        normals[:, i] = rf[0, i] * nw0 + rf[1, i] * nw1 + rf[2, i] * nw2
    return normals


def _shade(scene: Scene, packed: dict, hits: _Hits, nw: Vec3,
           face_axis: np.ndarray) -> np.ndarray:  # fmt: skip
    """Lambertian light per hit: ambient + ceiling point light + directional light, darkened
    towards the room's edges and around grounded furniture on the floor."""
    px, py, pz = hits.world
    nw0, nw1, nw2 = nw
    lx, ly, lz = (float(x) for x in scene.light_pos)
    vx, vy, vz = lx - px, ly - py, lz - pz
    dist2 = vx * vx + vy * vy + vz * vz
    ndl = np.maximum(nw0 * vx + nw1 * vy + nw2 * vz, 0) / np.sqrt(dist2)
    shade = scene.ambient + scene.light_power * ndl / (1 + dist2 * (1 / scene.light_range**2))
    sx, sy, sz = (-float(x) for x in scene.sun_dir)
    shade += scene.sun_power * np.maximum(nw0 * sx + nw1 * sy + nw2 * sz, 0)
    _room_edge_occlusion(scene, hits, face_axis, shade)
    _contact_shadows(packed, hits, shade)
    return shade


def _room_edge_occlusion(scene: Scene, hits: _Hits, face_axis: np.ndarray,
                         shade: np.ndarray) -> None:  # fmt: skip
    """Darken ``shade`` (in place) softly towards the room's edges and corners."""
    on_room = np.nonzero(hits.p < N_ROOM_FACES)[0]
    if not on_room.size:
        return
    qx, qy, qz = hits.local
    room_w, room_h, room_d = scene.dims
    ex = room_w / 2 - np.abs(qx[on_room])  # distances to the room's edges
    ey = room_h / 2 - np.abs(qy[on_room])
    ez = room_d / 2 - np.abs(qz[on_room])
    in_face = [np.minimum(ey, ez), np.minimum(ex, ez), np.minimum(ex, ey)]  # by face axis
    e = np.choose(face_axis[on_room], in_face)
    shade[on_room] *= 1 - 0.28 / (1 + (e * (1 / 0.3)) ** 2)


def _contact_shadows(packed: dict, hits: _Hits, shade: np.ndarray) -> None:
    """Darken ``shade`` (in place) on the floor around the footprints of grounded furniture."""
    on_floor = np.nonzero(hits.p == RoomFace.FLOOR)[0]
    footprints = packed["shadow"]
    if not (on_floor.size and len(footprints)):
        return
    x, z = hits.world[0][on_floor], hits.world[2][on_floor]
    occ = np.ones(on_floor.size, np.float32)
    for x0, z0, x1, z1 in footprints.tolist():
        ddx = np.maximum(np.maximum(x0 - x, x - x1), 0)
        ddz = np.maximum(np.maximum(z0 - z, z - z1), 0)
        occ *= 1 - 0.45 / (1 + (ddx * ddx + ddz * ddz) * 50.0)
    shade[on_floor] *= occ


def _photograph(albedo: np.ndarray, light: np.ndarray, tint: np.ndarray, size: tuple[int, int],
                rng: np.random.Generator | None, blur: bool) -> np.ndarray:  # fmt: skip
    """The ``H×W×3`` uint8 image of ``albedo`` (``N×3``, overwritten) lit by ``light`` (``N``,
    overwritten) through the scene ``tint``; with ``rng``: vignetting, exposure, (``blur``)
    a random slight blur and sensor noise, drawn from ``rng`` in that order."""
    h, w = size
    if rng is not None:
        light *= 1 - rng.uniform(0.1, 0.35) * _vignette(h, w).ravel()
        light *= rng.uniform(0.88, 1.12)
    albedo *= light[:, None]
    albedo *= (tint * 255).astype(np.float32)
    img = albedo.reshape(h, w, 3)
    if rng is not None:
        if blur and rng.random() < 0.6:
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 0.9))
        sigma = rng.uniform(1.0, 3.5)
        row0, col0 = rng.integers(0, 64, 2)  # random crop of the fixed noise field
        img += _noise_tile(h, w)[row0 : row0 + h, col0 : col0 + w] * np.float32(sigma)
    img += 0.5
    np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8)


def render_view(scene: Scene, pos: np.ndarray, rot: np.ndarray, size: tuple[int, int],
                noise_rng: np.random.Generator | None,
                blur: bool = True) -> SynthSample:  # fmt: skip
    """Ray cast ``scene`` from ``pos`` (3,) with camera-to-world ``rot`` (3×3) at ``size``.

    Then, on the visible hits only: surface normals and face coordinates, textures, lighting,
    and (when ``noise_rng`` is given) exposure, vignetting, blur and sensor noise.
    """
    h, w = size
    k = intrinsics(size)
    d = _world_rays(rot, h, w)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inv = 1.0 / d
        best, prim_idx = cast_rays(scene, pos, rot, d, inv, k)
    packed = scene.packed()
    hits = _locate_hits(packed, pos, best, prim_idx, d)
    surf = _surface(packed, hits)
    nw = _facing_normals(hits, surf.normal, d)
    normals = _camera_normals(rot, nw)

    p = hits.p
    sem = np.take(packed["cls"], p)
    inst = np.take(packed["inst"], p)
    if not hits.all_valid:
        sem = np.where(hits.valid, sem, IGNORE_INDEX).astype(np.uint8)

    albedo = np.take(packed["color"], p, axis=0)  # N×3, and emission N
    emission = np.take(packed["emis"], p)
    apply_textures(albedo, emission, np.take(packed["tex"], p), p, surf.faces, packed)
    shade = _shade(scene, packed, hits, nw, surf.faces.axis)
    light = shade * (1 - emission) + 1.15 * emission
    img8 = _photograph(albedo, light, scene.tint, (h, w), noise_rng, blur)

    depth = best if hits.all_valid else np.where(np.isfinite(best), best, 0).astype(np.float32)
    semseg = sem.reshape(h, w)
    boundary = _boundary(semseg, inst.reshape(h, w), prim_idx, depth)
    return SynthSample(img8, semseg, depth, normals.reshape(h, w, 3), boundary, k)


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
    scene = make_scene(rng, room)
    pos, rot = sample_camera(scene, rng)
    noise_rng = np.random.default_rng([seed, 1]) if noise else None
    return render_view(scene, pos, rot, (int(size[0]), int(size[1])), noise_rng, blur)

