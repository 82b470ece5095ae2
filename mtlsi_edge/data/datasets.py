"""NYUD-v2 and PASCAL-MT readers following the community's on-disk layouts.

See docs/design.md, 'Multi-task conventions'. Samples (before the transform) are dicts of
numpy arrays, keys = ``"image"`` plus the task names of the task set:

- ``image``: ``H×W×3`` float32 RGB 0..255 (read with cv2, BGR→RGB).
- ``semseg`` / ``human_parts``: ``H×W`` uint8 class index, 255 = ignore.
- ``depth``: ``H×W`` float32 metres, 0 = invalid (non-finite or negative values become 0).
- ``normals``: ``H×W×3`` float32 xyz; invalid pixels are the zero vector (losses/metrics mask
  pixels of zero norm). PNG normals decode as ``n = 2·v/255 − 1``; since a PNG cannot hold an
  exact zero vector, any decoded vector of norm < 0.5 (e.g. mid-grey 127/128) counts as invalid.
- ``boundary`` / ``saliency``: ``H×W`` float32 0/1.
- ``meta``: ``{"id": str, "orig_size": (H, W)}`` (size as read from disk; ``PadTo`` later
  overwrites ``orig_size`` with the pre-pad size, which is the same thing in validation).

NYUD (``root/``)::

    images/{id}.png|.jpg        segmentation/{id}.png   depth/{id}.npy
    normals/{id}.png|.npy       edge/{id}.png|.npy      gt_sets/{split}.txt

Layout "NYUDv2" (ATRC release: png images, png normals, png edges 0/255) and layout "NYUD_MT"
(MTL: jpg images, npy normals/edges) are detected per folder from which file extension exists
for the first id of the split; every id must then use that extension. Segmentation PNG: 0 =
unlabeled → 255, 1..40 → 0..39 (values above 40 → 255).

PASCAL-MT (``root/``)::

    JPEGImages/{id}.jpg                 ImageSets/Context/{split}.txt
    semseg/pascal-context/{id}.png      (or semseg/{id}.png)   uint8 0..20, 255 ignore
    human_parts/{id}.png                uint8 0..6, 255 ignore
    sal_distill/{id}.png                saliency, binarised v/255 > 0.5
    normals_distill/{id}.png            n = 2·v/255 − 1
    edges/{id}.png                      optional; else computed from the semseg label map

PASCAL-MT ships human parts as ``.mat`` files (``human_parts/{id}.mat``, key ``"anno"``). scipy is
not a dependency, so convert them once to single-channel PNGs of part indices (0 = background,
1..6 = head, torso, upper arms, lower arms, upper legs, lower legs; 255 = ignore), e.g. with
``scipy.io.loadmat`` in a separate script. A ``.mat`` found where a ``.png`` is expected raises
``DatasetError`` saying so.

Every problem with a folder raises ``DatasetError`` (a ``ValueError``) with one line naming the
file: the split file and the existence of every file of the split are checked in ``__init__``;
readability and sizes (each label must match its image) when a sample is read.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
from torch.utils.data import Dataset

from mtlsi_edge.errors import MtlsiError
from mtlsi_edge.tasks import IGNORE_INDEX, TaskSet, get_task_set

__all__ = [
    "DatasetError",
    "MultiTaskDataset",
    "NYUDDataset",
    "PascalMTDataset",
    "build_dataset",
    "label_boundaries",
]

Sample = dict[str, Any]
TransformFn = Callable[[Sample, np.random.Generator], Sample]

_NORMAL_MIN_NORM = 0.5


class DatasetError(MtlsiError, ValueError):
    """A malformed dataset folder; the message is one line naming the offending file."""


# --------------------------------------------------------------------------------------------
# Decoders (each raises DatasetError naming the file)
# --------------------------------------------------------------------------------------------


def _read_image(path: str) -> np.ndarray:
    """RGB image as ``H×W×3`` float32 0..255."""
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise DatasetError(f"{path}: unreadable image (cv2.imread failed)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32)


def _read_index_png(path: str) -> np.ndarray:
    """Single-channel index/label PNG as ``H×W`` uint8 (palette PNGs give their indices)."""
    a = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if a is None:
        raise DatasetError(f"{path}: unreadable label image (cv2.imread failed)")
    if a.ndim == 3:
        if (
            a.shape[2] >= 3
            and np.array_equal(a[..., 0], a[..., 1])
            and np.array_equal(a[..., 0], a[..., 2])
        ):
            a = a[..., 0]
        else:
            a = _palette_indices(path)
    if a.dtype != np.uint8:
        if a.size and (a.min() < 0 or a.max() > 255):
            raise DatasetError(f"{path}: label values outside 0..255 ({a.dtype})")
        a = a.astype(np.uint8)
    return a


def _palette_indices(path: str) -> np.ndarray:
    """Indices of a palette PNG (cv2 expands palettes to colours); needs Pillow."""
    msg = f"{path}: expected a single-channel label PNG, got a colour image"
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow ships with torchvision/matplotlib
        raise DatasetError(msg) from None
    with Image.open(path) as im:
        if im.mode in ("P", "L"):
            return np.array(im, dtype=np.uint8)
    raise DatasetError(msg)


def _read_gray_png(path: str) -> np.ndarray:
    """Grayscale PNG as ``H×W`` float32 in 0..1 (8-bit: v/255; 16-bit: v/65535)."""
    a = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if a is None:
        raise DatasetError(f"{path}: unreadable image (cv2.imread failed)")
    if a.ndim == 3:
        a = a[..., 0] if a.shape[2] in (1, 2) else a[..., :3].mean(axis=2)
    scale = 65535.0 if a.dtype == np.uint16 else 255.0
    return (a.astype(np.float32) / scale).astype(np.float32)


def _decode_normals(n: np.ndarray) -> np.ndarray:
    """Zero every vector of norm < 0.5 (invalid) and return ``H×W×3`` float32."""
    n = np.nan_to_num(n.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    invalid = np.linalg.norm(n, axis=2) < _NORMAL_MIN_NORM
    n[invalid] = 0.0
    return n


def _read_normals_png(path: str) -> np.ndarray:
    """``n = 2·v/255 − 1`` of an RGB PNG, ``H×W×3`` float32 (invalid → 0 vector)."""
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise DatasetError(f"{path}: unreadable normals image (cv2.imread failed)")
    v = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32)
    return _decode_normals(2.0 * v / 255.0 - 1.0)


def _load_npy(path: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DatasetError(f"{path}: unreadable .npy file ({msg})") from None


def _npy_map(path: str) -> np.ndarray:
    """An ``H×W`` (or ``H×W×1`` / ``1×H×W``) .npy map as ``H×W`` float32."""
    a = _load_npy(path)
    if a.ndim == 3 and 1 in (a.shape[0], a.shape[2]):
        a = a.reshape(a.shape[1:] if a.shape[0] == 1 else a.shape[:2])
    if a.ndim != 2:
        raise DatasetError(f"{path}: expected an HxW array, got shape {a.shape}")
    return a.astype(np.float32)


def _read_depth_npy(path: str) -> np.ndarray:
    d = _npy_map(path)
    d[~np.isfinite(d) | (d < 0)] = 0.0
    return d


def _read_normals_npy(path: str) -> np.ndarray:
    a = _load_npy(path)
    if a.ndim != 3 or a.shape[2] != 3:
        raise DatasetError(f"{path}: expected HxWx3 normals, got shape {a.shape}")
    return _decode_normals(a)


def _read_nyud_semseg(path: str) -> np.ndarray:
    """NYUD PNG 0 = unlabeled, 1..40 → 0..39; unlabeled (and > 40) → 255."""
    raw = _read_index_png(path)
    out = raw.astype(np.int16) - 1
    out[(raw == 0) | (raw > 40)] = IGNORE_INDEX
    return out.astype(np.uint8)


def _read_edge(path: str) -> np.ndarray:
    return _read_gray_png(path) if path.endswith(".png") else _npy_map(path)


def _read_saliency(path: str) -> np.ndarray:
    return (_read_gray_png(path) > 0.5).astype(np.float32)


def label_boundaries(label: np.ndarray) -> np.ndarray:
    """Boundary map of an ``H×W`` label map: 1 where a 4-neighbour has a different label.

    Both pixels of every differing pair are marked; transitions into/out of 255 count too.
    Returns ``H×W`` float32 0/1.
    """
    e = np.zeros(label.shape[:2], dtype=bool)
    dv = label[1:, :] != label[:-1, :]
    e[1:, :] |= dv
    e[:-1, :] |= dv
    dh = label[:, 1:] != label[:, :-1]
    e[:, 1:] |= dh
    e[:, :-1] |= dh
    return e.astype(np.float32)


# --------------------------------------------------------------------------------------------
# Base dataset
# --------------------------------------------------------------------------------------------


class MultiTaskDataset(Dataset):
    """Shared machinery: split file, eager file checks, lazy size checks, transform + rng.

    ``transform(sample, rng)`` receives a ``np.random.Generator``: seeded from
    ``(seed, epoch, index)`` when ``seed`` is given (reproducible whatever the DataLoader worker
    layout; call ``set_epoch`` each epoch), else freshly from OS entropy.
    """

    #: task names the subclass can read; set by subclasses
    supported_tasks: tuple[str, ...] = ()

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        task_set: TaskSet | str,
        transform: TransformFn | None = None,
        *,
        seed: int | None = None,
    ) -> None:
        self.root = os.fspath(root)
        self.split = split
        self.task_set = get_task_set(task_set) if isinstance(task_set, str) else task_set
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        unsupported = [t for t in self.task_set.names if t not in self.supported_tasks]
        if unsupported:
            raise DatasetError(
                f"{self.root}: {type(self).__name__} cannot provide task(s) "
                f"{', '.join(unsupported)} (supported: {', '.join(self.supported_tasks)})"
            )
        if not os.path.isdir(self.root):
            raise DatasetError(f"{self.root}: dataset folder not found")
        self.ids = self._read_split(self._split_path())
        # per id: modality → (path, reader)
        self._files: list[dict[str, tuple[str, Callable[[str], np.ndarray]]]] = self._resolve()

    # -- subclass hooks ------------------------------------------------------------------
    def _split_path(self) -> str:
        raise NotImplementedError

    def _resolve(self) -> list[dict[str, tuple[str, Callable[[str], np.ndarray]]]]:
        raise NotImplementedError

    def _derive(self, sample: Sample, files: dict[str, Any]) -> None:
        """Compute tasks not read from a file (e.g. PASCAL boundaries); default none."""

    # -- common ----------------------------------------------------------------------------
    @staticmethod
    def _read_split(path: str) -> list[str]:
        if not os.path.isfile(path):
            raise DatasetError(f"{path}: split file not found")
        with open(path, encoding="utf-8") as f:
            ids = [line.strip() for line in f if line.strip()]
        if not ids:
            raise DatasetError(f"{path}: split file lists no ids")
        return ids

    @staticmethod
    def _require(path: str) -> str:
        if not os.path.isfile(path):
            raise DatasetError(f"{path}: file not found")
        return path

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation stream of a seeded dataset (call once per epoch)."""
        self.epoch = int(epoch)

    def rng_for(self, index: int) -> np.random.Generator:
        """The generator handed to ``transform`` for ``index``."""
        if self.seed is None:
            return np.random.default_rng()
        return np.random.default_rng([int(self.seed), self.epoch, int(index)])

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, index: int) -> Sample:
        """The decoded, untransformed sample of ``index`` (with ``meta``)."""
        files = self._files[index]
        img_path = files["image"][0]
        image = _read_image(img_path)
        h, w = image.shape[:2]
        sample: Sample = {"image": image}
        for task in self.task_set.names:
            if task not in files:
                continue
            path, reader = files[task]
            a = reader(path)
            if a.shape[:2] != (h, w):
                raise DatasetError(
                    f"{path}: size {a.shape[0]}x{a.shape[1]} does not match image "
                    f"{os.path.basename(img_path)} ({h}x{w})"
                )
            sample[task] = a
        self._derive(sample, files)
        sample["meta"] = {"id": self.ids[index], "orig_size": (h, w)}
        return sample

    def __getitem__(self, index: int) -> Sample:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        sample = self.load(index)
        if self.transform is not None:
            sample = self.transform(sample, self.rng_for(index))
        return sample

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={self.root!r}, split={self.split!r}, "
            f"tasks={self.task_set.names}, n={len(self)})"
        )


# --------------------------------------------------------------------------------------------
# NYUD
# --------------------------------------------------------------------------------------------

# modality → (folder, {extension: reader})
_NYUD_READERS: dict[str, tuple[str, dict[str, Callable[[str], np.ndarray]]]] = {
    "semseg": ("segmentation", {".png": _read_nyud_semseg}),
    "depth": ("depth", {".npy": _read_depth_npy}),
    "normals": ("normals", {".png": _read_normals_png, ".npy": _read_normals_npy}),
    "boundary": ("edge", {".png": _read_edge, ".npy": _read_edge}),
}


class NYUDDataset(MultiTaskDataset):
    """NYUD-v2 multi-task (semseg 40 classes, depth, normals, boundary); both layouts.

    ``layout`` is ``"NYUDv2"`` (png images) or ``"NYUD_MT"`` (jpg images); label folders are
    detected independently (see module docstring). ``dataset[i]`` → transformed sample dict.
    """

    supported_tasks = ("semseg", "depth", "normals", "boundary")

    def _split_path(self) -> str:
        return os.path.join(self.root, "gt_sets", f"{self.split}.txt")

    def _folder_ext(self, folder: str, exts: list[str]) -> str:
        """The extension used in ``folder``, from the first id of the split."""
        d = os.path.join(self.root, folder)
        if not os.path.isdir(d):
            raise DatasetError(f"{d}: folder not found")
        first = self.ids[0]
        for ext in exts:
            if os.path.isfile(os.path.join(d, first + ext)):
                return ext
        alts = "|".join(e.lstrip(".") for e in exts)
        raise DatasetError(f"{os.path.join(d, first)}.{{{alts}}}: file not found")

    def _resolve(self) -> list[dict[str, tuple[str, Callable[[str], np.ndarray]]]]:
        img_ext = self._folder_ext("images", [".png", ".jpg", ".jpeg"])
        self.layout = "NYUDv2" if img_ext == ".png" else "NYUD_MT"
        native = ".png" if self.layout == "NYUDv2" else ".npy"
        plan: dict[str, tuple[str, str, Callable[[str], np.ndarray]]] = {
            "image": ("images", img_ext, _read_image)
        }
        for task in self.task_set.names:
            folder, readers = _NYUD_READERS[task]
            exts = sorted(readers, key=lambda e: e != native)  # layout's native format first
            ext = self._folder_ext(folder, exts)
            plan[task] = (folder, ext, readers[ext])
        self.extensions = {k: v[1] for k, v in plan.items()}
        files = []
        for i in self.ids:
            entry = {}
            for key, (folder, ext, reader) in plan.items():
                path = self._require(os.path.join(self.root, folder, i + ext))
                entry[key] = (path, reader)
            files.append(entry)
        return files


# --------------------------------------------------------------------------------------------
# PASCAL-MT
# --------------------------------------------------------------------------------------------


class PascalMTDataset(MultiTaskDataset):
    """PASCAL-Context multi-task (semseg 21, human parts 7, saliency, normals, boundary).

    Boundary ground truth is ``edges/{id}.png`` (v/255) when present, else computed from the
    semseg label map with ``label_boundaries``. ``dataset[i]`` → transformed sample dict.
    """

    supported_tasks = ("semseg", "human_parts", "saliency", "normals", "boundary")

    def _split_path(self) -> str:
        return os.path.join(self.root, "ImageSets", "Context", f"{self.split}.txt")

    def _semseg_path(self, i: str) -> str:
        candidates = [
            os.path.join(self.root, "semseg", "pascal-context", i + ".png"),
            os.path.join(self.root, "semseg", i + ".png"),
        ]
        for p in candidates:
            if os.path.isfile(p):
                return p
        raise DatasetError(f"{candidates[0]}: file not found (nor {candidates[1]})")

    def _human_parts_path(self, i: str) -> str:
        png = os.path.join(self.root, "human_parts", i + ".png")
        if os.path.isfile(png):
            return png
        mat = os.path.join(self.root, "human_parts", i + ".mat")
        if os.path.isfile(mat):
            raise DatasetError(
                f"{mat}: human parts as .mat are not read (scipy is not a dependency); convert "
                f"them to single-channel PNGs of part indices (0..6, 255 ignore) named {i}.png"
            )
        raise DatasetError(f"{png}: file not found")

    def _resolve(self) -> list[dict[str, tuple[str, Callable[[str], np.ndarray]]]]:
        names = self.task_set.names
        files = []
        for i in self.ids:
            entry: dict[str, tuple[str, Callable[[str], np.ndarray]]] = {
                "image": (
                    self._require(os.path.join(self.root, "JPEGImages", i + ".jpg")),
                    _read_image,
                )
            }
            if "semseg" in names:
                entry["semseg"] = (self._semseg_path(i), _read_index_png)
            if "human_parts" in names:
                entry["human_parts"] = (self._human_parts_path(i), _read_index_png)
            if "saliency" in names:
                p = os.path.join(self.root, "sal_distill", i + ".png")
                entry["saliency"] = (self._require(p), _read_saliency)
            if "normals" in names:
                p = os.path.join(self.root, "normals_distill", i + ".png")
                entry["normals"] = (self._require(p), _read_normals_png)
            if "boundary" in names:
                p = os.path.join(self.root, "edges", i + ".png")
                if os.path.isfile(p):
                    entry["boundary"] = (p, _read_edge)
                else:  # derived from the label map in _derive
                    entry["_boundary_from"] = (self._semseg_path(i), _read_index_png)
            files.append(entry)
        return files

    def _derive(self, sample: Sample, files: dict[str, Any]) -> None:
        if "boundary" not in self.task_set.names or "boundary" in sample:
            return
        if "semseg" in sample:
            label = sample["semseg"]
        else:
            path, reader = files["_boundary_from"]
            label = reader(path)
            h, w = sample["image"].shape[:2]
            if label.shape[:2] != (h, w):
                raise DatasetError(
                    f"{path}: size {label.shape[0]}x{label.shape[1]} does not match image ({h}x{w})"
                )
        sample["boundary"] = label_boundaries(label)


# --------------------------------------------------------------------------------------------


def build_dataset(
    root: str | os.PathLike,
    split: str,
    task_set_name: str | TaskSet,
    transform: TransformFn | None = None,
    *,
    seed: int | None = None,
) -> MultiTaskDataset:
    """``PascalMTDataset`` if ``root/JPEGImages`` exists, else ``NYUDDataset``."""
    r = os.fspath(root)
    if not os.path.isdir(r):
        raise DatasetError(f"{r}: dataset folder not found")
    cls = PascalMTDataset if os.path.isdir(os.path.join(r, "JPEGImages")) else NYUDDataset
    return cls(r, split, task_set_name, transform, seed=seed)
