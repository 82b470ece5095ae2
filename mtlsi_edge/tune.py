"""``mtlsi-edge tune``: the most accurate bundle that meets a latency budget on this machine.

The search space is input resolution × precision × runtime knobs (threads, performance hint).
Every (resolution, precision) is built as a real bundle (:func:`mtlsi_edge.compiler.
compile_bundle`, INT8 through :func:`mtlsi_edge.deploy.build_int8_bundle`) and must pass its
parity gate or is discarded with the reason; a resolution's checkpoint is built and exported
once.  A resolution whose fastest gated precision misses the budget is not tried at the
slower ones (:data:`mtlsi_edge.precisions.SPEED_ORDER`; measured, not assumed: the fastest
one's latency is what decides).  Each knob setting is timed end to end
(``Predictor(frame)`` on a frame of ``frame_size``) and scored: without labels by agreement
with the FP32 bundle at the training size on held-out frames, with ``val`` by the labelled
metrics relative to that same reference.  Structured pruning is not searched (yet).
Details: ``docs/tune.md``.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.progress import Progress

from mtlsi_edge.bundle import check_destination
from mtlsi_edge.compiler import CompileRequest, Exported, compile_bundle, export_checkpoint
from mtlsi_edge.data.seeds import gate_frames
from mtlsi_edge.deploy import build_int8_bundle
from mtlsi_edge.errors import MtlsiError
from mtlsi_edge.evaluation import evaluate_predictor, load_val_set
from mtlsi_edge.fileio import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    replace_dir,
)
from mtlsi_edge.precisions import SPEED_ORDER
from mtlsi_edge.quantize.run import QuantizeRequest
from mtlsi_edge.runtime.predictor import Predictor
from mtlsi_edge.targets import TARGETS, CompileOptions, Target, get_target
from mtlsi_edge.timing import time_call
from mtlsi_edge.train.checkpoint import build_from_checkpoint, read_checkpoint_meta
from mtlsi_edge.verify import VerificationError
from mtlsi_edge.verify import measure as agreement

DEFAULT_SCALES = (1.0, 0.8, 0.67, 0.5)


class TuneError(MtlsiError, ValueError):
    """Bad tune arguments (budget, sizes, precisions)."""


class BudgetNotMet(MtlsiError):
    """No gated candidate meets the budget (exit code 3); the message names the fastest."""

    exit_code = 3


def parse_budget(text: str) -> float:
    """``25ms`` / ``25`` (milliseconds) / ``0.025s`` → milliseconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s)?\s*", str(text))
    if not m:
        raise TuneError(f"bad --budget {text!r}: expected e.g. 25ms, 25 (ms) or 0.025s")
    ms = float(m.group(1)) * (1000.0 if m.group(2) == "s" else 1.0)
    if not (ms > 0 and math.isfinite(ms)):
        raise TuneError(f"bad --budget {text!r}: must be > 0")
    return ms


def candidate_sizes(size: tuple[int, int], scales: Sequence[float] = DEFAULT_SCALES,
                    min_side: int = 64, multiple: int = 16) -> list[tuple[int, int]]:
    """Training size scaled by each factor, rounded to ``multiple`` (the training size itself
    is kept exactly), sides ≥ ``min_side``; largest first, without duplicates."""
    out: list[tuple[int, int]] = []
    for s in sorted(scales, reverse=True):
        if not (0 < s <= 1):
            raise TuneError(f"bad scale {s}: must be in (0, 1] (at most the training size)")
        hw = tuple(size) if s == 1.0 else tuple(max(multiple, round(x * s / multiple) * multiple)
                                                for x in size)
        if min(hw) >= min_side and hw not in out:
            out.append(hw)
    if not out:
        raise TuneError(f"no candidate resolution: every scale of {size[0]}x{size[1]} has a "
                        f"side below {min_side}")
    return out


@dataclass
class Row:
    """One candidate: a (resolution, precision) bundle timed with one knob setting."""

    size: tuple[int, int]
    precision: str
    threads: int | None
    hint: str
    status: str = "not tried"  # ok | gate failed | failed | skipped | not tried
    reason: str = ""
    median_ms: float | None = None
    p90_ms: float | None = None
    score: float | None = None
    tasks: dict = field(default_factory=dict)  # task → {"score", "value", "measure"}
    gate: str = ""
    bundle: str | None = None

    @property
    def label(self) -> str:
        t = "default" if self.threads is None else self.threads
        return f"{self.size[0]}x{self.size[1]} {self.precision} threads={t} hint={self.hint}"


def resized_checkpoint(checkpoint: Path, size: tuple[int, int], work: Path) -> Path:
    """The same weights with ``input_size`` = ``size`` (the model is fully convolutional /
    linear attention and pads internally, so no weight depends on the input size); checked by
    rebuilding the model from it."""
    doc, jpath = read_checkpoint_meta(checkpoint)
    if tuple(doc["model_config"]["input_size"]) == tuple(size):
        return jpath
    folder = work / f"ckpt-{size[0]}x{size[1]}"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(jpath.parent / doc["weights"], folder / doc["weights"])
    doc = {**doc, "model_config": {**doc["model_config"], "input_size": list(size)}}
    out = atomic_write_json(folder / jpath.name, doc)
    model, _ = build_from_checkpoint(out)  # refuses weights that do not fit the new config
    if tuple(model.cfg.input_size) != tuple(size):  # pragma: no cover - config round trip
        raise RuntimeError(f"resized checkpoint has input size {model.cfg.input_size}")
    return out


def _stack(outs: list[dict], name: str) -> np.ndarray:
    a = np.stack([o[name] for o in outs])
    return a.transpose(0, 3, 1, 2) if a.ndim == 4 else a  # normals N×H×W×3 → N×3×H×W


def parity_scores(ref_outs: list[dict], got_outs: list[dict], task_set) -> dict:
    """Per task: the raw agreement measure of the Predictor outputs (frame size) with the
    reference's and a 0–100 score (label agreement and boundary F as they are; depth
    100·(1 − abs-rel diff); normals 100·(1 − angle/90°)), both floored at 0."""
    out = {}
    for t in task_set:
        v = agreement(t.kind, _stack(ref_outs, t.name), _stack(got_outs, t.name))
        s = t.spec.parity_score(v)
        out[t.name] = {"measure": t.spec.measure_name, "value": v,
                       "score": max(0.0, s) if math.isfinite(s) else 0.0}
    return out


def labelled_scores(res: dict, ref: dict, task_set) -> dict:
    """Per task: the labelled metric and a score relative to the reference (100 = as good as
    the FP32 model at the training size)."""
    out = {}
    for t in task_set:
        v, r = res[t.name][t.metric_name], ref[t.name][t.metric_name]
        if t.higher_is_better:
            s = 100.0 * v / r if r > 0 else 100.0
        else:
            s = 100.0 * r / v if v > 0 else 100.0
        out[t.name] = {"measure": t.metric_name, "value": v,
                       "score": s if math.isfinite(s) else 0.0}
    return out


def _install(src: Path, dst: Path) -> Path:
    """Copy the chosen bundle folder to ``dst`` (staged beside it, then renamed)."""
    check_destination(dst)
    stage = dst.with_name(f".{dst.name}.partial-{os.getpid()}")
    shutil.rmtree(stage, ignore_errors=True)
    shutil.copytree(src, stage)
    return replace_dir(stage, dst)


@dataclass(frozen=True)
class TuneRequest:
    """One search (the ``tune`` command's options).

    target, budget_ms: where, and the end-to-end median latency to meet.  frame_size: the
    camera frame timed.  max_minutes: the search's bound.  scales, min_side: candidate
    resolutions (:func:`candidate_sizes`).  precisions (None: the target's), threads, hints:
    the rest of the space.  time_s / runs, warmup_runs: timing of each knob setting.  n_frames:
    held-out frames of the parity score.  val, val_limit: labelled scoring instead.  n_calib:
    calibration samples of INT8 candidates.  gate: parity-gate threshold overrides.
    """

    target: str
    budget_ms: float
    frame_size: tuple[int, int] = (480, 640)
    max_minutes: float = 10.0
    scales: Sequence[float] = DEFAULT_SCALES
    min_side: int = 64
    precisions: Sequence[str] | None = None
    threads: Sequence[int | None] = (1, 2)
    hints: Sequence[str] = ("latency",)
    time_s: float = 2.0
    runs: int | None = None
    warmup_runs: int = 5
    n_frames: int = 6
    val: Path | None = None
    val_limit: int = 20
    n_calib: int = 32
    gate: dict[str, float] | None = None

    def check(self, tgt: Target) -> list[str]:
        """Every option against the target, before any work; the precisions searched."""
        tgt.require(error=TuneError)
        precisions = list(self.precisions or tgt.precisions)
        bad = [p for p in precisions if p not in tgt.precisions]
        if bad:
            raise TuneError(f"target {self.target} supports {', '.join(tgt.precisions)}, "
                            f"not {bad[0]}")
        if "int8" in precisions and tgt.int8 is None:
            routes = ", ".join(n for n, t in TARGETS.items() if t.int8)
            raise TuneError(f"tune builds INT8 for {routes} only, not {self.target}")
        bad_hint = [h for h in self.hints if h not in ("latency", "throughput")]
        if bad_hint:
            raise TuneError(f"bad hint {bad_hint[0]!r}: latency or throughput")
        if any(t is not None and t < 1 for t in self.threads):
            raise TuneError(f"bad threads {min(t for t in self.threads if t is not None)}: "
                            f"must be ≥ 1")
        if not (self.max_minutes > 0 and self.budget_ms > 0):
            raise TuneError("max_minutes and the budget must be > 0")
        return [p for p in SPEED_ORDER if p in precisions]


class _Candidates:
    """Each (resolution, precision) built as a gated bundle once (the checkpoint resized,
    built and exported once per resolution), and scored once against the reference."""

    def __init__(self, req: TuneRequest, tgt: Target, jpath: Path, work: Path, folder: Path):
        self.req, self.tgt, self.jpath, self.work, self.folder = req, tgt, jpath, work, folder
        self.built: dict[tuple, dict] = {}
        self.exported: dict[tuple, Exported] = {}
        self.scored: dict[tuple, dict] = {}
        self.frames = gate_frames(req.frame_size, req.n_frames)
        self.ref_outs: list[dict] = []
        self.ref_val: dict | None = None
        self.task_set = None

    def _exported(self, size: tuple[int, int]) -> Exported:
        if size not in self.exported:
            ck = resized_checkpoint(self.jpath, size, self.work)
            self.exported[size] = export_checkpoint(
                ck, self.tgt, self.work / f"{size[0]}x{size[1]}.fp32.onnx")
        return self.exported[size]

    def build(self, size: tuple[int, int], precision: str) -> dict:
        """Bundle + gate of one (size, precision), once: {"bundle"} or {"error", "status"}."""
        key = (size, precision)
        if key in self.built:
            return self.built[key]
        out = self.folder / f"{self.tgt.name}-{size[0]}x{size[1]}-{precision}"
        exp = self._exported(size)
        if precision == "int8":
            q = QuantizeRequest(n_calib=self.req.n_calib, val_limit=self.req.val_limit,
                                accuracy_control=False, gate=self.req.gate)
            b = build_int8_bundle(exp, self.tgt, q, out, self.work, log=lambda _m: None)
            self.built[key] = ({"bundle": b.bundle} if b.bundle is not None else
                               {"status": "gate failed", "error": b.failed})
            return self.built[key]
        try:
            path = compile_bundle(out, CompileRequest(
                self.tgt.name, precision, exported=exp, options=CompileOptions(threads=1),
                gate=self.req.gate))
            self.built[key] = {"bundle": path}
        except VerificationError as e:
            fails = "; ".join(e.result.failures) if e.result is not None else str(e)
            self.built[key] = {"status": "gate failed", "error": fails}
        return self.built[key]

    def reference(self, train_size: tuple[int, int]) -> None:
        """The FP32 bundle at the training size: its outputs (and labelled metrics) are what
        every candidate is scored against."""
        ref_built = self.build(train_size, "fp32")
        if "bundle" not in ref_built:
            raise VerificationError(f"the FP32 reference bundle failed its parity gate: "
                                    f"{ref_built['error']}")
        ref = Predictor.from_bundle(ref_built["bundle"], threads=max(
            [t for t in self.req.threads if t] or [1]))
        self.ref_outs = [ref(f) for f in self.frames]
        self.task_set = ref.task_set
        if self.req.val is not None:
            self.ref_val = evaluate_predictor(ref, load_val_set(
                str(self.req.val), "val", self.task_set, ref.input_size, self.req.val_limit))

    def score(self, key: tuple, bundle: Path) -> dict:
        if key not in self.scored:
            pred = Predictor.from_bundle(bundle, threads=1)
            if self.req.val is not None:
                vs = load_val_set(str(self.req.val), "val", self.task_set, pred.input_size,
                                  self.req.val_limit)
                self.scored[key] = labelled_scores(evaluate_predictor(pred, vs), self.ref_val,
                                                   self.task_set)
            else:
                self.scored[key] = parity_scores(self.ref_outs, [pred(f) for f in self.frames],
                                                 self.task_set)
        return self.scored[key]


def _time_row(row: Row, cands: _Candidates, req: TuneRequest) -> None:
    """Build (once), gate, score and time one knob setting into ``row``."""
    b = cands.build(row.size, row.precision)
    if "bundle" not in b:
        row.status, row.reason, row.gate = b["status"], b["error"], "fail"
        return
    row.bundle, row.gate = str(b["bundle"]), "pass"
    row.tasks = cands.score((row.size, row.precision), b["bundle"])
    row.score = float(np.mean([v["score"] for v in row.tasks.values()]))
    pred = Predictor.from_bundle(b["bundle"], threads=row.threads, hint=row.hint)
    timed = time_call(lambda p=pred, f=cands.frames[0]: p(f), warmup_runs=req.warmup_runs,
                      time_s=None if req.runs else req.time_s, runs=req.runs)
    del pred
    row.median_ms, row.p90_ms = timed.median_ms, timed.p90_ms
    row.status = "ok"


def _search(rows: list[Row], cands: _Candidates, req: TuneRequest, say, deadline: float,
            clock, prog) -> bool:
    """Try the rows in order until the bound; returns whether the search was stopped."""
    stopped = False
    missed: dict[tuple, tuple] = {}  # size → (precision tried, why slower ones are skipped)
    for row in rows:
        if prog is not None:
            prog[0].update(prog[1], advance=1, description=row.label)
        if stopped:
            continue
        if clock() > deadline and any(r.status != "not tried" for r in rows):
            stopped = True
            say(f"stopped: --max-minutes {req.max_minutes:g} reached; "
                f"{sum(r.status == 'not tried' for r in rows)} candidates not tried")
            continue
        if row.size in missed and missed[row.size][0] != row.precision:
            row.status, row.reason = "skipped", missed[row.size][1]
            continue
        _time_row(row, cands, req)
        if row.status != "ok":
            continue
        say(f"{row.label}: {row.median_ms:.2f} ms median, score {row.score:.2f}")
        # Once every knob of this (size, precision) is timed: if even its best misses the
        # budget, the slower precisions at this size are not tried.
        same = [r for r in rows if r.size == row.size and r.precision == row.precision]
        if row is same[-1] and row.size not in missed:
            best = min(r.median_ms for r in same if r.median_ms is not None)
            if best > req.budget_ms:
                missed[row.size] = (row.precision, f"{row.precision} at this size already "
                                                   f"misses the budget ({best:.2f} ms)")
    return stopped


def tune(checkpoint: str | Path, req: TuneRequest, out: str | Path, console=None,
         progress: bool = True, clock: Callable[[], float] = time.monotonic) -> dict:
    """Search, write ``pareto.{md,csv,png}`` and ``tune.json`` and the chosen bundle under
    ``out``; returns ``{"rows", "chosen", "bundle", "stopped", ...}``.  Raises
    :class:`BudgetNotMet` (after writing the table) when no gated candidate meets the budget.
    """
    t0 = clock()
    out = Path(out)
    tgt = get_target(req.target)
    order = req.check(tgt)
    doc, jpath = read_checkpoint_meta(checkpoint)
    train_size = tuple(doc["model_config"]["input_size"])
    sizes = candidate_sizes(train_size, req.scales, req.min_side)
    work, cand_dir = out / "work", out / "candidates"
    work.mkdir(parents=True, exist_ok=True)

    def say(msg: str) -> None:
        if console is not None:
            console.print(msg, highlight=False, markup=False)

    try:
        rows = [Row(s, p, t, h) for s in sizes for p in order for t in req.threads
                for h in req.hints]
        cands = _Candidates(req, tgt, jpath, work, cand_dir)
        say(f"reference: {req.target} fp32 at {train_size[0]}x{train_size[1]} (training size)")
        cands.reference(train_size)
        prog = None
        if progress and console is not None:
            bar = Progress(console=console, transient=True)
            bar.start()
            prog = (bar, bar.add_task("tune", total=len(rows)))
        try:
            stopped = _search(rows, cands, req, say, t0 + req.max_minutes * 60.0, clock, prog)
        finally:
            if prog is not None:
                prog[0].stop()
        return _conclude(out, req, rows, train_size, stopped, round(clock() - t0, 1),
                         cands.task_set)
    except BaseException:
        # a failed search leaves its report (when it got that far), not the candidates
        shutil.rmtree(cand_dir, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _conclude(out: Path, req: TuneRequest, rows: list[Row], train_size, stopped: bool,
              seconds: float, task_set) -> dict:
    """Choose, install the chosen bundle, write the outputs; :class:`BudgetNotMet` if none."""
    ok_rows = [r for r in rows if r.status == "ok"]
    fits = [r for r in ok_rows if r.median_ms <= req.budget_ms]
    chosen = max(fits, key=lambda r: (r.score, -r.median_ms)) if fits else None
    result = {"target": req.target, "budget_ms": req.budget_ms,
              "frame_size": list(req.frame_size), "training_size": list(train_size),
              "scoring": "labelled" if req.val else "parity", "stopped": stopped,
              "max_minutes": req.max_minutes, "seconds": seconds, "rows": rows,
              "chosen": chosen, "bundle": None, "pruning": "not searched"}
    if chosen is not None:
        result["bundle"] = _install(Path(chosen.bundle), out / "bundle")
    write_outputs(out, result, task_set)
    if chosen is None:
        fastest = min(ok_rows, key=lambda r: r.median_ms) if ok_rows else None
        stop = " (search stopped at --max-minutes)" if stopped else ""
        if fastest is None:
            raise BudgetNotMet(f"no candidate passed its gate{stop}; see {out / 'pareto.md'}")
        raise BudgetNotMet(f"nothing meets {req.budget_ms:g} ms{stop}: the fastest candidate "
                           f"is {fastest.label} at {fastest.median_ms:.2f} ms median; see "
                           f"{out / 'pareto.md'}")
    return result


def _fmt(v: float | None, nd: int = 2) -> str:
    return "" if v is None else f"{v:.{nd}f}"


def write_outputs(out: Path, result: dict, task_set) -> None:
    """``pareto.csv`` (every candidate), ``pareto.md`` (the same, readable), ``pareto.png``
    (score vs median latency, budget line, chosen point) and ``tune.json``."""
    rows: list[Row] = result["rows"]
    names = task_set.names
    head = ["resolution", "precision", "threads", "hint", "pruning", "status", "median_ms",
            "p90_ms", "score", *[f"{n}_score" for n in names], *[f"{n}_value" for n in names],
            "gate", "reason", "chosen"]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(head)
    table = []
    for r in rows:
        cells = [f"{r.size[0]}x{r.size[1]}", r.precision,
                 "default" if r.threads is None else r.threads, r.hint, "none", r.status,
                 _fmt(r.median_ms), _fmt(r.p90_ms), _fmt(r.score),
                 *[_fmt(r.tasks[n]["score"]) if n in r.tasks else "" for n in names],
                 *[f"{r.tasks[n]['value']:.4g}" if n in r.tasks else "" for n in names],
                 r.gate, r.reason, "yes" if r is result["chosen"] else ""]
        w.writerow(cells)
        table.append([str(c) for c in cells])
    atomic_write_text(out / "pareto.csv", buf.getvalue())

    measures = {n: next((r.tasks[n]["measure"] for r in rows if n in r.tasks), "")
                for n in names}
    chosen = result["chosen"]
    lines = [f"# tune: {result['target']}, budget {result['budget_ms']:g} ms",
             "",
             f"- latency: end-to-end `Predictor(frame)` on a {result['frame_size'][0]}x"
             f"{result['frame_size'][1]} frame, median and p90 of back-to-back calls",
             f"- score: {result['scoring']} — "
             + ("labelled metrics relative to the FP32 model at the training size (100 = "
                "as good)" if result["scoring"] == "labelled" else
                "agreement with the FP32 bundle at the training size "
                f"({result['training_size'][0]}x{result['training_size'][1]}) on held-out "
                "frames, 0–100, mean over tasks"),
             "- per-task values: " + ", ".join(f"{n} {m}" for n, m in measures.items()),
             "- pruning: not searched",
             f"- search: {result['seconds']} s"
             + (f"; stopped at --max-minutes {result['max_minutes']:g}, "
                "untried candidates marked 'not tried'" if result["stopped"] else ""),
             f"- chosen: {chosen.label} ({chosen.median_ms:.2f} ms, score {chosen.score:.2f})"
             if chosen else "- chosen: none (nothing meets the budget)",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in t) + " |" for t in table]
    atomic_write_text(out / "pareto.md", "\n".join(lines) + "\n")
    atomic_write_bytes(out / "pareto.png", _plot(rows, result["budget_ms"], chosen,
                                                 result["target"]))
    atomic_write_json(out / "tune.json", {
        **{k: v for k, v in result.items() if k not in ("rows", "chosen", "bundle")},
        "bundle": None if result["bundle"] is None else str(result["bundle"]),
        "chosen": None if chosen is None else {"label": chosen.label,
                                               "threads": chosen.threads,
                                               "hint": chosen.hint,
                                               "median_ms": chosen.median_ms},
        "rows": [dict(zip(head, t)) for t in table]})


def _plot(rows: list[Row], budget_ms: float, chosen: Row | None, target: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.status == "ok"]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    markers = {"fp32": "o", "fp16": "s", "int8": "^"}
    for p in SPEED_ORDER:
        pts = [r for r in ok if r.precision == p]
        if pts:
            ax.scatter([r.median_ms for r in pts], [r.score for r in pts], label=p,
                       marker=markers[p], alpha=0.8)
    front, best = [], -math.inf  # Pareto front: faster and at least as accurate
    for r in sorted(ok, key=lambda r: (r.median_ms, -r.score)):
        if r.score > best:
            front.append(r)
            best = r.score
    if front:
        ax.step([r.median_ms for r in front], [r.score for r in front], where="post",
                color="grey", lw=1, label="Pareto front")
    slowest = max((r.median_ms for r in ok), default=budget_ms)
    if budget_ms <= 3 * slowest:
        ax.axvline(budget_ms, color="red", ls="--", label=f"budget {budget_ms:g} ms")
    else:  # a far-away budget line would squash every point against the y axis
        ax.set_xlim(0, slowest * 1.3)
        ax.annotate(f"budget {budget_ms:g} ms →", xy=(0.98, 0.02), xycoords="axes fraction",
                    ha="right", color="red")
    if chosen is not None:
        ax.scatter([chosen.median_ms], [chosen.score], s=250, marker="*", color="gold",
                   edgecolors="black", zorder=5, label="chosen")
    ax.set_xlabel("end-to-end median latency (ms)")
    ax.set_ylabel("score (0–100)")
    ax.set_title(f"tune: {target}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def summary_line(result: dict) -> str:
    """The last stdout line: ``bundle: PATH (… ms, …)``."""
    r: Row = result["chosen"]
    t = "default" if r.threads is None else r.threads
    return (f"bundle: {result['bundle']} ({r.median_ms:.2f} ms median, p90 {r.p90_ms:.2f} ms, "
            f"{r.size[0]}x{r.size[1]} {r.precision}, threads {t}, hint {r.hint}, "
            f"score {r.score:.2f})")
