"""One profiling run: the bundles to time (given, or compiled per target × precision from a
checkpoint by :func:`mtlsi_edge.compiler.compile_matrix`), their on-device self-check, the
measurements and the reports on disk."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from mtlsi_edge.backends import get_backend
from mtlsi_edge.bundle import load_bundle
from mtlsi_edge.errors import MtlsiError
from mtlsi_edge.profiler import report
from mtlsi_edge.profiler.bench import ProfileOptions, machine_header, profile_bundle
from mtlsi_edge.runtime.predictor import Predictor
from mtlsi_edge.signing import trusted_keys


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


@dataclass(frozen=True)
class ReportOptions:
    """Where :func:`profile_bundles` writes its reports, and how it draws the plots.

    json, csv, md: the report files (``None``: ``profile.json``, ``profile.csv`` and
      ``profile.md`` in the run folder).
    plot: the folder for the PNG plots (``None``: ``plots`` in the run folder).
    plotter: ``plotter(doc, folder)`` writes the plots and returns their paths (``None``: no
      plots; matplotlib is not part of the runtime install).
    """

    json: Path | None = None
    csv: Path | None = None
    md: Path | None = None
    plot: Path | None = None
    plotter: Callable[[dict, Path], list[Path]] | None = None


def profile_bundles(paths: list[Path], run_dir: Path, options: ProfileOptions | None = None,
                    reports: ReportOptions | None = None, *, notes: list[str] | None = None,
                    note: Callable[[str], None] | None = None, console=None
                    ) -> tuple[dict, dict[str, list[Path]]]:
    """Measure every bundle in ``paths`` as ``options`` say and write the reports
    (:class:`ReportOptions`; defaults under ``run_dir``); returns (report document, written
    files by kind).  ``notes`` becomes the document's list of notes, ``note(message)`` adds
    one (default: appends to ``notes``); ``console`` shows a status line per bundle."""

    options = options or ProfileOptions()
    reports = reports or ReportOptions()
    notes = notes if notes is not None else []
    note = note or notes.append
    doc = {"schema": report.SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "machine": machine_header(),
           "settings": {"mode": options.mode, "threads": options.threads,
                        "time_s": options.time_s, "runs": options.runs,
                        "frame_size": list(options.size) if options.size else None,
                        "per_layer": options.per_layer},
           "results": [], "notes": notes}
    for p in paths:
        row = _profile_one(p, options, console)
        if row.get("skipped"):
            note(f"{row['name']} ({options.mode}) skipped: {row['skipped']}")
        doc["results"].append(row)
    report.add_ratios(doc["results"])
    written = report.write_all(doc, reports.json or run_dir / "profile.json",
                               reports.csv or run_dir / "profile.csv",
                               reports.md or run_dir / "profile.md",
                               reports.plot or run_dir / "plots", reports.plotter)
    return doc, written


def _profile_one(path: Path, options: ProfileOptions, console) -> dict:
    """One bundle's result row, its progress on the console's status line; a runtime that
    refuses the model is a :class:`ProfileError` of one line."""
    try:
        with _status(console, f"profiling {path}…") as status:
            progress = (lambda msg, st=status: st.update(msg + "…")) if status else None
            return profile_bundle(path, options, progress=progress)
    except MtlsiError:
        raise
    except RuntimeError as e:  # a runtime refusing the model: one line, not a traceback
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ProfileError(f"{path}: {first}") from e
