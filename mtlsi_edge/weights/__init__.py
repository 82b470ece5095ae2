"""The embedded starter checkpoint (package data; see README.md in this folder)."""

from __future__ import annotations

from pathlib import Path

from mtlsi_edge.errors import MtlsiError

STARTER = Path(__file__).parent / "starter.json"


class StarterMissing(MtlsiError):
    """This install ships without the starter checkpoint (e.g. a slim wheel)."""


def starter_checkpoint() -> Path:
    """Path of the embedded starter checkpoint (trained on SynthIndoor)."""
    if not STARTER.is_file():
        raise StarterMissing("no embedded starter checkpoint in this install; pass --checkpoint")
    return STARTER
