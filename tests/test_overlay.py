"""The overlay renderer draws exactly what the straightforward NumPy renderer it replaced drew
(frozen below as the reference), at camera size, over several frames (depth-range EMA)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mtlsi_edge.runtime.overlay import LAYOUTS, Renderer, draw_hud
from mtlsi_edge.tasks import get_task_set, palette_array


class OldRenderer:
    """The renderer before the speed-up (NumPy fancy indexing and float arithmetic)."""

    def __init__(self, task_set, depth_range=None, alpha=0.55, edge_threshold=0.5):
        seg = next(t for t in task_set if t.kind == "segmentation")
        self.lut = palette_array(seg)
        self.fixed_range, self._range = depth_range, depth_range
        self.alpha, self.edge_threshold = alpha, edge_threshold

    def seg(self, out):
        return self.lut[out["semseg"]]

    def blend(self, frame, out):
        return cv2.addWeighted(frame, 1 - self.alpha, self.seg(out), self.alpha, 0.0)

    def depth(self, out):
        d = out["depth"]
        if self.fixed_range is None:
            lo, hi = np.percentile(d[::4, ::4], (2, 98))
            if self._range is None:
                self._range = (float(lo), float(hi))
            else:
                self._range = (0.9 * self._range[0] + 0.1 * lo, 0.9 * self._range[1] + 0.1 * hi)
        lo, hi = self._range
        u8 = np.clip((d - lo) * (255.0 / max(hi - lo, 1e-3)), 0, 255).astype(np.uint8)
        return cv2.applyColorMap(u8, cv2.COLORMAP_TURBO)

    def normals(self, out):
        rgb = ((out["normals"] + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
        return rgb[:, :, ::-1].copy()

    def edges(self, frame, out):
        img = (frame * 0.6).astype(np.uint8)
        img[out["boundary"] > self.edge_threshold] = (0, 255, 255)
        return img

    def render(self, frame, out, layout="grid"):
        if layout == "grid":
            top = np.hstack([self.blend(frame, out), self.depth(out)])
            return np.vstack([top, np.hstack([self.normals(out), self.edges(frame, out)])])
        if layout in ("blend", "edges"):
            return getattr(self, layout)(frame, out)
        return getattr(self, layout)(out)


def old_hud_dim(img, h, w):
    roi = img[:h, :w]
    roi[:] = (roi * 0.35).astype(np.uint8)


def outputs(i: int, h: int = 480, w: int = 640) -> dict[str, np.ndarray]:
    """Predictor-like outputs at frame size, changing with ``i`` (labels uint8, float32
    depth/normals/boundary; some normals not unit, some depth outside the colour range)."""
    rng = np.random.default_rng(i)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    n = np.stack([np.sin(xx / 37 + i), np.cos(yy / 29), 0.5 + rng.random((h, w))], -1)
    n = (n / np.linalg.norm(n, axis=-1, keepdims=True)).astype(np.float32)
    n[:40] *= 1.3  # off the unit sphere: clipped to [0, 255]
    return {
        "semseg": ((xx // 70 + 3 * (yy // 50) + i) % 40).astype(np.uint8),
        "depth": (0.5 + xx / w * 6 + i * 0.3 + rng.random((h, w)) * 0.5).astype(np.float32),
        "normals": n,
        "boundary": rng.random((h, w)).astype(np.float32),
    }


def frames(n: int, h: int = 480, w: int = 640):
    rng = np.random.default_rng(99)
    return [rng.integers(0, 256, (h, w, 3), np.uint8) for _ in range(n)]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_renderer_matches_old_renderer_pixel_for_pixel(layout):
    ts = get_task_set("nyud")
    new, old = Renderer(ts), OldRenderer(ts)
    for i, f in enumerate(frames(3)):  # the depth colour range moves (EMA) across frames
        out = outputs(i)
        a, b = new.render(f, out, layout), old.render(f, out, layout)
        assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
        np.testing.assert_array_equal(a, b, err_msg=f"{layout}, frame {i}")


def test_fixed_depth_range_and_odd_frame_size():
    ts = get_task_set("nyud")
    new, old = Renderer(ts, depth_range=(0.5, 7.0)), OldRenderer(ts, depth_range=(0.5, 7.0))
    f, out = frames(1, 61, 83)[0], outputs(5, 61, 83)
    np.testing.assert_array_equal(new.render(f, out), old.render(f, out))


def test_rendered_views_are_not_reused_buffers():
    """Callers keep rendered images (strips, recordings): the next frame must not change
    them, although the renderer reuses its scratch buffers."""
    r = Renderer(get_task_set("nyud"))
    f0, f1 = frames(2)
    first = r.render(f0, outputs(0))
    keep = first.copy()
    seg0 = r.render(f0, outputs(0), "seg")
    seg_keep = seg0.copy()
    r.render(f1, outputs(1))
    r.render(f1, outputs(1), "seg")
    np.testing.assert_array_equal(first, keep)
    np.testing.assert_array_equal(seg0, seg_keep)


def test_non_uint8_labels_still_render():
    ts = get_task_set("nyud")
    out = outputs(0, 40, 60)
    ref = OldRenderer(ts).seg(out)
    out["semseg"] = out["semseg"].astype(np.int64)
    np.testing.assert_array_equal(Renderer(ts).seg(out), ref)


def test_hud_dims_like_before():
    img = frames(1)[0]
    ref = img.copy()
    draw_hud(img, ["12.3 FPS", "infer 10 ms"])
    # Outside the text the box is the old float formula's result.
    scale = max(0.35, min(640 / 1100.0, 0.7))
    h = int(22 * scale / 0.5) * 2 + 8
    old_hud_dim(ref, h, 10)
    np.testing.assert_array_equal(img[h - 3:h, :5], ref[h - 3:h, :5])
    assert (img[:h, :5] != frames(1)[0][:h, :5]).any()  # dimmed
    np.testing.assert_array_equal(img[h:], frames(1)[0][h:])  # rest untouched


# -- annotations: panel names, depth colour bar, class legend -------------------------------------
def test_annotations_are_small_labels_over_the_same_maps():
    ts = get_task_set("nyud")
    plain, ann = Renderer(ts), Renderer(ts, annotate=True)
    f, out = frames(1)[0], outputs(0)
    a, b = plain.render(f, out), ann.render(f, out)
    changed = (a != b).any(-1)
    assert 0.005 < changed.mean() < 0.12  # labels, not a repaint
    h, w = 480, 640
    for qy, qx in ((0, 0), (0, 1), (1, 0), (1, 1)):  # each panel named, bottom left
        q = changed[qy * h:(qy + 1) * h, qx * w:(qx + 1) * w]
        assert q[h - 30:, :80].any(), (qy, qx)
        assert not q[h // 3:h // 2, w // 3:w // 2].any()  # the middle of the map untouched
    # the depth colour bar: the TURBO ramp along the right edge of the depth panel
    col = b[:h, 2 * w - 8]
    ramp = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_TURBO)[:, 0]
    on_bar = [y for y in range(h) if (np.abs(ramp.astype(int) - col[y]).sum(1) == 0).any()]
    assert len(on_bar) > h // 3
    assert np.abs(col[on_bar[0]].astype(int) - ramp[-1]).sum() < 40  # far (red) on top


def test_legend_lists_the_most_frequent_classes():
    ts = get_task_set("nyud")
    r = Renderer(ts, annotate=True, legend_classes=3)
    labels = np.zeros((120, 160), np.uint8)
    labels[:, :90] = 7  # the largest
    labels[:, 90:140] = 2
    labels[:, 140:] = 30
    labels[0, 0] = 11  # a stray pixel is not listed
    assert r.top_classes(labels) == [7, 2, 30]
    out = {**outputs(0, 120, 160), "semseg": labels}
    img = r.render(frames(1, 120, 160)[0], out, "seg")
    lut = palette_array(ts["semseg"])
    for c in (7, 2, 30):  # each listed class's colour swatch is drawn in the legend area
        area = img[:, 80:]
        assert (area == lut[c]).all(-1).sum() >= 16


def test_annotated_views_and_small_frames():
    ts = get_task_set("nyud")
    r = Renderer(ts, annotate=True)
    for layout in LAYOUTS:
        img = r.render(frames(1, 240, 320)[0], outputs(1, 240, 320), layout)
        assert img.dtype == np.uint8
    # too small for text: the maps only (a fresh renderer: the depth range is a running average)
    tiny = Renderer(ts, annotate=True).render(frames(1, 30, 40)[0], outputs(1, 30, 40))
    np.testing.assert_array_equal(tiny, Renderer(ts).render(frames(1, 30, 40)[0],
                                                            outputs(1, 30, 40)))


def test_label_text_is_rendered_once(monkeypatch):
    r = Renderer(get_task_set("nyud"), annotate=True, depth_range=(0.5, 7.0))
    f, out = frames(1)[0], outputs(0)
    r.render(f, out)
    calls = []
    real = cv2.putText
    monkeypatch.setattr(cv2, "putText", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    r.render(f, out)  # same classes, same depth range: every tile cached
    assert calls == []
