"""Pooled metrics on small hand-computed cases."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from mtlsi_edge import metrics
from mtlsi_edge.metrics import (
    BoundaryMetric,
    BoundaryMonitor,
    DepthMetric,
    NormalsMetric,
    SaliencyMetric,
    SegmentationMetric,
    delta_m,
)
from mtlsi_edge.objectives import OBJECTIVES, task_metric
from mtlsi_edge.tasks import TASK_SETS, Task, TaskSet

SEG4 = Task("seg", "segmentation", 4, 1.0, metric_name="miou")
DEPTH = TASK_SETS["nyud"]["depth"]
NORMALS = TASK_SETS["nyud"]["normals"]
BOUNDARY = TASK_SETS["nyud"]["boundary"]
SALIENCY = TASK_SETS["pascal"]["saliency"]


def test_every_task_kind_has_a_metric() -> None:
    for ts in TASK_SETS.values():
        for task in ts:
            m = task_metric(task)
            assert isinstance(m, OBJECTIVES[task.kind].metric)


# --- segmentation -------------------------------------------------------------------------------

SEG_GT = np.array([[0, 0, 1], [1, 2, 255]])
SEG_PRED = np.array([[0, 1, 1], [1, 0, 2]])


def test_segmentation_hand_case_with_absent_class() -> None:
    m = SegmentationMetric(SEG4)
    m.update(SEG_PRED, SEG_GT)
    # class 0: TP 1, FP 1, FN 1 → 1/3; class 1: TP 2, FP 1 → 2/3; class 2: FN 1 → 0;
    # class 3 absent from both → 0, still averaged.
    np.testing.assert_allclose(m.per_class_iou(), [1 / 3, 2 / 3, 0.0, 0.0])
    out = m.compute()
    assert out["miou"] == pytest.approx(25.0)
    assert out["pixel_acc"] == pytest.approx(60.0)  # 3 of 5 valid pixels


def test_segmentation_pools_over_images_not_per_image_mean() -> None:
    # image A: 1 pixel of class 0 right; image B: 3 pixels of class 0, all predicted 1.
    a_gt, a_pred = np.array([[0]]), np.array([[0]])
    b_gt, b_pred = np.array([[0, 0, 0]]), np.array([[1, 1, 1]])
    m = SegmentationMetric(Task("s", "segmentation", 2, 1.0))
    m.update(a_pred, a_gt)
    m.update(b_pred, b_gt)
    # pooled: class 0 TP 1, FN 3 → 0.25; class 1 FP 3 → 0  ⇒ mIoU 12.5 (per-image mean: 25)
    assert m.compute()["miou"] == pytest.approx(12.5)
    assert m.compute()["pixel_acc"] == pytest.approx(25.0)


def test_segmentation_batch_equals_sequential_updates() -> None:
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 4, (3, 5, 6))
    gt[:, 0, :2] = 255
    pred = rng.integers(0, 4, (3, 5, 6))
    one, many = SegmentationMetric(SEG4), SegmentationMetric(SEG4)
    one.update(pred, gt)
    for p, g in zip(pred, gt, strict=True):
        many.update(p, g)
    np.testing.assert_array_equal(one.confusion, many.confusion)
    assert one.confusion.sum() == 3 * 28


def test_segmentation_rejects_out_of_range_labels() -> None:
    with pytest.raises(ValueError):
        SegmentationMetric(SEG4).update(np.array([[4]]), np.array([[0]]))
    with pytest.raises(ValueError):
        SegmentationMetric(SEG4).update(np.array([[0]]), np.array([[7]]))


# --- depth ---------------------------------------------------------------------------------------


def test_depth_hand_case_with_invalid_pixel() -> None:
    gt = np.array([[1.0, 2.0], [0.0, 4.0]])
    pred = np.array([[2.0, 2.0], [5.0, 2.0]])  # the 5.0 sits on an invalid pixel
    m = DepthMetric(DEPTH)
    m.update(pred[None, None], gt[None, None])
    out = m.compute()
    assert out["rmse"] == pytest.approx(math.sqrt(5 / 3))
    assert out["abs_rel"] == pytest.approx(0.5)
    assert out["log_rmse"] == pytest.approx(math.log(2) * math.sqrt(2 / 3))
    assert out["delta1"] == pytest.approx(100 / 3)


def test_depth_rmse_is_pooled() -> None:
    m = DepthMetric(DEPTH)
    m.update(np.array([[2.0]]), np.array([[1.0]]))  # error 1, 1 pixel
    m.update(np.ones((1, 3)), np.ones((1, 3)))  # error 0, 3 pixels
    m.update(np.array([[4.0]]), np.array([[1.0]]))  # error 3, 1 pixel
    # pooled sqrt((1 + 9) / 5); the mean of per-image RMSEs would be (1 + 0 + 3) / 3
    assert m.compute()["rmse"] == pytest.approx(math.sqrt(10 / 5))


# --- normals -------------------------------------------------------------------------------------


def _normals_case() -> tuple[np.ndarray, np.ndarray]:
    s, c = math.sin(math.radians(20)), math.cos(math.radians(20))
    # columns: 0°, 20°, 90°, 90°, invalid (255), invalid (zero norm)
    gt = np.array(
        [[0, 0, 1, 0, 255, 0], [0, 0, 0, 1, 255, 0], [1, 1, 0, 0, 255, 0]], dtype=np.float64
    )
    pred = np.array([[0, s, 0, 0, 1, 1], [0, 0, 3, 0, 0, 0], [4, c, 0, -2, 0, 0]], dtype=np.float64)
    return pred.reshape(3, 1, 6), gt.reshape(3, 1, 6)


def test_normals_angles_at_0_and_90_degrees() -> None:
    pred, gt = _normals_case()
    np.testing.assert_allclose(NormalsMetric.angles(pred, gt), [0, 20, 90, 90], atol=1e-9)


def test_normals_hand_case() -> None:
    pred, gt = _normals_case()
    m = NormalsMetric(NORMALS)
    m.update(pred, gt)
    out = m.compute()
    assert out["mean"] == pytest.approx(50.0)
    assert out["median"] == pytest.approx(55.0, abs=1e-3)
    assert out["rmse"] == pytest.approx(math.sqrt((400 + 8100 + 8100) / 4))
    assert out["11.25"] == pytest.approx(25.0)
    assert out["22.5"] == pytest.approx(50.0)
    assert out["30"] == pytest.approx(50.0)


def test_normals_median_matches_numpy_on_random_data() -> None:
    rng = np.random.default_rng(1)
    pred, gt = rng.normal(size=(2, 3, 7, 9)), rng.normal(size=(2, 3, 7, 9))
    m = NormalsMetric(NORMALS)
    m.update(pred[0], gt[0])
    m.update(pred[1], gt[1])
    ang = NormalsMetric.angles(pred, gt)
    out = m.compute()
    assert out["median"] == pytest.approx(float(np.median(ang)), abs=1e-3)
    assert out["mean"] == pytest.approx(float(ang.mean()), rel=1e-9)


# --- boundary ------------------------------------------------------------------------------------


def _line(col: int, size: int = 100, value: float = 1.0) -> np.ndarray:
    img = np.zeros((size, size), np.float32)
    img[:, col] = value
    return img


def test_seism_hand_case_one_to_one_matching() -> None:
    # 100×100, NYUD tolerance: r = 0.011 × 141.4 = 1.56 px. gt: row 10, cols 5..24 (20 px).
    # Two one-pixel lines lie 1 px on either side of it: row 9 (cols 5..14, p 0.75) and
    # row 11 (cols 5..24, p 0.35). Every predicted pixel is within r of the gt, but a gt pixel
    # can match only one prediction:
    #   t < 0.35          : 30 predicted, 20 matched → P 2/3, R 1   → F 0.8
    #   0.35 <= t < 0.75  : 10 predicted, 10 matched → P 1,   R 1/2 → F 2/3
    #   t >= 0.75         : nothing predicted        → P 1,   R 0   → F 0
    # AP (SEISM general_ap): recalls {0, ½, 1} with precisions {1, 1, ⅔} at their first
    # occurrence, interpolated at 0:0.01:1 → (51 + Σ_{k=1..50} (1 − k/150)) / 100 = 0.925.
    gt = np.zeros((100, 100))
    gt[10, 5:25] = 1
    pred = np.zeros((100, 100))
    pred[9, 5:15] = 0.75
    pred[11, 5:25] = 0.35
    # Derived for the flavour without NMS (its 99 thresholds); the NMS flavour has its own tests.
    m = BoundaryMetric(BOUNDARY, flavour="mtl")
    m.update(pred, gt)
    out = m.compute()
    assert out["odsF"] == pytest.approx(80.0)
    assert out["oisF"] == pytest.approx(80.0)  # one image: its best threshold is the dataset's
    assert out["AP"] == pytest.approx(92.5)
    _, precision, recall, _ = m.curve()
    i34, i35 = np.searchsorted(m.thresholds, [0.34, 0.35])
    assert (precision[i34], recall[i34]) == (pytest.approx(2 / 3), 1.0)
    assert (precision[i35], recall[i35]) == (1.0, 0.5)
    # The fast monitor counts all 30 predictions as correct: P 1, R 1.
    fast = BoundaryMonitor(BOUNDARY)
    fast.update(pred, gt)
    assert fast.compute()["odsF_approx"] == pytest.approx(100.0)


def test_seism_thins_two_pixel_wide_ground_truth() -> None:
    # A 2-px wide gt band (as PASCAL's edge maps are built) is thinned to one line first;
    # a one-pixel prediction on it then recalls almost everything. Without thinning, one-to-one
    # matching would cap the recall at 1/2.
    gt = np.zeros((100, 100))
    gt[40:42, 10:90] = 1
    pred = np.zeros((100, 100))
    pred[40, 10:90] = 0.9
    m = BoundaryMetric(BOUNDARY, flavour="mtl")
    m.update(pred, gt)
    assert metrics.thin(gt.astype(bool)).sum() <= 80
    assert m.compute()["odsF"] > 97.0


def test_seism_thins_thick_predictions() -> None:
    # A 5-px wide predicted band around a one-pixel gt line: after thinning one line is left,
    # so precision stays high; without thinning it would be ≈ 1/5.
    gt = np.zeros((100, 100))
    gt[50, 10:90] = 1
    pred = np.zeros((100, 100))
    pred[48:53, 10:90] = 0.8
    m = BoundaryMetric(BOUNDARY, flavour="mtl")  # thinning alone (a flat band: NMS keeps it)
    m.update(pred, gt)
    _, precision, recall, _ = m.curve()
    k = np.searchsorted(m.thresholds, 0.5)
    assert precision[k] > 0.95 and recall[k] >= 0.9  # thinning shortens the ends a little


def test_seism_tolerance_comes_from_the_task() -> None:
    nyud = TASK_SETS["nyud"]["boundary"]
    pascal = TASK_SETS["pascal"]["boundary"]
    assert (nyud.max_dist, pascal.max_dist) == (0.011, 0.0075)
    assert task_metric(nyud).max_dist == 0.011 and task_metric(pascal).max_dist == 0.0075
    # 200×200: r = 3.11 px (NYUD) vs 2.12 px (PASCAL); a 3-px shift matches only under NYUD.
    gt = np.zeros((200, 200))
    gt[:, 100] = 1
    pred = np.zeros((200, 200))
    pred[:, 103] = 0.9
    scores = []
    for task in (nyud, pascal):
        m = task_metric(task)
        assert m.flavour == "seism-nms"  # the default
        m.update(pred, gt)
        scores.append(m.compute()["odsF"])
    # NYUD: the NMS's border suppression zeroes rows 0 and 199 of the predicted line (and scales
    # rows 1-4, 195-198 down), so at best 198 of the 200 gt pixels are found: P 1, R 0.99.
    assert scores == [pytest.approx(100 * 2 * 0.99 / 1.99), pytest.approx(0.0)]
    without_nms = BoundaryMetric(nyud, flavour="mtl")
    without_nms.update(pred, gt)
    assert without_nms.compute()["odsF"] == pytest.approx(100.0)


def test_task_set_from_old_dict_recovers_boundary_tolerance() -> None:
    d = TASK_SETS["pascal"].to_dict()
    for t in d["tasks"]:
        t.pop("max_dist")
    assert TaskSet.from_dict(d)["boundary"].max_dist == 0.0075
    d["name"] = "custom"
    with pytest.raises(ValueError, match="max_dist"):
        TaskSet.from_dict(d)


def test_seism_pools_counts_and_ois_picks_each_images_threshold() -> None:
    # Image A is best at a low threshold, image B at a high one.
    gt = np.zeros((100, 100))
    gt[50, 10:90] = 1
    a = np.zeros((100, 100))
    a[50, 10:90] = 0.2  # right, but weak
    b = np.zeros((100, 100))
    b[50, 10:90] = 0.9
    b[20, 10:90] = 0.3  # weak spurious line
    m = BoundaryMetric(BOUNDARY, flavour="mtl")
    m.update(np.stack([a, b])[:, None], np.stack([gt, gt])[:, None])
    out = m.compute()
    # 8-bit values: 0.2 → 51/255 = 0.2, 0.3 → 76/255 ≈ 0.298, 0.9 → 229/255 ≈ 0.898; MTL
    # counts q >= t. ODS: t <= 0.2 → P 160/240, R 1 → F 0.8; 0.2 < t <= 0.29 → P 80/160, R ½
    # → ½; 0.3 <= t <= 0.89 → P 1, R ½ → ⅔. OIS: A at t <= 0.2, B at 0.3 <= t → P 1, R 1.
    assert out["odsF"] == pytest.approx(80.0)
    assert out["oisF"] == pytest.approx(100.0)


def test_match_count_is_a_maximum_matching() -> None:
    # Greedy nearest matching would pair pred (0,1) with gt (0,1) and leave gt (0,0) unmatched
    # (pred (0,3) is out of range of it); the maximum matching pairs all three.
    pred = np.zeros((1, 6), bool)
    pred[0, [1, 2]] = True
    gt = np.zeros((1, 6), bool)
    gt[0, [0, 1, 3]] = True
    assert metrics.match_count(pred, gt, 1.0) == 2
    assert metrics.match_count(gt, pred, 1.0) == 2


# --- boundary: the two SEISM flavours (NMS of read_one_cont_png vs MTL's read_one_png) -----------


def _flavours(**kw) -> dict[str, BoundaryMetric]:
    return {f: BoundaryMetric(BOUNDARY, flavour=f, **kw) for f in ("seism-nms", "mtl")}


def _at(m: BoundaryMetric, counts: np.ndarray, t: float) -> np.ndarray:
    """(matched pred, pred, matched gt, gt) of one image's counts at threshold ``t``."""
    return counts[:, int(np.flatnonzero(np.isclose(m.thresholds, t))[0])]


def test_boundary_flavour_is_recorded_and_selectable() -> None:
    m = BoundaryMetric(BOUNDARY)
    assert m.flavour == "seism-nms" and task_metric(BOUNDARY).flavour == "seism-nms"
    assert m.protocol() == {
        "flavour": "seism-nms",
        "nms": {"r": 1, "s": 5, "m": 1.01, "orient_radius": 4},
        "threshold": ">",
        "n_thresholds": 101,
        "max_dist": 0.011,
        "source": metrics.BOUNDARY_FLAVOURS["seism-nms"][3],
    }
    assert "flavour='seism-nms'" in repr(m) and "101 thresholds" in repr(m)
    # SEISM's parameters/HED.txt: 0.001, 0.01 … 0.99, 0.999
    assert m.thresholds[:3].tolist() == [0.001, 0.01, 0.02]
    assert m.thresholds[-2:].tolist() == [0.99, 0.999]
    mtl = BoundaryMetric(BOUNDARY, flavour="mtl")
    assert (mtl.protocol()["nms"], mtl.protocol()["threshold"]) == (None, ">=")
    assert mtl.thresholds.tolist() == [k / 100 for k in range(1, 100)]
    assert "flavour='mtl'" in repr(mtl)
    assert len(BoundaryMetric(BOUNDARY, n_thresholds=25).thresholds) == 25
    with pytest.raises(ValueError, match="flavour"):
        BoundaryMetric(BOUNDARY, flavour="seism")


def test_edges_nms_suppresses_along_the_orientation_with_interpolation() -> None:
    e = np.zeros((20, 20), np.float32)
    e[10, 10], e[10, 11] = 0.5, 1.0  # (row, col): the stronger neighbour is at x + 1
    along_x = metrics.edges_nms(e, np.zeros_like(e), r=1, s=0, m=1.01)
    assert along_x[10, 10] == 0.0 and along_x[10, 11] == 1.0
    along_y = metrics.edges_nms(e, np.full_like(e, np.pi / 2), r=1, s=0, m=1.01)
    assert along_y[10, 10] == 0.5  # its neighbours along y are 0
    # 30°: the sample at (x + cos, y + sin) = (10.866, 10.5) interpolates to
    # 1.0·0.866·0.5 + 0.5·0.134·0.5 = 0.467 < 1.01·0.5, so the pixel stays
    assert metrics.edges_nms(e, np.full_like(e, np.pi / 6), s=0)[10, 10] == 0.5
    # the conservative multiplier m = 1.01 keeps near-ties
    e[10, 10] = 0.995
    assert metrics.edges_nms(e, np.zeros_like(e), s=0)[10, 10] == np.float32(0.995)
    e[10, 10] = 0.98
    assert metrics.edges_nms(e, np.zeros_like(e), s=0)[10, 10] == 0.0


def test_edges_nms_border_suppression() -> None:
    v = np.float32(5) / np.float32(255)  # a value for which float32 products depend on order
    e = np.full((20, 30), v, np.float32)  # flat: NMS (m = 1.01) suppresses nothing
    out = metrics.edges_nms(e, np.zeros_like(e), r=1, s=5, m=1.01)
    assert not out[0].any() and not out[-1].any() and not out[:, 0].any() and not out[:, -1].any()
    assert out[2, 10] == v * np.float32(0.4) and out[-3, 10] == v * np.float32(0.4)
    assert out[10, 3] == v * np.float32(0.6) and out[10, -4] == v * np.float32(0.6)
    assert out[2, 3] == v * np.float32(0.6) * np.float32(0.4)  # columns first, then rows
    assert (out[5:-5, 5:-5] == v).all()
    small = metrics.edges_nms(np.full((6, 8), v, np.float32), np.zeros((6, 8), np.float32))
    assert small[1, 4] == v * (np.float32(1) / np.float32(3))  # s capped at h/2 = 3


def test_edge_orientation_vertical_diagonal_and_horizontal_edges() -> None:
    yy, xx = np.mgrid[:60, :60]
    inner = (slice(6, -6), slice(6, -6))
    # vertical edge (profile along x only): O = 0, the normal is along x
    vert = np.zeros((60, 60), np.float32)
    vert[:, 29:32] = [0.5, 1.0, 0.5]
    assert (metrics.edge_orientation(vert) == 0).all()
    # diagonal 3-px band [0.5, 1, 0.5] across the line x = y: normal at 135°
    diag = np.where(xx == yy, 1.0, np.where(np.abs(xx - yy) == 1, 0.5, 0.0)).astype(np.float32)
    o = metrics.edge_orientation(diag)
    np.testing.assert_allclose(o[xx == yy][6:-6], 3 * np.pi / 4, atol=1e-3)
    out = metrics.seism_nms(diag)[inner]
    ky, kx = np.nonzero(out)
    assert len(ky) == 48 and (ky == kx).all()  # only the ridge survives, unchanged
    assert (out[ky, kx] == 1.0).all()
    # anti-diagonal: normal at 45°
    anti = np.where(xx + yy == 59, 1.0, np.where(np.abs(xx + yy - 59) == 1, 0.5, 0.0))
    anti = anti.astype(np.float32)
    np.testing.assert_allclose(metrics.edge_orientation(anti)[xx + yy == 59][6:-6], np.pi / 4,
                               atol=1e-3)
    ky, kx = np.nonzero(metrics.seism_nms(anti)[inner])
    assert len(ky) == 48 and (ky + kx == 59 - 12).all()
    # The toolbox's estimate has a blind spot: a profile constant along x gives Oxy = 0, hence
    # O = 0 (along the edge), so a horizontal band is not thinned by the NMS (only by the
    # thinning after the threshold). Kept, because SEISM's numbers include it.
    horiz = vert.T.copy()
    assert (metrics.edge_orientation(horiz) == 0).all()
    assert (metrics.seism_nms(horiz)[inner] == horiz[inner]).all()


def test_seism_nms_leaves_one_pixel_lines_unchanged() -> None:
    # Any map of one value is a fixed point of the NMS (an interpolated neighbour is at most
    # that value, and m = 1.01), away from the 5-px border: one-pixel lines of any orientation.
    img = np.zeros((80, 80), np.float32)
    img[8:72, 12] = 0.75  # vertical
    img[40, 20:70] = 0.75  # horizontal
    idx = np.arange(15, 65)
    img[idx, idx] = 0.75  # diagonal
    t = np.linspace(0, 2 * np.pi, 400)
    img[np.round(40 + 25 * np.sin(t)).astype(int), np.round(40 + 25 * np.cos(t)).astype(int)] = 0.75
    q = np.floor(img.astype(np.float64) * 255) / 255
    out = metrics.seism_nms(q.astype(np.float32))
    np.testing.assert_array_equal(out, q.astype(np.float32))
    # so both flavours count the same at their common thresholds 0.01 … 0.99
    # (0.75 → 191/255, on no threshold, so > and >= agree)
    m = _flavours()
    counts = {f: m[f].image_counts(img, (img > 0).astype(float)) for f in m}
    np.testing.assert_array_equal(counts["seism-nms"][:, 1:100], counts["mtl"])


def test_seism_nms_thins_a_three_pixel_ramp_to_its_ridge() -> None:
    # gt: column 50 of a 100×100 image. Prediction: a 3-px one-sided ramp 0.9 | 0.6 | 0.3 over
    # columns 50-52, full height. Tolerance 0.005 × 141.4 = 0.71 px: only exact hits match.
    gt = np.zeros((100, 100))
    gt[:, 50] = 1
    pred = np.zeros((100, 100))
    pred[:, 50:53] = [0.9, 0.6, 0.3]
    m = _flavours(max_dist=0.005)
    c = {f: m[f].image_counts(pred, gt) for f in m}
    # NMS: the profile is constant along y, so O = 0 and columns 51, 52 (each weaker than its
    # left neighbour) are suppressed; column 50 (229/255) stays, scaled by k/5 on rows k < 5
    # and 99-k: above t = 0.25 from row 2 (0.36) to row 97 → 96 px, all on the gt.
    np.testing.assert_array_equal(_at(m["seism-nms"], c["seism-nms"], 0.25), [96, 96, 96, 100])
    np.testing.assert_array_equal(_at(m["seism-nms"], c["seism-nms"], 0.5), [94, 94, 94, 100])
    # Without NMS the 3-px band q >= 0.25 is thinned to its middle, column 51: precision 0.
    np.testing.assert_array_equal(_at(m["mtl"], c["mtl"], 0.25), [0, 98, 0, 100])
    # Above 0.3 only the 2-px band remains and the thinning happens to keep column 50.
    np.testing.assert_array_equal(_at(m["mtl"], c["mtl"], 0.5), [99, 99, 99, 100])
    for f in m:
        m[f].update(pred, gt)
    _, p_nms, _, _ = m["seism-nms"].curve()
    _, p_mtl, _, _ = m["mtl"].curve()
    assert p_nms[1:26].min() == 1.0 and p_mtl[:25].max() == 0.0  # t = 0.01 … 0.25


def test_seism_nms_border_suppression_in_the_metric() -> None:
    # A line on column 2 (weight 2/5 after the NMS) is found without NMS at every threshold
    # below its value, with NMS only below 0.4 × 229/255 = 0.359 (rows 5-94 at full weight).
    gt = np.zeros((100, 100))
    gt[:, 2] = 1
    pred = 0.9 * gt
    m = _flavours()
    c = {f: m[f].image_counts(pred, gt) for f in m}
    np.testing.assert_array_equal(_at(m["mtl"], c["mtl"], 0.5), [100, 100, 100, 100])
    np.testing.assert_array_equal(_at(m["seism-nms"], c["seism-nms"], 0.5), [0, 0, 0, 100])
    # t = 0.3: rows 5-94 (0.359) pass, rows 1-4 (at most 0.8 × 0.359) do not → R 0.9
    np.testing.assert_array_equal(_at(m["seism-nms"], c["seism-nms"], 0.3), [90, 90, 90, 100])


def test_threshold_rules_of_the_two_readers() -> None:
    gt = np.zeros((100, 100))
    gt[10:90, 50] = 1
    # p = 0.2 is stored as 51/255. MTL's read_one_png counts double(51)/255 >= 0.2 (equal);
    # read_one_cont_png compares the single 51/255 = 0.2000000030 with the double 0.2: above.
    m = _flavours()
    for f in m:
        c = m[f].image_counts(0.2 * gt, gt)
        np.testing.assert_array_equal(_at(m[f], c, 0.2), [80, 80, 80, 80])
        np.testing.assert_array_equal(_at(m[f], c, 0.21), [0, 0, 0, 80])
    # A faint line (2/255) is only seen at HED's extra threshold 0.001.
    m = _flavours()
    for f in m:
        m[f].update((2 / 255 + 1e-6) * gt, gt)
    assert m["seism-nms"].compute()["odsF"] == pytest.approx(100.0)
    assert m["mtl"].compute()["odsF"] == 0.0


def test_conv_tri_and_gradient2_follow_the_toolbox() -> None:
    from scipy.ndimage import convolve1d

    rng = np.random.default_rng(0)
    x = rng.random((23, 31)).astype(np.float32)
    f = np.array([1, 2, 3, 4, 5, 4, 3, 2, 1], np.float64) / 25
    # convTri(I, 4): separable triangle filter with symmetric padding (scipy's "reflect")
    ref = convolve1d(convolve1d(x.astype(np.float64), f, axis=1, mode="reflect"), f, axis=0,
                     mode="reflect")
    np.testing.assert_allclose(metrics.conv_tri(x, 4), ref, atol=2e-6)
    delta = np.zeros((9, 9), np.float32)
    delta[4, 4] = 1
    assert metrics.conv_tri(delta, 4)[4, 4] == pytest.approx(0.04)
    p = 12 / 1 / 3 - 2  # convTri(I, 1): [1 p 1] / (2 + p)
    f1 = np.array([1, p, 1]) / (2 + p)
    ref1 = convolve1d(convolve1d(x.astype(np.float64), f1, axis=1, mode="reflect"), f1, axis=0,
                      mode="reflect")
    np.testing.assert_allclose(metrics.conv_tri(x, 1), ref1, atol=2e-6)
    gx, gy = metrics.gradient2(x)
    assert gx[3, 0] == x[3, 1] - x[3, 0] and gx[3, -1] == x[3, -1] - x[3, -2]  # one-sided
    assert gx[3, 5] == pytest.approx((x[3, 6] - x[3, 4]) / 2) and gy[5, 3] == pytest.approx(
        (x[6, 3] - x[4, 3]) / 2)


@pytest.mark.parametrize("flavour", ["seism-nms", "mtl"])
def test_boundary_speed_on_a_smooth_240x320_map(flavour: str) -> None:
    rng = np.random.default_rng(4)
    gt = np.zeros((240, 320))
    gt[::40] = 1
    gt[:, ::40] = 1
    pred = np.clip(gt * 0.8 + rng.normal(0, 0.1, gt.shape), 0, 1)
    # (with NMS the lines on row 0 and column 0 are zeroed by the border suppression: 91.3)
    m = BoundaryMetric(BOUNDARY, flavour=flavour)
    start = time.perf_counter()
    m.update(pred, gt)
    assert time.perf_counter() - start < 5.0
    assert m.compute()["odsF"] > 90.0


# --- empty splits --------------------------------------------------------------------------------


@pytest.mark.parametrize("task", [t for ts in TASK_SETS.values() for t in ts],
                         ids=lambda t: t.kind)
def test_split_without_valid_pixels_is_nan_not_perfect(task) -> None:
    m = task_metric(task)
    out = m.compute()  # nothing at all
    assert out and all(math.isnan(v) for v in out.values())
    # an image whose every pixel is invalid
    ch = {"segmentation": None, "depth": 1, "normals": 3, "boundary": 1, "saliency": 1}[task.kind]
    if task.kind == "segmentation":
        pred, gt = np.zeros((1, 4, 5), np.int64), np.full((1, 4, 5), 255)
    elif task.kind == "depth":
        pred, gt = np.ones((1, ch, 4, 5)), np.zeros((1, ch, 4, 5))
    else:
        pred, gt = np.full((1, ch, 4, 5), 0.5), np.full((1, ch, 4, 5), 255.0)
    m.update(pred, gt)
    assert all(math.isnan(v) for v in m.compute().values())


def test_boundary_monitor_one_pixel_shift_is_within_tolerance() -> None:
    # 100×100: maxDist = 0.011 × 141.4 ≈ 1.56 px, so a 1-pixel shift still matches.
    m = BoundaryMonitor(BOUNDARY)
    m.update(_line(51, value=0.9), _line(50))
    assert m.compute()["odsF_approx"] == pytest.approx(100.0)


def test_boundary_monitor_far_prediction_scores_zero() -> None:
    m = BoundaryMonitor(BOUNDARY)
    m.update(_line(80, value=0.9), _line(50))
    assert m.compute()["odsF_approx"] == pytest.approx(0.0)


def test_boundary_monitor_two_pixel_shift_is_outside_tolerance() -> None:
    m = BoundaryMonitor(BOUNDARY)
    m.update(_line(52, value=0.9), _line(50))
    assert m.compute()["odsF_approx"] == pytest.approx(0.0)
    wide = BoundaryMonitor(BOUNDARY, max_dist=0.03)  # 4.2 px
    wide.update(_line(52, value=0.9), _line(50))
    assert wide.compute()["odsF_approx"] == pytest.approx(100.0)


def test_boundary_monitor_half_recall_and_best_threshold() -> None:
    gt = np.maximum(_line(20), _line(50))
    pred = np.maximum(_line(51, value=0.9), _line(80, value=0.3))  # weak spurious line
    m = BoundaryMonitor(BOUNDARY)
    m.update(pred, gt)
    thr, precision, recall, f = m.curve()
    low, high = np.searchsorted(thr, 0.3), np.searchsorted(thr, 0.5)
    assert precision[low] == pytest.approx(0.5) and recall[low] == pytest.approx(0.5)
    assert precision[high] == pytest.approx(1.0) and recall[high] == pytest.approx(0.5)
    assert m.compute()["odsF_approx"] == pytest.approx(200 / 3)  # P 1, R 0.5 above 0.3


def test_boundary_monitor_ignores_255_and_pools_counts() -> None:
    gt = _line(50)
    gt[:, 70:] = 255  # the spurious prediction at column 80 lies in the ignored region
    pred = np.maximum(_line(50, value=0.9), _line(80, value=0.9))
    m = BoundaryMonitor(BOUNDARY)
    m.update(pred[None, None], gt[None, None])
    assert m.compute()["odsF_approx"] == pytest.approx(100.0)
    m.update(_line(10, value=0.9), _line(50))  # second image: all wrong
    # pooled: P = 100/200, R = 100/200 → F = 0.5
    assert m.compute()["odsF_approx"] == pytest.approx(50.0)


def test_boundary_monitor_numpy_fallback_matches_opencv(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    pred = rng.random((2, 1, 48, 64)).astype(np.float32)
    gt = (rng.random((2, 1, 48, 64)) > 0.9).astype(np.float32)
    gt[0, 0, :5] = 255
    a = BoundaryMonitor(BOUNDARY, n_thresholds=25, max_dist=0.05)
    a.update(pred, gt)
    monkeypatch.setattr(metrics, "_HAVE_CV2", False)
    b = BoundaryMonitor(BOUNDARY, n_thresholds=25, max_dist=0.05)
    b.update(pred, gt)
    np.testing.assert_array_equal(a.cnt_p, b.cnt_p)
    np.testing.assert_array_equal(a.cnt_r, b.cnt_r)
    assert 0.0 < a.compute()["odsF_approx"] < 100.0


def test_boundary_monitor_speed_99_thresholds_240x320() -> None:
    rng = np.random.default_rng(4)
    pred = rng.random((3, 1, 240, 320)).astype(np.float32)
    gt = (rng.random((3, 1, 240, 320)) > 0.97).astype(np.float32)
    m = BoundaryMonitor(BOUNDARY)
    start = time.perf_counter()
    m.update(pred, gt)
    assert (time.perf_counter() - start) / 3 < 0.3


# --- saliency ------------------------------------------------------------------------------------


def test_saliency_maxf_hand_case() -> None:
    pred = np.array([[0.1, 0.32, 0.6, 0.8, 0.99]])
    gt = np.array([[0, 1, 1, 0, 255]])
    m = SaliencyMetric(SALIENCY)
    m.update(pred, gt)
    # best for 0.1 < t <= 0.32: 3 predicted, 2 correct, 2 actual → P 2/3, R 1
    # F = 1.3 · (2/3) / (0.3 · 2/3 + 1) = 0.7222...
    assert m.compute()["maxF"] == pytest.approx(100 * 1.3 * (2 / 3) / 1.2)
    _, precision, recall, _ = m.curve()
    assert precision[0] == pytest.approx(0.5)  # t = 0.05: all four valid pixels predicted
    assert recall[-1] == 0.0  # t = 0.95: only the ignored 0.99 pixel would pass


def test_saliency_threshold_is_inclusive() -> None:
    m = SaliencyMetric(SALIENCY)
    m.update(np.array([[0.5, 0.45]]), np.array([[1, 0]]))
    _, precision, recall, _ = m.curve()
    i = int(np.argmin(np.abs(m.thresholds - 0.5)))
    assert precision[i] == 1.0 and recall[i] == 1.0  # 0.5 >= 0.5, 0.45 < 0.5
    assert m.compute()["maxF"] == pytest.approx(100.0)


# --- delta_m -------------------------------------------------------------------------------------


def test_delta_m_sign_conventions() -> None:
    st = {"miou": 50.0, "rmse": 0.5}
    lower = {"rmse"}
    assert delta_m({"miou": 55.0, "rmse": 0.45}, st, lower) == pytest.approx(10.0)
    assert delta_m({"miou": 55.0, "rmse": 0.55}, st, lower) == pytest.approx(0.0)
    assert delta_m({"miou": 45.0, "rmse": 0.55}, st, lower) == pytest.approx(-10.0)
    # without the lower-is-better flag the RMSE gain would count as a loss
    assert delta_m({"miou": 50.0, "rmse": 0.45}, st, set()) == pytest.approx(-5.0)


def test_delta_m_requires_every_baseline() -> None:
    with pytest.raises(KeyError):
        delta_m({"miou": 50.0}, {"miou": 50.0, "rmse": 0.5}, {"rmse"})
