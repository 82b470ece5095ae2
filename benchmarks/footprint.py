"""Footprint of the runtime-only install against the full install, in one run.

For the full install (this interpreter's venv, or ``--full-venv``) and a runtime-only venv per
runtime extra (``pip install WHEEL[openvino]``, ``WHEEL[onnxruntime]``; made here from a wheel
of this checkout, or given with ``--runtime-venv``), each on the same bundle:

- site-packages on disk (MiB, allocated blocks, hard links once);
- the modules a cold ``mtlsi-edge check BUNDLE`` imports (``-X importtime``) and whether torch
  is among them; its wall time (process start to exit) and peak RSS, median of ``--runs``
  after one unmeasured run (warm page cache);
- ``Predictor.from_bundle`` in a fresh process after ``mtlsi_edge`` and the runtime package are
  imported (median of ``--runs`` processes; the runtime's import time is its own column);
- ``mtlsi-edge demo --headless --loop --max-frames 300`` on a 640×480 SynthIndoor walkthrough
  (300 frames at 60 fps, paced as a camera: frames the loop is too slow for are dropped, so the
  FPS is the loop's own rate below 60), recording its grid view (2×2 frames, 960×1280): FPS
  and peak RSS, median of ``--demo-runs``, installs alternating so that drift hits each alike.

Goals: runtime install with one runtime extra ≤ 400 MiB; demo peak RSS ≤ 250 MB and FPS not
lower than the full install's; cold check ≤ 1.5 s; from_bundle ≤ 0.3 s.

    python -m benchmarks.footprint                       # both extras (~5-8 min on 2 cores)
    python -m benchmarks.footprint --extras openvino --runtime-venv /tmp/rt-ov --video v.mp4
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks.common import machine
from mtlsi_edge.machine import cpu_flags

ROOT = Path(__file__).resolve().parents[1]
#: The build half's packages (tests/test_imports.py HEAVY).
HEAVY = ("torch", "torchvision", "timm", "nncf", "torch_pruning", "onnxscript", "scipy",
         "skimage", "matplotlib", "onnx", "onnxconverter_common", "torch_tensorrt")
#: runtime extra → (bundle target, the runtime's top-level package)
EXTRAS = {"openvino": ("openvino", "openvino"), "onnxruntime": ("onnxruntime", "onnxruntime")}
GOAL_DISK_MIB, GOAL_DEMO_RSS_MB, GOAL_CHECK_S, GOAL_FROM_BUNDLE_S = 400, 250, 1.5, 0.3

FROM_BUNDLE = """
import importlib, json, sys, time
t0 = time.perf_counter()
from mtlsi_edge.runtime.predictor import Predictor
t1 = time.perf_counter()
importlib.import_module(sys.argv[2])
t2 = time.perf_counter()
Predictor.from_bundle(sys.argv[1])
t3 = time.perf_counter()
print(json.dumps({"import_mtlsi": t1 - t0, "import_runtime": t2 - t1, "from_bundle": t3 - t2}))
"""


@dataclass
class Install:
    name: str  # "full" or the runtime extra
    prefix: Path
    extra: str  # which bundle it runs

    @property
    def python(self) -> Path:
        return self.prefix / "bin" / "python"

    @property
    def cli(self) -> Path:
        return self.prefix / "bin" / "mtlsi-edge"


@dataclass
class Row:
    install: str
    bundle: str
    site_mib: float = 0.0
    check_modules: int = 0
    check_heavy: list = field(default_factory=list)
    check_s: list = field(default_factory=list)
    check_rss_mb: list = field(default_factory=list)
    import_mtlsi_s: list = field(default_factory=list)
    import_runtime_s: list = field(default_factory=list)
    from_bundle_s: list = field(default_factory=list)
    demo_fps: list = field(default_factory=list)
    demo_rss_mb: list = field(default_factory=list)
    demo_dropped: list = field(default_factory=list)


LOADS: list[tuple[str, str]] = []


def note_load(when: str) -> None:
    """Remember the 1-minute load average (this run's own processes included): a value well
    above 1-2 on this 2-core machine means something else ran during the measurement."""
    LOADS.append((when, Path("/proc/loadavg").read_text().split()[0]))


def med(v: list[float]) -> float:
    return float(statistics.median(v)) if v else float("nan")


def fps_verdict(runtime: float, full: float) -> str:
    """met when not lower; "within noise" when less than 3 % lower (run-to-run spread of
    this loop on a shared 2-core machine); else MISSED."""
    if runtime >= full:
        return "met"
    return f"within noise ({100 * (runtime / full - 1):+.1f} %)" if runtime >= 0.97 * full \
        else "MISSED"


# -- measuring ---------------------------------------------------------------------------------
def run_measured(cmd: list[str], cwd: Path, timeout: float = 900) -> tuple[float, float, str]:
    """(wall s from start to exit, peak RSS in MB (10^6 B), stdout+stderr) of one process;
    raises on a non-zero exit."""
    env = dict(os.environ, COLUMNS="200")
    env.pop("DISPLAY", None)
    with tempfile.TemporaryFile("w+") as out:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, text=True,
                             env=env)
        killer = threading.Timer(timeout, p.kill)
        killer.start()
        try:
            _, status, ru = os.wait4(p.pid, 0)  # blocking: its own rusage (peak RSS)
        finally:
            killer.cancel()
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if p.returncode:
        raise RuntimeError(f"{' '.join(map(str, cmd))}: exit {p.returncode}\n{text[-3000:]}")
    return wall, ru.ru_maxrss * 1024 / 1e6, text


def site_packages_mib(prefix: Path) -> float:
    """Allocated size of the venv's site-packages (MiB; hard links counted once)."""
    py = prefix / "bin" / "python"
    paths = json.loads(subprocess.check_output(
        [str(py), "-c", "import json, sysconfig; p = sysconfig.get_paths(); "
                        "print(json.dumps(sorted({p['purelib'], p['platlib']})))"], text=True))
    seen, total = set(), 0
    for top in paths:
        for dirpath, dirnames, filenames in os.walk(top):
            for n in dirnames + filenames:
                st = os.lstat(os.path.join(dirpath, n))
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total / 2**20


def check_modules(inst: Install, bundle: Path, cwd: Path) -> tuple[int, list[str]]:
    """Modules ``mtlsi-edge check`` imports (``-X importtime``) and the build-half ones."""
    p = subprocess.run([str(inst.python), "-X", "importtime", str(inst.cli), "check",
                        str(bundle)], cwd=cwd, capture_output=True, text=True, timeout=300)
    if p.returncode:
        raise RuntimeError(f"{inst.name}: check {bundle}: exit {p.returncode}\n{p.stdout}"
                           f"{p.stderr[-3000:]}")
    mods = {ln.rsplit("|", 1)[1].strip() for ln in p.stderr.splitlines()
            if ln.startswith("import time:") and ln.count("|") == 2}
    mods.discard("package")  # the header line
    assert "mtlsi_edge.verify" in mods, f"{inst.name}: unexpected -X importtime output"
    return len(mods), sorted(m for m in mods if m.split(".")[0] in HEAVY)


# -- set-up ------------------------------------------------------------------------------------
def build_wheel(dest: Path) -> Path:
    """A wheel of this checkout, built from a snapshot (tracked + untracked, not ignored) so
    that nothing is written into the checkout."""
    src = dest / "src"
    src.mkdir(parents=True)
    files = subprocess.check_output(["git", "-C", str(ROOT), "ls-files", "-z", "-co",
                                     "--exclude-standard"]).decode().split("\0")
    for f in filter(None, files):
        p = ROOT / f
        if p.is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, src / f)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(src), "-w",
                    str(dest / "wheel")], check=True)
    return next((dest / "wheel").glob("mtlsi_edge-*.whl"))


def make_runtime_venv(wheel: Path, extra: str, dest: Path) -> Path:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(dest)], check=True)
    subprocess.run([str(dest / "bin" / "python"), "-m", "pip", "install", "-q",
                    f"{wheel}[{extra}]"], check=True, stderr=subprocess.DEVNULL)
    print(f"  runtime venv [{extra}]: {dest} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return dest


def extra_of(prefix: Path) -> str:
    """Which runtime extra a given runtime venv has (the first of EXTRAS it can import)."""
    code = ("import importlib.util, json, sys; print(json.dumps([m for m in sys.argv[1:] "
            "if importlib.util.find_spec(m)]))")
    have = json.loads(subprocess.check_output(
        [str(prefix / "bin" / "python"), "-c", code, *(v[1] for v in EXTRAS.values())],
        text=True))
    for extra, (_, pkg) in EXTRAS.items():
        if pkg in have:
            return extra
    raise SystemExit(f"{prefix}: has neither openvino nor onnxruntime")


# -- the run -----------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--extras", default="openvino,onnxruntime",
                    help="runtime extras to measure (a venv each), comma-separated")
    ap.add_argument("--runtime-venv", action="append", default=[], type=Path,
                    help="reuse this runtime-only venv (its extra is detected); repeatable")
    ap.add_argument("--full-venv", type=Path, default=Path(sys.prefix),
                    help="the full install (default: this interpreter's venv)")
    ap.add_argument("--bundles", type=Path, help="folder with openvino-fp32/ and "
                    "onnxruntime-fp32/ bundles (compiled there by the full install if missing)")
    ap.add_argument("--video", type=Path, help="640x480 source video (rendered if missing: "
                    "300 frames at 60 fps; a slower video caps the demo's FPS at its rate)")
    ap.add_argument("--runs", type=int, default=3, help="cold check / from_bundle runs")
    ap.add_argument("--demo-runs", type=int, default=3)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="footprint-"))
    work = tmp / "work"  # cwd of every command (runs/ goes there)
    work.mkdir()
    try:
        t_all = time.perf_counter()
        print(f"machine: {machine()}; CPU flags: {cpu_flags()}", flush=True)
        note_load("start")
        full = Install("full", args.full_venv.resolve(), "")
        runtimes: list[Install] = []
        for prefix in args.runtime_venv:
            runtimes.append(Install(extra_of(prefix), prefix.resolve(), ""))
        wanted = [e.strip() for e in args.extras.split(",") if e.strip()]
        missing = [e for e in wanted if e not in {r.name for r in runtimes}]
        if missing:
            wheel = build_wheel(tmp / "build")
            for e in missing:
                if e not in EXTRAS:
                    raise SystemExit(f"unknown extra {e!r}; choose from {', '.join(EXTRAS)}")
                runtimes.append(Install(e, make_runtime_venv(wheel, e, tmp / f"rt-{e}"), ""))
        for r in runtimes:
            r.extra = r.name
        extras = [r.name for r in runtimes]

        bdir = (args.bundles or tmp / "bundles").resolve()
        bundles = {}
        for e in extras:
            target = EXTRAS[e][0]
            b = bdir / f"{target}-fp32"
            if not (b / "manifest.json").is_file():
                t0 = time.perf_counter()
                subprocess.run([str(full.cli), "compile", "--target", target, "--precision",
                                "fp32", "--out", str(b)], cwd=work, check=True,
                               stdout=subprocess.DEVNULL)
                print(f"  compiled {b} ({time.perf_counter() - t0:.0f} s)", flush=True)
            bundles[e] = b

        video = (args.video or tmp / "walk-480x640.mp4").resolve()
        if not video.is_file():
            t0 = time.perf_counter()
            subprocess.run([str(full.python), "-c", "import sys; from pathlib import Path; "
                            "from mtlsi_edge.data.synthindoor import render_walkthrough; "
                            "render_walkthrough(Path(sys.argv[1]), seconds=5, fps=60, "
                            "size=(480, 640))", str(video)], check=True)
            print(f"  rendered {video} ({time.perf_counter() - t0:.0f} s)", flush=True)

        import cv2

        cap = cv2.VideoCapture(str(video))
        args.video_info = (f"{int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))}x"
                           f"{int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))} video "
                           f"({int(cap.get(cv2.CAP_PROP_FRAME_COUNT))} frames at "
                           f"{cap.get(cv2.CAP_PROP_FPS):g} fps)")
        cap.release()

        # one row per (install, bundle): the full install runs each runtime's bundle
        rows: dict[tuple[str, str], Row] = {}
        pairs: list[tuple[Install, str]] = []
        for r in runtimes:
            pairs += [(full, r.extra), (r, r.extra)]
        for inst, e in pairs:
            rows[inst.name, e] = Row(inst.name, f"{EXTRAS[e][0]}-fp32")
        sizes = {i.name: site_packages_mib(i.prefix) for i in [full, *runtimes]}

        print("measuring: check", flush=True)
        note_load("check")
        for inst, e in pairs:
            row = rows[inst.name, e]
            row.site_mib = sizes[inst.name]
            row.check_modules, row.check_heavy = check_modules(inst, bundles[e], work)
            run_measured([str(inst.cli), "check", str(bundles[e])], work)  # page cache
        for _ in range(args.runs):  # alternating
            for inst, e in pairs:
                wall, rss, _ = run_measured([str(inst.cli), "check", str(bundles[e])], work)
                rows[inst.name, e].check_s.append(wall)
                rows[inst.name, e].check_rss_mb.append(rss)

        print("measuring: from_bundle", flush=True)
        note_load("from_bundle")
        for _ in range(args.runs):
            for inst, e in pairs:
                _, _, out = run_measured([str(inst.python), "-c", FROM_BUNDLE, str(bundles[e]),
                                          EXTRAS[e][1]], work)
                t = json.loads(out.strip().splitlines()[-1])
                row = rows[inst.name, e]
                row.import_mtlsi_s.append(t["import_mtlsi"])
                row.import_runtime_s.append(t["import_runtime"])
                row.from_bundle_s.append(t["from_bundle"])

        print(f"measuring: demo ({args.frames} frames, {args.demo_runs} runs each)", flush=True)
        note_load("demo")
        for k in range(args.demo_runs):
            for inst, e in pairs:
                rec = tmp / f"demo-{inst.name}-{e}-{k}.mp4"
                wall, rss, out = run_measured(
                    [str(inst.cli), "demo", "--bundle", str(bundles[e]), "--source", str(video),
                     "--headless", "--loop", "--max-frames", str(args.frames), "--record",
                     str(rec)], work)
                m = re.search(r"(\d+) frames in ([\d.]+) s = ([\d.]+) FPS, dropped (\d+)", out)
                if not m or int(m.group(1)) != args.frames:
                    raise RuntimeError(f"{inst.name}: unexpected demo output:\n{out[-2000:]}")
                row = rows[inst.name, e]
                row.demo_fps.append(float(m.group(3)))
                row.demo_rss_mb.append(rss)
                row.demo_dropped.append(int(m.group(4)))
                rec.unlink(missing_ok=True)
                print(f"  {inst.name:12s} {e:12s} {m.group(3):>5s} FPS, peak RSS {rss:.0f} MB",
                      flush=True)
                note_load(f"demo {k + 1} {inst.name}/{e}")

        note_load("end")
        report(rows, runtimes, args, time.perf_counter() - t_all)
        if args.json:
            args.json.write_text(json.dumps({
                "machine": machine(), "cpu_flags": cpu_flags(), "load": LOADS,
                "rows": [asdict(r) for r in rows.values()]}, indent=2))
    finally:
        if args.keep:
            print(f"kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def report(rows: dict[tuple[str, str], Row], runtimes: list[Install], args, total_s: float
           ) -> None:
    py = sysconfig.get_python_version()
    print(f"\nfootprint: full install vs runtime-only install (Python {py}); "
          f"machine: {machine()}")
    print(f"CPU flags: {cpu_flags()}")
    print(f"check and from_bundle: median of {args.runs} fresh processes (after one unmeasured "
          f"check: warm page cache); demo: {args.frames} frames of a {args.video_info}, "
          f"grid view recorded, median of {args.demo_runs}\n")
    head = (f"{'install':<23}{'bundle':<17}{'site-pkgs':>10}{'check':>7}{'torch':>7}"
            f"{'check':>7}{'check':>8}{'import':>8}{'from_':>8}{'demo':>6}{'demo':>8}")
    head2 = (f"{'':<23}{'':<17}{'MiB':>10}{'mods':>7}{'':>7}{'s':>7}{'RSS MB':>8}"
             f"{'rt s':>8}{'bundle s':>9}{'FPS':>5}{'RSS MB':>8}")
    print(head)
    print(head2)
    print("-" * len(head))
    for r in rows.values():
        label = "full [all]" if r.install == "full" else f"runtime [{r.install}]"
        print(f"{label:<23}{r.bundle:<17}{r.site_mib:>10.0f}{r.check_modules:>7d}"
              f"{'YES' if any(m.split('.')[0] == 'torch' for m in r.check_heavy) else 'no':>7}"
              f"{med(r.check_s):>7.2f}{med(r.check_rss_mb):>8.0f}"
              f"{med(r.import_runtime_s):>8.2f}{med(r.from_bundle_s):>9.3f}"
              f"{med(r.demo_fps):>5.1f}{med(r.demo_rss_mb):>8.0f}")
    print("\nratios runtime / full (same bundle):")
    for rt in runtimes:
        f, r = rows["full", rt.extra], rows[rt.name, rt.extra]
        print(f"  [{rt.name}]: disk {r.site_mib / f.site_mib:.3f}x, check modules "
              f"{r.check_modules / f.check_modules:.2f}x, check time "
              f"{med(r.check_s) / med(f.check_s):.2f}x, check RSS "
              f"{med(r.check_rss_mb) / med(f.check_rss_mb):.2f}x, from_bundle "
              f"{med(r.from_bundle_s) / med(f.from_bundle_s):.2f}x, demo FPS "
              f"{med(r.demo_fps) / med(f.demo_fps):.2f}x, demo RSS "
              f"{med(r.demo_rss_mb) / med(f.demo_rss_mb):.2f}x")
    print("\ngoals (runtime installs):")
    for rt in runtimes:
        f, r = rows["full", rt.extra], rows[rt.name, rt.extra]
        checks = [
            (f"site-packages <= {GOAL_DISK_MIB} MiB", r.site_mib <= GOAL_DISK_MIB,
             f"{r.site_mib:.0f} MiB"),
            (f"demo peak RSS <= {GOAL_DEMO_RSS_MB} MB", med(r.demo_rss_mb) <= GOAL_DEMO_RSS_MB,
             f"{med(r.demo_rss_mb):.0f} MB"),
            ("demo FPS >= full install's", fps_verdict(med(r.demo_fps), med(f.demo_fps)),
             f"{med(r.demo_fps):.1f} vs {med(f.demo_fps):.1f} (runs: "
             f"{', '.join(f'{x:.1f}' for x in r.demo_fps)} vs "
             f"{', '.join(f'{x:.1f}' for x in f.demo_fps)})"),
            (f"cold check <= {GOAL_CHECK_S} s", med(r.check_s) <= GOAL_CHECK_S,
             f"{med(r.check_s):.2f} s (runs: {', '.join(f'{x:.2f}' for x in r.check_s)})"),
            (f"from_bundle <= {GOAL_FROM_BUNDLE_S} s", med(r.from_bundle_s) <= GOAL_FROM_BUNDLE_S,
             f"{med(r.from_bundle_s):.3f} s (+ import {rt.name} "
             f"{med(r.import_runtime_s):.2f} s, import mtlsi_edge "
             f"{med(r.import_mtlsi_s):.2f} s)"),
        ]
        for name, ok, val in checks:
            verdict = ok if isinstance(ok, str) else ("met" if ok else "MISSED")
            print(f"  {'[' + rt.name + ']':<14}{name:<30} {verdict:<12} {val}")
    heavy = {f"{r.install}/{r.bundle}": r.check_heavy for r in rows.values() if r.check_heavy}
    print(f"\nbuild-half modules imported by check: {heavy or 'none'}")
    print("1-min load average (this run included): "
          + ", ".join(f"{w} {v}" for w, v in LOADS))
    print(f"total {total_s / 60:.1f} min")


if __name__ == "__main__":
    main()
