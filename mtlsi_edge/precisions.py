"""The precisions a bundle can be built in: the one vocabulary every target list, gate
threshold table, CLI help and search order refers to."""

from __future__ import annotations

#: Every precision a target may offer (its ``precisions`` are a subset, in this order).
PRECISIONS = ("fp32", "fp16", "int8")
#: Fastest first where a runtime has kernels for each (``tune`` tries a resolution's fastest
#: gated precision first; its measured latency decides whether slower ones are tried).
SPEED_ORDER = ("int8", "fp16", "fp32")


def describe() -> str:
    """``fp32 | fp16 | int8`` for help texts."""
    return " | ".join(PRECISIONS)
