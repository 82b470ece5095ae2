"""A checkpoint write never destroys the previous checkpoint (issue: data loss on kill/full disk).

The previous ``last.json`` and the tensor files it names must stay loadable and resumable until
a new checkpoint is complete, whatever fails in between: an error while writing the weights,
the optimizer state or the JSON, a file-size limit (as a full disk), or SIGKILL.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mtlsi_edge.train import checkpoint as ck


def _tiny(seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    m = torch.nn.Linear(64, 64)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    m(torch.randn(2, 64)).sum().backward()
    opt.step()
    return m, opt


META = {"model_config": {}, "task_set": {}}


def _snapshot(folder: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.iterdir())}


def _assert_loads_as(stem: Path, model: torch.nn.Module, step: int) -> None:
    doc, sd = ck.load_weights(stem.with_suffix(".json"))
    assert doc["step"] == step
    assert torch.equal(sd["weight"], model.state_dict()["weight"])
    opt_state, _ = ck.load_training_state(doc, stem.parent)
    assert opt_state["state"]


def test_new_checkpoint_replaces_old_files(tmp_path):
    stem = tmp_path / "last"
    m1, o1 = _tiny(1)
    ck.save_checkpoint(stem, m1, {**META, "step": 1}, o1)
    first = set(_snapshot(tmp_path))
    m2, o2 = _tiny(2)
    ck.save_checkpoint(stem, m2, {**META, "step": 2}, o2)
    _assert_loads_as(stem, m2, 2)
    files = set(_snapshot(tmp_path))
    assert len(files) == 3 and files & first == {"last.json"}  # old tensor files removed
    # saving identical content again is harmless (content-named files)
    ck.save_checkpoint(stem, m2, {**META, "step": 2}, o2)
    _assert_loads_as(stem, m2, 2)


@pytest.mark.parametrize("fail_at", ["weights", "state", "json"])
def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch, fail_at):
    stem = tmp_path / "last"
    m1, o1 = _tiny(1)
    ck.save_checkpoint(stem, m1, {**META, "step": 1}, o1)
    before = _snapshot(tmp_path)

    real_save, real_json = ck._save_content_named, ck.atomic_write_json

    def save(stem_, kind, *a, **k):
        if (fail_at, kind) in (("weights", "safetensors"), ("state", "state.safetensors")):
            raise OSError(28, "No space left on device")
        return real_save(stem_, kind, *a, **k)

    def write_json(path, obj):
        if fail_at == "json":
            raise OSError(28, "No space left on device")
        return real_json(path, obj)

    monkeypatch.setattr(ck, "_save_content_named", save)
    monkeypatch.setattr(ck, "atomic_write_json", write_json)
    m2, o2 = _tiny(2)
    with pytest.raises(OSError):
        ck.save_checkpoint(stem, m2, {**META, "step": 2}, o2)
    assert _snapshot(tmp_path) == before  # nothing changed, nothing left behind
    _assert_loads_as(stem, m1, 1)


def test_file_size_limit_keeps_previous_checkpoint(tmp_path):
    """A real EFBIG (RLIMIT_FSIZE stands in for a full disk) in a separate process."""
    stem = tmp_path / "last"
    m1, o1 = _tiny(1)
    ck.save_checkpoint(stem, m1, {**META, "step": 1}, o1)
    before = _snapshot(tmp_path)
    code = f"""
import resource, signal, sys, torch
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_checkpoint_durability import _tiny, META
from mtlsi_edge.train import checkpoint as ck
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
m, o = _tiny(2)
try:
    ck.save_checkpoint({str(stem)!r}, m, {{**META, "step": 2}}, o)
except OSError as e:
    print("OSError", e.errno)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "OSError 27" in r.stdout, r.stdout + r.stderr  # EFBIG
    assert _snapshot(tmp_path) == before
    _assert_loads_as(stem, m1, 1)


def test_sigkill_between_writes_keeps_previous_checkpoint(tmp_path):
    """Kill the writer right after the new weights file exists, before the JSON is replaced."""
    stem = tmp_path / "last"
    m1, o1 = _tiny(1)
    ck.save_checkpoint(stem, m1, {**META, "step": 1}, o1)
    code = f"""
import os, signal, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_checkpoint_durability import _tiny, META
from mtlsi_edge.train import checkpoint as ck
real = ck._save_content_named
def save(stem, kind, *a, **k):
    out = real(stem, kind, *a, **k)
    if kind == "state.safetensors":
        os.kill(os.getpid(), signal.SIGKILL)
    return out
ck._save_content_named = save
m, o = _tiny(2)
ck.save_checkpoint({str(stem)!r}, m, {{**META, "step": 2}}, o)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert r.returncode == -9
    _assert_loads_as(stem, m1, 1)  # the old JSON and its files are intact
    # the next successful save cleans up what the killed one left
    m3, o3 = _tiny(3)
    ck.save_checkpoint(stem, m3, {**META, "step": 3}, o3)
    _assert_loads_as(stem, m3, 3)
    assert len(list(tmp_path.iterdir())) == 3


def test_safetensors_path_of_new_layout_finds_its_json(tmp_path):
    stem = tmp_path / "last"
    m, o = _tiny(1)
    path = ck.save_checkpoint(stem, m, {**META, "step": 1}, o)
    doc = json.loads(path.read_text())
    for name in (doc["weights"], doc["state"], "last.safetensors"):
        assert ck.read_checkpoint_meta(tmp_path / name)[1] == path


def test_weights_entry_outside_folder_refused(tmp_path):
    stem = tmp_path / "last"
    m, o = _tiny(1)
    path = ck.save_checkpoint(stem, m, {**META, "step": 1}, o)
    doc = json.loads(path.read_text())
    doc["weights"] = "../elsewhere.safetensors"
    path.write_text(json.dumps(doc))
    with pytest.raises(ck.CheckpointError, match="must name a file next to it"):
        ck.load_weights(path)
