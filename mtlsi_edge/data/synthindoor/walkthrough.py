"""SynthIndoor walkthrough video: a smooth camera loop through one room, written as mp4.

Used by the demo and its tests as a deterministic input video (``render_walkthrough``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np

from mtlsi_edge.data.synthindoor.camera import camera_rotation, view_scores
from mtlsi_edge.data.synthindoor.render import render_view
from mtlsi_edge.data.synthindoor.rooms import make_scene
from mtlsi_edge.data.synthindoor.scene import Scene


def _pick_loop(scene: Scene, rng: np.random.Generator) -> tuple[float, ...]:
    """Pick an elliptical camera loop ``(cx, cz, rx, rz, wobble, phase)`` in free floor space.

    Random ellipses are tested against the furniture footprints (0.35 m clearance); the largest
    collision-free one wins. If none is free, the cheapest one is used and the furniture it
    crosses is removed from the scene.
    """
    wx, _, dz = scene.dims
    ts = np.linspace(0, 1, 180, endpoint=False)
    footprints = np.array([o.aabb for o in scene.objects if o.blocks] or np.zeros((0, 4)))
    blocking = [o for o in scene.objects if o.blocks]
    best_free, best_cost = None, None
    for _ in range(300):
        cx = wx / 2 + rng.uniform(-0.3, 0.3) * wx
        cz = dz / 2 + rng.uniform(-0.3, 0.3) * dz
        rx = min(rng.uniform(0.2, 0.4) * wx, cx - 0.5, wx - cx - 0.5)
        rz = min(rng.uniform(0.2, 0.4) * dz, cz - 0.5, dz - cz - 0.5)
        if rx < 0.2 or rz < 0.2:
            continue
        wobble, phase = rng.uniform(0.0, 0.12), rng.uniform(0, 2 * math.pi)
        rad = 1 + wobble * np.sin(2 * np.pi * 2 * ts + phase)
        xs = cx + rx * rad * np.cos(2 * np.pi * ts)
        zs = cz + rz * rad * np.sin(2 * np.pi * ts)
        m = 0.35  # clearance
        hit = ((xs[:, None] > footprints[:, 0] - m) & (xs[:, None] < footprints[:, 2] + m)
               & (zs[:, None] > footprints[:, 1] - m)
               & (zs[:, None] < footprints[:, 3] + m)).any(0)  # fmt: skip
        params = (cx, cz, rx, rz, wobble, phase)
        if not hit.any():
            if best_free is None or rx + rz > best_free[0]:
                best_free = (rx + rz, params)
        else:
            crossed = footprints[hit]
            area = (crossed[:, 2] - crossed[:, 0]) * (crossed[:, 3] - crossed[:, 1])
            cost = float((area + 0.2).sum())
            if best_cost is None or cost < best_cost[0]:
                best_cost = (cost, params, [blocking[i] for i in np.nonzero(hit)[0]])
    if best_free is not None and (best_free[0] > 0.8 or best_cost is None):
        return best_free[1]
    if best_cost is None:  # tiny room: a small loop around the centre
        return (wx / 2, dz / 2, 0.2, 0.2, 0.0, 0.0)
    _, params, hit_objs = best_cost
    scene.remove(hit_objs)
    return params


def render_walkthrough(out: Path, seconds: float = 6, fps: int = 15,
                       size: tuple[int, int] = (240, 320), seed: int = 0,
                       noise: bool = False) -> Path:  # fmt: skip
    """Render a smooth camera loop through one room to an mp4 (fourcc 'mp4v') and return ``out``.

    The camera circles an ellipse through the room's free floor space (see ``_pick_loop``) at a
    gently varying height; its yaw follows the furniture (smoothed along the loop) and its pitch
    oscillates slightly. ``round(seconds·fps)`` frames of ``size = (H, W)``; written to a
    temporary file, read back with ``cv2.VideoCapture`` to check the frame count, then moved to
    ``out``.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    h, w = int(size[0]), int(size[1])
    rng = np.random.default_rng([int(seed) % (1 << 63), 3])
    scene = make_scene(rng)
    cx, cz, rx, rz, wobble, phase = _pick_loop(scene, rng)
    n = max(1, int(round(seconds * fps)))
    # per frame: the yaw that sees the most furniture (scores smoothed along the loop), then the
    # view direction itself smoothed circularly so that the camera turns gently
    angle = 2 * np.pi * np.arange(n) / n
    rad = 1 + wobble * np.sin(2 * angle + phase)
    xs, zs = cx + rx * rad * np.cos(angle), cz + rz * rad * np.sin(angle)
    yaw_cands = np.linspace(-np.pi, np.pi, 48, endpoint=False)
    scores = view_scores(scene, xs, zs, np.broadcast_to(yaw_cands, (n, yaw_cands.size)).copy())
    scores = scores + 0.3 * np.cos(yaw_cands[None, :] - np.arctan2(cx - xs, cz - zs)[:, None])
    lag = np.arange(n)
    kernel = np.exp(-0.5 * (np.minimum(lag, n - lag) / max(n / 10, 1.0)) ** 2)
    kernel_f = np.fft.fft(kernel)[:, None]
    scores = np.real(np.fft.ifft(np.fft.fft(scores, axis=0) * kernel_f, axis=0))
    best = yaw_cands[np.argmax(scores, 1)]
    vec = np.stack([np.cos(best), np.sin(best)], 1)
    vec = np.real(np.fft.ifft(np.fft.fft(vec, axis=0) * kernel_f, axis=0))
    yaws = np.arctan2(vec[:, 1], vec[:, 0])
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp.mp4")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"{tmp}: cv2.VideoWriter (mp4v) failed to open")
    yaw_phase, pitch_phase = rng.uniform(0, 2 * math.pi, 2)
    try:
        for i in range(n):
            yaw = float(yaws[i]) + 0.2 * math.sin(2 * angle[i] + yaw_phase)
            pitch = -0.15 + 0.06 * math.sin(3 * angle[i] + pitch_phase)
            y = min(1.5 + 0.1 * math.sin(2 * angle[i]), scene.dims[1] - 0.3)
            rot = camera_rotation(yaw, pitch, 0.02 * math.sin(angle[i]))
            noise_rng = np.random.default_rng([int(seed) % (1 << 63), 4, i]) if noise else None
            pos = np.array([xs[i], y, zs[i]])
            smp = render_view(scene, pos, rot, (h, w), noise_rng, blur=False)
            writer.write(cv2.cvtColor(smp.image_rgb, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    cap = cv2.VideoCapture(str(tmp))
    frames = 0
    try:
        while cap.isOpened():
            ok, _ = cap.read()
            if not ok:
                break
            frames += 1
    finally:
        cap.release()
    if frames != n:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"{out}: wrote {n} frames but read back {frames}")
    os.replace(tmp, out)
    return out
