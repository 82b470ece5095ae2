"""Checkpoints: safetensors for every tensor, JSON for everything else, written atomically.

A checkpoint ``NAME`` is three files in one folder::

    NAME.<hash>.safetensors        model weights (what export, quantise and the demo read)
    NAME.<hash>.state.safetensors  optimizer tensors and torch RNG state (training resume only)
    NAME.json                      model config, task set, step, optimizer scalars, train
                                   config, and the names and sha256 of both tensor files

Tensor files are named by their content, so writing a new checkpoint never touches the files
the current ``NAME.json`` points to: the JSON is replaced last (atomically), and only then are
the previous tensor files removed.  A crash or a full disk at any point leaves the previous
checkpoint loadable.  Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mtlsi_edge.errors import ConfigError, MtlsiError
from mtlsi_edge.fileio import atomic_write, atomic_write_json, read_json_doc, sha256
from mtlsi_edge.model.mtlsi import MTLSIConfig
from mtlsi_edge.model.restore import PRUNE_METHODS, WeightsMismatch, model_from_state_dict

SCHEMA = "mtlsi-edge/checkpoint@1"
_OURS = re.compile(r".+\.[0-9a-f]{12}\.(state\.)?safetensors")


class CheckpointError(MtlsiError, ValueError):
    """A checkpoint that cannot be used; the message is one line naming the file."""


def atomic_save_tensors(path: str | Path, tensors: dict[str, torch.Tensor],
                        metadata: dict[str, str] | None = None) -> Path:
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}

    def write(tmp: str) -> None:
        try:
            save_file(tensors, tmp, metadata)
            with open(tmp, "rb") as f:  # on disk before the JSON may point at it
                os.fsync(f.fileno())
        except SafetensorError as e:  # its I/O failures are OSErrors in disguise
            m = re.search(r"os error (\d+)", str(e))
            if m is None:
                raise
            code = int(m.group(1))
            raise OSError(code, os.strerror(code), str(path)) from None

    return atomic_write(path, write)


def _save_content_named(stem: Path, kind: str, tensors: dict[str, torch.Tensor],
                        metadata: dict[str, str] | None = None) -> tuple[Path, str]:
    """Write ``tensors`` to ``stem.<sha12>.<kind>`` (never over a file in use); (path, sha256)."""
    tmp = atomic_save_tensors(stem.with_name(f".{stem.name}.new.{kind}"), tensors, metadata)
    try:
        digest = sha256(tmp)
        final = stem.with_name(f"{stem.name}.{digest[:12]}.{kind}")
        os.replace(tmp, final)  # same content if it exists: replacing it changes nothing
    finally:
        tmp.unlink(missing_ok=True)
    return final, digest


def _previous_files(json_path: Path) -> set[str]:
    """Tensor file names the current checkpoint JSON refers to (none if it is unreadable)."""
    try:
        doc = json.loads(json_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return set()
    if not isinstance(doc, dict):
        return set()
    return {doc[k] for k in ("weights", "state")
            if isinstance(doc.get(k), str) and Path(doc[k]).name == doc[k]}


def _split_optimizer(opt_state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state_dict → (flat tensors, JSON-able rest)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for pid, st in opt_state["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{pid}.{k}"] = v
            else:
                scalars.setdefault(str(pid), {})[k] = v
    return tensors, {"param_groups": opt_state["param_groups"], "scalars": scalars}


def _join_optimizer(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, pid, k = key.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    for pid, d in rest["scalars"].items():
        state.setdefault(int(pid), {}).update(d)
    return {"state": state, "param_groups": rest["param_groups"]}


def save_checkpoint(stem: str | Path, model: torch.nn.Module, meta: dict[str, Any],
                    optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any | None = None, extra_state: dict | None = None) -> Path:
    """Save ``stem``.{safetensors,state.safetensors,json}; returns the JSON path.

    ``meta`` must hold ``model_config`` and ``task_set`` (dicts); it is stored verbatim.
    """
    stem = Path(stem)
    path = stem.with_suffix(".json")
    previous = _previous_files(path)
    written: list[Path] = []
    try:
        weights, wsha = _save_content_named(stem, "safetensors", dict(model.state_dict()),
                                            {"schema": SCHEMA})
        written.append(weights)
        doc: dict[str, Any] = {"schema": SCHEMA, **meta, "weights": weights.name,
                               "weights_sha256": wsha}
        if optimizer is not None:
            tensors, rest = _split_optimizer(optimizer.state_dict())
            tensors["rng.torch"] = torch.get_rng_state()
            state, ssha = _save_content_named(stem, "state.safetensors", tensors)
            written.append(state)
            doc.update(state=state.name, state_sha256=ssha, optimizer=rest,
                       scheduler=scheduler.state_dict() if scheduler is not None else None,
                       **(extra_state or {}))
        atomic_write_json(path, doc)
    except BaseException:
        for f in written:  # the previous checkpoint stays as it was
            if f.name not in previous:
                f.unlink(missing_ok=True)
        raise
    # Only now is the previous checkpoint superseded: drop its tensor files and any left
    # over by an earlier interrupted save.
    keep = {doc["weights"], doc.get("state")}
    stale = previous | {f.name for f in stem.parent.iterdir() if _OURS.fullmatch(f.name)
                        and f.name.startswith(stem.name + ".")}
    for name in stale - keep:
        (stem.parent / name).unlink(missing_ok=True)
    return path


def read_checkpoint_meta(path: str | Path) -> tuple[dict, Path]:
    """Read and validate a checkpoint's JSON (given the .json or .safetensors path)."""
    p = Path(path)
    if p.suffix == ".safetensors":
        # NAME.safetensors (older checkpoints) or NAME.<sha12>[.state].safetensors
        parts = p.name.removesuffix(".safetensors").removesuffix(".state").split(".")
        if len(parts) > 1 and re.fullmatch(r"[0-9a-f]{12}", parts[-1]):
            parts = parts[:-1]
        p = p.with_name(".".join(parts) + ".json")
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint not found")
    doc = read_json_doc(p, SCHEMA, ("model_config", "task_set", "weights", "weights_sha256"),
                        CheckpointError, "checkpoint JSON")
    return doc, p


def load_weights(path: str | Path, verify: bool = True) -> tuple[dict, dict[str, torch.Tensor]]:
    """Return (meta, state_dict) of a checkpoint, checking the weights' sha256."""
    doc, p = read_checkpoint_meta(path)
    if not isinstance(doc["weights"], str) or Path(doc["weights"]).name != doc["weights"]:
        raise CheckpointError(f"{p}: 'weights' must name a file next to it, "
                              f"got {doc['weights']!r}")
    wpath = p.parent / doc["weights"]
    if not wpath.is_file():
        raise CheckpointError(f"{wpath}: weights file missing")
    if verify and sha256(wpath) != doc["weights_sha256"]:
        raise CheckpointError(f"{wpath}: sha256 does not match {p.name} (modified or torn write)")
    try:
        return doc, load_file(str(wpath))
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{wpath}: unreadable safetensors ({e})") from None


def load_training_state(doc: dict, folder: Path) -> tuple[dict, torch.Tensor]:
    """Optimizer state_dict and torch RNG state of a checkpoint written with an optimizer."""
    if not isinstance(doc.get("state"), str) or Path(doc["state"]).name != doc["state"]:
        raise CheckpointError(f"{folder}: checkpoint has no training state to resume from")
    spath = folder / doc["state"]
    if not spath.is_file():
        raise CheckpointError(f"{spath}: training state file missing")
    if sha256(spath) != doc["state_sha256"]:
        raise CheckpointError(f"{spath}: sha256 does not match the checkpoint JSON")
    tensors = load_file(str(spath))
    return _join_optimizer(tensors, doc["optimizer"]), tensors["rng.torch"]


def build_from_checkpoint(path: str | Path, task_set: str | None = None):
    """Rebuild the model of a checkpoint with its weights (eval mode).

    ``task_set``: when given, refuse a checkpoint trained for another task set.
    """
    doc, sd = load_weights(path)
    try:
        cfg = MTLSIConfig.from_dict(doc["model_config"])
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from None
    pruned = doc.get("pruned")
    if pruned is not None and not (isinstance(pruned, dict)
                                   and pruned.get("method") in PRUNE_METHODS):
        raise CheckpointError(f"{path}: 'pruned' must be null or an object with method "
                              f"channels|magnitude, got {pruned!r}")
    if task_set is not None and cfg.task_set != task_set:
        raise CheckpointError(
            f"{path}: checkpoint is for task set {cfg.task_set!r}, not {task_set!r}")
    try:
        model = model_from_state_dict(cfg, sd, pruned)
    except WeightsMismatch as e:
        raise CheckpointError(f"{path}: weights do not fit the model config ({e})") from None
    return model.eval(), doc
