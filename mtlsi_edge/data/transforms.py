"""Paired augmentation for multi-task dense prediction samples.

A *sample* is a dict of numpy arrays sharing one spatial size ``H×W``; which keys exist depends on
the task set:

=============  ==========================  ===================================================
key            before ``ToTensor``         meaning / pad value
=============  ==========================  ===================================================
image          ``H×W×3`` float32 RGB 0..255 pad 0 (before ``Normalize``; 0 after it = mean)
semseg         ``H×W`` uint8 / int64        class index, 255 = ignore; pad 255
human_parts    ``H×W`` uint8 / int64        part index, 255 = ignore; pad 255
depth          ``H×W`` float32 metres       0 = invalid; pad 0
normals        ``H×W×3`` float32 unit xyz   zero vector = invalid; pad 0
boundary       ``H×W`` float32 0/1          255 = ignore (padding only); pad 255
saliency       ``H×W`` float32 0/1          255 = ignore (padding only); pad 255
meta           dict                         ``{"id", "orig_size": (h, w)}``, passed through
=============  ==========================  ===================================================

Losses and metrics must therefore treat ``boundary``/``saliency`` == 255 as ignore, like the
segmentation maps. Task keys are handled by their kind (:func:`mtlsi_edge.tasks.kind_of`): pad
value, flip, rescaling and tensor layout come from the :class:`~mtlsi_edge.kinds.TaskKind`.

Every transform is called as ``transform(sample, rng)`` with an explicit ``np.random.Generator``;
the same generator state gives the same augmentation (``Compose`` threads one generator through
all steps). ``rng=None`` draws a fresh, unseeded generator. Transforms never modify the input
dict or its arrays in place; they return a new dict.

The training pipeline follows the ATRC/mmseg recipe (see
docs/design.md, 'Augmentation'): random scale U(0.5, 2) with depth divided by
the scale, random crop with ``cat_max_ratio`` 0.75, horizontal flip with normals x negated,
photometric distortion, ImageNet normalisation, to tensor. Validation: normalise, pad, to tensor.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import cv2
import numpy as np
import torch

from mtlsi_edge.inputs import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from mtlsi_edge.kinds import TaskKind
from mtlsi_edge.objectives import gt_to_tensor
from mtlsi_edge.tasks import kind_of

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Compose",
    "Normalize",
    "PadTo",
    "PhotometricDistortion",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomScale",
    "ToTensor",
    "Transform",
    "train_transforms",
    "val_transforms",
]

Sample = dict[str, Any]

IMAGE_KEY = "image"
#: Fill of the image when padding (before normalisation); task keys use their kind's pad value.
IMAGE_PAD = 0.0

_PASSTHROUGH_KEYS = frozenset({"meta"})


def _as_hw(size: int | Sequence[int]) -> tuple[int, int]:
    """``448`` or ``(448, 576)`` → ``(h, w)``."""
    if isinstance(size, int):
        h = w = size
    else:
        h, w = (int(s) for s in size)
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    return h, w


def _get_rng(rng: np.random.Generator | None) -> np.random.Generator:
    return np.random.default_rng() if rng is None else rng


def _kind(key: str) -> TaskKind | None:
    """The kind of a task key; ``None`` for the image or a key that is not a registered task."""
    if key == IMAGE_KEY:
        return None
    try:
        return kind_of(key)
    except KeyError:
        return None


def _pad_value(key: str) -> float:
    kind = _kind(key)
    return IMAGE_PAD if kind is None else kind.pad_value


def _spatial_keys(sample: Sample) -> list[str]:
    """Keys of ``sample`` holding ``H×W[×C]`` arrays: the image and registered task names."""
    keys = []
    for k, v in sample.items():
        if k == IMAGE_KEY or _kind(k) is not None:
            keys.append(k)
        elif k not in _PASSTHROUGH_KEYS and isinstance(v, np.ndarray) and v.ndim >= 2:
            raise KeyError(
                f"transform does not know how to handle spatial key {k!r}; known: "
                f"{IMAGE_KEY} and the registered task names"
            )
    return keys


def _hw(sample: Sample) -> tuple[int, int]:
    """Spatial size of the sample (from ``image``, else from the first spatial key)."""
    keys = _spatial_keys(sample)
    if not keys:
        raise KeyError("sample has no spatial keys")
    key = "image" if "image" in sample else keys[0]
    h, w = sample[key].shape[:2]
    return int(h), int(w)


def _nearest_resize(a: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Nearest-neighbour resize of an ``H×W[×C]`` array of any dtype (pixel-centre sampling)."""
    h, w = a.shape[:2]
    ys = np.minimum(((np.arange(out_h) + 0.5) * (h / out_h)).astype(np.int64), h - 1)
    xs = np.minimum(((np.arange(out_w) + 0.5) * (w / out_w)).astype(np.int64), w - 1)
    return a[ys[:, None], xs[None, :]]


def _pad_array(a: np.ndarray, out_h: int, out_w: int, value: float) -> np.ndarray:
    """Pad an ``H×W[×C]`` array on the bottom/right to ``out_h×out_w`` with ``value``."""
    h, w = a.shape[:2]
    if h == out_h and w == out_w:
        return a
    out = np.full((out_h, out_w) + a.shape[2:], value, dtype=a.dtype)
    out[:h, :w] = a
    return out


def _pad_sample(sample: Sample, out_h: int, out_w: int) -> Sample:
    """Pad every spatial key bottom/right to ``out_h×out_w`` with its kind's pad value."""
    out = dict(sample)
    for k in _spatial_keys(sample):
        out[k] = _pad_array(sample[k], out_h, out_w, _pad_value(k))
    return out


class Transform:
    """Base class: ``__call__(sample, rng) -> new sample``."""

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Compose(Transform):
    """Apply transforms in order, threading one generator through all of them."""

    def __init__(self, transforms: Iterable[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        rng = _get_rng(rng)
        for t in self.transforms:
            sample = t(sample, rng)
        return sample

    def __repr__(self) -> str:
        inner = ",\n    ".join(repr(t) for t in self.transforms)
        return f"Compose([\n    {inner}\n])"


class RandomScale(Transform):
    """Rescale by ``s ~ U(lo, hi)``: new size ``round(H·s)×round(W·s)``.

    ``image`` is resized bilinearly, every other key with nearest neighbour (dtype preserved);
    ``depth`` is additionally divided by ``s`` (an image enlarged ``s`` times looks ``s`` times
    closer), so invalid depth (0) stays 0.
    """

    def __init__(self, scale_range: tuple[float, float] = (0.5, 2.0)) -> None:
        lo, hi = float(scale_range[0]), float(scale_range[1])
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must satisfy 0 < lo <= hi, got {scale_range!r}")
        self.scale_range = (lo, hi)

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        rng = _get_rng(rng)
        s = float(rng.uniform(*self.scale_range))
        h, w = _hw(sample)
        nh, nw = max(1, int(round(h * s))), max(1, int(round(w * s)))
        out = dict(sample)
        for k in _spatial_keys(sample):
            a = sample[k]
            if k == IMAGE_KEY:
                out[k] = cv2.resize(
                    a.astype(np.float32, copy=False), (nw, nh), interpolation=cv2.INTER_LINEAR
                )
            else:
                out[k] = _nearest_resize(a, nh, nw)
                if _kind(k).zoom_divides:
                    out[k] = (out[k] / s).astype(a.dtype, copy=False)
        return out


class RandomCrop(Transform):
    """Random ``h×w`` crop; pads bottom/right first (kind pad values) if the sample is smaller.

    mmseg's ``cat_max_ratio``: a crop is accepted when the first segmentation map of the
    sample (``semseg``) holds at least two non-ignore classes and the most frequent one covers
    less than ``cat_max_ratio`` of the non-ignore pixels. Up to ``max_tries`` crops are drawn;
    if none passes, the last one is used. Without a segmentation key (or with
    ``cat_max_ratio >= 1``) the first crop is used.
    """

    def __init__(
        self,
        size: int | Sequence[int],
        cat_max_ratio: float = 0.75,
        max_tries: int = 10,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        self.size = _as_hw(size)
        self.cat_max_ratio = float(cat_max_ratio)
        self.max_tries = max(1, int(max_tries))
        self.ignore_index = int(ignore_index)

    def _accept(self, seg: np.ndarray) -> bool:
        labels, counts = np.unique(seg, return_counts=True)
        counts = counts[labels != self.ignore_index]
        return len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        rng = _get_rng(rng)
        ch, cw = self.size
        h, w = _hw(sample)
        if h < ch or w < cw:
            sample = _pad_sample(sample, max(h, ch), max(w, cw))
            h, w = max(h, ch), max(w, cw)
        seg = next((k for k in _spatial_keys(sample)
                    if (kind := _kind(k)) is not None and kind.output == "labels"), None)
        check = self.cat_max_ratio < 1.0 and seg is not None
        tries = self.max_tries if check else 1
        for _ in range(tries):
            y0 = int(rng.integers(0, h - ch + 1))
            x0 = int(rng.integers(0, w - cw + 1))
            if check and self._accept(sample[seg][y0 : y0 + ch, x0 : x0 + cw]):
                break
        out = dict(sample)
        for k in _spatial_keys(sample):
            out[k] = sample[k][y0 : y0 + ch, x0 : x0 + cw].copy()
        return out


class RandomHorizontalFlip(Transform):
    """Mirror every spatial key left-right with probability ``p``; negates the x component of
    kinds with ``flip_negates_x`` (normals)."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = float(p)

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        rng = _get_rng(rng)
        if not rng.random() < self.p:
            return dict(sample)
        out = dict(sample)
        for k in _spatial_keys(sample):
            flipped = np.ascontiguousarray(sample[k][:, ::-1])
            kind = _kind(k)
            if kind is not None and kind.flip_negates_x:
                flipped[..., 0] *= -1.0
            out[k] = flipped
        return out


class PhotometricDistortion(Transform):
    """mmseg ``PhotometricDistortion`` on ``image`` (``H×W×3`` float32 RGB 0..255).

    Each step fires with probability 0.5: brightness ``+U(-δb, δb)``; contrast ``×U(lo, hi)``
    (before or after the HSV steps, chosen at random); saturation ``×U(lo, hi)``; hue shift
    ``U(-δh, δh)`` in OpenCV's 0..180 hue units (i.e. ``2·δh`` degrees). Saturation and hue are
    changed through ``cv2`` float HSV (no 8-bit quantisation). Output is clipped to 0..255.
    """

    def __init__(
        self,
        brightness_delta: float = 32.0,
        contrast_range: tuple[float, float] = (0.5, 1.5),
        saturation_range: tuple[float, float] = (0.5, 1.5),
        hue_delta: float = 18.0,
    ) -> None:
        self.brightness_delta = float(brightness_delta)
        self.contrast_range = (float(contrast_range[0]), float(contrast_range[1]))
        self.saturation_range = (float(saturation_range[0]), float(saturation_range[1]))
        self.hue_delta = float(hue_delta)

    def _contrast(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.integers(2):
            img = np.clip(img * rng.uniform(*self.contrast_range), 0.0, 255.0)
        return img

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        rng = _get_rng(rng)
        img = sample["image"].astype(np.float32, copy=True)
        if rng.integers(2):
            delta = rng.uniform(-self.brightness_delta, self.brightness_delta)
            img = np.clip(img + delta, 0.0, 255.0)
        contrast_first = bool(rng.integers(2))
        if contrast_first:
            img = self._contrast(img, rng)
        do_sat = bool(rng.integers(2))
        sat = rng.uniform(*self.saturation_range) if do_sat else 1.0
        do_hue = bool(rng.integers(2))
        hue = rng.uniform(-self.hue_delta, self.hue_delta) if do_hue else 0.0
        if do_sat or do_hue:
            # float32 HSV: H in [0, 360), S in [0, 1], V in [0, 1] for RGB in [0, 1]
            hsv = cv2.cvtColor(np.ascontiguousarray(img / 255.0, np.float32), cv2.COLOR_RGB2HSV)
            if do_sat:
                hsv[..., 1] = np.clip(hsv[..., 1] * sat, 0.0, 1.0)
            if do_hue:
                hsv[..., 0] = np.mod(hsv[..., 0] + 2.0 * hue, 360.0)
            img = np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0, 0.0, 255.0)
        if not contrast_first:
            img = self._contrast(img, rng)
        out = dict(sample)
        out["image"] = img.astype(np.float32, copy=False)
        return out


class Normalize(Transform):
    """``image = (image / 255 − mean) / std`` per RGB channel (ImageNet statistics)."""

    def __init__(
        self,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        mean = np.asarray(self.mean, np.float32)
        std = np.asarray(self.std, np.float32)
        out = dict(sample)
        out["image"] = ((sample["image"].astype(np.float32) / 255.0 - mean) / std).astype(
            np.float32
        )
        return out


class PadTo(Transform):
    """Pad bottom/right to exactly ``h×w`` (kind pad values) and record the pre-pad size.

    Sets ``sample["meta"]["orig_size"] = (H, W)`` (the size before padding) so predictions can
    be cropped back with ``pred[..., :H, :W]``. A sample larger than ``h×w`` raises
    ``ValueError`` (padding never crops).
    """

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = _as_hw(size)

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        ph, pw = self.size
        h, w = _hw(sample)
        if h > ph or w > pw:
            raise ValueError(f"PadTo({ph}, {pw}): sample is {h}x{w}, larger than the pad size")
        out = _pad_sample(sample, ph, pw)
        meta = dict(sample.get("meta") or {})
        meta["orig_size"] = (h, w)
        out["meta"] = meta
        return out


class ToTensor(Transform):
    """numpy → torch, channels first.

    image ``3×H×W`` float32; task keys as their kind's ``gt_to_tensor``: semseg / human_parts
    ``H×W`` int64; depth ``1×H×W``; normals ``3×H×W``; boundary / saliency ``1×H×W`` float32.
    ``meta`` is passed through.
    """

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        out = dict(sample)
        for k in _spatial_keys(sample):
            a = np.asarray(sample[k])
            kind = _kind(k)
            if kind is None:  # the image
                out[k] = torch.from_numpy(
                    np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32)
                )
            else:
                out[k] = gt_to_tensor(kind, a)
        return out


def train_transforms(
    size: int | Sequence[int], scale: tuple[float, float] = (0.5, 2.0)
) -> Compose:
    """ATRC/mmseg training pipeline producing ``size`` (``h×w``) tensors."""
    return Compose(
        [
            RandomScale(scale),
            RandomCrop(size, cat_max_ratio=0.75),
            RandomHorizontalFlip(0.5),
            PhotometricDistortion(),
            Normalize(),
            ToTensor(),
        ]
    )


def val_transforms(size: int | Sequence[int]) -> Compose:
    """Validation pipeline: normalise, pad bottom/right to ``size`` (meta.orig_size), tensor."""
    return Compose([Normalize(), PadTo(size), ToTensor()])
