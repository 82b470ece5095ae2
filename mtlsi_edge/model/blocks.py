"""The building blocks of MTLSI-Net: MT-MQLFB, the Semantic Token Distiller and CWIB.

Shapes use B batch, T tasks, C width, h heads, d = C / h, N = H·W tokens per task, M tokens.
No block forms an N×N attention matrix: MT-MQLFB is linear attention (a d×d context per head),
the distiller attends M tokens to T·N features, CWIB attends within w×w windows and to M tokens.
The formulation follows ``shared/design/paper.md`` §3 (a reconstruction; defaults there).
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

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
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

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        b, c = feats[0].shape[:2]
        tokens = torch.cat(
            [f.flatten(2).transpose(1, 2) + self.task_embed[i] for i, f in enumerate(feats)], 1
        )  # B×TN×C
        k, v = self.kv(self.norm_kv(tokens)).chunk(2, dim=-1)
        seeds = self.seeds.unsqueeze(0).expand(b, -1, -1)  # B×M×C
        q = self.q(self.norm_q(seeds))
        split = lambda x: x.reshape(b, x.shape[1], self.heads, c // self.heads).transpose(1, 2)  # noqa: E731
        o = F.scaled_dot_product_attention(split(q), split(k), split(v))  # B×h×M×d
        s = seeds + self.proj(o.transpose(1, 2).reshape(b, -1, c))
        return s + self.mlp(self.norm_mlp(s))


class WindowAttention(nn.Module):
    """Softmax self-attention inside non-overlapping w×w windows, with relative position bias.

    ``B×C×H×W → B×C×H×W``; H and W are padded up to multiples of w (padding is masked out).
    Cost O(H·W·w²·C).
    """

    def __init__(self, dim: int, heads: int = 8, window: int = 8):
        super().__init__()
        self.heads, self.window = heads, window
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
        valid = valid.reshape(1, nh, ws, nw, ws).permute(0, 1, 3, 2, 4).reshape(-1, ws * ws)
        mask = (1.0 - valid).mul(-1e4)[:, None, None, :]  # nW×1×1×w²
        attn = (attn.reshape(b, nh * nw, self.heads, ws * ws, ws * ws) + mask).flatten(0, 1)
        o = attn.softmax(-1) @ v  # (B·nW)×h×w²×d
        o = self.proj(o.transpose(1, 2).reshape(-1, ws * ws, c))
        o = o.reshape(b, nh, nw, ws, ws, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, hp, wp)
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

    def __init__(self, dim: int, heads: int = 8, window: int = 8, ffn_ratio: float = 4.0):
        super().__init__()
        self.norm = LayerNorm2d(dim)
        self.local = WindowAttention(dim, heads, window)
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

    def __init__(self, dim: int, tasks: list[str], heads: int = 8):
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
