"""mtlsi-edge: MTLSI-Net from training to real-time edge deployment.

The public API (imported on first use, so ``import mtlsi_edge`` stays light)::

    from mtlsi_edge import create_model, compile_bundle, CompileRequest, load_bundle, Predictor
"""

from __future__ import annotations

import importlib

from mtlsi_edge._version import __version__

#: name → module that defines it
_API = {
    "create_model": "mtlsi_edge.model.mtlsi",
    "MTLSIConfig": "mtlsi_edge.model.mtlsi",
    "Predictor": "mtlsi_edge.runtime.predictor",
    "compile_bundle": "mtlsi_edge.compiler",
    "CompileRequest": "mtlsi_edge.compiler",
    "load_bundle": "mtlsi_edge.bundle",
    "check_bundle": "mtlsi_edge.verify",
    "TaskSet": "mtlsi_edge.tasks",
    "get_task_set": "mtlsi_edge.tasks",
    "MtlsiError": "mtlsi_edge.errors",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'mtlsi_edge' has no attribute {name!r}")
