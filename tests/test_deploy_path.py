"""The deploy path does each step once: one checkpoint read into a model, one ONNX export,
one INT8 quantisation, and every bundle gated once (as a bundle)."""

from __future__ import annotations

import pytest

import mtlsi_edge.export as export_mod
import mtlsi_edge.train.checkpoint as ckpt_mod
from mtlsi_edge import verify
from mtlsi_edge.bundle import load_bundle
from mtlsi_edge.deploy import DeployRequest, run_deploy
from mtlsi_edge.quantize import ptq
from mtlsi_edge.quantize.run import QuantizeRequest


@pytest.fixture
def counted(monkeypatch):
    """Counts of checkpoint builds, model exports, quantisations and parity gates."""
    calls = {"checkpoint": 0, "export": 0, "quantize": 0, "gate": 0}

    def counting(module, name, key):
        real = getattr(module, name)

        def wrapper(*a, **k):
            calls[key] += 1
            return real(*a, **k)

        monkeypatch.setattr(module, name, wrapper)

    counting(ckpt_mod, "load_weights", "checkpoint")
    counting(export_mod, "_export_to", "export")
    counting(ptq, "quantize_model", "quantize")
    counting(verify, "gate", "gate")
    # quantize/run.py imported quantize_model by name: count it where it is called
    import mtlsi_edge.quantize.run as qrun

    monkeypatch.setattr(qrun, "quantize_model", ptq.quantize_model)
    return calls


def test_int8_deploy_builds_exports_and_gates_once(tiny_checkpoint, tmp_path, counted):
    req = DeployRequest("openvino", "int8", QuantizeRequest(n_calib=8))
    res = run_deploy(tiny_checkpoint, req, tmp_path / "d")
    assert counted == {"checkpoint": 1, "export": 1, "quantize": 1, "gate": 2}, counted
    # both bundles come from the one export, in the same deploy graph
    fp32, _ = load_bundle(res.fp32_bundle)
    assert (tmp_path / "d" / "openvino-int8").is_dir() or res.failed
    if not res.failed:
        int8, _ = load_bundle(res.bundle)
        assert int8["graph"] == fp32["graph"] and int8["precision"] == "int8"
        assert int8["parity"]["reference"] == "torch-fp32"
    assert (tmp_path / "d" / "report.md").is_file()


def test_fp16_deploy_builds_and_exports_once(tiny_checkpoint, tmp_path, counted):
    res = run_deploy(tiny_checkpoint, DeployRequest("openvino", "fp16"), tmp_path / "d")
    assert counted == {"checkpoint": 1, "export": 1, "quantize": 0, "gate": 2}, counted
    # the faster of the two by measurement ships; both are written and gated
    assert load_bundle(tmp_path / "d" / "openvino-fp16")[0]["precision"] == "fp16"
    assert res.bundle in (res.fp32_bundle, tmp_path / "d" / "openvino-fp16")
