"""The bundle format: ``manifest.json`` + the target's model files, self-describing and
checksummed — the contract between the build half that writes bundles
(:mod:`mtlsi_edge.compiler`) and the device that runs them.

``load_bundle`` verifies the schema, the manifest's own integrity hash, its fields and the
sha256 of every file, and refuses anything tampered, missing or extra with a one-line reason.
numpy only (plus the backend's package to read an OpenVINO IR): a device imports it without
the build half.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from mtlsi_edge.backends import TARGET_NAMES, precisions_of
from mtlsi_edge.errors import BundleError
from mtlsi_edge.fileio import atomic_write_json, sha256
from mtlsi_edge.inputs import IMAGENET
from mtlsi_edge.signing import SIGNATURE_FILE, check_signature
from mtlsi_edge.tasks import TaskSet

SCHEMA = "mtlsi-edge/bundle@3"
#: Earlier schemas that still load and check (@2: float NCHW input, logits out).
CHECKED_SCHEMAS = (SCHEMA, "mtlsi-edge/bundle@2")
#: Bundles made before references and the manifest hash: still loadable, not checkable.
LEGACY_SCHEMAS = ("mtlsi-edge/bundle@1",)
#: Segmentation labels of frame-I/O bundles come out at 1/LABEL_STRIDE of the input size
#: (argmax in the graph after resizing the logits; 4 = the heads' own resolution).  Chosen by
#: measurement: docs/benchmarks.md, "Labels in the graph".
LABEL_STRIDE = 1
MANIFEST = "manifest.json"
#: Fields schema 1 never had that the runtime trusts (the integrity hash, the reference outputs
#: and their thresholds): a manifest claiming schema 1 while carrying one is a downgrade — it
#: would be honoured without the integrity check — and is refused.
_LATER_FIELDS = ("integrity", "reference")


#: Deploy graphs of a model: its task branches as one op each, or the per-task reference.
GRAPHS = ("batched", "per-task")


def check_graph(graph: str | None, allow_none: bool = False) -> None:
    """A deploy graph name (``None`` too when ``allow_none``), or :class:`BundleError`."""
    if graph not in ((None, *GRAPHS) if allow_none else GRAPHS):
        raise BundleError(f"graph must be {' or '.join(GRAPHS)}, got {graph!r}")


def _canonical_hash(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items() if k != "integrity"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def write_manifest(folder: Path, manifest: dict) -> Path:
    """Write ``manifest.json`` with its own integrity hash (over its canonical JSON)."""
    manifest = {**manifest, "integrity": _canonical_hash(manifest)}
    return atomic_write_json(folder / MANIFEST, manifest)


def check_destination(out: Path) -> None:
    """``out`` must be a new path, an empty folder or an existing bundle (which is replaced):
    never a file or a folder of someone's other work."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise BundleError(f"{out}: exists and is not a bundle folder; choose a new --out path")
    if not out.exists():
        for parent in out.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise BundleError(f"{out}: {parent} is a file, not a folder")
                break
        return
    entries = list(out.iterdir())
    if not entries:
        return
    why = "it holds no manifest.json"
    mpath = out / MANIFEST
    if mpath.is_file():
        try:
            m = json.loads(mpath.read_text())
            listed = (set(m["files"]) | {MANIFEST, SIGNATURE_FILE}
                      if m.get("schema") in (*CHECKED_SCHEMAS, *LEGACY_SCHEMAS) else None)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
            listed = None
        others = [e.name for e in entries if e.name not in (listed or ())]
        if listed is None:
            why = "its manifest.json is not an mtlsi-edge bundle manifest"
        elif not others:
            return
        else:
            why = f"it holds files that are not part of the bundle (e.g. {sorted(others)[0]})"
    raise BundleError(f"{out}: folder exists and is not a bundle ({why}); refusing to replace "
                      f"it: choose a new --out path")


def load_bundle(path: str | Path, trust: dict | None = None) -> tuple[dict, Path]:
    """Read and verify a bundle; returns (manifest, folder).

    Checks: the manifest's schema, its own integrity hash, its fields (types, ranges, task set
    against outputs), and that the folder holds exactly the listed files — plain files, no
    links, no folders, nothing hidden — each with its sha256 (plus the detached
    ``manifest.sig``).  ``trust`` (``key_id → public key``, :func:`mtlsi_edge.signing.
    trusted_keys`): also require a valid signature by one of these keys.
    """
    p = Path(path)
    if p.is_file() and p.name == MANIFEST:
        p = p.parent
    mpath = p / MANIFEST
    if not p.is_dir():
        raise BundleError(f"{p}: bundle folder not found")
    if not mpath.is_file():
        raise BundleError(f"{mpath}: missing (not a bundle, or an incomplete one)")
    try:
        m = json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{mpath}: unreadable manifest ({e})") from None
    found = m.get("schema") if isinstance(m, dict) else "?"
    if found not in CHECKED_SCHEMAS and found not in LEGACY_SCHEMAS:
        raise BundleError(f"{mpath}: manifest schema {found} is not {SCHEMA}")
    later = [k for k in _LATER_FIELDS if k in m] if found in LEGACY_SCHEMAS else []
    if later:  # an edited schema string must not switch the integrity check off
        raise BundleError(f"{mpath}: manifest schema {found} carries '{later[0]}', a field of "
                          f"a later schema: a downgraded manifest is refused")
    if found in CHECKED_SCHEMAS and m.get("integrity") != _canonical_hash(m):
        raise BundleError(f"{mpath}: manifest was modified after the bundle was made "
                          f"(its integrity hash does not match)")
    _check_fields(m, mpath)
    for entry in p.iterdir():
        if entry.name in (MANIFEST, SIGNATURE_FILE):
            continue
        if entry.name not in m["files"]:
            raise BundleError(f"{entry}: not listed in the manifest (bundle was modified)")
        if entry.is_symlink() or not entry.is_file():
            raise BundleError(f"{entry}: must be a plain file, not a link or a folder")
    for name, digest in m["files"].items():
        f = p / name
        if not f.is_file():
            raise BundleError(f"{f}: listed in the manifest but missing")
        if sha256(f) != digest:
            raise BundleError(f"{f}: sha256 mismatch (file modified after the bundle was made)")
    if trust:
        check_signature(p, m, trust)
    return m, p


def _check_fields(m: dict, mpath: Path) -> None:
    """The manifest fields the runtime relies on, each named in the one-line error."""
    def bad(field: str, why: str) -> BundleError:
        return BundleError(f"{mpath}: {field} {why}")

    for key in ("target", "precision", "files", "outputs", "task_set", "input", "model"):
        if key not in m:
            raise bad(repr(key), "is missing")
    files = m["files"]
    if not isinstance(files, dict) or not files or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise bad("'files'", "must map file names to sha256 digests")
    for name in files:
        if name in ("", ".", "..") or Path(name).name != name or name.startswith(".") \
                or name == MANIFEST:
            raise bad("'files'", f"entry {name!r} points outside the bundle (or is not a plain "
                                 f"file name)")
    if m["target"] not in TARGET_NAMES:
        raise bad("'target'", f"{m['target']!r} is not one of {', '.join(TARGET_NAMES)}")
    if m["precision"] not in precisions_of(m["target"]):
        raise bad("'precision'", f"{m['precision']!r} is not one of target {m['target']}'s "
                                 f"{', '.join(precisions_of(m['target']))}")
    try:
        task_set = TaskSet.from_dict(m["task_set"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise bad("'task_set'", f"is malformed ({type(e).__name__}: {e})") from None
    if m["outputs"] != task_set.names:
        raise bad("'outputs'", f"{m['outputs']!r} do not match the task set's "
                               f"{task_set.names}")
    for t in task_set:
        if t.spec.output == "labels" and (len(t.class_names) != t.out_channels
                                         or len(t.palette) != t.out_channels):
            raise bad("'task_set'", f"task {t.name!r} has {len(t.class_names)} class names "
                                    f"and {len(t.palette)} colours for {t.out_channels} classes")
    inp = m["input"]
    if not isinstance(inp, dict):
        raise bad("'input'", "must be an object")
    size = inp.get("size")
    if not (isinstance(size, list) and len(size) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and 32 <= v <= 8192 for v in size)):
        raise bad("'input.size'", f"must be [H, W] with integers in 32..8192, got {size!r}")
    for key in ("mean", "std"):
        v = inp.get(key)
        if not (isinstance(v, list) and len(v) == 3 and all(
                isinstance(x, (int, float)) and math.isfinite(x) for x in v)):
            raise bad(f"'input.{key}'", f"must be 3 finite numbers, got {v!r}")
    if any(x <= 0 for x in inp["std"]):
        raise bad("'input.std'", "must be positive")
    if m.get("io", "tensor") not in ("tensor", "frame"):
        raise bad("'io'", f"must be 'tensor' or 'frame', got {m.get('io')!r}")
    if m.get("io") == "frame":
        _check_frame_fields(m, bad)
    if m.get("graph") not in (None, *GRAPHS):
        raise bad("'graph'", f"must be null or one of {', '.join(GRAPHS)}, got {m.get('graph')!r}")
    if m.get("output_stride", 4) not in (1, 4):
        raise bad("'output_stride'", f"must be 1 or 4, got {m.get('output_stride')!r}")
    layouts = m.get("output_layouts", {})
    if not isinstance(layouts, dict) or any(v not in ("NCHW", "NHWC") for v in layouts.values()):
        raise bad("'output_layouts'", "must map outputs to NCHW or NHWC")
    ref = m.get("reference")
    if ref is not None and not (isinstance(ref, dict) and ref.get("file") in files
                                and isinstance(ref.get("thresholds"), dict)
                                and set(ref["thresholds"]) == set(task_set.names)):
        raise bad("'reference'", "must name a listed file and a threshold per task")
    for t in task_set if ref is not None else ():
        why = t.spec.threshold_problem(ref["thresholds"][t.name])
        if why:
            raise bad(f"'reference.thresholds.{t.name}'", why)


def _check_frame_fields(m: dict, bad) -> None:
    """The fields of a frame-I/O bundle: label stride and size, the folded normalisation,
    the uint8 NHWC BGR input."""
    inp = m["input"]
    if m.get("label_stride") not in (1, 2, 4):
        raise bad("'label_stride'", f"must be 1, 2 or 4, got {m.get('label_stride')!r}")
    ls = m.get("label_size")
    if ls is not None and not (isinstance(ls, list) and len(ls) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in ls)):
        raise bad("'label_size'", f"must be null or [H, W] positive integers, got {ls!r}")
    stride = m["label_stride"]
    want = None if stride == 4 else [v // stride for v in inp["size"]]
    if ls != want:
        raise bad("'label_size'", f"{ls!r} does not match label_stride {stride} of the "
                                  f"{inp['size'][0]}×{inp['size'][1]} input ({want!r})")
    # The normalisation is folded into the model file; the manifest only records it.
    for key, folded in (("mean", IMAGENET.mean), ("std", IMAGENET.std)):
        if not np.allclose(inp[key], folded, rtol=0, atol=1e-7):
            raise bad(f"'input.{key}'", f"{inp[key]!r} is not the normalisation folded "
                                        f"into the model ({list(folded)})")
    if (inp.get("dtype"), inp.get("layout"), inp.get("color")) != ("uint8", "NHWC", "BGR"):
        raise bad("'input'", "of a frame-I/O bundle must be uint8 NHWC BGR")
