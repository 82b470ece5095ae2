"""MTLSI-Net and its variant registry."""

from mtlsi_edge.model.mtlsi import (
    DEFAULT_VARIANT,
    PARTS,
    VARIANTS,
    MTLSIConfig,
    MTLSINet,
    Variant,
    create_model,
    register_variant,
)

__all__ = [
    "DEFAULT_VARIANT", "PARTS", "VARIANTS", "MTLSIConfig", "MTLSINet", "Variant",
    "create_model", "register_variant",
]
