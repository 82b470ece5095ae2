"""SynthIndoor renderer: determinism, ground-truth validity, NYUD layout writer, walkthrough."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mtlsi_edge.data.synthindoor import (
    SynthSample,
    intrinsics,
    render_sample,
    render_walkthrough,
    write_dataset,
)

SMALL = (60, 80)
MID = (120, 160)


@pytest.fixture(scope="module")
def samples() -> list[SynthSample]:
    return [render_sample(s, MID) for s in range(8)]


def _fields(s: SynthSample) -> list[np.ndarray]:
    return [s.image_rgb, s.semseg, s.depth, s.normals, s.boundary]


def test_deterministic_per_seed():
    a, b = render_sample(11, SMALL), render_sample(11, SMALL)
    for x, y in zip(_fields(a), _fields(b), strict=True):
        assert x.dtype == y.dtype and np.array_equal(x, y)
    c = render_sample(12, SMALL)
    assert not np.array_equal(a.image_rgb, c.image_rgb)
    assert not np.array_equal(a.depth, c.depth)
    # the noise flag only changes the image, never the ground truth
    d = render_sample(11, SMALL, noise=False)
    assert np.array_equal(a.semseg, d.semseg) and np.array_equal(a.depth, d.depth)
    assert np.array_equal(a.normals, d.normals) and not np.array_equal(a.image_rgb, d.image_rgb)


def test_shapes_and_dtypes(samples):
    h, w = MID
    for s in samples:
        assert s.image_rgb.shape == (h, w, 3) and s.image_rgb.dtype == np.uint8
        assert s.semseg.shape == (h, w) and s.semseg.dtype == np.uint8
        assert s.depth.shape == (h, w) and s.depth.dtype == np.float32
        assert s.normals.shape == (h, w, 3) and s.normals.dtype == np.float32
        assert s.boundary.shape == (h, w) and s.boundary.dtype == np.uint8
        assert np.allclose(s.intrinsics, intrinsics(MID))
    k = intrinsics((240, 320))
    assert k[0, 0] == pytest.approx(518.8 / 2) and k[1, 1] == pytest.approx(518.8 / 2)
    assert k[0, 2] == pytest.approx(159.5) and k[1, 2] == pytest.approx(119.5)


def test_value_ranges(samples):
    h, w = MID
    k = intrinsics(MID)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    rays = np.stack([(xs - k[0, 2]) / k[0, 0], (ys - k[1, 2]) / k[1, 1], np.ones_like(xs)], -1)
    for s in samples:
        labels = np.unique(s.semseg)
        assert np.all((labels <= 39) | (labels == 255))
        valid = s.semseg != 255
        assert valid.mean() > 0.99  # a closed room: every ray hits something
        assert np.all(np.isfinite(s.depth)) and np.all(s.depth[valid] > 0)
        assert s.depth.max() < 15.0
        norm = np.linalg.norm(s.normals, axis=-1)
        assert np.all(np.abs(norm[valid] - 1) < 1e-3)
        facing = (s.normals.astype(np.float64) * rays).sum(-1)
        assert np.all(facing[valid] < 0)
        assert set(np.unique(s.boundary)) <= {0, 1}
        assert 0 < s.boundary.mean() < 0.25
        assert s.image_rgb.std() > 5  # not a flat image


def test_geometry_consistent_with_depth(samples):
    """Floor pixels back-project onto one horizontal plane whose normal matches the GT normals."""
    k = intrinsics(MID)
    h, w = MID
    checked = 0
    for s in samples:
        floor = s.semseg == 1
        if floor.sum() < 200:
            continue
        ys, xs = np.nonzero(floor)
        z = s.depth[floor].astype(np.float64)
        pts = np.stack([(xs - k[0, 2]) / k[0, 0] * z, (ys - k[1, 2]) / k[1, 1] * z, z], 1)
        n = s.normals[floor].astype(np.float64).mean(0)
        n /= np.linalg.norm(n)
        assert np.all(np.abs(s.normals[floor] @ n - 1) < 1e-3)  # one plane, one normal
        offs = pts @ n
        assert offs.std() < 1e-3 and 1.0 < abs(offs.mean()) < 2.0  # camera height 1.2–1.8 m
        checked += 1
    assert checked >= 2


def test_several_classes(samples):
    counts = [len(np.unique(s.semseg[s.semseg != 255])) for s in samples]
    assert np.mean(counts) >= 5
    seen = set().union(*(np.unique(s.semseg).tolist() for s in samples))
    assert {0, 1}.issubset(seen)  # wall and floor
    assert len(seen) >= 12


def test_write_dataset_layout(tmp_path: Path):
    calls = []
    root = write_dataset(tmp_path / "nyud", 6, SMALL, seed=3, val_fraction=0.34,
                         progress=lambda d, n: calls.append((d, n)))  # fmt: skip
    assert root == tmp_path / "nyud" and calls[-1] == (6, 6)
    ids = [f"synth_{i:06d}" for i in range(6)]
    expect = {"gt_sets/train.txt", "gt_sets/val.txt"}
    for i in ids:
        expect |= {f"images/{i}.png", f"segmentation/{i}.png", f"depth/{i}.npy",
                   f"normals/{i}.png", f"edge/{i}.png"}  # fmt: skip
    found = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert found == expect  # exact layout, no temp files left
    train = (root / "gt_sets/train.txt").read_text().split()
    val = (root / "gt_sets/val.txt").read_text().split()
    assert len(val) == 2 and sorted(train + val) == ids and not set(train) & set(val)

    from mtlsi_edge.data.synthindoor import sample_seed

    for i, sid in enumerate(ids[:3]):
        ref = render_sample(sample_seed(3, i), SMALL)
        bgr = cv2.imread(str(root / "images" / f"{sid}.png"), cv2.IMREAD_COLOR)
        assert np.array_equal(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), ref.image_rgb)
        seg = cv2.imread(str(root / "segmentation" / f"{sid}.png"), cv2.IMREAD_UNCHANGED)
        assert seg.dtype == np.uint8 and seg.shape == SMALL
        assert np.array_equal(seg.astype(int) - 1, np.where(ref.semseg == 255, -1, ref.semseg))
        depth = np.load(root / "depth" / f"{sid}.npy")
        assert depth.dtype == np.float32 and np.array_equal(depth, ref.depth)
        v = cv2.cvtColor(cv2.imread(str(root / "normals" / f"{sid}.png")), cv2.COLOR_BGR2RGB)
        n = 2.0 * v.astype(np.float32) / 255.0 - 1.0  # the NYUD reader's decoding (file RGB = xyz)
        assert np.abs(n - ref.normals).max() <= 1 / 127
        edge = cv2.imread(str(root / "edge" / f"{sid}.png"), cv2.IMREAD_UNCHANGED)
        assert set(np.unique(edge)) <= {0, 255} and np.array_equal(edge // 255, ref.boundary)


def test_written_dataset_reads_with_nyud_reader(tmp_path: Path):
    datasets = pytest.importorskip("mtlsi_edge.data.datasets")
    root = write_dataset(tmp_path / "nyud", 3, SMALL, seed=5, val_fraction=0.34)
    ds = datasets.NYUDDataset(root, "train", "nyud")
    sample = ds[0]  # no transform: numpy arrays as read
    sid = sample["meta"]["id"]
    ref = render_sample(5 * 1_000_003 + int(sid.split("_")[1]), SMALL)
    assert np.array_equal(np.asarray(sample["semseg"]), ref.semseg)
    assert np.allclose(np.asarray(sample["depth"]), ref.depth)
    assert np.abs(np.asarray(sample["normals"]) - ref.normals).max() <= 1 / 127
    assert np.array_equal(np.asarray(sample["boundary"]), ref.boundary.astype(np.float32))


def test_walkthrough_reads_back(tmp_path: Path):
    out = render_walkthrough(tmp_path / "walk.mp4", seconds=1.0, fps=8, size=(48, 64), seed=2)
    assert out == tmp_path / "walk.mp4" and out.stat().st_size > 0
    assert [p.name for p in tmp_path.iterdir()] == ["walk.mp4"]
    cap = cv2.VideoCapture(str(out))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    assert len(frames) == 8
    assert frames[0].shape == (48, 64, 3)
    diffs = [np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(frames, frames[1:])]
    assert max(diffs) > 0.5  # the camera moves
