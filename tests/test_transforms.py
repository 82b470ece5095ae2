"""Tests of mtlsi_edge.data.transforms on tiny synthetic samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtlsi_edge.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Compose,
    Normalize,
    PadTo,
    PhotometricDistortion,
    RandomCrop,
    RandomHorizontalFlip,
    RandomScale,
    ToTensor,
    train_transforms,
    val_transforms,
)

H, W = 12, 16


def _sample(h: int = H, w: int = W, seed: int = 0, pascal: bool = False) -> dict:
    """A sample whose every map encodes the column, so geometry is checkable."""
    rng = np.random.default_rng(seed)
    xs = np.broadcast_to(np.arange(w), (h, w))
    n = rng.normal(size=(h, w, 3)).astype(np.float32)
    n /= np.linalg.norm(n, axis=2, keepdims=True)
    n[0, 0] = 0.0  # an invalid normal
    depth = (1.0 + xs).astype(np.float32)
    depth[1, 1] = 0.0  # invalid depth
    s = {
        "image": rng.uniform(0, 255, size=(h, w, 3)).astype(np.float32),
        "semseg": (xs % 5).astype(np.uint8),
        "depth": depth,
        "normals": n,
        "boundary": (xs % 2).astype(np.float32),
        "meta": {"id": "x", "orig_size": (h, w)},
    }
    if pascal:
        s["human_parts"] = (xs % 7).astype(np.uint8)
        s["saliency"] = (xs % 3 == 0).astype(np.float32)
    return s


def test_flip_mirrors_everything_and_negates_normals_x() -> None:
    s = _sample(pascal=True)
    out = RandomHorizontalFlip(p=1.0)(s, np.random.default_rng(0))
    for k in ("image", "semseg", "depth", "boundary", "human_parts", "saliency"):
        np.testing.assert_array_equal(out[k], s[k][:, ::-1], err_msg=k)
    np.testing.assert_array_equal(out["normals"][..., 0], -s["normals"][:, ::-1, 0])
    np.testing.assert_array_equal(out["normals"][..., 1:], s["normals"][:, ::-1, 1:])
    assert np.all(out["normals"][0, W - 1] == 0)  # invalid stays the zero vector
    assert out["meta"] == s["meta"]
    # input untouched
    np.testing.assert_array_equal(s["normals"], _sample(pascal=True)["normals"])
    # p = 0 is the identity
    same = RandomHorizontalFlip(p=0.0)(s, np.random.default_rng(0))
    np.testing.assert_array_equal(same["normals"], s["normals"])


def test_flip_probability_is_respected() -> None:
    rng = np.random.default_rng(1)
    s = _sample()
    flips = sum(
        not np.array_equal(RandomHorizontalFlip(0.5)(s, rng)["semseg"], s["semseg"])
        for _ in range(200)
    )
    assert 60 < flips < 140


def test_scale_divides_depth_and_resizes_all_keys() -> None:
    s = _sample(pascal=True)
    out = RandomScale((1.5, 1.5))(s, np.random.default_rng(0))
    assert out["image"].shape == (18, 24, 3) and out["image"].dtype == np.float32
    for k in ("semseg", "depth", "boundary", "human_parts", "saliency"):
        assert out[k].shape == (18, 24), k
        assert out[k].dtype == s[k].dtype, k
    assert out["normals"].shape == (18, 24, 3)
    # nearest: the column code survives, labels stay labels
    assert set(np.unique(out["semseg"])) <= set(np.unique(s["semseg"]))
    valid = out["depth"] > 0
    src = (1.0 + np.broadcast_to(np.arange(W), (H, W))).astype(np.float32)
    expected = set(np.round(src.ravel() / 1.5, 5))
    assert set(np.round(out["depth"][valid], 5)) <= expected
    assert np.any(out["depth"] == 0)  # invalid depth stays 0 (not divided into garbage)
    half = RandomScale((0.5, 0.5))(s, np.random.default_rng(0))
    assert half["depth"].shape == (6, 8)
    assert np.isclose(half["depth"][half["depth"] > 0].max(), 2.0 * W)


def test_scale_random_factor_matches_depth_division() -> None:
    s = _sample()
    s["depth"] = np.full((H, W), 3.0, np.float32)
    rng = np.random.default_rng(5)
    factor = np.random.default_rng(5).uniform(0.5, 2.0)
    out = RandomScale((0.5, 2.0))(s, rng)
    assert out["depth"].shape == (round(H * factor), round(W * factor))
    np.testing.assert_allclose(out["depth"], 3.0 / factor, rtol=1e-6)


def test_crop_respects_cat_max_ratio() -> None:
    # left half one class (0), right half two classes (1 top, 2 bottom): a 16x16 crop of this
    # 16x32 map is dominated by class 0 when it starts at x0 <= 4
    seg = np.zeros((16, 32), np.uint8)
    seg[:8, 16:] = 1
    seg[8:, 16:] = 2
    s = {"image": np.zeros((16, 32, 3), np.float32), "semseg": seg}

    def ratio(crop: np.ndarray) -> float:
        _, c = np.unique(crop[crop != 255], return_counts=True)
        return c.max() / c.sum()

    with_ratio = [
        ratio(RandomCrop(16, 0.75)(s, np.random.default_rng(i))["semseg"]) for i in range(40)
    ]
    assert max(with_ratio) < 0.75
    without = [ratio(RandomCrop(16, 1.0)(s, np.random.default_rng(i))["semseg"]) for i in range(40)]
    assert max(without) >= 0.75  # the constraint is what keeps the crops mixed


def test_crop_is_consistent_across_keys() -> None:
    s = _sample(h=20, w=30, pascal=True)
    out = RandomCrop((10, 12), cat_max_ratio=1.0)(s, np.random.default_rng(3))
    x0 = int(out["depth"][5, 0]) - 1  # depth encodes the column (1 + x)
    assert out["image"].shape == (10, 12, 3)
    for k in ("semseg", "boundary", "human_parts", "saliency"):
        assert out[k].shape == (10, 12)
    # find the row offset through the image
    for y0 in range(0, 11):
        if np.array_equal(out["image"], s["image"][y0 : y0 + 10, x0 : x0 + 12]):
            break
    else:
        pytest.fail("crop of image not found in the source")
    for k in ("semseg", "depth", "normals", "boundary", "human_parts", "saliency"):
        np.testing.assert_array_equal(out[k], s[k][y0 : y0 + 10, x0 : x0 + 12], err_msg=k)


def test_crop_pads_small_samples_with_ignore_values() -> None:
    s = _sample(h=10, w=12, pascal=True)
    out = RandomCrop((16, 16), cat_max_ratio=0.75)(s, np.random.default_rng(0))
    assert out["image"].shape == (16, 16, 3)
    np.testing.assert_array_equal(out["semseg"][:10, :12], s["semseg"])
    assert np.all(out["image"][10:] == 0) and np.all(out["image"][:, 12:] == 0)
    for k in ("semseg", "human_parts", "boundary", "saliency"):
        assert np.all(out[k][10:] == 255) and np.all(out[k][:, 12:] == 255), k
    assert np.all(out["depth"][10:] == 0) and np.all(out["depth"][:, 12:] == 0)
    assert np.all(out["normals"][10:] == 0) and np.all(out["normals"][:, 12:] == 0)


def test_photometric_changes_only_the_image_and_keeps_gray_gray() -> None:
    s = _sample()
    gray = np.repeat(np.linspace(10, 240, H * W, dtype=np.float32).reshape(H, W, 1), 3, 2)
    s["image"] = gray
    changed = 0
    for i in range(10):
        out = PhotometricDistortion()(s, np.random.default_rng(i))
        img = out["image"]
        assert img.dtype == np.float32 and img.shape == (H, W, 3)
        assert img.min() >= 0 and img.max() <= 255
        np.testing.assert_allclose(img[..., 0], img[..., 1], atol=1e-3)
        np.testing.assert_allclose(img[..., 0], img[..., 2], atol=1e-3)
        np.testing.assert_array_equal(out["semseg"], s["semseg"])
        changed += not np.allclose(img, gray)
    assert changed > 0


def test_photometric_hue_and_saturation_touch_colour() -> None:
    s = {"image": np.tile(np.array([200.0, 50.0, 50.0], np.float32), (4, 4, 1))}
    outs = [PhotometricDistortion()(s, np.random.default_rng(i))["image"] for i in range(20)]
    hues = {tuple(np.round(o[0, 0]).astype(int)) for o in outs}
    assert len(hues) > 5


def test_same_seed_same_augmentation() -> None:
    s = _sample(h=24, w=32, pascal=True)
    t = train_transforms((16, 16))
    a = t(s, np.random.default_rng(123))
    b = t(s, np.random.default_rng(123))
    c = t(s, np.random.default_rng(124))
    for k in ("image", "semseg", "depth", "normals", "boundary", "human_parts", "saliency"):
        assert torch.equal(a[k], b[k]), k
    assert not torch.equal(a["image"], c["image"])


def test_normalize_uses_imagenet_stats() -> None:
    mean = np.array(IMAGENET_MEAN, np.float32)
    std = np.array(IMAGENET_STD, np.float32)
    assert np.allclose(mean, [0.485, 0.456, 0.406]) and np.allclose(std, [0.229, 0.224, 0.225])
    img = np.zeros((2, 2, 3), np.float32)
    img[0, 0] = mean * 255
    img[1, 1] = 255.0
    out = Normalize()({"image": img})["image"]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], 0.0, atol=1e-6)
    np.testing.assert_allclose(out[0, 1], -mean / std, rtol=1e-6)
    np.testing.assert_allclose(out[1, 1], (1 - mean) / std, rtol=1e-6)


def test_pad_to_records_orig_size_and_pads_bottom_right() -> None:
    s = _sample(pascal=True)
    out = PadTo((16, 20))(s)
    assert out["meta"] == {"id": "x", "orig_size": (H, W)}
    assert s["meta"] == {"id": "x", "orig_size": (H, W)}  # input meta not mutated
    np.testing.assert_array_equal(out["image"][:H, :W], s["image"])
    np.testing.assert_array_equal(out["depth"][:H, :W], s["depth"])
    assert np.all(out["semseg"][H:] == 255) and np.all(out["semseg"][:, W:] == 255)
    assert np.all(out["boundary"][H:] == 255) and np.all(out["depth"][:, W:] == 0)
    assert PadTo((H, W))(s)["image"].shape == (H, W, 3)
    with pytest.raises(ValueError, match="larger"):
        PadTo((8, 8))(s)


def test_to_tensor_shapes_and_dtypes() -> None:
    out = ToTensor()(_sample(pascal=True))
    assert out["image"].shape == (3, H, W) and out["image"].dtype == torch.float32
    assert out["semseg"].shape == (H, W) and out["semseg"].dtype == torch.int64
    assert out["human_parts"].shape == (H, W) and out["human_parts"].dtype == torch.int64
    assert out["depth"].shape == (1, H, W) and out["depth"].dtype == torch.float32
    assert out["normals"].shape == (3, H, W) and out["normals"].dtype == torch.float32
    assert out["boundary"].shape == (1, H, W) and out["saliency"].shape == (1, H, W)
    assert out["meta"]["orig_size"] == (H, W)


def test_val_pipeline_and_train_pipeline_output() -> None:
    s = _sample(h=10, w=14)
    v = val_transforms((16, 16))(s)
    assert v["image"].shape == (3, 16, 16) and v["meta"]["orig_size"] == (10, 14)
    assert torch.all(v["semseg"][10:] == 255)
    assert torch.all(v["image"][:, 10:] == 0)  # padded after normalisation: mean colour
    t = train_transforms((8, 8))(s, np.random.default_rng(0))
    assert t["image"].shape == (3, 8, 8) and t["depth"].shape == (1, 8, 8)
    assert isinstance(Compose([]), Compose)


def test_unknown_spatial_key_is_rejected() -> None:
    s = _sample()
    s["mystery"] = np.zeros((H, W), np.float32)
    with pytest.raises(KeyError, match="mystery"):
        RandomHorizontalFlip(1.0)(s, np.random.default_rng(0))
