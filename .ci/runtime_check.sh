#!/usr/bin/env bash
# Runtime-only install check (run by .ci/run after the test suite; ~2-4 min on 2 cores).
#
# Builds the wheel, installs it with only the runtime extras ([onnxruntime,openvino]) into a
# fresh venv, and proves there what a device does: check, Predictor, demo --headless --record,
# profile, --help everywhere, one-line exit 2 for the build commands, and no torch & co. —
# not installed, and not imported by `check`.  Bundles, test images and the test video are
# made by the full install (.venv, or $MTLSI_FULL_VENV); the Predictor's outputs in the runtime
# venv must equal the full install's (labels identical, floats within 1e-5).
#
#   .ci/runtime_check.sh            KEEP_TMP=1 keeps the temp folder (its path is printed)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
FULL=${MTLSI_FULL_VENV:-$ROOT/.venv}
FPY=$FULL/bin/python
FCLI=$FULL/bin/mtlsi-edge
TMP=$(mktemp -d "${TMPDIR:-/tmp}/mtlsi-runtime-check.XXXXXX")
if [[ ${KEEP_TMP:-0} == 1 ]]; then echo "temp folder (kept): $TMP"; else trap 'rm -rf "$TMP"' EXIT; fi
RT=$TMP/runtime-venv
RPY=$RT/bin/python
RCLI=$RT/bin/mtlsi-edge
B=$TMP/bundles
OV=$B/openvino-fp32
ORT=$B/onnxruntime-fp32
WORK=$TMP/work  # cwd of the commands (they write runs/ there)
LOGS=$TMP/logs
mkdir -p "$WORK" "$LOGS" "$TMP/images"
# The build half's packages (tests/test_imports.py HEAVY): none may be installed or imported.
HEAVY="torch torchvision timm nncf torch_pruning onnxscript scipy skimage matplotlib onnx
onnxconverter_common torch_tensorrt"
export HEAVY

passed=0 failed=0 last_rc=0
failures=()
t_start=$(date +%s)

# step NAME CMD...: run CMD (errexit on, in a subshell, output to a log); count and report it.
# Never called in a condition (that would switch errexit off inside); sets $last_rc.
step() {
  local name=$1 t0 log
  shift
  log=$LOGS/$((passed + failed)).log
  echo "+ $name"
  t0=$(date +%s.%N)
  set +e
  (set -e; "$@") >"$log" 2>&1
  last_rc=$?
  set -e
  local dt
  dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b - a}')
  if [[ $last_rc == 0 ]]; then
    passed=$((passed + 1))
    echo "  ok (${dt} s)"
  else
    failed=$((failed + 1))
    failures+=("$name")
    echo "  FAILED (exit $last_rc, ${dt} s); last lines of its output:"
    tail -n 40 "$log" | sed 's/^/  | /'
  fi
}

summary() {
  echo "runtime-install check: $passed passed, $failed failed ($(($(date +%s) - t_start)) s)"
  if ((failed)); then printf '  failed: %s\n' "${failures[@]}"; exit 1; fi
}

# A step later steps need: stop here when it failed.
required() { if [[ $last_rc != 0 ]]; then echo "  (required: stopping)"; summary; fi; }

# -- set-up --------------------------------------------------------------------------------
build_wheel() {
  # From a snapshot of the working tree (tracked + untracked, not ignored), so the build
  # neither writes build/ or *.egg-info into the checkout nor packs a stale build/lib.
  mkdir -p "$TMP/src" "$TMP/wheel"
  if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$ROOT" ls-files -z -co --exclude-standard |
      while IFS= read -r -d '' f; do if [[ -e $f ]]; then printf '%s\0' "$f"; fi; done |
      tar -C "$ROOT" --null -T - -cf - | tar -C "$TMP/src" -xf -
  else
    tar -C "$ROOT" --exclude=.venv --exclude=build --exclude=runs --exclude='*.egg-info' \
      --exclude=.git -cf - . | tar -C "$TMP/src" -xf -
  fi
  "$FPY" -m pip wheel --no-deps "$TMP/src" -w "$TMP/wheel"
  ls "$TMP"/wheel/mtlsi_edge-*.whl
}

make_runtime_venv() {
  local wheel
  wheel=$(ls "$TMP"/wheel/mtlsi_edge-*.whl)
  "$FPY" -m venv "$RT"
  "$RPY" -m pip install -q "${wheel}[onnxruntime,openvino]"
  "$RPY" -m pip list
  du -sm "$("$RPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
}

no_build_half_installed() {
  "$RPY" - <<'EOF'
import importlib.util, os
found = [m for m in os.environ["HEAVY"].split() if importlib.util.find_spec(m) is not None]
assert not found, f"the runtime-only install has build-half packages: {found}"
try:
    import torch  # noqa: F401
except ModuleNotFoundError as e:
    print("import torch:", e)
else:
    raise AssertionError("import torch works in the runtime-only install")
print("not installed:", os.environ["HEAVY"].split())
EOF
}

compile_bundles() {  # full install, the embedded starter checkpoint
  cd "$WORK"
  "$FCLI" compile --target openvino --precision fp32 --out "$OV"
  "$FCLI" compile --target onnxruntime --precision fp32 --out "$ORT"
}

render_inputs() {  # full install: photo-like SynthIndoor renders (PNG) and a walkthrough video
  "$FPY" - "$TMP/images" "$TMP/walk.mp4" <<'EOF'
import sys
from pathlib import Path
import cv2
from mtlsi_edge.data.seeds import render_bgr
from mtlsi_edge.data.synthindoor import render_walkthrough

images = Path(sys.argv[1])
for seed, size in [(101, (240, 320)), (102, (480, 640)), (103, (360, 480)), (104, (301, 427))]:
    assert cv2.imwrite(str(images / f"render-{seed}-{size[0]}x{size[1]}.png"),
                       render_bgr(seed, size))
render_walkthrough(Path(sys.argv[2]), seconds=3, fps=15, size=(240, 320))
print(sorted(p.name for p in images.iterdir()), sys.argv[2])
EOF
}

cat >"$TMP/predict.py" <<'EOF'
"""predict.py OUT.npz IMAGES_DIR BUNDLE...: Predictor outputs on every PNG, for each bundle."""
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from mtlsi_edge import Predictor

out, images, bundles = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
res = {}
for b in bundles:
    pred = Predictor.from_bundle(b, threads=1)
    for img in sorted(images.glob("*.png")):
        frame = cv2.imread(str(img), cv2.IMREAD_COLOR)
        for task, a in pred(frame).items():
            res[f"{Path(b).name}/{img.stem}/{task}"] = a
np.savez(out, **res)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in os.environ["HEAVY"].split())
assert not heavy, f"the Predictor imported build-half modules: {heavy[:10]}"
print(f"{len(res)} outputs of {len(bundles)} bundles -> {out}")
EOF

cat >"$TMP/compare.py" <<'EOF'
"""compare.py RUNTIME.npz FULL.npz: labels identical, floats within 1e-5 (max abs diff)."""
import sys

import numpy as np

rt, full = np.load(sys.argv[1]), np.load(sys.argv[2])
assert sorted(rt.files) == sorted(full.files), (sorted(rt.files), sorted(full.files))
assert rt.files, "no outputs"
worst, bad = 0.0, []
for k in sorted(full.files):
    a, b = rt[k], full[k]
    if a.dtype != b.dtype or a.shape != b.shape:
        bad.append(f"{k}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}")
    elif b.dtype.kind in "iub":
        n = int(np.count_nonzero(a != b))
        if n:
            bad.append(f"{k}: {n} labels differ")
    else:
        d = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
        worst = max(worst, d)
        if not d <= 1e-5:
            bad.append(f"{k}: max abs diff {d:.3g} > 1e-5")
assert not bad, "runtime vs full install:\n" + "\n".join(bad)
print(f"{len(full.files)} outputs: labels identical, floats max abs diff {worst:.3g} (<= 1e-5)")
EOF

# -- the checks --------------------------------------------------------------------------------
predictor_runtime() { "$RPY" "$TMP/predict.py" "$TMP/runtime.npz" "$TMP/images" "$OV" "$ORT"; }
predictor_full() { "$FPY" "$TMP/predict.py" "$TMP/full.npz" "$TMP/images" "$OV" "$ORT"; }
predictor_compare() { "$FPY" "$TMP/compare.py" "$TMP/runtime.npz" "$TMP/full.npz"; }

check_bundle() { cd "$WORK" && "$RCLI" check "$1"; }

demo_headless() {
  cd "$WORK"
  "$RCLI" demo --bundle "$OV" --source "$TMP/walk.mp4" --headless --max-frames 30 \
    --record "$TMP/demo.mp4"
  "$RPY" - "$TMP/demo.mp4" <<'EOF'
import sys
import cv2
cap = cv2.VideoCapture(sys.argv[1])
assert cap.isOpened(), f"cannot open {sys.argv[1]}"
n, shape = 0, None
while True:
    ok, frame = cap.read()
    if not ok:
        break
    n, shape = n + 1, frame.shape
assert n == 30, f"{sys.argv[1]}: {n} frames, expected 30"
print(f"recording {sys.argv[1]}: {n} frames of {shape}")
EOF
}

profile_bundles() {
  cd "$WORK"
  "$RCLI" profile --bundle "$OV" --bundle "$ORT" --runs 20 --name ci
  test -s runs/profile/ci/profile.json
}

build_command_refused() {
  cd "$WORK"
  local rc=0 out
  out=$("$RCLI" compile --out x 2>&1) || rc=$?
  printf '%s\n' "$out"
  [[ $rc == 2 ]] || { echo "exit $rc, expected 2"; return 1; }
  [[ $(grep -c . <<<"$out") == 1 ]] || { echo "expected one line"; return 1; }
  grep -qF '[build]' <<<"$out" || { echo "the line does not name [build]"; return 1; }
  [[ ! -e x ]] || { echo "it wrote x"; return 1; }
}

help_everywhere() {
  cd "$WORK"
  local cmds
  # every command path, groups recursively (typer vendors its own click)
  cmds=$("$RPY" - <<'EOF'
import typer
from mtlsi_edge.cli import app

def walk(cmd, path):
    yield path
    if hasattr(cmd, "list_commands"):
        ctx = cmd.context_class(cmd)
        for name in cmd.list_commands(ctx):
            yield from walk(cmd.get_command(ctx, name), path + [name])

for p in walk(typer.main.get_command(app), []):
    print(" ".join(p))
EOF
)
  [[ $(grep -c . <<<"$cmds") -ge 15 ]] || { echo "too few commands: $cmds"; return 1; }
  grep -qx compile <<<"$cmds"
  while IFS= read -r c; do
    # shellcheck disable=SC2086  # word splitting of the command path is intended
    "$RCLI" $c --help >"$LOGS/help.txt" 2>&1 || { echo "mtlsi-edge $c --help: exit $?"; cat "$LOGS/help.txt"; return 1; }
    grep -q Usage "$LOGS/help.txt" || { echo "mtlsi-edge $c --help: no usage"; return 1; }
    echo "mtlsi-edge $c --help: ok"
  done <<<"$cmds"
}

# check_imports PYTHON CLI BUNDLE: the modules `check` imports (python -X importtime) hold none
# of the build half, and do hold the runtime path (so the parse is not vacuous).
check_imports() {
  cd "$WORK"
  "$1" -X importtime "$2" check "$3" >/dev/null 2>"$TMP/importtime.txt"
  "$FPY" - "$TMP/importtime.txt" <<'EOF'
import os, sys
mods = set()
for line in open(sys.argv[1]):
    if line.startswith("import time:") and line.count("|") == 2:
        mods.add(line.rsplit("|", 1)[1].strip())
heavy = sorted(m for m in mods if m.split(".")[0] in os.environ["HEAVY"].split())
assert {"mtlsi_edge.verify", "mtlsi_edge.cli"} <= mods, f"unexpected import list ({len(mods)})"
assert not heavy, f"check imported build-half modules: {heavy[:20]}"
print(f"check imported {len(mods)} modules, none of torch & co.")
EOF
}

signing_round_trip() {  # keys in the runtime venv, signature by the full install's compile
  cd "$WORK"
  local rc
  "$RCLI" keys new --out "$TMP/keys" --name ops
  "$RCLI" keys new --out "$TMP/keys" --name other
  "$FCLI" compile --target onnxruntime --precision fp32 --out "$B/signed" --sign "$TMP/keys/ops.key" >/dev/null
  "$RCLI" check "$B/signed" --trust "$TMP/keys/ops.pub" | tail -2
  expect_refusal() {  # $1: words of the one line; rest: the command
    local words=$1 out
    shift
    rc=0
    out=$("$@" 2>&1 >/dev/null) || rc=$?
    printf '%s\n' "$out"
    [[ $rc == 3 ]] || { echo "exit $rc, expected 3"; return 1; }
    [[ $(grep -c . <<<"$out") == 1 ]] || { echo "expected one line"; return 1; }
    grep -qF "$words" <<<"$out" || { echo "the line does not say: $words"; return 1; }
  }
  expect_refusal "not trusted here" "$RCLI" check "$B/signed" --trust "$TMP/keys/other.pub"
  expect_refusal "unsigned bundle refused" "$RCLI" check "$ORT" --trust "$TMP/keys/ops.pub"
  "$RPY" - "$B/signed" <<'PYEOF'
import json, sys
from pathlib import Path
from mtlsi_edge.bundle import write_manifest
p = Path(sys.argv[1])
m = json.loads((p / "manifest.json").read_text())
m.pop("integrity")
m["reference"]["thresholds"]["semseg"] = 60.0   # a threshold edit, re-hashed
write_manifest(p, m)
PYEOF
  "$RCLI" check "$B/signed" | tail -1   # the hashes alone accept the re-hashed edit
  expect_refusal "edited after signing" "$RCLI" check "$B/signed" --trust "$TMP/keys/ops.pub"
  MTLSI_EDGE_TRUST="$TMP/keys/ops.pub" expect_refusal "edited after signing" "$RCLI" check "$B/signed"
}

step "build the wheel (from a snapshot of the working tree)" build_wheel; required
step "fresh venv: pip install WHEEL[onnxruntime,openvino] (runtime only)" make_runtime_venv; required
step "no build-half package installed (torch, timm, nncf, onnx, scipy, matplotlib, …)" no_build_half_installed
step "full install: compile openvino fp32 and onnxruntime fp32 bundles" compile_bundles; required
step "full install: SynthIndoor renders (PNG) and a walkthrough video" render_inputs; required
step "runtime: mtlsi-edge check openvino-fp32" check_bundle "$OV"
step "runtime: mtlsi-edge check onnxruntime-fp32" check_bundle "$ORT"
step "runtime: Predictor on the renders" predictor_runtime
step "full install: Predictor on the renders" predictor_full
step "compare: labels identical, floats within 1e-5" predictor_compare
step "runtime: demo --headless --max-frames 30 --record (30 frames recorded)" demo_headless
step "runtime: profile --bundle openvino --bundle onnxruntime --runs 20" profile_bundles
step "runtime: mtlsi-edge compile exits 2 with one line naming [build]" build_command_refused
step "runtime: --help of every command exits 0" help_everywhere
step "runtime: signed bundle: right key, wrong key, unsigned, re-hashed edit, env trust" signing_round_trip
step "runtime: modules imported by check (no torch & co.)" check_imports "$RPY" "$RCLI" "$ORT"
step "full install: modules imported by check (no torch & co.)" check_imports "$FPY" "$FCLI" "$OV"
summary
