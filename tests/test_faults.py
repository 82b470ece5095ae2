"""The fault suite: every bad input a user can give ends in one line and a non-zero exit, and
nothing the user already had is modified or left half-written.

One parametrised test over a table of cases (family, command line, how the bad input is made,
expected exit code, words the one line must contain).  Placeholders in command lines:
``{ckpt}`` a checkpoint (copy of the tiny test model's), ``{bundle}`` an ONNX Runtime bundle
(copy), ``{ovbundle}`` an OpenVINO bundle (copy), ``{data}`` a tiny SynthIndoor dataset,
``{T}`` the case's own folder.  Every case's folder also holds ``file.txt``, an empty ``dir/``
and ``userdir/keep.txt``; their checksums (and every other pre-existing file's) must not change,
and no hidden temp file may be left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import one_error_line
from typer.testing import CliRunner

from mtlsi_edge.bundle import MANIFEST, write_manifest
from mtlsi_edge.cli import app
from mtlsi_edge.fileio import sha256
from mtlsi_edge.verify import REFERENCE_FILE

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@dataclass(frozen=True)
class Case:
    family: str
    argv: tuple[str, ...]
    words: tuple[str, ...] = ()
    prep: Callable[[Path], None] | None = None
    code: int = 2
    name: str = ""

    @property
    def id(self) -> str:
        return f"{self.family}:{self.name or ' '.join(self.argv)}"


# -- helpers that make bad inputs ---------------------------------------------------------------
def _manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST).read_text())


def edit_manifest(key: str, fn: Callable[[dict], None], resign: bool = True):
    """Edit ``T/key``'s manifest; ``resign``: recompute its integrity hash (a deliberate edit)."""

    def prep(t: Path) -> None:
        folder = t / key
        m = _manifest(folder)
        m.pop("integrity", None)
        fn(m)
        if resign:
            write_manifest(folder, m)
        else:
            (folder / MANIFEST).write_text(json.dumps(m))

    return prep


def edit_ckpt(fn: Callable[[dict], None]):
    def prep(t: Path) -> None:
        p = t / "ckpt" / "tiny.json"
        d = json.loads(p.read_text())
        fn(d)
        p.write_text(json.dumps(d))

    return prep


def _set(path: str, value):
    def fn(d: dict) -> None:
        keys = path.split(".")
        for k in keys[:-1]:
            d = d[k]
        if value is _DEL:
            del d[keys[-1]]
        else:
            d[keys[-1]] = value

    return fn


_DEL = object()


def both_fns(*fns):
    def fn(d: dict) -> None:
        for f in fns:
            f(d)

    return fn


def other_size_reference(t: Path) -> None:
    """A reference frame of another size in reference.safetensors (files re-hashed)."""
    import cv2
    from safetensors.numpy import load_file, save_file

    ref = t / "bundle" / REFERENCE_FILE
    d = load_file(str(ref))
    d["frame.1"] = cv2.imencode(".png", np.zeros((32, 40, 3), np.uint8))[1].reshape(-1)
    save_file(d, str(ref))
    edit_manifest("bundle", lambda m: m["files"].__setitem__(REFERENCE_FILE, sha256(ref)))(t)


def write(rel: str, data: bytes | str):
    def prep(t: Path) -> None:
        p = t / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)

    return prep


def both(*preps):
    def prep(t: Path) -> None:
        for p in preps:
            p(t)

    return prep


def scene_folder(t: Path) -> None:
    """``T/imgs``: two small readable images (a source for demo cases)."""
    import cv2

    (t / "imgs").mkdir(exist_ok=True)
    for i in range(2):
        cv2.imwrite(str(t / "imgs" / f"{i}.png"), np.full((64, 96, 3), 60 * i, np.uint8))


def calib_cache(sidecar: str | None, array: np.ndarray | None = None):
    def prep(t: Path) -> None:
        arr = np.zeros((2, 3, 64, 96), np.float32) if array is None else array
        np.save(t / "cal.npy", arr, allow_pickle=True)
        if sidecar is not None:
            (t / "cal.json").write_text(sidecar)

    return prep


def onnx_with_other_outputs(t: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    src = onnx.load(str(t / "bundle" / "model.onnx"), load_external_data=False)
    meta = [p for p in src.metadata_props if p.key == "mtlsi_edge"]
    g = helper.make_graph([helper.make_node("Identity", ["image"], ["other"])], "g",
                          [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                         [1, 3, 64, 96])],
                          [helper.make_tensor_value_info("other", TensorProto.FLOAT,
                                                         [1, 3, 64, 96])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.metadata_props.extend(meta)
    onnx.save(m, str(t / "other.onnx"))


def onnx_external_outside(t: Path) -> None:
    """The bundle's model.onnx swapped for one whose weights live in ../outside.bin (onnx
    itself refuses to write such a path, so the location is edited in), checksums updated."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((1, 3, 64, 96), np.float32), "w")
    g = helper.make_graph([helper.make_node("Add", ["image", "w"], ["semseg"])], "g",
                          [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                         [1, 3, 64, 96])],
                          [helper.make_tensor_value_info("semseg", TensorProto.FLOAT,
                                                         [1, 3, 64, 96])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(m, str(t / "ext.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="w.bin", size_threshold=0)
    shutil.copyfile(t / "w.bin", t / "outside.bin")
    m = onnx.load(str(t / "ext.onnx"), load_external_data=False)
    for e in m.graph.initializer[0].external_data:
        if e.key == "location":
            e.value = "../outside.bin"
    (t / "bundle" / "model.onnx").write_bytes(m.SerializeToString())
    m2 = _manifest(t / "bundle")
    m2.pop("integrity")
    m2["files"]["model.onnx"] = sha256(t / "bundle" / "model.onnx")
    write_manifest(t / "bundle", m2)


def swap_ov_bin(t: Path) -> None:
    """Replace the OpenVINO weights by other bytes of the same size, checksums updated."""
    f = t / "ovbundle" / "model.bin"
    data = bytearray(f.read_bytes())
    data[: len(data) // 2] = bytes(len(data) // 2)
    f.write_bytes(bytes(data))
    m = _manifest(t / "ovbundle")
    m.pop("integrity")
    m["files"]["model.bin"] = sha256(f)
    write_manifest(t / "ovbundle", m)


# -- the table ----------------------------------------------------------------------------------
SIZES = ["7x9", "100000x100000", "abc", "0x0", "-5x10", "240", "240x320x3", "32x5000"]
SIZE_CMDS = [("info", "edge-effvit-b0", "--size"),
             ("data", "synth", "--n", "1", "--out", "{T}/s", "--size"),
             ("calibrate", "--n", "1", "--out", "{T}/c", "--size"),
             ("profile", "--bundle", "{bundle}", "--runs", "1", "--no-verify", "--size")]

SETS = {  # --set overrides: (value, words)
    "foo=1": ("unknown model config key 'foo'",),
    'num_tokens="x"': ("'num_tokens' must be an integer",),
    "num_tokens=0": ("'num_tokens' must be ≥ 1",),
    "dim=4": ("'dim' must be ≥ 8",),
    "heads=0": ("'heads' must be ≥ 1",),
    'kernel="tanh"': ("'kernel' must be one of relu, elu",),
    "input_size=[1,2]": ("'input_size' must be [H, W] with both in 32..4096",),
    'input_size="a"': ("'input_size' must be a list of integers",),
    "input_size=[64]": ("'input_size' must be a list of 2 integers",),
    "query_scales=[2]": ("'query_scales' must be odd",),
    'task_set="coco"': ("unknown task set 'coco'",),
    'backbone="nope_net"': ("'backbone' 'nope_net' is not a timm model",),
    "output_stride=3": ("'output_stride' must be one of 1, 4",),
    "cwib_depths=[1]": ("'cwib_depths' must be a list of 2 integers",),
    "ffn_ratio=-1": ("'ffn_ratio' must be a positive number",),
    "pretrained=3": ("'pretrained' must be true or false",),
    "dim=101": ("'dim' (101) must be a multiple of 'heads'",),
    "noequals": ("bad --set 'noequals'",),
}

CKPT_EDITS = {  # checkpoint JSON edits: (fn, words)
    "unknown key": (_set("model_config.foo", 1), ("unknown model config key 'foo'",)),
    "wrong type": (_set("model_config.dim", "wide"), ("'dim' must be an integer",)),
    "list for string": (_set("model_config.backbone", ["a"]), ("'backbone' must be a non",)),
    "unknown task set": (_set("model_config.task_set", "coco"), ("unknown task set 'coco'",)),
    "pruned not object": (_set("pruned", "yes"), ("'pruned' must be null or an object",)),
    "weights outside": (_set("weights", "../x.safetensors"), ("must name a file next to it",)),
    "weights missing": (_set("weights", "gone.safetensors"), ("weights file missing",)),
    "sha mismatch": (_set("weights_sha256", "0" * 64), ("sha256 does not match",)),
    "schema": (_set("schema", "other@9"), ("schema other@9",)),
    "no model_config": (_set("model_config", _DEL), ("lacks 'model_config'",)),
    "config not object": (_set("model_config", [1, 2]), ("must be an object",)),
}
CKPT_CMDS = [("eval", "--data", "{data}", "--checkpoint"),
             ("export", "--out", "{T}/x.onnx", "--checkpoint"),
             ("compile", "--target", "onnxruntime", "--out", "{T}/b", "--checkpoint"),
             ("quantize", "--format", "onnx", "--n", "1", "--out", "{T}/q", "--checkpoint"),
             ("demo", "--headless", "--max-frames", "1", "--checkpoint")]

BUNDLE_EDITS = {  # bundle edits on {bundle}: (prep, words)
    "task removed": (edit_manifest("bundle", lambda m: m["task_set"]["tasks"].pop()),
                     ("do not match the task set",)),
    "output removed": (edit_manifest("bundle", lambda m: m["outputs"].pop()),
                       ("do not match the task set",)),
    "input size changed": (edit_manifest("bundle", both_fns(_set("input.size", [128, 128]),
                                                            _set("label_size", [128, 128]))),
                           ("does not match the manifest's 128×128×3",)),
    "input size changed alone": (edit_manifest("bundle", _set("input.size", [128, 128])),
                                 ("'label_size'", "does not match label_stride 1")),
    "io unknown": (edit_manifest("bundle", _set("io", "pixels")), ("'io' must be",)),
    "io relabelled": (edit_manifest("bundle", _set("io", "tensor")),
                      ("model input [1, 64, 96, 3] does not match the manifest's 3×64×96",)),
    "label stride": (edit_manifest("bundle", _set("label_stride", 3)), ("'label_stride'",)),
    "folded mean edited": (edit_manifest("bundle", _set("input.mean", [0.5, 0.5, 0.5])),
                           ("not the normalisation folded into the model",)),
    "target unknown": (edit_manifest("bundle", _set("target", "nope")),
                       ("'target' 'nope' is not one of",)),
    "precision relabelled": (edit_manifest("bundle", _set("precision", "int8")),
                             ("manifest says int8 but model.onnx has 0 quantisation",)),
    "class names truncated": (edit_manifest(
        "bundle", lambda m: m["task_set"]["tasks"][0]["class_names"].pop()),
        ("class names",)),
    "mean not numbers": (edit_manifest("bundle", _set("input.mean", ["a", 1, 2])),
                         ("'input.mean' must be 3 finite numbers",)),
    "std zero": (edit_manifest("bundle", _set("input.std", [0, 1, 1])),
                 ("'input.std' must be positive",)),
    "stride": (edit_manifest("bundle", _set("output_stride", 2)), ("'output_stride'",)),
    "unsigned edit": (edit_manifest("bundle", _set("input.mean", [0.5, 0.5, 0.5]),
                                    resign=False), ("manifest was modified",)),
    "hidden file": (write("bundle/.hidden", "x"), ("not listed in the manifest",)),
    "sub-folder": (write("bundle/sub/x.txt", "x"), ("not listed in the manifest",)),
    "extra file": (write("bundle/extra.onnx", "x"), ("not listed in the manifest",)),
    "symlink": (lambda t: (t / "bundle" / "model.onnx").unlink() or os.symlink(
        t / "file.txt", t / "bundle" / "model.onnx"), ("must be a plain file",)),
    "missing file": (lambda t: (t / "bundle" / REFERENCE_FILE).unlink(),
                     ("listed in the manifest but missing",)),
    "manifest not json": (write("bundle/manifest.json", "{nope"), ("unreadable manifest",)),
    "external data outside": (onnx_external_outside, ("ONNX Runtime cannot load it",)),
    # gates that could not fail, and edits that used to pass (issue: "no gate that cannot fail")
    "threshold negative": (edit_manifest("bundle", _set("reference.thresholds.semseg", -5)),
                           ("reference.thresholds.semseg", "outside 50..100")),
    "threshold huge": (edit_manifest("bundle", _set("reference.thresholds.depth", 1e30)),
                       ("reference.thresholds.depth", "outside")),
    "threshold bool": (edit_manifest("bundle", _set("reference.thresholds.normals", True)),
                       ("must be a number, got True",)),
    "schema downgraded": (edit_manifest("bundle", _set("schema", "mtlsi-edge/bundle@1")),
                          ("a downgraded manifest is refused",)),
    "label size edited": (edit_manifest("bundle", _set("label_size", [32, 48])),
                          ("does not match label_stride",)),
    "label stride edited": (edit_manifest("bundle", both_fns(_set("label_stride", 2),
                                                             _set("label_size", [32, 48]))),
                            ("labels of 64×96, the manifest's label_size is 32×48",)),
}
BUNDLE_CMDS = [("check",), ("demo", "--headless", "--max-frames", "1", "--bundle"),
               ("profile", "--runs", "1", "--bundle"), ("eval", "--data", "{data}", "--bundle")]


def _cases() -> list[Case]:
    cases: list[Case] = []
    for cmd in SIZE_CMDS:
        for size in SIZES:
            cases.append(Case("sizes", (*cmd, size), ("bad size",)))
    for kv, words in SETS.items():
        cases.append(Case("model config", ("train", "--data", "{data}", "--steps", "1",
                                           "--out", "{T}/run", "--set", kv), words))
    for cmd in CKPT_CMDS:
        for name, (fn, words) in CKPT_EDITS.items():
            cases.append(Case("checkpoint", (*cmd, "{ckpt}"), words, edit_ckpt(fn),
                              name=f"{cmd[0]} {name}"))
    for cmd in BUNDLE_CMDS:
        for name, (prep, words) in BUNDLE_EDITS.items():
            cases.append(Case("edited bundle", (*cmd, "{bundle}"), words, prep,
                              name=f"{cmd[0]} {name}"))
    cases.append(Case("edited bundle", ("check", "{ovbundle}"), ("OpenVINO", "model.xml"),
                      swap_ov_bin, code=2, name="check ov bin swapped"))
    out = "output paths"
    cases += [
        Case(out, ("export", "--checkpoint", "{ckpt}", "--out", "{T}/dir"), ("is a folder",)),
        Case(out, ("export", "--checkpoint", "{ckpt}", "--out", "{T}/file.txt/x.onnx"),
             ("is a file, not a folder",)),
        Case(out, ("export", "--checkpoint", "{ckpt}", "--out", "{T}/x.txt"), ("must end in",)),
        Case(out, ("demo", "--bundle", "{bundle}", "--record", "{T}/dir"), ("is a folder",)),
        Case(out, ("demo", "--bundle", "{bundle}", "--record", "{T}/x.txt"), (".mp4 or .avi",)),
        Case(out, ("demo", "--bundle", "{bundle}", "--record", "{T}/noext"), (".mp4 or .avi",)),
        Case(out, ("demo", "--bundle", "{bundle}", "--record", "{T}/file.txt/x.mp4"),
             ("is a file, not a folder",)),
        Case(out, ("profile", "--bundle", "{bundle}", "--json", "{T}/dir"), ("is a folder",)),
        Case(out, ("profile", "--bundle", "{bundle}", "--csv", "{T}/x.txt"), ("must end in",)),
        Case(out, ("profile", "--bundle", "{bundle}", "--plot", "{T}/file.txt"), ("is a file",)),
        Case(out, ("calibrate", "--n", "1", "--out", "{T}/file.txt/c"), ("is a file, not",)),
        Case(out, ("data", "synth", "--n", "1", "--out", "{T}/file.txt"), ("is a file",)),
        Case(out, ("train", "--data", "{data}", "--out", "{T}/file.txt"), ("is a file",)),
        Case(out, ("train", "--data", "{data}", "--out", "{T}/ckpt"), ("already holds a run",),
             lambda t: (t / "ckpt" / "last.json").write_text("{}"), name="train onto a run"),
        Case(out, ("compile", "--target", "onnxruntime", "--checkpoint", "{ckpt}", "--out",
                   "{T}/file.txt"), ("not a bundle folder",)),
        Case(out, ("compile", "--target", "onnxruntime", "--checkpoint", "{ckpt}", "--out",
                   "{T}/userdir"), ("not a bundle", "refusing to replace")),
        Case(out, ("compile", "--target", "onnxruntime", "--checkpoint", "{ckpt}", "--out",
                   "{T}/file.txt/b"), ("is a file, not a folder",)),
        Case(out, ("deploy", "--checkpoint", "{ckpt}", "--out", "{T}/file.txt"), ("is a file",)),
        Case(out, ("quantize", "--checkpoint", "{ckpt}", "--out", "{T}/file.txt/q"),
             ("is a file, not",)),
        Case(out, ("prune", "--checkpoint", "{ckpt}", "--data", "{data}", "--out",
                   "{T}/file.txt"), ("is a file",)),
    ]
    txt = "text"
    cases += [
        Case(txt, ("eval", "--checkpoint", "{T}/[red]x[/].json", "--data", "{data}"),
             ("[red]x[/].json", "not found")),
        Case(txt, ("check", "{T}/[/]"), ("[/]", "not found")),
        Case(txt, ("compile", "--target", "onnxruntime", "--onnx", "{T}/[bold]m.onnx"),
             ("[bold]m.onnx",)),
        Case(txt, ("demo", "--bundle", "{bundle}", "--source", "{T}/[b]v[/b].mp4", "--headless"),
             ("[b]v[/b].mp4",)),
        Case(txt, ("calibrate", "--source", "{T}/[x]", "--n", "1", "--out", "{T}/c"), ("[x]",)),
    ]
    cal = "calibration caches"
    cases += [
        Case(cal, ("quantize", "--checkpoint", "{ckpt}", "--calib", "{T}/cal", "--out",
                   "{T}/q"), (), calib_cache("{nope"), name="malformed sidecar"),
        Case(cal, ("quantize", "--checkpoint", "{ckpt}", "--calib", "{T}/cal", "--out",
                   "{T}/q"), (), calib_cache("{}"), name="sidecar missing keys"),
        Case(cal, ("quantize", "--checkpoint", "{ckpt}", "--calib", "{T}/cal", "--out",
                   "{T}/q"), (), calib_cache(None), name="no sidecar"),
        Case(cal, ("quantize", "--checkpoint", "{ckpt}", "--calib", "{T}/cal", "--out",
                   "{T}/q"), (), calib_cache('{"n": 1}', np.array([{"a": 1}], dtype=object)),
             name="pickled object array"),
        Case(cal, ("quantize", "--checkpoint", "{ckpt}", "--calib", "{T}/cal", "--out",
                   "{T}/q"), ("calibration samples are 32×32", "takes 64×96"),
             calib_cache('{"n": 2, "origins": [], "skipped": [], "source": "x"}',
                         np.zeros((2, 3, 32, 32), np.float32)), name="other input size"),
    ]
    bud = "budgets and gates"
    cases += [
        Case(bud, ("deploy", "--val", "{data}", "--max-drop", "miou=nan"), ("finite",)),
        Case(bud, ("deploy", "--val", "{data}", "--max-drop", "miou=inf"), ("finite",)),
        Case(bud, ("deploy", "--val", "{data}", "--max-drop", "nope=1"), ("unknown budget",)),
        Case(bud, ("deploy", "--val", "{data}", "--max-drop", "miou"), ("KEY=VALUE",)),
        Case(bud, ("deploy", "--max-drop", "miou=1"), ("--max-drop needs --val",)),
        Case(bud, ("compile", "--target", "onnxruntime", "--gate", "semseg=x"), ("--gate",)),
        Case(bud, ("compile", "--target", "onnxruntime", "--gate", "nope=1", "--checkpoint",
                   "{ckpt}", "--out", "{T}/b"), ("unknown task 'nope'",)),
        Case(bud, ("quantize", "--gate", "=3"), ("--gate",)),
        Case(bud, ("quantize", "--checkpoint", "{ckpt}", "--gate", "nope=1", "--out", "{T}/q"),
             ("unknown task 'nope'",)),
        Case(bud, ("deploy", "--checkpoint", "{ckpt}", "--gate", "nope=1", "--out", "{T}/d"),
             ("unknown task 'nope'",)),
    ]
    use = "usage"
    cases += [
        Case(use, ("nope",), ("No such command 'nope'",)),
        Case(use, ("data", "synth", "--n", "0", "--out", "{T}/s"), ("--n",)),
        Case(use, ("demo", "--threads", "0"), ("--threads",)),
        Case(use, ("compile", "--precision"), ("--precision", "requires an argument")),
        Case(use, ("train", "--data", "{data}", "--scale", "2,1"), ("--scale", "lo ≤ hi")),
        Case(use, ("prune", "--ratio", "1.5", "--data", "{data}"), ("--ratio",)),
        Case(use, ("info", "edge-effvit-b0", "--bogus"), ("No such option",)),
        Case(use, ("eval",), ("Missing option '--data'",)),
        Case(use, ("eval", "--data", "{data}", "--boundary-protocol", "bsds"),
             ("--boundary-protocol", "seism-nms or mtl")),
    ]
    ow = "overwrite"  # nothing the user made is replaced without --overwrite
    cases += [
        Case(ow, ("demo", "--bundle", "{bundle}", "--source", "{T}/imgs", "--record",
                  "{T}/rec.mp4"), ("rec.mp4: exists", "--overwrite"),
             both(write("rec.mp4", "the user's recording"), scene_folder), name="demo record"),
        Case(ow, ("calibrate", "--n", "1", "--out", "{T}/c"), ("c.json: exists", "--overwrite"),
             write("c.json", "{}"), name="calibrate json"),
        Case(ow, ("quantize", "--checkpoint", "{ckpt}", "--out", "{T}/model"),
             ("model.xml: exists", "--overwrite"), write("model.xml", "<net/>"),
             name="quantize xml"),
        Case(ow, ("tune", "--budget", "10ms", "--checkpoint", "{ckpt}", "--out", "{T}/t"),
             ("pareto.md: exists", "--overwrite"), write("t/pareto.md", "# mine"),
             name="tune pareto"),
        Case(ow, ("tune", "--budget", "10ms", "--checkpoint", "{ckpt}", "--out", "{T}/t"),
             ("not a bundle",), write("t/bundle/notes.txt", "mine"), name="tune bundle dir"),
    ]
    gate = "gates that cannot fail"
    cases += [
        Case(gate, ("compile", "--target", "onnxruntime", "--checkpoint", "{ckpt}", "--gate",
                    "semseg=-5", "--out", "{T}/b"), ("semseg", "outside 50..100")),
        Case(gate, ("deploy", "--checkpoint", "{ckpt}", "--gate", "semseg=150", "--out",
                    "{T}/d"), ("semseg", "outside 50..100")),
        Case(gate, ("quantize", "--checkpoint", "{ckpt}", "--gate", "normals=1e30", "--out",
                    "{T}/q"), ("normals", "outside")),
    ]
    tb = "tracebacks"
    cases += [
        Case(tb, ("check", "{bundle}"), ("reference frames differ in size",),
             other_size_reference, name="reference frame of another size"),
        Case(tb, ("demo", "--headless", "--bundle", "{bundle}", "--source", "{T}/imgs"),
             ("reference frames differ in size",), both(other_size_reference, scene_folder),
             name="demo self-check, reference of another size"),
        Case(tb, ("train", "--data", "{data}", "--out", "{T}/r", "--lr", "nan"), ("--lr",)),
        Case(tb, ("train", "--data", "{data}", "--out", "{T}/r", "--lr", "-1"), ("--lr",)),
    ]
    late = "late refusals"
    cases += [
        Case(late, ("deploy", "--checkpoint", "{ckpt}", "--val", "{T}/nope", "--out",
                    "{T}/d"), ("nope",)),
        Case(late, ("deploy", "--checkpoint", "{ckpt}", "--calib", "{T}/nope", "--out",
                    "{T}/d"), ("nope", "calibration")),
        Case(late, ("deploy", "--checkpoint", "{ckpt}", "--val", "{data}", "--max-drop",
                    "nope=1", "--out", "{T}/d"), ("unknown budget",)),
        Case(late, ("demo", "--headless", "--bundle", "{bundle}", "--source", "{T}/broken",
                    "--record", "{T}/o.mp4"), ("none of its 2 images can be read",),
             both(write("broken/a.png", "not a png"), write("broken/b.jpg", "nor a jpeg"))),
    ]
    trust = "signatures"
    cases += [
        Case(trust, ("check", "{bundle}", "--trust", "{T}/nokey.pub"),
             ("trusted key not found",)),
        Case(trust, ("check", "{bundle}", "--trust", "{T}/file.txt"),
             ("not a PEM public key",)),
        Case(trust, ("compile", "--target", "onnxruntime", "--checkpoint", "{ckpt}", "--sign",
                     "{T}/file.txt", "--out", "{T}/b"), ("not an unencrypted PEM private key",)),
    ]
    onnx_ = "hand-made ONNX"
    cases += [
        Case(onnx_, ("compile", "--target", "onnxruntime", "--onnx", "{T}/other.onnx",
                     "--out", "{T}/b"), ("no output 'semseg'",), onnx_with_other_outputs),
        Case(onnx_, ("compile", "--target", "openvino", "--onnx", "{T}/other.onnx",
                     "--out", "{T}/b"), ("no output 'semseg'",), onnx_with_other_outputs),
        Case(onnx_, ("compile", "--target", "onnxruntime", "--onnx", "{T}/file.txt"),
             ("not a readable ONNX",)),
        Case(onnx_, ("compile", "--target", "onnxruntime", "--precision", "int8"),
             ("not quantised",)),
        Case(onnx_, ("compile", "--target", "openvino", "--precision", "int8", "--onnx",
                     "{bundle}/model.onnx"), ("not quantised",)),
    ]
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def world(tmp_path_factory, bundle, tiny_checkpoint) -> dict:
    from mtlsi_edge.data.synthindoor import write_dataset

    root = tmp_path_factory.mktemp("world")
    data = write_dataset(root / "data", n=4, size=(64, 96), seed=5, workers=1)
    return {"bundle": bundle("onnxruntime"), "ovbundle": bundle("openvino"),
            "ckpt": Path(tiny_checkpoint), "data": Path(data)}


def _snapshot(t: Path) -> dict[str, str]:
    return {str(p.relative_to(t)): (hashlib.sha256(p.read_bytes()).hexdigest()
                                    if p.is_file() else "dir")
            for p in sorted(t.rglob("*")) if not p.is_symlink()}


def test_case_count_and_families():
    fams: dict[str, int] = {}
    for c in CASES:
        fams[c.family] = fams.get(c.family, 0) + 1
    print("fault suite:", len(CASES), "cases;", fams)
    assert len(CASES) >= 150 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fault(case: Case, world, tmp_path, monkeypatch):
    t = tmp_path
    monkeypatch.chdir(t)  # default outputs (runs/…) land in the case's own folder
    (t / "file.txt").write_text("the user's file")
    (t / "dir").mkdir()
    (t / "userdir").mkdir()
    (t / "userdir" / "keep.txt").write_text("the user's work")
    shutil.copytree(world["bundle"], t / "bundle")
    shutil.copytree(world["ovbundle"], t / "ovbundle")
    shutil.copytree(world["ckpt"].parent, t / "ckpt")
    if case.prep is not None:
        case.prep(t)
    before = _snapshot(t)
    subst = {"{T}": str(t), "{bundle}": str(t / "bundle"), "{ovbundle}": str(t / "ovbundle"),
             "{ckpt}": str(t / "ckpt" / "tiny.json"), "{data}": str(world["data"])}
    argv = []
    for a in case.argv:
        for k, v in subst.items():
            a = a.replace(k, v)
        argv.append(a)
    one_error_line(CliRunner().invoke(app, argv), *case.words, code=case.code)
    after = _snapshot(t)
    changed = [k for k, v in before.items() if after.get(k) != v]
    assert not changed, f"modified or removed: {changed}"
    hidden = [k for k in after if k not in before and Path(k).name.startswith(".")]
    assert not hidden, f"left behind: {hidden}"


# -- beyond the CLI: full disks and kills ---------------------------------------------------------
def _run_limited(code: str, limit: int) -> tuple[int, str]:
    """Run ``code`` in a Python process whose files may not grow past ``limit`` bytes."""
    import subprocess

    pre = ("import resource, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
           f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n")
    r = subprocess.run([sys.executable, "-c", pre + code], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return r.returncode, r.stdout + r.stderr


def test_full_disk_during_compile_keeps_previous_bundle(world, tmp_path):
    b = shutil.copytree(world["bundle"], tmp_path / "b")
    before = _snapshot(tmp_path)
    code, out = _run_limited(
        "from mtlsi_edge.cli import main; import sys; "
        f"sys.argv=['mtlsi-edge','compile','--target','onnxruntime','--checkpoint',"
        f"{str(world['ckpt'])!r},'--out',{str(b)!r}]; main()", 200_000)
    assert code == 2 and "File too large" in out and "Traceback" not in out, out
    assert _snapshot(tmp_path) == before  # previous bundle intact, no stage left
    from mtlsi_edge.bundle import load_bundle

    load_bundle(b)


def test_full_disk_during_quantize_leaves_nothing_half_written(world, tmp_path):
    code, out = _run_limited(
        "from mtlsi_edge.cli import main; import sys; "
        f"sys.argv=['mtlsi-edge','quantize','--format','onnx','--n','2','--checkpoint',"
        f"{str(world['ckpt'])!r},'--out',{str(tmp_path / 'q')!r}]; main()", 300_000)
    assert code == 2 and "Traceback" not in out, out
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    for p in tmp_path.glob("q.*"):
        assert p.name.endswith(".fp32.onnx") or p.stat().st_size > 0


def test_recording_on_a_full_disk_is_reported(world, tmp_path):
    src = tmp_path / "frames"
    src.mkdir()
    import cv2

    for i in range(8):
        cv2.imwrite(str(src / f"{i}.png"), np.full((64, 96, 3), 30 * i, np.uint8))
    (tmp_path / "o.avi").write_bytes(b"the user's earlier recording")
    code, out = _run_limited(
        "from mtlsi_edge.cli import main; import sys; "
        f"sys.argv=['mtlsi-edge','demo','--headless','--no-verify','--bundle',"
        f"{str(world['bundle'])!r},'--source',{str(src)!r},'--overwrite','--record',"
        f"{str(tmp_path / 'o.avi')!r}]; main()", 20_000)
    assert code == 2 and "recording holds" in out and "Traceback" not in out, out
    assert (tmp_path / "o.avi").read_bytes() == b"the user's earlier recording"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_folder_of_mixed_sizes_records_every_image(world, tmp_path):
    import cv2

    src = tmp_path / "frames"
    src.mkdir()
    for i, (h, w) in enumerate([(64, 96), (120, 160), (50, 70), (64, 96), (200, 100)]):
        cv2.imwrite(str(src / f"{i}.png"), np.full((h, w, 3), 40 * i, np.uint8))
    res = CliRunner().invoke(app, ["demo", "--headless", "--bundle", str(world["bundle"]),
                                   "--source", str(src), "--record", str(tmp_path / "o.avi")])
    assert res.exit_code == 0, res.output
    cap = cv2.VideoCapture(str(tmp_path / "o.avi"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 5  # none refused by the writer, none dropped by pacing


def test_stale_stage_folders_are_swept(world, tmp_path):
    from mtlsi_edge.bundle import load_bundle
    from mtlsi_edge.compiler import CompileRequest, compile_bundle

    b = tmp_path / "b"
    dead = 2**22 + 12345  # above pid_max's default: no such process
    (tmp_path / f".b.partial-{dead}-x").mkdir()
    (tmp_path / f".b.partial-{dead}-x" / "junk").write_bytes(b"x" * 1000)
    old = shutil.copytree(world["bundle"], tmp_path / f".b.old-{dead}-1")
    assert old.exists() and not b.exists()
    # a kill between "move old aside" and "move new in": the old bundle comes back first
    from mtlsi_edge.fileio import sweep_stale_stages

    sweep_stale_stages(b)
    load_bundle(b)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
    compile_bundle(b, CompileRequest("onnxruntime", checkpoint=world["ckpt"]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


NATIVE = {  # inputs that make FFmpeg / OpenVINO / numpy print on fd 2: (argv, prep, words)
    "empty video": (("demo", "--headless", "--no-verify", "--bundle", "{bundle}", "--source",
                     "{T}/empty.mp4"), write("empty.mp4", b""), "not a readable video"),
    "truncated video": (("demo", "--headless", "--no-verify", "--bundle", "{bundle}",
                         "--source", "{T}/trunc.mp4"),
                        write("trunc.mp4", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64),
                        "not a readable video"),
    "rtsp refused": (("demo", "--headless", "--no-verify", "--bundle", "{bundle}", "--source",
                      "rtsp://127.0.0.1:9/x"), None, "could not be opened"),
    "http refused": (("demo", "--headless", "--no-verify", "--bundle", "{bundle}", "--source",
                      "http://127.0.0.1:9/x.mjpg"), None, "could not be opened"),
    "garbage model.xml": (("compile", "--target", "openvino", "--onnx", "{T}/m.xml", "--out",
                           "{T}/b"), write("m.xml", "<net><layers>garbage"), "m.xml"),
    "calibration video truncated": (("calibrate", "--source", "{T}/trunc.mp4", "--n", "1",
                                     "--out", "{T}/c"),
                                    write("trunc.mp4", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64),
                                    "trunc.mp4"),
}


@pytest.mark.parametrize("name", list(NATIVE))
def test_native_logs_stay_out(name, world, tmp_path):
    """Native libraries write to fd 2 directly (CliRunner cannot see it): run the real
    process and count the lines on its stderr."""
    import subprocess

    argv, prep, words = NATIVE[name]
    shutil.copytree(world["bundle"], tmp_path / "bundle")
    if prep is not None:
        prep(tmp_path)
    subst = {"{T}": str(tmp_path), "{bundle}": str(tmp_path / "bundle")}
    args = [a.replace("{T}", subst["{T}"]).replace("{bundle}", subst["{bundle}"])
            for a in argv]
    r = subprocess.run([sys.executable, "-m", "mtlsi_edge.cli", *args], capture_output=True,
                       text=True, timeout=300, cwd=tmp_path,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    one_error_line(r, words, code=2)
