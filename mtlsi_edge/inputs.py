"""What the network consumes, in one place: the input image convention and the label value
that marks invalid ground truth.

A leaf module (numpy only): training transforms, export, bundle manifests and the Predictor all
read the same :data:`IMAGENET` spec, so the normalisation of deployed models can never drift
from the one they were trained with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Ground-truth value of pixels without a label (segmentation / boundary / saliency / padding).
IGNORE_INDEX = 255


@dataclass(frozen=True)
class InputSpec:
    """The network's input: ``layout`` float32 RGB, ``(x / 255 − mean) / std`` per channel.

    ``size`` is ``(H, W)`` when the spec belongs to a model (``None`` for the convention alone).
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    layout: str = "NCHW"
    color: str = "RGB"
    size: tuple[int, int] | None = None

    def with_size(self, size: tuple[int, int]) -> InputSpec:
        """The same convention at ``(H, W)``."""
        return InputSpec(self.mean, self.std, self.layout, self.color,
                         (int(size[0]), int(size[1])))

    def mean_255(self) -> np.ndarray:
        """Per-channel mean on the 0..255 scale (float32), for uint8 frames."""
        return np.asarray(self.mean, np.float32) * 255.0

    def inv_std_255(self) -> np.ndarray:
        """``1 / (255·std)`` per channel (float32): multiply instead of divide per pixel."""
        return 1.0 / (np.asarray(self.std, np.float32) * 255.0)

    def manifest(self, name: str = "image", frame_io: bool = False) -> dict:
        """The bundle manifest's ``input`` object (``size`` must be set).  ``frame_io``: the
        model takes the uint8 BGR NHWC frame and this normalisation is folded into it."""
        if self.size is None:
            raise ValueError("InputSpec.manifest needs a size")
        layout, color, dtype = (("NHWC", "BGR", "uint8") if frame_io
                                else (self.layout, self.color, "float32"))
        return {"name": name, "size": list(self.size), "layout": layout, "color": color,
                "dtype": dtype, "mean": list(self.mean), "std": list(self.std),
                "scale": 1 / 255}

    @classmethod
    def from_manifest(cls, d: dict) -> InputSpec:
        """Inverse of :meth:`manifest` (a bundle's ``input`` object)."""
        size = d.get("size")
        return cls(tuple(float(m) for m in d["mean"]), tuple(float(s) for s in d["std"]),
                   d.get("layout", "NCHW"), d.get("color", "RGB"),
                   None if size is None else (int(size[0]), int(size[1])))


#: ImageNet statistics, the convention of every pretrained backbone we use.
IMAGENET = InputSpec(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
IMAGENET_MEAN = IMAGENET.mean
IMAGENET_STD = IMAGENET.std
