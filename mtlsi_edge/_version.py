"""The package version (a leaf module: the root ``__init__`` and the bundle writer read it)."""

__version__ = "0.1.0"
