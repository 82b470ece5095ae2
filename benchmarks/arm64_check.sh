#!/usr/bin/env bash
# The runtime half of mtlsi-edge on emulated arm64 CPUs (docs/devices.md, "arm64 emulation").
#
# On an x86-64 Debian 12 machine, with no arm64 hardware, no binfmt_misc and no container:
#   (a) installs qemu-user-static if it is missing (apt-get; root or sudo);
#   (b) builds an arm64 Python 3.11 from Debian's arm64 .debs, extracted into a folder;
#   (c) builds this repository's wheel and installs it, with its runtime dependencies resolved
#       for aarch64 (the [openvino] and [onnxruntime] extras, ONNX Runtime pinned to
#       $ORT_VERSION), into arm64 site folders -- no torch;
#   (d) compiles an OpenVINO FP32 and an ONNX Runtime FP32 bundle of the embedded starter
#       with the x86-64 full install ($VENV), once;
#   (e) for each emulated CPU model in $CPUS, runs `python -m mtlsi_edge.cli check BUNDLE` for
#       both bundles, and Predictor.from_bundle on one SynthIndoor render compared with the
#       x86-64 full install's outputs on the same render;
#   (f) prints a table: CPU model x bundle -> check verdict, agreement, wall seconds.
#
# Verdict rule (exit 1 when broken):
#   * the emulated outputs "agree" with x86-64 when semseg labels are equal on >= 99.9 % of
#     the pixels (the FP32 parity gate's segmentation threshold) and depth, normals and
#     boundary differ by at most 1e-3 anywhere (healthy runs differ by ~1e-5);
#   * `check` must pass (exit 0) where the outputs agree and refuse (exit 3, one line) where
#     they do not: any other exit code, or a verdict that contradicts the measured agreement,
#     is a failure;
#   * on the CPU models of real cores ($REAL_CPUS, default cortex-a72 neoverse-n1: Raspberry
#     Pi 4, Graviton2 / Ampere Altra) the outputs must also agree, so `check` must pass.
#     qemu's `max` is no real core: there a refusal is correct when the outputs are wrong.
#   * torch must not be importable in the emulated environment.
# Control row: ONNX Runtime $ORT_CONTROL (default 1.26.0, swapped in for the pinned one) on
# $CONTROL_CPUS (default max) -- a configuration measured to give wrong outputs (its KleidiAI
# SME kernels on a CPU with SME), so that the run shows `check` refusing them. Same rules.
# Exit codes: 0 all verdicts as required, 1 a verdict broken, 4 qemu-user-static cannot be
# installed (nothing was run), other: a setup step failed.
#
# Emulated wall seconds say nothing about real hardware: qemu translates every instruction,
# and the native x86-64 inference is about two orders of magnitude faster.
#
# Environment: ARM64_DIR (cache folder, default .cache/arm64 in the repository),
#   CPUS (default "cortex-a72 neoverse-n1 max"), REAL_CPUS, ORT_VERSION (default 1.27.0: 1.28
#   and newer segfault at import under qemu 7.2), VENV (x86-64 full install, default .venv),
#   EMU_TIMEOUT (seconds per emulated command, default 1500), ORT_CONTROL (empty: no control
#   row), CONTROL_CPUS, QEMU (another qemu-aarch64 binary, e.g. a newer static build).
# Usage: benchmarks/arm64_check.sh            (everything)
#        benchmarks/arm64_check.sh setup      (steps a-d only)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ARM64_DIR=${ARM64_DIR:-$REPO/.cache/arm64}
CPUS=${CPUS:-cortex-a72 neoverse-n1 max}
REAL_CPUS=${REAL_CPUS:-cortex-a72 neoverse-n1}
ORT_VERSION=${ORT_VERSION:-1.27.0}
VENV=${VENV:-$REPO/.venv}
EMU_TIMEOUT=${EMU_TIMEOUT:-1500}
ORT_CONTROL=${ORT_CONTROL-1.26.0}
CONTROL_CPUS=${CONTROL_CPUS:-max}
QEMU=${QEMU:-}
MODE=${1:-all}
# The photo-like frame compared with x86-64: a SynthIndoor render of a seed no gate, timing or
# calibration range uses, at a camera-like size (the Predictor resizes in and out).
FRAME_SEED=20000800
FRAME_SIZE=480x640
BUNDLES="openvino onnxruntime"
PLATFORMS=(--platform manylinux_2_35_aarch64 --platform manylinux_2_28_aarch64
           --platform manylinux2014_aarch64)
# Debian 12 arm64 packages: a minimal Python 3.11, then the system libraries the
# opencv-python wheel (a base dependency; not the -headless one) links against: libGL, libX11,
# libxcb, libXext, libSM, libICE, GLib -- what a desktop image has and a "Lite" image may lack.
DEBS=(python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libc6 zlib1g libexpat1
      libffi8 libssl3 libstdc++6 libgcc-s1 libbz2-1.0 liblzma5 libsqlite3-0 libuuid1
      libncursesw6 libtinfo6 libreadline8 libgomp1 libdb5.3 libnsl2 libtirpc3 libcrypt1
      libgl1 libglvnd0 libglx0 libx11-6 libxcb1 libxau6 libxdmcp6 libbsd0 libmd0 libxext6
      libsm6 libice6 libglib2.0-0 libpcre2-8-0 libmount1 libblkid1 libselinux1)

say() { printf '[arm64_check] %s\n' "$*" >&2; }
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
    else return 1; fi
}

mkdir -p "$ARM64_DIR"
ARM64_DIR=$(cd "$ARM64_DIR" && pwd)
[ -x "$VENV/bin/python" ] || { say "no x86-64 full install at $VENV (set VENV)"; exit 2; }

# -- (a) qemu-user-static ------------------------------------------------------------------
if [ -z "$QEMU" ] && ! command -v qemu-aarch64-static >/dev/null 2>&1; then
    say "installing qemu-user-static"
    if ! { as_root apt-get update -qq && as_root apt-get install -y -qq qemu-user-static; } \
            >"$ARM64_DIR/apt-qemu.log" 2>&1 \
            || ! command -v qemu-aarch64-static >/dev/null 2>&1; then
        echo "arm64_check: qemu-user-static cannot be installed (needs root or sudo, and an" \
             "apt mirror; see $ARM64_DIR/apt-qemu.log)" >&2
        exit 4
    fi
fi
QEMU=${QEMU:-$(command -v qemu-aarch64-static)}
QEMU_VERSION=$("$QEMU" --version | head -1)

# -- (b) arm64 Python 3.11 from Debian arm64 packages --------------------------------------
ROOT=$ARM64_DIR/root
if [ "$(cat "$ROOT/.debs" 2>/dev/null)" != "${DEBS[*]}" ]; then
    say "building the arm64 Python root in $ROOT"
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        as_root dpkg --add-architecture arm64
    fi
    as_root apt-get update -qq
    rm -rf "$ARM64_DIR/debs" "$ROOT.tmp"
    mkdir -p "$ARM64_DIR/debs" "$ROOT.tmp"
    (cd "$ARM64_DIR/debs" && apt-get download -q "${DEBS[@]/%/:arm64}" media-types) \
        >"$ARM64_DIR/apt-download.log" 2>&1 \
        || { say "apt-get download failed: see $ARM64_DIR/apt-download.log"; exit 2; }
    for d in "$ARM64_DIR"/debs/*.deb; do dpkg -x "$d" "$ROOT.tmp"; done
    echo "${DEBS[*]}" >"$ROOT.tmp/.debs"
    rm -rf "$ROOT"
    mv "$ROOT.tmp" "$ROOT"
fi

# -- (c) the runtime wheel and its aarch64 dependencies -----------------------------------
# Built from a copy of the files git tracks or would track (not the ignored build/ folder,
# whose stale modules setuptools would put in the wheel).
say "building the mtlsi-edge wheel"
SRC=$ARM64_DIR/src
rm -rf "$SRC" "$ARM64_DIR/wheel"
mkdir -p "$SRC" "$ARM64_DIR/wheel"
EXCLUDE=()  # the cache folder itself, when it lies inside the repository and is not ignored
case "$ARM64_DIR/" in "$REPO"/*) EXCLUDE=(":(exclude)${ARM64_DIR#"$REPO"/}") ;; esac
# shellcheck disable=SC2016  # $f belongs to the inner sh
(cd "$REPO" && git ls-files -z -c -o --exclude-standard -- . "${EXCLUDE[@]}" \
    | xargs -0 sh -c 'for f; do [ -f "$f" ] && printf "%s\0" "$f"; done' sh \
    | tar --null -T - -cf -) | tar -C "$SRC" -xf -
"$VENV/bin/pip" wheel -q --no-deps --no-build-isolation "$SRC" -w "$ARM64_DIR/wheel" \
    >"$ARM64_DIR/wheel.log" 2>&1 || { say "pip wheel failed: $ARM64_DIR/wheel.log"; exit 2; }
WHEEL=$(ls "$ARM64_DIR"/wheel/mtlsi_edge-*.whl)
# The dependency folder is reused while the wheel's requirements and the ORT pin are the same.
REQ_KEY=$("$VENV/bin/python" - "$WHEEL" <<'PY'
import hashlib, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
reqs = [l for l in z.read(meta).decode().splitlines() if l.startswith("Requires-Dist")]
print(hashlib.sha256("\n".join(reqs).encode()).hexdigest()[:12])
PY
)
DEPS=$ARM64_DIR/site-deps-ort$ORT_VERSION-$REQ_KEY
if [ ! -f "$DEPS/.complete" ]; then
    say "installing the aarch64 runtime dependencies into $DEPS"
    rm -rf "$ARM64_DIR"/site-deps-ort"$ORT_VERSION"-*  # made for other requirements
    # The wheel's own extras must resolve together with the pin.
    "$VENV/bin/pip" install -q --disable-pip-version-check --target "$DEPS.tmp" \
        --only-binary=:all: "${PLATFORMS[@]}" --implementation cp --python-version 3.11 \
        "${WHEEL}[openvino,onnxruntime]" "onnxruntime==$ORT_VERSION" \
        >"$ARM64_DIR/pip-deps.log" 2>&1 \
        || { say "aarch64 dependency install failed: $ARM64_DIR/pip-deps.log"; exit 2; }
    rm -rf "$DEPS.tmp"/mtlsi_edge "$DEPS.tmp"/mtlsi_edge-*.dist-info "$DEPS.tmp/bin"
    touch "$DEPS.tmp/.complete"
    rm -rf "$DEPS"
    mv "$DEPS.tmp" "$DEPS"
fi
PKG=$ARM64_DIR/site-pkg
rm -rf "$PKG"
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --target "$PKG" "$WHEEL" \
    >"$ARM64_DIR/pip-pkg.log" 2>&1 || { say "wheel install failed: $ARM64_DIR/pip-pkg.log"; exit 2; }
rm -rf "${PKG:?}/bin"
CONTROL=$ARM64_DIR/site-ort$ORT_CONTROL
if [ -n "$ORT_CONTROL" ] && [ ! -f "$CONTROL/.complete" ]; then
    say "installing the control ONNX Runtime $ORT_CONTROL (aarch64) into $CONTROL"
    rm -rf "$CONTROL.tmp"
    "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --target "$CONTROL.tmp" \
        --only-binary=:all: "${PLATFORMS[@]}" --implementation cp --python-version 3.11 \
        "onnxruntime==$ORT_CONTROL" >"$ARM64_DIR/pip-control.log" 2>&1 \
        || { say "control install failed: $ARM64_DIR/pip-control.log"; exit 2; }
    touch "$CONTROL.tmp/.complete"
    rm -rf "$CONTROL"
    mv "$CONTROL.tmp" "$CONTROL"
fi
INSTALLED_MB=$(du -sm --exclude=__pycache__ "$PKG" "$DEPS" | awk '{s += $1} END {print s}')

# -- (d) bundles compiled on x86-64, and the x86-64 outputs on one render -----------------
mkdir -p "$ARM64_DIR/bundles" "$ARM64_DIR/out" "$ARM64_DIR/results"
for t in $BUNDLES; do
    b=$ARM64_DIR/bundles/$t-fp32
    # Reused while this checkout's full install still accepts it (the format may change).
    if [ ! -f "$b/manifest.json" ] \
            || ! "$VENV/bin/mtlsi-edge" check "$b" >"$ARM64_DIR/x86-check-$t.log" 2>&1; then
        say "compiling the $t FP32 bundle with the x86-64 full install"
        rm -rf "$b"
        "$VENV/bin/mtlsi-edge" compile --target "$t" --out "$b" >"$ARM64_DIR/compile-$t.log" 2>&1 \
            || { say "compile failed: $ARM64_DIR/compile-$t.log"; exit 2; }
    fi
done
FRAME=$ARM64_DIR/render-$FRAME_SEED-$FRAME_SIZE.png
say "x86-64 reference outputs"
"$VENV/bin/python" - "$ARM64_DIR" "$FRAME" "$FRAME_SEED" "$FRAME_SIZE" "$BUNDLES" <<'PY'
import json, sys
from pathlib import Path

import cv2
import numpy as np

from mtlsi_edge import Predictor

d, frame_path, seed, size, bundles = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), \
    tuple(int(v) for v in sys.argv[4].split("x")), sys.argv[5].split()
if not frame_path.exists():
    from mtlsi_edge.data.seeds import render_bgr

    tmp = frame_path.with_suffix(".tmp.png")
    cv2.imwrite(str(tmp), render_bgr(seed, size))
    tmp.replace(frame_path)
frame = cv2.imread(str(frame_path), cv2.IMREAD_COLOR)
info = {}
for t in bundles:
    p = Predictor.from_bundle(d / "bundles" / f"{t}-fp32")
    np.savez(d / "out" / f"x86_64.{t}.npz", **p(frame))
    info[t] = p.runtime_version
(d / "out" / "x86_64.json").write_text(json.dumps(info))
PY

[ "$MODE" = setup ] && { say "setup done ($ARM64_DIR)"; exit 0; }

# -- (e) emulated runs, one at a time -----------------------------------------------------
emu() {  # emu CPU EXTRA_PATH ARGS...: arm64 python3.11 under qemu -cpu CPU
    local cpu=$1 extra=$2; shift 2
    env -i PATH=/usr/bin:/bin HOME="$ARM64_DIR/home" LANG=C.UTF-8 PYTHONUTF8=1 \
        PYTHONNOUSERSITE=1 COLUMNS=120 PYTHONPATH="${extra:+$extra:}$PKG:$DEPS" \
        timeout "$EMU_TIMEOUT" "$QEMU" -cpu "$cpu" -L "$ROOT" "$ROOT/usr/bin/python3.11" "$@"
}
mkdir -p "$ARM64_DIR/home"
rm -f "$ARM64_DIR"/results/*.json "$ARM64_DIR"/out/arm64.*.npz
FIRST_CPU=${CPUS%% *}
say "emulated environment ($FIRST_CPU): versions, and torch must not import"
ENV_JSON=$(emu "$FIRST_CPU" "" - <<'PY'
import importlib.util, json, platform
from importlib.metadata import version
info = {"machine": platform.machine(), "python": platform.python_version(),
        "torch_importable": importlib.util.find_spec("torch") is not None}
for p in ("mtlsi-edge", "numpy", "opencv-python", "openvino", "onnxruntime", "safetensors"):
    try:
        info[p] = version(p)
    except Exception as e:  # noqa: BLE001
        info[p] = f"missing ({type(e).__name__})"
print(json.dumps(info))
PY
) || { say "the emulated Python does not start"; exit 2; }
echo "$ENV_JSON" >"$ARM64_DIR/results/env.json"

ROWS=()  # "CPU BUNDLE ROLE": ROLE main (the pinned install) or control (ORT $ORT_CONTROL)
for cpu in $CPUS; do
    for t in $BUNDLES; do ROWS+=("$cpu $t main"); done
    if [ -n "$ORT_CONTROL" ] && [[ " $CONTROL_CPUS " == *" $cpu "* ]]; then
        ROWS+=("$cpu onnxruntime control")
    fi
done
for row in "${ROWS[@]}"; do
    read -r cpu t role <<<"$row"
    b=$ARM64_DIR/bundles/$t-fp32
    id=$cpu.$t.$role
    extra=""
    [ "$role" = control ] && extra=$CONTROL
    say "$cpu / $t ($role): mtlsi-edge check"
    t0=$(date +%s.%N)
    crc=0
    emu "$cpu" "$extra" -m mtlsi_edge.cli check "$b" >"$ARM64_DIR/out/check.$id.out" \
        2>"$ARM64_DIR/out/check.$id.err" || crc=$?
    t1=$(date +%s.%N)
    say "$cpu / $t ($role): Predictor.from_bundle on the render"
    prc=0
    emu "$cpu" "$extra" - "$b" "$FRAME" "$ARM64_DIR/out/arm64.$id.npz" \
        >"$ARM64_DIR/out/predict.$id.out" 2>"$ARM64_DIR/out/predict.$id.err" <<'PY' || prc=$?
import sys

import cv2
import numpy as np

from mtlsi_edge import Predictor

bundle, frame, out = sys.argv[1:4]
p = Predictor.from_bundle(bundle)
res = p(cv2.imread(frame, cv2.IMREAD_COLOR))
np.savez(out, **res)
assert "torch" not in sys.modules, "torch was imported"
print(p.target, p.runtime_version.split("-")[0])
PY
    t2=$(date +%s.%N)
    "$VENV/bin/python" - "$ARM64_DIR" "$id" "$cpu" "$t" "$role" "$crc" "$prc" "$t0" "$t1" \
        "$t2" <<'PY'
import json, sys
from pathlib import Path

d, rid, cpu, t, role, crc, prc, t0, t1, t2 = sys.argv[1:]
d, crc, prc = Path(d), int(crc), int(prc)

def lines(name):
    try:
        text = (d / "out" / name).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [s.strip() for s in text.splitlines() if s.strip()]

err, out = lines(f"check.{rid}.err"), lines(f"check.{rid}.out")
errors = [s for s in err if s.startswith("error:")]
msg = errors[-1] if errors else (err[-1] if err and crc else (out[-1] if out else ""))
pout, perr = lines(f"predict.{rid}.out"), lines(f"predict.{rid}.err")
json.dump({"id": rid, "cpu": cpu, "bundle": t, "role": role, "check_rc": crc,
           "check_msg": msg, "check_s": float(t1) - float(t0), "predict_rc": prc,
           "predict_msg": (pout[-1] if pout else "") if prc == 0 else (perr[-1] if perr else ""),
           "predict_s": float(t2) - float(t1)},
          (d / "results" / f"{rid}.json").open("w"))
PY
done

# -- (f) the table and the verdicts -------------------------------------------------------
HOST_FLAGS=$(grep -o 'avx2\|avx512[a-z_]*' /proc/cpuinfo | sort -u | tr '\n' ' ')
# The table also goes to $ARM64_DIR/table.md.
"$VENV/bin/python" - "$ARM64_DIR" "$REAL_CPUS" "$QEMU_VERSION" "$HOST_FLAGS" \
    "$INSTALLED_MB" "$FRAME" "${ROWS[@]}" <<'PY' | tee "$ARM64_DIR/table.md"
import json, sys
from pathlib import Path

import numpy as np

d, real, qemu, host_flags, installed_mb, frame = sys.argv[1:7]
d, real, rows = Path(d), set(real.split()), [r.split() for r in sys.argv[7:]]
LABEL_MIN, DIFF_MAX = 99.9, 1e-3
env = json.loads((d / "results" / "env.json").read_text())
x86 = json.loads((d / "out" / "x86_64.json").read_text())
problems = []
if env["torch_importable"]:
    problems.append("torch is importable in the emulated environment")

print(f"arm64 emulation: {qemu}; host x86-64 CPU flags: {host_flags.strip() or 'none'}")
print(f"emulated: {env['machine']} Python {env['python']}, mtlsi-edge {env['mtlsi-edge']}, "
      f"openvino {env['openvino']}, onnxruntime {env['onnxruntime']}, numpy {env['numpy']}, "
      f"opencv-python {env['opencv-python']} ({installed_mb} MB installed); torch importable: "
      f"{'yes' if env['torch_importable'] else 'no'}")
print(f"x86-64 reference: the full install (openvino {x86['openvino'].split('-')[0]}, "
      f"onnxruntime {x86['onnxruntime']}); both sides run Predictor.from_bundle on the same "
      f"SynthIndoor render ({Path(frame).name})")
print(f"outputs agree: labels equal >= {LABEL_MIN} % and depth/normals/boundary max abs diff "
      f"<= {DIFF_MAX:g}")
print()
print("| CPU model | bundle | runtime | check | check message | labels equal | depth max diff "
      "| normals max diff | boundary max diff | outputs | verdict | check s | predict s |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for cpu, t, role in rows:
    r = json.loads((d / "results" / f"{cpu}.{t}.{role}.json").read_text())
    crc = r["check_rc"]
    check = {0: "pass (0)", 3: "refused (3)"}.get(crc, f"ERROR ({crc})")
    msg = r["check_msg"].replace("|", "/")
    cells, agree, runtime = ["-"] * 4, None, "?"
    if r["predict_rc"] == 0:
        runtime = r["predict_msg"] + (" (control)" if role == "control" else "")
        ref = np.load(d / "out" / f"x86_64.{t}.npz")
        got = np.load(d / "out" / f"arm64.{cpu}.{t}.{role}.npz")
        lab = 100.0 * float(np.mean(ref["semseg"] == got["semseg"]))
        diffs = [float(np.max(np.abs(ref[k].astype(np.float64) - got[k])))
                 for k in ("depth", "normals", "boundary")]
        agree = lab >= LABEL_MIN and all(x <= DIFF_MAX for x in diffs)
        cells = [f"{lab:.2f} %"] + [f"{x:.2g}" for x in diffs]
    else:
        problems.append(f"{cpu}/{t}/{role}: Predictor failed (exit {r['predict_rc']}): "
                        f"{r['predict_msg']}")
    why = ""
    if crc not in (0, 3):
        why = f"check exited {crc}"
    elif agree is None:
        why = "no outputs to judge"
    elif (crc == 0) != agree:
        why = "check passed wrong outputs" if crc == 0 else "check refused outputs that agree"
    elif cpu in real and not agree:
        why = "wrong outputs on a real core's CPU model"
    if why:
        problems.append(f"{cpu}/{t}/{role}: {why}")
    outputs = {True: "agree", False: "WRONG", None: "n/a"}[agree]
    print(f"| {cpu} | {t} | {runtime} | {check} | {msg} | {' | '.join(cells)} | {outputs} "
          f"| {'FAIL: ' + why if why else 'as required'} | {r['check_s']:.0f} "
          f"| {r['predict_s']:.0f} |")
print()
print("Wall seconds are under qemu user-mode emulation on this x86-64 machine (one at a time, "
      "2 shared cores): they say nothing about the speed of any real arm64 hardware.")
if problems:
    print("arm64_check: FAILED: " + "; ".join(problems))
    sys.exit(1)
print("arm64_check: every verdict as required")
PY
