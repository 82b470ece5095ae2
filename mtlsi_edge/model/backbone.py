"""timm backbone adapter: any timm model → three maps of width C at strides 4, 8 and 16."""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from torch import nn

from mtlsi_edge.model.blocks import ConvBNAct


class Backbone(nn.Module):
    """Wraps ``timm.create_model(name, features_only=True)`` and projects to the decoder width.

    Pyramid backbones (CNNs, Swin, EfficientViT) give native 1/4, 1/8, 1/16 (and 1/32, which is
    upsampled and added into 1/16).  Plain ViTs give four 1/16 taps: as in InvPT, the first is
    upsampled ×4 to 1/4 and the second ×2 to 1/8 with transposed convolutions, the last two are
    summed at 1/16.

    ``B×3×H×W → (X4 B×C×H/4×W/4, X8 B×C×H/8×W/8, X16 B×C×H/16×W/16)``.
    """

    def __init__(
        self,
        name: str,
        dim: int,
        pretrained: bool = False,
        img_size: tuple[int, int] | None = None,
        out_indices: tuple[int, ...] | None = None,
    ):
        super().__init__()
        kwargs: dict = {"features_only": True, "pretrained": pretrained}
        if out_indices is not None:
            kwargs["out_indices"] = out_indices
        # Transformers with absolute positions / fixed windows are built for the input size.
        if img_size is not None and name.startswith(("vit_", "swin", "deit", "beit", "eva")):
            kwargs["img_size"] = img_size
        self.body = timm.create_model(name, **kwargs)
        info = self.body.feature_info
        self.nhwc = str(getattr(self.body, "output_fmt", "NCHW")).endswith("NHWC")
        red, ch = info.reduction(), info.channels()
        self.plain = len(set(red)) == 1  # ViT-style: every tap at the same stride
        if self.plain:
            assert len(ch) >= 4 and red[0] == 16, f"plain backbone needs 4 taps at 1/16, got {red}"
            self.idx = {"x4": 0, "x8": 1, "x16": [len(ch) - 2, len(ch) - 1]}
            self.p4 = nn.Sequential(
                nn.ConvTranspose2d(ch[0], dim, 2, 2), nn.BatchNorm2d(dim), nn.ReLU(inplace=True),
                nn.ConvTranspose2d(dim, dim, 2, 2), nn.BatchNorm2d(dim), nn.ReLU(inplace=True))
            self.p8 = nn.Sequential(
                nn.ConvTranspose2d(ch[1], dim, 2, 2), nn.BatchNorm2d(dim), nn.ReLU(inplace=True))
            self.p16 = nn.ModuleList([ConvBNAct(ch[i], dim, 1) for i in self.idx["x16"]])
        else:
            for r in (4, 8, 16):
                if r not in red:
                    raise ValueError(f"backbone {name!r} has reductions {red}; need 4, 8 and 16")
            self.idx = {"x4": red.index(4), "x8": red.index(8),
                        "x16": [red.index(16)] + ([red.index(32)] if 32 in red else [])}
            self.p4 = ConvBNAct(ch[self.idx["x4"]], dim, 1)
            self.p8 = ConvBNAct(ch[self.idx["x8"]], dim, 1)
            self.p16 = nn.ModuleList([ConvBNAct(ch[i], dim, 1) for i in self.idx["x16"]])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feats = self.body(x)
        if self.nhwc:
            feats = [f.permute(0, 3, 1, 2) for f in feats]
        x4 = self.p4(feats[self.idx["x4"]])
        x8 = self.p8(feats[self.idx["x8"]])
        x16 = self.p16[0](feats[self.idx["x16"][0]])
        for proj, i in zip(self.p16[1:], self.idx["x16"][1:]):
            # 1/32 (or a second ViT tap) resized onto the 1/16 grid, whatever the input size.
            x16 = x16 + F.interpolate(proj(feats[i]), size=x16.shape[-2:], mode="bilinear",
                                      align_corners=False)
        return x4, x8, x16
