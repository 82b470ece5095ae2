"""MTLSI-Net: backbone → preliminary decoders → MT-MQLFB → Semantic Token Distiller →
task decoders with CWIB → heads.  One file, one architecture, in the manner of timm.

Variants are registered by name in :data:`VARIANTS`; build one with :func:`create_model`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass

import timm
import torch
import torch.nn.functional as F
from torch import nn

from mtlsi_edge.bundle import check_graph
from mtlsi_edge.errors import ConfigError
from mtlsi_edge.model.backbone import Backbone
from mtlsi_edge.model.blocks import (
    CWIB,
    MTMQLFB,
    ConvBNAct,
    SemanticTokenDistiller,
    WindowAttention,
    conv_bn_act_tasks,
    cwib_tasks,
    same_shapes,
)
from mtlsi_edge.tasks import TaskSet, get_task_set

#: Parts of the network, in data-flow order; module prefixes used for per-part accounting.
PARTS = {
    "backbone": "backbone",
    "preliminary decoders": "prelim",
    "MT-MQLFB": "fusion",
    "distiller": "distiller",
    "CWIB decoders": "decoders",
    "heads": "heads",
}


@dataclass
class MTLSIConfig:
    """Everything needed to rebuild a model; saved next to every checkpoint.

    The defaults are the reconstruction's (see docs/design.md, 'Open choices').
    """

    backbone: str = "vit_large_patch16_384"
    backbone_out_indices: tuple[int, ...] | None = None
    pretrained: bool = False
    task_set: str = "nyud"
    input_size: tuple[int, int] = (448, 576)
    dim: int = 256
    heads: int = 8
    query_scales: tuple[int, ...] = (1, 3, 5)
    kernel: str = "relu"
    fusion_blocks: int = 1
    num_tokens: int = 512
    window: int = 8
    cwib_depths: tuple[int, int] = (1, 1)
    # CWIBs on the 1/16 task features, before the 1/8 merge (0 in the paper's layout).  Window
    # attention there costs a quarter of the 1/8 one for the same receptive field when the
    # window halves (edge-effvit-c16: window 5 at 1/16 sees what 10 at 1/8 does).
    cwib_depth16: int = 0
    # Pointwise 1×1s after the finest skip merges' depthwise 3×3 (0: none, 1: at 1/8, 2: at
    # 1/8 and 1/4): channel mixing at the fine scales when no CWIB runs there (cwib_depth16).
    pointwise_merges: int = 0
    ffn_ratio: float = 4.0
    # Swin's shifted windows on every second stacked CWIB (see TaskDecoder).
    shifted_windows: bool = False
    # Where the heads' outputs are emitted: 1 = input resolution (bilinear ×4 in the graph),
    # 4 = the heads' native 1/4 resolution (upsampling left to postprocessing).
    output_stride: int = 1
    # Inference runs the T task branches as one op each (grouped convs, one attention over
    # T·h heads) instead of T ops; same weights and outputs, see MTLSINet.  Training always
    # runs the per-task reference.
    task_batched: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MTLSIConfig:
        """A config from a (checkpoint's or user's) dict; every key and value is checked."""
        if not isinstance(d, dict):
            raise ConfigError(f"model config must be an object, got {type(d).__name__}")
        cfg = cls(**check_config_values(d))
        check_consistency(cfg)
        return cfg


#: Allowed values of the config fields that take a choice.
CHOICES = {"kernel": ("relu", "elu"), "output_stride": (1, 4), "pointwise_merges": (0, 1, 2)}
#: Lower bounds of the integer fields.
MINIMUM = {"dim": 8, "heads": 1, "fusion_blocks": 0, "num_tokens": 1, "window": 1,
           "cwib_depth16": 0, "pointwise_merges": 0}


def check_config_values(d: dict) -> dict:
    """Check model config overrides against :class:`MTLSIConfig`'s fields (name, type,
    range); returns them with lists turned into tuples.  Raises :class:`ConfigError` naming
    the field and what it accepts."""
    fields = {f.name: f for f in dataclasses.fields(MTLSIConfig)}
    out = {}
    for key, v in d.items():
        if key not in fields:
            raise ConfigError(f"unknown model config key {key!r}; known: {', '.join(fields)}")
        default = fields[key].default

        def bad(what: str, key=key, v=v) -> ConfigError:
            return ConfigError(f"model config {key!r} must be {what}, got {v!r}")

        def is_int(x) -> bool:
            return isinstance(x, int) and not isinstance(x, bool)

        if isinstance(default, bool):
            if not isinstance(v, bool):
                raise bad("true or false")
        elif isinstance(default, int):
            if not is_int(v):
                raise bad("an integer")
            if v < MINIMUM.get(key, 1):
                raise bad(f"≥ {MINIMUM.get(key, 1)}")
        elif isinstance(default, float):
            if not (is_int(v) or isinstance(v, float)) or not 0 < v < 1e3:
                raise bad("a positive number")
            v = float(v)
        elif isinstance(default, str):
            if not isinstance(v, str) or not v:
                raise bad("a non-empty string")
        elif isinstance(default, tuple) or key == "backbone_out_indices":
            if v is None and key == "backbone_out_indices":
                out[key] = None
                continue
            if not isinstance(v, (list, tuple)) or not v or not all(is_int(x) for x in v):
                raise bad("a list of integers")
            if isinstance(default, tuple) and key in ("input_size", "cwib_depths") \
                    and len(v) != len(default):
                raise bad(f"a list of {len(default)} integers")
            v = tuple(v)
        if key in CHOICES and v not in CHOICES[key]:
            raise bad("one of " + ", ".join(map(str, CHOICES[key])))
        out[key] = v
    if "input_size" in out and not all(32 <= x <= 4096 for x in out["input_size"]):
        raise ConfigError(f"model config 'input_size' must be [H, W] with both in 32..4096, "
                          f"got {list(out['input_size'])}")
    if "query_scales" in out and not all(k >= 1 and k % 2 for k in out["query_scales"]):
        raise ConfigError(f"model config 'query_scales' must be odd kernel sizes ≥ 1, got "
                          f"{list(out['query_scales'])}")
    if "cwib_depths" in out and any(k < 0 for k in out["cwib_depths"]):
        raise ConfigError("model config 'cwib_depths' must be ≥ 0")
    if "task_set" in out:
        try:
            get_task_set(out["task_set"])
        except KeyError as e:
            raise ConfigError(str(e).strip("'\"")) from None
    if "backbone" in out:
        if not timm.is_model(out["backbone"]):
            raise ConfigError(f"model config 'backbone' {out['backbone']!r} is not a timm "
                              f"model name (timm.list_models() lists them)")
    return out


class PreliminaryDecoder(nn.Module):
    """Per-task Conv3×3-BN-ReLU ×2 at 1/16 plus a 1×1 auxiliary head (deep supervision).

    ``B×C×h×w → (B×C×h×w feature, B×K×h×w auxiliary prediction)``.
    """

    def __init__(self, dim: int, out_channels: int):
        super().__init__()
        self.body = nn.Sequential(ConvBNAct(dim, dim), ConvBNAct(dim, dim))
        self.aux = nn.Conv2d(dim, out_channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.body(x)
        return f, self.aux(f)


class PreliminaryDecoders(nn.ModuleDict):
    """The per-task :class:`PreliminaryDecoder` s; ``forward`` is their task-batched form."""

    def forward(self, x16: torch.Tensor) -> torch.Tensor:
        """``B×C×h×w`` → the tasks' features stacked ``B×T·C×h×w`` (eval; no auxiliary
        predictions: they only serve training)."""
        decs = list(self.values())
        y = conv_bn_act_tasks([d.body[0] for d in decs], x16, shared_input=True)
        return conv_bn_act_tasks([d.body[1] for d in decs], y)


class TaskDecoder(nn.Module):
    """Coarse-to-fine refinement of one task with CWIB at 1/16, 1/8 then 1/4 (each depth may
    be 0).

    ``F16 B×C×H/16×W/16, X8, X4 (shared skips), tokens B×M×C → B×C×H/4×W/4``.
    """

    def __init__(
        self, dim: int, heads: int, window: int, depths: tuple[int, int], ffn_ratio: float,
        shifted: bool = False, depth16: int = 0, pointwise: int = 0,
    ):
        super().__init__()
        # Swin's alternation over the stacked CWIBs (1/8 then 1/4): every second one shifts
        # its windows by w/2.  The 1/4 grid's borders contain the 1/8 grid's, so without the
        # shift the same borders repeat.
        def shift(i: int) -> int:
            return window // 2 if shifted and (i - depth16) % 2 else 0

        # Skip merge = add, then a depthwise 3×3: a dense 3×3 over 2C channels at 1/4 resolution
        # cost more than the whole edge backbone (measured).
        self.merge8 = ConvBNAct(dim, dim, 3, groups=dim)
        self.merge4 = ConvBNAct(dim, dim, 3, groups=dim)
        # Empty Sequentials (identity, no parameters) when off: old checkpoints keep loading.
        self.mix8 = nn.Sequential(*[ConvBNAct(dim, dim, 1)] * (pointwise >= 1))
        self.mix4 = nn.Sequential(*[ConvBNAct(dim, dim, 1)] * (pointwise >= 2))
        self.cwib16 = nn.ModuleList([CWIB(dim, heads, window, ffn_ratio, shift(i))
                                     for i in range(depth16)])
        self.cwib8 = nn.ModuleList([CWIB(dim, heads, window, ffn_ratio, shift(depth16 + i))
                                    for i in range(depths[0])])
        self.cwib4 = nn.ModuleList([CWIB(dim, heads, window, ffn_ratio,
                                         shift(depth16 + depths[0] + i))
                                    for i in range(depths[1])])

    def forward(self, f16, x8, x4, tokens):
        for blk in self.cwib16:
            f16 = blk(f16, tokens)
        y = F.interpolate(f16, size=x8.shape[-2:], mode="bilinear", align_corners=False)
        y = self.merge8(y + x8)
        y = self.mix8(y)
        for blk in self.cwib8:
            y = blk(y, tokens)
        y = F.interpolate(y, size=x4.shape[-2:], mode="bilinear", align_corners=False)
        y = self.merge4(y + x4)
        y = self.mix4(y)
        for blk in self.cwib4:
            y = blk(y, tokens)
        return y


class TaskDecoders(nn.ModuleDict):
    """The per-task :class:`TaskDecoder` s; ``forward`` is their task-batched form."""

    def forward(self, f16: torch.Tensor, x8: torch.Tensor, x4: torch.Tensor,
                tokens: torch.Tensor) -> list[torch.Tensor]:
        """``F16 B×T·C×H/16×W/16``, shared ``X8``, ``X4`` (``B×C×…``), tokens ``B×M×C`` →
        the T tasks' ``B×C×H/4×W/4``."""
        decs = list(self.values())
        t = len(decs)

        def merge(y, skip, convs):  # upsample, add the shared skip to every task, dw conv
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            b, _, h, w = y.shape
            # The skip is broadcast over the tasks channels last (B×H×W×T×C + B×H×W×1×C), the
            # layout OpenVINO keeps both maps in: no copy per task, no reorder (−0.4 ms at
            # 60×80 against adding T concatenated copies, measured).
            z = y.permute(0, 2, 3, 1).reshape(b, h, w, t, -1) + skip.permute(0, 2, 3, 1)[
                :, :, :, None]
            return conv_bn_act_tasks(convs, z.reshape(b, h, w, -1).permute(0, 3, 1, 2))

        for j in range(len(decs[0].cwib16)):
            f16 = cwib_tasks([d.cwib16[j] for d in decs], f16, tokens)
        y = merge(f16, x8, [d.merge8 for d in decs])
        if len(decs[0].mix8):
            y = conv_bn_act_tasks([d.mix8[0] for d in decs], y)
        for j in range(len(decs[0].cwib8)):
            y = cwib_tasks([d.cwib8[j] for d in decs], y, tokens)
        if not len(decs[0].cwib4):
            # Nothing batched follows the 1/4 merge: split the tasks at 1/8, where the split
            # moves a quarter of the data, and merge each at 1/4 (−0.17 ms, measured).
            return [d.mix4(d.merge4(F.interpolate(yt, size=x4.shape[-2:], mode="bilinear",
                                                  align_corners=False) + x4))
                    for d, yt in zip(decs, y.chunk(t, 1))]
        y = merge(y, x4, [d.merge4 for d in decs])
        if len(decs[0].mix4):
            y = conv_bn_act_tasks([d.mix4[0] for d in decs], y)
        for j in range(len(decs[0].cwib4)):
            y = cwib_tasks([d.cwib4[j] for d in decs], y, tokens)
        return list(y.chunk(t, 1))


class TaskHeads(nn.ModuleDict):
    """The per-task 1×1 heads; ``forward`` applies each to its task's map.

    The heads differ in output width (40, 1, 3, 1 for NYUD): one grouped conv would need
    zero padding to the widest (measured slower), so they stay T small convs.
    """

    def forward(self, ys: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: head(y) for (name, head), y in zip(self.items(), ys)}


class MTLSINet(nn.Module):
    """The multi-task network for one task set.

    ``forward(B×3×H×W)`` returns ``{task: B×K_t×H×W}`` (raw head outputs: logits for
    segmentation/boundary/saliency, metres for depth, unnormalised normals; or at H/4×W/4 when
    ``output_stride == 4``).  In training mode it also returns ``"aux"``: the preliminary
    predictions ``{task: B×K_t×H/16×W/16}`` for deep supervision.

    ``cfg.task_batched`` (eval mode): the tasks' branches run stacked along channels
    (``B×T·C×H×W``) as one op each, reading the same per-task weights; the per-task loop is
    the reference (and the training path).  Branches whose per-task shapes differ (a
    channel-pruned checkpoint) fall back to the loop, per FFN or, elsewhere, for the model.
    """

    def __init__(self, cfg: MTLSIConfig):
        super().__init__()
        self.cfg = cfg
        self.task_set: TaskSet = get_task_set(cfg.task_set)
        names = self.task_set.names
        c = cfg.dim
        self.backbone = Backbone(cfg.backbone, c, cfg.pretrained, cfg.input_size,
                                 cfg.backbone_out_indices)
        self.prelim = PreliminaryDecoders({t.name: PreliminaryDecoder(c, t.out_channels)
                                           for t in self.task_set})
        self.fusion = nn.ModuleList([
            MTMQLFB(c, names, cfg.heads, cfg.query_scales, cfg.kernel, ffn_ratio=cfg.ffn_ratio)
            for _ in range(cfg.fusion_blocks)])
        self.distiller = SemanticTokenDistiller(c, len(names), cfg.num_tokens, cfg.heads)
        self.decoders = TaskDecoders({
            t: TaskDecoder(c, cfg.heads, cfg.window, cfg.cwib_depths, cfg.ffn_ratio,
                           cfg.shifted_windows, cfg.cwib_depth16, cfg.pointwise_merges)
            for t in names})
        self.heads = TaskHeads({t.name: nn.Conv2d(c, t.out_channels, 1) for t in self.task_set})

    def batchable(self) -> bool:
        """True when the per-task branches have equal shapes (FFNs excepted: those fall back
        one by one), so the task-batched forward can run."""
        def strip(m):  # a branch's parameter shapes without its FFNs and auxiliary head
            return [p.shape for k, p in m.named_parameters()
                    if ".ffn." not in f".{k}" and not k.startswith("aux.")]
        groups = [list(self.prelim.values()), list(self.decoders.values())]
        if any(isinstance(m, WindowAttention) and m.shift for m in self.modules()):
            return False  # the batched window attention has no shifted form (per-task runs)
        return all(all(strip(m) == strip(g[0]) for m in g[1:]) for g in groups) and all(
            same_shapes([blk.q[t] for t in blk.tasks]) and same_shapes(
                [blk.proj[t] for t in blk.tasks]) for blk in self.fusion)

    @property
    def graph(self) -> str:
        """The deploy graph eval mode runs: ``"batched"`` or ``"per-task"``."""
        return "batched" if self.cfg.task_batched and self.batchable() else "per-task"

    def use_graph(self, graph: str) -> str:
        """Run (and export) the ``"batched"`` or ``"per-task"`` deploy graph; returns the graph
        that will run — ``"per-task"`` also when batched was asked for but the branches differ
        in shape (:meth:`batchable`).  The config records it (exports and bundles carry it)."""
        check_graph(graph)
        self.cfg.task_batched = graph == "batched" and self.batchable()
        return self.graph

    def forward(self, x: torch.Tensor, output_stride: int | None = None) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        stride = output_stride or self.cfg.output_stride
        x4, x8, x16 = self.backbone(x)
        if self.cfg.task_batched and not self.training and self.batchable():
            return self._forward_batched(x4, x8, x16, size, stride)
        feats, aux = [], {}
        for name, dec in self.prelim.items():
            f, a = dec(x16)
            feats.append(f)
            aux[name] = a
        for blk in self.fusion:
            feats = blk(feats)
        tokens = self.distiller(feats)
        out: dict[str, torch.Tensor] = {}
        for name, f in zip(self.prelim.keys(), feats):
            y = self.heads[name](self.decoders[name](f, x8, x4, tokens))
            if stride == 1:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            out[name] = y
        if self.training:
            out["aux"] = aux  # type: ignore[assignment]
        return out

    def _forward_batched(self, x4, x8, x16, size, stride: int) -> dict[str, torch.Tensor]:
        feats = self.prelim(x16)  # B×T·C×h×w
        for blk in self.fusion:
            feats = blk(feats)
        out = self.heads(self.decoders(feats, x8, x4, self.distiller(feats)))
        if stride == 1:
            out = {k: F.interpolate(y, size=size, mode="bilinear", align_corners=False)
                   for k, y in out.items()}
        return out


@dataclass(frozen=True)
class Variant:
    """A named configuration.  ``edge`` variants target real-time CPU/Jetson use."""

    name: str
    description: str
    config: MTLSIConfig
    edge: bool = False


VARIANTS: dict[str, Variant] = {}


def register_variant(v: Variant) -> Variant:
    VARIANTS[v.name] = v
    return v


# Edge variants (chosen by measuring eager latency at 240×320 on 2 cores, README "Variants"):
# narrow decoders, few tokens, CWIB only at 1/8 (a CWIB at 1/4 for four tasks doubled latency),
# windows of 10 (divide 30×40 and 60×80 exactly: no padding), heads emitted at 1/4 resolution
# (full-resolution multi-channel outputs dominate deployed latency; the Predictor upsamples).
register_variant(Variant(
    "edge-effvit-b0", "EfficientViT-B0 backbone, C=48, M=64 tokens, 240×320 (smallest)",
    MTLSIConfig(backbone="efficientvit_b0", input_size=(240, 320), dim=48, heads=4,
                num_tokens=64, window=10, cwib_depths=(1, 0), ffn_ratio=2.0, output_stride=4),
    edge=True))
# The kernel-shaped edge variant (benchmarks/design_sweep.py, docs/design_sweep.md): the CWIB
# runs on the 1/16 task features with 5×5 windows (the receptive field of 10×10 at 1/8, a
# quarter of the pixels) and 2 heads of 24 channels (head dim 12 ran the fused window
# attention at a few MACs per cycle).
register_variant(Variant(
    "edge-effvit-b0-cwib16",
    "EfficientViT-B0 backbone, C=48, 2 heads, CWIB at 1/16 (window 5), 240×320 (fastest)",
    MTLSIConfig(backbone="efficientvit_b0", input_size=(240, 320), dim=48, heads=2,
                num_tokens=64, window=5, cwib_depths=(0, 0), cwib_depth16=1, ffn_ratio=2.0,
                output_stride=4),
    edge=True))
# edge-effvit-b0-cwib16 lost 2.5 SEISM odsF points on boundaries: no layer mixed channels
# below 1/16.  A pointwise 1×1 after the 1/8 and 1/4 merges puts that back for 0.055 GMACs.
register_variant(Variant(
    "edge-effvit-b0-v2",
    "EfficientViT-B0 backbone, C=48, 2 heads, CWIB at 1/16 (window 5), pointwise merges",
    MTLSIConfig(backbone="efficientvit_b0", input_size=(240, 320), dim=48, heads=2,
                num_tokens=64, window=5, cwib_depths=(0, 0), cwib_depth16=1,
                pointwise_merges=2, ffn_ratio=2.0, output_stride=4),
    edge=True))
register_variant(Variant(
    "edge-mbv3", "MobileNetV3-Large backbone, C=64, M=64 tokens, 240×320",
    MTLSIConfig(backbone="mobilenetv3_large_100", input_size=(240, 320), dim=64, heads=4,
                num_tokens=64, window=10, cwib_depths=(1, 0), ffn_ratio=2.0, output_stride=4),
    edge=True))
register_variant(Variant(  # Swin-L: 195.2 M params of backbone alone
    "paper-swin-l", "Swin-L backbone, C=256, M=512 tokens, window 8, 448×576 (NYUD)",
    MTLSIConfig(backbone="swin_large_patch4_window12_384", input_size=(448, 576),
                shifted_windows=True)))
register_variant(Variant(
    "paper-vit-l", "ViT-L/16 backbone (taps 6/12/18/24), C=256, M=512, window 8, 448×576",
    MTLSIConfig(backbone="vit_large_patch16_384", backbone_out_indices=(5, 11, 17, 23),
                input_size=(448, 576), shifted_windows=True)))

DEFAULT_VARIANT = "edge-effvit-b0-v2"


def create_model(name: str = DEFAULT_VARIANT, **overrides) -> MTLSINet:
    """Build a registered variant, with any :class:`MTLSIConfig` field overridden.

    >>> m = create_model("edge-mbv3", task_set="pascal", num_tokens=32)
    """
    if name not in VARIANTS:
        raise KeyError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    cfg = dataclasses.replace(VARIANTS[name].config, **check_config_values(overrides))
    check_consistency(cfg)
    return MTLSINet(cfg)


def check_consistency(cfg: MTLSIConfig) -> None:
    """Relations between fields (each value may be fine alone)."""
    if cfg.dim % cfg.heads:
        raise ConfigError(f"model config 'dim' ({cfg.dim}) must be a multiple of 'heads' "
                          f"({cfg.heads})")

