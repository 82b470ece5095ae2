"""SynthIndoor camera: camera-to-world rotations and random poses that look into the room.

Camera frame is OpenCV (x right, y down, z forward); the world has y up and the room spans
``[0, Wx]×[0, Hy]×[0, Dz]``.
"""

from __future__ import annotations

import math

import numpy as np

from mtlsi_edge.data.synthindoor.scene import Scene


def camera_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
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


def view_scores(scene: Scene, xs: np.ndarray, zs: np.ndarray, yaws: np.ndarray) -> np.ndarray:
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


def sample_camera(scene: Scene, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
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
    n_yaws = 6
    yaws = rng.uniform(-math.pi, math.pi, (xs.size, n_yaws))
    score = view_scores(scene, xs, zs, yaws)
    flat = score.ravel()
    top = np.argsort(-flat)[:5]
    pick = int(top[int(rng.integers(top.size))])
    i, j = divmod(pick, n_yaws)
    y = rng.uniform(1.2, 1.8)
    pitch = float(np.clip(rng.normal(-0.17, 0.1), -0.45, 0.12))
    roll = rng.uniform(-0.05, 0.05)
    rot = camera_rotation(float(yaws[i, j]), pitch, roll)
    return np.array([xs[i], min(y, hy - 0.3), zs[i]]), rot

