"""Vectorised rendering of the four task outputs (and a HUD) onto BGR frames.

Every view is a table lookup or a handful of whole-array operations: a palette LUT for labels,
an OpenCV colormap over a *stable* depth range (an exponential moving average of the 2nd/98th
percentiles, so colours do not flicker frame to frame), normals mapped to RGB, boundaries
painted over the image.
"""

from __future__ import annotations

import cv2
import numpy as np

from mtlsi_edge.tasks import TaskSet, palette_array

LAYOUTS = ("grid", "blend", "seg", "depth", "normals", "edges")


class Renderer:
    """Turns a Predictor's outputs into one BGR image for the chosen layout."""

    def __init__(self, task_set: TaskSet, depth_range: tuple[float, float] | None = None,
                 alpha: float = 0.55, edge_threshold: float = 0.5):
        self.task_set = task_set
        seg = next((t for t in task_set if t.kind == "segmentation"), None)
        self.seg_task = seg.name if seg else None
        self.lut = palette_array(seg) if seg else None
        self.depth_task = next((t.name for t in task_set if t.kind == "depth"), None)
        self.normals_task = next((t.name for t in task_set if t.kind == "normals"), None)
        self.edge_task = next((t.name for t in task_set if t.kind == "boundary"), None)
        self.fixed_range = depth_range
        self._range: tuple[float, float] | None = depth_range
        self.alpha, self.edge_threshold = alpha, edge_threshold

    # -- single views ---------------------------------------------------------------------
    def seg(self, out: dict) -> np.ndarray:
        return self.lut[out[self.seg_task]]

    def blend(self, frame: np.ndarray, out: dict) -> np.ndarray:
        return cv2.addWeighted(frame, 1 - self.alpha, self.seg(out), self.alpha, 0.0)

    def depth(self, out: dict) -> np.ndarray:
        d = out[self.depth_task]
        if self.fixed_range is None:
            lo, hi = np.percentile(d[::4, ::4], (2, 98))
            if self._range is None:
                self._range = (float(lo), float(hi))
            else:  # EMA: a stable colour scale across frames
                self._range = (0.9 * self._range[0] + 0.1 * lo, 0.9 * self._range[1] + 0.1 * hi)
        lo, hi = self._range
        u8 = np.clip((d - lo) * (255.0 / max(hi - lo, 1e-3)), 0, 255).astype(np.uint8)
        return cv2.applyColorMap(u8, cv2.COLORMAP_TURBO)

    def normals(self, out: dict) -> np.ndarray:
        n = out[self.normals_task]
        rgb = ((n + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
        return rgb[:, :, ::-1].copy()  # x→R, y→G, z→B, shown as BGR

    def edges(self, frame: np.ndarray, out: dict) -> np.ndarray:
        img = (frame * 0.6).astype(np.uint8)
        img[out[self.edge_task] > self.edge_threshold] = (0, 255, 255)
        return img

    # -- layouts --------------------------------------------------------------------------
    def render(self, frame: np.ndarray, out: dict, layout: str = "grid") -> np.ndarray:
        if layout == "grid":
            top = np.hstack([self.blend(frame, out), self.depth(out)])
            bottom = np.hstack([self.normals(out), self.edges(frame, out)])
            return np.vstack([top, bottom])
        views = {
            "blend": lambda: self.blend(frame, out),
            "seg": lambda: self.seg(out),
            "depth": lambda: self.depth(out),
            "normals": lambda: self.normals(out),
            "edges": lambda: self.edges(frame, out),
        }
        if layout not in views:
            raise ValueError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
        return views[layout]()


def draw_hud(img: np.ndarray, lines: list[str]) -> np.ndarray:
    """Semi-transparent box with text lines in the top-left corner (in place)."""
    scale = max(0.35, min(img.shape[1] / 1100.0, 0.7))
    lh = int(22 * scale / 0.5)
    w = int(max(len(s) for s in lines) * 9.5 * scale / 0.5) + 10
    h = lh * len(lines) + 8
    roi = img[:h, :w]
    roi[:] = (roi * 0.35).astype(np.uint8)
    for i, s in enumerate(lines):
        cv2.putText(img, s, (5, lh * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                    1, cv2.LINE_AA)
    return img
