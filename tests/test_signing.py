"""Signed bundles: keys, --sign, --trust, MTLSI_EDGE_TRUST, and what a trusted key refuses."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtlsi_edge.bundle import MANIFEST, load_bundle, write_manifest
from mtlsi_edge.cli import app
from mtlsi_edge.compiler import sign_written
from mtlsi_edge.errors import ConfigError
from mtlsi_edge.runtime.predictor import Predictor
from mtlsi_edge.signing import (
    SIGNATURE_FILE,
    TRUST_ENV,
    SignatureError,
    key_id,
    load_public_key,
    new_key_pair,
    trusted_keys,
)

ROOT = Path(__file__).resolve().parents[1]


def one_error_line(res) -> str:
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1, res.output
    return errors[0]


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    new_key_pair(d, "ops")
    new_key_pair(d, "other")
    return d


@pytest.fixture()
def signed(bundle, keys, tmp_path) -> Path:
    b = shutil.copytree(bundle("onnxruntime"), tmp_path / "b")
    sign_written(b, keys / "ops.key")
    return b


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_key_pair_files(keys, tmp_path):
    assert stat.S_IMODE(os.stat(keys / "ops.key").st_mode) == 0o600
    assert "PRIVATE KEY" in (keys / "ops.key").read_text()
    assert len(key_id(load_public_key(keys / "ops.pub"))) == 16
    with pytest.raises(ConfigError, match="refusing to replace"):
        new_key_pair(keys, "ops")
    res = run("keys", "new", "--out", keys, "--name", "ops")
    assert res.exit_code == 2 and "--overwrite" in one_error_line(res)


def test_round_trip(signed, keys, bundle, tmp_path):
    ops, other = keys / "ops.pub", keys / "other.pub"
    res = run("check", signed, "--trust", ops)
    assert res.exit_code == 0, res.output
    assert "signed by trusted key" in res.output and "(verified)" in res.output
    res = run("check", signed, "--trust", other)
    assert res.exit_code == 3 and "not trusted here" in one_error_line(res)
    res = run("check", signed)  # no trust: works, says what it found
    assert res.exit_code == 0 and "not verified" in res.output
    unsigned = bundle("onnxruntime")
    res = run("check", unsigned, "--trust", ops)
    assert res.exit_code == 3 and "unsigned bundle refused" in one_error_line(res)
    assert "unsigned" in run("check", unsigned).output
    # a folder of keys trusts each of them
    assert run("check", signed, "--trust", keys).exit_code == 0


def test_rehashed_threshold_edit_is_refused(signed, keys):
    m = json.loads((signed / MANIFEST).read_text())
    m.pop("integrity")
    m["reference"]["thresholds"]["semseg"] = 60.0  # valid range, re-hashed: the hash passes
    write_manifest(signed, m)
    load_bundle(signed)  # the checksums alone accept it
    with pytest.raises(SignatureError, match="edited after signing"):
        load_bundle(signed, trust=trusted_keys([keys / "ops.pub"]))
    res = run("check", signed, "--trust", keys / "ops.pub")
    assert res.exit_code == 3 and "edited after signing" in one_error_line(res)


def test_swapped_signature_file_and_garbage(signed, keys, bundle, tmp_path):
    other = shutil.copytree(bundle("openvino"), tmp_path / "ov")
    sign_written(other, keys / "ops.key")
    shutil.copyfile(other / SIGNATURE_FILE, signed / SIGNATURE_FILE)  # valid sig, other bundle
    with pytest.raises(SignatureError, match="edited after signing"):
        load_bundle(signed, trust=trusted_keys([keys / "ops.pub"]))
    (signed / SIGNATURE_FILE).write_text("{not json")
    res = run("check", signed, "--trust", keys / "ops.pub")
    assert res.exit_code == 2 and "unreadable signature" in one_error_line(res)


def test_environment_variable_and_predictor(signed, keys, bundle, monkeypatch):
    monkeypatch.setenv(TRUST_ENV, str(keys / "other.pub"))
    with pytest.raises(SignatureError, match="not trusted"):
        Predictor.from_bundle(signed)
    p = Predictor.from_bundle(signed, trust=[keys / "ops.pub"])  # explicit beats the env
    assert p.signature.verified and p.signature.key_id == key_id(load_public_key(
        keys / "ops.pub"))
    monkeypatch.setenv(TRUST_ENV, str(keys / "nope.pub"))
    with pytest.raises(ConfigError, match="trusted key not found"):
        Predictor.from_bundle(signed)


def test_compile_sign_option(keys, tiny_checkpoint, tmp_path):
    res = run("compile", "--target", "onnxruntime", "--checkpoint", tiny_checkpoint, "--out",
              tmp_path / "c", "--sign", keys / "ops.pub", "--device", "cpu")
    assert res.exit_code == 2 and "private key" in one_error_line(res)
    assert not (tmp_path / "c").exists()  # refused before any work
    res = run("compile", "--target", "onnxruntime", "--checkpoint", tiny_checkpoint, "--out",
              tmp_path / "c", "--sign", keys / "ops.key", "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "c" / SIGNATURE_FILE).is_file()
    assert run("check", tmp_path / "c", "--trust", keys / "ops.pub").exit_code == 0


def test_verification_in_the_runtime_only_install(signed, keys):
    """The check runs with the build half unimportable (a device's install)."""
    block = ("import sys, importlib.abc\n"
             "class B(importlib.abc.MetaPathFinder):\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        if name.split('.')[0] in {'torch','timm','torchvision','nncf','onnx',"
             "'scipy','skimage','matplotlib','onnxscript','torch_pruning'}:\n"
             "            raise ImportError('blocked: ' + name)\n"
             "sys.meta_path.insert(0, B())\n"
             "from mtlsi_edge.cli import main\n"
             "sys.argv = ['mtlsi-edge'] + sys.argv[1:]\n"
             "main()\n")
    for trust, code, words in ((keys / "ops.pub", 0, "(verified)"),
                               (keys / "other.pub", 3, "not trusted")):
        r = subprocess.run([sys.executable, "-c", block, "check", str(signed), "--trust",
                            str(trust)], capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == code, r.stdout + r.stderr
        assert words in r.stdout + r.stderr
