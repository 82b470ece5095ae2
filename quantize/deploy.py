"""``mtlsi-edge deploy``: export → calibrate → quantise (gated) → compile → parity → profile
→ bundle with its accuracy report and a ``report.md``.

If an accuracy gate fails, or this machine's runtime cannot run the INT8 model, the FP32
bundle is kept (and is what ``bundle`` points to), the report says which task missed by how
much (or what the runtime refused), and the command exits non-zero.
"""

from __future__ import annotations

from pathlib import Path

from mtlsi_edge import verify
from mtlsi_edge.bundle import load_bundle
from mtlsi_edge.calibration.sources import CalibrationError, check_calibration_source
from mtlsi_edge.compiler import choose_graph, compile_bundle
from mtlsi_edge.data.datasets import build_dataset
from mtlsi_edge.errors import BundleError, ConfigError
from mtlsi_edge.export import export_onnx
from mtlsi_edge.fileio import atomic_write_bytes, display_path
from mtlsi_edge.machine import cpu_flags
from mtlsi_edge.profiler.bench import machine_header
from mtlsi_edge.quantize.ptq import parse_budgets
from mtlsi_edge.quantize.run import run_quantize
from mtlsi_edge.runtime.predictor import Predictor
from mtlsi_edge.stats import summarize
from mtlsi_edge.targets import CompileOptions, get_target
from mtlsi_edge.targets.base import RuntimeRefused
from mtlsi_edge.timing import time_call
from mtlsi_edge.train.checkpoint import build_from_checkpoint
from mtlsi_edge.verify import VerificationError


def _latencies(bundles, rounds: int = 3, runs: int = 20) -> dict[str, dict]:
    """Compute-only latency of each bundle's runner, ``rounds`` alternating rounds of ``runs``
    calls (so drift hits every bundle alike): ``{target-precision: {median_ms, p90_ms,
    runs}}`` over all calls."""
    preds = {}
    for b in sorted(bundles):
        m, _ = load_bundle(b)
        preds[f"{m['target']}-{m['precision']}"] = Predictor.from_bundle(b)
    times: dict[str, list[float]] = {k: [] for k in preds}
    for _ in range(rounds):
        for k, p in preds.items():
            x = p.sample_input()
            times[k] += time_call(lambda p=p, x=x: p.runner(x), runs=runs).times_s
    stats = {k: summarize(t) for k, t in times.items()}
    return {k: {"median_ms": s["median_ms"], "p90_ms": s["p90_ms"], "runs": len(times[k])}
            for k, s in stats.items()}


def run_deploy(checkpoint: Path, target: str, precision: str, calib: str, val: Path,
               out: Path, max_drop: list[str], n_calib: int = 128, val_limit: int = 100,
               ignore: str = "attention-norm", console=None,
               accuracy_control: bool = True, gate_overrides: dict | None = None,
               act_matmuls: str = "float", graph: str | None = None) -> dict:
    """Run the whole chain; returns a summary with ``bundle``, ``report_md`` and ``failed``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tgt = get_target(target)
    if precision not in tgt.precisions:  # what compile_bundle would say, before quantising
        raise BundleError(f"target {target} supports {', '.join(tgt.precisions)}, "
                          f"not {precision}")
    dev = tgt.default_device
    model, _ = build_from_checkpoint(checkpoint)
    graph = choose_graph(model, target, graph)  # FP32 bundle and INT8 model: the same graph
    verify.thresholds_for("int8", model.task_set, gate_overrides)  # bad task names: fail now
    if precision == "int8":  # every option is checked before the minute of export + compile
        if max_drop and val is None:
            raise ConfigError("--max-drop needs --val")
        parse_budgets(max_drop, model.task_set)
        try:
            check_calibration_source(calib)
        except CalibrationError as e:
            raise ConfigError(str(e)) from None
        if val is not None:
            build_dataset(str(val), "val", model.task_set)
    steps: list[str] = []
    log = (console.print if console is not None else print)

    log("[1/5] export")
    fp32_onnx = export_onnx(model, out / "work" / "model.fp32.onnx")
    steps.append(f"export → {fp32_onnx.name}")
    log("[2/5] FP32 bundle (kept as the fallback)")
    fp32_bundle = compile_bundle(out / f"{target}-fp32", target, "fp32", checkpoint=checkpoint,
                                 opts=CompileOptions(precision="fp32", device=dev), graph=graph)
    result = {"bundle": fp32_bundle, "fp32_bundle": fp32_bundle, "failed": None}
    q = None
    if precision == "int8":
        fmt = tgt.int8_format
        log(f"[3/5] calibrate + NNCF INT8 ({fmt}); labelled budgets: "
            f"{', '.join(max_drop) or 'none'}; parity gate: always")
        try:
            q = run_quantize(checkpoint, fmt, calib, n_calib, val, val_limit, max_drop,
                             "performance", ignore, out / "work" / "model.int8",
                             console=console, onnx_path=fp32_onnx,
                             accuracy_control=accuracy_control, act_matmuls=act_matmuls,
                             gate_overrides=gate_overrides,
                             target=tgt.int8_rules)
            result["failed"] = q["failed"]
            steps.append(f"quantise {fmt}: {q['info']['seconds']} s, "
                         f"{len(q['info']['float_ops'])} heavy ops left in float")
        except VerificationError as e:
            q = None
            result["gate"] = e.result.to_dict() if e.result else None
            result["failed"] = (f"INT8 parity gate failed on this machine: "
                                f"{'; '.join(e.result.failures) if e.result else e}")
        except RuntimeRefused as e:  # the runtime here cannot run the models at all
            q = None
            result["refused_by_runtime"] = True
            result["failed"] = f"INT8 not possible with this machine's runtime: {e}"
        if q is not None and not q["failed"]:
            log("[4/5] compile INT8 bundle + parity gate (labels or not)")
            try:
                result["bundle"] = compile_bundle(
                    out / f"{target}-int8", target, "int8", onnx_path=q["path"],
                    opts=CompileOptions(precision="int8", device=dev),
                    extra_manifest={"source_onnx": str(fp32_onnx),
                                    "accuracy": {"fp32": q["fp32"], "int8": q["int8"],
                                                 "per_task": q["report"],
                                                 "budgets": max_drop}},
                    gate_overrides=gate_overrides)
                result["gate"] = load_bundle(result["bundle"])[0]["gate"]
            except VerificationError as e:
                result["gate"] = e.result.to_dict() if e.result else None
                result["failed"] = (f"INT8 parity gate failed on this machine: "
                                    f"{'; '.join(e.result.failures) if e.result else e}")
            except RuntimeRefused as e:
                result["refused_by_runtime"] = True
                result["failed"] = f"INT8 not possible with this machine's runtime: {e}"
    elif precision != "fp32":
        result["bundle"] = compile_bundle(out / f"{target}-{precision}", target, precision,
                                          checkpoint=checkpoint,
                                          opts=CompileOptions(precision=precision, device=dev))
    log("[5/5] profile")
    lat = _latencies({result["fp32_bundle"], result["bundle"]})
    manifest, _ = load_bundle(result["bundle"])
    fp32_ms = lat[f"{target}-fp32"]["median_ms"]
    got_ms = lat[f"{target}-{manifest['precision']}"]["median_ms"]
    if manifest["precision"] != "fp32" and got_ms >= fp32_ms:
        # a valid artifact, but not the faster one here: ship it, and say so
        result["note"] = (f"{manifest['precision'].upper()} is not faster than FP32 on this "
                          f"machine ({got_ms:.2f} vs {fp32_ms:.2f} ms compute median); the "
                          f"FP32 bundle {display_path(fp32_bundle)} is the faster choice here")
        steps.append(result["note"])
    stale = out / f"{target}-int8"
    if result["failed"] and precision == "int8":
        steps.append("INT8 refused: " + result["failed"])
        if stale.exists():  # from an earlier run: say so, it is not this run's result
            steps.append(f"{stale.name} is from an earlier run, not this one (left as it was)")
    md = _report_md(checkpoint, target, precision, manifest, q, lat, steps, result)
    atomic_write_bytes(out / "report.md", md.encode())
    result.update(report_md=out / "report.md", latency=lat, quantize=q)
    if result["failed"]:
        result["failed"] = f"{result['failed']}; kept the FP32 bundle {fp32_bundle}"
        if precision == "int8" and stale.exists():
            result["failed"] += f" ({stale} is from an earlier run, not this one)"
    return result


def _report_md(checkpoint, target, precision, manifest, q, lat, steps, result) -> str:
    lines = [f"# Deploy report: {target} {precision}", "",
             f"- checkpoint: `{display_path(checkpoint)}`",
             f"- bundle: `{display_path(result['bundle'])}` (target {manifest['target']}, "
             f"precision {manifest['precision']})",
             f"- created: {manifest['created']}",
             f"- machine: {machine_header()['cpu']}; CPU flags: {cpu_flags()}; {target} "
             f"{manifest['runtime_versions'].get(target, '?')}", ""]
    if result.get("failed"):
        head = "Runtime refused INT8" if result.get("refused_by_runtime") else "Gate failed"
        lines += [f"**{head}**: {result['failed']}. The FP32 bundle was kept.", ""]
    lines += ["## Steps", ""] + [f"- {s}" for s in steps] + [""]
    if q is not None and q.get("report"):
        lines += ["## Accuracy (held-out split, pooled metrics; odsF is a Python "
                  "approximation of SEISM)", "",
                  "| task | metric | FP32 | INT8 | drop | budget | ok |",
                  "|---|---|---|---|---|---|---|"]
        for name, d in q["report"].items():
            ok = "" if d.get("ok") is None else ("yes" if d["ok"] else "NO")
            lines.append(f"| {name} | {d['metric']} | {d['fp32']:.4g} | {d['quantized']:.4g} | "
                         f"{d['drop']:+.3g}{'%' if d.get('relative') else ''} | "
                         f"{d.get('budget', '')} | {ok} |")
        info = q["info"]
        lines += ["", f"NNCF: preset {info['preset']}, model_type {info['model_type']}, "
                  f"overflow_fix {info['overflow_fix']}, ignored scope '{info['ignore_preset']}' "
                  f"({len(info['ignored_nodes'])} nodes), calibration {info['calibration']['n']}"
                  f" samples from {info['calibration']['source']}; heavy ops left in float: "
                  f"{len(info['float_ops'])}.", ""]
    gate = result.get("gate")
    if gate:
        lines += [f"## Parity gate of the {gate['precision'].upper()} artifact (held-out "
                  f"frames, against FP32; {'passed' if gate['passed'] else 'FAILED'})", "",
                  "| task | measure | value | threshold | ok |", "|---|---|---|---|---|"]
        for r in gate["rows"]:
            op = "≥" if r["higher_is_better"] else "≤"
            lines.append(f"| {r['task']} | {r['measure']} | {r['value']:.4g}{r['unit']} | "
                         f"{op} {r['threshold']:g}{r['unit']} | "
                         f"{'yes' if r['ok'] else 'NO'} |")
        lines += ["", "Decision: " + ("INT8 bundle shipped." if gate["passed"] else
                                      "INT8 refused, the FP32 bundle is the result."), ""]
    lines += [f"## Parity of the shipped bundle ({manifest['precision']}) vs reference", "",
              "| output | max abs | argmax agree % | angle mean ° |",
              "|---|---|---|---|"]
    for name, d in manifest["parity"]["per_task"].items():
        mx = f"{d['max_abs']:.3g}" if "max_abs" in d else "labels"
        lines.append(f"| {name} | {mx} | {d.get('argmax_agree_pct', '')} | "
                     f"{d.get('angle_mean_deg', '')} |")
    lines += ["", f"Reference: {manifest['parity']['reference']}.", "",
              "## Compute latency (batch 1, this machine, 3 alternating rounds of 20 "
              "runs)", "",
              "| bundle | median ms | p90 ms |", "|---|---|---|"]
    for k, v in lat.items():
        lines.append(f"| {k} | {v['median_ms']:.2f} | {v['p90_ms']:.2f} |")
    return "\n".join(lines) + "\n"
