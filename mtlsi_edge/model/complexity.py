"""Parameter and MAC counts per part of MTLSI-Net, and eager latency.

MACs come from ``torch.utils.flop_counter.FlopCounterMode`` (matmul, conv, attention; like
fvcore, element-wise ops are not counted): deterministic, so tests can assert on them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from mtlsi_edge.model.eager import eager_latency_ms
from mtlsi_edge.model.mtlsi import PARTS, MTLSINet, create_model


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


#: ``scaled_dot_product_attention`` on CPU dispatches to an op FlopCounterMode has no formula
#: for (it would count 0): count it like the other SDPA kernels, as its two batched matmuls.
_MAPPING = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}


def count_macs(fn: Callable[[], object], module: nn.Module) -> dict[str, int]:
    """Run ``fn`` under a FLOP counter; returns MACs per module path (``"Global"`` = total)."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)  # the counter's module tracker trips over no_grad; avoid autograd
    try:
        with FlopCounterMode(display=False, depth=None, custom_mapping=_MAPPING) as fc:
            fn()
    finally:
        for p, f in zip(module.parameters(), flags):
            p.requires_grad_(f)
    return {k: sum(v.values()) // 2 for k, v in fc.get_flop_counts().items()}


def _part_total(counts: dict[str, int], prefix: str) -> int:
    """Sum the outermost entries under ``prefix`` (nested entries are already included)."""
    keys = [k for k in counts if k == prefix or k.startswith(prefix + ".")]
    return sum(counts[k] for k in keys if not any(k.startswith(o + ".") for o in keys if o != k))


def model_report(model: MTLSINet, size: tuple[int, int] | None = None) -> dict:
    """Params and GMACs per part at ``size`` (default: the variant's input size), batch 1."""
    size = size or model.cfg.input_size
    model.eval()
    x = torch.zeros(1, 3, *size)
    counts = count_macs(lambda: model(x), model)
    root = type(model).__name__
    parts = {}
    for part, prefix in PARTS.items():
        mod = getattr(model, prefix)
        parts[part] = {
            "params": sum(p.numel() for p in mod.parameters()),
            "gmacs": _part_total(counts, f"{root}.{prefix}") / 1e9,
        }
    return {
        "input_size": list(size),
        "parts": parts,
        "params": sum(p.numel() for p in model.parameters()),
        "gmacs": counts.get("Global", 0) / 1e9,
    }


def variant_report(name: str, size: tuple[int, int], latency: bool = False) -> dict:
    """``info`` for variant ``name`` at ``size``: its config, params and GMACs per part
    (random weights, seed 0); with ``latency`` also the eager FP32 median (ms) and threads."""
    torch.manual_seed(0)
    model = create_model(name)
    rep = {"variant": name, "config": model.cfg.to_dict(), **model_report(model, size)}
    if latency:
        rep["eager_fp32_ms"] = eager_latency_ms(model, size)
        rep["threads"] = torch.get_num_threads()
    return rep


@functools.lru_cache(maxsize=16)
def _bundle_complexity(cfg_json: str, size: tuple[int, int]) -> str:
    import json

    from mtlsi_edge.model.mtlsi import MTLSIConfig

    cfg = MTLSIConfig.from_dict(json.loads(cfg_json))
    cfg.pretrained = False  # structure only: never download weights to count MACs
    with torch.random.fork_rng():
        model = MTLSINet(cfg).eval()
    rep = model_report(model, size)
    tasks = model.task_set.names
    structure = {
        "tasks": tasks,
        "prelim": sorted({k for t in tasks for k, _ in model.prelim[t].named_children()}),
        "decoders": sorted({k for t in tasks for k, _ in model.decoders[t].named_children()}),
    }
    return json.dumps({"params": rep["params"], "gmacs": rep["gmacs"], "structure": structure})


def bundle_complexity(cfg: dict, size: tuple[int, int]) -> dict:
    """What a bundle's manifest records of its model (``"complexity"``), so that the device's
    profiler reports GFLOP/s and groups per-layer times by part without building the model:
    parameters, GMACs at ``size`` and the child module names of the preliminary decoders and
    task decoders (``profiler.bench.classify_node``)."""
    import json

    return json.loads(_bundle_complexity(json.dumps(cfg, sort_keys=True), tuple(size)))
