"""Option parsing shared by several commands (sizes, variant names)."""

from __future__ import annotations

from mtlsi_edge.cli.app import fail

MAX_SIDE = 4096


def parse_size(s: str) -> tuple[int, int]:
    """``HxW`` with both sides in 32..4096 (the model pads to its stride itself; past 4096 a
    single frame's activations no longer fit in memory on an edge device)."""
    try:
        h, w = (int(x) for x in s.lower().split("x"))
    except ValueError:
        fail(f"bad size {s!r}: expected HxW, e.g. 240x320")
    if not (32 <= h <= MAX_SIDE and 32 <= w <= MAX_SIDE):
        big = (f" (one {h}×{w} float image alone is {3 * 4 * h * w / 2**30:.3g} GiB)"
               if max(h, w) > MAX_SIDE else "")
        fail(f"bad size {s!r}: both sides must be in 32..{MAX_SIDE}{big}")
    return h, w


def check_variant(name: str) -> None:
    """Exit with one line when ``name`` is not a known variant."""
    from mtlsi_edge.model import VARIANTS

    if name not in VARIANTS:
        fail(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
