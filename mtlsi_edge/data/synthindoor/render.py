"""SynthIndoor rendering: ray cast a view, then normals, textures, lighting and sensor noise.

``render_view`` renders a scene from a given pose; ``render_sample(seed)`` draws a room and a
camera pose from the seed and renders it. All ground truth comes from the same ray cast.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from mtlsi_edge.data.synthindoor.camera import sample_camera
from mtlsi_edge.data.synthindoor.raycast import cast_rays, ray_grid
from mtlsi_edge.data.synthindoor.rooms import make_scene
from mtlsi_edge.data.synthindoor.scene import (
    N_ROOM_FACES,
    RoomFace,
    Scene,
    Shape,
    SynthSample,
    intrinsics,
)
from mtlsi_edge.data.synthindoor.textures import apply_textures
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


def render_view(scene: Scene, pos: np.ndarray, rot: np.ndarray, size: tuple[int, int],
                noise_rng: np.random.Generator | None,
                blur: bool = True) -> SynthSample:  # fmt: skip
    """Ray cast ``scene`` from ``pos`` (3,) with camera-to-world ``rot`` (3×3) at ``size``.

    Then, on the visible hits only: surface normals and face coordinates, textures, lighting,
    and (when ``noise_rng`` is given) exposure, vignetting, blur and sensor noise.
    """
    h, w = size
    k = intrinsics(size)
    dcam = ray_grid(h, w)
    n = h * w
    rf = rot.astype(np.float32)
    d = np.empty((3, h, w), np.float32)
    xs, ys = dcam[0, 0], dcam[1, :, 0]
    for i in range(3):  # world ray directions, exploiting the separable camera grid
        d[i] = rf[i, 0] * xs[None, :] + (rf[i, 1] * ys + rf[i, 2])[:, None]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inv = 1.0 / d
        best, prim_idx = cast_rays(scene, pos, rot, d, inv, k)
    packed = scene.packed()
    p = prim_idx.ravel().astype(np.intp)
    t = best.ravel()
    valid = np.isfinite(t)
    all_valid = bool(valid.all())
    if not all_valid:  # cannot happen inside the closed room; keep arrays well defined
        t = np.where(valid, t, 0.0).astype(np.float32)
    dx, dy, dz = d.reshape(3, n)
    o = pos.astype(np.float32)
    px, py, pz = o[0] + t * dx, o[1] + t * dy, o[2] + t * dz  # world hit points
    gx = px - np.take(packed["cx"], p)  # hit point relative to the primitive centre
    gy = py - np.take(packed["cy"], p)
    gz = pz - np.take(packed["cz"], p)
    c, s = np.take(packed["cos"], p), np.take(packed["sin"], p)
    qx = c * gx - s * gz  # primitive-frame coordinates
    qy = gy
    qz = s * gx + c * gz
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
    cyl = np.nonzero(np.take(packed["kind"], p) == Shape.CYLINDER)[0]
    if cyl.size:
        cx, cy, cz = qx[cyl], qy[cyl], qz[cyl]
        rad = np.sqrt(cx * cx + cz * cz)
        r = hx[cyl]
        cap = ay[cyl] > rad / r
        rs = np.maximum(rad, 1e-6)
        nl0[cyl] = np.where(cap, 0, cx / rs)
        nl1[cyl] = np.where(cap, np.sign(cy), 0)
        nl2[cyl] = np.where(cap, 0, cz / rs)
        face_axis[cyl] = np.where(cap, 1, 3)
        u[cyl] = np.where(cap, cx, np.arctan2(cz, cx) * r)
        v[cyl] = np.where(cap, cz, cy)
        hu[cyl] = r
        hv[cyl] = np.where(cap, r, hy[cyl])
    # world normals, oriented towards the camera
    nw0 = c * nl0 + s * nl2
    nw1 = nl1
    nw2 = -s * nl0 + c * nl2
    sgn = 1 - 2 * (nw0 * dx + nw1 * dy + nw2 * dz > 0).astype(np.float32)
    nw0 *= sgn
    nw1 = nw1 * sgn
    nw2 *= sgn
    normals = np.empty((n, 3), np.float32)
    for i in range(3):  # camera frame: R^T n
        normals[:, i] = rf[0, i] * nw0 + rf[1, i] * nw1 + rf[2, i] * nw2

    sem = np.take(packed["cls"], p)
    inst = np.take(packed["inst"], p)
    if not all_valid:
        sem = np.where(valid, sem, IGNORE_INDEX).astype(np.uint8)

    # albedo (N×3) and emission
    albedo = np.take(packed["color"], p, axis=0)
    emission = np.take(packed["emis"], p)
    apply_textures(albedo, emission, np.take(packed["tex"], p), p, u, v, hu, hv, face_axis, packed)

    # shading: ambient + point light + directional light
    lx, ly, lz = (float(x) for x in scene.light_pos)
    vx, vy, vz = lx - px, ly - py, lz - pz
    dist2 = vx * vx + vy * vy + vz * vz
    ndl = np.maximum(nw0 * vx + nw1 * vy + nw2 * vz, 0) / np.sqrt(dist2)
    shade = scene.ambient + scene.light_power * ndl / (1 + dist2 * (1 / scene.light_range**2))
    sx, sy, sz = (-float(x) for x in scene.sun_dir)
    shade += scene.sun_power * np.maximum(nw0 * sx + nw1 * sy + nw2 * sz, 0)
    on_room = np.nonzero(p < N_ROOM_FACES)[0]
    if on_room.size:  # soft darkening towards the room's edges and corners
        room_w, room_h, room_d = scene.dims
        ex = room_w / 2 - np.abs(qx[on_room])  # distances to the room's edges
        ey = room_h / 2 - np.abs(qy[on_room])
        ez = room_d / 2 - np.abs(qz[on_room])
        in_face = [np.minimum(ey, ez), np.minimum(ex, ez), np.minimum(ex, ey)]  # by face axis
        e = np.choose(face_axis[on_room], in_face)
        shade[on_room] *= 1 - 0.28 / (1 + (e * (1 / 0.3)) ** 2)
    on_floor = np.nonzero(p == RoomFace.FLOOR)[0]
    footprints = packed["shadow"]
    if on_floor.size and len(footprints):  # contact shadows of grounded furniture on the floor
        x, z = px[on_floor], pz[on_floor]
        occ = np.ones(on_floor.size, np.float32)
        for x0, z0, x1, z1 in footprints.tolist():
            ddx = np.maximum(np.maximum(x0 - x, x - x1), 0)
            ddz = np.maximum(np.maximum(z0 - z, z - z1), 0)
            occ *= 1 - 0.45 / (1 + (ddx * ddx + ddz * ddz) * 50.0)
        shade[on_floor] *= occ
    light = shade * (1 - emission) + 1.15 * emission
    rng = noise_rng
    if rng is not None:
        light *= 1 - rng.uniform(0.1, 0.35) * _vignette(h, w).ravel()
        light *= rng.uniform(0.88, 1.12)
    albedo *= light[:, None]
    albedo *= (scene.tint * 255).astype(np.float32)
    img = albedo.reshape(h, w, 3)
    if rng is not None:
        if blur and rng.random() < 0.6:
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 0.9))
        sigma = rng.uniform(1.0, 3.5)
        row0, col0 = rng.integers(0, 64, 2)  # random crop of the fixed noise field
        img += _noise_tile(h, w)[row0 : row0 + h, col0 : col0 + w] * np.float32(sigma)
    img += 0.5
    np.clip(img, 0, 255, out=img)
    img8 = img.astype(np.uint8)

    depth = best if all_valid else np.where(np.isfinite(best), best, 0).astype(np.float32)
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

