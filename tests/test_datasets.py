"""Tests of mtlsi_edge.data.datasets on tiny folders generated in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mtlsi_edge.data.datasets import (
    DatasetError,
    NYUDDataset,
    PascalMTDataset,
    build_dataset,
    label_boundaries,
)
from mtlsi_edge.data.transforms import train_transforms, val_transforms

H, W = 24, 32
IDS = ["0001", "0002", "0003"]
SPLITS = {"train": ["0001", "0002"], "val": ["0003"]}


def _imwrite(path: Path, a: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), a), path


def _npsave(path: Path, a: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, a)


def _write_split(path: Path, ids: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(ids) + "\n\n")  # trailing blank line must be ignored


def _nyud_raw(seed: int) -> dict[str, np.ndarray]:
    """Underlying data of one NYUD sample, in the PNG encodings."""
    rng = np.random.default_rng(seed)
    seg = rng.integers(0, 41, size=(H, W), dtype=np.uint8)
    seg[0, :3] = (0, 1, 40)
    depth = rng.uniform(0.5, 8.0, size=(H, W)).astype(np.float32)
    depth[2, :4] = 0.0
    nv = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)  # RGB-coded normals
    nv[..., 2] = 255  # keep them far from the zero vector
    nv[3, :2] = 128  # mid-grey = invalid
    edge = (rng.random((H, W)) < 0.2).astype(np.uint8)
    return {
        "rgb": rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8),
        "seg": seg,
        "depth": depth,
        "normals_rgb": nv,
        "edge": edge,
    }


def make_nyud(root: Path, layout: str) -> Path:
    """A 3-image NYUD folder in layout "NYUDv2" (png) or "NYUD_MT" (jpg/npy)."""
    for i, idx in enumerate(IDS):
        r = _nyud_raw(i)
        bgr = cv2.cvtColor(r["rgb"], cv2.COLOR_RGB2BGR)
        # the jpg is what both layouts hold: write it, decode it, store the pixels as png for v2
        jpg = root / "_jpg" / f"{idx}.jpg"
        _imwrite(jpg, bgr)
        decoded = cv2.imread(str(jpg), cv2.IMREAD_COLOR)
        _imwrite(root / "segmentation" / f"{idx}.png", r["seg"])
        _npsave(root / "depth" / f"{idx}.npy", r["depth"])
        if layout == "NYUDv2":
            _imwrite(root / "images" / f"{idx}.png", decoded)
            _imwrite(
                root / "normals" / f"{idx}.png", cv2.cvtColor(r["normals_rgb"], cv2.COLOR_RGB2BGR)
            )
            _imwrite(root / "edge" / f"{idx}.png", r["edge"] * 255)
        else:
            os.makedirs(root / "images", exist_ok=True)
            os.replace(jpg, root / "images" / f"{idx}.jpg")
            n = 2.0 * r["normals_rgb"].astype(np.float32) / 255.0 - 1.0
            n[3, :2] = 0.0
            _npsave(root / "normals" / f"{idx}.npy", n.astype(np.float32))
            _npsave(root / "edge" / f"{idx}.npy", r["edge"].astype(np.float32))
    for split, ids in SPLITS.items():
        _write_split(root / "gt_sets" / f"{split}.txt", ids)
    return root


@pytest.fixture
def nyud_v2(tmp_path: Path) -> Path:
    return make_nyud(tmp_path / "NYUDv2", "NYUDv2")


@pytest.fixture
def nyud_mt(tmp_path: Path) -> Path:
    return make_nyud(tmp_path / "NYUD_MT", "NYUD_MT")


def _pascal_raw(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(100 + seed)
    seg = np.zeros((H, W), np.uint8)
    seg[4:12, 6:20] = 15  # person
    seg[14:20, 2:10] = 7
    seg[0, 0] = 255
    parts = np.where(seg == 15, rng.integers(1, 7, size=(H, W)), 0).astype(np.uint8)
    parts[23, 31] = 255
    sal = rng.integers(0, 256, size=(H, W), dtype=np.uint8)
    sal[0, :4] = (127, 128, 0, 255)
    return {
        "rgb": rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8),
        "seg": seg,
        "parts": parts,
        "sal": sal,
        "normals_rgb": np.dstack(
            [rng.integers(0, 256, size=(H, W, 2)), np.full((H, W), 255)]
        ).astype(np.uint8),
    }


def make_pascal(root: Path, semseg_dir: str = "semseg/pascal-context") -> Path:
    for i, idx in enumerate(IDS):
        r = _pascal_raw(i)
        _imwrite(root / "JPEGImages" / f"{idx}.jpg", cv2.cvtColor(r["rgb"], cv2.COLOR_RGB2BGR))
        _imwrite(root / semseg_dir / f"{idx}.png", r["seg"])
        _imwrite(root / "human_parts" / f"{idx}.png", r["parts"])
        _imwrite(root / "sal_distill" / f"{idx}.png", r["sal"])
        _imwrite(
            root / "normals_distill" / f"{idx}.png",
            cv2.cvtColor(r["normals_rgb"], cv2.COLOR_RGB2BGR),
        )
    for split, ids in SPLITS.items():
        _write_split(root / "ImageSets" / "Context" / f"{split}.txt", ids)
    return root


@pytest.fixture
def pascal(tmp_path: Path) -> Path:
    return make_pascal(tmp_path / "PASCAL_MT")


# ------------------------------------------------------------------------------------------
# NYUD
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["NYUDv2", "NYUD_MT"])
def test_nyud_decodes_exactly(tmp_path: Path, layout: str) -> None:
    root = make_nyud(tmp_path / layout, layout)
    ds = NYUDDataset(root, "train", "nyud")
    assert ds.layout == layout
    assert ds.ids == ["0001", "0002"] and len(ds) == 2
    assert NYUDDataset(root, "val", "nyud").ids == ["0003"]
    s = ds[1]
    r = _nyud_raw(1)
    assert list(s) == ["image", "semseg", "depth", "normals", "boundary", "meta"]
    assert s["meta"] == {"id": "0002", "orig_size": (H, W)}
    img = s["image"]
    assert img.shape == (H, W, 3) and img.dtype == np.float32
    decoded = cv2.imread(str(tmp_path / layout / "_jpg" / "0002.jpg"))
    if layout == "NYUD_MT":
        decoded = cv2.imread(str(root / "images" / "0002.jpg"))
    np.testing.assert_array_equal(img, decoded[..., ::-1].astype(np.float32))  # RGB order
    # segmentation: 0 -> 255, 1..40 -> 0..39
    seg = s["semseg"]
    assert seg.dtype == np.uint8
    assert tuple(seg[0, :3]) == (255, 0, 39)
    np.testing.assert_array_equal(seg, np.where(r["seg"] == 0, 255, r["seg"] - 1))
    # depth: float32 metres, zeros stay invalid
    assert s["depth"].dtype == np.float32
    np.testing.assert_array_equal(s["depth"], r["depth"])
    assert np.all(s["depth"][2, :4] == 0)
    # normals: 2v/255 - 1, invalid -> zero vector
    n = s["normals"]
    assert n.shape == (H, W, 3) and n.dtype == np.float32
    expect = 2.0 * r["normals_rgb"].astype(np.float32) / 255.0 - 1.0
    expect[3, :2] = 0.0
    np.testing.assert_allclose(n, expect, atol=1e-6)
    assert np.all(n[3, :2] == 0)
    # edge: 0/1 floats
    assert s["boundary"].dtype == np.float32
    np.testing.assert_array_equal(s["boundary"], r["edge"].astype(np.float32))
    assert set(np.unique(s["boundary"])) <= {0.0, 1.0}


def test_nyud_layouts_give_identical_samples(nyud_v2: Path, nyud_mt: Path) -> None:
    a_ds = NYUDDataset(nyud_v2, "train", "nyud")
    b_ds = NYUDDataset(nyud_mt, "train", "nyud")
    assert (a_ds.layout, b_ds.layout) == ("NYUDv2", "NYUD_MT")
    assert a_ds.extensions["normals"] == ".png" and b_ds.extensions["normals"] == ".npy"
    for i in range(len(a_ds)):
        a, b = a_ds[i], b_ds[i]
        assert a["meta"] == b["meta"]
        for k in ("image", "semseg", "depth", "boundary"):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        np.testing.assert_allclose(a["normals"], b["normals"], atol=1e-6)
    # and through the same seeded training pipeline
    t = train_transforms((16, 16))
    a_ds = NYUDDataset(nyud_v2, "train", "nyud", t, seed=7)
    b_ds = NYUDDataset(nyud_mt, "train", "nyud", t, seed=7)
    a, b = a_ds[0], b_ds[0]
    for k in ("image", "semseg", "depth", "boundary"):
        assert torch.equal(a[k], b[k]), k
    assert torch.allclose(a["normals"], b["normals"], atol=1e-5)


def test_nyud_seeded_dataset_is_reproducible(nyud_v2: Path) -> None:
    t = train_transforms((16, 16))
    ds = NYUDDataset(nyud_v2, "train", "nyud", t, seed=3)
    a, b = ds[0], ds[0]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["semseg"], b["semseg"])
    ds.set_epoch(1)
    c = ds[0]
    assert not torch.equal(a["image"], c["image"])


def test_nyud_val_transform_and_loader(nyud_mt: Path) -> None:
    ds = build_dataset(nyud_mt, "train", "nyud", val_transforms((32, 40)))
    assert isinstance(ds, NYUDDataset)
    s = ds[0]
    assert s["image"].shape == (3, 32, 40) and s["semseg"].dtype == torch.int64
    assert s["depth"].shape == (1, 32, 40) and s["normals"].shape == (3, 32, 40)
    assert s["meta"] == {"id": "0001", "orig_size": (H, W)}
    assert torch.all(s["semseg"][H:] == 255) and torch.all(s["depth"][:, H:] == 0)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch["image"].shape == (2, 3, 32, 40)
    assert batch["meta"]["id"] == ["0001", "0002"]


def test_nyud_task_subset(nyud_v2: Path) -> None:
    from mtlsi_edge.tasks import TaskSet, get_task_set

    nyud = get_task_set("nyud")
    sub = TaskSet("nyud_sd", (nyud["semseg"], nyud["depth"]))
    s = NYUDDataset(nyud_v2, "val", sub)[0]
    assert list(s) == ["image", "semseg", "depth", "meta"]
    with pytest.raises(DatasetError, match="human_parts"):
        NYUDDataset(nyud_v2, "val", "pascal")


# ------------------------------------------------------------------------------------------
# PASCAL-MT
# ------------------------------------------------------------------------------------------


def test_pascal_decodes_exactly(pascal: Path) -> None:
    ds = PascalMTDataset(pascal, "train", "pascal")
    assert ds.ids == ["0001", "0002"]
    assert PascalMTDataset(pascal, "val", "pascal").ids == ["0003"]
    s = ds[0]
    r = _pascal_raw(0)
    assert list(s) == [
        "image", "semseg", "human_parts", "saliency", "normals", "boundary", "meta",
    ]  # fmt: skip
    assert s["meta"] == {"id": "0001", "orig_size": (H, W)}
    assert s["image"].shape == (H, W, 3) and s["image"].dtype == np.float32
    np.testing.assert_array_equal(s["semseg"], r["seg"])
    assert s["semseg"][0, 0] == 255
    np.testing.assert_array_equal(s["human_parts"], r["parts"])
    assert s["human_parts"][23, 31] == 255
    sal = s["saliency"]
    assert sal.dtype == np.float32
    assert tuple(sal[0, :4]) == (0.0, 1.0, 0.0, 1.0)  # 127/255 < 0.5 < 128/255
    np.testing.assert_array_equal(sal, (r["sal"] > 127).astype(np.float32))
    expect = 2.0 * r["normals_rgb"].astype(np.float32) / 255.0 - 1.0
    np.testing.assert_allclose(s["normals"], expect, atol=1e-6)
    np.testing.assert_array_equal(s["boundary"], label_boundaries(r["seg"]))


def test_label_boundaries_four_neighbour() -> None:
    lab = np.zeros((5, 6), np.uint8)
    lab[1:3, 2:4] = 3
    expect = np.zeros((5, 6), np.float32)
    expect[1:3, 2:4] = 1  # the block itself (every pixel touches the outside)
    expect[0, 2:4] = expect[3, 2:4] = 1  # above / below
    expect[1:3, 1] = expect[1:3, 4] = 1  # left / right; corners (diagonal) stay 0
    np.testing.assert_array_equal(label_boundaries(lab), expect)
    assert label_boundaries(np.full((3, 3), 7, np.uint8)).sum() == 0


def test_pascal_edges_png_overrides_and_alt_semseg_dir(tmp_path: Path) -> None:
    root = make_pascal(tmp_path / "P", semseg_dir="semseg")
    edge = np.zeros((H, W), np.uint8)
    edge[5, :] = 255
    _imwrite(root / "edges" / "0001.png", edge)
    ds = build_dataset(root, "train", "pascal", None)
    assert isinstance(ds, PascalMTDataset)
    np.testing.assert_array_equal(ds[0]["boundary"], edge / 255.0)
    np.testing.assert_array_equal(ds[1]["boundary"], label_boundaries(_pascal_raw(1)["seg"]))
    np.testing.assert_array_equal(ds[1]["semseg"], _pascal_raw(1)["seg"])


def test_pascal_mat_human_parts_asks_for_conversion(pascal: Path) -> None:
    os.remove(pascal / "human_parts" / "0002.png")
    (pascal / "human_parts" / "0002.mat").write_bytes(b"MATLAB 5.0 MAT-file")
    with pytest.raises(DatasetError, match=r"0002\.mat.*convert") as e:
        PascalMTDataset(pascal, "train", "pascal")
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------


def _one_line(e: pytest.ExceptionInfo, name: str) -> None:
    msg = str(e.value)
    assert name in msg, msg
    assert "\n" not in msg
    assert isinstance(e.value, ValueError)


def test_missing_split_file(nyud_v2: Path, pascal: Path) -> None:
    with pytest.raises(DatasetError) as e:
        NYUDDataset(nyud_v2, "test", "nyud")
    _one_line(e, os.path.join("gt_sets", "test.txt"))
    with pytest.raises(DatasetError) as e:
        PascalMTDataset(pascal, "trainval", "pascal")
    _one_line(e, os.path.join("Context", "trainval.txt"))


@pytest.mark.parametrize("layout", ["NYUDv2", "NYUD_MT"])
def test_missing_depth_file(tmp_path: Path, layout: str) -> None:
    root = make_nyud(tmp_path / layout, layout)
    os.remove(root / "depth" / "0002.npy")
    with pytest.raises(DatasetError) as e:
        NYUDDataset(root, "train", "nyud")  # eager: raised before any sample is read
    _one_line(e, os.path.join("depth", "0002.npy"))
    NYUDDataset(root, "val", "nyud")  # other split unaffected


def test_missing_pascal_modality(pascal: Path) -> None:
    os.remove(pascal / "sal_distill" / "0003.png")
    with pytest.raises(DatasetError) as e:
        PascalMTDataset(pascal, "val", "pascal")
    _one_line(e, os.path.join("sal_distill", "0003.png"))


def test_mismatched_size(nyud_v2: Path, pascal: Path) -> None:
    _imwrite(nyud_v2 / "segmentation" / "0001.png", np.ones((H, W - 2), np.uint8))
    ds = NYUDDataset(nyud_v2, "train", "nyud")  # sizes are checked lazily
    ds[1]
    with pytest.raises(DatasetError) as e:
        ds[0]
    _one_line(e, os.path.join("segmentation", "0001.png"))
    assert f"{H}x{W - 2}" in str(e.value)
    _imwrite(pascal / "human_parts" / "0003.png", np.zeros((H + 1, W), np.uint8))
    with pytest.raises(DatasetError) as e:
        PascalMTDataset(pascal, "val", "pascal")[0]
    _one_line(e, os.path.join("human_parts", "0003.png"))


def test_unreadable_image(nyud_mt: Path, pascal: Path) -> None:
    (nyud_mt / "images" / "0003.jpg").write_bytes(b"not a jpeg")
    ds = NYUDDataset(nyud_mt, "val", "nyud")
    with pytest.raises(DatasetError) as e:
        ds[0]
    _one_line(e, os.path.join("images", "0003.jpg"))
    (pascal / "JPEGImages" / "0001.jpg").write_bytes(b"")
    with pytest.raises(DatasetError) as e:
        PascalMTDataset(pascal, "train", "pascal")[0]
    _one_line(e, os.path.join("JPEGImages", "0001.jpg"))


def test_unreadable_npy(nyud_mt: Path) -> None:
    (nyud_mt / "normals" / "0003.npy").write_bytes(b"garbage")
    with pytest.raises(DatasetError) as e:
        NYUDDataset(nyud_mt, "val", "nyud")[0]
    _one_line(e, os.path.join("normals", "0003.npy"))


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as e:
        build_dataset(tmp_path / "nope", "train", "nyud", None)
    _one_line(e, "nope")
