"""One profiling run: the bundles to time (given, or compiled per target × precision from a
checkpoint by :func:`mtlsi_edge.compiler.compile_matrix`), their on-device self-check, the
measurements and the reports on disk."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

from mtlsi_edge.backends import get_backend
from mtlsi_edge.bundle import load_bundle
from mtlsi_edge.errors import MtlsiError
from mtlsi_edge.profiler import report
from mtlsi_edge.profiler.bench import machine_header, profile_bundle
from mtlsi_edge.runtime.predictor import Predictor
from mtlsi_edge.signing import trusted_keys

PRECISIONS = ("fp32", "fp16", "int8")


class ProfileError(MtlsiError):
    """Nothing to profile, an unknown target or precision, or a runtime refusing a bundle."""


def _status(console, msg: str):
    return console.status(msg) if console is not None else nullcontext()


def check_bundles(bundles: list[Path], trust: list[Path] | None = None) -> list[Path]:
    """The folders of ``bundles``; each must load (signed by a ``trust`` key, when any is
    set: :func:`mtlsi_edge.signing.trusted_keys`) and its target be available here."""

    keys = trusted_keys(trust)
    folders = []
    for b in bundles:
        m, folder = load_bundle(b, trust=keys)
        ok, why = get_backend(m["target"]).available()
        if not ok:
            raise ProfileError(f"{folder}: bundle needs target {m['target']}, unavailable "
                               f"here: {why}")
        folders.append(folder)
    return folders


def self_check(folder: Path):
    """Prove a bundle's outputs on this machine (VerificationError, exit 3, when it fails);
    returns the check report."""

    return Predictor.from_bundle(folder, verify=True).check


def profile_bundles(paths: list[Path], run_dir: Path, mode: str = "latency",
                    threads: int | None = None, time_s: float | None = None,
                    runs: int | None = None, frame: tuple[int, int] | None = None,
                    per_layer: bool = False, notes: list[str] | None = None,
                    report_paths: dict[str, Path | None] | None = None,
                    note: Callable[[str], None] | None = None, console=None,
                    plotter: Callable[[dict, Path], list[Path]] | None = None
                    ) -> tuple[dict, dict[str, list[Path]]]:
    """Measure every bundle in ``paths`` and write the reports (JSON, CSV, Markdown, and plots
    with ``plotter``; defaults under ``run_dir``); returns (report document, written files by
    kind)."""

    notes = notes if notes is not None else []
    note = note or notes.append
    doc = {"schema": report.SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "machine": machine_header(),
           "settings": {"mode": mode, "threads": threads, "time_s": time_s, "runs": runs,
                        "frame_size": list(frame) if frame else None, "per_layer": per_layer},
           "results": [], "notes": notes}
    for p in paths:
        try:
            with _status(console, f"profiling {p}…") as status:
                progress = (lambda msg, st=status: st.update(msg + "…")) if status else None
                row = profile_bundle(p, size=frame, threads=threads, mode=mode, time_s=time_s,
                                     runs=runs, per_layer=per_layer, progress=progress)
        except MtlsiError:
            raise
        except RuntimeError as e:  # a runtime refusing the model: one line, not a traceback
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ProfileError(f"{p}: {first}") from e
        if row.get("skipped"):
            note(f"{row['name']} ({mode}) skipped: {row['skipped']}")
        doc["results"].append(row)
    report.add_ratios(doc["results"])
    given = report_paths or {}
    written = report.write_all(doc, given.get("json") or run_dir / "profile.json",
                               given.get("csv") or run_dir / "profile.csv",
                               given.get("md") or run_dir / "profile.md",
                               given.get("plot") or run_dir / "plots", plotter)
    return doc, written
