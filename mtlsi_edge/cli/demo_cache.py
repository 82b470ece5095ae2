"""The demo's bundle cache: ``demo`` / ``predict`` without ``--bundle`` run a bundle of the
checkpoint compiled once under ``runs/demo/bundles`` and reused while it loads."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

from mtlsi_edge.bundle import load_bundle
from mtlsi_edge.errors import BundleError


def cached_bundle(checkpoint: str | Path, target: str, precision: str,
                  cache: str | Path = "runs/demo/bundles", console=None) -> Path:
    """A bundle of ``checkpoint`` for target/precision, compiled once under ``cache`` (keyed
    by the target's default graph and the weights' hash) and reused while it loads and
    carries reference outputs."""
    from mtlsi_edge.compiler import CompileRequest, compile_bundle
    from mtlsi_edge.targets import CompileOptions, get_target
    from mtlsi_edge.train.checkpoint import read_checkpoint_meta

    doc, _ = read_checkpoint_meta(checkpoint)
    tgt = get_target(target)
    # keyed by the target's default graph too: a bundle cached before that default changed
    # is not reused
    out = Path(cache) / f"{target}-{precision}-{tgt.default_graph}-{doc['weights_sha256'][:12]}"
    try:
        if load_bundle(out)[0].get("reference"):
            return out
    except BundleError:
        pass  # missing, damaged, or made before bundles carried references: compile again
    msg = f"compiling the model for {target} {precision} (once)…"
    with console.status(msg) if console is not None else nullcontext():
        return compile_bundle(out, CompileRequest(
            target, precision, checkpoint=Path(checkpoint),
            options=CompileOptions(device=tgt.default_device)))
