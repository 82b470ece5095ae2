"""The building blocks of MTLSI-Net: MT-MQLFB, the Semantic Token Distiller and CWIB.

Shapes use B batch, T tasks, C width, h heads, d = C / h, N = H·W tokens per task, M tokens.
No block forms an N×N attention matrix: MT-MQLFB is linear attention (a d×d context per head),
the distiller attends M tokens to T·N features, CWIB attends within w×w windows and to M tokens.
The formulation is a reconstruction: see docs/design.md, 'The model' and 'Open choices'.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNAct(nn.Sequential):
    """Conv k×k → BatchNorm → ReLU.  ``B×Cin×H×W → B×Cout×H/stride×W/stride``."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over channels of a ``B×C×H×W`` map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(
            x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps
        ).permute(0, 3, 1, 2)


class ConvFFN(nn.Module):
    """1×1 → depthwise 3×3 → GELU → 1×1 on a ``B×C×H×W`` map (pre-norm, no residual)."""

    def __init__(self, dim: int, ratio: float = 4.0):
        super().__init__()
        hidden = int(dim * ratio)
        self.norm = LayerNorm2d(dim)
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.dw = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.dw(self.fc1(self.norm(x)))))


class MTMQLFB(nn.Module):
    """Multi-Task Multi-scale Query Linear Fusion Block.

    Keys and values come from all tasks' tokens together, so one global context matrix
    ``G = φ(K)ᵀV`` (``B×h×d×d``) is built once per block and shared by every task.  Each task
    reads it with its own queries at several receptive fields (depthwise k×k on the projected
    queries, default k ∈ {1, 3, 5}); the scales are fused by a 1×1 projection.

    Input / output: list of T maps ``B×C×H×W``.  Cost O(T·N·h·d²·|S|): linear in N.
    """

    def __init__(
        self,
        dim: int,
        tasks: list[str],
        heads: int = 8,
        query_scales: tuple[int, ...] = (1, 3, 5),
        kernel: str = "relu",
        task_embedding: bool = True,
        ffn_ratio: float = 4.0,
        eps: float = 1e-6,
    ):
        super().__init__()
        assert dim % heads == 0, f"dim {dim} not divisible by heads {heads}"
        self.tasks = list(tasks)
        self.heads, self.dim, self.eps = heads, dim, eps
        self.kernel = kernel
        self.norm = LayerNorm2d(dim)
        self.kv = nn.Conv2d(dim, 2 * dim, 1)
        self.task_embed = (
            nn.Parameter(torch.zeros(len(tasks), dim, 1, 1)) if task_embedding else None
        )
        self.q = nn.ModuleDict({t: nn.Conv2d(dim, dim, 1) for t in self.tasks})
        # One depthwise aggregation per scale, shared by the tasks (their queries differ already).
        self.scales = nn.ModuleList(
            [
                nn.Identity() if k == 1 else nn.Conv2d(dim, dim, k, padding=k // 2, groups=dim)
                for k in query_scales
            ]
        )
        self.proj = nn.ModuleDict(
            {t: nn.Conv2d(dim * len(query_scales), dim, 1) for t in self.tasks}
        )
        self.ffn = nn.ModuleDict({t: ConvFFN(dim, ffn_ratio) for t in self.tasks})

    #: Compute the context G = φ(K)ᵀV, the normaliser z and Q·G, Q·z in FP32 with autocast off.
    #: They are sums over every token of every task, so they grow with N and d (|G| ≈ 850 and
    #: Q·z ≈ 2.9e3 on the starter at 240×320) and overflow FP16 (max 65504) at larger sizes.
    fp32_core: bool = True

    def _core(self, x: torch.Tensor):
        return torch.autocast(x.device.type, enabled=False) if self.fp32_core else nullcontext()

    def _f32(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() if self.fp32_core else x

    def _phi(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x) if self.kernel == "relu" else F.elu(x) + 1.0

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """``B×C×H×W → B×h×N×d``."""
        b, c, hh, ww = x.shape
        return x.reshape(b, self.heads, c // self.heads, hh * ww).transpose(-1, -2)

    def forward(self, feats: list[torch.Tensor] | torch.Tensor
                ) -> list[torch.Tensor] | torch.Tensor:
        if isinstance(feats, torch.Tensor):
            return self._forward_stacked(feats)
        b, c, hh, ww = feats[0].shape
        normed = [self.norm(f) for f in feats]
        # Shared global context over all tasks' tokens: G = Σ_t φ(K_t)ᵀ V_t, z = Σ_t Σ_n φ(K_t).
        ctx = None
        z = None
        for i, x in enumerate(normed):
            if self.task_embed is not None:
                x = x + self.task_embed[i]
            k, v = self.kv(x).chunk(2, dim=1)
            k, v = self._phi(self._heads(k)), self._heads(v)  # B×h×N×d
            with self._core(k):
                k, v = self._f32(k), self._f32(v)
                g = k.transpose(-1, -2) @ v  # B×h×d×d
                s = k.sum(dim=2, keepdim=True)  # B×h×1×d
                ctx = g if ctx is None else ctx + g
                z = s if z is None else z + s
        out = []
        for t, f, x in zip(self.tasks, feats, normed):
            q = self.q[t](x)
            reads = []
            for agg in self.scales:
                qs = self._phi(self._heads(agg(q)))  # B×h×N×d
                with self._core(qs):
                    qs = self._f32(qs)
                    num = qs @ ctx  # B×h×N×d
                    den = (qs * z).sum(-1, keepdim=True) + self.eps  # B×h×N×1
                    o = (num / den).to(f.dtype).transpose(-1, -2).reshape(b, c, hh, ww)
                reads.append(o)
            y = f + self.proj[t](torch.cat(reads, dim=1))
            out.append(y + self.ffn[t](y))
        return out

    def _forward_stacked(self, x: torch.Tensor) -> torch.Tensor:
        """Task-batched form of :meth:`forward` (eval): ``B×T·C×H×W → B×T·C×H×W``.

        Runs on channels-last rows ``B×N×T×C`` (the layout OpenVINO keeps the maps in).  The
        per-head contexts are computed as one ``C×C`` product masked to its ``d×d`` diagonal
        blocks, so every head reads its own context in one matmul and no tensor is split into
        heads: ``num = φ(Q)·G``, ``den = φ(Q)·(diag z · J)`` with J the block-of-ones mask.
        """
        b, _, hh, ww = x.shape
        t, c, h = len(self.tasks), self.dim, self.heads
        d, n = c // h, hh * ww
        xr = x.permute(0, 2, 3, 1).reshape(b, n, t, c)
        normed = F.layer_norm(xr, (c,), self.norm.weight, self.norm.bias, self.norm.eps)
        kx = normed if self.task_embed is None else normed + self.task_embed.view(t, c)
        kx = kx.reshape(b, n * t, c)  # keys and values by two matmuls: a split costs more
        wkv, bkv = self.kv.weight.view(2 * c, c), self.kv.bias
        k, v = kx @ wkv[:c].t() + bkv[:c], kx @ wkv[c:].t() + bkv[c:]  # B×TN×C each
        with self._core(k):  # the same FP32 guard as the per-task path
            k, v = self._f32(self._phi(k)), self._f32(v)
            heads = torch.block_diag(*[torch.ones(d, d, device=k.device, dtype=k.dtype)] * h)
            ctx = (k.transpose(1, 2) @ v) * heads  # B×C×C: G_h on the diagonal blocks
            zmat = k.sum(1).unsqueeze(-1) * heads  # B×C×C: z_h down each head's block
        wq = torch.cat([self.q[tk].weight for tk in self.tasks])[:, :, 0, 0]
        q = _rows_linear(normed.reshape(b, hh, ww, t * c), wq,
                         torch.cat([self.q[tk].bias for tk in self.tasks]), t)  # B×H×W×T·C
        reads = []
        for agg in self.scales:
            if isinstance(agg, nn.Conv2d):  # the shared depthwise kernel, for every task
                qa = F.conv2d(q.permute(0, 3, 1, 2), torch.cat([agg.weight] * t),
                              torch.cat([agg.bias] * t), padding=agg.padding, groups=t * c)
                qa = qa.permute(0, 2, 3, 1)
            else:
                qa = q
            qs = self._phi(qa.reshape(b, n * t, c))
            with self._core(qs):
                qs = self._f32(qs)
                o = (qs @ ctx) / (qs @ zmat + self.eps)  # B×TN×C
            reads.append(o.to(x.dtype).reshape(b, hh, ww, t, 1, c))
        # Per task the projection reads its scales' outputs concatenated: T×S×C, task-major.
        proj = [self.proj[tk] for tk in self.tasks]
        y = xr.reshape(b, hh, ww, t * c) + _rows_linear(
            torch.cat(reads, 4).reshape(b, hh, ww, -1),
            torch.cat([m.weight for m in proj])[:, :, 0, 0], torch.cat([m.bias for m in proj]), t)
        return y.permute(0, 3, 1, 2) + _ffn_channels_last([self.ffn[tk] for tk in self.tasks], y)


class SemanticTokenDistiller(nn.Module):
    """Compress all tasks' fused features into M semantic tokens.

    M learnable seeds cross-attend (softmax over the T·N positions) to the concatenated task
    features, then an MLP refines the tokens.  Input: list of T maps ``B×C×H×W``; output
    ``B×M×C``.  Cost O(M·T·N·C): linear in N for a fixed M.
    """

    def __init__(self, dim: int, num_tasks: int, num_tokens: int = 512, heads: int = 8,
                 mlp_ratio: float = 4.0):
        super().__init__()
        self.heads = heads
        self.seeds = nn.Parameter(torch.randn(num_tokens, dim) * 0.02)
        self.task_embed = nn.Parameter(torch.zeros(num_tasks, dim))
        self.norm_kv = nn.LayerNorm(dim)
        self.norm_q = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim)
        )

    def forward(self, feats: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """``feats``: list of T maps ``B×C×H×W``, or the tasks stacked ``B×T·C×H×W``."""
        if isinstance(feats, torch.Tensor):  # task-batched: B×T·C×H×W
            b, tc, hh, ww = feats.shape
            t = self.task_embed.shape[0]
            c = tc // t
            # Pixel-major tokens (B×N·T×C, the maps' channels-last layout, no transpose): the
            # seeds' softmax attention sums over all keys, so their order does not matter.
            tokens = (feats.permute(0, 2, 3, 1).reshape(b, -1, t, c)
                      + self.task_embed).reshape(b, -1, c)
        else:
            b, c = feats[0].shape[:2]
            tokens = torch.cat(
                [f.flatten(2).transpose(1, 2) + self.task_embed[i] for i, f in enumerate(feats)],
                1)  # B×TN×C
        k, v = self.kv(self.norm_kv(tokens)).chunk(2, dim=-1)
        seeds = self.seeds.unsqueeze(0).expand(b, -1, -1)  # B×M×C
        q = self.q(self.norm_q(seeds))
        split = lambda x: x.reshape(b, x.shape[1], self.heads, c // self.heads).transpose(1, 2)  # noqa: E731
        o = F.scaled_dot_product_attention(split(q), split(k), split(v))  # B×h×M×d
        s = seeds + self.proj(o.transpose(1, 2).reshape(b, -1, c))
        return s + self.mlp(self.norm_mlp(s))


def shift_region_mask(hp: int, wp: int, ws: int, shift: int, device=None) -> torch.Tensor:
    """Swin's attention mask for cyclically shifted windows: ``nW×w²×w²``, −1e4 where query
    and key come from different regions of the rolled map (they were not neighbours).

    Region ids are computed arithmetically from coordinates (no slicing by size), so the mask
    follows symbolic H×W in exported graphs.
    """
    def regions(n: int) -> torch.Tensor:  # 0 | 1 | 2 along one axis of the rolled map
        i = torch.arange(n, device=device)
        return (i >= n - ws).long() + (i >= n - shift).long()

    rid = regions(hp)[:, None] * 3 + regions(wp)[None, :]  # Hp×Wp
    rid = rid.reshape(hp // ws, ws, wp // ws, ws).permute(0, 2, 1, 3).reshape(-1, ws * ws)
    return (rid[:, :, None] != rid[:, None, :]).float().mul(-1e4)


class WindowAttention(nn.Module):
    """Softmax self-attention inside non-overlapping w×w windows, with relative position bias.

    ``B×C×H×W → B×C×H×W``; H and W are padded up to multiples of w (padding is masked out).
    ``shift`` > 0: Swin's shifted windows — the padded map is rolled by −shift before the
    partition and back after, with :func:`shift_region_mask` so that pixels brought together by
    the roll do not attend to each other.  Stacked blocks alternate 0 and w/2 so information
    crosses window borders.  Cost O(H·W·w²·C) either way.
    """

    def __init__(self, dim: int, heads: int = 8, window: int = 8, shift: int = 0):
        super().__init__()
        if not 0 <= shift < window:
            raise ValueError(f"shift must be in [0, window), got {shift}")
        self.heads, self.window, self.shift = heads, window, shift
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.rel_bias = nn.Parameter(torch.zeros(heads, (2 * window - 1) ** 2))
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window),
                                            indexing="ij")).flatten(1)  # 2×w²
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + window - 1
        self.register_buffer("rel_index", rel[..., 0] * (2 * window - 1) + rel[..., 1],
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        ws = self.window
        ph, pw = (ws - h % ws) % ws, (ws - w % ws) % ws
        x = F.pad(x, (0, pw, 0, ph))
        hp, wp = h + ph, w + pw
        nh, nw = hp // ws, wp // ws
        s = self.shift
        if s:
            x = torch.roll(x, (-s, -s), (2, 3))
        # B×C×Hp×Wp → (B·nh·nw)×w²×C
        win = x.reshape(b, c, nh, ws, nw, ws).permute(0, 2, 4, 3, 5, 1).reshape(-1, ws * ws, c)
        qkv = self.qkv(win).reshape(win.shape[0], ws * ws, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B·nW)×h×w²×d
        # Explicit softmax attention: SDPA with a float mask takes a slow checked path on CPU.
        attn = (q * self.scale) @ k.transpose(-1, -2) + self.rel_bias[:, self.rel_index]
        # Padded key positions get a large negative bias so real pixels never attend to them.
        # Applied unconditionally (zeros when nothing is padded) so that an exported graph
        # with symbolic H×W keeps the mask.
        valid = F.pad(torch.ones(1, 1, h, w, device=x.device, dtype=x.dtype), (0, pw, 0, ph))
        if s:
            valid = torch.roll(valid, (-s, -s), (2, 3))
        valid = valid.reshape(1, nh, ws, nw, ws).permute(0, 1, 3, 2, 4).reshape(-1, ws * ws)
        mask = (1.0 - valid).mul(-1e4)[:, None, None, :]  # nW×1×1×w²
        if s:
            mask = mask + shift_region_mask(hp, wp, ws, s, x.device)[:, None].to(x.dtype)
        attn = (attn.reshape(b, nh * nw, self.heads, ws * ws, ws * ws) + mask).flatten(0, 1)
        o = attn.softmax(-1) @ v  # (B·nW)×h×w²×d
        o = self.proj(o.transpose(1, 2).reshape(-1, ws * ws, c))
        o = o.reshape(b, nh, nw, ws, ws, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, hp, wp)
        if s:
            o = torch.roll(o, (s, s), (2, 3))
        return o[:, :, :h, :w]


class TokenCrossAttention(nn.Module):
    """Every pixel attends to the M semantic tokens.  ``B×C×H×W, B×M×C → B×C×H×W``, O(H·W·M·C)."""

    def __init__(self, dim: int, heads: int = 8):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.norm_t = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        split = lambda t: t.reshape(b, t.shape[1], self.heads, c // self.heads).transpose(1, 2)  # noqa: E731
        q = self.q(x.flatten(2).transpose(1, 2))
        k, v = self.kv(self.norm_t(tokens)).chunk(2, dim=-1)
        o = F.scaled_dot_product_attention(split(q), split(k), split(v))  # B×h×N×d
        return self.proj(o.transpose(1, 2).reshape(b, h * w, c)).transpose(1, 2).reshape(b, c, h, w)


class CWIB(nn.Module):
    """Cross-Window Integrated attention Block.

    Local branch: window self-attention (detail).  Global branch: pixel → semantic-token
    cross-attention (image-wide consistency).  The two are fused by a 1×1 projection of their
    concatenation, added residually, then a ConvFFN.
    ``B×C×H×W, B×M×C → B×C×H×W``.
    """

    def __init__(self, dim: int, heads: int = 8, window: int = 8, ffn_ratio: float = 4.0,
                 shift: int = 0):
        super().__init__()
        self.norm = LayerNorm2d(dim)
        self.local = WindowAttention(dim, heads, window, shift)
        self.glob = TokenCrossAttention(dim, heads)
        self.fuse = nn.Conv2d(2 * dim, dim, 1)
        self.ffn = ConvFFN(dim, ffn_ratio)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        n = self.norm(x)
        x = x + self.fuse(torch.cat([self.local(n), self.glob(n, tokens)], dim=1))
        return x + self.ffn(x)


class SoftmaxSelfAttention(nn.Module):
    """Plain softmax self-attention over all T·N tokens: the O(N²) baseline MT-MQLFB replaces.

    Same interface as :class:`MTMQLFB` (list of T maps ``B×C×H×W``); used only for comparisons.
    """

    def __init__(self, dim: int, heads: int = 8):
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        b, c, h, w = feats[0].shape
        x = torch.cat([f.flatten(2).transpose(1, 2) for f in feats], 1)  # B×TN×C
        qkv = self.qkv(self.norm(x)).reshape(b, x.shape[1], 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-1, -2) * (c // self.heads) ** -0.5).softmax(-1)  # B×h×TN×TN
        y = x + self.proj((attn @ v).transpose(1, 2).reshape(b, -1, c))
        return [t.transpose(1, 2).reshape(b, c, h, w) for t in y.split(h * w, dim=1)]


# -- Task-batched forms ---------------------------------------------------------------------
# The T task branches of a decoder stage have the same structure and differ only in weights, so
# the deploy graph can run them as one op each: the tasks' maps are stacked along channels
# (``B×T·C×H×W``, task-major; channels last in memory, which is how OpenVINO keeps them),
# per-task 1×1/k×k convolutions become one grouped convolution, per-task linears one grouped
# 1×1 convolution on channels-last rows, and attention runs over T·h heads at once.  Norm
# affines, attention scales and projections are folded into the weights that follow them.  The
# functions below read the weights of the per-task modules (stacked and folded on the fly;
# ``export.fold_weight_ops`` turns that arithmetic into constants), so checkpoints are
# unchanged and the per-task forward stays the reference.  Eval mode only: BatchNorm uses
# running stats.  Measurements behind each layout choice: docs/task_batched.md.


def same_shapes(mods: list[nn.Module]) -> bool:
    """True when every module has the same parameter and buffer shapes (e.g. not pruned to
    different per-task widths), so the tasks can share one op."""
    sig = [[p.shape for p in m.parameters()] for m in mods]  # BN statistics follow weights
    return all(s == sig[0] for s in sig[1:])


def _cat(mods: list[nn.Module], name: str) -> torch.Tensor | None:
    ts = [getattr(m, name) for m in mods]
    return None if ts[0] is None else torch.cat(ts)


def conv_tasks(convs: list[nn.Conv2d], x: torch.Tensor, shared_input: bool = False
               ) -> torch.Tensor:
    """T per-task convolutions as one.  ``x``: ``B×T·Cin×H×W`` (or ``B×Cin×H×W`` read by all
    tasks when ``shared_input``) → ``B×T·Cout×H'×W'``."""
    c = convs[0]
    groups = c.groups if shared_input else len(convs) * c.groups
    return F.conv2d(x, _cat(convs, "weight"), _cat(convs, "bias"), c.stride, c.padding,
                    c.dilation, groups)


def conv_bn_act_tasks(mods: list[ConvBNAct], x: torch.Tensor, shared_input: bool = False
                      ) -> torch.Tensor:
    """T :class:`ConvBNAct` (eval mode) as one conv with BatchNorm folded in, then ReLU."""
    convs, bns = [m[0] for m in mods], [m[1] for m in mods]
    scale = _cat(bns, "weight") * torch.rsqrt(_cat(bns, "running_var") + bns[0].eps)
    w = _cat(convs, "weight") * scale.view(-1, 1, 1, 1)
    b = _cat(bns, "bias") - _cat(bns, "running_mean") * scale
    c = convs[0]
    groups = c.groups if shared_input else len(convs) * c.groups
    return F.relu(F.conv2d(x, w, b, c.stride, c.padding, c.dilation, groups))


def _linear_weights(lins: list[nn.Linear]) -> tuple[torch.Tensor, torch.Tensor]:
    """T linears → their weights transposed and stacked, ``T×Cin×Cout``, and biases ``T×1×Cout``
    (for folding a projection into the weights that follow it)."""
    w = torch.stack([m.weight for m in lins]).transpose(1, 2)
    return w, torch.stack([m.bias for m in lins]).unsqueeze(1)


def _rows_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, tasks: int
                 ) -> torch.Tensor:
    """T per-task linears on channels-last rows ``…×T·Cin`` as one grouped 1×1 convolution
    (``w``: ``T·Cout×Cin``, task-major) → ``…×T·Cout``.

    The permutes around the convolution are the layout OpenVINO's CPU plugin keeps
    convolutions in (channels last), so it drops them; a MatMul with per-task weights would
    need the tasks as a leading batch dimension, i.e. a real transpose of every activation.
    """
    lead = x.shape[:-1]
    y = F.conv2d(x.reshape(1, -1, 1, x.shape[-1]).permute(0, 3, 1, 2), w[:, :, None, None], b,
                 groups=tasks)
    return y.permute(0, 2, 3, 1).reshape(*lead, w.shape[0])


def _fold_norm(norms: list[nn.LayerNorm], w: torch.Tensor, b: torch.Tensor | None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold per-task LayerNorm affines into the per-task linear that reads them.

    ``w``: ``T·Cout×C`` (task-major), ``b``: ``T·Cout``.  Returns the weight and bias to apply
    to the normalised input without its affine: ``W(γ⊙n + β) + b = (W·diag γ) n + (Wβ + b)``.
    """
    t = len(norms)
    g = torch.stack([n.weight for n in norms])  # T×C
    beta = torch.stack([n.bias for n in norms])
    w = w.reshape(t, -1, w.shape[-1])
    bias = (w @ beta.unsqueeze(-1)).squeeze(-1)
    if b is not None:
        bias = bias + b.view(t, -1)
    return (w * g.unsqueeze(1)).reshape(-1, w.shape[-1]), bias.reshape(-1)


def _is_zero(*sizes) -> bool:
    """True when every size is a concrete 0.  Symbolic sizes (dynamo export with symbolic
    H×W) are not: such a graph must keep the padding and its mask.  The TorchScript exporter
    traces sizes as tensors, but its graphs are static, so they count as concrete."""
    if torch.jit.is_tracing():
        sizes = tuple(int(s) for s in sizes)
    return all(isinstance(s, int) and s == 0 for s in sizes)


def cwib_tasks(blocks: list[CWIB], x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """T :class:`CWIB` (eval mode) on ``B×T·C×H×W`` with shared tokens ``B×M×C`` →
    ``B×T·C×H×W``.

    The pixels are put in window order once, as channels-last rows ``L×T·C`` (L = B·nW·w²):
    every op of the block up to the FFN's depthwise conv is per pixel (norm, projections,
    token cross-attention, fuse) or per window (window attention), so all of them run on those
    rows, and the map goes back to spatial order once, before the FFN.  Per-task linears are
    grouped 1×1 convolutions on the rows (:func:`_rows_linear`); the LayerNorm affines, the
    attention scales and each attention's output projection are folded into the weights that
    follow them (the same function, rounding aside).  Window attention runs over T·h heads
    per window, the token cross-attention over T·h heads per image.  Windows are unshifted
    (shifted stacks run per task, see :meth:`MTLSINet.batchable`).
    """
    b, _, h, w = x.shape
    t = len(blocks)
    c = blocks[0].norm.normalized_shape[0]  # a Python int: exporters need static norm shapes
    tc = t * c
    loc, glo = [blk.local for blk in blocks], [blk.glob for blk in blocks]
    norms = [blk.norm for blk in blocks]
    heads, ws = loc[0].heads, loc[0].window
    d = c // heads
    ph, pw = (ws - h % ws) % ws, (ws - w % ws) % ws
    padded = not _is_zero(ph, pw)
    xs = (F.pad(x, (0, pw, 0, ph)) if padded else x).permute(0, 2, 3, 1)  # B×Hp×Wp×T·C
    hp, wp = h + ph, w + pw
    nh, nw = hp // ws, wp // ws
    xr = xs.reshape(b, nh, ws, nw, ws, tc).permute(0, 1, 3, 2, 4, 5).reshape(-1, tc)
    n = F.layer_norm(xr.view(-1, t, c), (c,), eps=norms[0].eps).view(-1, tc)  # affine folded

    # Window attention.  qkv per task is (3, h, d): one grouped conv each for q, k and v.
    wqkv, bqkv = _fold_norm(norms, torch.cat([m.qkv.weight for m in loc]),
                            torch.cat([m.qkv.bias for m in loc]))
    wqkv, bqkv = wqkv.view(t, 3, c, c), bqkv.view(t, 3, c)
    q, k, v = (_rows_linear(n, wqkv[:, i].reshape(tc, c) * s, bqkv[:, i].reshape(tc) * s, t)
               for i, s in enumerate((loc[0].scale, 1.0, 1.0)))
    q, v = (z.reshape(-1, ws * ws, t * heads, d).transpose(1, 2) for z in (q, v))
    kt = k.reshape(-1, ws * ws, t * heads, d).permute(0, 2, 3, 1)  # (B·nW)×T·h×d×w²
    attn = q @ kt + torch.cat([m.rel_bias[:, m.rel_index] for m in loc])  # + T·h×w²×w²
    if padded:  # padded key positions never receive attention
        valid = F.pad(torch.ones(1, 1, h, w, device=x.device, dtype=x.dtype), (0, pw, 0, ph))
        valid = valid.reshape(1, nh, ws, nw, ws).permute(0, 1, 3, 2, 4).reshape(-1, ws * ws)
        attn = attn + (1.0 - valid).mul(-1e4).expand(b, -1, -1).reshape(-1, 1, 1, ws * ws)
    local = (attn.softmax(-1) @ v).transpose(1, 2).reshape(-1, tc)  # L×T·C

    # Token cross-attention: every row (pixel) of an image attends to that image's M tokens.
    wq, bq = _fold_norm(norms, torch.cat([m.q.weight for m in glo]),
                        torch.cat([m.q.bias for m in glo]))
    qg = _rows_linear(n, wq * d ** -0.5, bq * d ** -0.5, t)
    qg = qg.reshape(b, -1, t * heads, d).transpose(1, 2)  # B×T·h×(nW·w²)×d
    # Keys and values of the tokens: one normalisation, then per task its kv linear with the
    # norm affine folded in, as a grouped conv over the tokens repeated per task (a Conv with a
    # constant weight, which INT8 quantisation handles like the other linears).
    nt = [m.norm_t for m in glo]
    tn = F.layer_norm(tokens, nt[0].normalized_shape, eps=nt[0].eps)  # B×M×C
    wkv, bkv = _fold_norm(nt, torch.cat([m.kv.weight for m in glo]),
                          torch.cat([m.kv.bias for m in glo]))  # T·2C×C, rows (T, 2, h, d)
    kv = _rows_linear(torch.cat([tn] * t, -1), wkv, bkv, t).reshape(b, -1, t, 2, heads, d)
    kg, vg = (z.permute(0, 2, 3, 1, 4).reshape(b, t * heads, -1, d)  # B×T·h×M×d
              for z in kv.unbind(3))
    glob = ((qg @ kg.transpose(-1, -2)).softmax(-1) @ vg).transpose(1, 2).reshape(-1, tc)

    # fuse([proj_l(local), proj_g(glob)]): both projections folded into the fuse weights.
    fw = torch.cat([blk.fuse.weight for blk in blocks])[:, :, 0, 0].view(t, c, 2 * c)
    fl, fg = fw[..., :c], fw[..., c:]
    pl, bl = _linear_weights([m.proj for m in loc])  # T×C×C (transposed), T×1×C
    pg, bg = _linear_weights([m.proj for m in glo])
    fb = torch.cat([blk.fuse.bias for blk in blocks]) + (
        fl @ bl.transpose(1, 2) + fg @ bg.transpose(1, 2)).reshape(-1)
    xr = xr + _rows_linear(local, (fl @ pl.transpose(1, 2)).reshape(tc, c), fb, t) \
        + _rows_linear(glob, (fg @ pg.transpose(1, 2)).reshape(tc, c), None, t)

    y = xr.reshape(b, nh, nw, ws, ws, tc).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, tc)
    if padded:
        y = y[:, :h, :w]
    return y.permute(0, 3, 1, 2) + _ffn_channels_last([blk.ffn for blk in blocks], y)


def _ffn_channels_last(ffns: list[ConvFFN], y: torch.Tensor) -> torch.Tensor:
    """T :class:`ConvFFN` on a channels-last map ``B×H×W×T·C`` → ``B×T·C×H×W``, the
    LayerNorm affine folded into the first 1×1 conv.  Tasks pruned to different hidden widths
    run one FFN per channel slice."""
    b, h, w, tc = y.shape
    t = len(ffns)
    if not same_shapes(ffns):  # pruned to different widths: each FFN on its channel slice
        x = y.permute(0, 3, 1, 2)
        return torch.cat([f(xi) for f, xi in zip(ffns, x.chunk(t, 1))], 1)
    c = ffns[0].norm.normalized_shape[0]
    nf = F.layer_norm(y.reshape(b, h, w, t, c), (c,), eps=ffns[0].norm.eps).reshape(b, h, w, -1)
    w1, b1 = _fold_norm([f.norm for f in ffns],
                        torch.cat([f.fc1.weight for f in ffns])[:, :, 0, 0],
                        torch.cat([f.fc1.bias for f in ffns]))
    z = F.conv2d(nf.permute(0, 3, 1, 2), w1[:, :, None, None], b1, groups=t)
    return conv_tasks([f.fc2 for f in ffns], F.gelu(conv_tasks([f.dw for f in ffns], z)))
