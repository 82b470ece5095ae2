"""Wall time of ``mtlsi-edge deploy`` before and after a change, measured in one run.

"Before" is a git revision (default: the commit issue 23 started from), unpacked with
``git archive`` into a temporary folder in the installed layout (``quantize/``, ``targets/``
and ``calibration/`` under ``mtlsi_edge/``) and run with this environment's Python via
``PYTHONPATH``; "after" is this working tree.  Both run the same command on the same
checkpoint (the 'before' tree's embedded starter) in alternating rounds (so a drift of the
machine hits both alike), each a fresh process, each into a fresh folder.

    python -m benchmarks.deploy_time                      # 2 rounds, openvino int8, no --val
    python -m benchmarks.deploy_time --rounds 3 --before HEAD~5 -- --n-calib 64

Run it alone: two heavy jobs on 2 cores slow each other 5-10x.
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from mtlsi_edge.machine import describe

ROOT = Path(__file__).resolve().parents[1]
#: The commit issue 23 ("the build path in one direction") was started from.
BEFORE = "e4e12e9"
#: Folders the installed package maps under ``mtlsi_edge`` (pyproject's package-dir).
MAPPED = ("quantize", "targets", "calibration")


def unpack(rev: str, dest: Path) -> Path:
    """``rev``'s package in the installed layout under ``dest``; returns ``dest``."""
    blob = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "mtlsi_edge", *MAPPED],
                          check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(dest / "src", filter="data")
    for name in MAPPED:
        shutil.move(str(dest / "src" / name), dest / "src" / "mtlsi_edge" / name)
    return dest / "src"


def run_deploy(pythonpath: Path | None, out: Path, extra: list[str]) -> float:
    """Seconds of one ``deploy`` process (checked: it must succeed or keep FP32 with exit 3)."""
    env = None
    if pythonpath is not None:
        import os

        env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    cmd = [sys.executable, "-m", "mtlsi_edge.cli", "deploy", "--target", "openvino",
           "--precision", "int8", "--out", str(out), *extra]
    t = time.perf_counter()
    res = subprocess.run(cmd, env=env, cwd=out.parent, capture_output=True, text=True)
    took = time.perf_counter() - t
    if res.returncode not in (0, 3):
        raise SystemExit(f"deploy failed ({res.returncode}): {res.stderr.strip()[-500:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", default=BEFORE, help="git revision of 'before'")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("extra", nargs="*", help="more deploy options (after --)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="deploy-time-") as tmp:
        tmp = Path(tmp)
        old = unpack(a.before, tmp)
        # one checkpoint for both: the 'before' tree's embedded starter (a later starter may be
        # another variant)
        extra = ["--checkpoint", str(old / "mtlsi_edge" / "weights" / "starter.json"), *a.extra]
        times: dict[str, list[float]] = {"before": [], "after": []}
        for r in range(a.rounds):
            for name, path in (("before", old), ("after", None)):
                out = tmp / f"{name}-{r}"
                times[name].append(run_deploy(path, out, extra))
                print(f"round {r + 1}: {name} {times[name][-1]:.1f} s", flush=True)
    b, n = statistics.median(times["before"]), statistics.median(times["after"])
    print(f"\n{describe()}; `deploy --target openvino --precision int8 {' '.join(a.extra)}`"
          f"; {a.rounds} alternating rounds, median wall time\n")
    print("| code | median s | runs (s) |\n|---|---|---|")
    print(f"| before ({a.before}) | {b:.1f} | {', '.join(f'{t:.1f}' for t in times['before'])} |")
    print(f"| after (this tree) | {n:.1f} | {', '.join(f'{t:.1f}' for t in times['after'])} |")
    print(f"\nafter / before: {n / b:.2f} ({100 * (1 - n / b):.0f} % less wall time)")


if __name__ == "__main__":
    main()
