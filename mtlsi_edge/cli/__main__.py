"""``python -m mtlsi_edge.cli`` (used by torchrun launches)."""

from mtlsi_edge.cli import main

main()
