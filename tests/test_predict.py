"""``mtlsi-edge predict`` and ``Predictor.predict``: the files and their formats (read back by
the documented snippet), the index, unreadable frames, the no-overwrite policy, resume after a
SIGKILL (same files, no duplicates), a full disk, and live streams that drop (reconnect, or one
line after the bound) — on the session's tiny ONNX Runtime bundle."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from test_sources import MJPEGServer
from typer.testing import CliRunner

from mtlsi_edge.cli import app
from mtlsi_edge.runtime.predict import (
    INDEX,
    OutputFormats,
    PredictOptions,
    encode_indexed_png,
    iter_predictions,
    read_labels,
    run_predict,
)
from mtlsi_edge.runtime.sources import SourceOptions
from mtlsi_edge.tasks import get_task_set, palette_array

pytestmark = pytest.mark.usefixtures("torch_one_thread")
ROOT = Path(__file__).resolve().parents[1]
TASKS = ("semseg", "depth", "normals", "boundary")


def _photos(folder: Path, frame, sizes=((64, 96), (120, 160), (50, 70))) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, (h, w) in enumerate(sizes):
        cv2.imwrite(str(folder / f"img{i}.png"), np.roll(frame(h, w), 7 * i, axis=1))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return folder


def _video(path: Path, frame, n: int, size=(96, 128), fps: int = 15) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size[1], size[0]))
    for i in range(n):
        w.write(np.ascontiguousarray(np.roll(frame(*size), 3 * i, axis=1)))
    w.release()
    return path


def _index(out: Path) -> list[dict]:
    return [json.loads(ln) for ln in (out / INDEX).read_text().splitlines()]


def _tree(root: Path) -> dict[str, str]:
    """Every output file (index, run and summary aside) → sha256."""
    skip = {INDEX, "run.json", "summary.json"}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in skip}


def _cli(*args) -> tuple[int, str]:
    r = CliRunner().invoke(app, ["predict", *map(str, args)])
    return r.exit_code, r.output


# -- formats --------------------------------------------------------------------------------------
def test_indexed_png_round_trip():
    seg = get_task_set("nyud")["semseg"]
    labels = (np.arange(70 * 90).reshape(70, 90) // 97 % 40).astype(np.uint8)
    data = encode_indexed_png(labels, seg.palette)
    im = Image.open(__import__("io").BytesIO(data))
    assert im.mode == "P" and (np.asarray(im) == labels).all()  # the indices, exactly
    assert im.getpalette()[:6] == [*seg.palette[0], *seg.palette[1]]
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert (bgr == palette_array(seg)[labels]).all()  # OpenCV: the palette's colours


def test_predict_folder_writes_documented_formats(bundle, predictor, frame, tmp_path,
                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    photos = _photos(tmp_path / "photos", frame)
    b = bundle("onnxruntime")
    code, out = _cli(photos, "--bundle", b, "--out", "o", "--overlay", "--depth-npy")
    assert code == 0, out
    o = tmp_path / "o"
    assert "3 frames written" in out and "skipped 1 unreadable images" in out
    assert "broken.jpg" in out and "index: o/predictions.jsonl" in out
    recs = _index(o)
    assert [r["stem"] for r in recs] == ["img0", "img1", "img2"]
    assert [r["frame"] for r in recs] == [1, 2, 3]  # broken.jpg is frame 0, listed not written
    summary = json.loads((o / "summary.json").read_text())
    assert summary["unreadable"] == [str(photos / "broken.jpg")] and summary["frames"] == 3
    run = json.loads((o / "run.json").read_text())
    assert run["outputs"]["depth"]["unit"] == "mm" and run["task_set"] == "nyud"
    # Formats, and the values against the Predictor's own outputs (same bundle, same frame)
    p = predictor("onnxruntime")
    for r in recs:
        img = cv2.imread(str(photos / f"{r['stem']}.png"))
        want = p(img)
        h, w = img.shape[:2]
        assert r["size"] == [h, w] and set(r["files"]) == {*TASKS, "depth_npy", "overlay"}
        assert all((o / f).stat().st_size == r["bytes"][k] for k, f in r["files"].items())
        sem = Image.open(o / r["files"]["semseg"])
        assert sem.mode == "P" and sem.size == (w, h)
        assert np.mean(np.asarray(sem) == want["semseg"]) > 0.98  # threads may break ties
        assert (read_labels(o / r["files"]["semseg"]) == np.asarray(sem)).all()
        d = cv2.imread(str(o / r["files"]["depth"]), cv2.IMREAD_UNCHANGED)
        assert d.dtype == np.uint16 and d.shape == (h, w)
        np.testing.assert_allclose(d / 1000.0, want["depth"], atol=0.0006)
        np.testing.assert_allclose(np.load(o / r["files"]["depth_npy"]), want["depth"],
                                   atol=1e-4)
        n = cv2.imread(str(o / r["files"]["normals"]))
        assert n.dtype == np.uint8 and n.shape == (h, w, 3)
        np.testing.assert_allclose(n[..., ::-1] / 127.5 - 1, want["normals"], atol=0.01)
        e = cv2.imread(str(o / r["files"]["boundary"]), cv2.IMREAD_UNCHANGED)
        assert e.dtype == np.uint8 and e.ndim == 2
        np.testing.assert_allclose(e / 255.0, want["boundary"], atol=0.003)
        assert cv2.imread(str(o / r["files"]["overlay"])).shape == (2 * h, 2 * w, 3)
    assert not list(o.rglob(".*partial*")) and not (o / ".predict.lock").exists()


def _doc_blocks() -> list[str]:
    text = (ROOT / "docs" / "predict.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_documented_reader_snippet_reads_the_files(bundle, frame, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    photos = _photos(tmp_path / "photos", frame)
    code, out = _cli(photos, "--bundle", bundle("onnxruntime"), "--out", "runs/predict/photos",
                     "--no-verify")
    assert code == 0, out
    reader, opencv_only = _doc_blocks()[:2]
    assert len(reader.strip().splitlines()) <= 6
    ns: dict = {}
    exec(reader.replace('"astronaut"', '"img1"'), ns)  # noqa: S102 - the documented code
    assert ns["labels"].shape == (120, 160) and ns["labels"].dtype == np.uint8
    assert ns["depth"].shape == (120, 160) and ns["normals"].shape == (120, 160, 3)
    assert 0.9 < np.median(np.linalg.norm(ns["normals"], axis=-1)) < 1.1
    assert 0 <= ns["boundary"].min() and ns["boundary"].max() <= 1
    want = ns["labels"].copy()
    exec(opencv_only, ns)  # noqa: S102
    assert (ns["labels"] == want).all()


# -- the Python interface -------------------------------------------------------------------------
def test_predictor_predict_is_the_pipelined_generator(predictor, frame, tmp_path):
    p = predictor("onnxruntime")
    photos = _photos(tmp_path / "photos", frame)
    got = list(p.predict(str(photos)))
    seq = list(iter_predictions(p, str(photos), pipeline=False))
    assert [g.stem for g in got] == [s.stem for s in seq] == ["img0", "img1", "img2"]
    for g, s in zip(got, seq):
        want = p(g.frame)
        for k in TASKS:
            np.testing.assert_array_equal(g.outputs[k], want[k])
            np.testing.assert_array_equal(s.outputs[k], want[k])
        assert {"wait", "preprocess", "inference", "postprocess"} <= set(g.latency_ms)
    # a glob, an image, a video — the same parser as the command
    assert [x.stem for x in p.predict(str(photos / "img*.png"))] == ["img0", "img1", "img2"]
    assert [x.stem for x in p.predict(str(photos / "img2.png"))] == ["img2"]
    v = _video(tmp_path / "v.mp4", frame, 6)
    items = list(p.predict(str(v), max_frames=4))
    assert [x.stem for x in items] == ["000000", "000001", "000002", "000003"]
    assert items[1].pos_s == pytest.approx(1 / 15, abs=1e-3)


def test_live_source_resume_continues_frame_numbers(predictor, tmp_path):
    srv = MJPEGServer().start()
    try:
        p = predictor("onnxruntime")
        o = tmp_path / "o"
        run_predict(p, srv.url, o, PredictOptions(max_frames=3))
        st = run_predict(p, srv.url, o, PredictOptions(max_frames=2, resume=True))
    finally:
        srv.stop()
    assert st.frames == 2 and st.resumed == 0
    assert [r["stem"] for r in _index(o)] == ["000000", "000001", "000002", "000003", "000004"]


# -- no overwrites, atomic files, resume ----------------------------------------------------------
def test_existing_run_is_refused_then_replaced_with_exist_ok(bundle, frame, tmp_path,
                                                             monkeypatch):
    monkeypatch.chdir(tmp_path)
    photos = _photos(tmp_path / "photos", frame)
    b = bundle("onnxruntime")
    assert _cli(photos, "--bundle", b, "--out", "o", "--no-verify")[0] == 0
    before = _tree(tmp_path / "o")
    index_before = (tmp_path / "o" / INDEX).read_bytes()
    code, out = _cli(photos, "--bundle", b, "--out", "o", "--no-verify")
    assert code == 2 and out.startswith("error: o: holds an earlier predict run"), out
    assert len(out.strip().splitlines()) == 1 and "--exist-ok" in out
    assert _tree(tmp_path / "o") == before and (tmp_path / "o" / INDEX).read_bytes() == \
        index_before
    code, out = _cli(photos, "--bundle", b, "--out", "o", "--resume", "--exist-ok")
    assert code == 2 and "not both" in out and len(out.strip().splitlines()) == 1
    code, out = _cli(photos, "--bundle", b, "--out", "o", "--exist-ok", "--no-verify")
    assert code == 0, out
    assert len(_index(tmp_path / "o")) == 3  # a fresh index, not appended to
    (tmp_path / "f.txt").write_text("mine")
    code, out = _cli(photos, "--bundle", b, "--out", "f.txt")
    assert code == 2 and "is a file" in out and (tmp_path / "f.txt").read_text() == "mine"


def test_resume_after_sigkill_gives_the_same_files_without_duplicates(bundle, frame, tmp_path):
    b = bundle("onnxruntime")
    n = 240
    video = _video(tmp_path / "walk.mp4", frame, n, size=(240, 320))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "mtlsi_edge.cli", "predict", str(video), "--bundle", str(b),
           "--no-verify", "--threads", "1"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, "--out", str(killed)], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        idx = killed / INDEX
        if idx.exists() and idx.read_bytes().count(b"\n") >= 20:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "finished before it could be killed"
    done = _index(killed)
    assert 20 <= len(done) < n
    # what a kill can leave besides: a torn last line, and a frame that lost a file
    with open(killed / INDEX, "ab") as f:
        f.write(b'{"frame": 77, "stem": "0000')
    (killed / done[3]["files"]["depth"]).unlink()
    r = subprocess.run([*cmd, "--out", str(killed), "--resume"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"resuming: {len(done) - 1} frames already written" in r.stdout
    assert f"{n - len(done) + 1} frames written" in r.stdout
    recs = _index(killed)
    stems = [x["stem"] for x in recs]
    assert len(stems) == len(set(stems)) == n  # every frame once
    assert sorted(x["frame"] for x in recs) == list(range(n))
    assert not list(killed.rglob(".*partial*")) and not (killed / ".predict.lock").exists()
    clean = tmp_path / "clean"
    r = subprocess.run([*cmd, "--out", str(clean)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _tree(killed) == _tree(clean)  # the same files, byte for byte


def test_sigint_finishes_the_frame_in_hand_and_says_how_to_resume(bundle, frame, tmp_path):
    video = _video(tmp_path / "walk.mp4", frame, 200, size=(240, 320))
    out = tmp_path / "o"
    proc = subprocess.Popen([sys.executable, "-m", "mtlsi_edge.cli", "predict", str(video),
                             "--bundle", str(bundle("onnxruntime")), "--no-verify", "--threads",
                             "1", "--out", str(out)], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"})
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (out / INDEX).exists() and (out / INDEX).read_bytes().count(b"\n") >= 10:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stdout + stderr
    assert "stopped by SIGINT" in stdout and f"continue with --resume --out {out}" in stdout
    assert stderr.strip() == ""
    recs = _index(out)
    assert 10 <= len(recs) < 200
    for rec in recs:  # every listed frame is complete
        assert all((out / f).stat().st_size == rec["bytes"][k] for k, f in rec["files"].items())
    assert not list(out.rglob(".*partial*")) and not (out / ".predict.lock").exists()


def test_full_disk_is_one_line_and_leaves_no_torn_file(bundle, frame, tmp_path):
    photos = _photos(tmp_path / "photos", frame, sizes=((240, 320),) * 6)
    pre = ("import resource, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
           "resource.setrlimit(resource.RLIMIT_FSIZE, (60000, 60000))\n")
    code = (f"from mtlsi_edge.cli import main; import sys; sys.argv=['mtlsi-edge','predict',"
            f"{str(photos)!r},'--bundle',{str(bundle('onnxruntime'))!r},'--no-verify',"
            f"'--out',{str(tmp_path / 'o')!r},'--depth-npy']; main()")
    r = subprocess.run([sys.executable, "-c", pre + code], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    err = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(err) == 1, r.stdout + r.stderr
    assert err[0].startswith("error: ") and "File too large" in err[0] and ".npy" in err[0]
    assert ".partial" not in err[0]
    o = tmp_path / "o"
    assert not list(o.rglob(".*partial*"))
    for rec in _index(o):  # what the index lists is complete
        assert all((o / f).stat().st_size == rec["bytes"][k] for k, f in rec["files"].items())


def test_runtime_only_install_without_bundle_says_so(frame, tmp_path, monkeypatch):
    import mtlsi_edge.backends as backends

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(backends, "build_half_installed", lambda: False)
    code, out = _cli(_photos(tmp_path / "p", frame), "--out", "o")
    assert code == 2 and len(out.strip().splitlines()) == 1
    assert "predict without --bundle" in out and "needs the build half" in out
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, words", [
    (("/dev/video97",), "camera /dev/video97 not available: no such device"),
    (("{T}/v.mp4", "--camera-size", "640x480"), "--camera-size applies to cameras"),
    (("0", "--camera-size", "640"), "expected WxH"),
    (("csi://0",), "needs OpenCV with GStreamer"),
    (("{T}/nope/*.png",), "pattern matches no images"),
])
def test_source_errors_come_before_any_work(args, words, tmp_path, monkeypatch):
    from mtlsi_edge.runtime.sources import gstreamer_available

    if "csi" in args[0] and gstreamer_available():
        pytest.skip("this OpenCV has GStreamer")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "v.mp4").write_bytes(b"\0")
    code, out = _cli(*[a.replace("{T}", str(tmp_path)) for a in args], "--out", "o")
    assert code == 2 and len(out.strip().splitlines()) == 1 and words in out, out
    assert not (tmp_path / "o").exists() and not (tmp_path / "runs").exists()


def test_camera_that_is_not_there_leaves_no_output_folder(bundle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out = _cli("7", "--bundle", bundle("onnxruntime"), "--out", "o", "--no-verify")
    assert code == 2 and out.splitlines() == [
        "error: camera 7 not available (no device, or in use)"], out
    assert not (tmp_path / "o").exists()


# -- streams that drop ----------------------------------------------------------------------------
def _drop_after(srv: MJPEGServer, frames: int, down_s: float | None) -> threading.Thread:
    """Stop ``srv`` once it has sent ``frames`` frames; start it again ``down_s`` later."""

    def run():
        deadline = time.time() + 60
        while time.time() < deadline and srv.srv is not None and srv.srv.sent < frames:
            time.sleep(0.01)
        srv.stop()
        if down_s is not None:
            time.sleep(down_s)
            srv.start()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_predict_goes_on_through_a_stream_restart(predictor, tmp_path):
    srv = MJPEGServer().start()
    t = _drop_after(srv, 15, 1.0)
    try:
        st = run_predict(predictor("onnxruntime"), srv.url, tmp_path / "o",
                         PredictOptions(source_options=SourceOptions(reconnect_s=20),
                                        max_frames=40))
    finally:
        t.join(timeout=30)
        srv.stop()
    assert st.frames == 40 and st.stopped_by == "max frames"
    assert st.gaps == 1 and st.reconnects == 1 and st.gap_s >= 0.8
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["gaps"] == 1 and summary["reconnects"] == 1
    assert len(_index(tmp_path / "o")) == 40


def test_stream_that_never_comes_back_ends_with_one_line(bundle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    srv = MJPEGServer().start()
    t = _drop_after(srv, 10, None)
    try:
        t0 = time.monotonic()
        code, out = _cli(srv.url, "--bundle", bundle("onnxruntime"), "--out", "o",
                         "--no-verify", "--reconnect-s", "1.5")
        elapsed = time.monotonic() - t0
    finally:
        t.join(timeout=30)
        srv.stop()
    lines = [ln for ln in out.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1, out
    assert "stopped delivering frames" in lines[0] and "--reconnect-s 1.5" in lines[0]
    assert elapsed < 60
    written = _index(tmp_path / "o")
    assert 1 <= len(written) <= 10  # what came before the outage is kept
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["stopped_by"].startswith("error:") and summary["gaps"] == 1


def test_output_formats_listing():
    ts = get_task_set("pascal")
    f = OutputFormats(depth_npy=True, overlay=True).files(ts, "a/b")
    assert f == {"semseg": "semseg/a/b.png", "human_parts": "human_parts/a/b.png",
                 "saliency": "saliency/a/b.png", "normals": "normals/a/b.png",
                 "boundary": "boundary/a/b.png", "overlay": "overlay/a/b.jpg"}
