"""Pooled evaluation metrics, one accumulator per task kind (numpy only).

Every accumulator is built as ``task.metric()`` (the class is ``task.spec.metric``), fed with
``update(pred, gt)`` once per image or per batch, and read with ``compute() -> dict[str, float]``.
Counts and sums are pooled over the whole split (not averaged per image), as in the reference
implementations (Multi-Task-Learning-PyTorch, InvPT). ``pred`` and ``gt`` may be
numpy arrays or anything ``np.asarray`` accepts (e.g. CPU tensors). 255 marks invalid ground truth.
A split without any valid pixel for a task scores NaN on every key (never a perfect score).

Input shapes (``N`` = images in the batch; the batch axis may be omitted for one image):

========================  =====================================  ================================
metric                    pred                                   gt
========================  =====================================  ================================
SegmentationMetric        labels ``N×H×W`` / ``H×W`` int         labels, 255 = ignore
DepthMetric               metres ``N×1×H×W`` / ``N×H×W`` / ``H×W``  metres, 0 = invalid
NormalsMetric             ``N×3×H×W`` / ``3×H×W`` (any scale)     unit normals; 0-norm/255 invalid
BoundaryMetric            probability ``N×1×H×W`` / ... in [0,1]  {0, 1}, 255 = ignore
SaliencyMetric            probability ``N×1×H×W`` / ... in [0,1]  {0, 1}, 255 = ignore
========================  =====================================  ================================
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from mtlsi_edge.inputs import IGNORE_INDEX


class Task(Protocol):
    """What a metric reads of its :class:`mtlsi_edge.tasks.Task` (kept structural so that
    metrics do not import the task registry, which imports them through ``kinds``)."""

    name: str
    out_channels: int
    max_dist: float

try:  # opencv-python is a declared dependency; the numpy fallback keeps the metric importable.
    import cv2

    _HAVE_CV2 = True
except ImportError:  # pragma: no cover - exercised only where OpenCV is missing
    cv2 = None
    _HAVE_CV2 = False

__all__ = [
    "BOUNDARY_FLAVOURS",
    "BoundaryMetric",
    "BoundaryMonitor",
    "DepthMetric",
    "NormalsMetric",
    "SaliencyMetric",
    "SegmentationMetric",
    "delta_m",
    "edges_nms",
    "seism_nms",
]


def _as_single_channel(x: np.ndarray, name: str) -> np.ndarray:
    """``N×1×H×W`` / ``N×H×W`` / ``1×H×W`` / ``H×W`` → ``N×H×W``."""
    x = np.asarray(x)
    if x.ndim == 4:
        if x.shape[1] != 1:
            raise ValueError(f"{name}: expected N×1×H×W, got shape {x.shape}")
        x = x[:, 0]
    elif x.ndim == 2:
        x = x[None]
    elif x.ndim != 3:
        raise ValueError(f"{name}: expected 2-D, 3-D or 4-D array, got shape {x.shape}")
    return x


def _check_same(pred: np.ndarray, gt: np.ndarray) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f"pred shape {pred.shape} does not match gt shape {gt.shape}")


def _count_at_or_above(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """``out[k] = #{v in values : v >= thresholds[k]}`` for ascending ``thresholds``."""
    # searchsorted(side="right") = number of thresholds <= v, so v counts for k < that index.
    idx = np.searchsorted(thresholds, values.ravel().astype(np.float64), side="right")
    hist = np.bincount(idx, minlength=len(thresholds) + 1)
    return np.cumsum(hist[::-1])[::-1][1:].astype(np.int64)


class SegmentationMetric:
    """Pooled mIoU and pixel accuracy over ``task.out_channels`` classes.

    A per-class confusion matrix (rows gt, columns prediction) is accumulated over pixels with
    ``gt != 255``. IoU = TP / max(TP + FP + FN, 1e-8); classes absent from both prediction and
    ground truth have IoU 0 and are still averaged. ``compute()`` → ``{"miou", "pixel_acc"}`` in %.
    """

    def __init__(self, task: Task) -> None:
        self.task = task
        self.num_classes = int(task.out_channels)
        self.reset()

    def reset(self) -> None:
        self.confusion = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """pred: labels ``N×H×W`` or ``H×W`` (ints in ``0..K-1``); gt: same shape, 255 = ignore."""
        pred = np.asarray(pred)
        gt = np.asarray(gt)
        if gt.ndim == 4 and gt.shape[1] == 1:
            gt = gt[:, 0]
        if pred.ndim == 4 and pred.shape[1] == 1:
            pred = pred[:, 0]
        _check_same(pred, gt)
        k = self.num_classes
        valid = gt != IGNORE_INDEX
        g = gt[valid].astype(np.int64)
        p = pred[valid].astype(np.int64)
        if g.size and (g.min() < 0 or g.max() >= k):
            raise ValueError(f"gt labels must be in 0..{k - 1} or {IGNORE_INDEX}")
        if p.size and (p.min() < 0 or p.max() >= k):
            raise ValueError(f"predicted labels must be in 0..{k - 1}")
        self.confusion += np.bincount(g * k + p, minlength=k * k).reshape(k, k)

    def per_class_iou(self) -> np.ndarray:
        """IoU of each class as a fraction (length K)."""
        tp = np.diag(self.confusion).astype(np.float64)
        fp = self.confusion.sum(0) - tp
        fn = self.confusion.sum(1) - tp
        return tp / np.maximum(tp + fp + fn, 1e-8)

    def compute(self) -> dict[str, float]:
        total = self.confusion.sum()
        if total == 0:  # no valid pixel in the split: undefined, never a score
            return {"miou": math.nan, "pixel_acc": math.nan}
        acc = float(np.trace(self.confusion) / total)
        return {"miou": float(self.per_class_iou().mean() * 100.0), "pixel_acc": acc * 100.0}


class DepthMetric:
    """Pooled depth errors over valid pixels (``gt > 0``, finite).

    ``rmse = sqrt(Σ(gt-pred)² / N)``, ``abs_rel = Σ|gt-pred|/gt / N``,
    ``log_rmse = sqrt(Σ(log gt - log pred)² / N)``, ``delta1`` = % with max(gt/pred, pred/gt) <
    1.25, all over the pooled ``N`` valid pixels of the split. Predictions <= 0 are clamped to
    1e-9 first (as in the MTL reference). Units of rmse: those of the inputs (metres).
    """

    def __init__(self, task: Task) -> None:
        self.task = task
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.sq = 0.0
        self.abs_rel = 0.0
        self.log_sq = 0.0
        self.delta1 = 0

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """pred, gt: metres, ``N×1×H×W``, ``N×H×W`` or ``H×W`` (same shape); gt 0 = invalid."""
        pred = _as_single_channel(pred, "pred")
        gt = _as_single_channel(gt, "gt")
        _check_same(pred, gt)
        valid = np.isfinite(gt) & (gt > 0)
        g = gt[valid].astype(np.float64)
        p = pred[valid].astype(np.float64)
        p = np.where(p > 0, p, 1e-9)
        self.n += int(g.size)
        self.sq += float(np.sum((g - p) ** 2))
        self.abs_rel += float(np.sum(np.abs(g - p) / g))
        self.log_sq += float(np.sum((np.log(g) - np.log(p)) ** 2))
        self.delta1 += int(np.count_nonzero(np.maximum(g / p, p / g) < 1.25))

    def compute(self) -> dict[str, float]:
        if self.n == 0:  # no valid pixel: NaN, not a perfect 0.0
            return dict.fromkeys(("rmse", "abs_rel", "log_rmse", "delta1"), math.nan)
        n = self.n
        return {
            "rmse": math.sqrt(self.sq / n),
            "abs_rel": self.abs_rel / n,
            "log_rmse": math.sqrt(self.log_sq / n),
            "delta1": self.delta1 / n * 100.0,
        }


class NormalsMetric:
    """Pooled angular error of surface normals, in degrees.

    Both vectors are L2-normalised; ``angle = degrees(2·atan2(‖p−g‖, ‖p+g‖))``. Valid pixels:
    gt norm > 0 and no gt channel equal to 255. ``compute()`` → ``{"mean", "median", "rmse",
    "11.25", "22.5", "30"}`` (thresholds: % of pixels with angle strictly below them).

    The median comes from a histogram with ``median_bin`` (default 0.001°) wide bins (each
    order statistic read as its bin's centre, even counts averaged like ``np.median``), so memory
    stays constant over large splits; it is exact to within half a bin. All other values are
    exact.
    """

    THRESHOLDS = (11.25, 22.5, 30.0)

    def __init__(self, task: Task, median_bin: float = 1e-3) -> None:
        self.task = task
        self.median_bin = float(median_bin)
        self.n_bins = int(math.ceil(180.0 / self.median_bin)) + 1
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.sum = 0.0
        self.sq = 0.0
        self.below = np.zeros(len(self.THRESHOLDS), np.int64)
        self.hist = np.zeros(self.n_bins, np.int64)

    @staticmethod
    def angles(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        """Angles (degrees, float64) at the valid pixels of ``N×3×H×W`` (or ``3×H×W``) inputs."""
        pred = np.asarray(pred, dtype=np.float64)
        gt = np.asarray(gt, dtype=np.float64)
        if pred.ndim == 3:
            pred = pred[None]
        if gt.ndim == 3:
            gt = gt[None]
        _check_same(pred, gt)
        if pred.ndim != 4 or pred.shape[1] != 3:
            raise ValueError(f"normals must be N×3×H×W or 3×H×W, got shape {pred.shape}")
        g_norm = np.linalg.norm(gt, axis=1)
        valid = (g_norm > 0) & np.all(gt != IGNORE_INDEX, axis=1)
        p = np.moveaxis(pred, 1, -1)[valid]  # M×3
        g = np.moveaxis(gt, 1, -1)[valid]
        p = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
        g = g / g_norm[valid][:, None]
        diff = np.linalg.norm(p - g, axis=1)
        summ = np.linalg.norm(p + g, axis=1)
        return np.degrees(2.0 * np.arctan2(diff, summ))

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """pred: ``N×3×H×W`` or ``3×H×W`` (any scale); gt: same shape, unit normals."""
        a = self.angles(pred, gt)
        self.n += int(a.size)
        self.sum += float(a.sum())
        self.sq += float(np.sum(a**2))
        for i, t in enumerate(self.THRESHOLDS):
            self.below[i] += int(np.count_nonzero(a < t))
        bins = np.minimum((a / self.median_bin).astype(np.int64), self.n_bins - 1)
        self.hist += np.bincount(bins, minlength=self.n_bins)

    def _order_statistic(self, k: int) -> float:
        """Centre of the histogram bin holding the ``k``-th smallest angle (1-based)."""
        b = int(np.searchsorted(np.cumsum(self.hist), k, side="left"))
        return min((b + 0.5) * self.median_bin, 180.0)

    def _median(self) -> float:
        if self.n == 0:
            return 0.0
        if self.n % 2:
            return self._order_statistic((self.n + 1) // 2)
        return 0.5 * (self._order_statistic(self.n // 2) + self._order_statistic(self.n // 2 + 1))

    def compute(self) -> dict[str, float]:
        if self.n == 0:  # no valid pixel: NaN, not a perfect 0°
            keys = ("mean", "median", "rmse", *(f"{t:g}" for t in self.THRESHOLDS))
            return dict.fromkeys(keys, math.nan)
        n = self.n
        out = {
            "mean": self.sum / n,
            "median": self._median(),
            "rmse": math.sqrt(self.sq / n),
        }
        for t, c in zip(self.THRESHOLDS, self.below, strict=True):
            out[f"{t:g}"] = float(c) / n * 100.0
        return out


def disk_kernel(radius: float) -> np.ndarray:
    """Binary disk ``(2⌊r⌋+1)²`` uint8 kernel of the offsets with ``dx² + dy² <= r²``."""
    r = int(math.floor(radius))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (xx * xx + yy * yy <= radius * radius).astype(np.uint8)


def _dilate_max(img: np.ndarray, kernel: np.ndarray, use_cv2: bool | None = None) -> np.ndarray:
    """Grey-level dilation (max over ``kernel``'s support) of a 2-D float32 image.

    Pixels outside the image never contribute (border = -inf). ``use_cv2=None``: OpenCV when
    importable, else a numpy loop over the kernel's offsets (same result, slower).
    """
    img = np.ascontiguousarray(img, dtype=np.float32)
    if _HAVE_CV2 if use_cv2 is None else use_cv2:
        return cv2.dilate(
            img, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=float(np.finfo(np.float32).min)
        )
    r = kernel.shape[0] // 2
    h, w = img.shape
    padded = np.full((h + 2 * r, w + 2 * r), -np.inf, np.float32)
    padded[r : r + h, r : r + w] = img
    out = np.full_like(img, -np.inf)
    for dy, dx in zip(*np.nonzero(kernel), strict=True):
        np.maximum(out, padded[dy : dy + h, dx : dx + w], out=out)
    return out


class BoundaryMonitor:
    """Fast approximate ODS-F of boundary maps, in % — a training-time monitor, NOT the
    published protocol (use :class:`BoundaryMetric` for numbers to compare with papers).

    For each threshold ``t`` (``n_thresholds`` values evenly spaced over 0.01..0.99) a
    prediction pixel with ``p >= t`` counts as a true positive when a gt boundary pixel lies
    within ``max_dist × image diagonal`` pixels, and a gt pixel is recalled when a prediction
    pixel with ``p >= t`` lies within the same distance; counts are pooled over the split and
    ``odsF_approx = max_t 2PR/(P+R)``. There is no thinning and no one-to-one matching, so a
    thick prediction scores a higher precision than under SEISM (several points on real data).
    Both tests run for all thresholds at once with two disk dilations per image.
    ``max_dist`` defaults to the task's own tolerance. Pixels with gt 255 are left out.
    """

    def __init__(self, task: Task, n_thresholds: int = 99, max_dist: float | None = None) -> None:
        self.task = task
        self.thresholds = np.linspace(0.01, 0.99, int(n_thresholds)).round(10)
        self.max_dist = _task_max_dist(task) if max_dist is None else float(max_dist)
        self._kernels: dict[tuple[int, int], np.ndarray] = {}
        self.reset()

    def reset(self) -> None:
        k = len(self.thresholds)
        self.cnt_p = np.zeros(k, np.int64)  # matched predicted pixels
        self.sum_p = np.zeros(k, np.int64)  # predicted pixels
        self.cnt_r = np.zeros(k, np.int64)  # recalled gt pixels
        self.sum_r = 0  # gt boundary pixels
        self.n_valid = 0

    def _kernel(self, h: int, w: int) -> np.ndarray:
        if (h, w) not in self._kernels:
            self._kernels[(h, w)] = disk_kernel(self.max_dist * math.hypot(h, w))
        return self._kernels[(h, w)]

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """pred: probabilities ``N×1×H×W``, ``N×H×W`` or ``H×W``; gt: same shape, {0,1}, 255."""
        pred = _as_single_channel(pred, "pred")
        gt = _as_single_channel(gt, "gt")
        _check_same(pred, gt)
        kernel = self._kernel(*gt.shape[1:])
        for p, g in zip(pred, gt, strict=True):
            valid = g != IGNORE_INDEX
            edge = valid & (g >= 0.5)
            p = np.where(valid, p.astype(np.float32), np.float32(-1.0))
            near_gt = _dilate_max(edge.astype(np.float32), kernel) > 0.5
            near_pred = _dilate_max(p, kernel)
            self.sum_p += _count_at_or_above(p[valid], self.thresholds)
            self.cnt_p += _count_at_or_above(p[valid & near_gt], self.thresholds)
            self.cnt_r += _count_at_or_above(near_pred[edge], self.thresholds)
            self.sum_r += int(np.count_nonzero(edge))
            self.n_valid += int(np.count_nonzero(valid))

    def curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(thresholds, precision, recall, f)`` as fractions, one entry per threshold."""
        precision = self.cnt_p / np.maximum(self.sum_p, 1)
        recall = self.cnt_r / max(self.sum_r, 1)
        denom = precision + recall
        f = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1), 0.0)
        return self.thresholds, precision, recall, f

    def compute(self) -> dict[str, float]:
        if self.n_valid == 0:
            return {"odsF_approx": math.nan}
        return {"odsF_approx": float(self.curve()[3].max() * 100.0)}


def _task_max_dist(task: Task) -> float:
    """The boundary tolerance a task carries (fraction of the image diagonal)."""
    if not task.max_dist > 0:
        raise ValueError(f"task {task.name!r} has no boundary tolerance (max_dist)")
    return float(task.max_dist)


def thin(mask: np.ndarray) -> np.ndarray:
    """MATLAB ``bwmorph(mask, 'thin', Inf)`` of a 2-D bool array (scikit-image's ``thin``
    implements the same Guo-Hall look-up tables)."""
    from skimage.morphology import thin as _thin

    return _thin(mask)


def _disk_offsets(radius: float) -> np.ndarray:
    """``K×2`` (dy, dx) offsets with ``dy² + dx² <= radius²`` (BSDS ``correspondPixels``)."""
    r = int(math.ceil(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    keep = dy * dy + dx * dx <= radius * radius
    return np.stack([dy[keep], dx[keep]], 1)


class _GtMatcher:
    """One image's thinned gt boundary, ready to be matched against many prediction maps."""

    def __init__(self, gt: np.ndarray, radius: float) -> None:
        self.shape = gt.shape
        gy, gx = np.nonzero(gt)
        self.n_gt = gy.size
        self.index = np.full(gt.shape, -1, np.int64)
        self.index[gy, gx] = np.arange(gy.size)
        self.offsets = _disk_offsets(radius)
        # Prediction pixels farther than ``radius`` from every gt pixel can never match:
        # dropping them first keeps the bipartite graph small.
        kernel = disk_kernel(radius)
        self.near = _dilate_max(gt.astype(np.float32), kernel) > 0.5

    def count(self, pred: np.ndarray) -> int:
        """Size of a maximum matching between ``pred``'s pixels and the gt pixels."""
        from scipy.sparse import csr_matrix
        from scipy.sparse.csgraph import maximum_flow

        if self.n_gt == 0:
            return 0
        py, px = np.nonzero(pred & self.near)
        if py.size == 0:
            return 0
        h, w = self.shape
        cy = py[:, None] + self.offsets[None, :, 0]  # P×K candidate gt positions
        cx = px[:, None] + self.offsets[None, :, 1]
        inside = (cy >= 0) & (cy < h) & (cx >= 0) & (cx < w)
        cols = np.full(cy.shape, -1, np.int64)
        cols[inside] = self.index[cy[inside], cx[inside]]
        rows, k = np.nonzero(cols >= 0)
        # Maximum matching = maximum flow of the unit-capacity network source → pred → gt →
        # sink, solved with Dinic. (scipy's maximum_bipartite_matching takes exponential time
        # on such layered line-next-to-line graphs: scipy issue #26147; 11 s for one map.)
        n_p, n_g = py.size, self.n_gt
        sink = n_p + n_g + 1
        src = np.concatenate([np.zeros(n_p, np.int64), 1 + rows, 1 + n_p + np.arange(n_g)])
        dst = np.concatenate([1 + np.arange(n_p), 1 + n_p + cols[rows, k],
                              np.full(n_g, sink)])
        graph = csr_matrix((np.ones(src.size, np.int32), (src, dst)), shape=(sink + 1, sink + 1))
        return int(maximum_flow(graph, 0, sink, method="dinic").flow_value)


def match_count(pred: np.ndarray, gt: np.ndarray, radius: float) -> int:
    """Size of a maximum one-to-one matching between the ``True`` pixels of two ``H×W``
    bool maps, a pair being allowed when their Euclidean distance is ``<= radius`` pixels.

    This is the number of matched pixels of BSDS ``correspondPixels``: its min-cost
    assignment, with an outlier cost of ``100 × radius`` per unmatched pixel, first maximises
    the matching's size. A unit-capacity max-flow (scipy, Dinic) gives it exactly.
    """
    return _GtMatcher(np.asarray(gt, bool), radius).count(np.asarray(pred, bool))


# --- SEISM's contour NMS (read_one_cont_png → edgesNmsMex) ----------------------------------------
#
# The SEISM / InvPT / Boundary-Detection-Evaluation-Tools contour reader runs, on the PNG read with
# ``im2single``:
#
#     [Ox,Oy] = gradient2(convTri(contour,4));
#     [Oxx,~] = gradient2(Ox); [Oxy,Oyy]=gradient2(Oy);
#     O       = mod(atan(Oyy.*sign(-Oxy)./(Oxx+1e-5)),pi);
#     contour = edgesNmsMex(contour,O,1,5,1.01,1);
#     contour = contour>str2double(parameter);
#
# (Piotr Dollár's toolbox: convTri / gradient2 from the Image & Video toolbox, edgesNmsMex from the
# Structured Edge Detection toolbox; OpenCV contrib's ``StructuredEdgeDetection.edgesNms`` is a
# port of the same loop.) The functions below re-implement those steps in float32 numpy.

#: ``edgesNmsMex(E, O, r, s, m, nThreads)`` arguments SEISM's ``read_one_cont_png`` passes, and
#: the ``convTri`` radius of its orientation estimate.
SEISM_NMS = {"r": 1, "s": 5, "m": 1.01, "orient_radius": 4}


def conv_tri(img: np.ndarray, r: float) -> np.ndarray:
    """Piotr's ``convTri(I, r)`` of a 2-D image, in float32.

    Separable triangle filter ``[1 … r+1 … 1] / (r+1)²`` (for ``r <= 1``: ``[1 p 1] / (2+p)``,
    ``p = 12/r/(r+2) − 2``) with symmetric padding (MATLAB ``padarray(·, 'symmetric')``: the edge
    pixel is repeated, OpenCV's ``BORDER_REFLECT``), as the toolbox's non-mex path defines it.
    """
    img = np.asarray(img, np.float32)
    if r == 0:
        return img.copy()
    if r <= 1:
        p = 12.0 / r / (r + 2) - 2
        f = np.array([1.0, p, 1.0]) / (2 + p)
        rad = 1
    else:
        rad = int(r)
        f = np.array([*range(1, rad + 2), *range(rad, 0, -1)], np.float64) / (rad + 1) ** 2
    f = f.astype(np.float32)
    h, w = img.shape
    padded = np.pad(img, rad, mode="symmetric")
    rows = np.zeros((h + 2 * rad, w), np.float32)  # along x (MATLAB: convn with the row f)
    for k, fk in enumerate(f):
        rows += fk * padded[:, k : k + w]
    out = np.zeros((h, w), np.float32)  # then along y
    for k, fk in enumerate(f):
        out += fk * rows[k : k + h]
    return out


def gradient2(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Piotr's ``gradient2``: ``(Gx, Gy)`` by central differences inside and one-sided differences
    on the first and last column / row (MATLAB ``gradient``); an axis of length 1 has gradient 0."""
    img = np.asarray(img, np.float32)
    gx = np.gradient(img, axis=1) if img.shape[1] > 1 else np.zeros_like(img)
    gy = np.gradient(img, axis=0) if img.shape[0] > 1 else np.zeros_like(img)
    return gx.astype(np.float32, copy=False), gy.astype(np.float32, copy=False)


def edge_orientation(edge: np.ndarray, r: float = SEISM_NMS["orient_radius"]) -> np.ndarray:
    """Edge-normal orientation in ``[0, π)`` of an edge map, as SEISM's ``read_one_cont_png``
    (and ``edgesDetect``) compute it: ``mod(atan(Oyy·sign(−Oxy) / (Oxx + 1e-5)), π)`` from the
    second derivatives of ``convTri(E, 4)``. float32 throughout, like the single-precision
    MATLAB code. Where it is undefined (0/0, which the C code cannot handle either) it is 0.

    The estimate is the toolbox's "very approximate" one: for a profile exactly constant along x
    (a perfectly horizontal edge) ``Oxy`` is 0 and so is the orientation, i.e. along the edge.
    """
    ox, oy = gradient2(conv_tri(edge, r))
    oxx, _ = gradient2(ox)
    oxy, oyy = gradient2(oy)
    with np.errstate(divide="ignore", invalid="ignore"):
        o = np.arctan(oyy * np.sign(-oxy) / (oxx + np.float32(1e-5)))
    o = np.mod(o, np.float32(np.pi))
    return np.where(np.isnan(o), np.float32(0.0), o).astype(np.float32, copy=False)


def _clamp_coord(v: np.ndarray, n: int) -> np.ndarray:
    # edgesNmsMex interp(): v<0 ? 0 : (v > n-1.001 ? n-1.001 : v), the bound a double.
    return np.where(v < 0, np.float32(0.0),
                    np.where(v.astype(np.float64) > n - 1.001, np.float32(n - 1.001), v))


def edges_nms(edge: np.ndarray, orient: np.ndarray, r: int = SEISM_NMS["r"],
              s: int = SEISM_NMS["s"], m: float = SEISM_NMS["m"]) -> np.ndarray:
    """``edgesNmsMex(E, O, r, s, m)`` of a 2-D edge map (vectorised, float32).

    A non-zero pixel is set to 0 when, for some ``d`` in ``±1 … ±r``, the map bilinearly
    interpolated at ``(x + d·cos O, y + d·sin O)`` (coordinates clamped to ``[0, size − 1.001]``)
    exceeds ``m ×`` its own value: non-maxima along the normal are suppressed, and ``m = 1.01``
    keeps plateaus and near-ties. Then the ``s`` outermost rows and columns are scaled down
    linearly (column/row ``k < s`` from each side by ``k / s``, so the outermost one becomes 0;
    ``s`` is capped at half the width and height). The arithmetic follows the C code's float32
    operations in the same order (``cos``/``sin`` rounded from double).
    """
    e0 = np.ascontiguousarray(edge, np.float32)
    if e0.ndim != 2:
        raise ValueError(f"edges_nms: expected a 2-D map, got shape {e0.shape}")
    h, w = e0.shape
    out = e0.copy()
    ys, xs = np.nonzero(e0)
    if ys.size:
        o = np.asarray(orient, np.float32)[ys, xs].astype(np.float64)
        coso = np.cos(o).astype(np.float32)
        sino = np.sin(o).astype(np.float32)
        e = e0[ys, xs] * np.float32(m)
        xf, yf = xs.astype(np.float32), ys.astype(np.float32)
        suppressed = np.zeros(ys.size, bool)
        for d in range(-int(r), int(r) + 1):
            if d == 0:
                continue
            px = _clamp_coord(xf + np.float32(d) * coso, w)
            py = _clamp_coord(yf + np.float32(d) * sino, h)
            x0 = px.astype(np.int64)  # C int(): truncation (px >= 0)
            y0 = py.astype(np.int64)
            x1 = np.minimum(x0 + 1, w - 1)  # the clamp keeps x0 + 1 inside unless w == 1
            y1 = np.minimum(y0 + 1, h - 1)
            dx0 = px - x0.astype(np.float32)
            dy0 = py - y0.astype(np.float32)
            dx1 = np.float32(1.0) - dx0
            dy1 = np.float32(1.0) - dy0
            interp = (e0[y0, x0] * dx1 * dy1 + e0[y0, x1] * dx0 * dy1
                      + e0[y1, x0] * dx1 * dy0 + e0[y1, x1] * dx0 * dy0)
            suppressed |= e < interp
        out[ys[suppressed], xs[suppressed]] = 0.0
    s = min(int(s), w // 2, h // 2)
    if s > 0:
        ramp = np.arange(s, dtype=np.float32) / np.float32(s)
        col = np.ones(w, np.float32)
        col[:s] = ramp
        col[w - s :] = ramp[::-1]
        row = np.ones(h, np.float32)
        row[:s] = ramp
        row[h - s :] = ramp[::-1]
        out *= col[None, :]  # columns first, then rows, as the C loops
        out *= row[:, None]
    return out


def seism_nms(edge: np.ndarray) -> np.ndarray:
    """SEISM's contour NMS of one ``H×W`` map in [0, 1] (``read_one_cont_png``): orientation
    from ``convTri(E, 4)`` and ``edgesNmsMex(E, O, 1, 5, 1.01)``."""
    edge = np.asarray(edge, np.float32)
    p = SEISM_NMS
    return edges_nms(edge, edge_orientation(edge, p["orient_radius"]), p["r"], p["s"], p["m"])


def _seism_pr(cnt_p, sum_p, cnt_r, sum_r) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall from counts with SEISM's conventions for empty sets: no gt
    boundary → R 1, P 0; no prediction → R 0, P 1."""
    cnt_p, sum_p, cnt_r, sum_r = (np.asarray(a, np.float64) for a in (cnt_p, sum_p, cnt_r, sum_r))
    precision = np.where(sum_p > 0, cnt_p / np.maximum(sum_p, 1), 1.0)
    recall = np.where(sum_r > 0, cnt_r / np.maximum(sum_r, 1), 0.0)
    no_gt = sum_r == 0
    precision = np.where(no_gt, 0.0, precision)
    recall = np.where(no_gt, 1.0, recall)
    return precision, recall


def _f(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    denom = precision + recall
    return np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1), 0.0)


#: SEISM's ``parameters/HED.txt``, the thresholds SEISM and Boundary-Detection-Evaluation-Tools
#: (InvPT, TaskPrompter) evaluate contour PNGs at: 0.001, 0.01 … 0.99, 0.999.
SEISM_HED_THRESHOLDS = np.array([0.001, *(k / 100 for k in range(1, 100)), 0.999])
#: Multi-Task-Learning-PyTorch's ``eval_edge.py`` writes its own parameter file: 0.01 … 0.99.
MTL_THRESHOLDS = np.array([k / 100 for k in range(1, 100)])

#: flavour → (NMS before thresholding, inclusive ``>=`` threshold, default thresholds, source)
BOUNDARY_FLAVOURS: dict[str, tuple[bool, bool, np.ndarray, str]] = {
    "seism-nms": (True, False, SEISM_HED_THRESHOLDS,
                  "SEISM read_one_cont_png (InvPT / TaskPrompter Boundary-Detection-Evaluation-"
                  "Tools): edgesNmsMex(E, O, 1, 5, 1.01), E > t, HED thresholds"),
    "mtl": (False, True, MTL_THRESHOLDS,
            "Multi-Task-Learning-PyTorch read_one_png: no NMS, E >= t, 0.01:0.01:0.99"),
}
DEFAULT_BOUNDARY_FLAVOUR = "seism-nms"


class BoundaryMetric:
    """ODS-F, OIS-F and AP of boundary probability maps on the SEISM protocol, in %.

    This follows the MATLAB SEISM code behind the published NYUD / PASCAL-Context tables
    (a contour reader + ``eval_cont`` → ``edgesEvalImg`` with its default ``'thin', 1``), in one
    of two flavours that differ in the reader (``flavour``):

    ``"seism-nms"`` (default)
        SEISM's own ``read_one_cont_png``, which the Boundary-Detection-Evaluation-Tools of InvPT
        and TaskPrompter call: non-maximum suppression (``edgesNmsMex(E, O, 1, 5, 1.01)`` with
        the orientation of ``convTri(E, 4)``, :func:`seism_nms`) on the 8-bit map before the
        threshold, ``E > t``, at SEISM's ``HED.txt`` thresholds (0.001, 0.01 … 0.99, 0.999).
        Use it for numbers put next to the InvPT-lineage NYUD / PASCAL-Context tables.
    ``"mtl"``
        Multi-Task-Learning-PyTorch's replacement reader ``read_one_png``: no NMS,
        ``E >= t``, thresholds 0.01 … 0.99 (MTI-Net / PAD-Net numbers in that repository).

    Then, in both:

    1. the prediction is quantised as the 8-bit PNG the references write (``⌊255·p⌋ / 255``;
       read as ``im2single`` for NMS, ``double / 255`` without);
    2. for each threshold ``t`` the binary map (NMS output ``> t``, or ``q >= t``) is thinned to
       one-pixel lines (MATLAB ``bwmorph(·, 'thin', Inf)``, ``edgesEvalImg``'s ``thin``);
    3. the ground-truth boundary map is thinned the same way (SEISM rebuilds one-pixel
       boundaries from the label map with ``seg2bmap``; PASCAL's 2-px edge maps would
       otherwise halve the recall);
    4. prediction and gt pixels are matched one-to-one (bipartite, BSDS ``correspondPixels``)
       within ``max_dist × image diagonal`` pixels: 0.011 for NYUD, 0.0075 for PASCAL, taken
       from ``task.max_dist``;
    5. matched / predicted / gt counts are pooled over the split per threshold:
       ``odsF = max_t F(t)``; ``oisF`` pools the counts at each image's best threshold; ``AP``
       is SEISM's ``general_ap`` (precision interpolated at recall 0:0.01:1, summed / 100).

    Pixels with gt 255 are removed from both maps (after the NMS, which sees the whole map).
    A split without any valid pixel gives NaN. ``n_thresholds`` replaces the flavour's
    thresholds by that many evenly spaced over 0.01 … 0.99. The flavour is kept in
    :attr:`flavour` and :meth:`protocol` (``compute()`` keeps its float-only keys).
    """

    def __init__(self, task: Task, n_thresholds: int | None = None, max_dist: float | None = None,
                 flavour: str = DEFAULT_BOUNDARY_FLAVOUR) -> None:
        if flavour not in BOUNDARY_FLAVOURS:
            raise ValueError(f"unknown boundary flavour {flavour!r}; "
                             f"known: {', '.join(BOUNDARY_FLAVOURS)}")
        self.task = task
        self.flavour = flavour
        self.nms, self.inclusive, thresholds, _ = BOUNDARY_FLAVOURS[flavour]
        if n_thresholds is None:
            self.thresholds = thresholds.copy()
        else:
            self.thresholds = np.linspace(0.01, 0.99, int(n_thresholds)).round(10)
        self.max_dist = _task_max_dist(task) if max_dist is None else float(max_dist)
        self.reset()

    def protocol(self) -> dict:
        """What the numbers were computed with: flavour, NMS parameters (``None`` without NMS),
        threshold rule and count, tolerance."""
        return {
            "flavour": self.flavour,
            "nms": dict(SEISM_NMS) if self.nms else None,
            "threshold": ">=" if self.inclusive else ">",
            "n_thresholds": len(self.thresholds),
            "max_dist": self.max_dist,
            "source": BOUNDARY_FLAVOURS[self.flavour][3],
        }

    def __repr__(self) -> str:
        return (f"BoundaryMetric({getattr(self.task, 'name', '?')!s}, flavour={self.flavour!r}, "
                f"max_dist={self.max_dist:g}, {len(self.thresholds)} thresholds)")

    def score_map(self, prob: np.ndarray) -> np.ndarray:
        """The float64 map that is thresholded: the 8-bit quantised prediction, after SEISM's
        NMS in the ``"seism-nms"`` flavour."""
        k = np.floor(np.clip(np.asarray(prob, np.float64), 0.0, 1.0) * 255.0)
        if not self.nms:
            return k / 255.0  # double(imread(png)) / 255
        e = k.astype(np.float32) / np.float32(255.0)  # im2single(imread(png))
        # MATLAB compares the single NMS output with the double threshold exactly, so the
        # comparison is made in float64 (51/255 in single is above 0.2: it counts at t = 0.2).
        return seism_nms(e).astype(np.float64)

    def reset(self) -> None:
        # Per-image counts (images × thresholds): OIS needs each image's own curve.
        self.counts: list[np.ndarray] = []  # each 4×T: cnt_p, sum_p, cnt_r, sum_r
        self.n_valid = 0

    def image_counts(self, prob: np.ndarray, gt: np.ndarray) -> np.ndarray:
        """``4×T`` int64 (matched pred, pred, matched gt, gt) of one ``H×W`` image."""
        valid = gt != IGNORE_INDEX
        edge = thin(valid & (gt >= 0.5))
        q = np.where(valid, self.score_map(prob), 0.0)
        matcher = _GtMatcher(edge, self.max_dist * math.hypot(*gt.shape))
        out = np.zeros((4, len(self.thresholds)), np.int64)
        out[3] = int(np.count_nonzero(edge))
        top = q.max()
        for k, t in enumerate(self.thresholds):
            if t > top or (t == top and not self.inclusive):
                break  # nothing passes this threshold or any higher one
            bmap = thin(q >= t if self.inclusive else q > t)
            out[1, k] = int(np.count_nonzero(bmap))
            out[0, k] = out[2, k] = matcher.count(bmap)  # one gt: cntP == cntR
        return out

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """pred: probabilities ``N×1×H×W``, ``N×H×W`` or ``H×W``; gt: same shape, {0,1}, 255."""
        pred = _as_single_channel(pred, "pred")
        gt = _as_single_channel(gt, "gt")
        _check_same(pred, gt)
        for p, g in zip(pred, gt, strict=True):
            self.counts.append(self.image_counts(p, g))
            self.n_valid += int(np.count_nonzero(g != IGNORE_INDEX))

    def add_counts(self, counts: np.ndarray, gt: np.ndarray) -> None:
        """Pool one image's :meth:`image_counts`, computed elsewhere (e.g. in a worker
        process), as :meth:`update` would have."""
        self.counts.append(counts)
        self.n_valid += int(np.count_nonzero(np.asarray(gt) != IGNORE_INDEX))

    def curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(thresholds, precision, recall, f)`` of the pooled counts, as fractions."""
        c = np.sum(self.counts, axis=0) if self.counts else np.zeros((4, len(self.thresholds)))
        precision, recall = _seism_pr(*c)
        return self.thresholds, precision, recall, _f(precision, recall)

    def _ois(self) -> float:
        c = np.stack(self.counts)  # N×4×T
        per_image_f = _f(*_seism_pr(c[:, 0], c[:, 1], c[:, 2], c[:, 3]))
        best = per_image_f.argmax(1)  # first maximum, as MATLAB's max
        pooled = c[np.arange(len(c)), :, best].sum(0)
        return float(_f(*_seism_pr(*pooled)))

    def _ap(self, precision: np.ndarray, recall: np.ndarray) -> float:
        # SEISM general_ap: unique recalls (first occurrence), linear interpolation of the
        # precision at recall 0:0.01:1, points outside the measured range dropped, sum / 100.
        rec, idx = np.unique(recall, return_index=True)
        if rec.size < 2:
            return 0.0
        grid = np.linspace(0.0, 1.0, 101)
        inside = (grid >= rec[0] - 1e-12) & (grid <= rec[-1] + 1e-12)
        return float(np.interp(grid[inside], rec, precision[idx]).sum() / 100.0)

    def compute(self) -> dict[str, float]:
        if self.n_valid == 0:
            return {"odsF": math.nan, "oisF": math.nan, "AP": math.nan}
        _, precision, recall, f = self.curve()
        return {
            "odsF": float(f.max() * 100.0),
            "oisF": self._ois() * 100.0,
            "AP": self._ap(precision, recall) * 100.0,
        }


class SaliencyMetric:
    """Max F-measure (β² = 0.3) of saliency probability maps, in %.

    Thresholds 0.05..0.95 step 0.05 (a pixel is predicted salient when ``p >= t``); true,
    predicted and actual positive counts are pooled over the split per threshold, then
    ``F = (1+β²)PR / (β²P + R)`` and maxF = max over thresholds. gt is binarised at 0.5;
    pixels with gt 255 are ignored.
    """

    BETA_SQUARED = 0.3

    def __init__(self, task: Task) -> None:
        self.task = task
        self.thresholds = (np.arange(1, 20) * 0.05).round(10)
        self.reset()

    def reset(self) -> None:
        k = len(self.thresholds)
        self.tp = np.zeros(k, np.int64)
        self.pp = np.zeros(k, np.int64)
        self.ap = 0
        self.n_valid = 0

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """pred: probabilities ``N×1×H×W``, ``N×H×W`` or ``H×W``; gt: same shape, {0,1}, 255."""
        pred = _as_single_channel(pred, "pred")
        gt = _as_single_channel(gt, "gt")
        _check_same(pred, gt)
        valid = gt != IGNORE_INDEX
        pos = valid & (gt >= 0.5)
        self.pp += _count_at_or_above(pred[valid], self.thresholds)
        self.tp += _count_at_or_above(pred[pos], self.thresholds)
        self.ap += int(np.count_nonzero(pos))
        self.n_valid += int(np.count_nonzero(valid))

    def curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(thresholds, precision, recall, f)`` as fractions, one entry per threshold."""
        b2 = self.BETA_SQUARED
        precision = self.tp / np.maximum(self.pp, 1)
        recall = self.tp / max(self.ap, 1)
        denom = b2 * precision + recall
        f = np.where(denom > 0, (1 + b2) * precision * recall / np.where(denom > 0, denom, 1), 0.0)
        return self.thresholds, precision, recall, f

    def compute(self) -> dict[str, float]:
        if self.n_valid == 0:
            return {"maxF": math.nan}
        return {"maxF": float(self.curve()[3].max() * 100.0)}


def delta_m(mt: dict[str, float], st: dict[str, float], lower_is_better: set[str]) -> float:
    """Multi-task gain Δm in % over the single-task baselines.

    ``Δm = (1/T) Σ_t (−1)^{l_t} (M_mt,t − M_st,t) / M_st,t × 100`` with ``l_t = 1`` for keys in
    ``lower_is_better`` (e.g. RMSE, mean angle). The ``T`` entries are the keys of ``st``; every
    one must be in ``mt``. Positive Δm = the multi-task model is better on average.
    """
    if not st:
        raise ValueError("delta_m needs at least one single-task baseline")
    missing = set(st) - set(mt)
    if missing:
        raise KeyError(f"multi-task results lack {sorted(missing)}")
    total = 0.0
    for key, base in st.items():
        if base == 0:
            raise ValueError(f"single-task baseline {key!r} is 0; relative change undefined")
        sign = -1.0 if key in lower_is_better else 1.0
        total += sign * (mt[key] - base) / base
    return total / len(st) * 100.0
