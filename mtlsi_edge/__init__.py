"""mtlsi-edge: MTLSI-Net from training to real-time edge deployment."""

__version__ = "0.1.0"
