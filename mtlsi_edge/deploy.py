"""``mtlsi-edge deploy``: export → FP32 bundle → calibrate + quantise → INT8 bundle (gated) →
profile → ``report.md``.  The checkpoint is built once and exported once; every bundle and the
quantisation start from that export, and each artifact is gated once, as a bundle.

:func:`build_int8_bundle` is the one "gated INT8 bundle" recipe (``deploy``, ``tune`` and the
benchmarks call it).  If a gate fails, a budget is missed, the search hits ``--max-minutes``,
or this machine's runtime cannot run the INT8 model, the FP32 bundle is kept (and is what
``bundle`` points to), the report says which task missed by how much (or what the runtime
refused), and the command exits non-zero.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

from mtlsi_edge.bundle import load_bundle
from mtlsi_edge.calibration.sources import CalibrationError, check_calibration_source
from mtlsi_edge.compiler import (
    CompileRequest,
    Exported,
    checkpoint_task_set,
    compile_bundle,
    export_checkpoint,
)
from mtlsi_edge.data.datasets import build_dataset
from mtlsi_edge.errors import BundleError, ConfigError
from mtlsi_edge.fileio import atomic_write_bytes, display_path
from mtlsi_edge.machine import describe
from mtlsi_edge.quantize.formats import FORMATS
from mtlsi_edge.quantize.run import QuantizeRequest, QuantizeResult, quantize_exported
from mtlsi_edge.runtime.predictor import Predictor
from mtlsi_edge.targets import CompileOptions, Target, get_target
from mtlsi_edge.targets.base import RuntimeRefused
from mtlsi_edge.timing import interleaved
from mtlsi_edge.verify import VerificationError


@dataclass(frozen=True)
class DeployRequest:
    """One ``deploy``: the ``target`` and ``precision`` of the shipped bundle, the
    quantisation (``quantize``: calibration, labelled budgets, NNCF settings, gate overrides,
    time bound; its format and rules come from the target's INT8 policy), the deploy
    ``graph`` (None: the target's measured default) and the ``device`` (None: the target's).
    ``quantize.max_minutes`` bounds the whole deploy (the accuracy search gets what is left)."""

    target: str = "openvino"
    precision: str = "int8"
    quantize: QuantizeRequest = QuantizeRequest()
    graph: str | None = None
    device: str | None = None


@dataclass
class Int8Build:
    """What :func:`build_int8_bundle` made: the gated bundle, or why there is none
    (``failed``; ``refused_by_runtime`` when this machine's runtime cannot run it)."""

    bundle: Path | None
    quantized: QuantizeResult | None
    failed: str | None = None
    gate: dict | None = None
    refused_by_runtime: bool = False


@dataclass
class DeployResult:
    """``bundle`` (the shipped one), ``fp32_bundle``, ``failed`` (why INT8 was refused, in
    words), ``note`` (a shipped INT8 that is not faster here), the latencies and the report."""

    bundle: Path
    fp32_bundle: Path
    failed: str | None = None
    note: str | None = None
    int8: Int8Build | None = None
    latency: dict = field(default_factory=dict)
    report_md: Path | None = None
    steps: list[str] = field(default_factory=list)


def build_int8_bundle(exported: Exported, target: Target, req: QuantizeRequest, out: Path,
                      work: Path, log=print, source: Path | None = None,
                      options: CompileOptions | None = None) -> Int8Build:
    """Quantise ``exported`` under ``target``'s INT8 policy and compile the gated INT8 bundle
    at ``out`` (its gate against ``exported``'s eager model is the only one).  ``source``:
    the export already in the policy's native form (:meth:`IRFormat.native_source`);
    ``options``: device and threads of the bundle (default: the target's device)."""
    req = req.for_target(target)
    model = exported.model
    try:
        q = quantize_exported(source or exported.onnx, model.task_set,
                              tuple(model.cfg.input_size), req, log)
    except RuntimeRefused as e:  # the runtime here cannot run the models at all
        return Int8Build(None, None, f"INT8 not possible with this machine's runtime: {e}",
                         refused_by_runtime=True)
    if q.failed:
        return Int8Build(None, q, q.failed)
    path = FORMATS[target.int8.format].write(q.model, exported.onnx, work / "model.int8")
    accuracy = {"fp32": q.fp32, "int8": q.int8, "per_task": q.report,
                "budgets": list(req.max_drop)}
    creq = CompileRequest(target.name, "int8", exported=exported, model_file=path,
                          options=options or CompileOptions(device=target.default_device),
                          gate=req.gate,
                          force=req.force, accuracy=accuracy, source_onnx=exported.onnx)
    try:
        bundle = compile_bundle(out, creq)
    except VerificationError as e:
        return Int8Build(None, q, "INT8 parity gate failed on this machine: "
                         + ("; ".join(e.result.failures) if e.result else str(e)),
                         gate=e.result.to_dict() if e.result else None)
    except RuntimeRefused as e:
        return Int8Build(None, q, f"INT8 not possible with this machine's runtime: {e}",
                         refused_by_runtime=True)
    return Int8Build(bundle, q, gate=load_bundle(bundle)[0]["gate"])


def latencies(bundles: list[Path], rounds: int = 3, runs: int = 20) -> dict[str, dict]:
    """Compute-only latency of each bundle's runner in ``rounds`` interleaved rounds of
    ``runs`` calls: ``{target-precision: {median_ms, p90_ms, runs}}`` over all calls."""
    preds = {}
    for b in sorted(set(bundles)):
        p = Predictor.from_bundle(b)
        preds[f"{p.manifest['target']}-{p.manifest['precision']}"] = p
    fns = {k: (lambda p=p, x=p.sample_input(): p.runner(x)) for k, p in preds.items()}
    return {k: {"median_ms": s.median_ms, "p90_ms": s.p90_ms, "runs": len(s.times_s)}
            for k, s in interleaved(fns, rounds, runs).items()}


def check_request(checkpoint: Path, req: DeployRequest) -> Target:
    """Every option checked before the minute of export and compile; the target."""
    tgt = get_target(req.target)
    if req.precision not in tgt.precisions:  # what compile_bundle would say, before quantising
        raise BundleError(f"target {req.target} supports {', '.join(tgt.precisions)}, "
                          f"not {req.precision}")
    task_set = checkpoint_task_set(checkpoint)
    qreq = req.quantize
    if req.precision == "int8":
        if qreq.max_drop and qreq.val is None:
            raise ConfigError("--max-drop needs --val")
        q = qreq.for_target(tgt)
        q.policy()  # the NNCF settings against the target's policy
        q.check(task_set)
        try:
            check_calibration_source(qreq.calib)
        except CalibrationError as e:
            raise ConfigError(str(e)) from None
        if qreq.val is not None:
            build_dataset(str(qreq.val), "val", task_set)
    else:
        from mtlsi_edge import verify

        verify.thresholds_for("int8", task_set, qreq.gate)  # bad task names: fail now
    return tgt


def run_deploy(checkpoint: Path, req: DeployRequest, out: Path, console=None) -> DeployResult:
    """Run the whole chain into ``out``; see the module docstring."""
    t0 = time.monotonic()
    out = Path(out)
    tgt = check_request(checkpoint, req)
    out.mkdir(parents=True, exist_ok=True)
    log = console.print if console is not None else print
    options = CompileOptions(device=req.device or tgt.default_device)
    log("[1/5] export")
    exported = export_checkpoint(checkpoint, tgt, out / "work" / "model.fp32.onnx", req.graph)
    # INT8: the export in the quantiser's native form, once (the FP32 bundle compiles from it)
    native = FORMATS[tgt.int8.format].native_source(exported.onnx) \
        if req.precision == "int8" else None
    log("[2/5] FP32 bundle (kept as the fallback)")
    t1 = time.monotonic()
    fp32 = compile_bundle(out / f"{req.target}-fp32", CompileRequest(
        req.target, "fp32", exported=exported, model_file=native, options=options))
    res = DeployResult(fp32, fp32, steps=[f"export → {exported.onnx.name}"])
    if req.precision == "int8":
        if req.quantize.max_minutes is not None:
            # --max-minutes bounds the whole deploy: the quantisation gets what is left after
            # the INT8 bundle's compile (as long as the FP32 one's), timing and report (20 s)
            now = time.monotonic()
            left = req.quantize.max_minutes - ((now - t0) + (now - t1) + 20.0) / 60.0
            req = dataclasses.replace(req, quantize=dataclasses.replace(
                req.quantize, max_minutes=max(left, 1e-3)))
        _int8_step(exported, tgt, req, out, res, log, native, options)
    elif req.precision != "fp32":
        res.bundle = compile_bundle(out / f"{req.target}-{req.precision}", CompileRequest(
            req.target, req.precision, exported=exported, options=options))
    log("[5/5] profile")
    res.latency = latencies([res.fp32_bundle, res.bundle])
    _finish(res, req, out, checkpoint, time.monotonic() - t0)
    return res


def _int8_step(exported: Exported, tgt: Target, req: DeployRequest, out: Path,
               res: DeployResult, log, native: Path, options: CompileOptions) -> None:
    qreq = req.quantize
    bound = f", bounded at {qreq.max_minutes:g} min" if qreq.max_minutes else ""
    log(f"[3/5] calibrate + NNCF INT8 ({tgt.int8.format}); labelled budgets: "
        f"{', '.join(qreq.max_drop) or 'none'}{bound}; parity gate: always")
    log("[4/5] compile INT8 bundle + parity gate (labels or not)")
    built = build_int8_bundle(exported, tgt, qreq, out / f"{req.target}-int8", out / "work",
                              log, native, options)
    res.int8 = built
    q = built.quantized
    if q is not None and q.model is not None:
        res.steps.append(f"quantise {tgt.int8.format}: {q.info['seconds']} s, "
                         f"{len(q.info['float_ops'])} heavy ops left in float")
    if built.bundle is not None:
        res.bundle = built.bundle
    else:
        res.failed = built.failed


def _finish(res: DeployResult, req: DeployRequest, out: Path, checkpoint: Path,
            seconds: float) -> None:
    """The speed note, the report, and ``failed`` in its final words."""
    manifest, _ = load_bundle(res.bundle)
    fp32_ms = res.latency[f"{req.target}-fp32"]["median_ms"]
    got_ms = res.latency[f"{req.target}-{manifest['precision']}"]["median_ms"]
    if manifest["precision"] != "fp32" and got_ms >= fp32_ms:
        # a valid artifact, but not the faster one here (INT8 on a CPU without VNNI): the
        # measurement decides what ships; the gated bundle stays beside it
        res.note = (f"{manifest['precision'].upper()} is not faster than FP32 on this "
                    f"machine ({got_ms:.2f} vs {fp32_ms:.2f} ms compute median): shipped the "
                    f"FP32 bundle {display_path(res.fp32_bundle)}, the faster choice here "
                    f"(the gated {manifest['precision'].upper()} bundle is "
                    f"{display_path(res.bundle)})")
        res.steps.append(res.note)
        res.bundle = res.fp32_bundle
        manifest, _ = load_bundle(res.bundle)
    stale = out / f"{req.target}-int8"
    if res.failed and req.precision == "int8":
        res.steps.append("INT8 refused: " + res.failed)
        if stale.exists():  # from an earlier run: say so, it is not this run's result
            res.steps.append(f"{stale.name} is from an earlier run, not this one (left as "
                             f"it was)")
    res.steps.append(f"deploy took {seconds:.0f} s")
    md = report_md(checkpoint, req, manifest, res)
    res.report_md = atomic_write_bytes(out / "report.md", md.encode())
    if res.failed:
        res.failed = f"{res.failed}; kept the FP32 bundle {res.fp32_bundle}"
        if req.precision == "int8" and stale.exists():
            res.failed += f" ({stale} is from an earlier run, not this one)"


def report_md(checkpoint: Path, req: DeployRequest, manifest: dict, res: DeployResult) -> str:
    """``report.md``: what was built, the accuracy and gate tables, parity, latency."""
    lines = [f"# Deploy report: {req.target} {req.precision}", "",
             f"- checkpoint: `{display_path(checkpoint)}`",
             f"- bundle: `{display_path(res.bundle)}` (target {manifest['target']}, "
             f"precision {manifest['precision']})",
             f"- created: {manifest['created']}",
             f"- machine: {describe()}; {req.target} "
             f"{manifest['runtime_versions'].get(req.target, '?')}", ""]
    if res.failed:
        head = "Runtime refused INT8" if res.int8 and res.int8.refused_by_runtime \
            else "Gate failed"
        lines += [f"**{head}**: {res.failed}. The FP32 bundle was kept.", ""]
    lines += ["## Steps", ""] + [f"- {s}" for s in res.steps] + [""]
    q = res.int8.quantized if res.int8 else None
    if q is not None and q.report:
        lines += _accuracy_md(q)
    gate = res.int8.gate if res.int8 else None
    if gate:
        lines += _gate_md(gate, manifest["precision"])
    lines += _parity_md(manifest)
    lines += ["## Compute latency (batch 1, this machine, 3 interleaved rounds of 20 runs)",
              "", "| bundle | median ms | p90 ms |", "|---|---|---|"]
    lines += [f"| {k} | {v['median_ms']:.2f} | {v['p90_ms']:.2f} |"
              for k, v in res.latency.items()]
    return "\n".join(lines) + "\n"


def _accuracy_md(q: QuantizeResult) -> list[str]:
    lines = ["## Accuracy (held-out split, pooled metrics; boundaries on the SEISM protocol)",
             "", "| task | metric | FP32 | INT8 | drop | budget | ok |",
             "|---|---|---|---|---|---|---|"]
    for name, d in q.report.items():
        ok = "" if d.get("ok") is None else ("yes" if d["ok"] else "NO")
        lines.append(f"| {name} | {d['metric']} | {d['fp32']:.4g} | {d['quantized']:.4g} | "
                     f"{d['drop']:+.3g}{'%' if d.get('relative') else ''} | "
                     f"{d.get('budget', '')} | {ok} |")
    info = q.info
    if "preset" in info:
        search = (f"; accuracy control: {q.search.get('passes', 0)} validation passes "
                  f"(candidates ranked with the fast boundary F)"
                  if info.get("accuracy_control") else "")
        lines += ["", f"NNCF: preset {info['preset']}, model_type {info['model_type']}, "
                  f"overflow_fix {info['overflow_fix']}, ignored scope '{info['ignore_preset']}'"
                  f" ({len(info['ignored_nodes'])} nodes), calibration "
                  f"{info['calibration']['n']} samples from {info['calibration']['source']}; "
                  f"heavy ops left in float: {len(info['float_ops'])}{search}."]
    return lines + [""]


def _gate_md(gate: dict, shipped: str) -> list[str]:
    lines = [f"## Parity gate of the {gate['precision'].upper()} artifact (held-out "
             f"frames, against FP32; {'passed' if gate['passed'] else 'FAILED'})", "",
             "| task | measure | value | threshold | ok |", "|---|---|---|---|---|"]
    for r in gate["rows"]:
        op = "≥" if r["higher_is_better"] else "≤"
        lines.append(f"| {r['task']} | {r['measure']} | {r['value']:.4g}{r['unit']} | "
                     f"{op} {r['threshold']:g}{r['unit']} | {'yes' if r['ok'] else 'NO'} |")
    if not gate["passed"]:
        decision = "INT8 refused, the FP32 bundle is the result."
    elif shipped == "int8":
        decision = "INT8 bundle shipped."
    else:
        decision = "INT8 passed its gate but is not faster here: the FP32 bundle shipped."
    return lines + ["", "Decision: " + decision, ""]


def _parity_md(manifest: dict) -> list[str]:
    lines = [f"## Parity of the shipped bundle ({manifest['precision']}) vs reference", "",
             "| output | max abs | argmax agree % | angle mean ° |", "|---|---|---|---|"]
    for name, d in manifest["parity"]["per_task"].items():
        mx = f"{d['max_abs']:.3g}" if "max_abs" in d else "labels"
        lines.append(f"| {name} | {mx} | {d.get('argmax_agree_pct', '')} | "
                     f"{d.get('angle_mean_deg', '')} |")
    return lines + ["", f"Reference: {manifest['parity']['reference']}.", ""]
