"""Frame sources for the live loop and ``predict``: images, folders, globs, videos, cameras
(index, ``/dev/videoN``, ``csi://N``), GStreamer pipelines and network streams.

What a source string means is decided by :func:`mtlsi_edge.runtime.sources.parse_source` (one
parser for ``demo``, ``predict`` and the Python API); :class:`Source` opens and reads it.
Every frame comes with its place in the source (:class:`FrameItem`: index, name, output stem,
media time, wall time), which is what ``predict`` writes and resumes by.

Live sources (cameras, streams) that stop delivering are reopened with exponential backoff
(capped at :data:`MAX_BACKOFF_S`) until they deliver again — the gap is counted (seconds lost,
reconnects) — or until the outage has lasted ``SourceOptions.reconnect_s`` seconds: then one
line says so.  A stream that cannot be opened at the start is an error at once (a mistyped
URL should not wait out the budget).

:class:`LatestFrameGrabber` reads in its own thread and keeps only the newest frame, so a
slow consumer never builds up latency: frames it did not take in time are dropped and counted.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mtlsi_edge.native import quiet_native
from mtlsi_edge.runtime.sources import (
    IMAGE_EXTS,
    CaptureError,
    SourceOptions,
    SourceSpec,
    parse_source,
)

__all__ = ["IMAGE_EXTS", "CaptureError", "FrameItem", "LatestFrameGrabber", "Source",
           "SourceInfo", "SourceOptions", "camera_available", "default_source"]

#: Longest wait between two reopen attempts of a live source.
MAX_BACKOFF_S = 2.0
#: FFmpeg open/read timeouts of network streams: a server that accepts but sends nothing
#: counts as down after this long instead of blocking the capture thread for ever.
STREAM_TIMEOUT_MS = 5000


@dataclass
class SourceInfo:
    kind: str  # camera | file | url | folder (what the loop paces and counts by)
    name: str
    fps: float
    frames: int | None  # None for live sources


@dataclass
class FrameItem:
    """One frame and where it came from."""

    frame: np.ndarray
    index: int  # frame number in the source (images: position in the sorted list)
    name: str  # the image's path, else the source's name
    stem: str  # output name: the image's relative path without suffix, else 000123
    pos_s: float | None  # media time of a video frame, seconds
    wall: float  # time.time() when it was read


def _fourcc_str(v: float) -> str:
    code = int(v)
    if code <= 0:
        return "?"
    s = bytes((code >> (8 * i)) & 0xFF for i in range(4)).decode("ascii", "replace")
    return s if s.isprintable() else "?"


def _prop(cap, prop: int) -> float:
    """``cap.get(prop)``, 0 when the backend does not know (or offers no ``get``)."""
    get = getattr(cap, "get", None)
    try:
        return float(get(prop)) if get is not None else 0.0
    except cv2.error:
        return 0.0


class Source:
    """One frame source.  ``read()`` → BGR uint8 frame, or None at the end of a file/folder;
    ``read_item()`` → the same as a :class:`FrameItem`.

    ``spec``: anything :func:`~mtlsi_edge.runtime.sources.parse_source` takes.  ``retries``
    (None: unbounded) and ``reconnect_s`` (``options.reconnect_s``) bound the reopening of a
    live source that stopped; ``backoff_s`` is the first wait, doubled per attempt.
    ``start_index``: number of the first frame of a live source (``predict --resume``).
    """

    def __init__(self, spec: str | int, retries: int | None = None, backoff_s: float = 0.2,
                 loop: bool = False, options: SourceOptions | None = None,
                 start_index: int = 0):
        self.options = options or SourceOptions(loop=loop)
        self.parsed: SourceSpec = parse_source(spec, self.options)
        self.spec = self.parsed.spec
        self.loop = loop or self.options.loop  # files/folders: start again at the end
        self.retries, self.backoff_s = retries, backoff_s
        self.reconnect_s = self.options.reconnect_s
        self._files: list[Path] | None = None
        self.skipped: list[str] = []  # unreadable images of a folder source, reported
        self.notes: list[str] = []  # one-line remarks for the user (camera modes)
        self.dropped = 0  # frames a LatestFrameGrabber dropped (kept here for summaries)
        # Outages of a live source: count, seconds lost in finished ones, successful reopens.
        self.gaps = 0
        self.gap_s = 0.0
        self.reconnects = 0
        self.reconnecting = False
        self._gap_t0 = 0.0
        self._cancel = threading.Event()
        self._i = 0  # next image of a folder
        self._n = start_index  # number of the next frame of a video / live source
        self._first: FrameItem | None = None
        self.cap: cv2.VideoCapture | None = None
        p, s = self.parsed, self.parsed.spec
        self.live = p.live
        if p.images:
            self._files = list(p.files)
            self._stems = list(p.stems)
            self.info = SourceInfo("folder", s, 30.0, len(self._files))
            self._first = self.read_item()
            if self._first is None:
                if p.kind == "image":
                    raise CaptureError(f"{s}: not a readable image")
                raise CaptureError(f"{s}: none of its {len(self._files)} images can be read "
                                   f"(e.g. {self.skipped[0]})")
        elif p.kind == "video":
            with quiet_native():  # FFmpeg's "moov atom not found" etc. stay out
                self.cap = cv2.VideoCapture(s)
                n = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT)) if self.cap.isOpened() else 0
                ok, frame = self.cap.read() if self.cap.isOpened() else (False, None)
            if not self.cap.isOpened():
                raise CaptureError(f"{s}: not a readable video")
            fps = self.cap.get(cv2.CAP_PROP_FPS) or 30.0
            self.info = SourceInfo("file", s, fps if 1 <= fps <= 240 else 30.0,
                                   max(n, 0) or None)
            if not ok or frame is None:
                raise CaptureError(f"{s}: no decodable frame (corrupt or truncated video)")
            self._first = self._item(frame)
        elif p.kind == "stream":
            if "OPENCV_FFMPEG_LOGLEVEL" not in os.environ:
                # FFmpeg's own lines ("Stream ends prematurely", "Connection refused") would
                # interleave with ours when a stream drops; the gap is reported by us.
                os.environ["OPENCV_FFMPEG_LOGLEVEL"] = "-8"
            with quiet_native():
                self.cap = self._open()
                ok, frame = self.cap.read() if self.cap.isOpened() else (False, None)
            if not self.cap.isOpened():
                raise CaptureError(f"{s}: stream could not be opened")
            if not ok or frame is None:
                raise CaptureError(f"{s}: stream opened but sent no frame within "
                                   f"{STREAM_TIMEOUT_MS / 1000:g} s")
            n = int(_prop(self.cap, cv2.CAP_PROP_FRAME_COUNT))
            fps = _prop(self.cap, cv2.CAP_PROP_FPS)
            fps = fps if 1 <= fps <= 240 else 30.0
            # A URL of a finite video (http://…/clip.mp4) knows its length: it ends, and is
            # not reconnected (reopening would start it again); live streams report none.
            self.live = n <= 0
            self.info = SourceInfo("url" if self.live else "file", s, fps,
                                   None if self.live else n)
            self._first = self._item(frame)
        else:  # camera, csi, gstreamer
            self.info = SourceInfo("camera", p.name, 30.0, None)
            self._open_camera()

    # -- opening --------------------------------------------------------------------------
    def _open(self) -> cv2.VideoCapture:
        p = self.parsed
        if p.kind == "stream":
            return cv2.VideoCapture(p.target, cv2.CAP_FFMPEG,
                                    [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
                                     cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS])
        if p.kind in ("csi", "gstreamer"):
            return cv2.VideoCapture(p.target, cv2.CAP_GSTREAMER)
        if isinstance(p.target, str) and p.target.startswith("/dev/video") and os.name != "nt":
            return cv2.VideoCapture(p.target, cv2.CAP_V4L2)
        return cv2.VideoCapture(p.target)

    def _configure(self) -> None:
        """Ask the camera for the FOURCC, size and rate (in the order V4L2 needs: format
        first); what it really gives is read back after the first frame."""
        o, cap = self.options, self.cap
        if self.parsed.kind != "camera" or not o.camera_requested:
            return
        if o.fourcc:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*o.fourcc))
        if o.camera_size:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, o.camera_size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, o.camera_size[1])
        if o.camera_fps:
            cap.set(cv2.CAP_PROP_FPS, o.camera_fps)

    def _check_mode(self, frame: np.ndarray) -> None:
        """Compare what the camera gives with what was asked: one line (a note, or an error
        with ``strict``)."""
        o = self.options
        if self.parsed.kind == "camera" and o.camera_requested:
            got_fps = _prop(self.cap, cv2.CAP_PROP_FPS)
            got_cc = _fourcc_str(_prop(self.cap, cv2.CAP_PROP_FOURCC))
            asked, got = [], []
            if o.camera_size:
                h, w = frame.shape[:2]
                asked.append(f"{o.camera_size[0]}x{o.camera_size[1]}")
                got.append(f"{w}x{h}" + ("" if (w, h) == o.camera_size else " (differs)"))
            if o.camera_fps:
                asked.append(f"{o.camera_fps:g} FPS")
                ok = got_fps > 0 and abs(got_fps - o.camera_fps) <= 0.5
                got.append(f"{got_fps:g} FPS" if got_fps > 0 else "an unknown rate")
                got[-1] += "" if ok else " (differs)"
            if o.fourcc:
                asked.append(o.fourcc)
                got.append(got_cc + ("" if got_cc.upper() == o.fourcc.upper() else " (differs)"))
            if any("(differs)" in g or "unknown" in g for g in got):
                msg = (f"{self.info.name}: asked for {', '.join(asked)}; the camera gives "
                       f"{', '.join(got)}")
                if o.strict:
                    raise CaptureError(msg + " (--camera-strict)")
                if msg not in self.notes:
                    self.notes.append(msg)
        fps = _prop(self.cap, cv2.CAP_PROP_FPS)
        if 1 <= fps <= 240:
            self.info.fps = fps

    def _open_camera(self) -> None:
        name = self.info.name
        with quiet_native():  # a missing camera is reported below in one line
            self.cap = self._open()
            opened = self.cap.isOpened()
            if opened:
                self._configure()
                ok, frame = self.cap.read()
        if not opened:
            if self.parsed.kind == "camera":
                raise CaptureError(f"{name} not available (no device, or in use)")
            raise CaptureError(f"{name}: the pipeline could not be started ({self.spec})")
        if not ok or frame is None:
            raise CaptureError(f"{name} opened but returned no frame")
        self._check_mode(frame)
        self._first = self._item(frame)

    # -- reading --------------------------------------------------------------------------
    def _item(self, frame: np.ndarray, pos_s: float | None = None) -> FrameItem:
        if pos_s is None and self.info.kind == "file" and self.cap is not None:
            ms = _prop(self.cap, cv2.CAP_PROP_POS_MSEC)
            pos_s = ms / 1000.0 if ms >= 0 else None
        i = self._n
        self._n += 1
        return FrameItem(frame, i, self.info.name, f"{i:06d}", pos_s, time.time())

    def read(self) -> np.ndarray | None:
        item = self.read_item()
        return None if item is None else item.frame

    def read_item(self, skip: Callable[[str], bool] | None = None) -> FrameItem | None:
        """The next frame with its place in the source, or None at the end.  ``skip(stem)``
        true: the frame is passed over without decoding where possible (images are not read,
        video frames only grabbed) — how ``predict --resume`` skips finished frames."""
        first, self._first = self._first, None
        if first is not None and not (skip is not None and skip(first.stem)):
            return first
        if self._files is not None:
            return self._read_image(skip)
        assert self.cap is not None
        while True:
            if skip is not None and self.info.kind == "file" and skip(f"{self._n:06d}"):
                if not self.cap.grab():
                    return self._end_of_file(skip)
                self._n += 1
                continue
            ok, frame = self.cap.read()
            if ok and frame is not None:
                item = self._item(frame)
            elif self.info.kind == "file":
                return self._end_of_file(skip)
            else:
                item = self._item(self._recover())
            if skip is None or not skip(item.stem):
                return item

    def _end_of_file(self, skip) -> FrameItem | None:
        if self.loop and self._n > 0:  # files: start again (demos, soak tests)
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self.cap.read()
            if ok and frame is not None:
                self._n = 0
                return self._item(frame)
        return None  # end of file, or the rest is truncated: a clean end

    def _read_image(self, skip) -> FrameItem | None:
        assert self._files is not None
        while self._i < len(self._files):
            i, p = self._i, self._files[self._i]
            self._i += 1
            stem = self._stems[i]
            if skip is not None and skip(stem):
                continue
            with quiet_native():  # libpng/libjpeg warnings on a broken image
                img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is not None:
                return FrameItem(img, i, str(p), stem, None, time.time())
            if str(p) not in self.skipped:
                self.skipped.append(str(p))
        if self.loop and len(self.skipped) < len(self._files):
            self._i = 0
            return self._read_image(skip)
        return None

    def current_gap_s(self) -> float:
        """Seconds of the outage in progress (0 when delivering)."""
        return time.monotonic() - self._gap_t0 if self.reconnecting else 0.0

    def _recover(self) -> np.ndarray:
        """A live source stopped delivering: reopen with backoff until it delivers again or
        the outage has lasted ``reconnect_s`` (or ``retries`` attempts), then one line."""
        self._gap_t0 = t0 = time.monotonic()
        self.gaps += 1
        self.reconnecting = True
        delay, attempts = self.backoff_s, 0
        try:
            while self.retries is None or attempts < self.retries:
                left = self.reconnect_s - (time.monotonic() - t0)
                if left <= 0 or self._cancel.wait(min(delay, left)):
                    break
                delay = min(2 * delay, MAX_BACKOFF_S)
                attempts += 1
                if self.cap is not None:
                    self.cap.release()
                with quiet_native():
                    self.cap = self._open()
                    if self.cap.isOpened():
                        self._configure()
                        ok, frame = self.cap.read()
                    else:
                        ok, frame = False, None
                if ok and frame is not None:
                    self.reconnects += 1
                    self.gap_s += time.monotonic() - t0
                    return frame
            if self._cancel.is_set():
                raise CaptureError(f"{self.info.name}: stopped while reconnecting")
            lost = time.monotonic() - t0
            self.gap_s += lost
            raise CaptureError(
                f"{self.info.name}: stopped delivering frames (gave up after {attempts} "
                f"reconnects in {lost:.1f} s; --reconnect-s {self.reconnect_s:g})")
        finally:
            self.reconnecting = False

    def cancel(self) -> None:
        """Ends a reconnect in progress (from another thread)."""
        self._cancel.set()

    def release(self) -> None:
        if self.cap is not None:
            self.cap.release()


def camera_available(index: int = 0) -> bool:
    """True when camera ``index`` opens and delivers a frame (probed silently)."""
    with quiet_native():
        cap = cv2.VideoCapture(index)
        ok = cap.isOpened() and cap.read()[0]
        cap.release()
    return bool(ok)


def default_source(walkthrough: str | Path = "runs/demo/walkthrough.mp4",
                   console=None, render: Callable[[Path], object] | None = None
                   ) -> tuple[str, str]:
    """Camera 0 when one answers, else the SynthIndoor walkthrough video at ``walkthrough``
    (rendered once by ``render(path)`` — the build half's renderer — when it is not there);
    returns (source spec, one line saying which).  A device without a camera, the video and
    the renderer gets a :class:`CaptureError` asking for ``--source``."""
    if camera_available(0):
        return "0", "camera 0"
    video = Path(walkthrough)
    if not video.is_file():
        if render is None:
            raise CaptureError("no camera found and no --source given: pass --source (a "
                               "camera index or /dev/video path, a video, an image folder or "
                               "a URL)")
        msg = "no camera: rendering the SynthIndoor walkthrough video…"
        with console.status(msg) if console is not None else contextlib.nullcontext():
            render(video)
    return str(video), f"no camera found; showing the built-in SynthIndoor walkthrough ({video})"


class LatestFrameGrabber:
    """Reads a :class:`Source` in a thread; ``get()`` returns the newest unseen frame
    (``get_item()`` the same as a :class:`FrameItem`).

    ``pace``: for files/folders, deliver at the source's frame rate (as a camera would), so
    frames the consumer is too slow for are dropped; with ``pace=False`` the reader waits for
    the consumer instead (no drops: used to measure maximum throughput, and by ``predict``).
    ``skip(stem)``: frames to pass over (:meth:`Source.read_item`).
    """

    def __init__(self, source: Source, pace: bool = True,
                 skip: Callable[[str], bool] | None = None):
        self.source = source
        # Only videos are paced like a camera; an image folder is a set to process, not a
        # stream: every image is shown (and recorded), none dropped.
        self.pace = pace and source.info.kind == "file"
        self.live = source.live
        self.skip = skip
        self._cond = threading.Condition()
        self._item: FrameItem | None = None
        self._seq = 0
        self._taken = 0
        self.dropped = 0
        self.ended = False
        self.error: Exception | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        period = 1.0 / self.source.info.fps
        next_t = time.perf_counter()
        try:
            while not self._stop.is_set():
                if not (self.pace or self.live):
                    with self._cond:  # wait until the consumer took the previous frame
                        self._cond.wait_for(lambda: self._taken == self._seq
                                            or self._stop.is_set())
                    if self._stop.is_set():
                        break
                item = self.source.read_item(self.skip)
                if item is None:
                    break
                if self.pace:
                    next_t += period
                    time.sleep(max(0.0, next_t - time.perf_counter()))
                with self._cond:
                    if self._item is not None and self._taken < self._seq:
                        self.dropped += 1
                        self.source.dropped = self.dropped
                    self._item = item
                    self._seq += 1
                    self._cond.notify_all()
        except Exception as e:  # reported to the consumer, which owns the error message
            self.error = e
        finally:
            with self._cond:
                self.ended = True
                self._cond.notify_all()

    def get(self, timeout: float = 10.0) -> np.ndarray | None:
        """The newest frame not yet returned; None when the source ended."""
        item = self.get_item(timeout)
        return None if item is None else item.frame

    def get_item(self, timeout: float = 10.0, stop: Callable[[], bool] | None = None
                 ) -> FrameItem | None:
        """The newest frame not yet returned, with its place; None when the source ended (or
        ``stop()`` turned true while waiting).  Waits ``timeout`` seconds for a frame — longer
        while the source is reconnecting (its own budget bounds that)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self.error is not None:
                    raise self.error
                if self._taken < self._seq:
                    self._taken = self._seq
                    item = self._item
                    self._cond.notify_all()
                    return item
                if self.ended or (stop is not None and stop()):
                    return None
                now = time.monotonic()
                if self.source.reconnecting:
                    deadline = now + timeout
                if now >= deadline:
                    raise CaptureError(f"{self.source.info.name}: no frame within "
                                       f"{timeout:.0f} s")
                self._cond.wait(min(deadline - now, 0.25))

    def stop(self) -> None:
        self._stop.set()
        self.source.cancel()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=5)
        self.source.release()
