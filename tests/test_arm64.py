"""The runtime half on emulated arm64 CPUs: ``benchmarks/arm64_check.sh`` (docs/devices.md).

Slow (about 20 minutes on a 2-core x86-64 machine, more on a first run that downloads and
compiles): run with ``pytest -m slow tests/test_arm64.py``.  Needs an x86-64 Debian/Ubuntu
machine with apt (the script installs qemu-user-static and Debian's arm64 packages) and this
full install (it compiles the bundles); skipped only where qemu-user-static cannot be installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "arm64_check.sh"
CPUS = ("cortex-a72", "neoverse-n1", "max")
COLUMNS = 13  # the script's table


def _rows(stdout: str) -> dict[tuple[str, str, str], list[str]]:
    """(CPU model, bundle, "main" | "control") → the table row's cells."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == COLUMNS and cells[0] in CPUS:
            role = "control" if "(control)" in cells[2] else "main"
            rows[(cells[0], cells[1], role)] = cells
    return rows


@pytest.mark.slow
@pytest.mark.timeout(7200)
def test_arm64_emulation_verdicts():
    # The script's defaults, whatever this shell has set; the full install is this Python's.
    env = {k: v for k, v in os.environ.items()
           if k not in {"CPUS", "REAL_CPUS", "ORT_VERSION", "ORT_CONTROL", "CONTROL_CPUS",
                        "QEMU", "EMU_TIMEOUT"}}
    env["VENV"] = sys.prefix
    proc = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=7000)
    if proc.returncode == 4:
        why = (proc.stderr.strip().splitlines() or ["exit 4"])[-1]
        pytest.skip(f"qemu-user-static cannot be installed here: {why}")
    out = proc.stdout
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out[-6000:]}\n{proc.stderr[-6000:]}"

    assert "torch importable: no" in out
    assert "say nothing about the speed of any real arm64 hardware" in out
    assert "arm64_check: every verdict as required" in out
    rows = _rows(out)
    expected = {(cpu, t, "main") for cpu in CPUS for t in ("openvino", "onnxruntime")}
    expected.add(("max", "onnxruntime", "control"))
    assert set(rows) == expected, out

    for key in sorted(expected - {("max", "onnxruntime", "control")}):
        cells = rows[key]
        # The pinned device install, on every CPU model (qemu's max included): check passes
        # and the outputs agree with x86-64.
        assert cells[3] == "pass (0)", (key, cells)
        assert cells[4] == "pass", (key, cells)
        assert cells[9] == "agree", (key, cells)
        assert cells[10] == "as required", (key, cells)

    # The control (ONNX Runtime 1.26.0 under -cpu max, its KleidiAI SME kernels): wrong
    # outputs, and check refuses them in one line with exit 3.
    cells = rows[("max", "onnxruntime", "control")]
    assert cells[2].startswith("onnxruntime 1.26.0"), cells
    assert cells[3] == "refused (3)", cells
    assert cells[4].startswith("error:") and "FAILED on this machine" in cells[4], cells
    assert cells[9] == "WRONG", cells
    assert cells[10] == "as required", cells
