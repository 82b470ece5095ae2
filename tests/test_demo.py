"""The live loop: sources and their errors, overlays, recording that survives SIGINT, and the
windowed demo under Xvfb (screenshot with four distinct non-blank panels)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import STARTER, needs_starter, one_error_line
from typer.testing import CliRunner

from mtlsi_edge.cli import app
from mtlsi_edge.runtime.capture import CaptureError, LatestFrameGrabber, Source
from mtlsi_edge.runtime.loop import LoopOptions, run_loop
from mtlsi_edge.runtime.overlay import LAYOUTS, Renderer
from mtlsi_edge.tasks import get_task_set


def frame_grid_ok(img: np.ndarray) -> bool:
    """True when the four quadrants of a grid view are each non-blank and mutually different."""
    h, w = img.shape[0] // 2, img.shape[1] // 2
    quads = [img[:h, :w], img[:h, w:], img[h:, :w], img[h:, w:]]
    if any(q.std() < 3 for q in quads):
        return False
    return all(np.abs(quads[i].astype(int) - quads[j].astype(int)).mean() > 5
               for i in range(4) for j in range(i + 1, 4))


def _video(path: Path, n: int = 20, size=(96, 128), fps: int = 15) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size[1], size[0]))
    for i in range(n):
        f = np.full((*size, 3), 0, np.uint8)
        cv2.circle(f, (10 + 5 * i, size[0] // 2), 12, (0, 200, 255), -1)
        w.write(f)
    w.release()
    return path


def test_source_errors(tmp_path):
    with pytest.raises(CaptureError, match="camera 7 not available"):
        Source("7")
    with pytest.raises(CaptureError, match="no such file"):
        Source(str(tmp_path / "missing.mp4"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CaptureError, match="no images"):
        Source(str(tmp_path / "empty"))
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(b"\x00not a video" * 100)
    with pytest.raises(CaptureError, match="not a readable video|no decodable frame"):
        Source(str(bad))


def test_truncated_video_ends_cleanly_or_errors(tmp_path):
    v = _video(tmp_path / "v.mp4", n=30)
    data = v.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    try:
        src = Source(str(cut))
    except CaptureError as e:  # moov atom lost: refused with the file named
        assert "cut.mp4" in str(e)
        return
    n = 0
    while src.read() is not None:
        n += 1
    assert n < 30  # a clean end, not a hang or an exception


def test_folder_source_skips_unreadable(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((8, 8, 3), 40 * i, np.uint8))
    (tmp_path / "3.png").write_bytes(b"broken")
    src = Source(str(tmp_path))
    frames = []
    while (f := src.read()) is not None:
        frames.append(f)
    assert len(frames) == 3 and src.skipped and "3.png" in src.skipped[0]


def test_grabber_drops_stale_frames_when_consumer_is_slow(tmp_path):
    src = Source(str(_video(tmp_path / "v.mp4", n=30, fps=60)))
    g = LatestFrameGrabber(src, pace=True)
    got = 0
    while g.get() is not None:
        got += 1
        time.sleep(0.05)  # 20 FPS consumer on a 60 FPS source
    g.stop()
    assert g.dropped > 0 and got + g.dropped == 30


def test_grabber_unpaced_delivers_every_frame(tmp_path):
    src = Source(str(_video(tmp_path / "v.mp4", n=25)))
    g = LatestFrameGrabber(src, pace=False)
    got = 0
    while g.get() is not None:
        got += 1
        time.sleep(0.005)
    g.stop()
    assert got == 25 and g.dropped == 0


def _fake_outputs(h=60, w=80):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    n = np.stack([np.sin(xx / 9), np.cos(yy / 7), np.ones_like(xx, float)], -1)
    return {
        "semseg": (xx // 20 + 3 * (yy // 20)).astype(np.uint8),
        "depth": (1 + xx / w * 4).astype(np.float32),
        "normals": (n / np.linalg.norm(n, axis=-1, keepdims=True)).astype(np.float32),
        "boundary": (rng.random((h, w)) > 0.9).astype(np.float32),
    }


def test_renderer_layouts_and_grid_check():
    r = Renderer(get_task_set("nyud"))
    frame = np.random.default_rng(1).integers(0, 255, (60, 80, 3), np.uint8)
    out = _fake_outputs()
    for layout in LAYOUTS:
        img = r.render(frame, out, layout)
        assert img.dtype == np.uint8 and img.shape[2] == 3
    grid = r.render(frame, out, "grid")
    assert grid.shape == (120, 160, 3) and frame_grid_ok(grid)
    assert not frame_grid_ok(np.zeros((120, 160, 3), np.uint8))
    with pytest.raises(ValueError, match="unknown layout"):
        r.render(frame, out, "nope")


class _StubPredictor:
    """Deterministic stand-in with the Predictor's interface (target/precision/timings)."""

    target, precision = "stub", "fp32"
    task_set = get_task_set("nyud")

    def __init__(self):
        from mtlsi_edge.runtime.predictor import Timings

        self.timings = Timings(0.1, 0.2, 0.3)

    # The loop runs the Predictor's stages itself (pre + runner in a worker thread,
    # postprocess next to rendering).
    def preprocess(self, frame):
        return frame, frame.shape[:2]

    def runner(self, x):
        return x

    def postprocess(self, raw, geom):
        return _fake_outputs(*geom)

    def __call__(self, frame):
        return self.postprocess(*self.preprocess(frame))


def test_run_loop_records_playable_video(tmp_path):
    src = Source(str(_video(tmp_path / "v.mp4", n=12)))
    rec = tmp_path / "out" / "rec.mp4"
    stats = run_loop(_StubPredictor(), src, LoopOptions(record=rec, pace=False))
    assert stats.frames == 12 and stats.recording == str(rec)
    cap = cv2.VideoCapture(str(rec))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 12


def test_cli_missing_camera_one_line_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["demo", "--source", "7", "--headless",
                                 "--checkpoint", str(STARTER)])
    line = one_error_line(r)
    if STARTER.is_file():
        assert "camera 7 not available" in line


@needs_starter
def test_sigint_during_recording_leaves_playable_file(tmp_path):
    video = _video(tmp_path / "long.mp4", n=300, size=(240, 320), fps=30)
    rec = tmp_path / "rec.mp4"
    cmd = [sys.executable, "-m", "mtlsi_edge.cli", "demo", "--source", str(video), "--record",
           str(rec), "--headless", "--target", "onnxruntime"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=tmp_path)
    deadline = time.time() + 120

    def recording() -> bool:  # written beside rec.mp4 until complete, then moved in
        return any(p.stat().st_size > 20_000 for p in tmp_path.glob(".rec.partial-*.mp4"))

    while time.time() < deadline and not recording():
        time.sleep(0.2)
    assert not rec.exists()  # nothing at the destination while it is being written
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "stopped by SIGINT" in out
    cap = cv2.VideoCapture(str(rec))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert frames > 0, out
    assert not list(tmp_path.glob(".rec.partial-*"))


def _read_xwd(path: Path) -> np.ndarray:
    """Minimal XWD (ZPixmap, 32 bpp) reader → H×W×3 BGR."""
    d = path.read_bytes()
    hdr = np.frombuffer(d[:100], ">u4")
    header_size, width, height = int(hdr[0]), int(hdr[4]), int(hdr[5])
    bpp, bytes_per_line, ncolors = int(hdr[11]), int(hdr[12]), int(hdr[19])
    assert bpp == 32, bpp
    off = header_size + ncolors * 12
    px = np.frombuffer(d[off: off + bytes_per_line * height], np.uint8)
    px = px.reshape(height, bytes_per_line)[:, : width * 4].reshape(height, width, 4)
    return px[:, :, :3].copy()  # little-endian BGRX


def _grid_in(shot: np.ndarray) -> np.ndarray | None:
    """The 480×640 grid inside a window capture (window decorations, if any, excluded)."""
    h, w = shot.shape[:2]
    if w < 640 or h < 480:
        return None
    for top in range(0, h - 480 + 1, 2):
        crop = shot[top:top + 480, :640]
        if frame_grid_ok(crop):
            return crop
    return shot[:480, :640]


@needs_starter
@pytest.mark.skipif(not (shutil.which("Xvfb") and shutil.which("xwd")),
                    reason="Xvfb / xwd not installed (apt-get install xvfb x11-apps)")
def test_windowed_demo_under_xvfb_shows_four_panels(tmp_path):
    disp = ":97"
    xvfb = subprocess.Popen(["Xvfb", disp, "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            if os.path.exists(f"/tmp/.X11-unix/X{disp[1:]}"):
                break
            time.sleep(0.1)
        env = {**os.environ, "DISPLAY": disp, "QT_QPA_PLATFORM": "xcb"}
        from mtlsi_edge.data.synthindoor import render_walkthrough

        video = render_walkthrough(tmp_path / "walk.mp4", seconds=8, fps=15)
        demo = subprocess.Popen([sys.executable, "-m", "mtlsi_edge.cli", "demo", "--source",
                                 str(video), "--target", "onnxruntime"], env=env, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        shot = tmp_path / "shot.xwd"
        img = None
        deadline = time.time() + 90
        while time.time() < deadline and demo.poll() is None:
            time.sleep(1.0)
            r = subprocess.run(["xwd", "-display", disp, "-name", "mtlsi-edge", "-silent",
                                "-out", str(shot)], capture_output=True)
            if r.returncode == 0 and shot.stat().st_size > 10_000:
                img = _grid_in(_read_xwd(shot))
                if img is not None and frame_grid_ok(img):
                    break
        demo.send_signal(signal.SIGINT)
        out, _ = demo.communicate(timeout=60)
        assert img is not None, f"no window captured; demo said:\n{out}"
        cv2.imwrite(str(tmp_path / "shot.png"), img)
        assert img.shape[:2] == (480, 640), img.shape  # the 2×2 grid of 240×320 panels
        assert frame_grid_ok(img), "panels blank or identical"
        assert "no display" not in out
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=10)


def test_camera_unplugged_mid_run_retries_then_errors(monkeypatch):
    """A camera that stops delivering is reopened with backoff, then reported in one line."""
    import mtlsi_edge.runtime.capture as cap_mod

    calls = {"open": 0, "read": 0}

    class FakeCap:
        def __init__(self, *_):
            calls["open"] += 1

        def isOpened(self):  # noqa: N802 - OpenCV's name
            return True

        def read(self):
            calls["read"] += 1
            if calls["read"] <= 3:
                return True, np.zeros((4, 4, 3), np.uint8)
            return False, None

        def release(self):
            pass

    monkeypatch.setattr(cap_mod.cv2, "VideoCapture", FakeCap)
    src = Source("0", retries=3, backoff_s=0.01)
    assert src.read() is not None and src.read() is not None and src.read() is not None
    t = time.perf_counter()
    with pytest.raises(CaptureError, match="camera 0: stopped delivering frames"):
        src.read()
    assert calls["open"] == 1 + 3  # the first open, then one reopen per retry
    assert time.perf_counter() - t >= 0.01 + 0.02 + 0.04  # exponential backoff


@needs_starter
def test_cli_truncated_video_is_a_clean_end_or_one_line_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the demo caches compiled bundles under ./runs/demo
    data = _video(tmp_path / "v.mp4", n=30, size=(240, 320)).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    r = CliRunner().invoke(app, ["demo", "--source", str(cut), "--headless", "--target",
                                 "onnxruntime"])
    assert "Traceback" not in r.output
    if r.exit_code == 0:
        assert "frames in" in r.output
    else:
        assert "cut.mp4" in r.output and len(r.output.strip().splitlines()) <= 3


def test_looping_sources_restart(tmp_path):
    src = Source(str(_video(tmp_path / "v.mp4", n=5)), loop=True)
    assert all(src.read() is not None for _ in range(12))  # past the 5th frame, again
    for i in range(2):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((8, 8, 3), 9, np.uint8))
    folder = Source(str(tmp_path), loop=True)
    assert all(folder.read() is not None for _ in range(5))


@needs_starter
def test_headless_demo_records_under_runs_demo_and_probes_quietly(tmp_path):
    """No display and no --record: the rendered view goes to runs/demo/demo-*.mp4 (path in the
    last line); with no camera, OpenCV's probe noise (V4L2, FFMPEG, obsensor) stays hidden and
    the tool says itself that it shows the walkthrough."""
    from mtlsi_edge.runtime.capture import camera_available

    if camera_available(0):
        pytest.skip("a camera is attached here")
    _video(tmp_path / "runs" / "demo" / "walkthrough.mp4", n=12, size=(96, 128))  # no render
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "mtlsi_edge.cli", "demo", "--max-frames", "5", "--target",
           "onnxruntime"]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    for noise in ("V4L2", "VIDEOIO", "FFMPEG", "obsensor", "WARN", "ERROR"):
        assert noise not in r.stderr, r.stderr
    assert "no camera found; showing the built-in SynthIndoor walkthrough" in r.stdout
    recs = list((tmp_path / "runs" / "demo").glob("demo-*.mp4"))
    assert len(recs) == 1, r.stdout
    last = r.stdout.strip().splitlines()[-1]
    assert last == f"recording: {recs[0].relative_to(tmp_path)}", r.stdout
    cap = cv2.VideoCapture(str(recs[0]))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert frames == 5
    assert not list((tmp_path / "runs" / "demo").glob(".*partial*"))


def test_next_free_path_never_overwrites(tmp_path):
    from mtlsi_edge.fileio import next_free_path

    first = next_free_path(tmp_path, "demo-1", ".mp4")
    assert first == tmp_path / "demo-1.mp4"
    first.write_bytes(b"x")
    second = next_free_path(tmp_path, "demo-1", ".mp4")
    assert second == tmp_path / "demo-1-2.mp4"
    second.write_bytes(b"x")
    assert next_free_path(tmp_path, "demo-1", ".mp4") == tmp_path / "demo-1-3.mp4"


# -- source options and streams that drop (one parser with predict: tests/test_sources.py) -----
def test_demo_camera_options_on_a_video_are_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    video = _video(tmp_path / "v.mp4", n=3)
    r = CliRunner().invoke(app, ["demo", "--source", str(video), "--headless", "--camera-fps",
                                 "60", "--fourcc", "MJPG"])
    one_error_line(r, "--camera-fps, --fourcc apply to cameras", code=2)
    assert len(r.output.strip().splitlines()) == 1, r.output  # nothing on stdout either
    assert not (tmp_path / "runs").exists()  # refused before compiling anything


def test_demo_gstreamer_without_gstreamer_names_the_fix(tmp_path, monkeypatch):
    from mtlsi_edge.runtime.sources import gstreamer_available

    if gstreamer_available():
        pytest.skip("this OpenCV has GStreamer")
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["demo", "--source", "videotestsrc ! videoconvert ! appsink",
                                 "--headless"])
    one_error_line(r, "built without it", "Jetson", code=2)
    assert len(r.output.strip().splitlines()) == 1, r.output  # nothing on stdout either


def test_demo_loop_goes_on_through_a_stream_restart_and_counts_the_gap(bundle, tmp_path,
                                                                         monkeypatch):
    from test_predict import _drop_after
    from test_sources import MJPEGServer

    monkeypatch.chdir(tmp_path)
    srv = MJPEGServer().start()
    t = _drop_after(srv, 15, 1.0)
    try:
        r = CliRunner().invoke(app, ["demo", "--source", srv.url, "--headless", "--no-verify",
                                     "--bundle", str(bundle("onnxruntime")), "--max-frames",
                                     "40", "--record", str(tmp_path / "rec.mp4")])
    finally:
        t.join(timeout=30)
        srv.stop()
    assert r.exit_code == 0, r.output
    assert "40 frames in" in r.output
    gaps = re.search(r"source gaps: 1 \(([\d.]+) s lost\), 1 reconnects", r.output)
    assert gaps and float(gaps[1]) >= 0.8, r.output
    cap = cv2.VideoCapture(str(tmp_path / "rec.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 40


def test_demo_hud_counts_the_gap(tmp_path, monkeypatch):
    import mtlsi_edge.runtime.loop as loop_mod

    hud = []
    monkeypatch.setattr(loop_mod, "draw_hud", lambda img, lines: hud.append(lines) or img)
    src = Source(str(_video(tmp_path / "v.mp4", n=4)))
    src.gaps, src.gap_s = 1, 2.5  # as after one outage of a live source
    stats = run_loop(_StubPredictor(), src, LoopOptions(pace=False))
    assert "dropped 0  gaps 1 (2.5 s lost)" in hud[-1][0]
    assert (stats.gaps, stats.gap_s) == (1, 2.5)
