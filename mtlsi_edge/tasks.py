"""Task registry: every dense task the model can predict, and the task sets of each dataset.

Tasks are data. A task's ``kind`` names its :class:`~mtlsi_edge.kinds.TaskKind` (``task.spec``:
deployment, display, gate and augmentation behaviour) and its build-side
:class:`~mtlsi_edge.objectives.Objective` (loss, metric, activation); adding a task to a set
touches only this file, adding a kind :mod:`mtlsi_edge.kinds` and :mod:`mtlsi_edge.objectives`.
Nothing else in the package branches on task kinds; task names appear only where dataset files
on disk are named (``data/datasets.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from mtlsi_edge.inputs import IGNORE_INDEX
from mtlsi_edge.kinds import TaskKind, get_kind

__all__ = ["IGNORE_INDEX", "TASK_SETS", "Task", "TaskSet", "get_task_set", "kind_of",
           "palette_array", "voc_palette"]


def voc_palette(n: int) -> list[tuple[int, int, int]]:
    """The PASCAL-VOC bit-interleaved colormap, entries 0..n-1 (RGB)."""
    out = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append((r, g, b))
    return out


@dataclass(frozen=True)
class Task:
    """One dense prediction task.

    kind: ``segmentation`` | ``depth`` | ``normals`` | ``boundary`` | ``saliency``.
    out_channels: channels the network's head emits (logits for segmentation/boundary/saliency).
    loss_weight: weight of this task in the total loss (InvPT-line recipe).
    class_names / palette: for segmentation kinds; palette is RGB per class.
    max_dist: boundary kinds only — matching tolerance of the SEISM evaluation as a fraction of
    the image diagonal (0.011 NYUD, 0.0075 PASCAL-Context, as in the published tables).
    """

    name: str
    kind: str
    out_channels: int
    loss_weight: float
    class_names: tuple[str, ...] = ()
    palette: tuple[tuple[int, int, int], ...] = ()
    metric_name: str = ""
    higher_is_better: bool = True
    max_dist: float = 0.0

    @property
    def spec(self) -> TaskKind:
        """The record of this task's kind (:data:`mtlsi_edge.kinds.KINDS`)."""
        return get_kind(self.kind)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "out_channels": self.out_channels,
            "loss_weight": self.loss_weight,
            "class_names": list(self.class_names),
            "palette": [list(c) for c in self.palette],
            "metric_name": self.metric_name,
            "higher_is_better": self.higher_is_better,
            "max_dist": self.max_dist,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Task:
        return cls(
            name=d["name"],
            kind=d["kind"],
            out_channels=int(d["out_channels"]),
            loss_weight=float(d["loss_weight"]),
            class_names=tuple(d.get("class_names", ())),
            palette=tuple(tuple(c) for c in d.get("palette", ())),
            metric_name=d.get("metric_name", ""),
            higher_is_better=bool(d.get("higher_is_better", True)),
            max_dist=float(d.get("max_dist", 0.0)),
        )


@dataclass(frozen=True)
class TaskSet:
    """The tasks of one dataset, in output order."""

    name: str
    tasks: tuple[Task, ...]

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def __getitem__(self, name: str) -> Task:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(f"task {name!r} is not in task set {self.name!r} ({', '.join(self.names)})")

    def __iter__(self):
        return iter(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    def to_dict(self) -> dict:
        return {"name": self.name, "tasks": [t.to_dict() for t in self.tasks]}

    @classmethod
    def from_dict(cls, d: dict) -> TaskSet:
        tasks = tuple(Task.from_dict(t) for t in d["tasks"])
        # Files written before tasks carried max_dist: take the tolerance of the registered
        # task set of the same name, so a PASCAL checkpoint is never scored at NYUD's.
        known = TASK_SETS.get(d["name"])
        fixed = []
        for t in tasks:
            if t.spec.needs_max_dist and not t.max_dist > 0:
                if known is None or t.name not in known.names:
                    raise ValueError(f"{t.kind} task {t.name!r} of task set {d['name']!r} has "
                                     "no max_dist (evaluation tolerance)")
                t = replace(t, max_dist=known[t.name].max_dist)
            fixed.append(t)
        return cls(name=d["name"], tasks=tuple(fixed))


NYUD_CLASSES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
    "floor mat", "clothes", "ceiling", "books", "refrigerator", "television", "paper", "towel",
    "shower curtain", "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp",
    "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)  # fmt: skip

PASCAL_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip

PASCAL_PARTS = (
    "background", "head", "torso", "upper arms", "lower arms", "upper legs", "lower legs",
)  # fmt: skip

_NYUD_PALETTE = tuple(voc_palette(len(NYUD_CLASSES) + 1)[1:])  # indexed with class + 1
_PASCAL_PALETTE = tuple(voc_palette(len(PASCAL_CLASSES)))  # background = black
_PARTS_PALETTE = tuple(voc_palette(len(PASCAL_PARTS)))


def _seg(name: str, classes: tuple[str, ...], palette, weight: float = 1.0) -> Task:
    return Task(name, "segmentation", len(classes), weight, classes, palette, "miou", True)


def _depth() -> Task:
    return Task("depth", "depth", 1, 1.0, metric_name="rmse", higher_is_better=False)


def _normals() -> Task:
    return Task("normals", "normals", 3, 10.0, metric_name="mean", higher_is_better=False)


def _boundary(max_dist: float) -> Task:
    return Task("boundary", "boundary", 1, 50.0, metric_name="odsF", higher_is_better=True,
                max_dist=max_dist)


TASK_SETS: dict[str, TaskSet] = {
    "nyud": TaskSet(
        "nyud",
        (_seg("semseg", NYUD_CLASSES, _NYUD_PALETTE), _depth(), _normals(), _boundary(0.011)),
    ),
    "pascal": TaskSet(
        "pascal",
        (
            _seg("semseg", PASCAL_CLASSES, _PASCAL_PALETTE),
            _seg("human_parts", PASCAL_PARTS, _PARTS_PALETTE, weight=2.0),
            Task("saliency", "saliency", 1, 5.0, metric_name="maxF", higher_is_better=True),
            _normals(),
            _boundary(0.0075),
        ),
    ),
}


def get_task_set(name: str) -> TaskSet:
    """Look up a task set by name, with a one-line error listing the known ones."""
    try:
        return TASK_SETS[name]
    except KeyError:
        raise KeyError(f"unknown task set {name!r}; known: {', '.join(TASK_SETS)}") from None


def kind_of(name: str) -> TaskKind:
    """The kind of the registered task called ``name`` (sample keys of the data pipeline are
    task names; every registered task of that name has the same kind)."""
    for ts in TASK_SETS.values():
        if name in ts.names:
            return ts[name].spec
    raise KeyError(f"no registered task is called {name!r}")


def palette_array(task: Task) -> np.ndarray:
    """Palette as a ``256×3`` uint8 BGR lookup table (ignore/unknown indices are black)."""
    lut = np.zeros((256, 3), np.uint8)
    for i, (r, g, b) in enumerate(task.palette):
        lut[i] = (b, g, r)
    return lut
