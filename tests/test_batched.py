"""Task-batched decoders (``MTLSIConfig.task_batched``): the same function as the per-task
reference for every variant, the same checkpoints, pruned widths, export and MAC counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import STARTER, needs_starter
from torch import nn

from mtlsi_edge.model import VARIANTS, create_model
from mtlsi_edge.model.blocks import same_shapes
from mtlsi_edge.model.complexity import model_report

pytestmark = pytest.mark.usefixtures("torch_one_thread")
EDGE = [n for n, v in VARIANTS.items() if v.edge]
PAPER = [n for n, v in VARIANTS.items() if not v.edge]


def _randomize(m: nn.Module) -> nn.Module:
    """Give the parameters a fresh init leaves at constants (norm affines, BN statistics,
    position biases, task embeddings) random values, so per-task differences matter."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.running_mean.normal_(0, 0.1, generator=g)
                mod.running_var.uniform_(0.5, 1.5, generator=g)
            if isinstance(mod, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm)):
                mod.weight.normal_(1, 0.2, generator=g)
                mod.bias.normal_(0, 0.2, generator=g)
        for name, p in m.named_parameters():
            if "rel_bias" in name or "task_embed" in name:
                p.normal_(0, 0.2, generator=g)
    return m.eval()


def _both(m, x, **kw) -> tuple[dict, dict]:
    with torch.no_grad():
        m.cfg.task_batched = False
        ref = m(x, **kw)
        m.cfg.task_batched = True
        got = m(x, **kw)
    return ref, got


def _assert_same(ref: dict, got: dict, atol: float = 1e-5) -> None:
    assert list(ref) == list(got)
    for k in ref:
        assert ref[k].shape == got[k].shape, k
        err = float((ref[k] - got[k]).abs().max())
        assert err <= atol, f"{k}: max abs difference {err:.2e}"
        assert float(ref[k].abs().max()) > 1e-3, f"{k}: degenerate output, nothing compared"


def _batched_calls(m) -> dict[str, int]:
    """Count calls of the task-batched containers and of the per-task modules they replace."""
    calls = {"batched": 0, "per-task": 0}

    def hook(kind):
        def f(*_):
            calls[kind] += 1
        return f

    for mod in (m.prelim, m.decoders, m.heads):
        mod.register_forward_hook(hook("batched"))
    for dec in list(m.prelim.values()) + list(m.decoders.values()):
        dec.register_forward_hook(hook("per-task"))
    return calls


@pytest.mark.parametrize("name", EDGE)
def test_edge_variant_batched_matches_per_task(name):
    """The real variant (backbone included), random weights, batch 2, input 96×136: 1/8 is
    12×17, not a multiple of the window: padding and masking are exercised."""
    torch.manual_seed(0)
    m = _randomize(create_model(name))
    calls = _batched_calls(m)
    ref, got = _both(m, torch.randn(2, 3, 96, 136))
    _assert_same(ref, got)
    assert calls["batched"] == 3 and calls["per-task"] == 2 * len(m.task_set.names), calls


@pytest.mark.parametrize("name", PAPER)
def test_paper_decoder_config_batched_matches_per_task(name):
    """Every decoder setting of the paper variant (C=256, 8 heads, M=512, window 8, CWIB at
    1/8 and 1/4, full-resolution outputs), on a small backbone at 64×96."""
    torch.manual_seed(0)
    m = _randomize(create_model(name, backbone="efficientvit_b0", backbone_out_indices=None,
                                input_size=(64, 96)))
    assert m.cfg.cwib_depths == (1, 1) and m.cfg.output_stride == 1
    ref, got = _both(m, torch.randn(1, 3, 64, 96))
    _assert_same(ref, got)
    assert ref["semseg"].shape == (1, 40, 64, 96)


@pytest.mark.parametrize("pointwise", [1, 2])
def test_pointwise_merges_batched_matches_per_task(pointwise):
    """Pointwise 1×1s after the 1/8 (and 1/4) merges, without a CWIB at 1/4 (the split path)
    and with one (the batched 1/4 merge path); each adds one C×C conv + BN per task."""
    from mtlsi_edge.model.mtlsi import ConfigError

    torch.manual_seed(0)
    for over in ({}, {"cwib_depths": (0, 1)}):
        base = create_model("edge-effvit-b0", input_size=(64, 96), **over)
        m = _randomize(create_model("edge-effvit-b0", input_size=(64, 96),
                                    pointwise_merges=pointwise, **over))
        extra = sum(p.numel() for p in m.parameters()) - sum(
            p.numel() for p in base.parameters())
        c, t = m.cfg.dim, len(m.task_set.names)
        assert extra == pointwise * t * (c * c + 2 * c)
        ref, got = _both(m, torch.randn(1, 3, 64, 96))
        _assert_same(ref, got)
    with pytest.raises(ConfigError, match="pointwise_merges"):
        create_model("edge-effvit-b0", pointwise_merges=3)


#: Smaller inputs the paper backbones accept (Swin: every stage a multiple of its window 12).
PAPER_SIZES = {"paper-swin-l": (384, 384), "paper-vit-l": (224, 288)}


@pytest.mark.slow
@pytest.mark.parametrize("name", PAPER)
def test_paper_variant_batched_matches_per_task(name):
    """The full paper variant with its own backbone (random weights), at a reduced input."""
    torch.manual_seed(0)
    size = PAPER_SIZES.get(name, VARIANTS[name].config.input_size)
    m = _randomize(create_model(name, input_size=size))
    ref, got = _both(m, torch.randn(1, 3, *size))
    _assert_same(ref, got)


def test_training_runs_the_per_task_reference():
    """Training keeps the per-task path (aux outputs, BatchNorm statistics updates)."""
    m = create_model("edge-effvit-b0", input_size=(64, 96), task_batched=True).train()
    calls = _batched_calls(m)
    out = m(torch.randn(2, 3, 64, 96))
    assert "aux" in out and calls["batched"] == 0
    sum(v.mean() for k, v in out.items() if k != "aux").backward()
    m.eval()
    with torch.no_grad():
        m(torch.randn(1, 3, 64, 96))
    assert calls["batched"] == 3


@needs_starter
def test_starter_checkpoint_runs_batched_unchanged(tmp_path):
    """Same state dict keys and shapes: the starter loads into either form, and a checkpoint
    saved from a batched model round-trips its flag."""
    from mtlsi_edge.model.mtlsi import MTLSIConfig
    from mtlsi_edge.train.checkpoint import build_from_checkpoint, save_checkpoint

    m, doc = build_from_checkpoint(STARTER)
    # A config written before the later fields existed (the session-1 starter's) still loads.
    old = {k: v for k, v in VARIANTS["edge-effvit-b0"].config.to_dict().items()
           if k not in ("task_batched", "cwib_depth16", "pointwise_merges")}
    assert MTLSIConfig.from_dict(old) == VARIANTS["edge-effvit-b0"].config
    x = torch.randn(1, 3, *m.cfg.input_size)
    ref, got = _both(m, x)
    _assert_same(ref, got)
    stem = save_checkpoint(tmp_path / "b", m, {"model_config": m.cfg.to_dict(),
                                                "task_set": m.task_set.to_dict()})
    m2, doc2 = build_from_checkpoint(stem)
    assert doc2["model_config"]["task_batched"] is True and m2.cfg.task_batched
    with torch.no_grad():
        _assert_same(got, m2(x))


def _shrink_ffn(sd: dict, prefix: str, keep: int) -> None:
    """Channel-prune one ConvFFN's hidden width in a state dict (as torch-pruning would)."""
    for k in ("fc1.weight", "fc1.bias", "dw.weight", "dw.bias"):
        sd[f"{prefix}.{k}"] = sd[f"{prefix}.{k}"][:keep].clone()
    sd[f"{prefix}.fc2.weight"] = sd[f"{prefix}.fc2.weight"][:, :keep].clone()


def test_pruned_widths_differing_per_task_fall_back_per_ffn():
    """A channel-pruned checkpoint whose tasks kept different FFN widths: those FFNs run per
    task inside the batched forward, the rest stays batched; outputs still match."""
    from mtlsi_edge.model.restore import fit_to_state_dict

    torch.manual_seed(0)
    src = _randomize(create_model("edge-effvit-b0", input_size=(64, 96)))
    sd = dict(src.state_dict())
    _shrink_ffn(sd, "decoders.semseg.cwib8.0.ffn", 40)
    _shrink_ffn(sd, "decoders.depth.cwib8.0.ffn", 72)
    _shrink_ffn(sd, "fusion.0.ffn.normals", 50)
    m = create_model("edge-effvit-b0", input_size=(64, 96))
    fit_to_state_dict(m, sd)
    m.load_state_dict(sd)
    m.eval()
    assert not same_shapes([d.cwib8[0].ffn for d in m.decoders.values()])
    assert m.batchable()  # only FFNs differ: the model stays batched
    calls = _batched_calls(m)
    ref, got = _both(m, torch.randn(1, 3, 64, 96))
    _assert_same(ref, got)
    assert calls["batched"] == 3


def test_unequal_branch_widths_fall_back_to_per_task_model():
    """Anything but FFNs differing per task (not produced by our pruner, but loadable with
    fit_to_state_dict): the whole model runs the per-task path."""
    from mtlsi_edge.model.restore import fit_to_state_dict

    torch.manual_seed(0)
    src = create_model("edge-effvit-b0", input_size=(64, 96)).eval()
    sd = dict(src.state_dict())
    # The window attention's relative position bias table of one task: shape differs.
    key = "decoders.depth.cwib8.0.local.rel_bias"
    sd[key] = sd[key][:, :10].clone()
    m = create_model("edge-effvit-b0", input_size=(64, 96), task_batched=True)
    m.decoders.depth.cwib8[0].local.rel_bias = nn.Parameter(torch.empty_like(sd[key]))
    fit_to_state_dict(m, sd)
    m.load_state_dict(sd)
    assert not m.eval().batchable()
    calls = _batched_calls(m)
    with torch.no_grad():
        with pytest.raises(IndexError):  # per-task path, which indexes the shrunk table
            m(torch.randn(1, 3, 64, 96))
    assert calls["batched"] == 0


def test_mac_counts_equal_per_part():
    """The batched graph does the same multiply-accumulates, except (a) the auxiliary heads,
    which inference does not need; (b) in CWIB, whose attention output projections are
    folded into the fuse weights: exactly 2·T·N·C² fewer per block, plus the small weight
    products that fold them (computed at run time in eager, constants in an export); (c) in
    MT-MQLFB, which trades h× the context MACs (one C×C product masked to its d×d head
    blocks, the normaliser as a matmul) for not splitting tensors into heads."""
    m = create_model("edge-effvit-b0")
    hw = (160, 240)  # 1/8 = 20×30: whole windows of 10 (padding would add rows to the batch)
    a = model_report(m, hw)
    m.cfg.task_batched = True
    b = model_report(m, hw)
    for part in ("backbone", "distiller", "heads"):
        assert a["parts"][part]["gmacs"] == pytest.approx(b["parts"][part]["gmacs"], rel=1e-9)
    t, c, hid, n = len(m.task_set), m.cfg.dim, int(m.cfg.dim * m.cfg.ffn_ratio), 20 * 30
    d, n16, scales = c // m.cfg.heads, 10 * 15, len(m.cfg.query_scales)
    extra = n16 * t * c * (c - d) + scales * n16 * t * c * (2 * c - d) + t * hid * c
    assert (b["parts"]["MT-MQLFB"]["gmacs"] - a["parts"]["MT-MQLFB"]["gmacs"]
            == pytest.approx(extra / 1e9, rel=1e-9))
    folded = 2 * t * n * c * c
    fold_cost = (t * 3 * c * c + t * c * c + t * 2 * c * c + t * hid * c  # norm affines
                 + 2 * t * c * c + 2 * t * c ** 3)  # projections into the fuse
    assert (a["parts"]["CWIB decoders"]["gmacs"] - b["parts"]["CWIB decoders"]["gmacs"]
            == pytest.approx((folded - fold_cost) / 1e9, rel=1e-9))
    aux = sum(hw[0] // 16 * hw[1] // 16 * c * t_.out_channels for t_ in m.task_set) / 1e9
    assert a["parts"]["preliminary decoders"]["gmacs"] - b["parts"][
        "preliminary decoders"]["gmacs"] == pytest.approx(aux, rel=1e-9)
    assert abs(sum(p["gmacs"] for p in b["parts"].values()) - b["gmacs"]) < 1e-9


def test_mac_counts_include_attention_on_cpu():
    """``scaled_dot_product_attention`` on CPU is counted (FlopCounterMode has no formula for
    its CPU kernel and counted 0): the distiller's M×(T·N) attention is in its MACs."""
    m = create_model("edge-effvit-b0")
    r = model_report(m, (160, 240))
    t, c, tokens, n = len(m.task_set), m.cfg.dim, m.cfg.num_tokens, 10 * 15
    linears = t * n * 2 * c * c + tokens * c * c * 2 + tokens * c * 4 * c * 2
    attention = 2 * tokens * t * n * c
    assert r["parts"]["distiller"]["gmacs"] == pytest.approx((linears + attention) / 1e9,
                                                              rel=1e-9)


def _ops(path) -> list[str]:
    import onnx

    return [n.op_type for n in onnx.load(str(path)).graph.node]


def test_batched_onnx_export_matches_per_task_torch(tiny_model, tiny_onnx, tmp_path):
    """The batched graph exports with the op types of the per-task one (grouped Conv, MatMul,
    Softmax, Transpose...), in less than half the nodes, and in ONNX Runtime reproduces the
    per-task PyTorch outputs."""
    import onnxruntime as ort

    from mtlsi_edge.export import INPUT_NAME, DeployModel, export_onnx

    tiny_model.cfg.task_batched = True
    try:
        path = export_onnx(tiny_model, tmp_path / "b.onnx")
    finally:
        tiny_model.cfg.task_batched = False
    ops, ref_ops = _ops(path), _ops(tiny_onnx)
    assert set(ops) <= set(ref_ops), set(ops) - set(ref_ops)  # no op the per-task graph lacks
    assert len(ops) < 0.5 * len(ref_ops), (len(ops), len(ref_ops))
    x = np.random.default_rng(0).normal(size=(1, 3, 64, 96)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(names, {INPUT_NAME: x})))
    dm = DeployModel(tiny_model).eval()
    with torch.inference_mode():
        ref = dict(zip(dm.output_names, (r.numpy() for r in dm(torch.from_numpy(x)))))
    for k in names:
        np.testing.assert_allclose(got[k], ref[k], atol=1e-4, rtol=0, err_msg=k)


@pytest.mark.slow
def test_batched_dynamic_export_runs_at_other_sizes(tiny_model, tmp_path):
    """Symbolic N, H, W (dynamo exporter, needs onnxscript): batch 2 and sizes the window does
    not divide, against the per-task PyTorch outputs."""
    import onnxruntime as ort

    from mtlsi_edge.compiler import reference_inputs
    from mtlsi_edge.export import INPUT_NAME, DeployModel, export_onnx

    tiny_model.cfg.task_batched = True
    try:
        path = export_onnx(tiny_model, tmp_path / "dyn.onnx", dynamic=True)
    finally:
        tiny_model.cfg.task_batched = False
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    dm = DeployModel(tiny_model).eval()
    for n, hw in [(2, (72, 104)), (1, (96, 128))]:
        x = reference_inputs(hw, n=n)
        got = dict(zip(names, sess.run(names, {INPUT_NAME: x})))
        with torch.inference_mode():
            ref = dict(zip(dm.output_names, (r.numpy() for r in dm(torch.from_numpy(x)))))
        for k in names:
            np.testing.assert_allclose(got[k], ref[k], atol=1e-4, rtol=0, err_msg=f"{k} {hw}")


@torch.no_grad()
def test_batched_fusion_keeps_the_fp32_guard():
    """The batched MT-MQLFB computes the linear-attention context in FP32 like the per-task
    one: in FP16 it stays finite where an unguarded context overflows."""
    import copy

    from mtlsi_edge.model.blocks import MTMQLFB

    torch.manual_seed(0)
    blk = MTMQLFB(32, ["a", "b"], heads=2).eval()
    blk.kv.weight.mul_(20)  # large keys/values: G = Σ φ(K)ᵀV reaches ~1e5
    x = torch.randn(1, 64, 48, 64)  # two tasks stacked along channels
    k, v = blk.kv(blk.norm(x[:, :32])).chunk(2, 1)
    g = blk._phi(blk._heads(k)).transpose(-1, -2) @ blk._heads(v)
    assert g.abs().max() > torch.finfo(torch.float16).max  # the case really exceeds FP16
    ref = blk(x)
    half = copy.deepcopy(blk).half()
    guarded = half(x.half())
    assert guarded.dtype == torch.float16 and torch.isfinite(guarded).all()
    assert ((guarded.float() - ref).abs().max() / ref.abs().max()).item() < 1e-2
    half.fp32_core = False
    assert not torch.isfinite(half(x.half())).all()


def test_static_export_pads_windows_only_when_needed(tmp_path):
    """A static export whose 1/8 map is a whole number of windows has no padding and no
    padding mask in the batched CWIB (the TorchScript exporter traces sizes as tensors; they
    are concrete there); a size the window does not divide keeps both."""
    from mtlsi_edge.export import export_onnx

    for hw, padded in (((80, 160), False), ((64, 96), True)):
        m = create_model("edge-effvit-b0", input_size=hw).eval()
        m.cfg.task_batched = True
        ops = [op for op, name in _ops_named(export_onnx(m, tmp_path / f"{hw[0]}.onnx"))
               if "/decoders/" in name]
        assert ("Pad" in ops) is padded, (hw, sorted(set(ops)))


def _ops_named(path) -> list[tuple[str, str]]:
    import onnx

    return [(n.op_type, n.name) for n in onnx.load(str(path)).graph.node]
