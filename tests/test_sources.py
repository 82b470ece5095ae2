"""Sources as users have them: one parser for demo and predict (kinds, options, one-line errors),
camera options applied and read back, csi:// and GStreamer pipelines, and a real MJPEG-over-HTTP
stream on 127.0.0.1 that is stopped and restarted while it is read (reconnect with bounded
backoff, the gap counted) or never comes back (one line, after the bound)."""

from __future__ import annotations

import http.server
import socketserver
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from mtlsi_edge.runtime import sources
from mtlsi_edge.runtime.capture import CaptureError, LatestFrameGrabber, Source
from mtlsi_edge.runtime.sources import (
    SourceOptions,
    csi_pipeline,
    gstreamer_available,
    image_stems,
    parse_source,
)


# -- a tiny MJPEG server (multipart/x-mixed-replace), loopback only, bounded -------------------
class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):  # noqa: N802 - http.server's name
        srv = self.server
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        try:
            for _ in range(srv.max_frames):  # bounded: ends by itself
                if srv.stopping:
                    break
                with srv.lock:
                    i = srv.sent = srv.sent + 1
                f = np.full((srv.size[0], srv.size[1], 3), (i * 7) % 200, np.uint8)
                cv2.putText(f, str(i), (5, srv.size[0] // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.8,
                            (0, 0, 255), 2)
                jpg = cv2.imencode(".jpg", f)[1].tobytes()
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                 + str(len(jpg)).encode() + b"\r\n\r\n" + jpg + b"\r\n")
                time.sleep(1 / srv.fps)
        except (BrokenPipeError, ConnectionResetError):
            pass


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class MJPEGServer:
    """``start()`` / ``stop()`` (and start again on the same port) an MJPEG stream on
    127.0.0.1; ``url`` is its address."""

    def __init__(self, size=(96, 128), fps: float = 30.0, max_frames: int = 3000):
        self.size, self.fps, self.max_frames = size, fps, max_frames
        self.port = 0
        self.srv: _Server | None = None

    def start(self) -> MJPEGServer:
        srv = _Server(("127.0.0.1", self.port), _Handler)
        srv.size, srv.fps, srv.max_frames = self.size, self.fps, self.max_frames
        srv.stopping, srv.sent, srv.lock = False, 0, threading.Lock()
        self.port = srv.server_address[1]
        self.srv = srv
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self.srv is not None:
            self.srv.stopping = True  # open connections end their loop
            self.srv.shutdown()
            self.srv.server_close()
            self.srv = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"


@pytest.fixture
def mjpeg():
    s = MJPEGServer().start()
    try:
        yield s
    finally:
        s.stop()


def test_opencv_ffmpeg_reads_the_mjpeg_server(mjpeg):
    src = Source(mjpeg.url)
    assert src.parsed.kind == "stream" and src.live and src.info.kind == "url"
    frames = [src.read() for _ in range(5)]
    src.release()
    assert all(f is not None and f.shape == (96, 128, 3) for f in frames)


def test_stream_stopped_and_restarted_is_reconnected_and_the_gap_counted(mjpeg):
    src = Source(mjpeg.url, options=SourceOptions(reconnect_s=20), backoff_s=0.1)
    for _ in range(3):
        assert src.read() is not None
    mjpeg.stop()
    timer = threading.Timer(1.0, mjpeg.start)  # down for ~1 s, then back on the same port
    timer.start()
    t0 = time.monotonic()
    got = [src.read() for _ in range(5)]  # blocks through the outage
    timer.join()
    src.release()
    assert all(f is not None for f in got)
    assert src.gaps == 1 and src.reconnects == 1
    assert 0.8 <= src.gap_s <= time.monotonic() - t0 + 0.1


def test_stream_that_never_comes_back_ends_with_one_line_after_the_bound(mjpeg):
    src = Source(mjpeg.url, options=SourceOptions(reconnect_s=1.5), backoff_s=0.1)
    assert src.read() is not None
    mjpeg.stop()
    t0 = time.monotonic()
    with pytest.raises(CaptureError, match=r"stopped delivering frames .*--reconnect-s 1\.5"
                       ) as e:
        while True:
            src.read()
    elapsed = time.monotonic() - t0
    assert 1.4 <= elapsed <= 5, elapsed
    assert "\n" not in str(e.value)
    assert src.gaps == 1 and src.reconnects == 0


def test_grabber_waits_through_a_reconnect_longer_than_its_timeout(mjpeg):
    src = Source(mjpeg.url, options=SourceOptions(reconnect_s=20), backoff_s=0.1)
    g = LatestFrameGrabber(src)
    assert g.get_item(timeout=5) is not None
    mjpeg.stop()
    timer = threading.Timer(1.5, mjpeg.start)
    timer.start()
    try:
        # the outage (1.5 s) is longer than the timeout (0.5 s): the grabber keeps waiting
        # while the source reconnects, instead of reporting "no frame"
        deadline = time.monotonic() + 15
        while src.reconnects == 0 and time.monotonic() < deadline:
            assert g.get_item(timeout=0.5) is not None
        assert src.reconnects == 1
    finally:
        timer.join()
        g.stop()


def test_stream_down_at_start_is_an_error_at_once():
    t0 = time.monotonic()
    with pytest.raises(CaptureError, match="could not be opened"):
        Source("http://127.0.0.1:9/x.mjpg", options=SourceOptions(reconnect_s=30))
    assert time.monotonic() - t0 < 10


# -- the parser -----------------------------------------------------------------------------------
def _img(p: Path, v: int = 50) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(p), np.full((8, 8, 3), v, np.uint8))
    return p


def test_parse_kinds(tmp_path):
    a = _img(tmp_path / "imgs" / "a.png")
    _img(tmp_path / "imgs" / "sub" / "b.jpg")
    (tmp_path / "imgs" / "notes.txt").write_text("x")
    video = tmp_path / "v.mp4"
    video.write_bytes(b"\0")
    assert parse_source(str(a)).kind == "image"
    f = parse_source(str(tmp_path / "imgs"))
    assert f.kind == "folder" and [p.name for p in f.files] == ["a.png"]  # not recursive
    g = parse_source(str(tmp_path / "imgs" / "**" / "*.*"))
    assert g.kind == "glob" and g.stems == ("a", "sub/b")  # images only, paths kept
    assert parse_source(str(video)).kind == "video"
    assert parse_source("0").target == 0 and parse_source(3).kind == "camera"
    assert parse_source("rtsp://127.0.0.1/x").kind == "stream"
    assert parse_source("http://127.0.0.1/x.mjpg").live
    neg = parse_source(str(tmp_path / "imgs" / "[!b]*.png"))  # glob negation, not a pipeline
    assert neg.kind == "glob" and neg.stems == ("a",)
    assert SourceOptions(camera_size=(np.int64(640), 480)).camera_size == (640, 480)


@pytest.mark.parametrize("spec, opts, words", [
    ("{T}/nope.mp4", {}, "no such file, folder or camera index"),
    ("{T}/*.png", {}, "pattern matches no images"),
    ("/dev/video97", {}, "camera /dev/video97 not available: no such device"),
    ("ftp://127.0.0.1/x", {}, "unknown scheme ftp://"),
    ("csi://x", {}, "expected csi://N"),
    ("{T}/v.mp4", {"camera_size": (640, 480)}, "--camera-size applies to cameras"),
    ("rtsp://127.0.0.1/x", {"fourcc": "MJPG"}, "--fourcc applies to cameras"),
    ("", {}, "empty source"),
])
def test_parse_errors_are_one_line(tmp_path, spec, opts, words):
    (tmp_path / "v.mp4").write_bytes(b"\0")
    with pytest.raises(CaptureError) as e:
        parse_source(spec.replace("{T}", str(tmp_path)), SourceOptions(**opts))
    assert words in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("kw, words", [
    ({"camera_size": "640"}, "expected WxH"),
    ({"camera_size": "8x8"}, "16..8192"),
    ({"camera_fps": 0.0}, "(0, 1000]"),
    ({"fourcc": "MJPEG"}, "4 letters"),
    ({"reconnect_s": -1.0}, "≥ 0"),
])
def test_bad_option_values(kw, words):
    with pytest.raises(CaptureError, match=re_escape(words)):
        SourceOptions.parse(**kw)


def re_escape(s: str) -> str:
    import re

    return re.escape(s)


def test_options_parse_width_first():
    o = SourceOptions.parse("1280x720", 60, "mjpg")
    assert o.camera_size == (1280, 720) and o.camera_fps == 60 and o.fourcc == "MJPG"


def test_image_stems_keep_suffix_only_on_collision(tmp_path):
    files = [tmp_path / "x.png", tmp_path / "x.jpg", tmp_path / "d" / "y.png"]
    assert image_stems(files) == ["x.png", "x.jpg", "d/y"]


# -- GStreamer and csi:// -------------------------------------------------------------------------
def test_csi_pipeline_is_the_standard_one():
    assert csi_pipeline(0) == (
        "nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1280,height=720,"
        "framerate=30/1 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! "
        "video/x-raw,format=BGR ! appsink drop=1")
    p = csi_pipeline(1, (1920, 1080), 59.94)
    assert "sensor-id=1" in p and "width=1920,height=1080,framerate=2997/50" in p


def test_csi_with_gstreamer_builds_the_pipeline(monkeypatch):
    monkeypatch.setattr(sources, "gstreamer_available", lambda: True)
    s = parse_source("csi://1", SourceOptions(camera_size=(1920, 1080), camera_fps=30))
    assert s.kind == "csi" and s.live and s.target == csi_pipeline(1, (1920, 1080), 30)
    with pytest.raises(CaptureError, match="--fourcc does not apply to a CSI camera"):
        parse_source("csi://0", SourceOptions(fourcc="MJPG"))
    pipe = "videotestsrc ! videoconvert ! appsink"
    assert parse_source(pipe).kind == "gstreamer"
    with pytest.raises(CaptureError, match="put the size and rate in its caps"):
        parse_source(pipe, SourceOptions(camera_fps=30))


@pytest.mark.skipif(gstreamer_available(), reason="this OpenCV has GStreamer")
@pytest.mark.parametrize("spec", ["csi://0", "videotestsrc ! videoconvert ! appsink"])
def test_no_gstreamer_names_the_fix_in_one_line(spec):
    with pytest.raises(CaptureError) as e:
        parse_source(spec)
    msg = str(e.value)
    assert "built without it" in msg and "Jetson" in msg and "docs/nvidia.md" in msg
    assert "WITH_GSTREAMER" in msg and "\n" not in msg


# -- camera options: applied, read back, reported -----------------------------------------------
class FakeCamera:
    """A V4L2 camera that rounds every request to 640x480 @ 30 FPS, YUYV."""

    log: list = []

    def __init__(self, *args):
        FakeCamera.log.append(("open", args))
        self.props = {cv2.CAP_PROP_FRAME_WIDTH: 640, cv2.CAP_PROP_FRAME_HEIGHT: 480,
                      cv2.CAP_PROP_FPS: 30.0,
                      cv2.CAP_PROP_FOURCC: float(cv2.VideoWriter_fourcc(*"YUYV"))}

    def isOpened(self):  # noqa: N802 - OpenCV's name
        return True

    def set(self, prop, value):
        FakeCamera.log.append(("set", prop, value))
        return True

    def get(self, prop):
        return self.props.get(prop, 0.0)

    def read(self):
        w, h = int(self.props[cv2.CAP_PROP_FRAME_WIDTH]), int(self.props[cv2.CAP_PROP_FRAME_HEIGHT])
        return True, np.zeros((h, w, 3), np.uint8)

    def release(self):
        pass


def test_camera_options_are_applied_then_read_back(monkeypatch):
    import mtlsi_edge.runtime.capture as cap_mod

    FakeCamera.log = []
    monkeypatch.setattr(cap_mod.cv2, "VideoCapture", FakeCamera)
    o = SourceOptions.parse("1280x720", 60, "MJPG")
    src = Source("0", options=o)
    sets = [e[1] for e in FakeCamera.log if e[0] == "set"]
    assert sets == [cv2.CAP_PROP_FOURCC, cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT,
                    cv2.CAP_PROP_FPS]  # the format first, as V4L2 needs
    assert src.notes == ["camera 0: asked for 1280x720, 60 FPS, MJPG; the camera gives "
                         "640x480 (differs), 30 FPS (differs), YUYV (differs)"]
    assert src.info.fps == 30.0
    with pytest.raises(CaptureError, match=r"the camera gives 640x480 .*\(--camera-strict\)"):
        Source("0", options=SourceOptions.parse("1280x720", strict=True))
    FakeCamera.log = []
    ok = Source("0", options=SourceOptions.parse("640x480", 30, "YUYV", strict=True))
    assert ok.notes == [] and ok.read().shape == (480, 640, 3)


def test_missing_camera_device_path_lists_what_is_there():
    with pytest.raises(CaptureError) as e:
        Source("/dev/video0" if not Path("/dev/video0").exists() else "/dev/video97")
    assert "not available: no such device" in str(e.value)
    assert "/dev/video* device here" in str(e.value) or "cameras here:" in str(e.value)
